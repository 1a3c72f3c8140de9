"""`demoe train CONFIG.yaml -o RUN_DIR [--resume] [--max-steps N] [--save-every N] [--set key=value ...]`.

Also runs under `torchrun --nproc-per-node G -m demoe train ...` (one process per device).
"""

from __future__ import annotations

import argparse
import os

from demoe.cli.common import CommandError, add_output_argument


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe (stage 1: baseline + router; stage 2: experts)",
        description="Train a model from a YAML recipe (see configs/ and docs/training.md). "
        "Run under `torchrun --nproc-per-node G -m demoe train ...` for several devices; "
        "train.batch_size is the global batch.",
    )
    parser.add_argument("config", help="training configuration (YAML)")
    add_output_argument(parser, "run directory (checkpoints, last/, logs)", metavar="RUN_DIR", required=True)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in RUN_DIR"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop after N optimizer steps in total (schedule unchanged)"
    )
    parser.add_argument(
        "--save-every", type=int, default=None, help="steps between checkpoints (sets log.save_every)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config values by dotted key, YAML values (e.g. optim.lr=2e-4 train.batch_size=8)",
    )
    parser.set_defaults(handler=run_train)


EXIT_NON_FINITE = 3  # the loss became NaN or infinite: stopped without saving


def run_train(args: argparse.Namespace) -> int:
    from demoe.checkpoints import CheckpointReadError, WeightsNotFoundError
    from demoe.train import ConfigError, NonFiniteLossError, RunDirError, load_config, train

    is_main = int(os.environ.get("RANK", "0")) == 0
    overrides = list(args.overrides)
    if args.save_every is not None:
        overrides.append(f"log.save_every={args.save_every}")
    if args.max_steps is not None and args.max_steps <= 0:
        raise CommandError("--max-steps must be > 0")
    try:
        config = load_config(args.config, overrides)
        result = train(config, args.output, resume=args.resume, max_steps=args.max_steps)
    except (ConfigError, RunDirError, FileNotFoundError, WeightsNotFoundError, CheckpointReadError) as error:
        raise CommandError(str(error) if is_main else None) from None  # rank 0 says it for every rank
    except NonFiniteLossError as error:
        raise CommandError(str(error) if is_main else None, status=EXIT_NON_FINITE) from None
    if result.stopped_by_signal:
        if is_main:
            print(f"stopped by a signal after step {result.step}/{result.total_steps}; checkpoint "
                  f"saved; continue with: demoe train {args.config} -o {args.output} --resume")
        return 130
    if is_main:
        print(f"trained {result.step}/{result.total_steps} steps; model directory: {result.last_dir}")
    return 0
