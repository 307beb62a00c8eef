"""Timestep spacing: which timesteps a respaced sampler keeps.

Three families: improved-diffusion's :func:`space_timesteps` (exact semantics), diffusers'
:func:`diffusers_timesteps` (exactly what ``set_timesteps`` returns, quirks included), and
npddpm's own :func:`inference_timesteps` (exact integer arithmetic, always N distinct steps).
All are re-exported by :mod:`npddpm.schedules`. For the continuous-time solvers,
:func:`noise_levels` spaces N steps on a :mod:`npddpm.paths` path (Karras ρ, exponential,
log-SNR-uniform, time-uniform, time-quadratic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._checks import as_int, choose

__all__ = [
    "NOISE_SPACINGS",
    "diffusers_sigmas",
    "diffusers_timesteps",
    "inference_timesteps",
    "noise_levels",
    "space_timesteps",
]

#: The spacings :func:`noise_levels` knows.
NOISE_SPACINGS = ("karras", "exponential", "log_snr", "time_uniform", "time_quadratic")


def space_timesteps(num_timesteps: int, section_counts: str | Iterable[int]) -> set[int]:
    """The timesteps to keep when respacing, with improved-diffusion's exact semantics.

    ``section_counts`` is a list of counts (or a comma-separated string): ``T`` is split into
    ``len(section_counts)`` near-equal sections (the first ``T mod n`` one step longer), and
    each section of ``size`` steps keeps ``count`` steps at
    ``round(k·(size − 1)/(count − 1))`` — with the stride accumulated in floating point and
    Python's round-half-to-even, exactly as improved-diffusion does. A string ``"ddimN"``
    picks the smallest integer stride ``i`` in ``[1, T)`` with ``len(range(0, T, i)) == N``
    (the DDIM paper's fixed stride).

    Returns
    -------
    set of int
        As improved-diffusion; pass it to :meth:`Schedule.respace`.

    Raises
    ------
    ValueError
        When a section is shorter than its count, or no integer stride gives exactly N steps
        for ``"ddimN"`` (improved-diffusion's error cases; its message names T where it means
        N, npddpm's names both), for negative counts, or for counts that keep no step
        (all zero; improved-diffusion returns the empty set).
    """
    T = as_int(num_timesteps, "num_timesteps", minimum=1)
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            try:
                desired = int(section_counts[len("ddim") :])
            except ValueError:
                raise ValueError(
                    f"section_counts {section_counts!r} must be 'ddimN' with an integer N"
                ) from None
            for i in range(1, T):
                if len(range(0, T, i)) == desired:
                    return set(range(0, T, i))
            raise ValueError(
                f"cannot create exactly {desired} steps out of {T} with an integer stride; "
                "use a plain count such as str(N) instead"
            )
        try:
            counts = [int(x) for x in section_counts.split(",")]
        except ValueError:
            raise ValueError(
                f"section_counts {section_counts!r} must be comma-separated integers or 'ddimN'"
            ) from None
    else:
        counts = [as_int(c, "section_counts[i]") for c in section_counts]
    if not counts:
        raise ValueError("section_counts is empty; give at least one count")
    if any(c < 0 for c in counts):
        raise ValueError(
            f"section_counts must be non-negative, got {counts}; give a count per section, "
            "e.g. '50' or '10,15,20'"
        )
    if sum(counts) < 1:  # improved-diffusion returns the empty set: a respacing of no steps
        raise ValueError(
            f"section_counts {section_counts!r} keep no timestep (the counts must add up to "
            "at least 1; a section count of 0 skips that section); give a positive count, "
            "e.g. '50' or '10,0,5'"
        )
    size_per = T // len(counts)
    extra = T % len(counts)
    start_idx = 0
    all_steps: list[int] = []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide section {i} of {size} steps into {count} steps")
        frac_stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur_idx = 0.0
        for _ in range(count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)


_SPACINGS = ("linspace", "leading", "trailing")


def diffusers_timesteps(
    num_train_timesteps: int, num_inference_steps: int, spacing: str, steps_offset: int = 0
) -> np.ndarray:
    """Exactly the ``timesteps`` that diffusers' ``DDPMScheduler``/``DDIMScheduler.set_timesteps``
    produce, quirks included (descending, int64).

    ``linspace``: ``linspace(0, T−1, N).round()[::-1]`` (half-to-even ties).
    ``leading``:  ``arange(N)·(T // N)`` reversed, ``+ steps_offset``.
    ``trailing``: ``round(arange(T, 0, −T/N)) − 1``.

    Known quirks reproduced on purpose (each checked against diffusers itself in the tests;
    see ``docs/FINDINGS.md``):

    * ``trailing`` returns **N + 1** entries ending in **−1** when ``arange`` with a float step
      overshoots (e.g. T = 1000, N = 61 or 103); indexing ᾱ with −1 silently reads ᾱ_{T−1}.
    * ``leading`` never contains T − 1 (N = 50 starts at 980), the flaw Lin et al. (2023) fix.
    * ``leading`` with ``steps_offset = 1`` and N = T contains T, out of range.
    * ``steps_offset`` only affects ``leading`` (as in diffusers).

    For npddpm's own samplers use :func:`inference_timesteps`, which has none of these.
    """
    T = as_int(num_train_timesteps, "num_train_timesteps", minimum=1)
    N = as_int(num_inference_steps, "num_inference_steps", minimum=1)
    offset = as_int(steps_offset, "steps_offset")
    choose(spacing, "spacing", _SPACINGS)
    if N > T:
        raise ValueError(
            f"num_inference_steps ({N}) cannot be larger than num_train_timesteps ({T})"
        )
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, N).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = T // N
        ts = (np.arange(0, N) * ratio).round()[::-1].copy().astype(np.int64)
        ts += offset
    else:
        step = T / N
        ts = np.round(np.arange(T, 0, -step)).astype(np.int64)
        ts -= 1
    return ts


def _sigma_to_t(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """diffusers' ``_sigma_to_t``: log-σ interpolation against the table, index clamped."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]), 0, 1)
    return np.asarray((1 - w) * low + w * high).reshape(np.shape(sigma))


def diffusers_sigmas(
    alphas_cumprod: np.ndarray,
    num_inference_steps: int,
    *,
    timestep_spacing: str = "linspace",
    steps_offset: int = 0,
    interpolation_type: str = "linear",
    use_karras_sigmas: bool = False,
    use_exponential_sigmas: bool = False,
    use_beta_sigmas: bool = False,
    final_sigmas_type: str = "zero",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exactly the ``(timesteps, sigmas)`` of diffusers 0.42.1's
    ``EulerDiscreteScheduler.set_timesteps`` (float32, as diffusers stores them), quirks kept.

    ``alphas_cumprod`` is the scheduler's float32 ᾱ (``scheduler.alphas_cumprod.numpy()``).
    The VE table σ̃ = √((1 − ᾱ)/ᾱ) is computed in float32. The timesteps follow
    ``timestep_spacing`` (``linspace`` in float32, ``leading`` + ``steps_offset``,
    ``trailing``). The σ̃ at them are linear in σ̃ between integers
    (``interpolation_type="linear"``) or ``log_linear``. Then come Karras (ρ = 7), exponential or
    beta(0.6, 0.6) spacings between the interpolated end points (or ``sigma_min``/``sigma_max``),
    their timesteps recovered by log-σ interpolation (``_sigma_to_t``). Last, the final σ̃
    (0, or σ̃ at t = 0 for ``final_sigmas_type="sigma_min"``) is appended.

    Quirks reproduced on purpose (tests/test_spacing_sigmas.py checks them against diffusers):

    * ``log_linear`` gives N + 2 sigmas for N timesteps and does not recompute the timesteps
      (``docs/FINDINGS.md`` §9);
    * the forward map (σ̃ linear in t) and the inverse used for Karras & co. (log σ̃ linear in
      t) are different interpolations, so t → σ̃ → t is not the identity off the integers
      (:class:`npddpm.paths.DiscreteVP` offers both, and the exact inverse of each);
    * the Karras end points are the *interpolated* σ̃ of the first and last timestep, so with
      ``leading`` spacing σ̃_max is not the table's largest.
    """
    from scipy import stats

    ac = np.asarray(alphas_cumprod, dtype=np.float32)
    T = ac.shape[0]
    N = as_int(num_inference_steps, "num_inference_steps", minimum=1)
    choose(timestep_spacing, "timestep_spacing", _SPACINGS)
    choose(interpolation_type, "interpolation_type", ("linear", "log_linear"))
    choose(final_sigmas_type, "final_sigmas_type", ("zero", "sigma_min"))
    if sum(map(bool, (use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas))) > 1:
        raise ValueError("use at most one of use_karras_sigmas, use_exponential_sigmas, "
                         "use_beta_sigmas (diffusers refuses the combination)")
    if timestep_spacing == "linspace":
        ts = np.linspace(0, T - 1, N, dtype=np.float32)[::-1].copy()
    elif timestep_spacing == "leading":
        ratio = T // N
        ts = (np.arange(0, N) * ratio).round()[::-1].copy().astype(np.float32)
        ts += as_int(steps_offset, "steps_offset")
    else:
        ts = np.arange(T, 0, -T / N).round().copy().astype(np.float32)
        ts -= 1
    table = (((1 - ac) / ac) ** 0.5).astype(np.float32)
    log_table = np.log(table)
    if interpolation_type == "linear":
        sig = np.interp(ts, np.arange(0, T), table)
    else:
        sig = np.exp(np.linspace(np.log(table[-1]), np.log(table[0]), N + 1, dtype=np.float32))
    lo = float(sig[-1]) if sigma_min is None else float(sigma_min)
    hi = float(sig[0]) if sigma_max is None else float(sigma_max)
    if use_karras_sigmas:
        rho = 7.0
        ramp = np.linspace(0, 1, N)
        sig = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    elif use_exponential_sigmas:
        sig = np.exp(np.linspace(math.log(hi), math.log(lo), N))
    elif use_beta_sigmas:
        sig = np.array([lo + stats.beta.ppf(u, 0.6, 0.6) * (hi - lo)
                        for u in 1 - np.linspace(0, 1, N)])
    if use_karras_sigmas or use_exponential_sigmas or use_beta_sigmas:
        ts = np.array([_sigma_to_t(v, log_table) for v in sig])
    last = float(((1 - ac[0]) / ac[0]) ** 0.5) if final_sigmas_type == "sigma_min" else 0.0
    sigmas = np.concatenate([sig, [last]]).astype(np.float32)
    return ts.astype(np.float32), sigmas


def inference_timesteps(
    num_timesteps: int, num_steps: int, spacing: str = "trailing"
) -> np.ndarray:
    """N distinct timesteps for sampling, ascending, computed with exact integer arithmetic.

    ``trailing``: ``T − 1 − ⌊k·T/N⌋``, k = 0..N−1 — always includes T − 1, evenly spaced
    from the top (Lin et al. 2023, Table 2).
    ``linspace``: ``round_half_up(k·(T − 1)/(N − 1))`` — includes 0 and T − 1 (N = 1 gives
    ``[T − 1]``).
    ``leading``: ``k·⌊T/N⌋`` — the DDIM paper's stride; does not reach T − 1 unless N = T.

    Unlike :func:`diffusers_timesteps` the result always has exactly N distinct entries in
    ``[0, T − 1]``, for every ``1 <= N <= T``. Pass it to :meth:`Schedule.respace`.

    Returns
    -------
    ndarray of int64, shape (N,), strictly increasing
    """
    T = as_int(num_timesteps, "num_timesteps", minimum=1)
    N = as_int(num_steps, "num_steps", minimum=1)
    choose(spacing, "spacing", _SPACINGS)
    if N > T:
        raise ValueError(f"num_steps ({N}) cannot exceed num_timesteps ({T})")
    k = np.arange(N, dtype=np.int64)
    if spacing == "trailing":
        ts = T - 1 - (k * T) // N
    elif spacing == "linspace":
        ts = np.array([T - 1]) if N == 1 else (2 * k * (T - 1) + (N - 1)) // (2 * (N - 1))
    else:
        ts = k * (T // N)
    return np.sort(ts)


def noise_levels(
    path: Any,
    steps: int,
    spacing: str = "karras",
    *,
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
) -> np.ndarray:
    r"""N + 1 times on ``path`` from ``t_max`` (noisiest) down to ``t_min``, float64.

    ``path`` is a :class:`npddpm.paths.NoisePath`; the spacings, with σ̃ = σ/α:

    ``"karras"``          σ̃_i = (σ̃_max^{1/ρ} + i/N·(σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ
                          (Karras et al. 2022, Eq. 5; k-diffusion ``get_sigmas_karras``)
    ``"exponential"``     log σ̃ uniform (k-diffusion ``get_sigmas_exponential``)
    ``"log_snr"``         λ = log(α/σ) uniform (DPM-Solver's ``'logSNR'``); since λ = −log σ̃
                          this is the same grid as ``"exponential"``
    ``"time_uniform"``    t uniform (DPM-Solver's ``'time_uniform'``)
    ``"time_quadratic"``  √t uniform (DPM-Solver's ``'time_quadratic'``, for t_min ≥ 0)

    The end points are exactly ``t_max`` and ``t_min`` (the path's own unless given). A zero
    final noise level, where a sampler wants one, is the sampler's ``final="zero"``.
    """
    n = as_int(steps, "steps", minimum=1)
    spacing = choose(spacing, "spacing", NOISE_SPACINGS)
    hi = float(path.t_max if t_max is None else t_max)
    lo = float(path.t_min if t_min is None else t_min)
    if not lo < hi or not path.contains(np.array([lo, hi])):
        raise ValueError(
            f"need t_min < t_max inside the path's [{path.t_min:g}, {path.t_max:g}], got "
            f"t_min={lo:g}, t_max={hi:g}"
        )
    ramp = np.arange(n + 1, dtype=np.float64) / n
    if spacing == "time_uniform":
        t = hi + ramp * (lo - hi)
    elif spacing == "time_quadratic":
        if lo < 0:
            raise ValueError("spacing='time_quadratic' needs t_min ≥ 0")
        t = (np.sqrt(hi) + ramp * (np.sqrt(lo) - np.sqrt(hi))) ** 2
    else:
        l_hi, l_lo = float(path.lam(hi)), float(path.lam(lo))
        if spacing == "karras":
            if not rho > 0:
                raise ValueError(f"rho must be > 0, got {rho}")
            if not np.isfinite(l_hi):
                raise ValueError(
                    "spacing='karras' needs σ̃ = σ/α finite at t_max (α > 0); lower t_max"
                )
            s_hi, s_lo = np.exp(-l_hi) ** (1.0 / rho), np.exp(-l_lo) ** (1.0 / rho)
            lam = -rho * np.log(s_hi + ramp * (s_lo - s_hi))
        else:
            if not np.isfinite(l_hi):
                raise ValueError(
                    f"spacing={spacing!r} needs λ finite at t_max (α > 0); lower t_max"
                )
            lam = l_hi + ramp * (l_lo - l_hi)
        t = path.t_of_lam(lam)
    t = np.asarray(t, dtype=np.float64)
    t[0], t[-1] = hi, lo
    return t
