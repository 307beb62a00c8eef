r"""Samplers: one free function per sampler, all with the same signature.

``sampler(diffusion, denoiser, x_T_or_shape, *, seed=0, noise=None, backend="numpy",
clip_denoised=True, denoised_fn=None, variance="model", progress=False, callback=None,
return_trajectory=False)`` (``ddim`` adds ``eta``).

* ``denoiser(x_t, t) -> model_output`` is called with the **original** timesteps
  ``diffusion.model_timesteps(index)``, also when the diffusion is respaced.
* ``x_T_or_shape``: an array x_T (used as given) or a shape, in which case x_T ~ N(0, I) is
  drawn from ``seed``.
* Noise: the step from index t uses ``noise[t]`` when ``noise`` (shape ``(T, *shape)``) is
  given, otherwise ``_step_noise(seed, step, shape, dtype)``, a pure function of
  ``(seed, step)`` with step 0 for x_T and step i for the i-th reverse step. The same seed
  therefore gives the same samples, whatever happens in between.
* ``variance="exact"``: the exact reverse covariance
  ``S·I + P²·Cov[x₀ | x_t]`` with S = β̃_t, P = coef1 (DDPM) or S = σ_t², P = √ᾱ_prev −
  √(1 − ᾱ_prev − σ²)·√ᾱ/√(1 − ᾱ) (DDIM), noise kept at t = 0. It needs a denoiser with an
  ``x0_covariance(x_t, t)`` method such as :meth:`npddpm.analytic.GaussianMixture.denoiser`;
  with it the oracle sampler reproduces Gaussian data exactly (see
  :func:`npddpm.analytic.sampler_moments`). It makes DDIM stochastic even at η = 0 (P ≠ 0).
  The covariance is formed per row, (B, D, D), so it is meant for low-dimensional data.
* ``clip_denoised=True`` (improved-diffusion's default) clips x̂₀ to [−1, 1]; pass False for
  data outside [−1, 1] and for any comparison with the exact moments (clipping is not affine).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from . import rng
from ._checks import choose
from .diffusion import DenoisedFn, GaussianDiffusion

__all__ = ["BACKENDS", "annealed_langevin", "ddim", "ddpm", "langevin", "predictor_corrector"]

BACKENDS = ("numpy", "cpu", "cuda")
Array = np.ndarray
Denoiser = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _step_noise(seed: int, step: int, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """Standard normal noise for ``step`` under ``seed``: a pure function of (seed, step).

    The single place where samplers draw random numbers: the counter-based generator
    (:func:`npddpm.rng.standard_normal`, Philox4x32-10, stream = step) that the ``cpu`` and
    ``cuda`` kernels evaluate in-kernel, so every backend uses the same noise.
    """
    dt = np.dtype(dtype)
    gen_dtype = dt if dt in (np.dtype(np.float32), np.dtype(np.float64)) else np.float64
    return rng.standard_normal(int(seed), int(step), shape, gen_dtype).astype(dt, copy=False)


def _kernel_log_variance(diffusion: GaussianDiffusion) -> Array | None:
    """The per-timestep log σ² the fused kernels use, or None if the kernels cannot run this
    diffusion (they implement ε-models with fixed variances, improved-diffusion semantics)."""
    p = diffusion.profile
    if (
        diffusion.mean_type != "eps"
        or diffusion.var_type not in ("fixed_small", "fixed_large")
        or p.last_step_noise != "index"
        or p.xstart_from_eps != "recip"
        or not p.ddim_rederive_eps
    ):
        return None
    key = "small_logvar" if diffusion.var_type == "fixed_small" else "large_logvar"
    return np.asarray(diffusion._tab[key])


def _check_kernel_path(diffusion, backend, variance, denoised_fn) -> Array | None:
    if backend == "numpy":
        return None
    lv = _kernel_log_variance(diffusion)
    if lv is None or variance != "model" or denoised_fn is not None:
        raise ValueError(
            f"backend={backend!r} runs the fused kernels, which implement ε-prediction with "
            "fixed_small/fixed_large variances, variance='model' and no denoised_fn "
            f"(got mean_type={diffusion.mean_type!r}, var_type={diffusion.var_type!r}, "
            f"variance={variance!r}); use backend='numpy' for this configuration"
        )
    return lv


def _setup(diffusion, denoiser, x_T_or_shape, seed, noise, backend, variance):
    if not isinstance(diffusion, GaussianDiffusion):
        raise TypeError(
            f"diffusion must be an npddpm.GaussianDiffusion, got {type(diffusion).__name__}"
        )
    if not callable(denoiser):
        raise TypeError("denoiser must be callable as denoiser(x_t, t) -> model_output")
    if backend not in BACKENDS:
        raise ValueError(
            f"backend {backend!r} is not available; available backends: {', '.join(BACKENDS)}"
        )
    variance = choose(variance, "variance", ("model", "exact"))
    if variance == "exact" and not callable(getattr(denoiser, "x0_covariance", None)):
        raise ValueError(
            "variance='exact' needs a denoiser with an x0_covariance(x_t, t) method, such as "
            "GaussianMixture.denoiser(diffusion); use variance='model' for other denoisers"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(x_T_or_shape, np.ndarray):
        x = diffusion._x(x_T_or_shape, "x_T").copy()
    else:
        try:
            shape = tuple(x_T_or_shape)
        except TypeError:
            shape = None
        if shape is None or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape
        ):
            raise TypeError(
                "x_T_or_shape must be a NumPy array x_T or a shape tuple of ints such as "
                f"(B, D), got {x_T_or_shape!r:.60}"
            )
        shape = tuple(int(n) for n in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (B, ...) with positive sizes, got {shape}")
        x = _step_noise(seed, 0, shape, np.dtype(np.float64))
    T = diffusion.num_timesteps
    if noise is not None:
        noise = np.asarray(noise)
        if noise.shape != (T, *x.shape):
            raise ValueError(
                f"noise must have shape (T, *x_T.shape) = {(T, *x.shape)} (noise[t] is used "
                f"by the step from index t), got {noise.shape}"
            )
    return x, noise, variance


def _exact_noise(denoiser, x, tb, orig, P, S, z):
    """``sqrtm(S·I + P²·Cov[x₀|x_t]) @ z`` per row (symmetric square root, via eigh)."""
    B = x.shape[0]
    cov = denoiser.x0_covariance(x, orig)
    D = cov.shape[-1]
    if cov.shape != (B, D, D) or D != int(np.prod(x.shape[1:])):
        raise ValueError(
            f"denoiser.x0_covariance returned shape {cov.shape}, expected {(B, D, D)} with "
            f"D = {int(np.prod(x.shape[1:]))} values per row"
        )
    full = P[:, None, None] ** 2 * cov + S[:, None, None] * np.eye(D)
    w, V = np.linalg.eigh(full)
    root = np.einsum("bij,bj,bkj->bik", V, np.sqrt(np.maximum(w, 0.0)), V)
    zf = z.reshape(B, D).astype(np.float64)
    return np.einsum("bij,bj->bi", root, zf).reshape(x.shape)


def _loop(
    name, diffusion, denoiser, x, seed, noise, step_fn, progress, callback, traj, in_kernel=False
):
    T = diffusion.num_timesteps
    out_traj = [x.copy()] if traj else None
    for i, t in enumerate(range(T - 1, -1, -1), start=1):
        tb = np.full(x.shape[0], t, dtype=np.int64)
        if noise is not None:
            z = noise[t].astype(x.dtype, copy=False)
        elif in_kernel:
            z = None  # drawn inside the kernel from (seed, stream = i)
        else:
            z = _step_noise(seed, i, x.shape, x.dtype)
        orig = diffusion.model_timesteps(tb)
        model_output = np.asarray(denoiser(x, orig))
        if in_kernel and model_output.dtype != x.dtype:
            model_output = model_output.astype(x.dtype)
        x, pred_xstart = step_fn(model_output, x, tb, orig, z, i)
        if callback is not None:
            callback(
                {"i": i - 1, "t": t, "timestep": int(orig[0]), "x": x, "pred_xstart": pred_xstart}
            )
        if traj:
            out_traj.append(x.copy())
        if progress:
            end = "\n" if i == T else ""
            print(f"\r{name}: step {i}/{T}", end=end, file=sys.stderr, flush=True)
    if traj:
        return x, np.stack(out_traj)
    return x


def ddpm(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    seed: int = 0,
    noise: Array | None = None,
    backend: str = "numpy",
    clip_denoised: bool = True,
    denoised_fn: DenoisedFn | None = None,
    variance: str = "model",
    progress: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_trajectory: bool = False,
) -> Array | tuple[Array, Array]:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2); see the module docstring.

    Returns x₀ (x_T's shape and dtype), or ``(x₀, trajectory)`` of shape ``(T + 1, *shape)``
    with ``trajectory[i]`` the state at index ``T − 1 − i`` (``trajectory[0] = x_T``,
    ``trajectory[T] = x₀``). ``callback(info)`` is called after every step with ``i`` (step
    number from 0), ``t`` (the index just processed), ``timestep`` (its original timestep),
    ``x`` (the new state, at index t − 1) and ``pred_xstart``.
    """
    x, noise, variance = _setup(diffusion, denoiser, x_T_or_shape, seed, noise, backend, variance)
    s = diffusion.schedule
    kernel_lv = _check_kernel_path(diffusion, backend, variance, denoised_fn)

    def step(model_output, x_t, tb, orig, z, i):
        if kernel_lv is not None:
            from . import kernels

            x_prev = kernels.ddpm_step(
                s,
                np.ascontiguousarray(x_t),
                tb,
                model_output,
                kernel_lv,
                z,
                clip_denoised=clip_denoised,
                seed=None if z is not None else seed,
                stream=i,
                backend=backend,
            )
            return np.asarray(x_prev), None
        if variance == "model":
            out = diffusion.p_sample(
                model_output, x_t, tb, z, clip_denoised=clip_denoised, denoised_fn=denoised_fn
            )
            return out["sample"], out["pred_xstart"]
        pm = diffusion.p_mean_variance(
            model_output, x_t, tb, clip_denoised=clip_denoised, denoised_fn=denoised_fn
        )
        P, S = s.posterior_mean_coef1[tb], s.posterior_variance[tb]
        extra = _exact_noise(denoiser, x_t, tb, orig, P, S, z)
        sample = pm["mean"].astype(np.float64) + extra
        return sample.astype(x_t.dtype), pm["pred_xstart"]

    return _loop(
        "ddpm",
        diffusion,
        denoiser,
        x,
        seed,
        noise,
        step,
        progress,
        callback,
        return_trajectory,
        in_kernel=kernel_lv is not None,
    )


def ddim(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    eta: float = 0.0,
    seed: int = 0,
    noise: Array | None = None,
    backend: str = "numpy",
    clip_denoised: bool = True,
    denoised_fn: DenoisedFn | None = None,
    variance: str = "model",
    progress: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_trajectory: bool = False,
) -> Array | tuple[Array, Array]:
    """DDIM sampling with stochasticity η (Song et al. 2021, Eq. 12); see the module docstring.

    Returns x₀, or ``(x₀, trajectory)`` as :func:`ddpm`.
    """
    x, noise, variance = _setup(diffusion, denoiser, x_T_or_shape, seed, noise, backend, variance)
    eta = diffusion._check_eta(eta, np.arange(diffusion.num_timesteps))
    s = diffusion.schedule
    kernel_lv = _check_kernel_path(diffusion, backend, variance, denoised_fn)

    def step(model_output, x_t, tb, orig, z, i):
        if kernel_lv is not None:
            from . import kernels

            x_prev = kernels.ddim_step(
                s,
                np.ascontiguousarray(x_t),
                tb,
                model_output,
                z,
                eta=eta,
                clip_denoised=clip_denoised,
                seed=None if z is not None else seed,
                stream=i,
                backend=backend,
            )
            return np.asarray(x_prev), None
        if variance == "model":
            out = diffusion.ddim_sample(
                model_output,
                x_t,
                tb,
                eta,
                z,
                clip_denoised=clip_denoised,
                denoised_fn=denoised_fn,
            )
            return out["sample"], out["pred_xstart"]
        out = diffusion.ddim_sample(
            model_output,
            x_t,
            tb,
            eta,
            np.zeros_like(x_t),
            clip_denoised=clip_denoised,
            denoised_fn=denoised_fn,
        )
        sigma = diffusion.ddim_sigma(tb, eta)
        ab, om = s.alphas_cumprod[tb], s.one_minus_alphas_cumprod[tb]
        ab_prev = s.alphas_cumprod_prev[tb]
        k = np.sqrt(np.maximum(1.0 - ab_prev - sigma**2, 0.0))
        P = np.sqrt(ab_prev) - k * np.sqrt(ab) / np.sqrt(om)
        extra = _exact_noise(denoiser, x_t, tb, orig, P, sigma**2, z)
        return (out["sample"].astype(np.float64) + extra).astype(x_t.dtype), out["pred_xstart"]

    return _loop(
        "ddim",
        diffusion,
        denoiser,
        x,
        seed,
        noise,
        step,
        progress,
        callback,
        return_trajectory,
        in_kernel=kernel_lv is not None,
    )


# Score-based samplers live in their own module; re-exported here so that every sampler is
# reachable as npddpm.samplers.<name>.
from .langevin import annealed_langevin, langevin, predictor_corrector  # noqa: E402
