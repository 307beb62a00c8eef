r"""The beta catalogue: named beta schedules, ᾱ-curves and the zero-terminal-SNR rescale.

Everything here is float64. Index convention (as improved-diffusion and the original TF
code): code timestep ``t ∈ {0, …, T−1}``; index 0 means "diffused one step", i.e. paper step
``t + 1``.

Beta schedules
--------------
:func:`get_named_beta_schedule` returns the betas of a named schedule. Where two public
implementations use the same name for different curves, npddpm uses distinct names:

=====================  ======================================================================
name                   definition (``T`` = number of steps)
=====================  ======================================================================
``linear``             improved-diffusion: ``linspace(1e-4·s, 0.02·s, T)``, ``s = 1000/T``
``linear_unscaled``    TF DDPM / diffusers ``linear``: ``linspace(beta_start, beta_end, T)``
``scaled_linear``      diffusers: ``linspace(√beta_start, √beta_end, T)²``
``quadratic``          TF DDPM ``quad``: the same curve as ``scaled_linear``
``cosine``             Nichol & Dhariwal (2021) Eq. 17, via :func:`betas_for_alpha_bar`
``sigmoid_beta``       diffusers ``sigmoid``: ``sigmoid(linspace(−6, 6, T))·(βe − βs) + βs``
``sigmoid_alpha_bar``  lucidrains (Jabri et al. 2022): a sigmoid curve in ᾱ-space
``laplace``            diffusers ``laplace`` (Hang et al. 2024): a Laplace curve in log-SNR
``exp``                diffusers ``exp`` alpha transform: ᾱ(u) = exp(−12u)
``warmup10``           TF DDPM: linear warm-up over the first 10 % of steps, then ``beta_end``
``warmup50``           TF DDPM: linear warm-up over the first 50 % of steps, then ``beta_end``
``const``              TF DDPM: ``beta_end`` at every step
``jsd``                TF DDPM: ``1/T, 1/(T−1), …, 1``  (ᾱ_{T−1} = 0)
=====================  ======================================================================

The diffusers aliases ``squaredcos_cap_v2`` (= ``cosine``) and ``sigmoid`` (= ``sigmoid_beta``)
are accepted too. diffusers builds these arrays in float32; npddpm builds them in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ._checks import as_int, as_real_1d

__all__ = [
    "betas_for_alpha_bar",
    "check_betas",
    "get_named_beta_schedule",
    "rescale_zero_terminal_snr",
    "schedule_names",
]


# --------------------------------------------------------------------------------------
# Named beta schedules
# --------------------------------------------------------------------------------------


def betas_for_alpha_bar(
    num_diffusion_timesteps: int,
    alpha_bar: Callable[[float], float],
    max_beta: float = 0.999,
) -> np.ndarray:
    r"""Discretise a continuous ᾱ(u), u ∈ [0, 1], into betas.

    .. math:: \beta_i = \min\bigl(1 - \bar\alpha((i+1)/T) / \bar\alpha(i/T),\ \beta_{\max}\bigr),
              \quad i = 0, \dots, T-1

    (improved-diffusion ``betas_for_alpha_bar``; Nichol & Dhariwal 2021, Eq. 17 and §3.2).

    Parameters
    ----------
    num_diffusion_timesteps : int
        ``T >= 1``.
    alpha_bar : callable
        ``u -> ᾱ(u)``, positive and non-increasing on [0, 1].
    max_beta : float
        Upper clip; 0.999 in the references, to avoid the singularity at u = 1.

    Returns
    -------
    betas : ndarray, shape (T,), float64
    """
    T = as_int(num_diffusion_timesteps, "num_diffusion_timesteps", minimum=1)
    if not 0.0 < max_beta <= 1.0:
        raise ValueError(f"max_beta must lie in (0, 1], got {max_beta}")
    betas = []
    for i in range(T):
        t1 = i / T
        t2 = (i + 1) / T
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas, dtype=np.float64)


def _cosine_alpha_bar(s: float) -> Callable[[float], float]:
    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return alpha_bar


def _linear(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    scale = 1000 / T
    return np.linspace(scale * beta_start, scale * beta_end, T, dtype=np.float64)


def _linear_unscaled(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def _quadratic(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    return np.linspace(beta_start**0.5, beta_end**0.5, T, dtype=np.float64) ** 2


def _cosine(
    T: int, s: float = 0.008, max_beta: float = 0.999, min_beta: float | None = None
) -> np.ndarray:
    if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
        raise TypeError(f"cosine schedule: s must be a real number, got {type(s).__name__} {s!r}")
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(
            f"cosine schedule: s must be a finite offset >= 0 (ᾱ(u) = cos²((u + s)/(1 + s)·π/2); "
            f"s = -1 divides by zero), got s={s}; use the default s=0.008"
        )
    betas = betas_for_alpha_bar(T, _cosine_alpha_bar(float(s)), max_beta=max_beta)
    if min_beta is not None:
        betas = np.maximum(betas, min_beta)
    return betas


def _sigmoid_beta(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    x = np.linspace(-6.0, 6.0, T, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x)) * (beta_end - beta_start) + beta_start


def _sigmoid_alpha_bar(
    T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> np.ndarray:
    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    u = np.linspace(0.0, T, T + 1, dtype=np.float64) / T
    v_start = sig(start / tau)
    v_end = sig(end / tau)
    alpha_bar = (-sig((u * (end - start) + start) / tau) + v_end) / (v_end - v_start)
    alpha_bar = alpha_bar / alpha_bar[0]
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, max_beta)


def _laplace(T: int, mu: float = 0.0, b: float = 0.5, max_beta: float = 0.999) -> np.ndarray:
    # diffusers' `laplace` alpha transform, verbatim: lmb(u) = mu − b·sign(0.5 − u)·
    # log(1 − 2|0.5 − u| + 1e-6), snr = exp(lmb), and ᾱ(u) = √(snr / (1 + snr)) — note the
    # square root, which diffusers applies (so its "ᾱ" is √ of the Laplace curve's ᾱ).
    def alpha_bar(u: float) -> float:
        d = 0.5 - u
        lmb = mu - b * math.copysign(1.0, d) * math.log(1 - 2 * abs(d) + 1e-6)
        snr = math.exp(lmb)
        return math.sqrt(snr / (1 + snr))

    return betas_for_alpha_bar(T, alpha_bar, max_beta=max_beta)


def _exp(T: int, rate: float = 12.0, max_beta: float = 0.999) -> np.ndarray:
    # diffusers' `exp` alpha transform: ᾱ(u) = exp(−12 u).
    return betas_for_alpha_bar(T, lambda u: math.exp(-rate * u), max_beta=max_beta)


def _warmup(T: int, frac: float, beta_start: float, beta_end: float) -> np.ndarray:
    betas = beta_end * np.ones(T, dtype=np.float64)
    warmup_time = int(T * frac)
    betas[:warmup_time] = np.linspace(beta_start, beta_end, warmup_time, dtype=np.float64)
    return betas


def _warmup10(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    return _warmup(T, 0.1, beta_start, beta_end)


def _warmup50(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    return _warmup(T, 0.5, beta_start, beta_end)


def _const(T: int, beta_end: float = 0.02) -> np.ndarray:
    return beta_end * np.ones(T, dtype=np.float64)


def _jsd(T: int) -> np.ndarray:
    return 1.0 / np.linspace(T, 1, T, dtype=np.float64)


_SCHEDULES: dict[str, Callable[..., np.ndarray]] = {
    "linear": _linear,
    "linear_unscaled": _linear_unscaled,
    "scaled_linear": _quadratic,
    "quadratic": _quadratic,
    "cosine": _cosine,
    "sigmoid_beta": _sigmoid_beta,
    "sigmoid_alpha_bar": _sigmoid_alpha_bar,
    "laplace": _laplace,
    "exp": _exp,
    "warmup10": _warmup10,
    "warmup50": _warmup50,
    "const": _const,
    "jsd": _jsd,
}
_ALIASES = {"squaredcos_cap_v2": "cosine", "sigmoid": "sigmoid_beta", "quad": "quadratic"}


def schedule_names() -> tuple[str, ...]:
    """The canonical names accepted by :func:`get_named_beta_schedule` (aliases excluded)."""
    return tuple(_SCHEDULES)


def get_named_beta_schedule(name: str, num_diffusion_timesteps: int, **kw: Any) -> np.ndarray:
    """Return the float64 betas of a named schedule.

    Parameters
    ----------
    name : str
        One of :func:`schedule_names` (see the module docstring) or an alias.
    num_diffusion_timesteps : int
        ``T >= 1``.
    **kw
        Schedule parameters: ``beta_start``/``beta_end`` (linear family, sigmoid_beta,
        warm-ups, const), ``s``/``max_beta``/``min_beta`` (cosine), ``start``/``end``/``tau``
        (sigmoid_alpha_bar), ``mu``/``b`` (laplace).

    Returns
    -------
    betas : ndarray, shape (T,), float64

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known names), an unknown keyword, or
        betas outside (0, 1] (e.g. ``linear`` with ``T < 20``, whose last beta is 20/T).

    Examples
    --------
    >>> b = get_named_beta_schedule("linear", 1000)
    >>> float(b[0]), float(b[-1])
    (0.0001, 0.02)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    canonical = _ALIASES.get(name, name)
    if canonical not in _SCHEDULES:
        raise ValueError(
            f"unknown beta schedule {name!r}; known names: {', '.join(_SCHEDULES)} "
            f"(aliases: {', '.join(_ALIASES)})"
        )
    T = as_int(num_diffusion_timesteps, "num_diffusion_timesteps", minimum=1)
    try:
        betas = _SCHEDULES[canonical](T, **kw)
    except TypeError as exc:  # unknown keyword
        raise ValueError(f"bad parameters for schedule {name!r}: {exc}") from None
    check_betas(betas, f"betas of schedule {name!r} with T={T}")
    return betas


# --------------------------------------------------------------------------------------
# Schedule: every derived array
# --------------------------------------------------------------------------------------


def check_betas(betas: np.ndarray, name: str) -> None:
    """Raise ValueError unless ``betas`` (T,) is non-empty with every β in (0, 1].

    ``name`` names the array in the message, which gives the first bad element.
    """
    if betas.size == 0:
        raise ValueError(f"{name} is empty; a schedule needs at least one step")
    bad = np.flatnonzero(~((betas > 0.0) & (betas <= 1.0)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name} must lie in (0, 1], but element {i} is {betas[i]!r}"
            + (" (linear needs T >= 20: its last beta is 20/T)" if betas[i] > 1 else "")
        )
    ones = np.flatnonzero(betas[:-1] == 1.0)
    if ones.size:
        raise ValueError(
            f"{name}[{int(ones[0])}] = 1 before the last step makes every later ᾱ zero; "
            "only the last beta may equal 1"
        )


def rescale_zero_terminal_snr(betas: Iterable[float] | np.ndarray) -> np.ndarray:
    r"""Rescale betas so that ᾱ_{T−1} = 0 while ᾱ_0 is kept (Lin et al. 2023, Algorithm 1).

    .. math:: \sqrt{\bar\alpha}' = (\sqrt{\bar\alpha} - \sqrt{\bar\alpha_{T-1}})
              \frac{\sqrt{\bar\alpha_0}}{\sqrt{\bar\alpha_0} - \sqrt{\bar\alpha_{T-1}}}

    then α'_t = ᾱ'_t / ᾱ'_{t−1} (α'_0 = ᾱ'_0) and β' = 1 − α'. The last beta is 1, so an
    ε-prediction model cannot be sampled at t = T−1 (division by √ᾱ = 0); use v or x₀.

    Parameters
    ----------
    betas : array_like, shape (T,), T >= 2

    Returns
    -------
    betas : ndarray, shape (T,), float64
    """
    betas = as_real_1d(betas, "betas")
    check_betas(betas, "betas")
    if betas.size < 2:
        raise ValueError("rescale_zero_terminal_snr needs at least 2 betas (T >= 2)")
    sqrt_ab = np.sqrt(np.cumprod(1.0 - betas))
    s0, sT = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - sT) * (s0 / (s0 - sT))
    ab = sqrt_ab**2
    alphas = np.concatenate([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas
