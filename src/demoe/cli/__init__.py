"""The `demoe` command: subcommands that parse arguments and call the library.

Each command group lives in its own module with `add_parsers(subparsers)`; every parser sets
`handler`, a function of the parsed arguments returning the exit status. A handler that cannot go
on raises `demoe.cli.common.CommandError`: `main` prints `demoe <command>: <message>` on stderr
and returns its status (2 for usage and input errors).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from demoe import __version__
from demoe.cli.common import EXIT_USAGE, CommandError
from demoe.extras import extra_for, missing_extra_message

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process stopped by Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: importing them loads PyTorch (seconds), and `main` has to
    # be running to turn a Ctrl-C during that time into one line instead of a traceback.
    from demoe.cli import analyze, data, deblur, demo, evaluate, export, metrics, model_commands, train

    parser = argparse.ArgumentParser(
        prog="demoe",
        description="All-in-one image deblurring with a mixture-of-experts decoder (DeMoE).",
    )
    parser.add_argument("--version", action="version", version=f"demoe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (model_commands, deblur, data, train, evaluate, metrics, analyze, export, demo):
        module.add_parsers(subparsers)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's parser sets `command_name`, its full name ("demoe analyze cost"),
    the prefix of its error messages; the innermost parser's default wins."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_name=command.prog)
                _name_commands(command)


@contextlib.contextmanager
def _ctrl_c_exits_at_once() -> Iterator[None]:
    """While the subcommands import PyTorch, Ctrl-C ends the process at once: one line, status
    130. Raised there, the KeyboardInterrupt can come out of C code that runs Python source
    (`PyRun_String`), and CPython then marks it unhandled and kills itself with SIGINT on exit
    whatever `main` returns (status -2, seen in one start-up of three). No command has begun, so
    nothing is lost. Only where SIGINT has Python's own handler, in the main thread: an ignored
    SIGINT, or an embedding program's handler, stays as it is."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _exit_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_interrupted(signum: int, frame: object) -> None:
    sys.stderr.write("\ndemoe: interrupted\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    try:
        with _ctrl_c_exits_at_once():
            parser = build_parser()
        args = parser.parse_args(argv)
        try:
            return int(args.handler(args) or 0)
        except CommandError as error:
            if error.message is not None:
                print(f"{args.command_name}: {error.message}", file=sys.stderr)
            return error.status
        except ModuleNotFoundError as error:
            if extra_for(error) is None:
                raise  # not an optional package: a broken install or a bug, keep the traceback
            print(f"demoe {args.command}: {missing_extra_message(error)}", file=sys.stderr)
            return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM where a command maps it) outside a command's own handling
        print("\ndemoe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
