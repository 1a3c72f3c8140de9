"""`demoe eval`: a model over test manifests, in the layout of the paper's tables."""

from __future__ import annotations

import argparse
import json
import sys

from demoe.cli.common import CommandError, add_output_argument, add_weights_argument, check_top_k
from demoe.config import TASK_NAMES
from demoe.evaluation.comparison import LAYOUTS


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "eval",
        help="run a model over test manifests and tabulate PSNR/SSIM per dataset",
        description="Restore every record of the manifests (test split by default), score it with "
        "the benchmark's own convention (demoe metrics), and write per-image results plus a "
        "table in the layout of the paper's Table 1/2 (markdown, CSV, JSON) and the router study.",
    )
    add_weights_argument(evaluate)
    evaluate.add_argument("--manifest", nargs="+", help="manifest(s) (JSONL, see docs/datasets.md); required unless --combine")
    evaluate.add_argument(
        "--task",
        default="auto",
        choices=["auto", "manual", *TASK_NAMES],
        help="auto: the router chooses; manual: each image's own expert (the paper's †); a task name: that expert",
    )
    evaluate.add_argument(
        "--top-k", type=int, nargs="+", default=None,
        help="experts per image for auto, e.g. 1 2 3 4 5 (default: the model's own top_k)",
    )
    evaluate.add_argument("--manual", action="store_true", help="also run the † variant (each image's own expert)")
    evaluate.add_argument("--input-metrics", action="store_true", help="also score the blurry input itself")
    evaluate.add_argument("--split", default="test", help="manifest split to run (default test; 'all' = every record)")
    evaluate.add_argument("--limit", type=int, default=None, help="at most this many images per (dataset, task)")
    evaluate.add_argument("--group-by", choices=["dataset", "task"], default="dataset", help="table columns")
    evaluate.add_argument("--name", default="DeMoE", help="method name in the table (default DeMoE)")
    evaluate.add_argument("--tile", type=int, default=0, help="tile size for big images (0 = whole image)")
    evaluate.add_argument("--tile-overlap", type=int, default=32)
    evaluate.add_argument(
        "--tlc", action="store_true",
        help="TLC: local channel statistics over 1.5x the model's training crop (needs train_crop in its config)",
    )
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    evaluate.add_argument("--lpips", choices=["alex", "vgg"], default=None, help="also compute LPIPS with this backbone")
    evaluate.add_argument("--lpips-backbone", default=None, help="backbone weights file for LPIPS (never downloaded)")
    evaluate.add_argument(
        "--musiq-weights", metavar="FILE", help="also score sets without ground truth with MUSIQ (never downloaded)"
    )
    evaluate.add_argument(
        "--nrqm-weights", metavar="FILE", help="also score sets without ground truth with NRQM (NRQM_model.mat)"
    )
    evaluate.add_argument("--save-images", action="store_true", help="write restored images under OUT/images")
    evaluate.add_argument("--json", action="store_true", help="print the table, router study and per-image rows as JSON")
    add_output_argument(
        evaluate, "folder for per_image.jsonl, table.{md,csv,json}, router.json (with --combine: the combined tables)"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--cost", action="store_true",
        help="also measure params, MACs and runtime at --cost-size on the eval device (Table 1's cost column; OUT/cost.json)",
    )
    evaluate.add_argument("--cost-size", type=int, default=256, help="square input side of the cost (default 256, the paper's)")
    evaluate.add_argument("--cost-repeats", type=int, default=10, help="timed forward passes for the runtime (default 10)")
    evaluate.add_argument(
        "--layout", choices=LAYOUTS, default="table1",
        help="table1: metrics per dataset (+ cost column); table7: cost and averages over the datasets",
    )
    evaluate.add_argument(
        "--combine", nargs="+", metavar="EVAL_DIR",
        help="no evaluation: put the output folders of earlier `demoe eval -o` runs (one model each) into one table",
    )
    evaluate.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    if args.combine:
        return _combine(args)
    if not args.manifest:
        raise CommandError("--manifest is required (or --combine EVAL_DIR ...)")
    if args.cost and (args.cost_size < 1 or args.cost_repeats < 1):
        raise CommandError("--cost-size and --cost-repeats must be >= 1")
    if args.save_images and args.output is None:
        raise CommandError("--save-images needs -o/--output")
    from demoe.distributed import cleanup_distributed
    from demoe.inference.sharding import start_ranks

    try:
        ranks = start_ranks(args.device)  # under torchrun the records are shared out
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        return _evaluate(args, ranks)
    finally:
        cleanup_distributed()


def _evaluate(args: argparse.Namespace, ranks) -> int:
    from demoe.evaluation.eval_run import EvalOptions, MetricOptions, evaluate, load_metrics

    deblurrer = _load(args, ranks)
    records = _records(args)
    variants = _variants(args, deblurrer.model.config)
    metric_options = MetricOptions(args.lpips, args.lpips_backbone, args.musiq_weights, args.nrqm_weights)
    metrics = load_metrics(metric_options, device=str(deblurrer.device))
    for metric, why in metrics.skipped.items():
        print(f"demoe eval: {metric.upper()} skipped: {why}", file=sys.stderr)
    options = EvalOptions(
        method_name=args.name,
        group_by=args.group_by,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        tlc=args.tlc,
        save_dir=f"{args.output}/images" if args.save_images else None,
        progress=not (args.quiet or args.json),
        cost_size=args.cost_size if args.cost else None,
        cost_repeats=args.cost_repeats,
    )
    evaluation = evaluate(deblurrer, records, variants, options, metrics, ranks)
    if evaluation is None:  # a rank other than 0: rank 0 writes and prints the merged result
        return 0
    if args.output:
        evaluation.write(args.output)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2))
        return 0
    from demoe.evaluation.comparison import render

    print(render(evaluation.table(), args.layout))
    if evaluation.result.router is not None:
        print(evaluation.result.router["markdown"])
    if args.output:
        print(f"results written to {args.output}/")
    return 0


def _load(args: argparse.Namespace, ranks):
    """The model of --weights on this rank's device, checked for --tlc."""
    from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
    from demoe.inference import Deblurrer

    try:
        deblurrer = Deblurrer(args.weights, device=ranks.device)
    except (WeightsNotFoundError, CheckpointReadError) as error:
        raise CommandError(str(error)) from None
    if args.tlc:
        try:
            deblurrer.check_tlc()
        except ValueError as error:
            raise CommandError(f"--tlc: {error}") from None
    return deblurrer


def _records(args: argparse.Namespace):
    from demoe.evaluation.eval_run import read_records

    try:
        return read_records(args.manifest, None if args.split == "all" else args.split, args.limit)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None


def _variants(args: argparse.Namespace, config):
    """The ways to run the model that --task, --top-k, --manual and --input-metrics ask for."""
    from demoe.evaluation.benchmark import variants_from_options

    top_ks = args.top_k if args.top_k is not None else [config.top_k if config.is_moe else 1]
    if not config.is_moe and (args.task != "auto" or args.manual or top_ks != [1]):
        raise CommandError("this model has no experts: use --task auto --top-k 1")
    check_top_k(top_ks, config)
    return variants_from_options(args.task, top_ks, args.manual, args.input_metrics)


def _combine(args: argparse.Namespace) -> int:
    from demoe.evaluation.comparison import combine_runs, render, write_tables
    from demoe.evaluation.tables import to_json

    try:
        table = combine_runs(args.combine)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    if args.output:
        write_tables(table, args.output, args.layout)
    if args.json:
        print(json.dumps(to_json(table), indent=2))
    else:
        print(render(table, args.layout), end="")
        if args.output:
            print(f"tables written to {args.output}/")
    return 0
