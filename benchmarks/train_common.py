"""Shared helpers for the benchmarks: timing, a matmul probe, a table printer and JSON output.

Benchmarks are not tests: they report speed, measured on whatever machine runs them. Absolute
times move from machine to machine (±20–35 % between runs on shared 2-core machines), so every
benchmark reports ratios measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["environment", "matmul_probe", "print_table", "time_steps", "write_json"]


def time_steps(
    step: Callable[[], object], *, warmup: int = 3, min_time: float = 1.0, min_steps: int = 5
) -> float:
    """Run ``step`` ``warmup`` times, then time it for at least ``min_time`` seconds and
    ``min_steps`` calls; return the median seconds per call over blocks of calls."""
    for _ in range(warmup):
        step()
    blocks: list[float] = []
    start = time.perf_counter()
    count = 0
    while True:
        t0 = time.perf_counter()
        step()
        blocks.append(time.perf_counter() - t0)
        count += 1
        if count >= min_steps and time.perf_counter() - start >= min_time:
            break
    return statistics.median(blocks)


def matmul_probe(n: int = 1024, dtype: type = np.float32, min_time: float = 0.5) -> float:
    """Achieved GFLOP/s of an ``n × n × n`` NumPy (OpenBLAS) matrix product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    sec = time_steps(lambda: np.matmul(a, b, out=out), min_time=min_time)
    return 2.0 * n**3 / sec / 1e9


def environment() -> dict:
    """Machine, library versions and thread settings, recorded beside every result."""
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Other work on a shared machine skews every time; the 1-minute load says how much.
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "OMP_WAIT_POLICY",
    ):
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def print_table(rows: Sequence[dict], columns: Sequence[str], title: str = "") -> None:
    """Print ``rows`` (dicts) as an aligned text table of ``columns``."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if title:
        print(title)
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (creating the directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
