r"""The Gaussian diffusion process: forward noising, the true posterior, the model's reverse
step (DDPM and DDIM), and conversions between parameterisations.

Methods carry improved-diffusion's names and semantics (``q_sample``, ``q_mean_variance``,
``q_posterior_mean_variance``, ``p_mean_variance``, ``p_sample``, ``ddim_sample``,
``ddim_reverse_sample``, ``training_losses``, ``calc_bpd_loop``) so a validator can map them
1:1, but they take **arrays** (``model_output``), not models.

Conventions
-----------
* ``x`` arrays have a batch axis first: shape ``(B, C, ...)`` — ``(B, D)`` for vectors,
  ``(B, C, H, W)`` for images. ``t`` is an integer array of shape ``(B,)`` of indices into the
  (possibly respaced) schedule, ``0 <= t < T``.
* A learned variance doubles the channel axis (axis 1) of ``model_output``: the first half is
  the mean parameterisation, the second half the variance values.
* Coefficients are gathered from the float64 schedule. With the default
  ``arithmetic="float64"`` every quantity is computed in float64 and the result is cast to
  the input dtype; ``arithmetic="input_dtype"`` computes in the input dtype with each
  coefficient cast first (improved-diffusion's float32 behaviour).
* Where public implementations disagree, the :mod:`npddpm.profiles` option decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import losses as _losses
from ._checks import choose
from .profiles import Profile, get_profile
from .schedules import Schedule

__all__ = [
    "LOSS_TYPES",
    "MEAN_TYPES",
    "VAR_TYPES",
    "GaussianDiffusion",
    "dynamic_threshold",
    "dynamic_thresholding",
]

MEAN_TYPES = ("eps", "x0", "v", "x_prev")
VAR_TYPES = ("fixed_small", "fixed_large", "learned", "learned_range")
LOSS_TYPES = ("mse", "rescaled_mse", "kl", "rescaled_kl")

Array = np.ndarray
DenoisedFn = Callable[[np.ndarray], np.ndarray]


def dynamic_threshold(x0: Array, ratio: float = 0.995, max_value: float = 1.0) -> Array:
    r"""Imagen's dynamic thresholding, as diffusers' ``_threshold_sample`` does it.

    Per example, ``s = clip(quantile(|x̂₀|, ratio), 1, max_value)`` (linear interpolation
    between order statistics, as ``torch.quantile``), then ``x̂₀ ← clip(x̂₀, −s, s) / s``
    (Saharia et al. 2022, §2.3). With ``max_value = 1`` this is plain clipping to [−1, 1].
    """
    x0 = np.asarray(x0)
    if x0.ndim < 2:
        raise ValueError(f"x0 must have a batch axis, got shape {x0.shape}")
    flat = x0.reshape(x0.shape[0], -1)
    s = np.quantile(np.abs(flat), ratio, axis=1)
    s = np.clip(s, 1.0, max_value)[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x0.shape).astype(x0.dtype, copy=False)


def dynamic_thresholding(ratio: float = 0.995, max_value: float = 1.0) -> DenoisedFn:
    """A ``denoised_fn`` applying :func:`dynamic_threshold` (pass ``clip_denoised=False``)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
    if max_value < 1.0:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    return lambda x0: dynamic_threshold(x0, ratio, max_value)


class GaussianDiffusion:
    r"""DDPM maths for one schedule and one choice of parameterisation.

    Parameters
    ----------
    schedule : Schedule
        The (possibly respaced) schedule; ``T = schedule.num_timesteps``.
    mean_type : {"eps", "x0", "v", "x_prev"}
        What the model's mean channels predict: ε (Ho et al. 2020), x₀, v = √ᾱ ε − √(1−ᾱ) x₀
        (Salimans & Ho 2022) or the posterior mean of x_{t−1}.
    var_type : {"fixed_small", "fixed_large", "learned", "learned_range"}
        Σ = β̃ I, Σ = β I, learned log-variance, or learned interpolation
        ``exp(f log β + (1−f) log β̃)`` with ``f = (v+1)/2`` (Nichol & Dhariwal 2021, Eq. 15).
    loss_type : {"mse", "rescaled_mse", "kl", "rescaled_kl"}
        As improved-diffusion; ``rescaled_mse`` with a learned variance is the hybrid loss.
    profile : str or Profile
        ``"improved_diffusion"`` (default), ``"original_tf"``, ``"diffusers"``,
        ``"lucidrains"`` — see :mod:`npddpm.profiles`.
    **overrides
        Individual profile options, e.g. ``t0_log_variance="floor"``.
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        mean_type: str = "eps",
        var_type: str = "fixed_small",
        loss_type: str = "mse",
        profile: str | Profile = "improved_diffusion",
        **overrides: Any,
    ) -> None:
        if not isinstance(schedule, Schedule):
            raise TypeError(
                f"schedule must be an npddpm.Schedule, got {type(schedule).__name__}; "
                "build one with Schedule(betas) or Schedule.from_name(name, T)"
            )
        self.schedule = schedule
        self.mean_type = choose(mean_type, "mean_type", MEAN_TYPES)
        self.var_type = choose(var_type, "var_type", VAR_TYPES)
        self.loss_type = choose(loss_type, "loss_type", LOSS_TYPES)
        self.profile = get_profile(profile, **overrides)
        self.num_timesteps = schedule.num_timesteps
        self._build_tables()

    # ---------------------------------------------------------------- tables

    def _build_tables(self) -> None:
        s, p = self.schedule, self.profile
        T = self.num_timesteps
        pv = s.posterior_variance
        pv1 = pv[1] if T > 1 else np.exp(s.posterior_log_variance_clipped[0])
        if p.t0_log_variance == "floor":
            small_var = np.maximum(pv, 1e-20)
            small_logvar = np.log(small_var)
        else:
            small_var = pv.copy()
            small_logvar = s.posterior_log_variance_clipped.copy()
        large_var_ff = np.append(pv1, s.betas[1:])
        if p.fixed_large_t0 == "posterior_variance_1":
            large_var, large_logvar = large_var_ff, np.log(large_var_ff)
        elif p.fixed_large_t0 == "tf":
            large_var, large_logvar = s.betas.copy(), np.log(large_var_ff)
        else:
            large_var, large_logvar = s.betas.copy(), np.log(s.betas)
        with np.errstate(divide="ignore", invalid="ignore"):
            if s.precision == "high":  # 1 − ᾱ/ᾱ_prev is the chain's β exactly
                om_prev = np.append(0.0, s.one_minus_alphas_cumprod[:-1])
                ddim_factor = np.sqrt(om_prev / s.one_minus_alphas_cumprod * s.betas)
            else:  # improved-diffusion's expression, per timestep, in float64
                ddim_factor = np.sqrt(
                    (1 - s.alphas_cumprod_prev) / s.one_minus_alphas_cumprod
                ) * np.sqrt(1 - s.alphas_cumprod / s.alphas_cumprod_prev)
        self._tab = {
            "small_var": small_var,
            "small_logvar": small_logvar,
            "large_var": large_var,
            "large_logvar": large_logvar,
            "log_betas": np.log(s.betas),
            "recip_coef1": 1.0 / s.posterior_mean_coef1,
            "coef2_over_coef1": s.posterior_mean_coef2 / s.posterior_mean_coef1,
            "ddim_sigma_factor": ddim_factor,
            "one_minus_ab_prev": np.append(0.0, s.one_minus_alphas_cumprod[:-1])
            if s.precision == "high"
            else 1 - s.alphas_cumprod_prev,
        }
        for v in self._tab.values():
            v.setflags(write=False)

    # ---------------------------------------------------------------- helpers

    def _work_dtype(self, x: Array) -> np.dtype:
        return np.dtype(np.float64) if self.profile.arithmetic == "float64" else x.dtype

    def _coef(self, arr: Array, t: Array, ndim: int, dtype: np.dtype) -> Array:
        """Gather ``arr[t]`` (float64) and shape it ``(B, 1, …, 1)`` in ``dtype``."""
        return arr[t].astype(dtype).reshape((-1,) + (1,) * (ndim - 1))

    def _t(self, t: object, batch: int) -> Array:
        t = np.asarray(t)
        if t.dtype == bool or t.dtype.kind not in "iu":
            raise TypeError(f"t must be an integer array (one timestep per row), got {t.dtype}")
        if t.ndim == 0:
            t = np.full(batch, int(t), dtype=np.int64)
        if t.shape != (batch,):
            raise ValueError(
                f"t must have shape ({batch},), one timestep per batch row, got {t.shape}"
            )
        if t.size and (t.min() < 0 or t.max() >= self.num_timesteps):
            raise ValueError(
                f"t must lie in [0, {self.num_timesteps - 1}] (indices into the "
                f"{'respaced ' if not self.schedule.is_identity_map else ''}schedule), got "
                f"values from {t.min()} to {t.max()}"
            )
        return t.astype(np.int64)

    @staticmethod
    def _x(x: object, name: str, like: Array | None = None) -> Array:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(
                f"{name} must have a batch axis first, shape (B, ...), got {x.shape}; "
                f"for one example pass {name}[None]"
            )
        if like is not None:
            if x.shape != like.shape:
                raise ValueError(f"{name} has shape {x.shape} but the data has {like.shape}")
            if x.dtype != like.dtype:
                raise TypeError(
                    f"{name} has dtype {x.dtype} but the data has {like.dtype}; pass one dtype"
                )
        return x

    def _noise(self, noise: object, rng: np.random.Generator | None, like: Array) -> Array:
        if noise is None:
            if rng is None:
                raise ValueError("pass noise= (an array) or rng= (a numpy Generator)")
            return rng.standard_normal(like.shape).astype(like.dtype)
        return self._x(noise, "noise", like)

    def split_output(self, model_output: object, x: Array) -> tuple[Array, Array | None]:
        """Split ``model_output`` into (mean part, variance values or None)."""
        out = self._x(model_output, "model_output")
        learned = self.var_type in ("learned", "learned_range")
        expected = (x.shape[0], 2 * x.shape[1], *x.shape[2:]) if learned else x.shape
        if out.shape != expected:
            why = " (a learned variance needs twice the channels on axis 1)" if learned else ""
            raise ValueError(
                f"model_output has shape {out.shape}, expected {expected} for "
                f"var_type={self.var_type!r}{why}"
            )
        if not learned:
            return out, None
        C = x.shape[1]
        return out[:, :C], out[:, C:]

    def model_timesteps(self, t: Array) -> Array:
        """Original timesteps (``schedule.timestep_map[t]``): what a denoiser is called with."""
        return self.schedule.timestep_map[np.asarray(t)]

    # ---------------------------------------------------------------- forward process

    def q_mean_variance(self, x0: Array, t: Array) -> tuple[Array, Array, Array]:
        r"""q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I): (mean, variance, log_variance), each of
        x₀'s shape (Ho et al. 2020, Eq. 4)."""
        x0 = self._x(x0, "x0")
        t = self._t(t, x0.shape[0])
        w, s = self._work_dtype(x0), self.schedule
        mean = self._coef(s.sqrt_alphas_cumprod, t, x0.ndim, w) * x0.astype(w)
        var = np.broadcast_to(self._coef(s.one_minus_alphas_cumprod, t, x0.ndim, w), x0.shape)
        logv = np.broadcast_to(self._coef(s.log_one_minus_alphas_cumprod, t, x0.ndim, w), x0.shape)
        return mean.astype(x0.dtype), var.astype(x0.dtype), logv.astype(x0.dtype)

    def q_sample(
        self,
        x0: Array,
        t: Array,
        noise: Array | None = None,
        *,
        rng: np.random.Generator | None = None,
    ) -> Array:
        r"""x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε (Ho et al. 2020, Eq. 4); ``noise`` is ε."""
        x0 = self._x(x0, "x0")
        t = self._t(t, x0.shape[0])
        noise = self._noise(noise, rng, x0)
        w, s = self._work_dtype(x0), self.schedule
        a = self._coef(s.sqrt_alphas_cumprod, t, x0.ndim, w)
        b = self._coef(s.sqrt_one_minus_alphas_cumprod, t, x0.ndim, w)
        return (a * x0.astype(w) + b * noise.astype(w)).astype(x0.dtype)

    def q_transition_mean_variance(
        self, x_s: Array, s: Array, t: Array
    ) -> tuple[Array, Array, Array]:
        r"""q(x_t | x_s) for s < t: N(√(ᾱ_t/ᾱ_s) x_s, (1 − ᾱ_t/ᾱ_s) I).

        ``s = −1`` means the data (ᾱ_{−1} = 1), so ``s = t − 1`` gives q(x_t | x_{t−1}) =
        N(√α_t x_{t−1}, β_t I). The variance is ``−expm1(log ᾱ_t − log ᾱ_s)`` (no
        cancellation). Returns (mean, variance, log_variance), each of x_s's shape.
        """
        x_s = self._x(x_s, "x_s")
        t = self._t(t, x_s.shape[0])
        s = np.asarray(s)
        if s.ndim == 0:
            s = np.full_like(t, int(s))
        if s.shape != t.shape or s.dtype.kind not in "iu" or np.any(s < -1) or np.any(s >= t):
            raise ValueError("s must be integers with -1 <= s < t, one per row (shape (B,))")
        la = self.schedule.log_alphas_cumprod
        log_ratio = la[t] - np.where(s >= 0, la[np.maximum(s, 0)], 0.0)
        w = self._work_dtype(x_s)
        with np.errstate(invalid="ignore"):
            var = -np.expm1(log_ratio)
        shape = (-1,) + (1,) * (x_s.ndim - 1)
        mean = np.exp(0.5 * log_ratio).astype(w).reshape(shape) * x_s.astype(w)
        var_b = np.broadcast_to(var.astype(w).reshape(shape), x_s.shape)
        with np.errstate(divide="ignore"):
            logv = np.log(var_b)
        return mean.astype(x_s.dtype), var_b.astype(x_s.dtype), logv.astype(x_s.dtype)

    def q_sample_transition(self, x_s: Array, s: Array, t: Array, noise: Array) -> Array:
        """A draw from q(x_t | x_s) with the given standard-normal ``noise``."""
        mean, var, _ = self.q_transition_mean_variance(x_s, s, t)
        noise = self._x(noise, "noise", mean)
        return (mean + np.sqrt(var) * noise).astype(mean.dtype)

    def q_posterior_mean_variance(
        self, x0: Array, x_t: Array, t: Array
    ) -> tuple[Array, Array, Array]:
        r"""q(x_{t−1} | x_t, x₀) = N(coef1·x₀ + coef2·x_t, β̃_t I) (Ho et al. 2020, Eqs. 6–7).

        Returns (mean, variance, log_variance_clipped); the t = 0 log-variance follows the
        profile's ``t0_log_variance``.
        """
        x0 = self._x(x0, "x0")
        x_t = self._x(x_t, "x_t", x0)
        t = self._t(t, x0.shape[0])
        w = self._work_dtype(x0)
        mean = self._posterior_mean(x0.astype(w), x_t.astype(w), t, w)
        var = np.broadcast_to(self._coef(self.schedule.posterior_variance, t, x0.ndim, w), x0.shape)
        logv = np.broadcast_to(self._coef(self._tab["small_logvar"], t, x0.ndim, w), x0.shape)
        return mean.astype(x0.dtype), var.astype(x0.dtype), logv.astype(x0.dtype)

    def _posterior_mean(self, x0: Array, x_t: Array, t: Array, w: np.dtype) -> Array:
        s = self.schedule
        c1 = self._coef(s.posterior_mean_coef1, t, x0.ndim, w)
        c2 = self._coef(s.posterior_mean_coef2, t, x0.ndim, w)
        return c1 * x0 + c2 * x_t

    # ---------------------------------------------------------------- conversions

    def _convert(self, fn, x_t: Array, t: Array, y: Array, name: str) -> Array:
        """Validate ``(x_t, t, y)``, apply ``fn(x_t, t, y, w)`` in the work dtype ``w``, and
        return the result in x_t's dtype (the public side of every ``_a_from_b``)."""
        x_t = self._x(x_t, "x_t")
        y = self._x(y, name, x_t)
        t = self._t(t, x_t.shape[0])
        w = self._work_dtype(x_t)
        return fn(x_t.astype(w), t, y.astype(w), w).astype(x_t.dtype)

    def predict_xstart_from_eps(self, x_t: Array, t: Array, eps: Array) -> Array:
        r"""x̂₀ from ε: ``√(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε`` (profile ``xstart_from_eps="recip"``) or
        ``(x_t − √(1 − ᾱ)·ε)/√ᾱ`` (``"divide"``, diffusers)."""
        return self._convert(self._xstart_from_eps, x_t, t, eps, "eps")

    def _xstart_from_eps(self, x_t: Array, t: Array, eps: Array, w: np.dtype) -> Array:
        s, n = self.schedule, x_t.ndim
        if self.profile.xstart_from_eps == "divide":
            return (x_t - self._coef(s.sqrt_one_minus_alphas_cumprod, t, n, w) * eps) / (
                self._coef(s.sqrt_alphas_cumprod, t, n, w)
            )
        return (
            self._coef(s.sqrt_recip_alphas_cumprod, t, n, w) * x_t
            - self._coef(s.sqrt_recipm1_alphas_cumprod, t, n, w) * eps
        )

    def predict_eps_from_xstart(self, x_t: Array, t: Array, pred_xstart: Array) -> Array:
        r"""ε̂ from x̂₀: ``(√(1/ᾱ)·x_t − x̂₀)/√(1/ᾱ − 1)`` (or diffusers'
        ``(x_t − √ᾱ·x̂₀)/√(1 − ᾱ)`` under ``xstart_from_eps="divide"``)."""
        return self._convert(self._eps_from_xstart, x_t, t, pred_xstart, "pred_xstart")

    def _eps_from_xstart(self, x_t: Array, t: Array, x0: Array, w: np.dtype) -> Array:
        s, n = self.schedule, x_t.ndim

        def divide():
            return (x_t - self._coef(s.sqrt_alphas_cumprod, t, n, w) * x0) / (
                self._coef(s.sqrt_one_minus_alphas_cumprod, t, n, w)
            )

        def recip():
            return (self._coef(s.sqrt_recip_alphas_cumprod, t, n, w) * x_t - x0) / (
                self._coef(s.sqrt_recipm1_alphas_cumprod, t, n, w)
            )

        if self.profile.xstart_from_eps == "divide":
            return divide()
        if np.any(s.alphas_cumprod[t] == 0):
            # zero terminal SNR: √(1/ᾱ) = ∞ makes the recip form ∞/∞; its limit is the divide
            # form, (x_t − √ᾱ·x̂₀)/√(1 − ᾱ) = x_t at ᾱ = 0
            zero = (s.alphas_cumprod[t] == 0).reshape((-1,) + (1,) * (n - 1))
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(zero, divide(), recip())
        return recip()

    def predict_xstart_from_xprev(self, x_t: Array, t: Array, xprev: Array) -> Array:
        r"""x̂₀ from the posterior mean: ``x_{t−1}/coef1 − (coef2/coef1)·x_t``."""
        return self._convert(self._xstart_from_xprev, x_t, t, xprev, "xprev")

    def _xstart_from_xprev(self, x_t: Array, t: Array, xp: Array, w: np.dtype) -> Array:
        n = x_t.ndim
        return (
            self._coef(self._tab["recip_coef1"], t, n, w) * xp
            - self._coef(self._tab["coef2_over_coef1"], t, n, w) * x_t
        )

    def predict_v(self, x0: Array, t: Array, eps: Array) -> Array:
        r"""v = √ᾱ·ε − √(1 − ᾱ)·x₀ (Salimans & Ho 2022, §4; diffusers ``get_velocity``)."""
        x0 = self._x(x0, "x0")
        eps = self._x(eps, "eps", x0)
        t = self._t(t, x0.shape[0])
        w, s, n = self._work_dtype(x0), self.schedule, x0.ndim
        v = self._coef(s.sqrt_alphas_cumprod, t, n, w) * eps.astype(w) - self._coef(
            s.sqrt_one_minus_alphas_cumprod, t, n, w
        ) * x0.astype(w)
        return v.astype(x0.dtype)

    def predict_xstart_from_v(self, x_t: Array, t: Array, v: Array) -> Array:
        r"""x̂₀ = √ᾱ·x_t − √(1 − ᾱ)·v."""
        return self._convert(self._xstart_from_v, x_t, t, v, "v")

    def _xstart_from_v(self, x_t: Array, t: Array, v: Array, w: np.dtype) -> Array:
        s, n = self.schedule, x_t.ndim
        return (
            self._coef(s.sqrt_alphas_cumprod, t, n, w) * x_t
            - self._coef(s.sqrt_one_minus_alphas_cumprod, t, n, w) * v
        )

    def predict_eps_from_v(self, x_t: Array, t: Array, v: Array) -> Array:
        r"""ε̂ = √ᾱ·v + √(1 − ᾱ)·x_t."""
        x_t = self._x(x_t, "x_t")
        v = self._x(v, "v", x_t)
        t = self._t(t, x_t.shape[0])
        w, s, n = self._work_dtype(x_t), self.schedule, x_t.ndim
        eps = self._coef(s.sqrt_alphas_cumprod, t, n, w) * v.astype(w) + self._coef(
            s.sqrt_one_minus_alphas_cumprod, t, n, w
        ) * x_t.astype(w)
        return eps.astype(x_t.dtype)

    def score_from_eps(self, eps: Array, t: Array) -> Array:
        r"""∇ log q(x_t) = −ε̂ / √(1 − ᾱ_t) (Song et al. 2021, Eq. 8 with σ² = 1 − ᾱ)."""
        eps = self._x(eps, "eps")
        t = self._t(t, eps.shape[0])
        w = self._work_dtype(eps)
        c = self._coef(self.schedule.sqrt_one_minus_alphas_cumprod, t, eps.ndim, w)
        return (-eps.astype(w) / c).astype(eps.dtype)

    def eps_from_score(self, score: Array, t: Array) -> Array:
        r"""ε̂ = −√(1 − ᾱ_t)·score."""
        score = self._x(score, "score")
        t = self._t(t, score.shape[0])
        w = self._work_dtype(score)
        c = self._coef(self.schedule.sqrt_one_minus_alphas_cumprod, t, score.ndim, w)
        return (-c * score.astype(w)).astype(score.dtype)

    # ---------------------------------------------------------------- reverse process

    def _pred_xstart_raw(self, mean_part: Array, x_t: Array, t: Array, w: np.dtype) -> Array:
        if self.mean_type == "eps":
            return self._xstart_from_eps(x_t, t, mean_part, w)
        if self.mean_type == "x0":
            return mean_part
        if self.mean_type == "v":
            return self._xstart_from_v(x_t, t, mean_part, w)
        return self._xstart_from_xprev(x_t, t, mean_part, w)

    def _model_log_variance(
        self, var_values: Array | None, t: Array, x_t: Array, w: np.dtype
    ) -> tuple[Array, Array]:
        n = x_t.ndim
        if self.var_type == "fixed_small":
            return (
                np.broadcast_to(self._coef(self._tab["small_var"], t, n, w), x_t.shape),
                np.broadcast_to(self._coef(self._tab["small_logvar"], t, n, w), x_t.shape),
            )
        if self.var_type == "fixed_large":
            return (
                np.broadcast_to(self._coef(self._tab["large_var"], t, n, w), x_t.shape),
                np.broadcast_to(self._coef(self._tab["large_logvar"], t, n, w), x_t.shape),
            )
        v = var_values.astype(w)
        if self.var_type == "learned":
            if self.profile.learned_output == "variance":
                with np.errstate(divide="ignore", invalid="ignore"):
                    return v, np.log(v)
            return np.exp(v), v
        min_log = self._coef(self._tab["small_logvar"], t, n, w)
        max_log = self._coef(self._tab["log_betas"], t, n, w)
        frac = (v + 1) / 2
        logv = frac * max_log + (1 - frac) * min_log
        return np.exp(logv), logv

    def _reverse(self, model_output, x_t, t, clip_denoised, denoised_fn):
        """Everything of the reverse step in the work dtype: a dict with ``mean``,
        ``variance``, ``log_variance``, ``pred_xstart`` (processed), ``raw_xstart``,
        ``mean_part``, ``var_values``, ``x_t``, and the work dtype ``w``."""
        mean_part, var_values = self.split_output(model_output, x_t)
        if mean_part.dtype != x_t.dtype:
            raise TypeError(f"model_output has dtype {mean_part.dtype} but x_t has {x_t.dtype}")
        w = self._work_dtype(x_t)
        xt = x_t.astype(w)
        mp = mean_part.astype(w)
        var, logvar = self._model_log_variance(var_values, t, x_t, w)
        raw = self._pred_xstart_raw(mp, xt, t, w)
        x0 = raw
        if denoised_fn is not None:
            x0 = np.asarray(denoised_fn(x0), dtype=w)
        if clip_denoised:
            x0 = np.clip(x0, -1, 1)
        mean = mp if self.mean_type == "x_prev" else self._posterior_mean(x0, xt, t, w)
        return {
            "mean": mean,
            "variance": var,
            "log_variance": logvar,
            "pred_xstart": x0,
            "raw_xstart": raw,
            "mean_part": mp,
            "var_values": var_values,
            "x_t": xt,
            "w": w,
        }

    def p_mean_variance(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        clip_denoised: bool = True,
        denoised_fn: DenoisedFn | None = None,
    ) -> dict[str, Array]:
        r"""The model's p(x_{t−1} | x_t) from its output (improved-diffusion semantics).

        x̂₀ is computed from the mean channels, passed through ``denoised_fn`` and then
        clipped to [−1, 1] if ``clip_denoised``; the mean is the true posterior mean at x̂₀
        (or the model output itself for ``mean_type="x_prev"``).

        Returns
        -------
        dict with ``mean``, ``variance``, ``log_variance``, ``pred_xstart`` (x_t's shape and
        dtype).
        """
        x_t = self._x(x_t, "x_t")
        t = self._t(t, x_t.shape[0])
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        d = x_t.dtype
        return {
            k: np.asarray(r[k]).astype(d)
            for k in ("mean", "variance", "log_variance", "pred_xstart")
        }

    def _nonzero_mask(self, t: Array, ndim: int, w: np.dtype) -> Array:
        if self.profile.last_step_noise == "timestep":
            nz = self.schedule.timestep_map[t] != 0
        else:
            nz = t != 0
        return nz.astype(w).reshape((-1,) + (1,) * (ndim - 1))

    def p_sample(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        noise: Array | None = None,
        *,
        rng: np.random.Generator | None = None,
        clip_denoised: bool = True,
        denoised_fn: DenoisedFn | None = None,
    ) -> dict[str, Array]:
        r"""One ancestral step: x_{t−1} = μ + 1[t ≠ 0]·exp(½ log σ²)·z (Ho et al. 2020,
        Algorithm 2). Returns ``sample`` and ``pred_xstart``."""
        x_t = self._x(x_t, "x_t")
        t = self._t(t, x_t.shape[0])
        noise = self._noise(noise, rng, x_t)
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        w = r["w"]
        std = np.exp(0.5 * r["log_variance"])
        sample = r["mean"] + self._nonzero_mask(t, x_t.ndim, w) * std * noise.astype(w)
        return {
            "sample": sample.astype(x_t.dtype),
            "pred_xstart": r["pred_xstart"].astype(x_t.dtype),
        }

    def ddim_sigma(self, t: Array, eta: float) -> Array:
        r"""σ_t(η) = η·√((1 − ᾱ_prev)/(1 − ᾱ))·√(1 − ᾱ/ᾱ_prev) (Song et al. 2021, Eq. 16),
        float64, shape of ``t``. η = 1 gives σ² = β̃ of the (respaced) chain."""
        t = np.asarray(t, dtype=np.int64)
        return float(eta) * self._tab["ddim_sigma_factor"][t]

    def _check_eta(self, eta: float, t: Array) -> float:
        eta = float(eta)
        if not np.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0, got {eta}")
        sig2 = self.ddim_sigma(t, eta) ** 2
        bad = sig2 > self._tab["one_minus_ab_prev"][t] * (1 + 1e-12)
        if np.any(bad):
            tb = int(t[np.argmax(bad)])
            raise ValueError(
                f"eta={eta} makes σ² exceed 1 − ᾱ_prev at t={tb} (the DDIM update would take "
                "the square root of a negative number); use 0 <= eta <= 1"
            )
        return eta

    def ddim_sample(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        eta: float = 0.0,
        noise: Array | None = None,
        *,
        rng: np.random.Generator | None = None,
        clip_denoised: bool = True,
        denoised_fn: DenoisedFn | None = None,
    ) -> dict[str, Array]:
        r"""One DDIM step (Song et al. 2021, Eq. 12):
        x_prev = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ²)·ε̂ + 1[t ≠ 0]·σ·z.

        ᾱ_prev is the previous *retained* step of a respaced schedule. ε̂ is re-derived from
        the clipped x̂₀ unless the profile says otherwise (``ddim_rederive_eps``). ``noise``
        may be omitted when η = 0.
        """
        x_t = self._x(x_t, "x_t")
        t = self._t(t, x_t.shape[0])
        eta = self._check_eta(eta, t)
        if eta == 0.0 and noise is None and rng is None:
            noise = np.zeros_like(x_t)
        noise = self._noise(noise, rng, x_t)
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        w, xt, x0 = r["w"], r["x_t"], r["pred_xstart"]
        if self.profile.ddim_rederive_eps:
            eps = self._eps_from_xstart(xt, t, x0, w)
        elif self.mean_type == "eps":
            eps = r["mean_part"]
        else:
            eps = self._eps_from_xstart(xt, t, r["raw_xstart"], w)
        n = x_t.ndim
        ab_prev = self._coef(self.schedule.alphas_cumprod_prev, t, n, w)
        sigma = self._coef(self.ddim_sigma(np.arange(self.num_timesteps), eta), t, n, w)
        om = self._coef(self._tab["one_minus_ab_prev"], t, n, w)
        sample = (
            x0 * np.sqrt(ab_prev)
            + np.sqrt(np.maximum(om - sigma**2, 0)) * eps
            + self._nonzero_mask(t, n, w) * sigma * noise.astype(w)
        )
        return {"sample": sample.astype(x_t.dtype), "pred_xstart": x0.astype(x_t.dtype)}

    def ddim_reverse_sample(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        clip_denoised: bool = True,
        denoised_fn: DenoisedFn | None = None,
        eta: float = 0.0,
    ) -> dict[str, Array]:
        r"""One deterministic DDIM inversion step x_t → x_{t+1}:
        √ᾱ_next·x̂₀ + √(1 − ᾱ_next)·ε̂ (improved-diffusion; η must be 0)."""
        if eta != 0.0:
            raise ValueError("ddim_reverse_sample is deterministic: eta must be 0")
        x_t = self._x(x_t, "x_t")
        t = self._t(t, x_t.shape[0])
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        w, xt, x0 = r["w"], r["x_t"], r["pred_xstart"]
        s, n = self.schedule, x_t.ndim
        eps = (self._coef(s.sqrt_recip_alphas_cumprod, t, n, w) * xt - x0) / self._coef(
            s.sqrt_recipm1_alphas_cumprod, t, n, w
        )
        ab_next = self._coef(s.alphas_cumprod_next, t, n, w)
        sample = x0 * np.sqrt(ab_next) + np.sqrt(1 - ab_next) * eps
        return {"sample": sample.astype(x_t.dtype), "pred_xstart": x0.astype(x_t.dtype)}

    # ---------------------------------------------------------------- losses (losses.py)

    def vb_terms_bpd(
        self,
        model_output,
        x0,
        x_t,
        t,
        clip_denoised=True,
        *,
        return_grad=False,
        decoder="discretized",
        bin_width=2.0 / 255.0,
    ):
        """See :func:`npddpm.losses.vb_terms_bpd`."""
        return _losses.vb_terms_bpd(
            self,
            model_output,
            x0,
            x_t,
            t,
            clip_denoised,
            return_grad=return_grad,
            decoder=decoder,
            bin_width=bin_width,
        )

    def training_losses(self, model_output, x0, t, noise, *, x_t=None):
        """See :func:`npddpm.losses.training_losses`."""
        return _losses.training_losses(self, model_output, x0, t, noise, x_t=x_t)

    def prior_bpd(self, x0):
        """See :func:`npddpm.losses.prior_bpd`."""
        return _losses.prior_bpd(self, x0)

    def calc_bpd_loop(
        self,
        denoiser,
        x0,
        *,
        clip_denoised=True,
        seed=0,
        noise=None,
        decoder="discretized",
        bin_width=2.0 / 255.0,
    ):
        """See :func:`npddpm.losses.calc_bpd_loop`."""
        return _losses.calc_bpd_loop(
            self,
            denoiser,
            x0,
            clip_denoised=clip_denoised,
            seed=seed,
            noise=noise,
            decoder=decoder,
            bin_width=bin_width,
        )

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion({self.schedule!r}, mean_type={self.mean_type!r}, "
            f"var_type={self.var_type!r}, loss_type={self.loss_type!r}, "
            f"profile={self.profile.name!r})"
        )
