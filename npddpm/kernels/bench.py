r"""``npddpm bench``: time a user's kernel beside npddpm's backends and a bandwidth probe,
with its result checked against the NumPy spec in the same run.

>>> from npddpm.kernels import bench_kernel
>>> report = bench_kernel("q_sample", "mykernels:q_sample", sizes=[1e6, 1e7])  # doctest: +SKIP
>>> print(report.table())                                                 # doctest: +SKIP

Contracts
---------
A kernel is called with the arrays of its own framework (NumPy, PyTorch on the CPU or a GPU,
CuPy, JAX, Numba CUDA device arrays; see :data:`npddpm.kernels._frameworks.FRAMEWORKS`),
converted before the timed region. ``x``-like arrays are ``(B, D)``, C-contiguous, of the
cell's dtype (float32 or float64); ``t`` is int64 ``(B,)``, **one timestep per row**, in
``{0, …, T−1}`` (improved-diffusion's index: 0 is "diffused one step"); schedule arrays are
float64 ``(T,)`` (``T = 1000``, the linear schedule). Compute per-timestep coefficients from
them in float64, gather them at ``t`` and cast to the array dtype (improved-diffusion's
``_extract_into_tensor``): formulas such as ``1 − ᾱ_t`` evaluated in float32 lose up to 10⁴
ulps to cancellation and fail the check. A kernel returns one new array of shape ``(B, D)``
and the input dtype, of its framework.

``q_sample``: ``f(alphas_cumprod, x0, t, noise) -> x_t``
    :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`.
``ddpm_step``: ``f(betas, x_t, t, eps, noise) -> x_prev``, an ε-model, ``fixed_small``
    variance, no clipping. With :math:`\bar\alpha = \mathrm{cumprod}(1-\beta)`,
    :math:`\bar\alpha_{prev}[t] = \bar\alpha[t-1]` (1 at t = 0):
    :math:`\hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t-1}\,\epsilon`,
    :math:`x_{t-1} = c_1\hat x_0 + c_2 x_t + [t\ne0]\sqrt{\tilde\beta_t}\,z`,
    :math:`c_1 = \beta_t\sqrt{\bar\alpha_{prev}}/(1-\bar\alpha_t)`,
    :math:`c_2 = (1-\bar\alpha_{prev})\sqrt{1-\beta_t}/(1-\bar\alpha_t)`,
    :math:`\tilde\beta_t = \beta_t(1-\bar\alpha_{prev})/(1-\bar\alpha_t)` — no noise at t = 0.
``ddim_step``: ``f(alphas_cumprod, x_t, t, eps) -> x_prev``, η = 0 (deterministic, no
    noise), no clipping: :math:`x_{t-1} = \sqrt{\bar\alpha_{prev}}\,\hat x_0 +
    \sqrt{1-\bar\alpha_{prev}}\,\epsilon` with :math:`\hat x_0` as above.
``langevin_step``: ``f(x, score, step_size, noise) -> x_new``:
    :math:`x + \frac{\delta}{2}\,g + \sqrt\delta\,z`, ``step_size`` δ a Python float
    (:data:`STEP_SIZE`).

Other signatures: :func:`adapt` names the arguments a kernel takes, from the contract's
names and every schedule array of :class:`npddpm.Schedule` (``sqrt_alphas_cumprod``,
``posterior_mean_coef1``, …; see :data:`SCHEDULE_ARRAYS`).

Bytes moved (:data:`ARRAYS_MOVED`): the ``(B, D)`` arrays each op must read plus the one it
writes, each once (STREAM convention): ``q_sample`` 3 (x0, noise, out), ``ddpm_step`` 4
(x_t, eps, noise, out), ``ddim_step`` 3 (x_t, eps, out), ``langevin_step`` 4 (x, score,
noise, out); ``t`` and the schedule (B·8 + T·8 bytes, under 1 % with rows of 1000) are not
counted.

Timing
------
Each (dtype, size) cell times these sides: the user's kernel, npddpm's ``numpy``, ``cpu``
and (only where a GPU is usable) ``cuda`` backends called through the public API with the
same inputs (each side returns a new array, as the contract asks), and the bandwidth probe
(the STREAM triad ``a = b + s·c`` on the CPU; a device-to-device copy on a GPU). Every
side is called once untimed (compilation), then each round calls every side in turn — the
order rotated by one each round — ``inner`` times back to back (enough calls for
``min_time`` seconds), synchronising a GPU framework inside the timed region. Reported per
side: median and quartiles of the per-call times over the rounds, GB/s from the bytes
above, the fraction of the probe of its device (triad for CPU sides, copy for GPU sides),
and ``vs <backend>`` = that backend's median time ÷ this side's (> 1: this side is faster).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import math
import numbers
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import as_int, choose
from .._progress import bar
from ..schedules import Schedule
from . import _frameworks as fw
from . import dispatch as K
from ._bench_report import (
    SCHEMA_VERSION,
    BenchReport,
    Check,
    Timing,
    check_outputs,
    environment,
    measure,
)
from .contract import BACKENDS

__all__ = [
    "ARRAYS_MOVED",
    "BENCH_OPS",
    "SCHEDULE_ARRAYS",
    "SCHEMA_VERSION",
    "SIGNATURES",
    "STEP_SIZE",
    "ULP_TOLERANCE",
    "Adapted",
    "BenchReport",
    "Check",
    "Timing",
    "adapt",
    "bench_kernel",
    "check_outputs",
    "load_kernel",
]

BENCH_OPS: tuple[str, ...] = ("q_sample", "ddpm_step", "ddim_step", "langevin_step")
#: The contract's positional arguments of each op.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "q_sample": ("alphas_cumprod", "x0", "t", "noise"),
    "ddpm_step": ("betas", "x_t", "t", "eps", "noise"),
    "ddim_step": ("alphas_cumprod", "x_t", "t", "eps"),
    "langevin_step": ("x", "score", "step_size", "noise"),
}
#: ``(B, D)`` arrays each op reads plus the one it writes.
ARRAYS_MOVED: dict[str, int] = {"q_sample": 3, "ddpm_step": 4, "ddim_step": 3, "langevin_step": 4}
#: The schedule arrays (float64, ``(T,)``) an adapted kernel may ask for by name.
SCHEDULE_ARRAYS: tuple[str, ...] = (
    "betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next",
    "one_minus_alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
    "posterior_mean_coef2",
)  # fmt: skip
STEP_SIZE = 1e-3  #: δ of ``langevin_step``

# The correctness tolerance, in ulps of the dtype times the *magnitude* of each element (the
# sum of the absolute values of the terms the formula adds, e.g. |a·x0| + |b·noise|). The spec
# rounds each float64 coefficient once to the dtype (≤ ½ ulp) and evaluates at most ~6 ops, each
# within ½ ulp of its result; a correct kernel that orders, fuses (FMA on a GPU) or casts its
# coefficients differently, or takes √β̃ where the spec takes exp(½·log β̃) in the dtype (a few
# ulps in float32), stays within a few ulps of the magnitude: 16 leaves room. On top, a float64
# term for the coefficients themselves: derived from ᾱ or β by another float64 formula, the
# ill-conditioned ones (1 − ᾱ_t, 1/ᾱ_t − 1 near t = 0) differ by up to ~eps64/(1 − ᾱ_0)
# relative (≈ 1e-12 for the linear schedule), so 16·eps64/(1 − ᾱ_0) is added (it matters only
# for float64). The smallest real bug, an off-by-one timestep, changes a coefficient by ≥ β_0/2
# ≈ 5e-5 relative: ≥ 400 float32 ulps, ≥ 1e6 times the float64 tolerance.
ULP_TOLERANCE = 16


def _tolerance(dtype: np.dtype, schedule: Schedule | None) -> float:
    """The relative tolerance of the magnitudes (see :data:`ULP_TOLERANCE`)."""
    tol = ULP_TOLERANCE * float(np.finfo(dtype).eps)
    if schedule is not None:
        kappa = 1 / (1 - float(schedule.alphas_cumprod[0]))
        tol += ULP_TOLERANCE * float(np.finfo(np.float64).eps) * kappa
    return tol


# --------------------------------------------------------------------------------------
# The user's kernel
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Adapted:
    """A kernel with its arguments named (made by :func:`adapt`); calls ``fn``."""

    fn: Callable[..., Any]
    signature: tuple[str, ...]
    keywords: Mapping[str, str] = dataclasses.field(default_factory=dict)
    framework: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def adapt(
    fn: Callable[..., Any] | None = None,
    signature: str | Sequence[str] | None = None,
    *,
    keywords: Mapping[str, str] | None = None,
    framework: str | None = None,
) -> Any:
    """Name the arguments of a kernel whose signature is not the contract's.

    Parameters
    ----------
    fn : callable, optional
        The kernel; omit it to use ``adapt(...)`` as a decorator.
    signature : str or sequence of str, optional
        The quantities ``fn`` takes positionally, in order (``"x0, t, noise,
        sqrt_alphas_cumprod"``): names from the op's contract (:data:`SIGNATURES`) or schedule
        arrays (:data:`SCHEDULE_ARRAYS`). Default: the contract's.
    keywords : mapping, optional
        ``{fn's keyword: quantity}``, passed by keyword.
    framework : str, optional
        The kernel's framework (``"torch-cuda"``, …); default: detected from its module.

    Returns
    -------
    Adapted, or a decorator making one

    Examples
    --------
    >>> @adapt(signature="x0, noise, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod")
    ... def mine(x0, noise, t, a, b):
    ...     return a[t, None].astype(x0.dtype) * x0 + b[t, None].astype(x0.dtype) * noise
    >>> mine.signature[:2]
    ('x0', 'noise')
    """
    if isinstance(signature, str):
        signature = [s.strip() for s in signature.split(",") if s.strip()]
    sig = None if signature is None else tuple(signature)
    if framework is not None:
        choose(framework, "framework", fw.FRAMEWORKS)

    def wrap(f: Callable[..., Any]) -> Adapted:
        if not callable(f):
            raise TypeError(f"adapt needs a callable kernel, got {type(f).__name__}")
        return Adapted(f, sig if sig is not None else (), dict(keywords or {}), framework)

    return wrap if fn is None else wrap(fn)


def load_kernel(spec: str) -> Callable[..., Any]:
    """The callable named by ``"module:function"`` (or ``"path/to/file.py:function"``;
    ``function`` may be dotted). The current directory is importable, as for ``python -m``.

    Raises
    ------
    ValueError
        If ``spec`` is malformed, the module does not import or has no such attribute.
    TypeError
        If the attribute is not callable.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(
            f"--kernel must be module:function (e.g. mykernels:q_sample or "
            f"path/to/mykernels.py:q_sample), got {spec!r}"
        )
    mod_name, attr = spec.split(":")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ValueError(f"kernel file {mod_name} does not exist")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[path.stem] = module
            loader_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(mod_name)
    except ValueError:
        raise
    except Exception as exc:  # any failure importing the user's module
        raise ValueError(
            f"cannot import kernel module {mod_name!r} ({type(exc).__name__}: {exc}); run from "
            "its directory or give path/to/file.py:function"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a callable kernel")
    return obj


def _resolve(op: str, kernel: object) -> tuple[Any, tuple[str, ...], Mapping[str, str], str]:
    """``(callable, positional names, keyword names, framework name)``."""
    if isinstance(kernel, str):
        kernel = load_kernel(kernel)
    if not callable(kernel):
        raise TypeError(f"kernel must be a callable or 'module:function', got {kernel!r}")
    if isinstance(kernel, Adapted):
        sig = kernel.signature or SIGNATURES[op]
        kw, framework = kernel.keywords, kernel.framework or fw.detect(kernel.fn)
    else:
        sig, kw, framework = SIGNATURES[op], {}, fw.detect(kernel)
    allowed = SIGNATURES[op] + (() if op == "langevin_step" else SCHEDULE_ARRAYS)
    for name in (*sig, *kw.values()):
        if name not in allowed:
            raise ValueError(
                f"{op} has no quantity {name!r} to pass a kernel; use the contract's "
                f"({', '.join(SIGNATURES[op])})"
                + ("" if op == "langevin_step" else " or a schedule array (SCHEDULE_ARRAYS)")
            )
    return kernel, tuple(sig), kw, framework


# --------------------------------------------------------------------------------------
# Inputs, the spec, the check
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Case:
    """One set of inputs: ``x`` (x0 / x_t / x), ``e`` (eps / score), ``z`` (noise), ``t``."""

    x: np.ndarray
    e: np.ndarray
    z: np.ndarray
    t: np.ndarray

    def quantities(self, op: str, schedule: Schedule) -> dict[str, Any]:
        q: dict[str, Any] = {"x0": self.x, "x_t": self.x, "x": self.x, "eps": self.e}
        q |= {"score": self.e, "noise": self.z, "t": self.t, "step_size": STEP_SIZE}
        if op != "langevin_step":
            q |= {n: np.array(getattr(schedule, n), np.float64) for n in SCHEDULE_ARRAYS}
        return q


def _case(shape: tuple[int, int], dtype: np.dtype, T: int, seed: Sequence[int]) -> _Case:
    g = np.random.default_rng(list(seed))
    x, e, z = (g.standard_normal(shape, dtype=dtype) for _ in range(3))
    t = g.integers(0, T, shape[0]).astype(np.int64)
    t[0], t[-1] = 0, T - 1  # both ends of the schedule in every cell
    return _Case(x, e, z, t)


def _spec_call(op: str, c: _Case, schedule: Schedule, backend: str, lv: Any) -> Callable[[], Any]:
    """npddpm's public kernel for ``op`` on ``c`` (new output each call)."""
    if op == "q_sample":
        return lambda: K.q_sample(schedule, c.x, c.t, c.z, backend=backend)
    if op == "ddpm_step":
        return lambda: K.ddpm_step(schedule, c.x, c.t, c.e, lv, c.z, backend=backend)
    if op == "ddim_step":
        return lambda: K.ddim_step(schedule, c.x, c.t, c.e, eta=0.0, backend=backend)
    return lambda: K.langevin_step(c.x, c.e, STEP_SIZE, c.z, backend=backend)


def _magnitude(op: str, c: _Case, s: Schedule) -> np.ndarray:
    """Σ |terms| of the op's formula per element, float64 (the scale of the tolerance)."""
    ax, ae, az = (np.abs(a.astype(np.float64)) for a in (c.x, c.e, c.z))

    def col(name: str) -> np.ndarray:
        return np.asarray(getattr(s, name), np.float64)[c.t, None]

    if op == "q_sample":
        return col("sqrt_alphas_cumprod") * ax + col("sqrt_one_minus_alphas_cumprod") * az
    if op == "langevin_step":
        return ax + STEP_SIZE / 2 * ae + math.sqrt(STEP_SIZE) * az
    r, r1 = col("sqrt_recip_alphas_cumprod"), col("sqrt_recipm1_alphas_cumprod")
    m0 = r * ax + r1 * ae
    if op == "ddpm_step":
        sigma = np.sqrt(col("posterior_variance")) * (c.t != 0)[:, None]
        return col("posterior_mean_coef1") * m0 + col("posterior_mean_coef2") * ax + sigma * az
    # the spec evaluates √(1 − ᾱ_prev) in the array dtype (improved-diffusion's ddim_sample),
    # from ᾱ_prev rounded to it: relative error ~ eps·ᾱ_prev/(1 − ᾱ_prev) near t = 0 (a few
    # hundred float32 ulps of that term at t = 1); its magnitude carries that condition number
    ab_prev = col("alphas_cumprod_prev")
    cond = 1 + np.divide(ab_prev, 1 - ab_prev, out=np.zeros_like(ab_prev), where=ab_prev < 1)
    return np.sqrt(ab_prev) * m0 + np.sqrt(1 - ab_prev) * cond * (r * ax + m0) / r1


def _check(op: str, got: np.ndarray, want: np.ndarray, c: _Case, s: Schedule, inputs: str) -> Check:
    mag = _magnitude(op, c, s)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    finite = np.isfinite(got)
    err = np.where(finite, diff / np.maximum(mag, np.finfo(got.dtype).tiny), np.inf)
    i = int(np.argmax(err))
    row, col = divmod(i, got.shape[1])
    eps = float(np.finfo(got.dtype).eps)
    worst = {
        "row": row, "column": col, "t": int(c.t[row]),
        "yours": float(got.flat[i]), "spec": float(want.flat[i]),
    }  # fmt: skip
    tol = _tolerance(got.dtype, None if op == "langevin_step" else s)
    e = float(err.flat[i])
    return Check(got.dtype.name, (got.shape[0], got.shape[1]), inputs, e, e / eps, tol, worst)


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def _sizes(sizes: object, row: int) -> list[int]:
    if isinstance(sizes, (str, numbers.Real)):
        sizes = [sizes]
    out = []
    for s in sizes if isinstance(sizes, Iterable) else [sizes]:
        try:
            v = float(s) if isinstance(s, (numbers.Real, str)) else math.nan
        except ValueError:
            v = math.nan
        if isinstance(s, bool) or not (v >= 1 and v.is_integer() and v <= 2**34):
            raise ValueError(
                f"sizes must be whole numbers of elements per array in [1, 2**34], e.g. "
                f"1e5,1e6,1e7; got {s!r}"
            )
        n = int(v)
        if n > row and n % row:
            raise ValueError(
                f"size {n} is not a multiple of the row length {row} (arrays are (size/row, "
                f"row)); use a multiple of {row}, a size below it, or another row"
            )
        out.append(n)
    if not out:
        raise ValueError("sizes is empty; give at least one, e.g. 1e6")
    return out


def _dtypes(dtypes: object) -> list[np.dtype]:
    names = [dtypes] if isinstance(dtypes, str) else list(dtypes)  # type: ignore[call-overload]
    if not names:
        raise ValueError("dtypes is empty; give float32, float64 or both")
    out = []
    for d in names:
        try:
            dt = np.dtype(d)
        except TypeError:
            dt = np.dtype(object)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtypes must be float32 or float64, got {d!r}")
        out.append(dt)
    return out


def _backends(backends: object) -> list[str]:
    if backends is None:
        return ["numpy", "cpu"] + (["cuda"] if fw.gpu_usable() else [])
    names = [backends] if isinstance(backends, str) else list(backends)  # type: ignore[call-overload]
    for b in names:
        choose(b, "backend", BACKENDS)
    if "cuda" in names and not fw.gpu_usable():
        raise ValueError("backend 'cuda' needs a usable NVIDIA GPU and there is none here; drop it")
    return list(dict.fromkeys(names))


def _user_call(
    fn: Any, sig: tuple[str, ...], kw: Mapping[str, str], frame: fw.Framework,
    q: dict[str, Any], name: str,
) -> tuple[Callable[[], Any], np.ndarray]:  # fmt: skip
    """``(timed thunk, first result as NumPy)``; conversions happen here, untimed."""
    conv = {k: frame.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in q.items()}
    args = [conv[n] for n in sig]
    kwargs = {k: conv[n] for k, n in kw.items()}
    x = q["x"]
    try:
        res = fn(*args, **kwargs)
        frame.sync(res)
    except Exception as exc:  # the user's kernel failed: a finding, named
        raise RuntimeError(
            f"kernel {name} raised {type(exc).__name__}: {exc} (inputs {x.dtype} {x.shape})"
        ) from exc
    got = frame.to_numpy(res, f"kernel {name}")
    if got.shape != x.shape:
        raise ValueError(
            f"kernel {name} returned shape {got.shape} for inputs of shape {x.shape}; it must "
            "return one array of the inputs' shape"
        )
    if got.dtype != x.dtype:
        raise TypeError(
            f"kernel {name} returned {got.dtype} for {x.dtype} inputs; return the inputs' dtype "
            f"(compute coefficients in float64, then cast them to {x.dtype})"
        )

    def call() -> None:
        frame.sync(fn(*args, **kwargs))

    return call, got


def _cuda_side(op: str, c: _Case, schedule: Schedule, lv: Any) -> Callable[[], Any]:
    nb = fw.get("numba-cuda")
    d = _Case(nb.from_numpy(c.x), nb.from_numpy(c.e), nb.from_numpy(c.z), c.t)
    spec = _spec_call(op, d, schedule, "cuda", lv)
    return lambda: nb.sync(spec())


def bench_kernel(
    op: str,
    kernel: Callable[..., Any] | str,
    *,
    sizes: Iterable[float | str] = (1e5, 1e6, 1e7),
    dtypes: Iterable[str] = ("float32", "float64"),
    rounds: int = 5,
    backends: Iterable[str] | None = None,
    framework: str | None = None,
    schedule: Schedule | None = None,
    row: int = 1000,
    min_time: float = 0.005,
    seed: int = 0,
    progress: bool | None = False,
) -> BenchReport:
    """Check a user's kernel against the NumPy spec, then time it beside npddpm.

    Parameters
    ----------
    op : {"q_sample", "ddpm_step", "ddim_step", "langevin_step"}
    kernel : callable, Adapted or str
        A kernel of the op's contract (module docstring), one made by :func:`adapt`, or
        ``"module:function"`` (:func:`load_kernel`).
    sizes : iterable of int
        Elements per array; arrays are ``(size // row, row)`` (one row below ``row``).
    dtypes : iterable of {"float32", "float64"}
    rounds : int
        Timed rounds (samples per side).
    backends : iterable of {"numpy", "cpu", "cuda"}, optional
        Default ``numpy``, ``cpu``, and ``cuda`` where a GPU is usable.
    framework : str, optional
        The kernel's framework (:data:`npddpm.kernels._frameworks.FRAMEWORKS`); default
        detected from the modules its module uses (torch is taken to mean the CPU).
    schedule : Schedule, optional
        Default ``Schedule.from_name("linear", 1000)``.
    row : int
        Row length D.
    min_time : float
        Seconds each side's sample lasts at least (short calls are repeated).
    seed : int
        Of the inputs (standard normals; timesteps uniform, with 0 and T − 1 always present).
    progress : bool or None
        A bar counting finished (dtype, size) cells on stderr (None: only on a terminal).

    Returns
    -------
    BenchReport
        ``.correct`` is False when any check failed; the timings are reported regardless.

    Raises
    ------
    ValueError, TypeError
        For a bad op, kernel, size, dtype or backend, or a result of the wrong shape or dtype.
    RuntimeError
        If the kernel's framework is not installed, or the kernel raises.
    """
    choose(op, "op", BENCH_OPS)
    schedule = Schedule.from_name("linear", 1000) if schedule is None else schedule
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be an npddpm.Schedule, got {type(schedule).__name__}")
    row, rounds = as_int(row, "row", minimum=1), as_int(rounds, "rounds", minimum=1)
    size_list, dtype_list = _sizes(sizes, row), _dtypes(dtypes)
    backend_list = _backends(backends)
    name = kernel if isinstance(kernel, str) else _qualname(kernel)
    fn, sig, kw, fw_name = _resolve(op, kernel)
    frame = fw.get(choose(framework, "framework", fw.FRAMEWORKS) if framework else fw_name)
    _ = frame.module  # a framework that is not installed fails here, before any work
    T, lv = schedule.num_timesteps, K.fixed_log_variance(schedule)
    checks: list[Check] = []
    timings: list[Timing] = []
    with bar(len(dtype_list) * len(size_list), f"bench {op}", progress, unit="cell") as cells:
        for dtype in dtype_list:
            c = _case((T, 16), dtype, T, (seed, 0, dtype.itemsize))
            c.t = np.arange(T, dtype=np.int64)
            _, got = _user_call(fn, sig, kw, frame, c.quantities(op, schedule), name)
            want = _spec_call(op, c, schedule, "numpy", lv)()
            checks.append(_check(op, got, want, c, schedule, "every timestep, 16 columns"))
            for size in size_list:
                shape = (size // min(row, size), min(row, size))
                c = _case(shape, dtype, T, (seed, size, dtype.itemsize))
                call, got = _user_call(fn, sig, kw, frame, c.quantities(op, schedule), name)
                want = _spec_call(op, c, schedule, "numpy", lv)()
                check = _check(op, got, want, c, schedule, "the timed inputs")
                checks.append(check)
                del got, want
                nbytes = ARRAYS_MOVED[op] * size * dtype.itemsize

                timing = functools.partial(Timing, dtype.name, size, shape)
                user = timing("yours", "user", "gpu" if frame.gpu else "cpu", nbytes)
                user.correct = check.passed
                sides = [(user, call)]
                for b in backend_list:
                    thunk = _cuda_side(op, c, schedule, lv) if b == "cuda" else None
                    thunk = thunk or _spec_call(op, c, schedule, b, lv)
                    device = "gpu" if b == "cuda" else "cpu"
                    sides.append((timing(b, "npddpm", device, nbytes), thunk))
                devices = {t.device for t, _ in sides}
                if "cpu" in devices:
                    tri = timing("stream_triad", "probe", "cpu", 3 * size * dtype.itemsize)
                    sides.append((tri, fw.triad_probe(shape, dtype)))
                if "gpu" in devices:
                    gpu = frame if frame.gpu else fw.get("numba-cuda")
                    copy = timing("device_copy", "probe", "gpu", 2 * size * dtype.itemsize)
                    sides.append((copy, gpu.copy_probe(shape, dtype)))
                measure(sides, rounds, float(min_time))
                cell = [t for t, _ in sides]
                probe = {t.device: t for t in cell if t.kind == "probe"}
                for t in cell:
                    t.of_probe = t.gbps / probe[t.device].gbps
                    if t.kind != "probe":
                        t.vs = {o.side: o.median / t.median for o in cell if o.kind == "npddpm"}
                timings += cell
                del sides, c, call
                cells.update()
    env = environment()
    if frame.name != "numpy":
        mod = sys.modules.get(frame.name.split("-")[0]) or frame.module
        env[frame.name] = str(getattr(mod, "__version__", "?"))
    return BenchReport(
        op, name, frame.name, sig, rounds, row, T, tuple(backend_list),
        ARRAYS_MOVED[op], checks, timings, env,
    )  # fmt: skip


def _qualname(obj: object) -> str:
    inner = obj.fn if isinstance(obj, Adapted) else obj
    mod = getattr(inner, "__module__", None) or "?"
    return f"{mod}:{getattr(inner, '__qualname__', type(inner).__name__)}"
