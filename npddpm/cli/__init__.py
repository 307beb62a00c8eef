"""The ``npddpm`` command: parses arguments, calls library functions, prints.

Errors are one line on stderr and a non-zero exit status, never a traceback.
One module per command group, each with ``register(sub)`` (its sub-parsers) and
``run(args) -> int``: :mod:`.demo`, :mod:`.train`, :mod:`.sample` (sample, nll, eval),
:mod:`.verify`, :mod:`.conform` (conform, vectors), :mod:`.bench`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from .. import __version__
from . import bench, conform, demo, sample, train, verify
from .common import HelpFormatter


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)  # every --help shows defaults
        super().__init__(*args, **kwargs)

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
    """Run the ``npddpm`` command line; return its exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The command's status; 2 when no command is given, 1 when a ``ValueError``,
        ``TypeError``, ``OSError`` or ``CheckpointError`` escapes it (printed as one line on
        stderr, re-raised when ``NPDDPM_DEBUG`` is set and not ``0``), 130 on Ctrl-C.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("npddpm: error: give a command (npddpm --help lists them)", file=sys.stderr)
        return 2
    if args.command not in _COMMANDS:  # pragma: no cover
        parser.error(f"unknown command {args.command!r}")
    from ..io import CheckpointError

    try:
        return _COMMANDS[args.command].run(args)
    except (ValueError, TypeError, OSError, CheckpointError) as exc:
        # the safety net: a library error is one line; NPDDPM_DEBUG=1 shows the traceback
        if os.environ.get("NPDDPM_DEBUG", "") not in ("", "0"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"npddpm: error: {message} (NPDDPM_DEBUG=1 shows where)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("npddpm: interrupted", file=sys.stderr)
        return 130
