"""The ``npddpm`` command: parses arguments, calls library functions, prints.

Errors are one line on stderr and a non-zero exit status, never a traceback.
One module per command group, each with ``register(sub)`` (its sub-parsers) and
``run(args) -> int``: :mod:`.demo`, :mod:`.train`, :mod:`.sample` (sample, nll, eval),
:mod:`.verify`, :mod:`.conform` (conform, vectors), :mod:`.bench`.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from .. import __version__
from . import bench, conform, demo, sample, train, verify


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"npddpm: error: {message}\n")


# command -> the module that registers and runs it, in the order of the help
_COMMANDS = {
    "demo": demo,
    "train": train,
    "sample": sample,
    "nll": sample,
    "eval": sample,
    "vectors": conform,
    "conform": conform,
    "verify": verify,
    "bench": bench,
}


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="npddpm", description="DDPM reference implementation in NumPy.")
    parser.add_argument("--version", action="version", version=f"npddpm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in dict.fromkeys(_COMMANDS.values()):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command not in _COMMANDS:  # pragma: no cover
        parser.error(f"unknown command {args.command!r}")
    return _COMMANDS[args.command].run(args)
