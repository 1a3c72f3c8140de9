"""`demoe analyze similarity | experts | router | tsne | cost`: the paper's analyses."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
from demoe.cli.common import WEIGHTS_HELP, CommandError, add_output_argument, add_weights_argument
from demoe.cli.cost import add_cost_parser, model_labels
from demoe.fileio import atomic_write_text
from demoe.model import load_model


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    analyze = subparsers.add_parser(
        "analyze",
        help="weight similarity, expert specialisation, router study, t-SNE, cost table",
        description="The analyses of the DeMoE paper (Sec. 3.1, App. A, D, E; Fig. 2, 4, 7, 9, 11-13; "
        "Table 1's cost column).",
    )
    commands = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    similarity = commands.add_parser(
        "similarity",
        help="per-layer Pearson and RBF-CKA between models of one architecture",
        description="Per layer of the NAFBlocks (types conv1x1, conv3x3, norm, sca): per-filter "
        "Pearson correlation averaged over filters (Eq. 3-4) and RBF-kernel CKA over filters "
        "(Eq. 5-6), for every pair of models. Top-level 'layers'/'by_type' = mean over pairs.",
    )
    similarity.add_argument(
        "models", nargs="*", metavar="MODEL_DIR", help="two or more model directories (or give them with --weights)"
    )
    add_weights_argument(similarity, nargs="+", help=f"two or more models: {WEIGHTS_HELP}")
    _add_common_similarity_flags(similarity)
    similarity.set_defaults(handler=run_similarity)

    experts = commands.add_parser(
        "experts",
        help="similarity between the experts of each MoE block (Fig. 11)",
        description="Pearson and RBF-CKA between every pair of experts in each MoE block of one model.",
    )
    experts.add_argument("model", nargs="?", metavar="MODEL_DIR", help="a DeMoE model directory (or --weights)")
    add_weights_argument(experts, help=f"a DeMoE model: {WEIGHTS_HELP}")
    _add_common_similarity_flags(experts)
    experts.set_defaults(handler=run_experts)

    router = commands.add_parser(
        "router",
        help="router accuracy per dataset, confusion matrix, mean router output (Fig. 12)",
        description="Runs the encoder and router (eval mode) on the blurry image of every manifest "
        "record; the true class is the record's task.",
    )
    _add_manifest_flags(router, max_side=1024)
    add_output_argument(router, "folder for router.json, router.md, router_confusion.png, router_mean_output.png")
    router.add_argument("--json", action="store_true", help="print the study as JSON")
    router.set_defaults(handler=run_router)

    tsne = commands.add_parser(
        "tsne",
        help="t-SNE of pooled encoder features per dataset (Fig. 4 / 13)",
        description="Globally average pooled bottleneck features of every blurry image of the "
        "manifest, embedded in 2-D with scikit-learn's t-SNE, coloured by dataset.",
    )
    _add_manifest_flags(tsne, max_side=512)
    add_output_argument(tsne, "folder for tsne.png and tsne.json", required=True)
    tsne.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30; capped at (N-1)/3)")
    tsne.add_argument("--seed", type=int, default=0, help="t-SNE random seed (default 0)")
    tsne.set_defaults(handler=run_tsne)

    add_cost_parser(commands)  # the same command as `demoe cost`


def _add_common_similarity_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_output_argument(parser, "folder for the JSON file and the PNG figures")
    parser.add_argument(
        "--cka-threshold",
        type=float,
        default=1.0,
        help="RBF bandwidth factor: sigma = threshold * median pairwise distance (default 1.0)",
    )


def _add_manifest_flags(parser: argparse.ArgumentParser, max_side: int) -> None:
    add_weights_argument(parser, required=True, help=WEIGHTS_HELP)
    parser.add_argument("--manifest", required=True, help="JSONL manifest of the images")
    parser.add_argument("--split", choices=("train", "val", "test"), help="use only records of this split")
    parser.add_argument(
        "--max-side",
        type=int,
        default=max_side,
        help=f"downscale images so that the longer side is at most this (default {max_side}; 0 = full size)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _model_paths(positional: list[str], weights: list[str] | None) -> list[str]:
    """The models given as positional arguments or with --weights (one way only)."""
    if positional and weights:
        raise CommandError("give the models as MODEL_DIR arguments or with --weights, not both")
    return list(weights or positional)


def _load(path: str):
    try:
        return load_model(path)
    except (WeightsNotFoundError, CheckpointReadError) as error:
        raise CommandError(str(error)) from None


def _print_by_type(title: str, by_type: dict) -> None:
    print(title)
    print(f"  {'type':<8} {'layers':>6} {'pearson':>8} {'cka':>8}")
    for kind, values in by_type.items():
        pearson = "-" if values["pearson"] is None else f"{values['pearson']:.3f}"
        cka = "-" if values["cka"] is None else f"{values['cka']:.3f}"
        print(f"  {kind:<8} {values['num_layers']:>6} {pearson:>8} {cka:>8}")


def run_similarity(args: argparse.Namespace) -> int:
    from demoe.analysis import plots
    from demoe.analysis.similarity import LAYER_TYPES, compare_models, pairwise_matrix, similarity_report

    paths = _model_paths(args.models, args.weights)
    if len(paths) < 2:
        raise CommandError("give at least two model directories")
    models = [_load(path) for path in paths]
    labels = model_labels(paths)
    try:
        pairs = compare_models([m.state_dict() for m in models], labels, args.cka_threshold)
    except ValueError as error:
        raise CommandError(str(error)) from None
    report = similarity_report(pairs, labels)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "similarity.json", json.dumps(report, indent=2) + "\n")
        series = {f"{pair.a} vs {pair.b}": pair.layers for pair in pairs}
        plots.plot_layer_bars(series, "pearson", out / "similarity_pearson.png", "Per-layer Pearson correlation")
        plots.plot_layer_bars(series, "cka", out / "similarity_cka.png", "Per-layer RBF CKA", line=None)
        kinds = [k for k in LAYER_TYPES if k in report["by_type"]]
        for metric in ("pearson", "cka"):
            matrices = {kind: pairwise_matrix(pairs, labels, kind, metric) for kind in kinds}
            vmin = -1.0 if metric == "pearson" else 0.0
            plots.plot_heatmaps(matrices, labels, out / f"similarity_heatmap_{metric}.png", f"Mean {metric} per layer type", vmin=vmin)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_by_type(f"mean over {len(pairs)} pair(s) of {len(labels)} models", report["by_type"])
        if len(pairs) > 1:
            for pair in report["pairs"]:
                _print_by_type(f"{pair['a']} vs {pair['b']}", pair["by_type"])
        if args.output:
            print(f"wrote {args.output}")
    return 0


def run_experts(args: argparse.Namespace) -> int:
    from demoe.analysis import plots
    from demoe.analysis.similarity import (
        LAYER_TYPES,
        compare_experts,
        experts_report,
        mean_expert_matrix,
        mean_over_pairs,
    )

    paths = _model_paths([args.model] if args.model else [], [args.weights] if args.weights else None)
    if len(paths) != 1:
        raise CommandError("give one model: MODEL_DIR or --weights")
    model = _load(paths[0])
    if not model.config.is_moe:
        raise CommandError(f"{paths[0]} has no MoE blocks (num_experts = 0)")
    blocks = compare_experts(model.state_dict(), model.task_names, args.cka_threshold)
    report = experts_report(blocks)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "experts.json", json.dumps(report, indent=2) + "\n")
        layers = [layer for block in blocks for layer in mean_over_pairs(block.pairs)]
        series = {"mean over expert pairs": layers}
        plots.plot_layer_bars(series, "pearson", out / "experts_pearson.png", "Pearson between experts (mean over pairs)")
        plots.plot_layer_bars(series, "cka", out / "experts_cka.png", "RBF CKA between experts (mean over pairs)", line=None)
        names = list(model.task_names)
        kinds = [k for k in LAYER_TYPES if k in report["by_type"]]
        for metric in ("pearson", "cka"):
            matrices = {kind: mean_expert_matrix(blocks, names, kind, metric) for kind in kinds}
            vmin = -1.0 if metric == "pearson" else 0.0
            plots.plot_heatmaps(matrices, names, out / f"experts_heatmap_{metric}.png", f"Expert {metric} (mean over MoE blocks)", vmin=vmin)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_by_type(f"experts of {len(blocks)} MoE blocks, mean over expert pairs", report["by_type"])
        if args.output:
            print(f"wrote {args.output}")
    return 0


def _records(args: argparse.Namespace):
    from demoe.data.manifest import read_manifest

    records = read_manifest(args.manifest)
    if args.split:
        records = [r for r in records if r.split == args.split]
    if not records:
        raise ValueError(f"no records in {args.manifest}" + (f" with split {args.split}" if args.split else ""))
    return records


def _encode(args: argparse.Namespace, command: str):
    from tqdm import tqdm

    from demoe.analysis.features import encode_records

    model = load_model(args.weights, device=args.device)
    records = _records(args)
    encoded = encode_records(
        model,
        records,
        max_side=args.max_side,
        device=args.device,
        progress=lambda items: tqdm(items, desc=f"analyze {command}", unit="img", file=sys.stderr),
    )
    return model, encoded


def run_router(args: argparse.Namespace) -> int:
    from demoe.analysis import plots
    from demoe.evaluation.router import router_study

    try:
        model, encoded = _encode(args, "router")
    except (WeightsNotFoundError, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    if encoded.router_probs is None:
        raise CommandError(f"{args.weights} has no router")
    study = router_study(encoded.router_probs, encoded.labels, encoded.datasets, model.task_names)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "router.json", json.dumps(study.to_dict(), indent=2) + "\n")
        atomic_write_text(out / "router.md", study.to_markdown())
        plots.plot_confusion(study.confusion, study.class_names, out / "router_confusion.png")
        plots.plot_mean_router_output(study.mean_output, study.class_names, out / "router_mean_output.png")
    if args.json:
        print(json.dumps(study.to_dict(), indent=2))
    else:
        print(study.to_markdown(), end="")
        if args.output:
            print(f"wrote {args.output}")
    return 0


def run_tsne(args: argparse.Namespace) -> int:
    from demoe.analysis import plots
    from demoe.analysis.features import tsne_embedding

    try:
        _, encoded = _encode(args, "tsne")
        coords = tsne_embedding(encoded.features, args.perplexity, args.seed)
    except (WeightsNotFoundError, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    points = [
        {"path": path, "dataset": dataset, "x": float(x), "y": float(y)}
        for path, dataset, (x, y) in zip(encoded.paths, encoded.datasets, coords)
    ]
    atomic_write_text(out / "tsne.json", json.dumps({"weights": args.weights, "points": points}, indent=2) + "\n")
    plots.plot_tsne(coords, encoded.datasets, out / "tsne.png", f"t-SNE of encoder features ({Path(args.weights).name})")
    print(f"wrote {out / 'tsne.png'} and {out / 'tsne.json'} ({len(points)} images)")
    return 0
