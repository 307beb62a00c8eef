r"""The reference a conformance check compares with, and the diagnoses that explain a mismatch.

A :class:`RefConfig` says how npddpm computes the expected values; a :class:`Diagnosis` changes
one field of it (a known divergence, with its source, or a named fault). :data:`DIAGNOSES`
lists every diagnosis the checker tries.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np

from ..diffusion import GaussianDiffusion
from ..schedules import Schedule
from .adapters import Adapter

__all__ = ["DIAGNOSES", "Diagnosis", "RefConfig", "Reference", "betas_from_alphas_cumprod"]

Array = np.ndarray


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class RefConfig:
    """How npddpm computes the expected values (a diagnosis changes one field)."""

    mean_type: str
    var_type: str
    clip: bool
    overrides: tuple = ()
    t_shift: int = 0
    negate_output: bool = False
    alpha_dtype: str | None = None
    force_last_noise: bool = False
    ddim_prev_by_stride: bool = False
    std_of_log_beta: bool = False


def betas_from_alphas_cumprod(ab: Array) -> Array:
    """β_t = 1 − ᾱ_t/ᾱ_{t−1} (ᾱ_{−1} = 1) from ``ab`` = ᾱ, shape (T,), clipped to [1e-300, 1]."""
    prev = np.concatenate([[1.0], ab[:-1]])
    betas = 1.0 - ab / prev
    return np.clip(betas, 1e-300, 1.0)


class Reference:
    """npddpm's expected values for ``adapter`` under the reference configuration ``cfg``."""

    def __init__(self, adapter: Adapter, cfg: RefConfig) -> None:
        ab = np.asarray(adapter.alphas_cumprod, dtype=np.float64)
        if cfg.alpha_dtype is not None:
            ab = ab.astype(cfg.alpha_dtype).astype(np.float64)
        # a float16 table has runs of equal values (ᾱ rounds to 1 at small t); the reference
        # then reproduces the same divisions by zero as the implementation
        strict = np.all(np.diff(ab) < 0) if cfg.alpha_dtype is None else np.all(np.diff(ab) <= 0)
        self.ok = bool(strict and ab[-1] >= 0 and (ab[0] < 1 or cfg.alpha_dtype is not None))
        self.cfg, self.T = cfg, ab.size
        if not self.ok:
            return
        base = Schedule(betas_from_alphas_cumprod(ab))
        chain = sorted(cast(list[int], adapter.timesteps))  # a list after __post_init__
        kw = dict(mean_type=cfg.mean_type, var_type=cfg.var_type, **dict(cfg.overrides))
        self.full = GaussianDiffusion(base, **kw)
        self.chain = chain
        self.d = self.full.respace(chain) if chain != list(range(self.T)) else self.full
        self.pos = {t: i for i, t in enumerate(chain)}
        self.stride = self.T // len(chain)

    def _mo(self, mo: Array) -> Array:
        if self.cfg.negate_output:
            mo = mo.copy()
            D = mo.shape[1] // (2 if self.cfg.var_type.startswith("learned") else 1)
            mo[:, :D] = -mo[:, :D]
        return mo

    def q_sample(self, x0, t, noise):
        """npddpm's x_t for ``x0`` (B, D) and ``noise`` at index ``t + cfg.t_shift`` (full chain).

        None when the shifted index is outside [0, T).
        """
        i = t + self.cfg.t_shift
        if not 0 <= i < self.T:
            return None
        return self.full.q_sample(x0, np.full(len(x0), i), noise)

    def ddpm(self, mo, x_t, t, noise):
        """npddpm's ``(x_prev, pred_xstart)`` for one DDPM step from original timestep ``t``.

        The step is taken at position ``pos[t] + cfg.t_shift`` of the (respaced) chain, with
        ``mo`` (the model output, v-channels negated under ``cfg.negate_output``), ``x_t`` (B, D)
        and ``noise`` (B, D): :meth:`GaussianDiffusion.p_sample`, or mean + std·noise when
        ``cfg.std_of_log_beta`` (std = √(log β_i), 0 at i = 0) or ``cfg.force_last_noise``
        (std = exp(½·log variance), noise also at the last step). None when the position is out
        of range.
        """
        i = self.pos[t] + self.cfg.t_shift
        if not 0 <= i < self.d.num_timesteps:
            return None
        tb = np.full(len(x_t), i)
        if self.cfg.std_of_log_beta:  # diffusers fixed_large_log: √(log β)·z, NaN (HF #14569)
            out = self.d.p_mean_variance(self._mo(mo), x_t, tb, clip_denoised=self.cfg.clip)
            with np.errstate(invalid="ignore"):
                std = np.sqrt(np.log(self.d.schedule.betas[i])) if i > 0 else 0.0
            return out["mean"] + std * noise, out["pred_xstart"]
        if self.cfg.force_last_noise:
            out = self.d.p_mean_variance(self._mo(mo), x_t, tb, clip_denoised=self.cfg.clip)
            return out["mean"] + np.exp(0.5 * out["log_variance"]) * noise, out["pred_xstart"]
        out = self.d.p_sample(self._mo(mo), x_t, tb, noise, clip_denoised=self.cfg.clip)
        return out["sample"], out["pred_xstart"]

    def ddim(self, mo, x_t, t, eta, noise):
        """npddpm's ``(x_prev, pred_xstart)`` for one DDIM step (``eta``, ``noise``) from ``t``.

        At position ``pos[t] + cfg.t_shift`` of the chain, or, with ``cfg.ddim_prev_by_stride``,
        from t to t − T//N (a chain of t alone when that is negative). None when the position is
        out of range.
        """
        i = self.pos[t] + self.cfg.t_shift
        if not 0 <= i < self.d.num_timesteps:
            return None
        if self.cfg.ddim_prev_by_stride:  # diffusers DDIM: prev = t − T//N (HF #12633)
            prev = t - self.stride
            pair = [prev, t] if prev >= 0 else [t]
            d2 = self.full.respace(pair)
            out = d2.ddim_sample(
                self._mo(mo),
                x_t,
                np.full(len(x_t), len(pair) - 1),
                eta,
                noise,
                clip_denoised=self.cfg.clip,
            )
            return out["sample"], out["pred_xstart"]
        out = self.d.ddim_sample(
            self._mo(mo), x_t, np.full(len(x_t), i), eta, noise, clip_denoised=self.cfg.clip
        )
        return out["sample"], out["pred_xstart"]


# --------------------------------------------------------------------------- diagnoses


@dataclass(frozen=True)
class Diagnosis:
    """One explanation of a mismatch: a change of the reference that makes it conform."""

    name: str
    kind: str  # "known" (documented divergence) or "fault"
    source: str
    change: dict = field(default_factory=dict)
    #: adapter profiles this (known) divergence belongs to; None: any implementation
    profiles: tuple[str, ...] | None = None
    #: the precision the diagnosed computation runs in, when it is not the adapter's
    tolerance_dtype: str | None = None

    def apply(self, cfg: RefConfig, adapter: Adapter) -> RefConfig | None:
        """``cfg`` with this diagnosis's change made, or None when it does not apply to ``adapter``.

        None when ``profiles`` excludes the adapter's profile, for ``var_swap`` on a learned
        variance, and for ``negate_output`` unless ``mean_type`` is ``"v"``.
        """
        if self.profiles is not None and adapter.profile not in self.profiles:
            return None
        ch = dict(self.change)
        if "var_swap" in ch:
            if cfg.var_type not in ("fixed_small", "fixed_large"):
                return None
            return replace(
                cfg, var_type="fixed_large" if cfg.var_type == "fixed_small" else "fixed_small"
            )
        if "clip_flip" in ch:
            return replace(cfg, clip=not cfg.clip)
        if "negate_output" in ch:
            return replace(cfg, negate_output=True) if cfg.mean_type == "v" else None
        if "overrides" in ch:
            return replace(
                cfg, overrides=tuple(sorted({**dict(cfg.overrides), **ch["overrides"]}.items()))
            )
        return replace(cfg, **ch)


DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis(
        "add_noise runs in the sample dtype: float16 samples cast ᾱ to float16 too",
        "known",
        "huggingface/diffusers PR #3005",
        {"alpha_dtype": "float16"},
        profiles=("diffusers",),
        tolerance_dtype="float16",
    ),
    Diagnosis(
        "t = 0 log-variance floored at log 1e-20 instead of log β̃₁",
        "known",
        "diffusers ddpm.py:391; TF1 diffusion_utils.py:82; lucidrains ddp.py:566",
        {"overrides": {"t0_log_variance": "floor"}},
    ),
    Diagnosis(
        "last-step noise keyed on the timestep value, not the index",
        "known",
        "diffusers ddpm.py:543",
        {"overrides": {"last_step_noise": "timestep"}},
    ),
    Diagnosis(
        "DDIM ε not re-derived from the clipped x̂₀ (use_clipped_model_output=False)",
        "known",
        "diffusers ddim.py:483-485",
        {"overrides": {"ddim_rederive_eps": False}},
    ),
    Diagnosis(
        "'learned' variance output read as σ², not log σ²",
        "known",
        "diffusers ddpm.py:408-409",
        {"overrides": {"learned_output": "variance"}},
    ),
    Diagnosis(
        "x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ form (rounding only)",
        "known",
        "diffusers ddpm.py:513",
        {"overrides": {"xstart_from_eps": "divide"}},
    ),
    Diagnosis(
        "fixed_large uses β (not β̃₁) at t = 0",
        "known",
        "diffusers current_beta_t; improved-diffusion#45",
        {"overrides": {"fixed_large_t0": "beta"}},
    ),
    Diagnosis(
        "DDIM previous timestep taken as t − T//N, not the previous chain entry",
        "known",
        "diffusers ddim.py:445; huggingface/diffusers#12633, #11347",
        {"ddim_prev_by_stride": True},
    ),
    Diagnosis(
        "fixed_large_log: the std is taken as √(log β), which is NaN",
        "known",
        "huggingface/diffusers#14569 (open), PR #14571",
        {"std_of_log_beta": True},
    ),
    Diagnosis(
        "off-by-one timestep (uses t+1)", "fault", "index convention, README", {"t_shift": 1}
    ),
    Diagnosis(
        "off-by-one timestep (uses t−1)", "fault", "index convention, README", {"t_shift": -1}
    ),
    Diagnosis(
        "ᾱ cast to float16",
        "fault",
        "huggingface/diffusers PR #3005; AUTOMATIC1111/stable-diffusion-webui#14071",
        {"alpha_dtype": "float16"},
    ),
    Diagnosis(
        "β used where β̃ belongs (or β̃ where β belongs): fixed_small/fixed_large swapped",
        "fault",
        "Ho et al. 2020 §3.2",
        {"var_swap": True},
    ),
    Diagnosis(
        "x̂₀ clipping missing (or added)",
        "fault",
        "improved-diffusion clip_denoised",
        {"clip_flip": True},
    ),
    Diagnosis(
        "wrong sign in the v-conversion", "fault", "Salimans & Ho 2022 §4", {"negate_output": True}
    ),
    Diagnosis(
        "noise added at the last step",
        "fault",
        "Ho et al. 2020 Algorithm 2",
        {"force_last_noise": True},
    ),
)
