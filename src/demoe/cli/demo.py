"""`demoe demo`: the web demo."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from demoe.cli.common import CommandError, add_weights_argument


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="start the web demo (Gradio) on localhost",
        description="Deblur in the browser: upload an image, see the router's verdict, pick the expert.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_weights_argument(demo)
    demo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    demo.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20)")
    demo.add_argument("--max-pixels", type=int, default=12_000_000, help="largest image accepted (default 12 MP)")
    demo.add_argument("--concurrency", type=int, default=1, help="requests processed at once (default 1)")
    demo.add_argument(
        "--keep-minutes", type=float, default=10.0,
        help="an upload or result is deleted this long after its last use (default 10)",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    if min(args.max_upload_mb, args.max_pixels, args.concurrency, args.keep_minutes) <= 0:
        raise CommandError("--max-upload-mb, --max-pixels, --concurrency and --keep-minutes must be > 0")
    # Gradio fixes some of its folders when it is imported: the work folder has to exist first,
    # so that everything it writes (uploads, cached results) goes there and is removed with it.
    workdir = Path(tempfile.mkdtemp(prefix="demoe-demo-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    try:
        from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
        from demoe.web.app import DemoLimits, launch

        limits = DemoLimits(
            max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, concurrency=args.concurrency,
            keep_seconds=60 * args.keep_minutes,
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"demoe demo: listening on {args.host}: the demo is reachable from other machines", file=sys.stderr)
        try:
            launch(args.weights, host=args.host, port=args.port, device=args.device, limits=limits, workdir=workdir)
        except (WeightsNotFoundError, CheckpointReadError) as error:
            raise CommandError(str(error)) from None
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
