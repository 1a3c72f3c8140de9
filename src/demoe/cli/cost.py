"""`demoe cost`, also reachable as `demoe analyze cost`: parameters, MACs and runtime per model,
with the row of the ensemble of task-specific baselines after every MoE model (Table 1's cost
column; Sec. 5, DeMoE-5). One parser definition, registered under both names."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from demoe.cli.common import CommandError, add_weights_argument, check_top_k
from demoe.config import PRESETS, ModelConfig

if TYPE_CHECKING:
    from demoe.model import DeblurNetwork

DEFAULT_MODELS = ("demoe",)


def add_cost_parser(subparsers: argparse._SubParsersAction) -> None:
    cost = subparsers.add_parser(
        "cost",
        help="parameters, MACs and runtime per model, with the DeMoE-5 ensemble row",
        description="Cost table (Table 1's cost column): parameters, MACs (conv + linear) at a square "
        "size and the median runtime of one forward pass per model. After every MoE model comes the "
        "row of an ensemble of its task-specific dense baselines (Sec. 5, DeMoE-5). `demoe cost` and "
        "`demoe analyze cost` are the same command.",
    )
    add_weights_argument(
        cost, "--model", "--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME|DIR",
        help=f"presets ({', '.join(PRESETS)}), bundled weights names or model directories "
        f"(default: {' '.join(DEFAULT_MODELS)}; --model and --models are older spellings)",
    )
    cost.add_argument("--size", type=int, default=256, help="square input side (default 256)")
    cost.add_argument("--top-k", type=int, default=1, help="experts per image for MoE models (default 1)")
    cost.add_argument("--repeats", type=int, default=10, help="timed forward passes (default 10)")
    cost.add_argument("--warmup", type=int, default=3, help="untimed forward passes first (default 3)")
    cost.add_argument("--device", default="cpu", help="torch device for the runtime (default cpu)")
    cost.add_argument("--no-ensemble", action="store_true", help="leave out the ensemble rows")
    cost.add_argument(
        "--json", action="store_true",
        help="print {size, top_k, device, rows: [{model, params, macs_g, latency_ms, ensemble_of}]}; "
        "params, macs_g and latency_ms of the first model also at the top level",
    )
    cost.set_defaults(handler=run_cost)


def model_labels(paths: list[str]) -> list[str]:
    """Short unique labels for model paths: folder names, the full path where they clash."""
    names = [Path(p).name or p for p in paths]
    return [name if names.count(name) == 1 else path for name, path in zip(names, paths)]


def _models(names: list[str]) -> list[tuple[str, DeblurNetwork]]:
    """(label, model) per name: a preset is built with fresh weights (the cost does not depend
    on them), anything else is loaded."""
    from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
    from demoe.model import create_model, load_model

    models = []
    for name, label in zip(names, model_labels(names)):
        try:
            models.append((name, create_model(name)) if name in PRESETS else (label, load_model(name)))
        except (WeightsNotFoundError, CheckpointReadError) as error:
            raise CommandError(str(error)) from None
    return models


def _check_memory(label: str, config: ModelConfig, size: int, top_k: int) -> None:
    """A pass too large for the memory available is refused before it is tried (CPU runs)."""
    from demoe.inference.memory import HEADROOM, available_memory, format_bytes, pass_bytes

    needed = pass_bytes(config, size, size, top_k if config.is_moe else 1)
    available = available_memory()
    if available is not None and needed > available * HEADROOM:
        raise CommandError(
            f"a {size}x{size} pass needs about {format_bytes(needed)} of memory ({label}), more than the "
            f"{format_bytes(available)} available; choose a smaller --size"
        )


def run_cost(args: argparse.Namespace) -> int:
    from demoe.evaluation.cost_table import cost_table, to_markdown

    if args.size < 1 or args.repeats < 1:
        raise CommandError("--size and --repeats must be >= 1")
    if args.warmup < 0:
        raise CommandError("--warmup must be >= 0")
    models = _models(args.weights)
    for label, model in models:
        check_top_k(args.top_k, model.config, label)
        if args.device == "cpu":
            _check_memory(label, model.config, args.size, args.top_k)
    rows = cost_table(
        models, args.size, args.top_k, args.repeats,
        with_ensembles=not args.no_ensemble, warmup=args.warmup, device=args.device,
    )
    if args.json:
        first = rows[0].to_dict()
        table = {key: first[key] for key in ("params", "macs_g", "latency_ms")}  # what `demoe cost` printed before
        table.update(size=args.size, top_k=args.top_k, device=args.device, rows=[row.to_dict() for row in rows])
        print(json.dumps(table, indent=2))
    else:
        print(to_markdown(rows, args.size, args.top_k, args.device), end="")
    return 0
