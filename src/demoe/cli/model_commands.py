"""`demoe cost` (defined in `demoe.cli.cost`) and `demoe convert-official`."""

from __future__ import annotations

import argparse

from demoe.checkpoints import CheckpointMismatchError
from demoe.cli.common import CommandError, add_output_argument, output_of
from demoe.cli.cost import add_cost_parser
from demoe.model import convert_official


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    add_cost_parser(subparsers)

    convert = subparsers.add_parser(
        "convert-official",
        help="convert the authors' DeMoE.pt into a demoe model directory",
        description="Read the authors' checkpoint (torch.save dict with 'params'), map its keys, "
        "check every shape, and write the model directory OUT_DIR (config.json + model.safetensors).",
    )
    convert.add_argument("checkpoint", help="the authors' checkpoint, e.g. DeMoE.pt")
    add_output_argument(convert, "model directory to write", metavar="OUT_DIR", required=True, positional=True)
    convert.add_argument("--preset", default="demoe", help="architecture of the checkpoint (default demoe)")
    convert.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="also unpickle Python objects other than weights stored in the file (runs code: trusted files only)",
    )
    convert.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    out_dir = output_of(args)
    try:
        model = convert_official(args.checkpoint, out_dir, preset=args.preset, trust=args.trust_checkpoint)
    except (CheckpointMismatchError, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"wrote {out_dir} ({model.num_parameters:,} parameters, preset {args.preset})")
    return 0
