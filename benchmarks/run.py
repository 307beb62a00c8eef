"""The benchmark suite: one entry point, a printed table and a JSON file.

Usage (from the repository root; on shared machines wrap timing runs in a lock)::

    flock /tmp/npddpm-bench.lock python benchmarks/run.py [--n 1e7] [--row 1000]
        [--dtype float32] [--repeat 5] [--out benchmarks/results.json]

For each kernel (``q_sample``, ``ddpm_step``, ``ddim_step``), noise mode (given, in-kernel)
and backend (``numpy``, ``cpu``, and ``cuda`` when a GPU is present) it reports the best
time, GB/s, the ratio to the NumPy expression (``vs numpy``: NumPy time / backend time) and
the fraction of the STREAM-triad bandwidth measured in the same run (``vs triad``). The NumPy
baseline for in-kernel noise is NumPy's ``Generator.standard_normal`` plus the NumPy step
expression. For the generator: normals/s of ``np.random.default_rng().standard_normal`` and
of npddpm's counter-based normals on each backend.

Later issues add cases by writing a ``bench_*(args, triad) -> list[Result]`` function and
listing it in ``SUITES``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    Result,
    best_time,
    environment,
    numpy_triad,
    print_table,
    triad_probe,
    write_json,
)

import npddpm.kernels as K
from npddpm import Schedule

# Arrays each kernel moves: inputs read + output written (noise given / in-kernel).
_ARRAYS = {"q_sample": (3, 2), "ddpm_step": (4, 3), "ddim_step": (4, 3)}


def _cuda_available() -> bool:
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # any failure means: no usable GPU
        return False


def _calls(schedule, x, e, t, lv):
    """``{kernel: f(noise=..., seed=..., out=..., backend=...)}``."""
    return {
        "q_sample": lambda **kw: K.q_sample(schedule, x, t, **kw),
        "ddpm_step": lambda **kw: K.ddpm_step(schedule, x, t, e, lv, **kw),
        "ddim_step": lambda **kw: K.ddim_step(schedule, x, t, e, eta=1.0, **kw),
    }


def bench_kernels(args, triad: Result) -> list[Result]:
    dtype = np.dtype(args.dtype)
    B, D = args.n // args.row, args.row
    g = np.random.default_rng(0)
    x = g.standard_normal((B, D), dtype=dtype)
    e = g.standard_normal((B, D), dtype=dtype)
    z = g.standard_normal((B, D), dtype=dtype)
    schedule = Schedule.from_name("linear", 1000)
    t = g.integers(1, 1000, B)
    lv = K.fixed_log_variance(schedule)
    out = np.empty_like(x)
    gen = np.random.default_rng(1)
    zbuf = np.empty_like(x)
    calls = _calls(schedule, x, e, t, lv)
    backends = ["cpu"] + (["cuda"] if _cuda_available() else [])
    results = []
    for name, call in calls.items():
        given, rng_arrays = _ARRAYS[name]
        # NumPy baselines: the expression with the noise given, and with NumPy's generator
        t_np_given = best_time(lambda c=call: c(noise=z, out=out), repeat=args.repeat)

        def numpy_generator_then_step(c=call):
            gen.standard_normal(out=zbuf, dtype=dtype)
            c(noise=zbuf, out=out)

        t_np_rng = best_time(numpy_generator_then_step, repeat=args.repeat)
        results.append(
            Result(
                f"{name} [noise given]",
                "numpy",
                t_np_given,
                nbytes=given * x.nbytes,
                vs_numpy=1.0,
                note="the NumPy expression",
            )
        )
        results.append(
            Result(
                f"{name} [numpy rng + step]",
                "numpy",
                t_np_rng,
                nbytes=rng_arrays * x.nbytes,
                vs_numpy=1.0,
                note="Generator.standard_normal + NumPy step",
            )
        )
        for be in backends:
            tg = best_time(lambda c=call, b=be: c(noise=z, out=out, backend=b), repeat=args.repeat)
            results.append(
                Result(
                    f"{name} [noise given]",
                    be,
                    tg,
                    nbytes=given * x.nbytes,
                    vs_numpy=t_np_given / tg,
                )
            )
            tr = best_time(
                lambda c=call, b=be: c(seed=7, stream=3, out=out, backend=b), repeat=args.repeat
            )
            results.append(
                Result(
                    f"{name} [in-kernel noise]",
                    be,
                    tr,
                    nbytes=rng_arrays * x.nbytes,
                    vs_numpy=t_np_rng / tr,
                    note="vs numpy rng + step",
                )
            )
    for r in results:
        if r.gbps is not None:
            r.vs_triad = r.gbps / triad.gbps
        if "cuda" in r.backend:
            r.note = (r.note + "; host arrays, includes transfers").strip("; ")
    return results


def bench_rng(args, triad: Result) -> list[Result]:
    dtype = np.dtype(args.dtype)
    n = args.n
    buf = np.empty(n, dtype)
    gen = np.random.default_rng(0)
    t_np = best_time(lambda: gen.standard_normal(out=buf, dtype=dtype), repeat=args.repeat)
    results = [
        Result(
            "normals: Generator.standard_normal",
            "numpy",
            t_np,
            items=n,
            vs_numpy=1.0,
            note="PCG64 ziggurat, one thread",
        )
    ]
    backends = ["numpy", "cpu"] + (["cuda"] if _cuda_available() else [])
    for be in backends:
        if be == "numpy" and n > 2_000_000:  # the reference is slow; time a slice and scale
            m = 2_000_000
            t = best_time(lambda m=m: K.standard_normal(1, 2, m, dtype), repeat=2) * n / m
            note = f"reference, timed on {m:.0e} and scaled"
        else:
            t = best_time(
                lambda b=be: K.standard_normal(1, 2, n, dtype, backend=b), repeat=args.repeat
            )
            note = "Philox4x32-10 + Box-Muller" + ("; includes transfer" if be == "cuda" else "")
        results.append(
            Result("normals: npddpm counter-based", be, t, items=n, vs_numpy=t_np / t, note=note)
        )
    return results


SUITES = [bench_rng, bench_kernels]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=float, default=1e7, help="elements per array (default 1e7)")
    p.add_argument("--row", type=int, default=1000, help="row length D (default 1000)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = p.parse_args(argv)
    args.n = int(args.n) // args.row * args.row
    shape = (args.n // args.row, args.row)

    triad = triad_probe(shape, args.dtype, repeat=args.repeat)
    results = [triad, numpy_triad(shape, args.dtype, repeat=args.repeat)]
    for suite in SUITES:
        results += suite(args, triad)
    triad.vs_triad = 1.0
    for r in results[:2]:
        r.vs_triad = r.gbps / triad.gbps
    meta = environment() | {"n": args.n, "row": args.row, "dtype": args.dtype}
    print(
        f"n={args.n:.0e} {args.dtype}, rows of {args.row}; {meta['numba_threads']} threads; "
        f"load average {meta['load_average']}"
    )
    print_table(results)
    write_json(args.out, results, meta)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
