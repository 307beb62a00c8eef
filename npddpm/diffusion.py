r"""The Gaussian diffusion process: forward noising, the true posterior, the model's reverse
step (DDPM and DDIM), and conversions between parameterisations (their formulas live in
:mod:`npddpm.parameterisation`; the methods here validate and pick the work dtype).

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

from typing import Any, get_args

import numpy as np

from . import losses as _losses
from . import parameterisation as _par
from ._checks import check_batch, check_timesteps, choose
from .parameterisation import DiffusionTables
from .profiles import Profile, get_profile
from .schedules import Schedule
from .thresholding import dynamic_threshold, dynamic_thresholding
from .typing import DenoisedFn, Denoiser, LossType, MeanType, ReverseStep, VarType

__all__ = [
    "LOSS_TYPES",
    "MEAN_TYPES",
    "VAR_TYPES",
    "DenoisedFn",
    "DiffusionTables",
    "GaussianDiffusion",
    "LossType",
    "MeanType",
    "ReverseStep",
    "VarType",
    "dynamic_threshold",
    "dynamic_thresholding",
]

MEAN_TYPES: tuple[str, ...] = get_args(MeanType)
VAR_TYPES: tuple[str, ...] = get_args(VarType)
LOSS_TYPES: tuple[str, ...] = get_args(LossType)

Array = np.ndarray


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

    Attributes
    ----------
    tables : DiffusionTables
        The per-timestep variance and DDIM tables (read-only).
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        mean_type: MeanType | str = "eps",
        var_type: VarType | str = "fixed_small",
        loss_type: LossType | str = "mse",
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
        self.tables = DiffusionTables.build(schedule, self.profile)
        self._respaced = not schedule.is_identity_map  # for check_t's message

    def respace(self, timesteps: Any) -> GaussianDiffusion:
        """The same diffusion on ``schedule.respace(timesteps)``.

        Every option is kept: mean, variance and loss type, the profile with its overrides,
        and the schedule's precision. ``timesteps`` are indices into this schedule (a set or
        strictly increasing sequence, e.g. from :func:`npddpm.schedules.space_timesteps`).
        """
        return GaussianDiffusion(
            self.schedule.respace(timesteps),
            mean_type=self.mean_type,
            var_type=self.var_type,
            loss_type=self.loss_type,
            profile=self.profile,
        )

    # ---------------------------------------------------------------- published helpers

    def work_dtype(self, x: Array) -> np.dtype:
        """The dtype the maths runs in for input ``x``: float64, or x's dtype under the
        profile's ``arithmetic="input_dtype"``."""
        return np.dtype(np.float64) if self.profile.arithmetic == "float64" else x.dtype

    @staticmethod
    def coef(arr: Array, t: Array, ndim: int, dtype: np.dtype) -> Array:
        """``arr[t]`` (float64, shape (T,)) cast to ``dtype``, shaped ``(B, 1, …, 1)`` with
        ``ndim`` axes (:func:`npddpm.parameterisation.gather`)."""
        return _par.gather(arr, t, ndim, dtype)

    def check_t(self, t: object, batch: int) -> Array:
        """``t`` validated as int64 indices ``(batch,)`` into this (respaced) schedule; a
        scalar is broadcast (:func:`npddpm._checks.check_timesteps`)."""
        return check_timesteps(t, batch, self.num_timesteps, respaced=self._respaced)

    def _noise(self, noise: object, rng: np.random.Generator | None, like: Array) -> Array:
        if noise is None:
            if rng is None:
                raise ValueError("pass noise= (an array) or rng= (a numpy Generator)")
            return rng.standard_normal(like.shape).astype(like.dtype)
        return check_batch(noise, "noise", like)

    def split_output(self, model_output: object, x: Array) -> tuple[Array, Array | None]:
        """Split ``model_output`` into (mean part, variance values or None)."""
        out = check_batch(model_output, "model_output")
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
        x0 = check_batch(x0, "x0")
        t = self.check_t(t, x0.shape[0])
        w, s, c = self.work_dtype(x0), self.schedule, _par.gather
        mean = c(s.sqrt_alphas_cumprod, t, x0.ndim, w) * x0.astype(w)
        var = np.broadcast_to(c(s.one_minus_alphas_cumprod, t, x0.ndim, w), x0.shape)
        logv = np.broadcast_to(c(s.log_one_minus_alphas_cumprod, t, x0.ndim, w), x0.shape)
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
        x0 = check_batch(x0, "x0")
        t = self.check_t(t, x0.shape[0])
        noise = self._noise(noise, rng, x0)
        w, s = self.work_dtype(x0), self.schedule
        a = _par.gather(s.sqrt_alphas_cumprod, t, x0.ndim, w)
        b = _par.gather(s.sqrt_one_minus_alphas_cumprod, t, x0.ndim, w)
        return (a * x0.astype(w) + b * noise.astype(w)).astype(x0.dtype)

    def q_transition_mean_variance(
        self, x_s: Array, s: Array, t: Array
    ) -> tuple[Array, Array, Array]:
        r"""q(x_t | x_s) for s < t: N(√(ᾱ_t/ᾱ_s) x_s, (1 − ᾱ_t/ᾱ_s) I).

        ``s = −1`` means the data (ᾱ_{−1} = 1), so ``s = t − 1`` gives q(x_t | x_{t−1}) =
        N(√α_t x_{t−1}, β_t I). The variance is ``−expm1(log ᾱ_t − log ᾱ_s)`` (no
        cancellation). Returns (mean, variance, log_variance), each of x_s's shape.
        """
        x_s = check_batch(x_s, "x_s")
        t = self.check_t(t, x_s.shape[0])
        s = np.asarray(s)
        if s.ndim == 0:
            s = np.full_like(t, int(s))
        if s.shape != t.shape or s.dtype.kind not in "iu" or np.any(s < -1) or np.any(s >= t):
            raise ValueError("s must be integers with -1 <= s < t, one per row (shape (B,))")
        la = self.schedule.log_alphas_cumprod
        log_ratio = la[t] - np.where(s >= 0, la[np.maximum(s, 0)], 0.0)
        w = self.work_dtype(x_s)
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
        noise = check_batch(noise, "noise", mean)
        return (mean + np.sqrt(var) * noise).astype(mean.dtype)

    def q_posterior_mean_variance(
        self, x0: Array, x_t: Array, t: Array
    ) -> tuple[Array, Array, Array]:
        r"""q(x_{t−1} | x_t, x₀) = N(coef1·x₀ + coef2·x_t, β̃_t I) (Ho et al. 2020, Eqs. 6–7).

        Returns (mean, variance, log_variance_clipped); the t = 0 log-variance follows the
        profile's ``t0_log_variance``.
        """
        x0 = check_batch(x0, "x0")
        x_t = check_batch(x_t, "x_t", x0)
        t = self.check_t(t, x0.shape[0])
        w, n = self.work_dtype(x0), x0.ndim
        mean = self.posterior_mean(x0.astype(w), x_t.astype(w), t, w)
        var = np.broadcast_to(_par.gather(self.schedule.posterior_variance, t, n, w), x0.shape)
        logv = np.broadcast_to(_par.gather(self.tables.small_logvar, t, n, w), x0.shape)
        return mean.astype(x0.dtype), var.astype(x0.dtype), logv.astype(x0.dtype)

    def posterior_mean(self, x0: Array, x_t: Array, t: Array, dtype: np.dtype) -> Array:
        r"""coef1·x₀ + coef2·x_t (Ho et al. 2020, Eq. 7) in ``dtype``, shape (B, C, ...).

        No validation: ``x0`` and ``x_t`` already in ``dtype``, ``t`` checked indices (B,)
        (:meth:`q_posterior_mean_variance` is the validating form).
        """
        s, n = self.schedule, x0.ndim
        c1 = _par.gather(s.posterior_mean_coef1, t, n, dtype)
        c2 = _par.gather(s.posterior_mean_coef2, t, n, dtype)
        return c1 * x0 + c2 * x_t

    # ---------------------------------------------------------------- conversions

    def _convert(self, fn: Any, t: Array, form: str | None = None, **arrays: Array) -> Array:
        """Validate ``arrays`` (the first names the batch; the rest must match it) and ``t``,
        apply ``fn(schedule, *arrays, w)`` (``t`` after the first) in the work dtype ``w`` and
        cast to the first array's dtype: the public side of every conversion."""
        (name, a), *rest = arrays.items()
        a = check_batch(a, name)
        others = [check_batch(v, k, a) for k, v in rest]
        t = self.check_t(t, a.shape[0])
        w, kw = self.work_dtype(a), {} if form is None else {"form": form}
        out = fn(self.schedule, a.astype(w), t, *(o.astype(w) for o in others), w, **kw)
        return out.astype(a.dtype)

    def predict_xstart_from_eps(self, x_t: Array, t: Array, eps: Array) -> Array:
        r"""x̂₀ from ε: ``√(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε`` (profile ``xstart_from_eps="recip"``) or
        ``(x_t − √(1 − ᾱ)·ε)/√ᾱ`` (``"divide"``, diffusers)."""
        form = self.profile.xstart_from_eps
        return self._convert(_par.xstart_from_eps, t, form, x_t=x_t, eps=eps)

    def predict_eps_from_xstart(self, x_t: Array, t: Array, pred_xstart: Array) -> Array:
        r"""ε̂ from x̂₀: ``(√(1/ᾱ)·x_t − x̂₀)/√(1/ᾱ − 1)`` (or diffusers'
        ``(x_t − √ᾱ·x̂₀)/√(1 − ᾱ)`` under ``xstart_from_eps="divide"``)."""
        form = self.profile.xstart_from_eps
        return self._convert(_par.eps_from_xstart, t, form, x_t=x_t, pred_xstart=pred_xstart)

    def predict_xstart_from_xprev(self, x_t: Array, t: Array, xprev: Array) -> Array:
        r"""x̂₀ from the posterior mean: ``x_{t−1}/coef1 − (coef2/coef1)·x_t``."""
        return self._convert(_par.xstart_from_xprev, t, x_t=x_t, xprev=xprev)

    def predict_v(self, x0: Array, t: Array, eps: Array) -> Array:
        r"""v = √ᾱ·ε − √(1 − ᾱ)·x₀ (Salimans & Ho 2022, §4; diffusers ``get_velocity``)."""
        return self._convert(_par.v_from_xstart_eps, t, x0=x0, eps=eps)

    def predict_xstart_from_v(self, x_t: Array, t: Array, v: Array) -> Array:
        r"""x̂₀ = √ᾱ·x_t − √(1 − ᾱ)·v."""
        return self._convert(_par.xstart_from_v, t, x_t=x_t, v=v)

    def predict_eps_from_v(self, x_t: Array, t: Array, v: Array) -> Array:
        r"""ε̂ = √ᾱ·v + √(1 − ᾱ)·x_t."""
        return self._convert(_par.eps_from_v, t, x_t=x_t, v=v)

    def score_from_eps(self, eps: Array, t: Array) -> Array:
        r"""∇ log q(x_t) = −ε̂ / √(1 − ᾱ_t) (Song et al. 2021, Eq. 8 with σ² = 1 − ᾱ)."""
        return self._convert(_par.score_from_eps, t, eps=eps)

    def eps_from_score(self, score: Array, t: Array) -> Array:
        r"""ε̂ = −√(1 − ᾱ_t)·score."""
        return self._convert(_par.eps_from_score, t, score=score)

    # ---------------------------------------------------------------- reverse process

    def reverse(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        *,
        clip_denoised: bool = True,
        denoised_fn: DenoisedFn | None = None,
    ) -> ReverseStep:
        r"""Everything of the model's p(x_{t−1} | x_t), in the work dtype.

        The same step as :meth:`p_mean_variance` (whose four arrays are this step's fields
        cast to x_t's dtype), plus what the losses and DDIM need: the raw x̂₀, the mean and
        variance channels, x_t in the work dtype and the work dtype itself.

        Parameters
        ----------
        model_output : ndarray (B, C, ...), or (B, 2C, ...) for a learned variance
        x_t : ndarray (B, C, ...)
        t : ndarray of int (B,)
            Indices into the (respaced) schedule.
        clip_denoised, denoised_fn
            As :meth:`p_mean_variance`.

        Returns
        -------
        ReverseStep
        """
        x_t = check_batch(x_t, "x_t")
        t = self.check_t(t, x_t.shape[0])
        return self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)

    def _reverse(
        self,
        model_output: Array,
        x_t: Array,
        t: Array,
        clip_denoised: bool,
        denoised_fn: DenoisedFn | None,
    ) -> ReverseStep:
        mean_part, var_values = self.split_output(model_output, x_t)
        if mean_part.dtype != x_t.dtype:
            raise TypeError(f"model_output has dtype {mean_part.dtype} but x_t has {x_t.dtype}")
        w = self.work_dtype(x_t)
        xt = x_t.astype(w)
        mp = mean_part.astype(w)
        var, logvar = _par.model_variance(
            self.tables, self.var_type, self.profile.learned_output, var_values, t, x_t.shape, w
        )
        form = self.profile.xstart_from_eps
        raw = _par.xstart_from_output(self.schedule, self.mean_type, xt, t, mp, w, form=form)
        x0 = raw
        if denoised_fn is not None:
            x0 = np.asarray(denoised_fn(x0), dtype=w)
        if clip_denoised:
            x0 = np.clip(x0, -1, 1)
        mean = mp if self.mean_type == "x_prev" else self.posterior_mean(x0, xt, t, w)
        return ReverseStep(mean, var, logvar, x0, raw, mp, var_values, xt, w)

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
        x_t = check_batch(x_t, "x_t")
        r = self.reverse(model_output, x_t, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn)
        d = x_t.dtype
        return {
            k: np.asarray(getattr(r, k)).astype(d)
            for k in ("mean", "variance", "log_variance", "pred_xstart")
        }

    def nonzero_mask(self, t: Array, ndim: int, dtype: np.dtype) -> Array:
        """1 where the reverse step from index ``t`` adds noise, else 0, shape (B, 1, …, 1).

        The last step adds none: at index 0 (profile ``last_step_noise="index"``) or at
        original timestep 0 (``"timestep"``).
        """
        if self.profile.last_step_noise == "timestep":
            nz = self.schedule.timestep_map[t] != 0
        else:
            nz = t != 0
        return nz.astype(dtype).reshape((-1,) + (1,) * (ndim - 1))

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
        x_t = check_batch(x_t, "x_t")
        t = self.check_t(t, x_t.shape[0])
        noise = self._noise(noise, rng, x_t)
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        w = r.dtype
        std = np.exp(0.5 * r.log_variance)
        sample = r.mean + self.nonzero_mask(t, x_t.ndim, w) * std * noise.astype(w)
        return {"sample": sample.astype(x_t.dtype), "pred_xstart": r.pred_xstart.astype(x_t.dtype)}

    def ddim_sigma(self, t: Array | int, eta: float) -> Array:
        r"""σ_t(η) = η·√((1 − ᾱ_prev)/(1 − ᾱ))·√(1 − ᾱ/ᾱ_prev) (Song et al. 2021, Eq. 16),
        float64, shape of ``t``. η = 1 gives σ² = β̃ of the (respaced) chain."""
        t = np.asarray(t, dtype=np.int64)
        return float(eta) * self.tables.ddim_sigma_factor[t]

    def check_eta(self, eta: float, t: Array) -> float:
        """``eta`` as a float, checked to be finite, >= 0 and small enough that σ_t(η)² ≤
        1 − ᾱ_prev at every index in ``t`` (int array), so the DDIM step is real."""
        if isinstance(eta, (bool, np.bool_)) or not isinstance(
            eta, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"eta must be a real number (0 = deterministic DDIM, 1 = DDPM-like), got "
                f"{type(eta).__name__} {eta!r:.40}; pass a float such as eta=0.5"
            )
        eta = float(eta)
        if not np.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0, got {eta}")
        sig2 = self.ddim_sigma(t, eta) ** 2
        bad = sig2 > self.tables.one_minus_ab_prev[t] * (1 + 1e-12)
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
        x_t = check_batch(x_t, "x_t")
        t = self.check_t(t, x_t.shape[0])
        eta = self.check_eta(eta, t)
        if eta == 0.0 and noise is None and rng is None:
            noise = np.zeros_like(x_t)
        noise = self._noise(noise, rng, x_t)
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        w, xt, x0, s = r.dtype, r.x_t, r.pred_xstart, self.schedule
        form = self.profile.xstart_from_eps
        if self.profile.ddim_rederive_eps:
            eps = _par.eps_from_xstart(s, xt, t, x0, w, form=form)
        elif self.mean_type == "eps":
            eps = r.mean_part
        else:
            eps = _par.eps_from_xstart(s, xt, t, r.raw_xstart, w, form=form)
        n, c = x_t.ndim, _par.gather
        ab_prev = c(s.alphas_cumprod_prev, t, n, w)
        sigma = c(self.ddim_sigma(np.arange(self.num_timesteps), eta), t, n, w)
        om = c(self.tables.one_minus_ab_prev, t, n, w)
        sample = (
            x0 * np.sqrt(ab_prev)
            + np.sqrt(np.maximum(om - sigma**2, 0)) * eps
            + self.nonzero_mask(t, n, w) * sigma * noise.astype(w)
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
        x_t = check_batch(x_t, "x_t")
        t = self.check_t(t, x_t.shape[0])
        r = self._reverse(model_output, x_t, t, clip_denoised, denoised_fn)
        w, xt, x0 = r.dtype, r.x_t, r.pred_xstart
        s, n, c = self.schedule, x_t.ndim, _par.gather
        # improved-diffusion's recip form, verbatim (no zero-SNR limit: ᾱ_next comes after t)
        eps = (c(s.sqrt_recip_alphas_cumprod, t, n, w) * xt - x0) / c(
            s.sqrt_recipm1_alphas_cumprod, t, n, w
        )
        ab_next = c(s.alphas_cumprod_next, t, n, w)
        sample = x0 * np.sqrt(ab_next) + np.sqrt(1 - ab_next) * eps
        return {"sample": sample.astype(x_t.dtype), "pred_xstart": x0.astype(x_t.dtype)}

    # ---------------------------------------------------------------- losses (losses.py)

    def vb_terms_bpd(
        self,
        model_output: Array,
        x0: Array,
        x_t: Array,
        t: Array,
        clip_denoised: bool = True,
        *,
        return_grad: bool = False,
        decoder: str = "discretized",
        bin_width: float = 2.0 / 255.0,
    ) -> dict[str, Array]:
        """See :func:`npddpm.losses.vb_terms_bpd`."""
        return _losses.vb_terms_bpd(
            self, model_output, x0, x_t, t, clip_denoised,
            return_grad=return_grad, decoder=decoder, bin_width=bin_width,
        )  # fmt: skip

    def training_losses(
        self, model_output: Array, x0: Array, t: Array, noise: Array, *, x_t: Array | None = None
    ) -> tuple[dict[str, Array], Array]:
        """See :func:`npddpm.losses.training_losses`."""
        return _losses.training_losses(self, model_output, x0, t, noise, x_t=x_t)

    def prior_bpd(self, x0: Array) -> Array:
        """See :func:`npddpm.losses.prior_bpd`."""
        return _losses.prior_bpd(self, x0)

    def calc_bpd_loop(
        self,
        denoiser: Denoiser,
        x0: Array,
        *,
        clip_denoised: bool = True,
        seed: int = 0,
        noise: Array | None = None,
        decoder: str = "discretized",
        bin_width: float = 2.0 / 255.0,
    ) -> dict[str, Array]:
        """See :func:`npddpm.losses.calc_bpd_loop`."""
        return _losses.calc_bpd_loop(
            self, denoiser, x0, clip_denoised=clip_denoised, seed=seed, noise=noise,
            decoder=decoder, bin_width=bin_width,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion({self.schedule!r}, mean_type={self.mean_type!r}, "
            f"var_type={self.var_type!r}, loss_type={self.loss_type!r}, "
            f"profile={self.profile.name!r})"
        )
