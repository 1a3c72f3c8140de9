"""The web demo: deblur in the browser, see which blur the router saw, pick the expert.

A thin Gradio layer over `demoe.inference.Deblurrer` (the same API the CLI uses). The blur
types, their order, the top-k default and whether TLC is offered come from the loaded model's
config. Everything the app writes goes into one temporary directory, removed when the app closes.

Privacy: nothing is sent off the machine (Gradio's analytics, its version check and its run
history are off; fonts and scripts are served by the app itself). A user's upload and results,
Gradio's cached copies included, live only in the app's work folder: the results of a
session's previous request are deleted when its next one is answered, a session's files when
its page is closed, every file `DemoLimits.keep_seconds` after its last use, and the whole
folder when the server stops (Ctrl-C or SIGTERM). So the folder does not grow with requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# Read by Gradio and huggingface_hub when they are imported: no telemetry, no version check.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import gradio as gr  # noqa: E402 (after the environment above)
from PIL import Image, ImageOps  # noqa: E402

from demoe.inference import Deblurrer

# Plain-words names of the five blur types of DeMoE; other task names are shown as written.
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
    # an upload or result is deleted this long after its last use (the download link of a
    # result works until then); sooner when the page is closed or the session asks again
    keep_seconds: float = 600.0


def task_labels(task_names: tuple[str, ...]) -> dict[str, str]:
    """Task name -> label shown in the UI, in the model's order: the plain words of TASK_LABELS,
    else the name itself with spaces ("motion_blur" -> "Motion blur"); unique by construction."""
    labels: dict[str, str] = {}
    for name in task_names:
        label = TASK_LABELS.get(name) or name.replace("_", " ").strip().capitalize() or name
        if label == AUTO_LABEL or label in labels.values():
            label = f"{label} ({name})"
        labels[name] = label
    return labels


def example_images() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


class DemoApp:
    """Holds the loaded model, the limits and the temporary directory of one app instance."""

    def __init__(self, deblurrer: Deblurrer, limits: DemoLimits = DemoLimits(), workdir: Path | None = None) -> None:
        self.deblurrer = deblurrer
        self.limits = limits
        config = deblurrer.model.config
        self.labels = task_labels(deblurrer.task_names)  # task name -> label
        self.expert_labels = list(self.labels.values()) if config.is_moe else []  # the dropdown's
        self.max_top_k = max(1, config.num_experts)
        self.top_k = config.top_k if config.is_moe else 1  # the model's own default
        try:
            deblurrer.check_tlc()
            self.tlc_available = True
        except ValueError:
            self.tlc_available = False
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="demoe-demo-"))
        self.cache_dir = self.workdir / "gradio"  # Gradio's uploads and output copies (GRADIO_TEMP_DIR)
        self._sessions: dict[str, list[Path]] = {}  # session -> its upload and latest results
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def task_from_label(self, label: str) -> str:
        if label == AUTO_LABEL:
            return "auto"
        for task, text in self.labels.items():
            if text == label and text in self.expert_labels:
                return task
        raise gr.Error(f"unknown blur type {label!r}")

    def close(self) -> None:
        self._stop.set()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- what is kept, and for how long -------------------------------------------------------

    def sweep(self, now: float | None = None) -> None:
        """Delete every file of the work folder unused for `keep_seconds` (last use: the later
        of its modification and status change; Gradio touches a cached file it hands out again)."""
        limit = (time.time() if now is None else now) - self.limits.keep_seconds
        for path in sorted(self.workdir.rglob("*"), reverse=True):  # files before their folders
            try:
                if path.is_dir():
                    if path != self.cache_dir and not any(path.iterdir()):
                        path.rmdir()
                elif max(path.stat().st_mtime, path.stat().st_ctime) < limit:
                    path.unlink()
            except OSError:  # removed meanwhile by a request or another sweep
                continue

    def sweep_periodically(self) -> None:
        """Run `sweep` in a daemon thread until `close`."""

        def loop() -> None:
            while not self._stop.wait(min(60.0, max(1.0, self.limits.keep_seconds / 4))):
                self.sweep()

        threading.Thread(target=loop, name="demoe-demo-sweeper", daemon=True).start()

    def _delete(self, path: Path) -> None:
        """A file and Gradio's cached copies of it (results have unique names)."""
        copies = self.cache_dir.glob(f"*/{path.name}") if path.parent == self.workdir else ()
        for copy in (path, *copies):
            copy.unlink(missing_ok=True)

    def _remember(self, session: str | None, files: list[Path]) -> None:
        """The session's latest files; the ones of its previous request that no session still
        shows are deleted: the page shows only the latest result."""
        if session is None:
            return
        with self._lock:
            previous = self._sessions.get(session, [])
            self._sessions[session] = files
            in_use = {path for paths in self._sessions.values() for path in paths}
        for path in previous:
            if path not in in_use:
                self._delete(path)

    def forget_session(self, request: gr.Request) -> None:
        """The page was closed: delete its upload and results (unless another page shows them)."""
        with self._lock:
            files = self._sessions.pop(getattr(request, "session_hash", None), [])
            in_use = {path for paths in self._sessions.values() for path in paths}
        for path in files:
            if path not in in_use:
                self._delete(path)

    def run(
        self, image_path: str | None, blur_label: str, top_k: int, tile: int, tlc: bool = False,
        request: gr.Request | None = None,
    ):
        """Restore one uploaded image. Returns the outputs of the UI, in order."""
        self.sweep()
        if image_path and not Path(image_path).is_file():
            raise gr.Error(f"This upload is no longer kept (uploads are deleted {self.limits.keep_seconds / 60:g} "
                           "minutes after their last use): upload the image again.")
        if tlc and not self.tlc_available:
            raise gr.Error("TLC needs the model's training crop size (train_crop in its config.json).")
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
        task = self.task_from_label(blur_label)
        start = time.perf_counter()
        try:
            with Image.open(image_path) as source:
                source.load()
                result = self.deblurrer.restore(source, task=task, top_k=int(top_k), tile=int(tile), tlc=bool(tlc))
        except (OSError, ValueError) as error:
            raise gr.Error(f"Could not restore this image: {error}") from None
        except MemoryError as error:  # NotEnoughMemoryError says how much; a failed allocation does not
            raise gr.Error(f"Not enough memory to restore this image: {error or 'an allocation failed'}. "
                           "Try a tile size, or `demoe deblur` on a larger machine.") from None
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
            probabilities = {self.labels[name]: float(p) for name, p in result.task_probs.items()}
            verdict = self.labels[max(result.task_probs, key=result.task_probs.get)]
            lines.append(f"**Router's verdict:** {verdict} (entropy {result.entropy:.2f} nats)")
        if result.experts_used:
            experts = ", ".join(self.labels[name] for name in result.experts_used)
            chosen = "router's choice" if task == "auto" else "chosen by you"
            lines.insert(0, f"**Experts used:** {experts} ({chosen}, top-{int(top_k)})")
        else:
            lines.insert(0, "**Experts used:** none (this model has a single dense decoder)")
        if tlc:
            lines.append(f"**TLC:** local statistics over {self.deblurrer.model.tlc_window} px windows")
        lines.append(f"**Time:** {seconds:.2f} s for {width}x{height} pixels")
        summary = "  \n".join(lines)
        self._remember(getattr(request, "session_hash", None), [Path(image_path), before_path, output_path])
        return (str(before_path), str(output_path)), probabilities, summary, str(output_path)


def build_app(demo: DemoApp) -> gr.Blocks:
    """The page. Sets, for this process, Gradio's cache folder to the app's work folder (the
    GRADIO_TEMP_DIR Gradio reads while it runs)."""
    os.environ["GRADIO_TEMP_DIR"] = str(demo.cache_dir)
    with gr.Blocks(title="demoe: all-in-one deblurring", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# demoe — all-in-one deblurring\n"
            "Upload a blurry photo. The router recognises the kind of blur and sends the image to "
            "the matching expert; you can also pick the expert yourself."
        )
        with gr.Row():
            with gr.Column():
                image_in = gr.Image(type="filepath", label="Blurry image", elem_id="input-image")
                blur_type = gr.Dropdown(
                    [AUTO_LABEL, *demo.expert_labels],
                    value=AUTO_LABEL,
                    label="Blur type (expert)",
                    elem_id="blur-type",
                )
                top_k = gr.Slider(
                    1, demo.max_top_k, value=demo.top_k, step=1, label="Experts per image (top-k)",
                    interactive=demo.max_top_k > 1, elem_id="top-k",
                )
                tile = gr.Slider(0, 1024, value=0, step=64, label="Tile size (0 = whole image)")
                tlc = gr.Checkbox(
                    value=False,
                    label="TLC (local statistics, as in training)",
                    info=None if demo.tlc_available else "needs the model's training crop size (train_crop)",
                    interactive=demo.tlc_available,
                    elem_id="tlc",
                )
                run = gr.Button("Deblur", variant="primary", elem_id="run-button")
            with gr.Column():
                comparison = gr.ImageSlider(label="Before / after", type="filepath", elem_id="comparison")
                probabilities = gr.Label(
                    label="Router's probabilities", num_top_classes=len(demo.labels), elem_id="router-probs"
                )
                summary = gr.Markdown(elem_id="summary")
                download = gr.File(label="Full-resolution result (PNG)", elem_id="download")
        examples = example_images()
        if examples:
            gr.Examples(examples=examples, inputs=image_in, label="Examples")
        run.click(
            demo.run,
            inputs=[image_in, blur_type, top_k, tile, tlc],
            outputs=[comparison, probabilities, summary, download],
            api_name="deblur",
            concurrency_limit=demo.limits.concurrency,
        )
        blocks.unload(demo.forget_session)
    blocks.queue(max_size=demo.limits.queue_size, default_concurrency_limit=demo.limits.concurrency)
    return blocks


def launch(
    weights: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    limits: DemoLimits = DemoLimits(),
    block: bool = True,
    workdir: Path | None = None,
):
    """Start the demo server. Returns (blocks, app, url) when `block` is False.

    Blocking, SIGTERM stops the server as Ctrl-C does, and the work folder is removed either way.
    workdir: the work folder (default a new temporary one); `demoe demo` creates it before
    Gradio is imported and sets GRADIO_TEMP_DIR to its gradio/ folder, since Gradio fixes some
    of its folders at import."""
    demo = DemoApp(Deblurrer(weights, device=device), limits, workdir)
    previous_handler = None
    if block and threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        blocks = build_app(demo)
        demo.sweep_periodically()
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            max_file_size=int(limits.max_upload_mb * 1024 * 1024),
            prevent_thread_lock=not block,
            show_error=True,
            quiet=not block,
            allowed_paths=[str(demo.workdir), str(EXAMPLES_DIR)],
            ssr_mode=False,
            run_history=False,  # no record of inputs in the browser, no offer to upload them
        )
    except BaseException:
        demo.close()
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if block:
        demo.close()
        return None
    return blocks, demo, url


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
