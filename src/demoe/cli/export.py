"""`demoe export onnx`: write an ONNX graph of a model and check it against eager PyTorch."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
from demoe.cli.common import CommandError, add_output_argument, add_weights_argument, check_top_k, output_of
from demoe.model import load_model

TOLERANCE = 1e-4  # max |eager - onnxruntime| accepted by the check


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a model to another runtime (ONNX)",
        description="Export a model to another runtime.",
    )
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser(
        "onnx",
        help="write an ONNX graph and verify it with onnxruntime",
        description="Write an ONNX graph (input 'image' (B,3,H,W) in [0,1]; outputs 'restored', "
        "'router_probs', 'expert_weights'). With a task name every MoE block holds only that "
        "expert (the cost of the NAFNet baseline); with 'auto' the graph runs the router and ALL "
        "experts, mixed by the top-k weights (about 1.8x the MACs of a fixed task for the demoe "
        "preset). The graph is then run with onnxruntime on a random image and compared with "
        f"eager PyTorch; exit status 1 if they differ by more than {TOLERANCE:g}.",
    )
    add_output_argument(onnx, "ONNX file to write", metavar="OUT.onnx", required=True, positional=True)
    onnx.add_argument("--task", required=True, help="auto or a task name (the expert to keep)")
    add_weights_argument(onnx)
    onnx.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                      help="input height and width (default 256 256); the only size unless --dynamic")
    onnx.add_argument("--dynamic", action="store_true", help="any batch size, height and width")
    onnx.add_argument("--top-k", type=int, default=None, help="experts per image for --task auto (default: config)")
    onnx.add_argument("--repeats", type=int, default=0,
                      help="also time eager PyTorch and onnxruntime over N runs at --size (default 0: skip)")
    onnx.set_defaults(handler=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    from demoe.export import OnnxDeblurModel, export_onnx, max_abs_difference

    out = output_of(args)
    try:
        model = load_model(args.weights).eval()
    except (WeightsNotFoundError, CheckpointReadError) as error:
        raise CommandError(str(error)) from None
    check_top_k(args.top_k, model.config)
    try:
        path = export_onnx(model, out, task=args.task, top_k=args.top_k, size=tuple(args.size), dynamic=args.dynamic)
    except ValueError as error:
        raise CommandError(str(error)) from None
    runner = OnnxDeblurModel(path)
    probe = torch.rand(1, model.config.image_channels, *args.size)
    difference = max_abs_difference(model, runner, probe, task=args.task, top_k=args.top_k)
    kind = "all experts, top-k weights" if args.task == "auto" else f"expert {args.task!r} only"
    print(f"wrote {path} ({kind}; {'dynamic' if args.dynamic else 'fixed'} size)")
    print(f"max |eager - onnxruntime| = {difference:.3g} (tolerance {TOLERANCE:g})")
    if args.repeats > 0:
        if model.config.is_moe:
            eager_ms = _median_ms(lambda: model(probe, task=args.task, top_k=args.top_k), args.repeats)
        else:
            eager_ms = _median_ms(lambda: model(probe), args.repeats)
        onnx_ms = _median_ms(lambda: runner(probe, task=args.task, top_k=args.top_k), args.repeats)
        print(
            f"latency at {args.size[0]}x{args.size[1]}: eager {eager_ms:.1f} ms, "
            f"onnxruntime {onnx_ms:.1f} ms (median of {args.repeats})"
        )
    if difference > TOLERANCE:
        raise CommandError("the graph disagrees with eager PyTorch", status=1)
    return 0


def _median_ms(run, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        run()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
