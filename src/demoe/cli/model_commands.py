"""`demoe cost` and `demoe convert-official`."""

from __future__ import annotations

import argparse
import json
import sys

from demoe.checkpoints import (
    CheckpointMismatchError,
    CheckpointReadError,
    WeightsNotFoundError,
    convert_official,
    create_model,
    load_model,
)
from demoe.config import PRESETS


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    cost = subparsers.add_parser(
        "cost",
        help="parameters, MACs and CPU latency of a model",
        description="Parameters, MACs (conv + linear) at a square size, and median CPU latency.",
    )
    cost.add_argument("--model", default="demoe", help=f"preset ({', '.join(PRESETS)}) or model directory")
    cost.add_argument("--size", type=int, default=256, help="square input side (default 256)")
    cost.add_argument("--top-k", type=int, default=1, help="experts per image (default 1)")
    cost.add_argument("--repeats", type=int, default=10, help="timed forward passes (default 10)")
    cost.add_argument("--json", action="store_true", help="print {params, macs_g, latency_ms}")
    cost.set_defaults(handler=run_cost)

    convert = subparsers.add_parser(
        "convert-official",
        help="convert the authors' DeMoE.pt into a demoe model directory",
        description="Read the authors' checkpoint (torch.save dict with 'params'), map its keys, "
        "check every shape, and write OUT_DIR (config.json + model.safetensors).",
    )
    convert.add_argument("checkpoint", help="the authors' checkpoint, e.g. DeMoE.pt")
    convert.add_argument("out_dir", help="model directory to write")
    convert.add_argument("--preset", default="demoe", help="architecture of the checkpoint (default demoe)")
    convert.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="also unpickle Python objects other than weights stored in the file (runs code: trusted files only)",
    )
    convert.set_defaults(handler=run_convert)


def run_cost(args: argparse.Namespace) -> int:
    from demoe.evaluation.cost import measure_cost
    from demoe.inference.memory import HEADROOM, available_memory, format_bytes, pass_bytes

    if args.size < 1 or args.repeats < 1:
        print("demoe cost: --size and --repeats must be >= 1", file=sys.stderr)
        return 2
    if args.model in PRESETS:
        model = create_model(args.model)
    else:
        try:
            model = load_model(args.model)
        except (WeightsNotFoundError, CheckpointReadError) as error:
            print(f"demoe cost: {error}", file=sys.stderr)
            return 2
    if model.config.is_moe and not 1 <= args.top_k <= model.config.num_experts:
        print(f"demoe cost: --top-k must be in 1..{model.config.num_experts}", file=sys.stderr)
        return 2
    needed = pass_bytes(model.config, args.size, args.size, args.top_k)
    available = available_memory()
    if available is not None and needed > available * HEADROOM:
        print(f"demoe cost: a {args.size}x{args.size} pass needs about {format_bytes(needed)} of memory, more "
              f"than the {format_bytes(available)} available; choose a smaller --size", file=sys.stderr)
        return 2
    cost = measure_cost(model, size=args.size, top_k=args.top_k, repeats=args.repeats)
    if args.json:
        print(json.dumps(cost.to_dict()))
    else:
        print(f"model       {model.config.name}")
        print(f"params      {cost.params:,} ({cost.params / 1e6:.2f} M)")
        print(f"MACs        {cost.macs_g:.2f} G at {args.size}x{args.size}, top-{args.top_k}")
        print(f"latency     {cost.latency_ms:.1f} ms (median CPU, batch 1)")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    try:
        model = convert_official(args.checkpoint, args.out_dir, preset=args.preset, trust=args.trust_checkpoint)
    except (CheckpointMismatchError, FileNotFoundError, ValueError) as error:
        print(f"demoe convert-official: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir} ({model.num_parameters:,} parameters, preset {args.preset})")
    return 0
