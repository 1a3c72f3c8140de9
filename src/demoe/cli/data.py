"""`demoe data`: dataset tools (subcommands registered by their own modules)."""

from __future__ import annotations

import argparse

from demoe.cli.synth import add_synth_parser


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare datasets", description="Prepare datasets.")
    data_subparsers = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    add_synth_parser(data_subparsers)
