"""What the command modules share: the one-line error, JSON output, the grid denoiser."""

from __future__ import annotations

import sys
from typing import NoReturn


def fail(message: str) -> int:
    """Print ``npddpm: error: <message>`` on stderr; the exit status 1."""
    print(f"npddpm: error: {message}", file=sys.stderr)
    return 1


def usage_error(message: str) -> NoReturn:
    """A usage error, as the parser reports one: one line, exit status 2."""
    print(f"npddpm: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def write_json_or_fail(path: str, payload: dict) -> int:
    from ..io import write_json

    try:
        write_json(path, payload)
    except OSError as exc:
        return fail(f"cannot write {path}: {exc.strerror or exc}")
    return 0


def grid(d, den, ds):
    """``den`` re-derived from the per-pixel posterior over ``ds``'s grey levels."""
    from ..discrete import grid_denoiser

    levels = getattr(ds, "levels", None)
    if levels is None:
        raise ValueError(f"--grid needs data on known grey levels; {ds.name} has none")
    return grid_denoiser(d, den, levels=levels)
