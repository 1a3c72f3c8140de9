"""The web demo: deblur in the browser, see which blur the router saw, pick the expert.

A thin Gradio layer over `demoe.inference.Deblurrer` (the same API the CLI uses). Everything
the app writes goes into one temporary directory, removed when the app closes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image, ImageOps

from demoe.config import TASK_NAMES
from demoe.inference import Deblurrer

# Plain-words names of the experts, in TASK_NAMES order.
TASK_LABELS: dict[str, str] = {
    "defocus": "Defocus",
    "global_motion": "Camera shake",
    "local_motion": "Moving object",
    "synth_global_motion": "Camera/object motion (GoPro-like)",
    "low_light": "Low light + motion",
}
AUTO_LABEL = "Auto"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"


@dataclass(frozen=True)
class DemoLimits:
    max_upload_mb: float = 20.0  # refused by the server before the upload completes
    max_pixels: int = 12_000_000  # width x height above which an image is refused
    concurrency: int = 1  # requests processed at once; the rest wait in the queue
    queue_size: int = 64  # requests allowed to wait


def task_from_label(label: str) -> str:
    if label == AUTO_LABEL:
        return "auto"
    for task, text in TASK_LABELS.items():
        if text == label:
            return task
    raise gr.Error(f"unknown blur type {label!r}")


def example_images() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


class DemoApp:
    """Holds the loaded model, the limits and the temporary directory of one app instance."""

    def __init__(self, deblurrer: Deblurrer, limits: DemoLimits = DemoLimits()) -> None:
        self.deblurrer = deblurrer
        self.limits = limits
        self.workdir = Path(tempfile.mkdtemp(prefix="demoe-demo-"))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self, image_path: str | None, blur_label: str, top_k: int, tile: int):
        """Restore one uploaded image. Returns the outputs of the UI, in order."""
        if not image_path:
            raise gr.Error("Upload an image first.")
        try:
            with Image.open(image_path) as probe:
                width, height = probe.size
        except (OSError, ValueError) as error:
            raise gr.Error(f"Not a readable image: {error}") from None
        if width * height > self.limits.max_pixels:
            raise gr.Error(
                f"The image has {width}x{height} = {width * height:,} pixels; this demo accepts at "
                f"most {self.limits.max_pixels:,}. Use `demoe deblur` for larger images."
            )
        task = task_from_label(blur_label)
        start = time.perf_counter()
        try:
            with Image.open(image_path) as source:
                source.load()
                result = self.deblurrer.restore(source, task=task, top_k=int(top_k), tile=int(tile))
        except (OSError, ValueError) as error:
            raise gr.Error(f"Could not restore this image: {error}") from None
        seconds = time.perf_counter() - start

        # Unique file names: Gradio caches outputs by content, and identical results of
        # concurrent requests would otherwise share (and rewrite) one cache file.
        stem = uuid.uuid4().hex[:12]
        output_path = self.workdir / f"deblurred-{stem}.png"
        result.image.save(output_path)
        before_path = self.workdir / f"before-{stem}.png"
        with Image.open(image_path) as source:
            ImageOps.exif_transpose(source).convert("RGB").save(before_path)
        lines = []
        probabilities = {}
        if result.task_probs is not None:
            probabilities = {TASK_LABELS[name]: float(p) for name, p in result.task_probs.items()}
            verdict = TASK_LABELS[max(result.task_probs, key=result.task_probs.get)]
            lines.append(f"**Router's verdict:** {verdict} (entropy {result.entropy:.2f} nats)")
        if result.experts_used:
            experts = ", ".join(TASK_LABELS[name] for name in result.experts_used)
            chosen = "router's choice" if task == "auto" else "chosen by you"
            lines.insert(0, f"**Experts used:** {experts} ({chosen}, top-{int(top_k)})")
        else:
            lines.insert(0, "**Experts used:** none (this model has a single dense decoder)")
        lines.append(f"**Time:** {seconds:.2f} s for {width}x{height} pixels")
        summary = "  \n".join(lines)
        return (str(before_path), str(output_path)), probabilities, summary, str(output_path)


def build_app(demo: DemoApp) -> gr.Blocks:
    with gr.Blocks(title="demoe: all-in-one deblurring") as blocks:
        gr.Markdown(
            "# demoe — all-in-one deblurring\n"
            "Upload a blurry photo. The router recognises the kind of blur and sends the image to "
            "the matching expert; you can also pick the expert yourself."
        )
        with gr.Row():
            with gr.Column():
                image_in = gr.Image(type="filepath", label="Blurry image", elem_id="input-image")
                blur_type = gr.Dropdown(
                    [AUTO_LABEL, *(TASK_LABELS[name] for name in TASK_NAMES)],
                    value=AUTO_LABEL,
                    label="Blur type (expert)",
                    elem_id="blur-type",
                )
                top_k = gr.Slider(1, len(TASK_NAMES), value=1, step=1, label="Experts per image (top-k)")
                tile = gr.Slider(0, 1024, value=0, step=64, label="Tile size (0 = whole image)")
                run = gr.Button("Deblur", variant="primary", elem_id="run-button")
            with gr.Column():
                comparison = gr.ImageSlider(label="Before / after", type="filepath", elem_id="comparison")
                probabilities = gr.Label(
                    label="Router's probabilities", num_top_classes=len(TASK_NAMES), elem_id="router-probs"
                )
                summary = gr.Markdown(elem_id="summary")
                download = gr.File(label="Full-resolution result (PNG)", elem_id="download")
        examples = example_images()
        if examples:
            gr.Examples(examples=examples, inputs=image_in, label="Examples")
        run.click(
            demo.run,
            inputs=[image_in, blur_type, top_k, tile],
            outputs=[comparison, probabilities, summary, download],
            api_name="deblur",
            concurrency_limit=demo.limits.concurrency,
        )
    blocks.queue(max_size=demo.limits.queue_size, default_concurrency_limit=demo.limits.concurrency)
    return blocks


def launch(
    weights: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    limits: DemoLimits = DemoLimits(),
    block: bool = True,
):
    """Start the demo server. Returns (blocks, app, url) when `block` is False."""
    demo = DemoApp(Deblurrer(weights, device=device), limits)
    blocks = build_app(demo)
    try:
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            max_file_size=int(limits.max_upload_mb * 1024 * 1024),
            prevent_thread_lock=not block,
            show_error=True,
            quiet=not block,
            allowed_paths=[str(demo.workdir), str(EXAMPLES_DIR)],
            ssr_mode=False,
        )
    except BaseException:
        demo.close()
        raise
    if block:
        demo.close()
        return None
    return blocks, demo, url
