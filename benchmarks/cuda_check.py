"""Check and time the CUDA kernels on a real GPU, in one run.

Usage (on a machine with an NVIDIA GPU, numba-cuda and a CUDA toolkit)::

    python benchmarks/cuda_check.py [--n 2.5e8] [--row 1000] [--out cuda_check.json]

1. Checks (small arrays, against the NumPy spec): Philox words bitwise; normals within
   ``npddpm.rng.NORMAL_ULP_BOUND`` ulp; every kernel, float32 and float64, noise given and
   in-kernel, within a few ulp (the GPU may contract multiply-adds into FMAs); results
   bitwise independent of the launch shape.
2. Timing (float32, device arrays, CUDA events around back-to-back launches, coefficients
   prepared once): device-to-device copy bandwidth, then GB/s of each kernel and its fraction
   of the copy bandwidth. Issue-5 targets: q_sample ≥ 85 %, DDPM step with in-kernel noise
   ≥ 70 % of the copy bandwidth.

Exits non-zero when a check fails. With ``NUMBA_ENABLE_CUDASIM=1`` and a tiny ``--n`` it runs
on the simulator as a smoke test of this script (the timings then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import npddpm.kernels as K
from npddpm import Schedule, _numba, rng
from npddpm.kernels import dispatch

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
    return float((np.abs(a.astype(np.float64) - b) / spacing).max())


def within(got, ref, n_ulp: float) -> bool:
    tol = n_ulp * (np.spacing(np.abs(ref)) + np.finfo(ref.dtype).eps)
    return bool(np.all(np.abs(got - ref) <= tol))


def _calls(schedule, x, t, e):
    lv = K.fixed_log_variance(schedule)
    return {
        "q_sample": lambda **kw: K.q_sample(schedule, x, t, **kw),
        "ddpm_step": lambda **kw: K.ddpm_step(schedule, x, t, e, lv, clip_denoised=True, **kw),
        "ddim_step": lambda **kw: K.ddim_step(schedule, x, t, e, eta=0.5, **kw),
    }


def run_checks(schedule: Schedule) -> None:
    from npddpm.kernels import cuda as kcuda

    print("checks")
    n = 10_007
    words = kcuda.random_words(2**63 + 1, 5, n)
    check(np.array_equal(words, rng.random_words(2**63 + 1, 5, np.arange(n))), "Philox words")
    for dt in (np.float32, np.float64):
        ref = K.standard_normal(3, 4, n, dt)
        got = K.standard_normal(3, 4, n, dt, backend="cuda")
        u = ulps(got, ref)
        check(u <= rng.NORMAL_ULP_BOUND, f"normals {dt.__name__}: max {u:.1f} ulp")
        g = np.random.default_rng(0)
        shape = (37, 301)
        x = g.standard_normal(shape).astype(dt)
        e = g.standard_normal(shape).astype(dt)
        z = g.standard_normal(shape).astype(dt)
        t = g.integers(0, schedule.num_timesteps, shape[0])
        for name, call in _calls(schedule, x, t, e).items():
            ok = within(call(noise=z, backend="cuda"), call(noise=z), 8)
            check(ok, f"{name} {dt.__name__} noise given (≤ 8 ulp)")
            got = call(seed=9, stream=2, backend="cuda")
            z_dev = K.standard_normal(9, 2, shape, dt, backend="cuda")
            check(within(got, call(noise=z_dev), 8), f"{name} {dt.__name__} in-kernel noise")
            shapes = []
            for tpb, blocks in ((32, 3), (256, 4096), (1024, 7)):
                _numba.CUDA_THREADS_PER_BLOCK, _numba.CUDA_MAX_BLOCKS = tpb, blocks
                shapes.append(call(seed=9, stream=2, backend="cuda"))
            _numba.CUDA_THREADS_PER_BLOCK, _numba.CUDA_MAX_BLOCKS = 256, 4096
            same = all(np.array_equal(s, shapes[0]) for s in shapes)
            check(same, f"{name} {dt.__name__} independent of launch shape")


def _timer(fn, repeat: int) -> float:
    """Seconds per call: CUDA events around ``repeat`` back-to-back launches."""
    from numba import cuda

    fn()
    cuda.synchronize()
    try:
        start, stop = cuda.event(), cuda.event()
        start.record()
        for _ in range(repeat):
            fn()
        stop.record()
        stop.synchronize()
        return cuda.event_elapsed_time(start, stop) / 1e3 / repeat
    except Exception:  # the simulator has no real events
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        cuda.synchronize()
        return (time.perf_counter() - t0) / repeat


def run_timing(schedule: Schedule, n: int, row: int, repeat: int) -> list[dict]:
    from numba import cuda

    from npddpm.kernels import cuda as kcuda

    print(f"\ntiming (float32, {n:.2e} elements, rows of {row})")
    dt = np.float32
    B = n // row
    g = np.random.default_rng(0)
    host = g.standard_normal((B, row), dtype=dt)
    d_x, d_e, d_z = (cuda.to_device(host) for _ in range(3))
    d_out = cuda.device_array_like(d_x)
    t = g.integers(1, schedule.num_timesteps, B)
    nbytes = host.nbytes
    ks = kcuda.kernels(dt)
    lv = K.fixed_log_variance(schedule)
    words = rng.kernel_words(7, 3)

    def dev(coefs):
        return type(coefs)(*(cuda.to_device(np.ascontiguousarray(c)) for c in coefs))

    q_co = dev(dispatch.q_sample_coefs(schedule, t, dt))
    p_co = dev(dispatch.ddpm_coefs(schedule, t, lv, dt))
    i_co = dev(dispatch.ddim_coefs(schedule, t, 1.0, dt))
    blocks, tpb = _numba.cuda_launch_shape(n)
    rblocks, rtpb = _numba.cuda_launch_shape((n + 3) // 4)
    d_flat = cuda.device_array(n, dt)

    cases = {
        "device copy (D2D)": (lambda: d_out.copy_to_device(d_x), 2),
        "normals": (lambda: ks["standard_normal_flat"][rblocks, rtpb](*words, d_flat), 1),
        "q_sample [noise given]": (
            lambda: ks["q_sample"][blocks, tpb]((d_x,), d_z, q_co, False, d_out),
            3,
        ),
        "q_sample [in-kernel noise]": (
            lambda: ks["q_sample_rng"][rblocks, rtpb]((d_x,), q_co, False, *words, d_out),
            2,
        ),
        "ddpm_step [noise given]": (
            lambda: ks["ddpm_step"][blocks, tpb]((d_x, d_e), d_z, p_co, False, d_out),
            4,
        ),
        "ddpm_step [in-kernel noise]": (
            lambda: ks["ddpm_step_rng"][rblocks, rtpb]((d_x, d_e), p_co, False, *words, d_out),
            3,
        ),
        "ddim_step [noise given]": (
            lambda: ks["ddim_step"][blocks, tpb]((d_x, d_e), d_z, i_co, False, d_out),
            4,
        ),
        "ddim_step [in-kernel noise]": (
            lambda: ks["ddim_step_rng"][rblocks, rtpb]((d_x, d_e), i_co, False, *words, d_out),
            3,
        ),
    }
    rows = []
    copy_gbps = None
    for name, (fn, arrays) in cases.items():
        sec = _timer(fn, repeat)
        gbps = arrays * nbytes / sec / 1e9
        if copy_gbps is None:
            copy_gbps = gbps
        row_ = {"case": name, "seconds": sec, "gbps": gbps, "vs_copy": gbps / copy_gbps}
        if name == "normals":
            row_["normals_per_s"] = n / sec
        rows.append(row_)
        extra = f"  {n / sec / 1e9:.1f} G normals/s" if name == "normals" else ""
        print(f"  {name:<30} {sec * 1e3:9.3f} ms {gbps:9.1f} GB/s {gbps / copy_gbps:7.0%}{extra}")
    by = {r["case"]: r for r in rows}
    print("\ntargets")
    q = by["q_sample [noise given]"]["vs_copy"]
    d = by["ddpm_step [in-kernel noise]"]["vs_copy"]
    print(f"  q_sample ≥ 85% of copy: {q:.0%} {'met' if q >= 0.85 else 'NOT met'}")
    print(f"  DDPM in-kernel noise ≥ 70% of copy: {d:.0%} {'met' if d >= 0.70 else 'NOT met'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=float, default=2.5e8, help="elements per array for timing")
    p.add_argument("--row", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("cuda_check.json"))
    args = p.parse_args(argv)
    from numba import config as nbconfig
    from numba import cuda

    simulated = bool(nbconfig.ENABLE_CUDASIM)
    if not simulated and not cuda.is_available():
        print("no usable CUDA GPU (numba.cuda.is_available() is False); nothing to check")
        return 2
    device = "simulator" if simulated else cuda.get_current_device().name
    device = device.decode() if isinstance(device, bytes) else str(device)
    print(f"device: {device}")
    schedule = Schedule.from_name("linear", 1000)
    run_checks(schedule)
    n = int(args.n) // args.row * args.row
    rows = run_timing(schedule, n, args.row, args.repeat)
    meta = {"device": device, "n": n, "row": args.row, "failures": FAILURES}
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}; {len(FAILURES)} failed checks")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
