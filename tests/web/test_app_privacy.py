"""The web demo keeps a user's images no longer than needed, sends nothing off the machine and
leaves no work folder behind, whether stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demoe.web.app import DemoLimits, launch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _photo(path: Path, seed: int) -> Path:
    pixels = (np.random.default_rng(seed).random((32, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_requests_do_not_pile_up_and_nothing_outlives_keep_seconds(tiny_weights_dir, tmp_path):
    from gradio_client import Client, handle_file

    blocks, app, url = launch(str(tiny_weights_dir), port=_free_port(), device="cpu", block=False,
                              limits=DemoLimits(keep_seconds=3600))
    try:
        page = urllib.request.urlopen(url).read().decode()
        assert "fonts.googleapis" not in page and 'src="https://' not in page and 'href="https://' not in page
        client = Client(url, verbose=False)
        first = _photo(tmp_path / "first.png", 0)
        client.predict(handle_file(str(first)), "Auto", 1, 0, api_name="/deblur")
        after_one = _files(app.workdir)
        assert after_one and all(app.workdir in p.parents for p in after_one)
        assert any(p.parent.parent == app.cache_dir for p in after_one)  # Gradio's cache is inside
        for index in range(4):  # the same page asks again, with other images
            client.predict(handle_file(str(_photo(tmp_path / f"next{index}.png", index + 1))), "Auto", 1, 0,
                           api_name="/deblur")
        kept = _files(app.workdir)
        assert len(kept) <= len(after_one), "the work folder grows with every request"
        assert not any(p.name == "first.png" for p in kept), "an upload of a superseded request is kept"
        app.sweep(now=time.time() + 3601)  # an hour after the last use
        assert _files(app.workdir) == []
    finally:
        blocks.close()
        app.close()
    assert not app.workdir.exists()


def test_an_expired_upload_asks_to_upload_again(tiny_weights_dir, tmp_path):
    import gradio as gr

    from demoe.inference import Deblurrer
    from demoe.web.app import DemoApp

    app = DemoApp(Deblurrer(str(tiny_weights_dir), device="cpu"), DemoLimits(keep_seconds=60))
    try:
        with pytest.raises(gr.Error, match="upload the image again"):
            app.run(str(tmp_path / "swept.png"), "Auto", 1, 0)
    finally:
        app.close()


def test_an_image_that_does_not_fit_in_memory_gets_a_message(tiny_weights_dir, tmp_path, monkeypatch):
    import gradio as gr

    import demoe.inference.pipeline as pipeline
    from demoe.inference import Deblurrer
    from demoe.web.app import DemoApp

    monkeypatch.setattr(pipeline, "memory_budget", lambda device, max_memory=None: 2**16)  # 64 KiB free
    app = DemoApp(Deblurrer(str(tiny_weights_dir), device="cpu"))
    try:
        with pytest.raises(gr.Error, match="Not enough memory to restore this image: 40x32 needs about 5.*KiB of memory; 64.0 KiB is available"):
            app.run(str(_photo(tmp_path / "a.png", 0)), "Auto", 1, 0)
    finally:
        app.close()


# Runs `demoe demo` with every host name it looks up and every address it connects to that is
# not this machine written to the file named by argv[1].
RECORDING_DEMO = """
import ipaddress, socket, sys
log = open(sys.argv[1], "a", buffering=1)
def local(host):
    try:
        return host in ("localhost", "") or ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
def getaddrinfo(host, *args, **kwargs):
    if host is not None and not local(host):
        log.write(f"lookup {host}\\n")
    return real_getaddrinfo(host, *args, **kwargs)
def connect(self, address):
    if isinstance(address, tuple) and not local(address[0]):
        log.write(f"connect {address}\\n")
    return real_connect(self, address)
socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
from demoe.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_server_sends_nothing_out_and_stopping_it_removes_its_work_folder(tiny_weights_dir, tmp_path, signum):
    from gradio_client import Client, handle_file

    temp = tmp_path / "tmp"
    temp.mkdir()
    network_log = tmp_path / "network.log"
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("GRADIO_TEMP_DIR", None)
    env.pop("GRADIO_ANALYTICS_ENABLED", None)
    command = [sys.executable, "-c", RECORDING_DEMO, str(network_log), "demo", "--port", str(port),
               "--weights", str(tiny_weights_dir), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.5)
        Client(url, verbose=False).predict(handle_file(str(_photo(tmp_path / "a.png", 0))), "Auto", 1, 0,
                                           api_name="/deblur")
        workdirs = list(temp.glob("demoe-demo-*"))
        assert len(workdirs) == 1 and _files(workdirs[0])
        time.sleep(1)  # a telemetry thread would have started by now
        process.send_signal(signum)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, 130), output
    assert "Traceback" not in output, output
    assert list(temp.iterdir()) == [], "left behind: " + ", ".join(str(p) for p in temp.rglob("*"))
    assert network_log.read_text() == "", network_log.read_text()
