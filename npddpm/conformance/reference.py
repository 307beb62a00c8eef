r"""The reference a conformance check compares with: npddpm's values for the configuration an
implementation claims, and for each one-option change of it that a diagnosis tries.

A :class:`RefConfig` says how the expected values are computed. Its first fields are the
claimed configuration (parameterisation, variance, x̂₀ processing, DDIM's final ᾱ, profile
options); the rest are the changes a :class:`~npddpm.conformance.diagnoses.Diagnosis` makes
(an off-by-one index, a dropped square root, a flipped sign, …). With every change field at
its default, :class:`Reference` takes its values from :class:`npddpm.GaussianDiffusion`'s own
methods (``q_sample``, ``p_sample``, ``ddim_sample``); a change is applied to those values, or
the step is recombined in closed form from the same x̂₀, ε̂ and schedule tables (Ho et al. 2020,
Eq. 7; Song et al. 2021, Eq. 12). The closed form with no change equals ``ddim_sample``
(tested), so a diagnosis differs from the reference by its one change only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..diffusion import GaussianDiffusion
from ..schedules import Schedule
from ..thresholding import dynamic_thresholding

__all__ = ["RefConfig", "Reference", "betas_from_alphas_cumprod", "round_to"]

Array = np.ndarray


@dataclass(frozen=True)
class RefConfig:
    """How npddpm computes the expected values.

    Attributes
    ----------
    mean_type, var_type : str
        As :class:`npddpm.GaussianDiffusion`.
    clip : bool
        x̂₀ clipped to [−clip_range, clip_range].
    clip_range : float
    threshold : (ratio, max_value) or None
        Dynamic thresholding of x̂₀ (takes precedence over ``clip``, as in diffusers).
    final_alpha : {"one", "alpha0"}
        DDIM's ᾱ_prev after the last step: 1, or ᾱ₀ (diffusers ``set_alpha_to_one=False``).
    overrides : tuple of (option, value)
        :mod:`npddpm.profiles` options.

    The remaining fields are the changes diagnoses make; all off by default.
    """

    mean_type: str
    var_type: str
    clip: bool
    clip_range: float = 1.0
    threshold: tuple[float, float] | None = None
    final_alpha: str = "one"
    overrides: tuple = ()
    # ---- changes (diagnoses)
    t_shift: int = 0
    negate_output: bool = False
    alpha_dtype: str | None = None
    force_last_noise: bool = False
    no_noise_t1: bool = False
    ddim_prev_by_stride: bool = False
    ddim_prev_t_minus_1: bool = False
    std_of_log_beta: bool = False
    sigma_is_variance: bool = False
    coef_swap: bool = False
    xstart_over_alpha: bool = False
    q_no_sqrt: bool = False
    q_noise_sign: bool = False
    ddim_direction_sign: bool = False
    ddim_eta_ignored: bool = False
    ddim_direction_unclamped: bool = False

    @property
    def closed_form(self) -> bool:
        """True when a change needs the step recombined in closed form."""
        return any(
            (
                self.force_last_noise,
                self.no_noise_t1,
                self.std_of_log_beta,
                self.sigma_is_variance,
                self.coef_swap,
                self.ddim_direction_sign,
                self.ddim_eta_ignored,
                self.ddim_direction_unclamped,
                self.ddim_prev_by_stride,
                self.ddim_prev_t_minus_1,
                self.final_alpha != "one",
            )
        )


def betas_from_alphas_cumprod(ab: Array) -> Array:
    """β_t = 1 − ᾱ_t/ᾱ_{t−1} (ᾱ_{−1} = 1) from ``ab`` = ᾱ, shape (T,), clipped to [1e-300, 1]."""
    prev = np.concatenate([[1.0], ab[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        betas = 1.0 - ab / prev
    return np.clip(np.nan_to_num(betas, nan=1.0), 1e-300, 1.0)


class Reference:
    """npddpm's expected values for an implementation with ᾱ table ``alphas_cumprod`` and
    sampling chain ``timesteps`` (descending original timesteps), under ``cfg``.

    ``ok`` is False when the table cannot define a diffusion (not decreasing in [0, 1));
    the methods must not be called then.
    """

    def __init__(self, alphas_cumprod: Array, timesteps: list[int], cfg: RefConfig) -> None:
        ab = np.asarray(alphas_cumprod, dtype=np.float64)
        if cfg.alpha_dtype is not None:
            ab = round_to(ab, cfg.alpha_dtype)
        # a float16 table has runs of equal values (ᾱ rounds to 1 at small t); the reference
        # then reproduces the same divisions by zero as the implementation
        strict = np.all(np.diff(ab) < 0) if cfg.alpha_dtype is None else np.all(np.diff(ab) <= 0)
        self.ok = bool(strict and ab[-1] >= 0 and (ab[0] < 1 or cfg.alpha_dtype is not None))
        self.cfg, self.T, self.ab = cfg, ab.size, ab
        if not self.ok:
            return
        base = Schedule(betas_from_alphas_cumprod(ab))
        chain = sorted(timesteps)
        kw = dict(mean_type=cfg.mean_type, var_type=cfg.var_type, **dict(cfg.overrides))
        self.full = GaussianDiffusion(base, **kw)
        self.chain = chain
        self.d = self.full.respace(chain) if chain != list(range(self.T)) else self.full
        self.pos = {t: i for i, t in enumerate(chain)}
        self.stride = self.T // len(chain)

    # ------------------------------------------------------------------ pieces

    def _mo(self, mo: Array) -> Array:
        if self.cfg.negate_output:
            mo = mo.copy()
            D = mo.shape[1] // (2 if self.cfg.var_type.startswith("learned") else 1)
            mo[:, :D] = -mo[:, :D]
        return mo

    def _denoise(self, i: int) -> tuple[bool, Callable[[Array], Array] | None]:
        """(clip_denoised, denoised_fn) for the claimed x̂₀ processing at chain index ``i``."""
        cfg = self.cfg
        fns: list[Callable[[Array], Array]] = []
        if cfg.xstart_over_alpha and cfg.mean_type == "eps":
            # x̂₀ = (x_t − √(1−ᾱ)ε)/ᾱ: the correct x̂₀ divided by √ᾱ once more
            s = float(np.sqrt(self.d.schedule.alphas_cumprod[i]))
            fns.append(lambda x0: x0 / s)
        clip = cfg.clip
        if cfg.threshold is not None:
            fns.append(dynamic_thresholding(*cfg.threshold))
            clip = False
        elif cfg.clip and cfg.clip_range != 1.0:
            r = cfg.clip_range
            fns.append(lambda x0: np.clip(x0, -r, r))
            clip = False
        if not fns:
            return clip, None

        def fn(x0: Array) -> Array:
            for f in fns:
                x0 = f(x0)
            return x0

        return clip, fn

    def index(self, t: int) -> int | None:
        """The chain index of original timestep ``t`` after the diagnosed shift; None when
        outside the chain."""
        i = self.pos[t] + self.cfg.t_shift
        return i if 0 <= i < self.d.num_timesteps else None

    def alpha(self, t: int) -> float:
        """ᾱ at original timestep ``t`` (the reference's table)."""
        return float(self.ab[t])

    def alpha_prev(self, t: int) -> float:
        """ᾱ of the step's target from original timestep ``t`` (1 after the last step)."""
        i = self.index(t)
        return 1.0 if i is None else float(self.d.schedule.alphas_cumprod_prev[i])

    # ------------------------------------------------------------------ quantities

    def q_sample(self, x0: Array, t: int, noise: Array) -> Array | None:
        """x_t for ``x0`` (B, D) and ``noise`` at index ``t + cfg.t_shift`` of the full table;
        None when the shifted index is outside [0, T)."""
        i = t + self.cfg.t_shift
        if not 0 <= i < self.T:
            return None
        if self.cfg.q_no_sqrt or self.cfg.q_noise_sign:
            ab = self.ab[i]
            a, b = (ab, 1 - ab) if self.cfg.q_no_sqrt else (np.sqrt(ab), np.sqrt(1 - ab))
            return a * x0 + (-b if self.cfg.q_noise_sign else b) * noise
        return self.full.q_sample(x0, np.full(len(x0), i), noise)

    def _step(self, mo: Array, x_t: Array, t: int) -> tuple | None:
        """(index, per-row index, clip, denoised_fn, model output) of a step from ``t``."""
        i = self.index(t)
        if i is None:
            return None
        clip, fn = self._denoise(i)
        return i, np.full(len(x_t), i), clip, fn, self._mo(mo)

    def ddpm(self, mo: Array, x_t: Array, t: int, noise: Array) -> tuple[Array, Array] | None:
        """``(x_prev, pred_xstart)`` of one DDPM step from original timestep ``t``; None when
        the (shifted) index is outside the chain."""
        step = self._step(mo, x_t, t)
        if step is None:
            return None
        i, tb, clip, fn, mo = step
        cfg = self.cfg
        if cfg.ddim_prev_t_minus_1:  # the respacing ignored: the full schedule's step at t
            j = t + cfg.t_shift
            if not 0 <= j < self.T:
                return None
            out = self.full.p_sample(
                mo, x_t, np.full(len(x_t), j), noise, clip_denoised=clip, denoised_fn=fn
            )
            return out["sample"], out["pred_xstart"]
        if not cfg.closed_form:
            out = self.d.p_sample(mo, x_t, tb, noise, clip_denoised=clip, denoised_fn=fn)
            return out["sample"], out["pred_xstart"]
        pmv = self.d.p_mean_variance(mo, x_t, tb, clip_denoised=clip, denoised_fn=fn)
        x0, mean = pmv["pred_xstart"], pmv["mean"]
        if cfg.coef_swap:
            s = self.d.schedule
            mean = s.posterior_mean_coef2[i] * x0 + s.posterior_mean_coef1[i] * x_t
        mask = float(np.asarray(self.d.nonzero_mask(tb[:1], 1, np.dtype(np.float64)))[0])
        if cfg.std_of_log_beta:  # diffusers fixed_large_log: √(log β)·z, NaN (HF #14569)
            with np.errstate(invalid="ignore"):
                std = np.sqrt(np.log(self.d.schedule.betas[i])) if mask else 0.0
            return mean + std * noise, x0
        logvar = pmv["log_variance"]
        std = np.exp(logvar) if cfg.sigma_is_variance else np.exp(0.5 * logvar)
        if cfg.force_last_noise:
            mask = 1.0
        if cfg.no_noise_t1 and i <= 1:
            mask = 0.0
        return mean + mask * std * noise, x0

    def ddim(
        self, mo: Array, x_t: Array, t: int, eta: float, noise: Array
    ) -> tuple[Array, Array] | None:
        """``(x_prev, pred_xstart)`` of one DDIM step (``eta``, ``noise``) from original
        timestep ``t``; None when the (shifted) index is outside the chain."""
        step = self._step(mo, x_t, t)
        if step is None:
            return None
        i, tb, clip, fn, mo = step
        cfg = self.cfg
        if not cfg.closed_form:
            out = self.d.ddim_sample(mo, x_t, tb, eta, noise, clip_denoised=clip, denoised_fn=fn)
            return out["sample"], out["pred_xstart"]
        r = self.d.reverse(mo, x_t, tb, clip_denoised=clip, denoised_fn=fn)
        x0 = np.asarray(r.pred_xstart, dtype=np.float64)
        if self.full.profile.ddim_rederive_eps or self.d.mean_type != "eps":
            src = x0 if self.full.profile.ddim_rederive_eps else r.raw_xstart
            eps = self.d.predict_eps_from_xstart(x_t, tb, np.asarray(src, dtype=np.float64))
        else:
            eps = np.asarray(r.mean_part, dtype=np.float64)
        ab = float(self.d.schedule.alphas_cumprod[i])
        ab_prev = self._ddim_target(t, i)
        if cfg.ddim_eta_ignored:
            eta = 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
        sigma = float(np.nan_to_num(sigma))
        radicand = max(1 - ab_prev - sigma**2, 0.0)
        if cfg.ddim_direction_unclamped and radicand < 4 * np.finfo(np.float32).eps:
            # diffusers takes (1 − ᾱ_prev − σ²)**0.5 in float32 with no clamp (HF #5969): where
            # the exact radicand is within float32 rounding of 0 (ᾱ_t = 0, η = 1) the rounded
            # one may fall below 0, and the step is NaN; the divergence predicts that NaN
            radicand = np.nan
        direction = np.sqrt(radicand) * eps
        if cfg.ddim_direction_sign:
            direction = -direction
        return np.sqrt(ab_prev) * x0 + direction + sigma * noise, x0

    def _ddim_target(self, t: int, i: int) -> float:
        """ᾱ_prev of a DDIM step from original timestep ``t`` (chain index ``i``)."""
        cfg = self.cfg
        if cfg.ddim_prev_by_stride:  # diffusers DDIM: prev = t − T//N (HF #12633)
            prev = t - self.stride
        elif cfg.ddim_prev_t_minus_1:
            prev = t - 1
        else:
            prev = self.chain[i - 1] if i > 0 else -1
        if prev >= 0:
            return float(self.ab[prev])
        return float(self.ab[0]) if cfg.final_alpha == "alpha0" else 1.0


def round_to(ab: Array, dtype: str) -> Array:
    """``ab`` rounded to ``dtype`` ("float16", "bfloat16", "float32") and back to float64."""
    if dtype == "bfloat16":  # round to nearest even on the top 16 bits of the float32
        bits: Any = ab.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
        return np.asarray(bits, dtype=np.uint32).view(np.float32).astype(np.float64)
    return cast(Any, ab).astype(dtype).astype(np.float64)
