"""What the command modules share: the one-line error, JSON output, the grid denoiser."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn


def fail(message: str) -> int:
    """Print ``npddpm: error: <message>`` on stderr; the exit status 1."""
    print(f"npddpm: error: {message}", file=sys.stderr)
    return 1


def add_dask_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--dask ADDRESS|local:N`` and ``--shard-size N`` (see :mod:`npddpm.distributed`)."""
    parser.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local:N",
        help=f"run {what} on a Dask cluster: a scheduler address (tcp://host:8786) or local:N "
        "for N worker processes here; the result is bitwise that of one process (needs "
        "npddpm[dask])",
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=None,
        metavar="ROWS",
        help="rows per task with --dask (default: n / (4 × workers)); any size gives the "
        "same result",
    )


@contextlib.contextmanager
def dask_client(args: argparse.Namespace) -> Iterator[Any]:
    """The client of ``--dask`` (None without it), closed on exit; a bad address, a missing
    Dask or ``--shard-size`` without ``--dask`` is a ValueError with a one-line message."""
    spec = getattr(args, "dask", None)
    if spec is None:
        if getattr(args, "shard_size", None) is not None:
            raise ValueError("--shard-size applies only with --dask")
        yield None
        return
    from ..distributed import connect

    with connect(spec) as client:
        yield client


def usage_error(message: str) -> NoReturn:
    """A usage error, as the parser reports one: one line, exit status 2."""
    print(f"npddpm: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def write_json_or_fail(path: str, payload: dict) -> int:
    """Write ``payload`` to ``path`` as JSON (:func:`npddpm.io.write_json`); 0, or :func:`fail`'s 1
    with the ``OSError``'s message when the file cannot be written."""
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


# --- argument types: a bad value is a usage error naming the argument (exit 2) ----------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An ``int`` >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_int(text: str) -> int:
    """A seed: an ``int`` >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be >= 0, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An ``int`` >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def clip_norm(text: str) -> float | None:
    """A gradient-clipping norm: a finite ``float`` > 0, or ``none`` for no clipping."""
    if text.strip().lower() == "none":
        return None
    return positive_float(text)


def ema_decay(text: str) -> float:
    """An EMA decay: a ``float`` in [0, 1)."""
    value = nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1) (e.g. 0.999), got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite ``float`` > 0."""
    value = nonneg_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    """A finite ``float`` >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` for every option with a default (not for flags, not for
    ``None`` and not where the help already says its default)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help = action.help or ""
        flag = action.default is None or action.default is False  # 0 == False: use `is`
        if flag or action.default == argparse.SUPPRESS or "default" in help:
            return help
        return super()._get_help_string(action)


def check_backend(backend: str) -> None:
    """Refuse ``cuda`` without a usable GPU, before any work (Numba is imported only here)."""
    if backend != "cuda":
        return
    try:
        from numba import cuda

        available = bool(cuda.is_available())
    except Exception:  # no driver, no toolkit, a broken install: not available
        available = False
    if not available:
        raise ValueError(
            "--backend cuda needs an NVIDIA GPU with a working CUDA driver, and "
            "numba.cuda.is_available() is False here; use --backend cpu or numpy"
        )


def load_npz_array(path: str, key: str) -> Any:
    """Array ``key`` of the ``.npz`` at ``path``, or a ValueError saying what was expected."""
    import zipfile
    import zlib

    import numpy as np

    expected = f"expected an .npz file with array {key!r} (as `npddpm sample --out` writes)"
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file; {expected}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; {expected}")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            magic = f.read(6)
        what = "a .npy file (one array)" if magic == b"\x93NUMPY" else "not an .npz archive"
        raise ValueError(f"{path} is {what}; {expected}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if key not in z.files:
                raise ValueError(f"{path} has no array {key!r} (has {z.files}); give --key")
            return z[key]
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"{path} is truncated or corrupt ({exc}); {expected}") from None
    except ValueError as exc:
        if "has no array" in str(exc):
            raise
        raise ValueError(f"{path} is truncated or corrupt ({exc}); {expected}") from None


MAX_TIMESTEPS = 100_000  # the schedule tables alone are ≈ 20 float64 arrays of T


def timesteps_int(text: str) -> int:
    """A diffusion length T, 1 <= T <= :data:`MAX_TIMESTEPS`, checked before anything is
    allocated (the schedule's tables are ≈ 20 × 8 bytes × T, and sampling walks T steps)."""
    value = positive_int(text)
    if value > MAX_TIMESTEPS:
        need = 20 * 8 * value
        raise argparse.ArgumentTypeError(
            f"T={value} would need ≈ {need / 2**30:.3g} GiB for the schedule tables alone "
            f"(≈ 20 float64 arrays of T) and {value} model calls per sample; npddpm allows "
            f"T <= {MAX_TIMESTEPS} (1000 is the usual choice)"
        )
    return value
