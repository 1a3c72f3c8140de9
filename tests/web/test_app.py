"""The web demo, driven for real: its handler, its HTTP API under load, and a browser."""

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demoe.web.app import TASK_LABELS, DemoApp, DemoLimits, launch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def weights_dir(tiny_weights_dir):
    return tiny_weights_dir


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rng = np.random.default_rng(0)
    pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("input") / "blurry.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def server(weights_dir):
    blocks, app, url = launch(str(weights_dir), port=_free_port(), device="cpu", limits=DemoLimits(concurrency=2), block=False)
    yield url, app
    blocks.close()
    app.close()


def test_handler_restores_and_reports_router_and_experts(weights_dir, photo):
    from demoe.inference import Deblurrer

    app = DemoApp(Deblurrer(str(weights_dir), device="cpu"))
    try:
        (before, after), probabilities, summary, output = app.run(str(photo), "Low light + motion", 1, 0)
        assert Image.open(before).size == Image.open(after).size == (64, 48)
        assert set(probabilities) == set(TASK_LABELS.values())
        assert abs(sum(probabilities.values()) - 1) < 1e-4
        assert "Low light + motion (chosen by you" in summary
        assert Path(output).parent == app.workdir and Image.open(output).size == (64, 48)
    finally:
        app.close()
    assert not app.workdir.exists()


def test_handler_refuses_too_many_pixels_and_non_images(weights_dir, photo, tmp_path):
    from demoe.inference import Deblurrer

    app = DemoApp(Deblurrer(str(weights_dir), device="cpu"), DemoLimits(max_pixels=1000))
    try:
        with pytest.raises(gr.Error, match="at most 1,000"):
            app.run(str(photo), "Auto", 1, 0)
        junk = tmp_path / "junk.png"
        junk.write_bytes(b"not an image")
        with pytest.raises(gr.Error, match="Not a readable image"):
            app.run(str(junk), "Auto", 1, 0)
        with pytest.raises(gr.Error, match="Upload an image"):
            app.run(None, "Auto", 1, 0)
    finally:
        app.close()


def test_twenty_concurrent_http_requests_all_complete_correctly(server, photo):
    from gradio_client import Client, handle_file

    url, app = server
    labels = ["Auto", *TASK_LABELS.values()]

    def request(index):
        client = Client(url, verbose=False)
        label = labels[index % len(labels)]
        return label, client.predict(handle_file(str(photo)), label, 1 + index % 2, 0, api_name="/deblur")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(request, range(20)))
    assert len(results) == 20
    for label, (comparison, probabilities, summary, download) in results:
        assert Image.open(download).size == (64, 48)
        confidences = {c["label"]: c["confidence"] for c in probabilities["confidences"]}
        assert set(confidences) == set(TASK_LABELS.values())
        if label != "Auto":
            assert f"{label} (chosen by you" in summary
        assert "Time:" in summary
    written = [p for p in app.workdir.iterdir() if p.is_file()]  # (Gradio's cache is the gradio/ folder)
    assert len(written) >= 20 and all(p.suffix == ".png" for p in written)


@pytest.mark.browser
@pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("DEMOE_REQUIRE_BROWSER"),
    reason="Chromium is not installed (apt-get install chromium)",
)
def test_browser_upload_run_and_see_result(server, photo, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#input-image input[type=file]").set_input_files(str(photo))
            page.locator("#run-button").click()
            page.locator("#summary").get_by_text("Experts used").wait_for(timeout=60_000)
            for label in TASK_LABELS.values():
                assert page.locator("#router-probs").get_by_text(label, exact=True).count() >= 1
            assert page.locator("#comparison img").count() >= 1
            assert page.locator("#download").get_by_text(".png").count() >= 1
            screenshot = Path(os.environ.get("DEMOE_SCREENSHOT", tmp_path / "demo.png"))
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()


def test_task_names_labels_top_k_and_tlc_come_from_the_models_config(tmp_path, photo):
    import demoe
    from demoe.inference import Deblurrer
    from demoe.web.app import build_app, task_labels

    config = demoe.create_model("demoe-tiny").config.replace(
        num_experts=2, num_classes=2, task_names=("motion_blur", "defocus"), top_k=2, train_crop=16
    )
    app = DemoApp(Deblurrer(demoe.model.DeblurUNet(config).eval(), device="cpu"))
    try:
        assert app.labels == {"motion_blur": "Motion blur", "defocus": "Defocus"}
        assert app.top_k == 2 and app.max_top_k == 2 and app.tlc_available
        build_app(app)  # the UI builds from these choices
        (_, _), probabilities, summary, _ = app.run(str(photo), "Motion blur", 2, 0, True)
        assert set(probabilities) == {"Motion blur", "Defocus"}
        assert "Motion blur (chosen by you" in summary and "TLC" in summary
        _, _, summary, _ = app.run(str(photo), "Auto", app.top_k, 0)
        assert "top-2" in summary
        with pytest.raises(gr.Error, match="unknown blur type"):
            app.run(str(photo), "Camera shake", 1, 0)  # a label of another model
    finally:
        app.close()
    assert task_labels(("low_light", "a_b", "Auto")) == {"low_light": "Low light + motion", "a_b": "A b", "Auto": "Auto (Auto)"}
    no_tlc = DemoApp(Deblurrer(demoe.create_model("demoe-tiny").eval(), device="cpu"))
    try:
        assert not no_tlc.tlc_available
        with pytest.raises(gr.Error, match="TLC needs"):
            no_tlc.run(str(photo), "Auto", 1, 0, True)
    finally:
        no_tlc.close()
