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
from demoe.cli.common import WEIGHTS_HELP, CommandError, add_output_argument, add_weights_argument, check_top_k
from demoe.config import TASK_NAMES
from demoe.distributed import DistributedContext, cleanup_distributed
from demoe.inference.batch import (
    OUTPUT_FORMATS,
    BatchOptions,
    BatchSummary,
    Inputs,
    check_output_folder,
    check_report_path,
    check_suffix,
    find_inputs,
    remove_empty_folders,
)
from demoe.imageio import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageReadError, read_image
from demoe.inference.memory import parse_bytes
from demoe.inference.pipeline import DEFAULT_ROUTER_PIXELS, DEVICES, Deblurrer, entropy_nats
from demoe.inference.sharding import agree, deal, gather_in_order, open_report, restore_inputs, start_ranks
from demoe.inference.video import VIDEO_SUFFIXES, VideoError, VideoOptions, classify_video, is_video_file

EXIT_FAILURES = 1  # some inputs failed; the others were written
EXIT_INTERRUPTED = 130
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    add_weights_argument(parser, help=f"{WEIGHTS_HELP} (default: the bundled default weights)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="default auto: cuda, mps, else cpu")
    parser.add_argument(
        "--tlc",
        action="store_true",
        help="TLC: channel statistics over local windows of 1.5x the training crop, not the whole image "
        "(needs train_crop in the model's config.json; docs/deblur.md says when it helps)",
    )
    parser.add_argument("--recursive", action="store_true", help="descend into subfolders of folder inputs")
    parser.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images with more pixels (decompression bombs; default {DEFAULT_MAX_PIXELS:,}; 0 = no limit)",
    )


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    deblur = subparsers.add_parser(
        "deblur",
        help="deblur photographs and videos (files, folders, globs) into an output folder",
        description="Deblur images and videos with a DeMoE model. 8-bit stays 8-bit, 16-bit stays 16-bit, gray "
        "stays gray, alpha and ICC profile are copied, EXIF orientation is applied. Videos (MP4, MOV, "
        "MKV, WebM, recognised by content) become NAME_deblurred.mp4 with the same frames, size, "
        "rate and audio; the router decides once per shot. Inputs are never modified; outputs are "
        "written atomically. Broken inputs are reported and skipped; the exit status is 1 if any "
        "input failed. Under torchrun the inputs are shared out between the processes.",
    )
    deblur.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or glob patterns")
    add_output_argument(deblur, "folder for the restored images", metavar="OUT_DIR", required=True)
    _add_model_arguments(deblur)
    deblur.add_argument("--task", default="auto", choices=("auto", *TASK_NAMES), help="blur type (default auto: the router decides)")
    deblur.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="experts mixed per image (default: the model's own top_k)"
    )
    deblur.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="fp16 needs a GPU; bf16 also runs on CPUs (faster where they have bf16 instructions: docs/performance.md)")
    deblur.add_argument("--tile", type=int, default=0, metavar="N", help="tile side in pixels (default 0 = whole image)")
    deblur.add_argument("--tile-overlap", type=int, default=32, metavar="M", help="pixels shared by neighbouring tiles (default 32)")
    deblur.add_argument(
        "--max-memory", type=memory_size, default=None, metavar="SIZE",
        help="memory one image may use, e.g. 4G (default: what the system reports available; 0 = no check); "
        "images too large whole are restored in tiles, those too large even so fail with the memory needed",
    )
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
    deblur.add_argument(
        "--crf", type=int, default=VideoOptions.crf, metavar="Q",
        help=f"video quality, libx264 CRF 0..51 (0 lossless; default {VideoOptions.crf})",
    )
    deblur.add_argument(
        "--cut-threshold", type=float, default=VideoOptions.cut_threshold, metavar="T",
        help=f"frame difference (0..255) that starts a new shot (default {VideoOptions.cut_threshold:g}; larger = fewer cuts)",
    )
    deblur.add_argument(
        "--min-shot-frames", type=int, default=VideoOptions.min_shot_frames, metavar="N",
        help=f"shortest shot in frames (default {VideoOptions.min_shot_frames})",
    )
    deblur.add_argument(
        "--mbtree", action="store_true",
        help="videos: libx264 macroblock-tree rate control (smaller files; outputs then differ from run to run)",
    )
    deblur.add_argument("--quiet", action="store_true", help="print errors and the failure summary only")
    deblur.set_defaults(handler=run_deblur)

    classify = subparsers.add_parser(
        "classify",
        help="print the router's blur-type probabilities without restoring",
        description="Run the encoder and router only and print the probability of each blur type.",
    )
    classify.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or glob patterns")
    _add_model_arguments(classify)
    classify.add_argument(
        "--json", action="store_true",
        help="one JSON object per line: input, task_probs, top, entropy (videos: input, shots)",
    )
    classify.set_defaults(handler=run_classify)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def memory_size(text: str) -> int:
    """argparse type: bytes from 4G, 512M, 2000000."""
    try:
        return parse_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _print_skipped(inputs: Inputs) -> None:
    for entry, why in inputs.skipped:
        print(f"skipped: {entry}: {why}", file=sys.stderr)


def _load(args: argparse.Namespace, precision: str = "fp32", device=None) -> Deblurrer:
    """The model of --weights on its device, checked for --tlc."""
    try:
        deblurrer = Deblurrer(args.weights, device=device or args.device, precision=precision)
    except (WeightsNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    if args.tlc:
        try:
            deblurrer.check_tlc(True)
        except ValueError as error:
            raise CommandError(f"--tlc: {error}") from None
    return deblurrer


def _start_ranks(device: str) -> DistributedContext:
    try:
        return start_ranks(device)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _find_inputs(args: argparse.Namespace, ranks: DistributedContext, out_dir: Path | None, verb: str) -> Inputs:
    """The inputs (rank 0 lists them for every rank); none at all ends the command."""
    inputs = agree(lambda: find_inputs(args.inputs, args.recursive, out_dir, INPUT_SUFFIXES), ranks)
    if ranks.is_main:
        _print_skipped(inputs)
    if not inputs.files:
        if ranks.is_main:
            for spec, reason in inputs.errors:
                print(f"error: {spec}: {reason}", file=sys.stderr)
        raise CommandError(f"no images or videos to {verb}" if ranks.is_main else None)
    return inputs


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
        raise CommandError("--min-confidence must be in [0, 1]")
    if args.tile < 0 or args.tile_overlap < 0 or (args.tile and args.tile_overlap >= args.tile):
        raise CommandError("need --tile >= 0 and 0 <= --tile-overlap < --tile")
    try:
        video = VideoOptions(
            crf=args.crf, cut_threshold=args.cut_threshold, min_shot_frames=args.min_shot_frames, mbtree=args.mbtree
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    ranks = _start_ranks(args.device)
    try:
        return _deblur_inputs(args, ranks, video)
    finally:
        cleanup_distributed()


def _deblur_inputs(args: argparse.Namespace, ranks: DistributedContext, video: VideoOptions) -> int:
    out_dir = Path(args.output)
    inputs = _find_inputs(args, ranks, out_dir, "deblur")
    try:
        check_suffix(args.suffix)
        if args.report:
            check_report_path(Path(args.report), inputs)
        check_output_folder(out_dir)
    except ValueError as error:
        raise CommandError(str(error)) from None
    deblurrer = _load(args, args.precision, ranks.device)
    options = _batch_options(args, deblurrer)
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        report = open_report(Path(args.report) if args.report else None, ranks)
    except OSError as error:
        remove_empty_folders(created)
        raise CommandError(f"cannot write {error.filename or out_dir}: {error.strerror or error}") from None
    say = _say if not ranks.is_distributed else lambda message: _say(f"[rank {ranks.rank}] {message}")
    quiet = args.quiet or not ranks.is_main  # one progress bar: rank 0's
    try:
        with _terminate_as_interrupt():
            summary = restore_inputs(inputs, out_dir, deblurrer, options, video, report, ranks, quiet, say)
    except KeyboardInterrupt:
        print("\ndemoe deblur: interrupted; finished outputs are complete, no partial files were "
              "left (re-run with --skip-existing to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        report.close()
        if ranks.is_main:
            remove_empty_folders(created)  # every input failed: no empty output folder is left
    if ranks.is_main and (not args.quiet or summary.failed):
        _print_summary(args, summary, ranks, out_dir)
    return EXIT_FAILURES if summary.failed else 0


def _batch_options(args: argparse.Namespace, deblurrer: Deblurrer) -> BatchOptions:
    """The options of every image and video, checked against the model."""
    config = deblurrer.model.config
    top_k = args.top_k if args.top_k is not None else config.top_k
    check_top_k(top_k, config)
    if args.task != "auto" and not config.is_moe:
        raise CommandError("this model has no experts; use --task auto")
    return BatchOptions(
        task=args.task,
        top_k=top_k,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        suffix=args.suffix,
        output_format=args.format,
        skip_existing=args.skip_existing,
        min_confidence=args.min_confidence,
        uncertain=args.uncertain,
        max_pixels=args.max_pixels or None,
        max_memory=args.max_memory,
        tlc=args.tlc,
    )


def _print_summary(args: argparse.Namespace, summary: BatchSummary, ranks: DistributedContext, out_dir: Path) -> None:
    total = summary.done + summary.skipped + len(summary.failed)
    line = f"demoe deblur: {summary.done} deblurred, {summary.skipped} skipped, {len(summary.failed)} failed"
    if args.min_confidence is not None:
        line += f", {summary.low_confidence} low confidence"
    processes = f", {ranks.world_size} processes" if ranks.is_distributed else ""
    print(f"{line} ({total} inputs, {summary.seconds:.1f} s{processes}) -> {out_dir}", file=sys.stderr)
    for name, reason in summary.failed:
        print(f"  failed: {name}: {reason}", file=sys.stderr)


def run_classify(args: argparse.Namespace) -> int:
    ranks = _start_ranks(args.device)
    try:
        return _classify_inputs(args, ranks)
    finally:
        cleanup_distributed()


def _classify_inputs(args: argparse.Namespace, ranks: DistributedContext) -> int:
    inputs = _find_inputs(args, ranks, None, "classify")
    deblurrer = _load(args, device=ranks.device)
    if deblurrer.model.router is None:
        raise CommandError("this model has no router")
    if ranks.is_main:
        for spec, reason in inputs.errors:
            _print_classify_error(args, spec, reason)
    # One process prints as it goes; under torchrun the lines are gathered and rank 0 prints
    # them in input order, each JSON line with its "rank".
    outcomes, failed = [], 0
    for position, item in deal(list(enumerate(inputs.files)), ranks):
        outcome = _classify_one(args, deblurrer, item.path, ranks)
        failed += outcome[2] is not None
        if ranks.is_distributed:
            outcomes.append((position, outcome))
        else:
            _print_outcome(args, *outcome)
    if ranks.is_distributed:
        gathered = gather_in_order(outcomes, ranks)
        if ranks.is_main:
            for outcome in gathered:
                _print_outcome(args, *outcome)
        failed = sum(1 for outcome in gathered if outcome[2] is not None)
    failures = failed + len(inputs.errors)
    if failures and ranks.is_main:
        print(f"demoe classify: {failures} of {len(inputs.files) + len(inputs.errors)} inputs failed", file=sys.stderr)
    return EXIT_FAILURES if failures else 0


def _classify_one(args, deblurrer: Deblurrer, path: Path, ranks: DistributedContext) -> tuple[str, str | None, str | None]:
    """(input name, the line to print, or None; the failure reason, or None)."""
    name = str(path)
    rank = {"rank": ranks.rank} if ranks.is_distributed else {}
    try:
        if is_video_file(path):
            shots = classify_video(path, deblurrer, max_pixels=args.max_pixels or None)
            if args.json:
                return name, json.dumps({"input": name, "kind": "video", "shots": shots, **rank}), None
            lines = [f"{name}: {len(shots)} shot{'s' if len(shots) != 1 else ''}"]
            for shot in shots:
                probs = shot["task_probs"]
                table = "  ".join(f"{task} {p:.3f}" for task, p in probs.items())
                last = shot["start_frame"] + shot["frames"] - 1
                lines.append(f"  frames {shot['start_frame']}-{last}: {shot['top']} ({probs[shot['top']]:.2f})  [{table}]")
            return name, "\n".join(lines), None
        image = read_image(path, args.max_pixels or None)
        probs = deblurrer.classify(image.pixels, router_max_pixels=DEFAULT_ROUTER_PIXELS, tlc=args.tlc)
    except (ImageReadError, VideoError) as error:
        return name, None, error.reason
    except (ValueError, RuntimeError, OSError) as error:
        return name, None, str(error)
    top = max(probs, key=probs.get)
    entropy = entropy_nats(list(probs.values()))
    if args.json:
        return name, json.dumps({"input": name, "task_probs": probs, "top": top, "entropy": entropy, **rank}), None
    table = "  ".join(f"{task} {p:.3f}" for task, p in probs.items())
    return name, f"{name}: {top} ({probs[top]:.2f})  [{table}]", None


def _print_outcome(args: argparse.Namespace, name: str, line: str | None, reason: str | None) -> None:
    if reason is not None:
        _print_classify_error(args, name, reason)
    else:
        print(line, flush=True)


def _print_classify_error(args: argparse.Namespace, name: str, reason: str) -> None:
    if args.json:
        print(json.dumps({"input": name, "error": reason}), flush=True)
    print(f"error: {name}: {reason}", file=sys.stderr)
