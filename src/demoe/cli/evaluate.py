"""`demoe eval`: a model over test manifests, in the layout of the paper's tables."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    evaluate.add_argument("--weights", default=None, help="model directory or bundled weights name (default: bundled)")
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
    evaluate.add_argument("--out", default=None, help="folder for per_image.jsonl, table.{md,csv,json}, router.json")
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
        help="no evaluation: put earlier `demoe eval --out` folders (one model each) into one table",
    )
    evaluate.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    if args.combine:
        return _combine(args)
    if not args.manifest:
        print("demoe eval: --manifest is required (or --combine EVAL_DIR ...)", file=sys.stderr)
        return 2
    if args.cost and (args.cost_size < 1 or args.cost_repeats < 1):
        print("demoe eval: --cost-size and --cost-repeats must be >= 1", file=sys.stderr)
        return 2
    from demoe.distributed import cleanup_distributed
    from demoe.inference.sharding import start_ranks

    try:
        ranks = start_ranks(args.device)  # under torchrun the records are shared out
    except ValueError as error:
        print(f"demoe eval: {error}", file=sys.stderr)
        return 2
    try:
        return _evaluate(args, ranks)
    finally:
        cleanup_distributed()


def _evaluate(args: argparse.Namespace, ranks) -> int:
    from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
    from demoe.data.manifest import read_manifest
    from demoe.evaluation.benchmark import filter_records, variants_from_options
    from demoe.inference import Deblurrer

    try:
        deblurrer = Deblurrer(args.weights, device=ranks.device)
    except (WeightsNotFoundError, CheckpointReadError) as error:
        print(f"demoe eval: {error}", file=sys.stderr)
        return 2
    records = []
    for manifest in args.manifest:
        try:
            records += read_manifest(manifest)
        except (FileNotFoundError, ValueError) as error:
            print(f"demoe eval: {error}", file=sys.stderr)
            return 2
    config = deblurrer.model.config
    top_ks = args.top_k if args.top_k is not None else [config.top_k if config.is_moe else 1]
    if args.tlc:
        try:
            deblurrer.check_tlc()
        except ValueError as error:
            print(f"demoe eval: --tlc: {error}", file=sys.stderr)
            return 2
    records = filter_records(records, None if args.split == "all" else args.split, args.limit)
    if not records:
        print(f"demoe eval: no records of split {args.split!r} in {', '.join(args.manifest)}", file=sys.stderr)
        return 2
    if not config.is_moe and (args.task != "auto" or args.manual or top_ks != [1]):
        print("demoe eval: this model has no experts: use --task auto --top-k 1", file=sys.stderr)
        return 2
    experts = deblurrer.model.config.num_experts or 1
    if any(not 1 <= k <= experts for k in top_ks):
        print(f"demoe eval: --top-k values must be in 1..{experts}", file=sys.stderr)
        return 2
    extra = None
    if args.lpips:
        from demoe.evaluation.lpips import LPIPSBackboneNotFoundError, load_lpips, lpips_distance

        try:
            lpips_model = load_lpips(args.lpips, args.lpips_backbone)
        except (LPIPSBackboneNotFoundError, ValueError) as error:  # missing, unreadable or untrusted
            print(f"demoe eval: LPIPS skipped: {error}", file=sys.stderr)
        else:
            def lpips_of(restored, sharp):
                return {} if sharp is None else {"lpips": lpips_distance(restored, sharp, lpips_model)}

            extra = lpips_of

    from demoe.evaluation.no_reference import load_no_reference

    no_reference, skipped = load_no_reference(True, args.musiq_weights, args.nrqm_weights, device=str(deblurrer.device))
    for metric, why in skipped.items():
        print(f"demoe eval: {metric.upper()} skipped: {why}", file=sys.stderr)

    variants = variants_from_options(args.task, top_ks, args.manual, args.input_metrics)
    save_dir = None
    if args.save_images:
        if args.out is None:
            print("demoe eval: --save-images needs --out", file=sys.stderr)
            return 2
        save_dir = f"{args.out}/images"
    missing = [p for r in records for p in (r.blurry, r.sharp, r.mask) if p is not None and not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        print(f"demoe eval: manifest files not found: {', '.join(missing[:5])}{more}", file=sys.stderr)
        return 2
    from demoe.evaluation.sharded import run_benchmark_sharded

    result = run_benchmark_sharded(
        ranks,
        deblurrer,
        records,
        variants,
        method_name=args.name,
        group_by=args.group_by,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        no_reference=no_reference,
        extra_metrics=extra,
        progress=not (args.quiet or args.json),
        save_dir=save_dir,
        tlc=args.tlc,
    )
    if result is None:  # a rank other than 0: rank 0 writes and prints the merged result
        return 0
    costs = {}
    if args.cost:
        from demoe.evaluation.comparison import model_cost

        for variant in variants:
            if variant.kind != "input":
                top_k = variant.top_k if variant.kind == "auto" else 1
                costs[variant.label(args.name)] = model_cost(
                    deblurrer.model, top_k, args.cost_size, args.cost_repeats, str(deblurrer.device)
                )
    if args.out:
        result.write(args.out)
        if costs:
            from demoe.evaluation.comparison import write_costs

            write_costs(args.out, costs)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        from demoe.evaluation.comparison import render
        from demoe.evaluation.tables import build_table

        table = result.table()
        if costs:
            table = build_table(
                [{**row, "dataset": row["group"]} for row in result.rows], methods=table.methods, costs=costs
            )
        print(render(table, args.layout))
        if result.router is not None:
            print(result.router["markdown"])
        if args.out:
            print(f"results written to {args.out}/")
    return 0


def _combine(args: argparse.Namespace) -> int:
    from demoe.evaluation.comparison import combine_runs, render
    from demoe.evaluation.tables import to_csv, to_json
    from demoe.fileio import atomic_write

    try:
        table = combine_runs(args.combine)
    except (FileNotFoundError, ValueError) as error:
        print(f"demoe eval: {error}", file=sys.stderr)
        return 2
    text = render(table, args.layout)
    if args.out:
        out = Path(args.out)
        for name, content in (
            (f"{args.layout}.md", text),
            (f"{args.layout}.csv", to_csv(table)),
            (f"{args.layout}.json", json.dumps(to_json(table), indent=2) + "\n"),
        ):
            atomic_write(out / name, lambda path, content=content: Path(path).write_text(content))
    if args.json:
        print(json.dumps(to_json(table), indent=2))
    else:
        print(text, end="")
        if args.out:
            print(f"tables written to {args.out}/")
    return 0
