"""`demoe demo`: the web demo."""

from __future__ import annotations

import argparse
import sys


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="start the web demo (Gradio) on localhost",
        description="Deblur in the browser: upload an image, see the router's verdict, pick the expert.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    demo.add_argument("--weights", default=None, help="model directory or bundled weights name (default: bundled)")
    demo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    demo.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20)")
    demo.add_argument("--max-pixels", type=int, default=12_000_000, help="largest image accepted (default 12 MP)")
    demo.add_argument("--concurrency", type=int, default=1, help="requests processed at once (default 1)")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from demoe.checkpoints import WeightsNotFoundError
    from demoe.web.app import DemoLimits, launch

    limits = DemoLimits(
        max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, concurrency=args.concurrency
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"demoe demo: listening on {args.host}: the demo is reachable from other machines", file=sys.stderr)
    try:
        launch(args.weights, host=args.host, port=args.port, device=args.device, limits=limits)
    except WeightsNotFoundError as error:
        print(f"demoe demo: {error}", file=sys.stderr)
        return 2
    return 0
