"""Shared helpers of the benchmark harness: timing, the bandwidth probe, the result table.

Benchmarks are not tests: they check nothing and report speed. Every ratio they print is
taken within one run (kernel vs NumPy, kernel vs the STREAM-triad probe), because absolute
times move between machines and between runs on shared machines.

Later issues add their cases by appending :class:`Result` rows from their own ``bench_*``
function (see ``benchmarks/run.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark this checkout, not some installed npddpm
    sys.path.insert(0, str(ROOT))


@dataclasses.dataclass
class Result:
    """One benchmark row. ``gbps`` counts the bytes the kernel must move (STREAM
    convention: each array read or written once, no write-allocate traffic)."""

    case: str
    backend: str
    seconds: float
    nbytes: int | None = None
    items: int | None = None
    vs_numpy: float | None = None
    vs_triad: float | None = None
    note: str = ""

    @property
    def gbps(self) -> float | None:
        return None if self.nbytes is None else self.nbytes / self.seconds / 1e9

    @property
    def items_per_s(self) -> float | None:
        return None if self.items is None else self.items / self.seconds

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["gbps"] = self.gbps
        d["items_per_s"] = self.items_per_s
        return d


def best_time(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> float:
    """Best wall time of ``repeat`` calls after ``warmup`` untimed calls (compilation goes
    in the warm-up, as asv's ``setup``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


_TRIAD = None


def _triad_kernel():
    global _TRIAD
    if _TRIAD is None:
        from numba import njit, prange

        @njit(parallel=True, fastmath=False, cache=False)
        def triad(a, b, c, s):
            B, D = a.shape
            for r in prange(B):
                for j in range(D):
                    a[r, j] = b[r, j] + s * c[r, j]

        _TRIAD = triad
    return _TRIAD


def triad_probe(shape: tuple[int, int], dtype, *, repeat: int = 5) -> Result:
    """STREAM triad ``a = b + s·c`` with Numba, parallel over rows: the memory-bandwidth
    probe (3 arrays moved) that the kernels are compared with."""
    triad = _triad_kernel()
    b = np.ones(shape, dtype)
    c = np.ones(shape, dtype)
    a = np.empty(shape, dtype)
    s = np.dtype(dtype).type(3.0)
    t = best_time(lambda: triad(a, b, c, s), repeat=repeat)
    return Result("stream_triad", "cpu", t, nbytes=3 * a.nbytes, note="bandwidth probe")


def numpy_triad(shape: tuple[int, int], dtype, *, repeat: int = 5) -> Result:
    b = np.ones(shape, dtype)
    c = np.ones(shape, dtype)
    a = np.empty(shape, dtype)
    s = np.dtype(dtype).type(3.0)

    def run():
        np.multiply(c, s, out=a)
        np.add(a, b, out=a)

    t = best_time(run, repeat=repeat)
    return Result("stream_triad", "numpy", t, nbytes=3 * a.nbytes, note="two ufunc passes")


def environment() -> dict[str, Any]:
    import numba

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": _threading_layer(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _threading_layer() -> str | None:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return None


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def print_table(results: list[Result]) -> None:
    header = (
        f"{'case':<34} {'backend':<8} {'time ms':>10} {'GB/s':>7} {'items/s':>10} "
        f"{'vs numpy':>9} {'vs triad':>9}  note"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.case:<34} {r.backend:<8} {r.seconds * 1e3:>10.2f} {_fmt(r.gbps, '.1f'):>7} "
            f"{_fmt(r.items_per_s and r.items_per_s / 1e6, '.0f') + ('M' if r.items else ''):>10} "
            f"{_fmt(r.vs_numpy, '.2f'):>9} {_fmt(r.vs_triad, '.0%'):>9}  {r.note}"
        )


def write_json(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [r.as_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def run_worker(script: str, kind: str, cfg: dict) -> dict:
    """Run ``script --worker kind --cfg JSON`` in a fresh process with ``cfg["threads"]`` BLAS
    threads and return the JSON its last output line holds (one BLAS pool per process)."""
    import subprocess

    env = {"OMP_NUM_THREADS": str(cfg["threads"]), "OPENBLAS_NUM_THREADS": str(cfg["threads"])}
    out = subprocess.run(
        [sys.executable, script, "--worker", kind, "--cfg", json.dumps(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])

