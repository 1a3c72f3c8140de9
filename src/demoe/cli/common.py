"""What the commands share: the error that ends a command with a message, the `--top-k` check,
and the one spelling of the model and output flags (`--weights`, `-o/--output`).

Imports nothing heavy: `demoe.cli.deblur` (and with it this module) must load without the
training stack.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demoe.config import ModelConfig

EXIT_USAGE = 2  # a usage or input error: nothing was done

WEIGHTS_HELP = "model directory (config.json + model.safetensors) or name of bundled weights"


class CommandError(Exception):
    """Ends a command: `demoe.cli.main` prints `demoe <command>: <message>` on stderr and
    returns `status`.

    message None prints nothing: under torchrun, the processes other than rank 0 stop with the
    status while rank 0 says why.
    """

    def __init__(self, message: str | None, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def check_top_k(top_k: int | Sequence[int] | None, config: ModelConfig, model: str | None = None) -> None:
    """Refuse --top-k values a model cannot use: each must be >= 1 and, for a model with
    experts, at most its number of experts (a model without experts ignores top-k).

    model: the model's name in the message, where a command takes several.
    """
    if top_k is None:
        return
    values = [top_k] if isinstance(top_k, int) else list(top_k)
    upper = config.num_experts if config.is_moe else None
    for value in values:
        if value < 1 or (upper is not None and value > upper):
            allowed = f"in 1..{upper}" if upper is not None else ">= 1"
            where = f" for {model}" if model else ""
            raise CommandError(f"--top-k must be {allowed}{where}, got {value}")


def add_weights_argument(parser: argparse.ArgumentParser, *aliases: str, help: str | None = None, **options) -> None:
    """`--weights` (plus older spellings in `aliases`, same value): the model a command uses.
    `options` go to `add_argument` (default, nargs, required, metavar)."""
    options.setdefault("default", None)
    options.setdefault("metavar", "DIR|NAME")
    parser.add_argument(
        "--weights", *aliases, dest="weights", help=help or f"{WEIGHTS_HELP} (default: the bundled default)", **options
    )


def add_output_argument(
    parser: argparse.ArgumentParser, help: str, metavar: str = "OUT", required: bool = False, positional: bool = False
) -> None:
    """`-o/--output` (also `--out`, the older spelling): where a command writes.

    positional: the command took its output as a positional argument before; it still may (an
    optional one after the others), so `output_of` has to be called to read it.
    """
    parser.add_argument(
        "-o", "--output", "--out", dest="output", metavar=metavar, default=None, help=help,
        required=required and not positional,
    )
    if positional:
        parser.add_argument(
            "positional_output", nargs="?", metavar=metavar, default=None, help="the same as -o/--output"
        )
        parser.set_defaults(output_metavar=metavar)


def output_of(args: argparse.Namespace) -> str:
    """The output of a command that takes it as a positional argument or with -o/--output
    (`add_output_argument(positional=True)`): exactly one of them."""
    positional = getattr(args, "positional_output", None)
    if positional is not None and args.output is not None:
        raise CommandError(f"the output is given twice: {positional} and -o/--output {args.output}")
    output = args.output if args.output is not None else positional
    if output is None:
        name = getattr(args, "output_metavar", "OUT")
        raise CommandError(f"{name} is required: give it as the last argument or with -o/--output {name}")
    return output
