"""The ``npddpm`` command: parses arguments, calls library functions, prints.

Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"npddpm: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="npddpm", description="DDPM reference implementation in NumPy.")
    parser.add_argument("--version", action="version", version=f"npddpm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = sub.add_parser("demo", help="train, sample and evaluate on the embedded default")
    demo.add_argument("--out", default="npddpm-demo", help="output directory")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        print(
            "npddpm demo: not built yet — training lands with the main-job issue; "
            "the schedules and their checks are available now (see README)."
        )
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
