r"""The continuous-time view: Gaussian noising paths x_t = α(t)·x₀ + σ(t)·ε.

Every solver in :mod:`npddpm.samplers` works on a path: a time interval ``[t_min, t_max]``
(``t_max`` the noisy end) with α(t), σ(t), the half log-SNR λ(t) = log(α/σ) (strictly
decreasing in t) and its inverse, and the VE noise level σ̃(t) = σ/α (Karras et al. 2022's σ).

Paths
-----
* :class:`DiscreteVP` — a (respaced) :class:`~npddpm.Schedule` made continuous, with each
  reference's interpolation as a named option (``t`` is the **original timestep**, so at the
  integers the path is exactly the table):

  ``"log_alpha"``  log α = ½ log ᾱ piecewise linear in t — DPM-Solver's
                   ``NoiseScheduleVP('discrete')`` (Lu et al. 2022, App. D; ``interpolate_fn``
                   over ``log_alpha_array``);
  ``"log_sigma"``  log σ̃ piecewise linear in t — k-diffusion's ``DiscreteSchedule``
                   (``t_to_sigma`` and ``sigma_to_t``);
  ``"sigma"``      σ̃ piecewise linear in t — diffusers' ``EulerDiscreteScheduler``
                   (``np.interp(timesteps, arange(T), sigmas)``). Note that diffusers inverts
                   it (``_sigma_to_t``) by interpolating **log** σ, so its t → σ̃ → t is not
                   the identity off the integers; here the inverse is the exact one.
* :class:`VPLinear` — the continuous VP SDE, log α = −(β₁ − β₀)t²/4 − β₀t/2 (Song et al.
  2021, Eq. 11; DPM-Solver's ``'linear'``), with a closed-form inverse.
* :class:`VPCosine` — α = cos(π/2·(t+s)/(1+s)) / cos(π/2·s/(1+s)) (Nichol & Dhariwal 2021,
  Eq. 17, continuous), closed-form inverse.
* :class:`VE` — α = 1, σ = t (Karras et al. 2022, "EDM": t is σ).
* :class:`FlowMatching` — the rectified-flow path α = 1 − t, σ = t (Liu et al. 2023;
  Lipman et al. 2023; SD3/Flux: t is the flow σ).
* :class:`GaussianPath` — any α(t), σ(t) with λ strictly decreasing (inverse by bisection).

Shifts of the flow σ (:func:`flow_shift`, :func:`dynamic_shift`, :func:`resolution_mu`) are
maps of noise levels, not paths: they move which σ a sampler visits. Each is a constant offset
of λ (:func:`flow_shift` by −log shift; :func:`dynamic_shift` by −μ, for exponent 1).

Model outputs
-------------
:func:`to_x0_eps` converts a model output to (x̂₀, ε̂) at (α, σ) for the predictions
``"eps"``, ``"x0"``, ``"v"`` (v = α ε − σ x₀, Salimans & Ho 2022) and ``"flow"`` (the
velocity u = α′ x₀ + σ′ ε, for flow matching u = ε − x₀); :func:`from_x0_eps` is its inverse.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._checks import choose
from .schedules import Schedule

__all__ = [
    "PREDICTIONS",
    "VE",
    "DiscreteVP",
    "FlowMatching",
    "GaussianPath",
    "NoisePath",
    "VPCosine",
    "VPLinear",
    "as_path",
    "dynamic_shift",
    "flow_shift",
    "from_x0_eps",
    "resolution_mu",
    "to_x0_eps",
]

Array = np.ndarray

#: What a model output can predict on a path.
PREDICTIONS = ("eps", "x0", "v", "flow")


def _f64(t: npt.ArrayLike) -> Array:
    return np.asarray(t, dtype=np.float64)


class NoisePath:
    r"""Base class: x_t = α(t) x₀ + σ(t) ε on ``[t_min, t_max]``.

    Subclasses define :meth:`alpha` and :meth:`sigma` (and, where they have one, a closed-form
    :meth:`t_of_lam`); the rest follows. Every method takes and returns float64 arrays of the
    shape of its argument.
    """

    name = "path"
    t_min: float
    t_max: float

    def alpha(self, t: npt.ArrayLike) -> Array:
        """α_t, the signal scale of x_t = α_t x₀ + σ_t ε, at times ``t`` (same shape)."""
        raise NotImplementedError

    def sigma(self, t: npt.ArrayLike) -> Array:
        """σ_t, the noise scale of x_t = α_t x₀ + σ_t ε, at times ``t`` (same shape)."""
        raise NotImplementedError

    def dalpha(self, t: npt.ArrayLike) -> Array:
        """dα/dt (centred differences unless a subclass has the closed form)."""
        return self._diff(self.alpha, t)

    def dsigma(self, t: npt.ArrayLike) -> Array:
        """dσ/dt (centred differences unless a subclass has the closed form)."""
        return self._diff(self.sigma, t)

    def _diff(self, f: Any, t: npt.ArrayLike) -> Array:
        t = _f64(t)
        h = 1e-6 * max(1.0, abs(self.t_max - self.t_min))
        lo = np.maximum(t - h, self.t_min)
        hi = np.minimum(t + h, self.t_max)
        return np.asarray((f(hi) - f(lo)) / (hi - lo))

    def lam(self, t: npt.ArrayLike) -> Array:
        r"""λ(t) = log(α/σ) (half the log-SNR), strictly decreasing."""
        return np.log(self.alpha(t)) - np.log(self.sigma(t))

    def sigma_ve(self, t: npt.ArrayLike) -> Array:
        r"""σ̃(t) = σ/α = e^{−λ}, the VE (Karras) noise level."""
        return self.sigma(t) / self.alpha(t)

    def t_of_lam(self, lam: npt.ArrayLike) -> Array:
        """The inverse of :meth:`lam` (bisection; subclasses override with a closed form)."""
        lam = _f64(lam)
        lo = np.full(lam.shape, float(self.t_min))
        hi = np.full(lam.shape, float(self.t_max))
        for _ in range(200):  # 2⁻²⁰⁰ of the interval: below float64 resolution
            mid = 0.5 * (lo + hi)
            above = self.lam(mid) > lam  # λ decreasing: the root lies above mid
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
            if np.all(hi - lo <= 4e-16 * np.maximum(1.0, np.abs(hi))):
                break
        return 0.5 * (lo + hi)

    def t_of_sigma_ve(self, s: npt.ArrayLike) -> Array:
        """The time at VE noise level σ̃ (inverse of :meth:`sigma_ve`)."""
        return self.t_of_lam(-np.log(_f64(s)))

    def contains(self, t: npt.ArrayLike) -> bool:
        """Whether every t lies in ``[t_min, t_max]`` (to a relative 1e-12)."""
        t = _f64(t)
        slack = 1e-12 * max(1.0, abs(self.t_max))
        return bool(np.all((t >= self.t_min - slack) & (t <= self.t_max + slack)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(t_min={self.t_min:g}, t_max={self.t_max:g})"


class DiscreteVP(NoisePath):
    r"""A discrete schedule as a continuous VP path (α² + σ² = 1); ``t`` = original timestep.

    Parameters
    ----------
    schedule : Schedule
        Possibly respaced: the knots are ``schedule.timestep_map`` with ᾱ there.
    interpolation : {"log_alpha", "log_sigma", "sigma"}
        Between knots (see the module docstring for each reference).
    """

    name = "discrete_vp"

    def __init__(self, schedule: Schedule, interpolation: str = "log_alpha") -> None:
        if not isinstance(schedule, Schedule):
            raise TypeError(
                f"schedule must be an npddpm.Schedule, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.interpolation = choose(
            interpolation, "interpolation", ("log_alpha", "log_sigma", "sigma")
        )
        ab = schedule.alphas_cumprod
        if ab[-1] <= 0.0:
            raise ValueError(
                "this schedule has zero terminal SNR (ᾱ_{T−1} = 0), where σ̃ and λ are "
                "infinite; build the path on schedule.respace(range(T − 1)) or use a schedule "
                "with ᾱ_{T−1} > 0"
            )
        self._knots = schedule.timestep_map.astype(np.float64)
        self._log_alpha = 0.5 * schedule.log_alphas_cumprod
        self._log_sig = 0.5 * (np.log(schedule.one_minus_alphas_cumprod) - np.log(ab))
        self._sig = np.exp(self._log_sig)
        self.t_min, self.t_max = float(self._knots[0]), float(self._knots[-1])

    def _log_sigma_ve(self, t: npt.ArrayLike) -> Array:
        t = _f64(t)
        if self.interpolation == "log_alpha":
            la = np.interp(t, self._knots, self._log_alpha)
            return np.asarray(0.5 * np.log(-np.expm1(2.0 * la)) - la)
        if self.interpolation == "log_sigma":
            return np.asarray(np.interp(t, self._knots, self._log_sig))
        return np.asarray(np.log(np.interp(t, self._knots, self._sig)))

    def lam(self, t: npt.ArrayLike) -> Array:
        return -self._log_sigma_ve(t)

    def alpha(self, t: npt.ArrayLike) -> Array:
        if self.interpolation == "log_alpha":
            return np.exp(np.interp(_f64(t), self._knots, self._log_alpha))
        return np.asarray(1.0 / np.sqrt(1.0 + np.exp(2.0 * self._log_sigma_ve(t))))

    def sigma(self, t: npt.ArrayLike) -> Array:
        if self.interpolation == "log_alpha":
            la = np.interp(_f64(t), self._knots, self._log_alpha)
            return np.sqrt(-np.expm1(2.0 * la))
        ls = self._log_sigma_ve(t)
        return np.asarray(np.exp(ls) / np.sqrt(1.0 + np.exp(2.0 * ls)))

    def t_of_lam(self, lam: npt.ArrayLike) -> Array:
        lam = _f64(lam)
        if self.interpolation == "log_alpha":
            # log α = −½ log(1 + e^{−2λ}); log α is decreasing in t
            la = -0.5 * np.logaddexp(0.0, -2.0 * lam)
            return np.asarray(np.interp(-la, -self._log_alpha, self._knots))
        if self.interpolation == "log_sigma":
            return np.asarray(np.interp(-lam, self._log_sig, self._knots))
        return np.asarray(np.interp(np.exp(-lam), self._sig, self._knots))

    def __repr__(self) -> str:
        return (
            f"DiscreteVP(T={self.schedule.num_timesteps}, "
            f"interpolation={self.interpolation!r})"
        )


class VPLinear(NoisePath):
    r"""Continuous VP SDE with linear β(t) = β₀ + t(β₁ − β₀) on t ∈ [t_min, 1].

    log α(t) = −(β₁ − β₀) t²/4 − β₀ t/2 (Song et al. 2021, Eq. 33; Lu et al. 2022, App. D).
    The defaults are DDPM's (β₀ = 0.1, β₁ = 20, t_min = 1e-3).
    """

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3,
                 t_max: float = 1.0) -> None:
        if not 0.0 <= beta_min < beta_max:
            raise ValueError(f"need 0 ≤ beta_min < beta_max, got {beta_min}, {beta_max}")
        if not 0.0 < t_min < t_max:
            raise ValueError(f"need 0 < t_min < t_max, got {t_min}, {t_max}")
        self.b0, self.b1 = float(beta_min), float(beta_max)
        self.t_min, self.t_max = float(t_min), float(t_max)

    def _log_alpha(self, t: npt.ArrayLike) -> Array:
        t = _f64(t)
        return -0.25 * t * t * (self.b1 - self.b0) - 0.5 * t * self.b0

    def alpha(self, t: npt.ArrayLike) -> Array:
        return np.exp(self._log_alpha(t))

    def sigma(self, t: npt.ArrayLike) -> Array:
        return np.sqrt(-np.expm1(2.0 * self._log_alpha(t)))

    def lam(self, t: npt.ArrayLike) -> Array:
        la = self._log_alpha(t)
        return la - 0.5 * np.log(-np.expm1(2.0 * la))

    def dalpha(self, t: npt.ArrayLike) -> Array:
        t = _f64(t)
        return self.alpha(t) * (-0.5 * t * (self.b1 - self.b0) - 0.5 * self.b0)

    def dsigma(self, t: npt.ArrayLike) -> Array:
        a = self.alpha(t)
        return -a * self.dalpha(t) / self.sigma(t)

    def t_of_lam(self, lam: npt.ArrayLike) -> Array:
        # solve (β₁−β₀)t²/4 + β₀t/2 = c with c = ½ log(1 + e^{−2λ}), the stable root
        c = 0.5 * np.logaddexp(0.0, -2.0 * _f64(lam))
        a, b = 0.25 * (self.b1 - self.b0), 0.5 * self.b0
        return np.asarray(2.0 * c / (b + np.sqrt(b * b + 4.0 * a * c)))


class VPCosine(NoisePath):
    r"""Continuous cosine VP path, α(t) = cos(π/2·(t+s)/(1+s)) / cos(π/2·s/(1+s)).

    ``t_max`` must stay below the α = 0 point (DPM-Solver uses 0.9946 for s = 0.008).
    """

    name = "vp_cosine"

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946) -> None:
        if not 0.0 <= s:
            raise ValueError(f"s must be ≥ 0, got {s}")
        self.s = float(s)
        self._c0 = math.cos(0.5 * math.pi * self.s / (1.0 + self.s))
        t_zero = 1.0  # α(1) = 0
        if not 0.0 < t_min < t_max < t_zero:
            raise ValueError(f"need 0 < t_min < t_max < 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def _theta(self, t: npt.ArrayLike) -> Array:
        return 0.5 * np.pi * (_f64(t) + self.s) / (1.0 + self.s)

    def alpha(self, t: npt.ArrayLike) -> Array:
        return np.cos(self._theta(t)) / self._c0

    def sigma(self, t: npt.ArrayLike) -> Array:
        a = self.alpha(t)
        return np.sqrt((1.0 - a) * (1.0 + a))

    def dalpha(self, t: npt.ArrayLike) -> Array:
        return -np.sin(self._theta(t)) / self._c0 * 0.5 * np.pi / (1.0 + self.s)

    def dsigma(self, t: npt.ArrayLike) -> Array:
        return -self.alpha(t) * self.dalpha(t) / self.sigma(t)

    def t_of_lam(self, lam: npt.ArrayLike) -> Array:
        a = np.exp(-0.5 * np.logaddexp(0.0, -2.0 * _f64(lam)))  # α = (1 + e^{−2λ})^{−½}
        theta = np.arccos(np.clip(a * self._c0, -1.0, 1.0))
        return np.asarray(theta * 2.0 * (1.0 + self.s) / np.pi - self.s)


class VE(NoisePath):
    """The variance-exploding path of EDM: α = 1, σ = t on ``[sigma_min, sigma_max]``."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.t_min, self.t_max = float(sigma_min), float(sigma_max)

    def alpha(self, t: npt.ArrayLike) -> Array:
        return np.ones_like(_f64(t))

    def sigma(self, t: npt.ArrayLike) -> Array:
        return _f64(t).copy()

    def dalpha(self, t: npt.ArrayLike) -> Array:
        return np.zeros_like(_f64(t))

    def dsigma(self, t: npt.ArrayLike) -> Array:
        return np.ones_like(_f64(t))

    def lam(self, t: npt.ArrayLike) -> Array:
        return -np.log(_f64(t))

    def t_of_lam(self, lam: npt.ArrayLike) -> Array:
        return np.exp(-_f64(lam))

    def contains(self, t: npt.ArrayLike) -> bool:
        # σ = t is defined for every t > 0 (Heun's churn may step above sigma_max)
        t = _f64(t)
        return bool(np.all(t >= self.t_min * (1 - 1e-12)))


class FlowMatching(NoisePath):
    """The rectified-flow path x_t = (1 − t) x₀ + t ε on ``[t_min, t_max]`` (t is the flow σ).

    ``t_max = 1`` (pure noise, α = 0) is allowed: samplers that need σ̃ = σ/α there
    (Euler, Heun, …) refuse it; :func:`npddpm.samplers.flow_euler` and the DPM-Solver++/UniPC
    data-prediction updates take it.
    """

    name = "flow"

    def __init__(self, t_min: float = 1e-3, t_max: float = 1.0) -> None:
        if not 0.0 < t_min < t_max <= 1.0:
            raise ValueError(f"need 0 < t_min < t_max ≤ 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def alpha(self, t: npt.ArrayLike) -> Array:
        return 1.0 - _f64(t)

    def sigma(self, t: npt.ArrayLike) -> Array:
        return _f64(t).copy()

    def dalpha(self, t: npt.ArrayLike) -> Array:
        return -np.ones_like(_f64(t))

    def dsigma(self, t: npt.ArrayLike) -> Array:
        return np.ones_like(_f64(t))

    def lam(self, t: npt.ArrayLike) -> Array:
        t = _f64(t)
        with np.errstate(divide="ignore"):
            return np.log1p(-t) - np.log(t)

    def t_of_lam(self, lam: npt.ArrayLike) -> Array:
        return np.asarray(1.0 / (1.0 + np.exp(_f64(lam))))  # sigmoid(−λ)


class GaussianPath(NoisePath):
    r"""Any path from callables ``alpha(t)``, ``sigma(t)`` (and optionally their derivatives).

    λ = log(α/σ) must be strictly decreasing on ``[t_min, t_max]`` (checked on 1001 points).
    """

    name = "gaussian"

    def __init__(self, alpha: Any, sigma: Any, t_min: float, t_max: float, *,
                 dalpha: Any = None, dsigma: Any = None, name: str = "gaussian") -> None:
        if not (callable(alpha) and callable(sigma)):
            raise TypeError("alpha and sigma must be callables t -> array")
        if not t_min < t_max:
            raise ValueError(f"need t_min < t_max, got {t_min}, {t_max}")
        self._a, self._s, self._da, self._ds = alpha, sigma, dalpha, dsigma
        self.t_min, self.t_max, self.name = float(t_min), float(t_max), name
        grid = np.linspace(self.t_min, self.t_max, 1001)
        a, s = self.alpha(grid), self.sigma(grid)
        if np.any(a[:-1] <= 0) or np.any(s <= 0) or np.any(np.diff(self.lam(grid[:-1])) >= 0):
            raise ValueError(
                "the path needs α > 0 (except at t_max), σ > 0 and λ = log(α/σ) strictly "
                "decreasing on [t_min, t_max]"
            )

    def alpha(self, t: npt.ArrayLike) -> Array:
        return np.asarray(self._a(_f64(t)), dtype=np.float64)

    def sigma(self, t: npt.ArrayLike) -> Array:
        return np.asarray(self._s(_f64(t)), dtype=np.float64)

    def dalpha(self, t: npt.ArrayLike) -> Array:
        if self._da is None:
            return super().dalpha(t)
        return np.asarray(self._da(_f64(t)), dtype=np.float64)

    def dsigma(self, t: npt.ArrayLike) -> Array:
        if self._ds is None:
            return super().dsigma(t)
        return np.asarray(self._ds(_f64(t)), dtype=np.float64)


def as_path(diffusion_or_path: Any, interpolation: str = "log_alpha") -> NoisePath:
    """A :class:`NoisePath` for a path (returned as is), a GaussianDiffusion or a Schedule."""
    if isinstance(diffusion_or_path, NoisePath):
        return diffusion_or_path
    if isinstance(diffusion_or_path, Schedule):
        return DiscreteVP(diffusion_or_path, interpolation)
    schedule = getattr(diffusion_or_path, "schedule", None)
    if isinstance(schedule, Schedule):
        return DiscreteVP(schedule, interpolation)
    raise TypeError(
        "expected an npddpm.GaussianDiffusion, a Schedule or a npddpm.paths path "
        f"(VPLinear, VE, FlowMatching, …), got {type(diffusion_or_path).__name__}"
    )


# ------------------------------------------------------------------------- flow σ shifts


def flow_shift(sigma: npt.ArrayLike, shift: float) -> Array:
    r"""The static shift of a flow σ: σ′ = s·σ / (1 + (s − 1)·σ) (SD3, Esser et al. 2024,
    Eq. 23; diffusers ``FlowMatchEulerDiscreteScheduler(shift=s)``). λ′ = λ − log s."""
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    s = _f64(sigma)
    return np.asarray(shift * s / (1.0 + (shift - 1.0) * s))


def dynamic_shift(sigma: npt.ArrayLike, mu: float, exponent: float = 1.0) -> Array:
    r"""The resolution-dependent exponential shift σ′ = e^μ / (e^μ + (1/σ − 1)^γ) (Flux;
    diffusers ``time_shift_type="exponential"``). For γ = 1 it is :func:`flow_shift` with
    s = e^μ."""
    s = _f64(sigma)
    with np.errstate(divide="ignore"):
        return np.asarray(math.exp(mu) / (math.exp(mu) + (1.0 / s - 1.0) ** exponent))


def resolution_mu(seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                  base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """μ linear in the image's token count (Flux's ``calculate_shift``, diffusers' defaults)."""
    if not base_seq_len < max_seq_len:
        raise ValueError("need base_seq_len < max_seq_len")
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return float(seq_len * m + (base_shift - m * base_seq_len))


# ------------------------------------------------------------------- model output forms


def to_x0_eps(prediction: str, output: Array, x: Array, alpha: Array, sigma: Array,
              dalpha: Array | None = None, dsigma: Array | None = None) -> tuple[Array, Array]:
    r"""(x̂₀, ε̂) from a model output at x = α x₀ + σ ε (α, σ broadcast against x).

    ``"eps"``: x̂₀ = (x − σ ε̂)/α; ``"x0"``: ε̂ = (x − α x̂₀)/σ; ``"v"`` (v = α ε − σ x₀):
    x̂₀ = (α x − σ v)/(α² + σ²), ε̂ = (σ x + α v)/(α² + σ²); ``"flow"`` (u = α′ x₀ + σ′ ε):
    the 2×2 solve with determinant α σ′ − σ α′.
    """
    prediction = choose(prediction, "prediction", PREDICTIONS)
    if prediction == "eps":
        return (x - sigma * output) / alpha, output
    if prediction == "x0":
        return output, (x - alpha * output) / sigma
    if prediction == "v":
        n = alpha * alpha + sigma * sigma
        return (alpha * x - sigma * output) / n, (sigma * x + alpha * output) / n
    if dalpha is None or dsigma is None:
        raise ValueError("prediction='flow' needs the path's dα/dt and dσ/dt")
    det = alpha * dsigma - sigma * dalpha
    return (dsigma * x - sigma * output) / det, (alpha * output - dalpha * x) / det


def from_x0_eps(prediction: str, x0: Array, eps: Array, alpha: Array, sigma: Array,
                dalpha: Array | None = None, dsigma: Array | None = None) -> Array:
    """The model output of type ``prediction`` for (x₀, ε) at (α, σ); see :func:`to_x0_eps`."""
    prediction = choose(prediction, "prediction", PREDICTIONS)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * eps - sigma * x0
    if dalpha is None or dsigma is None:
        raise ValueError("prediction='flow' needs the path's dα/dt and dσ/dt")
    return dalpha * x0 + dsigma * eps
