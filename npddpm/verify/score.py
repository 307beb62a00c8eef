r"""Verification rows for the score-based samplers (:mod:`npddpm.samplers.langevin`).

* ULA on N(μ, s²I) is the AR(1) chain x − μ ← ρ(x − μ) + √δ ε, ρ = 1 − δ/(2s²): its mean and
  variance after k steps are known exactly, and its stationary variance s²/(1 − δ/(4s²)) is
  *not* s² — the rows check both the law and that the δ-bias is present.
* MALA with the oracle mixture's exact log-density and score, started from exact samples,
  keeps the marginal exact (one-sample KS on projections against the exact projected CDF).
* Predictor–corrector vs ancestral sampling with the same number of model calls, both with
  the oracle score: the smallest KS p-value of each is *reported* (not asserted).

Statistical rows use their own family-wise false-failure probability :data:`ALPHA_SCORE`.
"""

from __future__ import annotations

import math

import numpy as np

from ..diffusion import GaussianDiffusion
from ..samplers import ddpm, langevin, predictor_corrector
from ..schedules import Schedule, inference_timesteps
from .common import Row, directions, mixture_2d, projection_ks_pvalues

__all__ = ["ALPHA_SCORE", "score_rows"]

ALPHA_SCORE = 1e-4


def _z(value: float, expected: float, se: float) -> float:
    return abs(value - expected) / se


def score_rows(*, quick: bool = False) -> list[Row]:
    """The verification rows of the score-based samplers (see the module docstring).

    ULA's mean, variance and δ-bias against the exact AR(1) law, MALA's KS rows on the oracle
    mixture, and predictor–corrector beside ancestral sampling at equal model calls (reported).
    ``quick`` uses fewer samples and steps.
    """
    rows: list[Row] = []
    mu, s, B, D = 0.7, 0.5, (4000 if quick else 20000), 2
    delta, k = 0.8 * s**2, 60
    rho = 1 - delta / (2 * s**2)
    x = langevin(
        lambda y: -(y - mu) / s**2, np.full((B, D), mu + 2.0), step_size=delta, n_steps=k, seed=1
    )
    n = x.size
    m_k = mu + rho**k * 2.0
    v_k = delta * (1 - rho ** (2 * k)) / (1 - rho**2)
    v_inf = s**2 / (1 - delta / (4 * s**2))
    z_lim = 5.0  # each |z| < 5: two-sided false-failure probability 5.7e-7 per row
    se_v = v_k * math.sqrt(2 / (n - 1))
    data = f"N({mu}, {s}²I) 2-D"
    rows.append(
        Row(
            "langevin",
            data,
            "-",
            "ULA δ=0.8s²",
            "-",
            "|z| mean vs AR(1)",
            _z(x.mean(), m_k, math.sqrt(v_k / n)),
            z_lim,
            _z(x.mean(), m_k, math.sqrt(v_k / n)) < z_lim,
            f"k={k}, n={n}",
        )
    )
    zv = _z(x.var(ddof=1), v_k, se_v)
    rows.append(
        Row(
            "langevin",
            data,
            "-",
            "ULA δ=0.8s²",
            "-",
            "|z| var vs AR(1)",
            zv,
            z_lim,
            zv < z_lim,
            f"exact {v_k:.4f}; stationary s²/(1−δ/4s²) = {v_inf:.4f}",
        )
    )
    bias = (x.var(ddof=1) - s**2) / se_v
    rows.append(
        Row(
            "langevin",
            data,
            "-",
            "ULA δ=0.8s²",
            "-",
            "δ-bias z (var − s²)",
            bias,
            z_lim,
            bias > z_lim,
            "must be visible: ULA is biased by design",
        )
    )
    gm = mixture_2d()
    rng = np.random.default_rng(7)
    m = 2000 if quick else 4000
    x0 = gm.sample(m, rng)
    dirs = directions(2, 4, rng)
    xm, info = langevin(
        gm.data_score,
        x0,
        step_size=0.2,
        n_steps=50 if quick else 100,
        seed=2,
        metropolis=True,
        log_prob=gm.log_prob,
        return_info=True,
    )
    p = float(projection_ks_pvalues(xm, gm, dirs).min())
    lim = ALPHA_SCORE / (2 * dirs.shape[1])
    rows.append(
        Row(
            "langevin",
            "mixture 2-D",
            "-",
            "MALA δ=0.2",
            "-",
            "min KS p",
            p,
            lim,
            p > lim,
            f"invariance from exact samples; acceptance {info['acceptance_rate']:.2f}",
        )
    )
    # PC vs ancestral, equal model calls (reported)
    T_pc = 25 if quick else 50
    base = Schedule.from_name("cosine", 1000)
    d_pc = GaussianDiffusion(base.respace(inference_timesteps(1000, T_pc)))
    d_an = GaussianDiffusion(base.respace(inference_timesteps(1000, 2 * T_pc)))
    xp, inf = predictor_corrector(
        d_pc, gm.denoiser(d_pc), (m, 2), n_corrector=1, seed=3, return_info=True
    )
    # one array: no return_trajectory
    xa = ddpm(d_an, gm.denoiser(d_an), (m, 2), seed=3, clip_denoised=False)
    for name, xs, calls in (
        ("PC (1 corrector)", xp, inf["model_calls"]),
        ("ancestral", xa, 2 * T_pc),
    ):
        pv = float(projection_ks_pvalues(xs, gm, dirs).min())
        rows.append(
            Row(
                "pc-vs-ddpm",
                "mixture 2-D",
                "cosine",
                name,
                "fixed_small",
                "min KS p (reported)",
                pv,
                0.0,
                bool(np.isfinite(pv)),
                f"{calls} model calls",
            )
        )
    return rows
