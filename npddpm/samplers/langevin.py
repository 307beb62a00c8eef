r"""Score-based sampling: Langevin dynamics, MALA, annealed Langevin and predictor–corrector.

The unadjusted Langevin algorithm (Roberts & Tweedie 1996; Song & Ermon 2019, Eq. 4):

.. math:: x_k = x_{k-1} + \tfrac{\delta}{2}\,\nabla_x \log p(x_{k-1})
          + \sqrt{\delta}\,\varepsilon_k, \qquad \varepsilon_k \sim \mathcal N(0, I).

A denoiser that predicts ε gives the score of every noised marginal,
∇ log q(x_t) = −ε̂(x_t, t)/√(1 − ᾱ_t) (:func:`score_from_denoiser` converts ε-, x₀- and
v-models, and the oracle, via :meth:`GaussianDiffusion.p_mean_variance`'s x̂₀ and Tweedie),
so the same model drives ancestral sampling, annealed Langevin (Song & Ermon 2019,
Algorithm 1) and predictor–corrector sampling (Song et al. 2021, Algorithm 2 with the
DDPM ancestral predictor and the Langevin corrector's signal-to-noise step rule).

Random numbers: the normals of step k are ``step_noise(seed, k, …)`` and the Metropolis
uniforms ``_step_uniform(seed, k, …)``, pure functions of (seed, k); ``noise=`` overrides
the normals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np

from .. import kernels
from ..diffusion import GaussianDiffusion
from ..kernels import BACKENDS
from ..typing import BackendName, Denoiser
from ._common import check_kernel_path, initial_state, step_noise

__all__ = [
    "annealed_langevin",
    "eps_from_score_fn",
    "langevin",
    "predictor_corrector",
    "score_from_denoiser",
]

Array = np.ndarray
ScoreFn = Callable[[np.ndarray], np.ndarray]
#: ``score(x_t, t_index) -> ∇ log q(x_t)``, x_t of shape (B, ...) and t_index of shape (B,).
IndexedScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _step_uniform(seed: int, step: int, n: int) -> Array:
    return np.random.default_rng([int(seed), int(step), 1]).random(n)


def _positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _count(value: int, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# ------------------------------------------------------------------- score adapters


def score_from_denoiser(diffusion: GaussianDiffusion, denoiser: Denoiser) -> IndexedScoreFn:
    r"""``score(x_t, t_index) = ∇ log q(x_t)`` from any denoiser of ``diffusion``.

    The model's x̂₀ (unclipped, from its ε, x₀, v or x_{t−1} output) gives
    ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t) and the score −ε̂/√(1 − ᾱ_t) — Tweedie's formula
    (Efron 2011), exact for the oracle denoiser.
    """

    def score(x_t: Array, t: Array) -> Array:
        t = np.asarray(t, dtype=np.int64)
        out = denoiser(x_t, diffusion.model_timesteps(t))
        x0 = diffusion.p_mean_variance(out, x_t, t, clip_denoised=False)["pred_xstart"]
        s = diffusion.schedule
        shape = (-1,) + (1,) * (np.ndim(x_t) - 1)
        a = np.sqrt(s.alphas_cumprod[t]).reshape(shape)
        om = s.one_minus_alphas_cumprod[t].reshape(shape)
        return ((a * x0 - x_t) / om).astype(np.asarray(x_t).dtype, copy=False)

    return score


def eps_from_score_fn(diffusion: GaussianDiffusion, score: IndexedScoreFn) -> Denoiser:
    r"""An ε-denoiser ``(x_t, t_original) -> −√(1 − ᾱ_t)·score(x_t, t_index)`` from a score
    function of (x_t, index), for a diffusion with ``mean_type="eps"``."""

    def eps(x_t: Array, t_orig: Array) -> Array:
        idx = diffusion.schedule.index_of(t_orig)
        om = diffusion.schedule.one_minus_alphas_cumprod[idx]
        shape = (-1,) + (1,) * (np.ndim(x_t) - 1)
        return (-np.sqrt(om).reshape(shape) * score(x_t, idx)).astype(np.asarray(x_t).dtype)

    return eps


# ------------------------------------------------------------------- Langevin / MALA

#: x, then the trajectory and/or ``{"acceptance_rate": ...}`` when asked for.
_LangevinResult = (
    Array
    | tuple[Array, Array]
    | tuple[Array, dict[str, float]]
    | tuple[Array, Array, dict[str, float]]
)


@overload
def langevin(
    score_fn: ScoreFn,
    x0: Array,
    *,
    step_size: float,
    n_steps: int,
    seed: int = ...,
    noise: Array | None = ...,
    metropolis: bool = ...,
    log_prob: Callable[[np.ndarray], np.ndarray] | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[False] = ...,
    return_info: Literal[False] = ...,
    backend: BackendName | str = ...,
) -> Array: ...
@overload
def langevin(
    score_fn: ScoreFn,
    x0: Array,
    *,
    step_size: float,
    n_steps: int,
    seed: int = ...,
    noise: Array | None = ...,
    metropolis: bool = ...,
    log_prob: Callable[[np.ndarray], np.ndarray] | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[True],
    return_info: Literal[False] = ...,
    backend: BackendName | str = ...,
) -> tuple[Array, Array]: ...
@overload
def langevin(
    score_fn: ScoreFn,
    x0: Array,
    *,
    step_size: float,
    n_steps: int,
    seed: int = ...,
    noise: Array | None = ...,
    metropolis: bool = ...,
    log_prob: Callable[[np.ndarray], np.ndarray] | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[False] = ...,
    return_info: Literal[True],
    backend: BackendName | str = ...,
) -> tuple[Array, dict[str, float]]: ...
@overload
def langevin(
    score_fn: ScoreFn,
    x0: Array,
    *,
    step_size: float,
    n_steps: int,
    seed: int = ...,
    noise: Array | None = ...,
    metropolis: bool = ...,
    log_prob: Callable[[np.ndarray], np.ndarray] | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: Literal[True],
    return_info: Literal[True],
    backend: BackendName | str = ...,
) -> tuple[Array, Array, dict[str, float]]: ...
@overload
def langevin(
    score_fn: ScoreFn,
    x0: Array,
    *,
    step_size: float,
    n_steps: int,
    seed: int = ...,
    noise: Array | None = ...,
    metropolis: bool = ...,
    log_prob: Callable[[np.ndarray], np.ndarray] | None = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_trajectory: bool = ...,
    return_info: bool = ...,
    backend: BackendName | str = ...,
) -> _LangevinResult: ...


def langevin(
    score_fn: ScoreFn,
    x0: Array,
    *,
    step_size: float,
    n_steps: int,
    seed: int = 0,
    noise: Array | None = None,
    metropolis: bool = False,
    log_prob: Callable[[np.ndarray], np.ndarray] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_trajectory: bool = False,
    return_info: bool = False,
    backend: BackendName | str = "numpy",
) -> _LangevinResult:
    r"""Unadjusted Langevin (ULA) or, with ``metropolis=True``, MALA (Roberts & Tweedie 1996).

    x_k = x_{k−1} + (δ/2)·score(x_{k−1}) + √δ·ε_k. MALA accepts the proposal y with
    probability min(1, p(y) q(x|y) / (p(x) q(y|x))), q(y|x) = N(y; x + (δ/2)s(x), δI),
    per row, so the target is left exactly invariant.

    Parameters
    ----------
    score_fn : callable ``x (B, ...) -> ∇ log p(x)``, same shape.
    x0 : ndarray (B, ...)
        Starting points (one chain per row).
    step_size : float
        δ > 0.
    n_steps : int
    seed : int
        Normals of step k: a pure function of (seed, k); Metropolis uniforms likewise.
    noise : ndarray (n_steps, B, ...), optional
        ε_k, overriding the seeded normals.
    metropolis : bool
        MALA; needs ``log_prob(x) -> (B,)``.
    return_trajectory : bool
        Also return every state, shape (n_steps + 1, B, ...).
    return_info : bool
        Also return ``{"acceptance_rate": float}`` (1.0 for ULA).
    backend : {"numpy", "cpu", "cuda"}
        Where the update x + (δ/2)·g + √δ·z runs (:func:`npddpm.kernels.langevin_step`); the
        same seed gives the same chain on every backend.

    Returns
    -------
    x : ndarray (B, ...), then the trajectory and/or info if requested.
    """
    delta = _positive(step_size, "step_size")
    n = _count(n_steps, "n_steps")
    if not callable(score_fn):
        raise TypeError("score_fn must be callable as score_fn(x) -> grad log p(x)")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available backends: {', '.join(BACKENDS)}")
    if metropolis and not callable(log_prob):
        raise ValueError("metropolis=True needs log_prob= (a callable x -> log p(x), shape (B,))")
    x = np.array(x0, dtype=np.result_type(np.asarray(x0).dtype, np.float32), copy=True)
    if x.ndim < 2:
        raise ValueError(f"x0 must have a batch axis first, shape (B, ...), got {x.shape}")
    if noise is not None:
        noise = np.asarray(noise)
        if noise.shape != (n, *x.shape):
            raise ValueError(f"noise must have shape {(n, *x.shape)}, got {noise.shape}")
    B = x.shape[0]
    axes = tuple(range(1, x.ndim))
    traj = [x.copy()] if return_trajectory else None
    accepted = 0
    s = _score(score_fn, x)
    lp: Array | None = None
    if metropolis:
        if log_prob is None:  # checked callable above
            raise AssertionError("metropolis=True without log_prob")
        lp = np.asarray(log_prob(x), dtype=np.float64)
    sq = math.sqrt(delta)
    for k in range(n):
        if backend != "numpy":  # the fused kernel, noise in-kernel from (seed, stream = k)
            z = None if noise is None else np.ascontiguousarray(noise[k], dtype=x.dtype)
            y = np.asarray(
                kernels.langevin_step(
                    np.ascontiguousarray(x),
                    np.ascontiguousarray(s),
                    delta,
                    z,
                    seed=None if z is not None else seed,
                    stream=k,
                    backend=backend,
                )
            )
            mean_x = x + (delta / 2) * s if metropolis else None
        else:
            z = noise[k] if noise is not None else step_noise(seed, k, x.shape, x.dtype)
            mean_x = x + (delta / 2) * s
            y = mean_x + sq * z
        if metropolis:
            # log_prob was checked callable, lp and mean_x set above, when metropolis
            if log_prob is None or lp is None or mean_x is None:
                raise AssertionError("MALA state missing")
            s_y = _score(score_fn, y)
            lp_y = np.asarray(log_prob(y), dtype=np.float64)
            mean_y = y + (delta / 2) * s_y
            log_q_yx = -np.sum((y - mean_x) ** 2, axis=axes) / (2 * delta)
            log_q_xy = -np.sum((x - mean_y) ** 2, axis=axes) / (2 * delta)
            log_alpha = lp_y - lp + log_q_xy - log_q_yx
            u = _step_uniform(seed, k, B)
            acc = np.log(u) < log_alpha
            sel = acc.reshape((-1,) + (1,) * (x.ndim - 1))
            x = np.where(sel, y, x)
            s = np.where(sel, s_y, s)
            lp = np.where(acc, lp_y, lp)
            accepted += int(acc.sum())
        else:
            x = y
            s = _score(score_fn, x)
        if traj is not None:
            traj.append(x.copy())
        if callback is not None:
            callback({"step": k, "x": x})
    out: list[Any] = [x]
    if traj is not None:  # return_trajectory
        out.append(np.stack(traj))
    if return_info:
        out.append({"acceptance_rate": accepted / max(n * B, 1) if metropolis else 1.0})
    return out[0] if len(out) == 1 else tuple(out)


def _score(score_fn: ScoreFn, x: Array) -> Array:
    s = np.asarray(score_fn(x))
    if s.shape != x.shape:
        raise ValueError(f"score_fn returned shape {s.shape} for x of shape {x.shape}")
    return s.astype(x.dtype, copy=False)


# ------------------------------------------------------------------- diffusion-driven


def annealed_langevin(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    n_steps_each: int = 5,
    step_lr: float = 2e-5,
    seed: int = 0,
    denoise_last: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    backend: BackendName | str = "numpy",
) -> Array:
    r"""Annealed Langevin dynamics over the diffusion's noise levels (Song & Ermon 2019,
    Algorithm 1).

    For every index t from T−1 down to 0, ``n_steps_each`` Langevin steps target q(x_t) with
    δ_t = step_lr·σ_t²/σ_0², σ_t² = 1 − ᾱ_t (the level's noise variance), using the
    denoiser's score. With ``denoise_last`` the result is E[x₀ | x_0] (Tweedie) at the last
    level, as Song & Ermon's later denoising step. ``backend`` runs each Langevin update in
    the fused kernel (same noise, same result).
    """
    n_each = _count(n_steps_each, "n_steps_each", 1)
    lr = _positive(step_lr, "step_lr")
    x = initial_state(diffusion, denoiser, x_T_or_shape, seed)
    score = score_from_denoiser(diffusion, denoiser)
    s = diffusion.schedule
    sig2 = s.one_minus_alphas_cumprod
    B = x.shape[0]
    step = 1
    for t in range(diffusion.num_timesteps - 1, -1, -1):
        tb = np.full(B, t, dtype=np.int64)
        delta = lr * sig2[t] / sig2[0]
        z = np.stack([step_noise(seed, step + i, x.shape, x.dtype) for i in range(n_each)])
        step += n_each

        def score_t(y: Array, tb: Array = tb) -> Array:
            return score(y, tb)

        x = langevin(
            score_t,
            x,
            step_size=delta,
            n_steps=n_each,
            noise=z,
            backend=backend,
        )
        if callback is not None:
            callback({"t": t, "x": x})
    if denoise_last:
        t0 = np.zeros(B, dtype=np.int64)
        x = x + sig2[0] * score(x, t0)  # Tweedie for the level's noise (σ² = 1 − ᾱ_0)
        x = x / np.sqrt(s.alphas_cumprod[0])
    return x


@overload
def predictor_corrector(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    n_corrector: int = ...,
    snr: float = ...,
    seed: int = ...,
    clip_denoised: bool = ...,
    per_example: bool = ...,
    backend: BackendName | str = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_info: Literal[False] = ...,
) -> Array: ...
@overload
def predictor_corrector(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    n_corrector: int = ...,
    snr: float = ...,
    seed: int = ...,
    clip_denoised: bool = ...,
    per_example: bool = ...,
    backend: BackendName | str = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_info: Literal[True],
) -> tuple[Array, dict[str, int]]: ...
@overload
def predictor_corrector(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    n_corrector: int = ...,
    snr: float = ...,
    seed: int = ...,
    clip_denoised: bool = ...,
    per_example: bool = ...,
    backend: BackendName | str = ...,
    callback: Callable[[dict[str, Any]], None] | None = ...,
    return_info: bool,
) -> Array | tuple[Array, dict[str, int]]: ...


def predictor_corrector(
    diffusion: GaussianDiffusion,
    denoiser: Denoiser,
    x_T_or_shape: Array | tuple[int, ...],
    *,
    n_corrector: int = 1,
    snr: float = 0.16,
    seed: int = 0,
    clip_denoised: bool = False,
    per_example: bool = False,
    backend: BackendName | str = "numpy",
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_info: bool = False,
) -> Array | tuple[Array, dict[str, int]]:
    r"""Predictor–corrector sampling (Song et al. 2021, Algorithm 2; ``score_sde``'s
    ``pc_sampler`` with ``AncestralSamplingPredictor`` and ``LangevinCorrector``).

    At every index t (from T−1 down): ``n_corrector`` Langevin steps at level t with step
    ε = 2α_t(r‖z‖/‖g‖)², x ← x + ε·g + √(2ε)·z (g the score, z ~ N(0, I), r = ``snr``,
    α_t = 1 − β_t; the norms are batch means of per-example norms as in score_sde, or
    per-example with ``per_example=True``); then one DDPM ancestral step t → t−1.
    The corrector uses ``n_corrector`` extra model calls per step. ``backend`` runs the
    corrector update and the predictor step in the fused kernels (same noise, same result).
    """
    n_corr = _count(n_corrector, "n_corrector", 0)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available backends: {', '.join(BACKENDS)}")
    kernel_lv = None
    if backend != "numpy":
        kernel_lv = check_kernel_path(diffusion, backend, "model", None)
    r = _positive(snr, "snr")
    x = initial_state(diffusion, denoiser, x_T_or_shape, seed)
    score = score_from_denoiser(diffusion, denoiser)
    s = diffusion.schedule
    B = x.shape[0]
    axes = tuple(range(1, x.ndim))
    calls = 0
    step = 1
    for t in range(diffusion.num_timesteps - 1, -1, -1):
        tb = np.full(B, t, dtype=np.int64)
        for _ in range(n_corr):
            g = score(x, tb)
            calls += 1
            z = step_noise(seed, step, x.shape, x.dtype)
            step += 1
            gn = np.sqrt(np.sum(g**2, axis=axes))
            zn = np.sqrt(np.sum(z**2, axis=axes))
            if per_example:
                eps = 2 * s.alphas[t] * (r * zn / np.maximum(gn, 1e-300)) ** 2
                eps = eps.reshape((-1,) + (1,) * (x.ndim - 1))
            else:
                eps = 2 * s.alphas[t] * (r * zn.mean() / max(gn.mean(), 1e-300)) ** 2
            if backend != "numpy" and not per_example:  # (x + ε·g) + √(2ε)·z, fused
                    x = np.asarray(
                    kernels.langevin_step(
                        np.ascontiguousarray(x),
                        np.ascontiguousarray(g.astype(x.dtype)),
                        2 * eps,
                        np.ascontiguousarray(z),
                        backend=backend,
                    )
                )
            else:
                x = x + eps * g + np.sqrt(2 * eps) * z
        out = denoiser(x, diffusion.model_timesteps(tb))
        calls += 1
        z = step_noise(seed, step, x.shape, x.dtype)
        step += 1
        if kernel_lv is not None:
            x = np.asarray(
                kernels.ddpm_step(
                    s,
                    np.ascontiguousarray(x),
                    tb,
                    np.asarray(out, dtype=x.dtype),
                    kernel_lv,
                    z,
                    clip_denoised=clip_denoised,
                    backend=backend,
                )
            )
        else:
            x = diffusion.p_sample(out, x, tb, z, clip_denoised=clip_denoised)["sample"]
        if callback is not None:
            callback({"t": t, "x": x})
    if return_info:
        return x, {"model_calls": calls}
    return x
