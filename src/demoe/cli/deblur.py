"""`demoe deblur` and `demoe classify`: thin layers over `demoe.inference`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from demoe.checkpoints import WeightsNotFoundError
from demoe.config import TASK_NAMES
from demoe.inference.batch import (
    OUTPUT_FORMATS,
    BatchOptions,
    ReportWriter,
    find_inputs,
    run_batch,
)
from demoe.imageio import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from demoe.inference.pipeline import DEFAULT_ROUTER_PIXELS, DEVICES, Deblurrer, entropy_nats

EXIT_FAILURES = 1  # some inputs failed; the others were written
EXIT_USAGE = 2  # nothing could start (no weights, bad option, no inputs)
EXIT_INTERRUPTED = 130


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default=None,
        metavar="DIR|NAME",
        help="model directory (config.json + model.safetensors) or name of bundled weights "
        "(default: the bundled default weights)",
    )
    parser.add_argument("--device", default="auto", choices=DEVICES, help="default auto: cuda, mps, else cpu")
    parser.add_argument("--recursive", action="store_true", help="descend into subfolders of folder inputs")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images with more pixels (decompression bombs; default {DEFAULT_MAX_PIXELS:,}; 0 = no limit)",
    )


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    deblur = subparsers.add_parser(
        "deblur",
        help="deblur photographs (files, folders, globs) into an output folder",
        description="Deblur images with a DeMoE model. 8-bit stays 8-bit, 16-bit stays 16-bit, gray "
        "stays gray, alpha and ICC profile are copied, EXIF orientation is applied. Inputs are "
        "never modified; outputs are written atomically. Broken inputs are reported and skipped; "
        "the exit status is 1 if any input failed.",
    )
    deblur.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    deblur.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the restored images")
    _add_model_arguments(deblur)
    deblur.add_argument("--task", default="auto", choices=("auto", *TASK_NAMES), help="blur type (default auto: the router decides)")
    deblur.add_argument("--top-k", type=int, default=1, metavar="K", help="experts mixed per image (default 1)")
    deblur.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="fp16/bf16 need a GPU")
    deblur.add_argument("--tile", type=int, default=0, metavar="N", help="tile side in pixels (default 0 = whole image)")
    deblur.add_argument("--tile-overlap", type=int, default=32, metavar="M", help="pixels shared by neighbouring tiles (default 32)")
    deblur.add_argument("--suffix", default="_deblurred", help="added to output file names (default _deblurred)")
    deblur.add_argument("--format", default="same", choices=("same", *OUTPUT_FORMATS), help="output format (default same as input)")
    deblur.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a run)")
    deblur.add_argument("--report", default=None, metavar="FILE.jsonl", help="write one JSON object per input")
    deblur.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="flag images whose top router probability is below P",
    )
    deblur.add_argument(
        "--uncertain",
        default="hard",
        choices=("hard", "soft"),
        help="soft: restore flagged images with the mixture of the top max(K, 2) experts (default hard)",
    )
    deblur.add_argument("--quiet", action="store_true", help="print errors and the failure summary only")
    deblur.set_defaults(handler=run_deblur)

    classify = subparsers.add_parser(
        "classify",
        help="print the router's blur-type probabilities without restoring",
        description="Run the encoder and router only and print the probability of each blur type.",
    )
    classify.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    _add_model_arguments(classify)
    classify.add_argument("--json", action="store_true", help="one JSON object per line: input, task_probs, top, entropy")
    classify.set_defaults(handler=run_classify)


def _load(args: argparse.Namespace, command: str, precision: str = "fp32") -> Deblurrer | None:
    try:
        return Deblurrer(args.weights, device=args.device, precision=precision)
    except (WeightsNotFoundError, ValueError) as error:
        print(f"demoe {command}: {error}", file=sys.stderr)
        return None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so the atomic writer removes its temporary file."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def run_deblur(args: argparse.Namespace) -> int:
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        print("demoe deblur: --min-confidence must be in [0, 1]", file=sys.stderr)
        return EXIT_USAGE
    if args.tile < 0 or args.tile_overlap < 0 or (args.tile and args.tile_overlap >= args.tile):
        print("demoe deblur: need --tile >= 0 and 0 <= --tile-overlap < --tile", file=sys.stderr)
        return EXIT_USAGE
    if args.top_k < 1:
        print("demoe deblur: --top-k must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    out_dir = Path(args.output)
    inputs = find_inputs(args.inputs, recursive=args.recursive, exclude=out_dir)
    if not inputs.files:
        for spec, reason in inputs.errors:
            print(f"error: {spec}: {reason}", file=sys.stderr)
        print("demoe deblur: no images to deblur", file=sys.stderr)
        return EXIT_USAGE
    deblurrer = _load(args, "deblur", args.precision)
    if deblurrer is None:
        return EXIT_USAGE
    config = deblurrer.model.config
    if config.is_moe and args.top_k > config.num_experts:
        print(f"demoe deblur: --top-k must be in 1..{config.num_experts}", file=sys.stderr)
        return EXIT_USAGE
    if args.task != "auto" and not config.is_moe:
        print("demoe deblur: this model has no experts; use --task auto", file=sys.stderr)
        return EXIT_USAGE
    options = BatchOptions(
        task=args.task,
        top_k=args.top_k,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        suffix=args.suffix,
        output_format=args.format,
        skip_existing=args.skip_existing,
        min_confidence=args.min_confidence,
        uncertain=args.uncertain,
        max_pixels=args.max_pixels or None,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ReportWriter(Path(args.report) if args.report else None)
    try:
        with _terminate_as_interrupt():
            summary = run_batch(inputs, out_dir, deblurrer, options, report, quiet=args.quiet, say=_say)
    except KeyboardInterrupt:
        print("\ndemoe deblur: interrupted; finished outputs are complete, no partial files were "
              "left (re-run with --skip-existing to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        report.close()
    total = summary.done + summary.skipped + len(summary.failed)
    if not args.quiet or summary.failed:
        line = f"demoe deblur: {summary.done} deblurred, {summary.skipped} skipped, {len(summary.failed)} failed"
        if args.min_confidence is not None:
            line += f", {summary.low_confidence} low confidence"
        print(f"{line} ({total} inputs, {summary.seconds:.1f} s) -> {out_dir}", file=sys.stderr)
    for name, reason in summary.failed:
        print(f"  failed: {name}: {reason}", file=sys.stderr)
    return EXIT_FAILURES if summary.failed else 0


def run_classify(args: argparse.Namespace) -> int:
    inputs = find_inputs(args.inputs, recursive=args.recursive)
    if not inputs.files:
        for spec, reason in inputs.errors:
            print(f"error: {spec}: {reason}", file=sys.stderr)
        print("demoe classify: no images to classify", file=sys.stderr)
        return EXIT_USAGE
    deblurrer = _load(args, "classify")
    if deblurrer is None:
        return EXIT_USAGE
    if deblurrer.model.router is None:
        print("demoe classify: this model has no router", file=sys.stderr)
        return EXIT_USAGE
    failures = list(inputs.errors)
    for spec, reason in inputs.errors:
        _print_classify_error(args, spec, reason)
    for item in inputs.files:
        name = str(item.path)
        try:
            image = read_image(item.path, args.max_pixels or None)
            probs = deblurrer.classify(image.pixels, router_max_pixels=DEFAULT_ROUTER_PIXELS)
        except ImageReadError as error:
            failures.append((name, error.reason))
            _print_classify_error(args, name, error.reason)
            continue
        except (ValueError, RuntimeError) as error:
            failures.append((name, str(error)))
            _print_classify_error(args, name, str(error))
            continue
        top = max(probs, key=probs.get)
        entropy = entropy_nats(list(probs.values()))
        if args.json:
            print(json.dumps({"input": name, "task_probs": probs, "top": top, "entropy": entropy}), flush=True)
        else:
            table = "  ".join(f"{task} {p:.3f}" for task, p in probs.items())
            print(f"{name}: {top} ({probs[top]:.2f})  [{table}]", flush=True)
    if failures:
        print(f"demoe classify: {len(failures)} of {len(inputs.files) + len(inputs.errors)} inputs failed", file=sys.stderr)
    return EXIT_FAILURES if failures else 0


def _print_classify_error(args: argparse.Namespace, name: str, reason: str) -> None:
    if args.json:
        print(json.dumps({"input": name, "error": reason}), flush=True)
    print(f"error: {name}: {reason}", file=sys.stderr)
