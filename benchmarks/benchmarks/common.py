"""Shared pieces of the asv suite: the parameter grids, the arrays, the byte counts, the
bandwidth probes and the median timer used by the ``track_`` benchmarks.

Bytes moved per call (STREAM convention: every array the kernel must read or write counted
once; no write-allocate traffic; the per-row coefficient vectors, at most five values per row
of :data:`ROW` elements, i.e. under 0.5 % of one array, are not counted):

====================  ===========  ===============
kernel                noise given  in-kernel noise
====================  ===========  ===============
``q_sample``          3 arrays     2 arrays        (x₀, [ε], out)
``ddpm_step``         4 arrays     3 arrays        (x_t, ε_θ, [z], out)
``ddim_step``         4 arrays     3 arrays        (x_t, ε_θ, [z], out)
``langevin_step``     4 arrays     3 arrays        (x, score, [z], out)
``standard_normal``   1 array                      (out)
STREAM triad          3 arrays                     (b, c read; a written)
====================  ===========  ===============

An array is ``n`` elements of the benchmark's dtype. ``cuda`` cases work on device arrays
(nothing copied but the per-row coefficients, which the public API copies each call), except
``standard_normal``, whose public API returns a host array (its time includes the copy back).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: Elements per array, in rows of ``ROW``.
SIZES = [100_000, 1_000_000, 10_000_000]
ROW = 1000
DTYPES = ["float32", "float64"]
BACKENDS = ["numpy", "cpu", "cuda"]
NOISE = ["given", "in-kernel"]
KERNELS = ["q_sample", "ddpm_step", "ddim_step", "langevin_step"]

#: The numpy backend's in-kernel noise is the reference Philox generator (a specification,
#: about 0.2 µs per normal): those cases are timed up to this many elements only.
REFERENCE_RNG_MAX = 1_000_000

#: Arrays moved per call: ``ARRAYS[kernel][noise]`` (see the module docstring).
ARRAYS = {
    "q_sample": {"given": 3, "in-kernel": 2},
    "ddpm_step": {"given": 4, "in-kernel": 3},
    "ddim_step": {"given": 4, "in-kernel": 3},
    "langevin_step": {"given": 4, "in-kernel": 3},
    "standard_normal": {"given": 1, "in-kernel": 1},
}


def cuda_usable() -> bool:
    """A real CUDA GPU with numba-cuda (not the simulator: it is far too slow to time)."""
    try:
        from numba import config, cuda

        if config.ENABLE_CUDASIM:
            return False
        return getattr(cuda, "implementation", None) == "NVIDIA" and bool(cuda.is_available())
    except Exception:  # no numba-cuda, no driver, no GPU: not usable
        return False


def require(backend: str, n: int, noise: str = "given") -> None:
    """Raise ``NotImplementedError`` (asv then skips the case) for a case that cannot or
    should not run here."""
    if backend == "cuda" and not cuda_usable():
        raise NotImplementedError("backend 'cuda' needs an NVIDIA GPU with numba-cuda")
    if backend == "numpy" and noise == "in-kernel" and n > REFERENCE_RNG_MAX:
        raise NotImplementedError(
            f"the numpy reference generator is timed up to {REFERENCE_RNG_MAX:.0e} elements"
        )


def preload() -> None:
    """Import Numba and the CPU kernels and initialise Numba's compiler (a trivial function
    compiled), but start no threads and touch no GPU. Called once by asv's fork server
    (``launch_method: forkserver`` in ``asv.conf.json``, see ``__init__.py``): every
    benchmark process forked from it then skips ~2 s of imports."""
    import numba

    import npddpm.kernels.cpu
    import npddpm.samplers  # noqa: F401

    numba.njit(lambda v: v + 1)(1)


def synchronize(backend: str) -> None:
    if backend == "cuda":
        from numba import cuda

        cuda.synchronize()


def arrays(n: int, dtype: str, count: int) -> list[np.ndarray]:
    """``count`` distinct C-contiguous ``(n // ROW, ROW)`` arrays with values in [-1, 1]
    (cheap to build; the kernels have no data-dependent branches with clipping off)."""
    base = np.linspace(-1.0, 1.0, n).astype(dtype).reshape(n // ROW, ROW)
    out = [base]
    for k in range(1, count):
        out.append(np.multiply(base, (-1) ** k * (1.0 - 0.1 * k), dtype=dtype))
    return out


def to_backend(a: np.ndarray, backend: str) -> Any:
    if backend == "cuda":
        from numba import cuda

        return cuda.to_device(a)
    return a


def kernel_call(kernel: str, n: int, dtype: str, backend: str, noise: str) -> Callable[[], Any]:
    """A no-argument call of ``kernel`` on fresh arrays (writing into a preallocated ``out``),
    synchronised on ``cuda``. Timesteps cycle through 1..999 (the noise term is active)."""
    import npddpm.kernels as K
    from npddpm import Schedule

    schedule = Schedule.from_name("linear", 1000)
    x, e, z, out = (to_backend(a, backend) for a in arrays(n, dtype, 4))
    t = np.arange(n // ROW) % 999 + 1
    kw: dict[str, Any] = {"out": out, "backend": backend}
    if noise == "given":
        kw["noise"] = z
    else:
        kw.update(seed=7, stream=3)
    if kernel == "q_sample":

        def f() -> Any:
            return K.q_sample(schedule, x, t, **kw)
    elif kernel == "ddpm_step":
        lv = K.fixed_log_variance(schedule)

        def f() -> Any:
            return K.ddpm_step(schedule, x, t, e, lv, **kw)
    elif kernel == "ddim_step":

        def f() -> Any:
            return K.ddim_step(schedule, x, t, e, eta=1.0, **kw)
    elif kernel == "langevin_step":

        def f() -> Any:
            return K.langevin_step(x, e, 1e-3, **kw)
    else:
        raise ValueError(f"unknown kernel {kernel!r}")

    def call() -> None:
        f()
        synchronize(backend)

    return call


#: Seconds a ``track_`` benchmark spends timing (it makes 5 to 100 calls within it).
TRACK_BUDGET = 0.5


def _calls_within(seconds_per_call: float, budget: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(budget / max(seconds_per_call, 1e-9))))


def median_seconds(fn: Callable[[], object], *, budget: float | None = None) -> float:
    """Median wall time of ``fn`` over 5 to 100 calls (as many as fit in about ``budget``
    seconds, default :data:`TRACK_BUDGET`), after one untimed call."""
    fn()
    t0 = time.perf_counter()
    fn()
    k = _calls_within(time.perf_counter() - t0, budget or TRACK_BUDGET, 5, 100)
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def alternated_medians(
    fns: list[Callable[[], object]], *, budget: float | None = None
) -> list[float]:
    """Median time of each of ``fns``, called in turn for 5 to 100 rounds (as many as fit in
    about ``budget`` seconds, default :data:`TRACK_BUDGET`) after one untimed call each, so
    that a ratio between them is taken under the same machine load."""
    for fn in fns:
        fn()
    t0 = time.perf_counter()
    for fn in fns:
        fn()
    k = _calls_within(time.perf_counter() - t0, budget or TRACK_BUDGET, 5, 100)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(k):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


_TRIADS: dict[str, Any] = {}


def _cpu_triad() -> Any:
    """The host triad, cached on disk by Numba (compiling it costs ~1.5 s a process). The
    cache records this module's name; if it was filled under another name (this file imported
    as something other than ``benchmarks.common``), loading fails and the triad is compiled
    without the cache instead."""
    if "cpu" not in _TRIADS:
        from numba import njit, prange

        def triad_py(a, b, c, s):  # pragma: no cover - compiled
            B, D = a.shape
            for r in prange(B):
                for j in range(D):
                    a[r, j] = b[r, j] + s * c[r, j]

        cached = njit(parallel=True, fastmath=False, cache=True)(triad_py)

        def first_call(a, b, c, s):
            try:
                cached(a, b, c, s)
                _TRIADS["cpu"] = cached
            except ImportError:
                _TRIADS["cpu"] = njit(parallel=True, fastmath=False, cache=False)(triad_py)
                _TRIADS["cpu"](a, b, c, s)

        _TRIADS["cpu"] = first_call
    return _TRIADS["cpu"]


def _cuda_triad() -> Any:  # pragma: no cover - needs a GPU
    if "cuda" not in _TRIADS:
        from numba import cuda

        @cuda.jit(fastmath=False)
        def triad(a, b, c, s):
            for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
                a[i] = b[i] + s * c[i]

        _TRIADS["cuda"] = triad
    return _TRIADS["cuda"]


def triad_call(n: int, dtype: str, backend: str) -> Callable[[], None]:
    """The STREAM triad ``a = b + s·c`` (3 arrays moved), the memory-bandwidth probe: Numba,
    parallel over rows, on the host (``numpy`` and ``cpu``); a grid-stride kernel on the
    device (``cuda``). Compiled (or loaded from Numba's cache) by the first call."""
    b, c, a = arrays(n, dtype, 3)
    s = np.dtype(dtype).type(3.0)
    if backend == "cuda":
        from numba import cuda

        kernel = _cuda_triad()
        da, db, dc = (cuda.to_device(v.reshape(-1)) for v in (a, b, c))
        launch = kernel[min(4096, -(-n // 256)), 256]

        def run_cuda() -> None:
            launch(da, db, dc, s)
            cuda.synchronize()

        return run_cuda

    def run() -> None:
        _cpu_triad()(a, b, c, s)  # the cached kernel, once the first call has loaded it

    return run


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9
