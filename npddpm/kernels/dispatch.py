r"""The public kernel API: one signature, three backends, all validation.

Every function here takes a :class:`npddpm.Schedule`, arrays whose first axis is the batch
(any trailing shape, flattened to ``(B, D)``), one integer timestep per row, and either the
noise or a ``(seed, stream)`` for the counter-based generator of :mod:`npddpm.rng`
(the normal of element ``i``, in flat C order, is ``rng.standard_normal(seed, stream, …)[i]``).

``backend``:

``"numpy"``
    :mod:`npddpm.kernels.reference`, the specification.
``"cpu"``
    :mod:`npddpm.kernels.cpu`: Numba, fused, parallel over rows. Bitwise equal to ``numpy``,
    with the noise given and with in-kernel noise (the generator is compiled from the
    reference's own source), for any number of threads.
``"cuda"``
    :mod:`npddpm.kernels.cuda`: Numba CUDA, grid-stride loops. Accepts NumPy arrays (copied
    to and from the device) or CUDA device arrays (worked on in place, nothing copied).
    Bitwise equal under the simulator; on a GPU within a few ulp (FMA contraction; normals
    within :data:`npddpm.rng.NORMAL_ULP_BOUND` ulp), for any launch shape.

Each backend module satisfies :class:`npddpm.kernels.contract.Backend`: this module validates
the arguments, builds the kernel's named coefficient tuple (the ``*_coefs`` functions below, the
one place they are computed) and hands the backend one :class:`~npddpm.kernels.contract.KernelCall`.
The kernel modules are imported on first use, so importing this module imports no Numba.
"""

from __future__ import annotations

import numbers
from typing import Any, Protocol

import numpy as np

from .._checks import choose
from ..schedules import Schedule
from . import reference
from .contract import (
    BACKENDS,
    Backend,
    Coefs,
    DDIMCoefs,
    DDPMCoefs,
    KernelCall,
    KernelName,
    LangevinCoefs,
    QSampleCoefs,
)

__all__ = [
    "BACKENDS",
    "ddim_coefs",
    "ddim_step",
    "ddpm_coefs",
    "ddpm_step",
    "fixed_log_variance",
    "gather",
    "langevin_coefs",
    "langevin_step",
    "q_sample",
    "q_sample_coefs",
    "standard_normal",
]

_CUDA_INSTALL = (
    "install the CUDA extra with `pip install 'npddpm[cuda]'` (numba-cuda) on a machine with an "
    "NVIDIA GPU and driver; to test without a GPU, export NUMBA_ENABLE_CUDASIM=1 before Python "
    "starts (the Numba CUDA simulator)"
)


# --------------------------------------------------------------------------------------
# Backends, loaded lazily
# --------------------------------------------------------------------------------------


def _backend(name: object) -> Backend:
    choose(name, "backend", BACKENDS)
    if name == "numpy":
        return reference
    if name == "cpu":
        from . import cpu

        return cpu
    return _cuda_module()


def _cuda_module() -> Backend:
    try:
        from numba import cuda as nbcuda
    except ImportError as exc:  # pragma: no cover - numba is a dependency
        raise RuntimeError(f"backend='cuda' needs numba.cuda ({exc}); {_CUDA_INSTALL}") from None
    from numba import config as nbconfig

    # numba.config's options are set at import, not declared
    if not nbconfig.ENABLE_CUDASIM:  # type: ignore[attr-defined]
        if getattr(nbcuda, "implementation", None) != "NVIDIA":
            raise RuntimeError(
                "backend='cuda' needs the numba-cuda package (numba's built-in CUDA target is "
                f"deprecated); {_CUDA_INSTALL}"
            )
        if not nbcuda.is_available():
            raise RuntimeError(
                "backend='cuda' found no usable CUDA GPU (numba.cuda.is_available() is False: "
                f"no GPU, no driver, or no CUDA toolkit); {_CUDA_INSTALL}"
            )
    from . import cuda

    return cuda


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _is_device_array(a: object) -> bool:
    # numba device arrays (real or simulated) have copy_to_host; others the CUDA interface
    device = hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host")
    return device and not isinstance(a, np.ndarray)


class _Strided(Protocol):
    """What the checks read: an ndarray or a Numba device array (real or simulated)."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype: ...
    @property
    def ndim(self) -> int: ...


def _array(a: object, name: str, backend: str) -> Any:
    arr: _Strided
    if isinstance(a, np.ndarray):
        arr = a
        contiguous = a.flags.c_contiguous
    elif backend == "cuda" and _is_device_array(a):
        dev: Any = a  # a device array: numba's are untyped
        if not hasattr(dev, "is_c_contiguous"):  # a foreign (e.g. CuPy) device array
            from numba import cuda as nbcuda

            dev = nbcuda.as_cuda_array(dev)
        contiguous = dev.is_c_contiguous()
        arr = dev
    else:
        where = "a NumPy array" + (" or a CUDA device array" if backend == "cuda" else "")
        raise TypeError(f"{name} must be {where}, got {type(a).__name__}")
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{name} must be float32 or float64, got {arr.dtype}; cast it with "
            f"{name}.astype(np.float32) or .astype(np.float64)"
        )
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must have a non-empty batch axis (axis 0), got shape {arr.shape}"
        )
    if not contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (the kernels walk rows in memory order); pass "
            f"np.ascontiguousarray({name})"
        )
    return arr


def _like(a: object, name: str, ref: Any, ref_name: str, backend: str) -> Any:
    arr = _array(a, name, backend)
    if arr.shape != ref.shape or arr.dtype != ref.dtype:
        raise ValueError(
            f"{name} must have the shape and dtype of {ref_name}, {ref.shape} {ref.dtype}; "
            f"got {arr.shape} {arr.dtype}"
        )
    return arr


def _timesteps(t: object, batch: int, T: int) -> np.ndarray:
    if isinstance(t, numbers.Integral) and not isinstance(t, bool):
        t = np.full(batch, int(t), dtype=np.int64)
    arr = np.asarray(t)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"t must be an integer array (one timestep per row), got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(
            f"t must have shape ({batch},), one timestep per row of the batch, got {arr.shape}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= T):
        raise ValueError(
            f"t must lie in [0, {T - 1}] (the schedule has T={T} steps), got values from "
            f"{arr.min()} to {arr.max()}"
        )
    return arr.astype(np.intp)


def _schedule(schedule: object) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be an npddpm.Schedule, got {type(schedule).__name__}")
    return schedule


def _u64(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    if not 0 <= int(value) < 2**64:
        raise ValueError(f"{name} must lie in [0, 2**64), got {value}")
    return int(value)


def _noise_source(noise, seed, stream, ref, backend):
    """``(noise array or None, seed, stream)``; exactly one of noise and seed."""
    if noise is not None and seed is not None:
        raise ValueError("pass either noise= or seed= (in-kernel noise), not both")
    stream = _u64(stream, "stream")
    if noise is not None:
        return _like(noise, "noise", ref, "the input", backend), None, stream
    if seed is None:
        raise ValueError(
            "no noise source: pass noise= (an array like the input) or seed= (and stream=) for "
            "the counter-based generator"
        )
    return None, _u64(seed, "seed"), stream


def _output(out, ref, backend: str, inputs: tuple) -> Any:
    if out is None:
        return None
    out = _like(out, "out", ref, "the input", backend)
    if isinstance(out, np.ndarray):
        if not out.flags.writeable:
            raise ValueError("out is read-only; pass a writeable array")
        for a in inputs:
            if isinstance(a, np.ndarray) and np.may_share_memory(out, a):
                same = (
                    a.__array_interface__["data"][0] == out.__array_interface__["data"][0]
                    and a.strides == out.strides
                )
                if not same:
                    raise ValueError(
                        "out partly overlaps an input; pass a separate array, or the input "
                        "itself (in place)"
                    )
    return out


def _flat(a: Any) -> Any:
    return None if a is None else a.reshape(a.shape[0], -1)


def fixed_log_variance(schedule: Schedule, var_type: str = "fixed_small") -> np.ndarray:
    """The per-timestep log-variance of a fixed-variance DDPM sampler, float64, shape (T,).

    ``fixed_small``: ``posterior_log_variance_clipped``; ``fixed_large``:
    ``log(append(posterior_variance[1], betas[1:]))`` (improved-diffusion; for T = 1,
    ``log(betas)``). Pass the result to :func:`ddpm_step`.
    """
    schedule = _schedule(schedule)
    choose(var_type, "var_type", ("fixed_small", "fixed_large"))
    if var_type == "fixed_small":
        return np.array(schedule.posterior_log_variance_clipped)
    if schedule.num_timesteps == 1:
        return np.log(schedule.betas)
    return np.log(np.append(schedule.posterior_variance[1], schedule.betas[1:]))


# --------------------------------------------------------------------------------------
# Per-row coefficients: computed here, once, for every backend
# --------------------------------------------------------------------------------------


def gather(arr: Any, t: np.ndarray, dtype: Any) -> np.ndarray:
    """``arr[t]`` cast to ``dtype``: shape (B,) (improved-diffusion ``_extract_into_tensor``:
    ``th.from_numpy(arr)[t].float()``; the schedule arrays are float64)."""
    return np.asarray(arr, np.float64)[t].astype(dtype)


def q_sample_coefs(schedule: Schedule, t: np.ndarray, dtype: Any) -> QSampleCoefs:
    """``(√ᾱ_t, √(1 − ᾱ_t))`` per row, in ``dtype``."""
    return QSampleCoefs(
        gather(schedule.sqrt_alphas_cumprod, t, dtype),
        gather(schedule.sqrt_one_minus_alphas_cumprod, t, dtype),
    )


def langevin_coefs(step_size: float, batch: int, dtype: Any) -> LangevinCoefs:
    """``(δ/2, √δ)`` for every row: computed in float64, cast to ``dtype``."""
    return LangevinCoefs(
        np.full(batch, step_size / 2, dtype=dtype), np.full(batch, np.sqrt(step_size), dtype=dtype)
    )


def ddpm_coefs(schedule: Schedule, t: np.ndarray, log_variance: Any, dtype: Any) -> DDPMCoefs:
    r"""``(√(1/ᾱ), √(1/ᾱ − 1), coef1, coef2, s)`` per row, in ``dtype``.

    ``s = [t ≠ 0]·exp(½·log_variance[t])`` (improved-diffusion ``p_sample``:
    ``nonzero_mask * th.exp(0.5 * out["log_variance"])``), evaluated in ``dtype``.
    """
    dt = np.dtype(dtype)
    mask = (t != 0).astype(dt)
    return DDPMCoefs(
        gather(schedule.sqrt_recip_alphas_cumprod, t, dt),
        gather(schedule.sqrt_recipm1_alphas_cumprod, t, dt),
        gather(schedule.posterior_mean_coef1, t, dt),
        gather(schedule.posterior_mean_coef2, t, dt),
        mask * np.exp(dt.type(0.5) * gather(log_variance, t, dt)),
    )


def ddim_coefs(schedule: Schedule, t: np.ndarray, eta: float, dtype: Any) -> DDIMCoefs:
    r"""``(√(1/ᾱ), √(1/ᾱ − 1), √ᾱ_prev, √(1 − ᾱ_prev − σ²), [t ≠ 0]·σ)`` per row, in ``dtype``.

    .. math:: \sigma = \eta \sqrt{(1 - \bar\alpha_{prev})/(1 - \bar\alpha)}
              \sqrt{1 - \bar\alpha/\bar\alpha_{prev}}

    (Song et al. 2021, Eq. 16; improved-diffusion ``ddim_sample``), evaluated in ``dtype``
    from the gathered ᾱ and ᾱ_prev.
    """
    dt = np.dtype(dtype)
    one = dt.type(1.0)
    ab = gather(schedule.alphas_cumprod, t, dt)
    ab_prev = gather(schedule.alphas_cumprod_prev, t, dt)
    sigma = dt.type(eta) * np.sqrt((one - ab_prev) / (one - ab)) * np.sqrt(one - ab / ab_prev)
    mask = (t != 0).astype(dt)
    return DDIMCoefs(
        gather(schedule.sqrt_recip_alphas_cumprod, t, dt),
        gather(schedule.sqrt_recipm1_alphas_cumprod, t, dt),
        np.sqrt(ab_prev),
        np.sqrt(one - ab_prev - sigma**2),
        mask * sigma,
    )


# --------------------------------------------------------------------------------------
# The kernels
# --------------------------------------------------------------------------------------


def _run(
    kernel: KernelName, be: Backend, inputs: tuple, coefs: Coefs, clip: bool, noise: Any,
    seed: int | None, stream: int, out: Any, shape: tuple[int, ...],
) -> Any:  # fmt: skip
    """Run ``kernel`` of backend ``be`` on the flattened arrays."""
    call = KernelCall(
        kernel, tuple(_flat(a) for a in inputs), coefs, bool(clip), _flat(noise), seed, stream,
        _flat(out),
    )  # fmt: skip
    res = be.run(call)
    return res.reshape(shape) if out is None else out


def q_sample(
    schedule: Schedule,
    x_start,
    t,
    noise=None,
    *,
    seed: int | None = None,
    stream: int = 0,
    out=None,
    backend: str = "numpy",
):
    r"""Diffuse ``x_start`` to timestep ``t`` (one per row): :math:`q(x_t \mid x_0)`.

    .. math:: x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon

    (Ho et al. 2020, Eq. 4; improved-diffusion ``q_sample``).

    Parameters
    ----------
    schedule : Schedule
    x_start : ndarray, shape (B, ...), float32 or float64, C-contiguous
    t : int or array of int, shape (B,)
        Timestep of each row, in ``[0, T)``.
    noise : ndarray like ``x_start``, optional
        ε. Give either ``noise`` or ``seed``.
    seed, stream : int in [0, 2⁶⁴), optional
        Draw ε inside the kernel from :mod:`npddpm.rng` (element ``i`` in flat C order).
    out : ndarray like ``x_start``, optional
        Where to write (may be ``x_start`` itself).
    backend : {"numpy", "cpu", "cuda"}

    Returns
    -------
    x_t : array like ``x_start`` (``out`` if given)
    """
    schedule = _schedule(schedule)
    be = _backend(backend)
    x = _array(x_start, "x_start", backend)
    t = _timesteps(t, x.shape[0], schedule.num_timesteps)
    noise, seed, stream = _noise_source(noise, seed, stream, x, backend)
    out = _output(out, x, backend, (x, noise))
    coefs = q_sample_coefs(schedule, t, x.dtype)
    return _run("q_sample", be, (x,), coefs, False, noise, seed, stream, out, x.shape)


def langevin_step(
    x,
    score,
    step_size: float,
    noise=None,
    *,
    seed: int | None = None,
    stream: int = 0,
    out=None,
    backend: str = "numpy",
):
    r"""One unadjusted Langevin step, fused: :math:`x + 	frac{\delta}{2}\,g + \sqrt{\delta}\,z`.

    Parameters
    ----------
    x, score : ndarray, shape (B, ...), float32 or float64, C-contiguous
        The state and ∇ log p at it.
    step_size : float
        δ > 0; ``δ/2`` and ``√δ`` are computed in float64 and cast to the array dtype.
    noise, seed, stream, out, backend
        As :func:`q_sample`.
    """
    be = _backend(backend)
    xa = _array(x, "x", backend)
    g = _like(score, "score", xa, "x", backend)
    delta = float(step_size)
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
    noise, seed, stream = _noise_source(noise, seed, stream, xa, backend)
    out = _output(out, xa, backend, (xa, g, noise))
    coefs = langevin_coefs(delta, xa.shape[0], xa.dtype)
    return _run("langevin_step", be, (xa, g), coefs, False, noise, seed, stream, out, xa.shape)


def ddpm_step(
    schedule: Schedule,
    x_t,
    t,
    eps,
    log_variance,
    noise=None,
    *,
    clip_denoised: bool = False,
    seed: int | None = None,
    stream: int = 0,
    out=None,
    backend: str = "numpy",
):
    r"""One ancestral DDPM step :math:`x_t \to x_{t-1}` for an ε-prediction model.

    .. math::
        \hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t - 1}\,\epsilon_\theta,
        \qquad
        x_{t-1} = c_1(t)\,\hat x_0 + c_2(t)\,x_t + [t \ne 0]\,e^{\frac12 \log\sigma_t^2}\,z

    with ``c1, c2 = posterior_mean_coef1/2`` (Ho et al. 2020, Eq. 7 and Algorithm 2;
    improved-diffusion ``p_sample``), x̂₀ clipped to [−1, 1] if ``clip_denoised``.

    Parameters
    ----------
    schedule : Schedule
    x_t, eps : ndarray, shape (B, ...), float32 or float64, C-contiguous
        The current sample and the model's ε prediction.
    t : int or array of int, shape (B,)
    log_variance : array_like, shape (T,)
        The per-timestep log σ²: e.g. :func:`fixed_log_variance` (``fixed_small`` or
        ``fixed_large``); the kernel knows nothing about variance types.
    noise, seed, stream, out, backend
        As :func:`q_sample`.
    clip_denoised : bool

    Returns
    -------
    x_prev : array like ``x_t``
    """
    schedule = _schedule(schedule)
    be = _backend(backend)
    x = _array(x_t, "x_t", backend)
    e = _like(eps, "eps", x, "x_t", backend)
    t = _timesteps(t, x.shape[0], schedule.num_timesteps)
    logvar = np.asarray(log_variance)
    T = schedule.num_timesteps
    if logvar.shape != (T,) or logvar.dtype.kind not in "fiu" or logvar.dtype == bool:
        raise ValueError(
            f"log_variance must be a real array of shape ({T},), one value per timestep, got "
            f"{logvar.dtype} {logvar.shape}; see fixed_log_variance(schedule, var_type)"
        )
    if not isinstance(clip_denoised, (bool, np.bool_)):
        raise TypeError(f"clip_denoised must be a bool, got {clip_denoised!r}")
    noise, seed, stream = _noise_source(noise, seed, stream, x, backend)
    out = _output(out, x, backend, (x, e, noise))
    coefs = ddpm_coefs(schedule, t, logvar, x.dtype)
    return _run("ddpm_step", be, (x, e), coefs, clip_denoised, noise, seed, stream, out, x.shape)


def ddim_step(
    schedule: Schedule,
    x_t,
    t,
    eps,
    noise=None,
    *,
    eta: float = 0.0,
    clip_denoised: bool = False,
    seed: int | None = None,
    stream: int = 0,
    out=None,
    backend: str = "numpy",
):
    r"""One DDIM step :math:`x_t \to x_{t-1}` (Song et al. 2021, Eq. 12), η ≥ 0.

    .. math::
        \hat x_0 = \sqrt{1/\bar\alpha_t}\,x_t - \sqrt{1/\bar\alpha_t-1}\,\epsilon_\theta,\quad
        \hat\epsilon = \frac{\sqrt{1/\bar\alpha_t}\,x_t - \hat x_0}{\sqrt{1/\bar\alpha_t - 1}}

    .. math::
        x_{t-1} = \sqrt{\bar\alpha_{prev}}\,\hat x_0
        + \sqrt{1 - \bar\alpha_{prev} - \sigma^2}\,\hat\epsilon + [t \ne 0]\,\sigma z,\quad
        \sigma = \eta\sqrt{\tfrac{1-\bar\alpha_{prev}}{1-\bar\alpha}}
        \sqrt{1 - \tfrac{\bar\alpha}{\bar\alpha_{prev}}}

    ε̂ is re-derived from the (optionally clipped) x̂₀, as improved-diffusion ``ddim_sample``.
    ``ᾱ_prev`` is ``alphas_cumprod_prev[t]`` (the next index down; respace the schedule for
    strided sampling). With ``eta == 0`` no noise source is needed.

    Parameters
    ----------
    schedule, x_t, t, eps, noise, seed, stream, out, backend, clip_denoised
        As :func:`ddpm_step`.
    eta : float >= 0
        0 is deterministic DDIM, 1 has the DDPM posterior variance.

    Returns
    -------
    x_prev : array like ``x_t``
    """
    schedule = _schedule(schedule)
    be = _backend(backend)
    x = _array(x_t, "x_t", backend)
    e = _like(eps, "eps", x, "x_t", backend)
    t = _timesteps(t, x.shape[0], schedule.num_timesteps)
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not (0 <= eta < np.inf):
        raise ValueError(f"eta must be a finite real number >= 0, got {eta!r}")
    if not isinstance(clip_denoised, (bool, np.bool_)):
        raise TypeError(f"clip_denoised must be a bool, got {clip_denoised!r}")
    if eta == 0 and noise is None and seed is None:
        noise = np.zeros(x.shape, x.dtype) if isinstance(x, np.ndarray) else None
        if noise is None:
            seed = 0
    noise, seed, stream = _noise_source(noise, seed, stream, x, backend)
    out = _output(out, x, backend, (x, e, noise))
    with np.errstate(invalid="ignore"):
        coefs = ddim_coefs(schedule, t, float(eta), x.dtype)
    if not np.all(np.isfinite(coefs.direction_scale)):
        bad = int(t[np.flatnonzero(~np.isfinite(coefs.direction_scale))[0]])
        raise ValueError(
            f"eta={eta} is too large at t={bad}: 1 - alphas_cumprod_prev - sigma**2 < 0 (DDIM "
            "needs sigma**2 <= 1 - alphas_cumprod_prev); use eta <= 1"
        )
    return _run("ddim_step", be, (x, e), coefs, clip_denoised, noise, seed, stream, out, x.shape)


def standard_normal(
    seed: int, stream: int, shape: int | tuple[int, ...], dtype=np.float64, *,
    backend: str = "numpy",
):  # fmt: skip
    """The counter-based normals of :func:`npddpm.rng.standard_normal`, on any backend.

    ``cpu`` and ``cuda`` compute them in parallel (``cuda`` returns a NumPy array); ``cpu`` is
    bitwise equal to ``numpy``, ``cuda`` within :data:`npddpm.rng.NORMAL_ULP_BOUND` ulp.
    """
    be = _backend(backend)
    seed = _u64(seed, "seed")
    stream = _u64(stream, "stream")
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if isinstance(shape, (int, numbers.Integral)):  # int: narrows the annotation for mypy
        shape = (int(shape),)
    else:
        shape = tuple(int(s) for s in shape)
    return be.standard_normal(seed, stream, shape, dt)
