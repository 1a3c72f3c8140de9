"""`demoe demo` through the installed console script: it serves, and its --max-upload-mb limit
refuses a larger upload while a smaller one goes through."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points

import httpx
import numpy as np
import pytest
from PIL import Image

import demoe.cli

# Calls the `demoe` console script's entry point exactly as the installed `demoe` wrapper does.
RUN_ENTRY_POINT = (
    "import sys; from importlib.metadata import entry_points; "
    "sys.exit(entry_points(group='console_scripts')['demoe'].load()())"
)
LIMIT_MB = 0.05  # 52,428 bytes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png_bytes(height: int, width: int) -> bytes:
    pixels = (np.random.default_rng(height).random((height, width, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # random pixels: PNG cannot compress them
    return buffer.getvalue()


def test_the_console_script_is_the_cli_main():
    assert entry_points(group="console_scripts")["demoe"].load() is demoe.cli.main


@pytest.mark.slow
def test_demo_command_serves_and_refuses_uploads_over_its_limit(tiny_weights_dir, tmp_path):
    port = _free_port()
    log = tmp_path / "demo.log"
    command = [sys.executable, "-c", RUN_ENTRY_POINT, "demo", "--weights", str(tiny_weights_dir),
               "--port", str(port), "--device", "cpu", "--max-upload-mb", str(LIMIT_MB)]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "demoe demo did not start serving in 240 s"
            time.sleep(1)
        small, large = _png_bytes(64, 64), _png_bytes(160, 160)
        assert len(small) < LIMIT_MB * 2**20 < len(large)
        upload = f"{url}/gradio_api/upload"
        accepted = httpx.post(upload, files={"files": ("small.png", small, "image/png")}, timeout=60)
        assert accepted.status_code == 200, accepted.text
        refused = httpx.post(upload, files={"files": ("large.png", large, "image/png")}, timeout=60)
        assert refused.status_code == 413, refused.text
    finally:
        process.terminate()
        process.wait(timeout=60)
