"""`demoe data synth`: write synthetic blurry/sharp pairs of every blur type from a folder of
sharp photographs (`demoe.data.synthetic.pairs` does the work)."""

from __future__ import annotations

import argparse

from demoe.cli.common import CommandError, add_output_argument, output_of
from demoe.config import TASK_NAMES
from demoe.data.manifest import SPLITS


def add_synth_parser(data_subparsers: argparse._SubParsersAction) -> None:
    synth = data_subparsers.add_parser(
        "synth",
        help="synthesise blurry/sharp pairs of every blur type from sharp photographs",
        description="For every photograph under SHARP_DIR, write --per-image pairs per blur type: "
        "OUT_DIR/<task>/{blur,sharp}/NAME.png (local_motion also mask/NAME.png) and "
        "OUT_DIR/manifest.jsonl; OUT_DIR is the second argument or -o/--output. Blur sizes are in "
        "pixels and suit photographs of a few hundred pixels per side; use --max-side for larger "
        "ones. See docs/synthetic-blur.md.",
    )
    synth.add_argument("sharp_dir", metavar="SHARP_DIR", help="folder of sharp photographs (searched recursively)")
    add_output_argument(synth, "output folder", metavar="OUT_DIR", required=True, positional=True)
    synth.add_argument("--per-image", type=int, default=1, help="pairs per photograph and blur type (default 1)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES), help="blur types (default: all five)"
    )
    synth.add_argument("--crop", type=int, default=0, help="square random crop side; 0 = full image (default 0)")
    synth.add_argument("--split", choices=SPLITS, default="train", help="split written in the manifest (default train)")
    synth.add_argument(
        "--max-side", type=int, default=0, help="first shrink photographs whose longer side exceeds this; 0 = keep"
    )
    synth.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from demoe.data.synthetic.pairs import PairSettings, write_synthetic_set

    for flag, value, low in (("--per-image", args.per_image, 1), ("--seed", args.seed, 0), ("--crop", args.crop, 0),
                             ("--max-side", args.max_side, 0)):
        if value < low:
            raise CommandError(f"{flag} must be >= {low}, got {value}")
    out_dir = output_of(args)
    settings = PairSettings(tuple(args.tasks), args.per_image, args.seed, args.crop, args.split, args.max_side)
    try:
        written = write_synthetic_set(args.sharp_dir, out_dir, settings)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"wrote {len(written.records)} pairs ({written.photos} photographs x {args.per_image} x {len(args.tasks)} "
          f"blur types) and {written.manifest}")
    return 0
