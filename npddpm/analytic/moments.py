r"""Exact output moments of the DDPM and DDIM samplers driven by the analytic oracle.

For single-Gaussian data every sampler step with the oracle is affine in x_t and the noise,
so :func:`sampler_moments` propagates the exact mean and covariance of the sampler's output
(:func:`sampler_affine_steps` writes each step out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import choose
from .mixture import GaussianMixture

if TYPE_CHECKING:  # pragma: no cover
    from ..diffusion import GaussianDiffusion

__all__ = ["SamplerMoments", "sampler_affine_steps", "sampler_moments", "solver_moments"]

Array = np.ndarray

SAMPLERS = ("ddpm", "ddim")
VARIANCES = ("model", "exact")


class SamplerMoments:
    r"""Exact output moments of a sampler driven by the oracle of single-Gaussian data.

    Attributes
    ----------
    mean : ndarray (D,)
    covariance : ndarray (D, D)
    data_mean, data_covariance : ndarray
        The data's μ and Σ.
    mean_error, covariance_error : float
        ``max |mean − μ|`` and ``max |covariance − Σ|`` (elementwise).
    """

    def __init__(self, mean: Array, covariance: Array, data: GaussianMixture) -> None:
        self.mean, self.covariance = mean, covariance
        self.data_mean = data.means[0]
        self.data_covariance = data.covariance_matrices()[0]
        self.mean_error = float(np.max(np.abs(mean - self.data_mean)))
        self.covariance_error = float(np.max(np.abs(covariance - self.data_covariance)))

    def __repr__(self) -> str:
        return (
            f"SamplerMoments(mean_error={self.mean_error:.3g}, "
            f"covariance_error={self.covariance_error:.3g})"
        )


def _eigenbasis(mixture: GaussianMixture) -> tuple[Array | None, Array, Array]:
    if not isinstance(mixture, GaussianMixture) or mixture.num_components != 1:
        raise ValueError(
            "sampler moments need single-Gaussian data: a GaussianMixture with one component "
            f"(got {mixture!r}); with several components the steps are not affine"
        )
    U, lam = mixture.eigenbasis(0)
    mu = mixture.means[0] if U is None else U.T @ mixture.means[0]
    return U, lam, mu


def sampler_affine_steps(
    mixture: GaussianMixture,
    diffusion: GaussianDiffusion,
    *,
    sampler: str = "ddpm",
    eta: float = 0.0,
    variance: str = "model",
) -> tuple[Array | None, list[tuple[int, Array, Array, Array]]]:
    r"""Each step of ``sampler`` with the oracle of single-Gaussian data, as an affine map.

    In the data's eigenbasis (``y = Uᵀx``, Σ = U diag(λ) Uᵀ) the oracle's
    ``E[x₀|x_t] = μ + g (x_t − aμ)`` with ``g = aλ/(a²λ + 1 − ᾱ)`` is diagonal, and every step
    ``x_prev = P·x̂₀ + Q·x_t + noise`` becomes, per coordinate,

    .. math::  y_{\rm prev} = A\,y + B + \sqrt{v}\,\tilde z, \qquad A = Pg + Q,\;
               B = P(1 - ag)\tilde\mu,

    with DDPM ``P = coef1, Q = coef2`` (Ho et al. 2020, Eq. 7) and DDIM
    ``P = √ᾱ_prev − k√ᾱ/√(1−ᾱ), Q = k/√(1−ᾱ)``, ``k = √(1 − ᾱ_prev − σ²)`` (Song et al.
    2021, Eq. 12). The noise variance v is the model's (β̃, β, η-DDIM σ², masked at t = 0 as
    the diffusion's profile says) or, for ``variance="exact"``, ``S + P²·λ(1−ᾱ)/(a²λ + 1−ᾱ)``
    with S = β̃ (DDPM) or σ² (DDIM), never masked. Assumes ``clip_denoised=False``.

    Returns
    -------
    U : ndarray (D, D) or None
        The eigenbasis (None: the identity, for diagonal/isotropic data).
    steps : list of (t, A, B, v)
        In execution order (t = T−1 down to 0); A, B, v of shape (D,).
    """
    sampler = choose(sampler, "sampler", SAMPLERS)
    variance = choose(variance, "variance", VARIANCES)
    U, lam, mu = _eigenbasis(mixture)
    d, s = diffusion, diffusion.schedule
    if (
        sampler == "ddpm"
        and variance == "model"
        and d.var_type.startswith("learned")
        and (U is not None)
    ):
        raise ValueError(
            "learned variances give a diagonal (not eigenbasis-diagonal) noise for full-"
            "covariance data, which is not coordinate-wise affine; use diagonal data, a fixed "
            "var_type, or variance='exact'"
        )
    if sampler == "ddim":
        eta = d.check_eta(eta, np.arange(d.num_timesteps))
    T = d.num_timesteps
    mask = d.nonzero_mask(np.arange(T), 1, np.dtype(np.float64))
    steps = []
    for t in range(T - 1, -1, -1):
        ab, om = s.alphas_cumprod[t], s.one_minus_alphas_cumprod[t]
        a = np.sqrt(ab)
        den = ab * lam + om
        g = a * lam / den
        post_var = lam * om / den  # Cov[x₀ | x_t] in the eigenbasis
        if sampler == "ddpm":
            P, Q = s.posterior_mean_coef1[t], s.posterior_mean_coef2[t]
            base = s.posterior_variance[t]
            if d.var_type == "fixed_small":
                model_v = np.full_like(lam, d.tables.small_var[t])
            elif d.var_type == "fixed_large":
                model_v = np.full_like(lam, d.tables.large_var[t])
            else:  # the oracle's learned channels: the exact diagonal reverse variance
                model_v = base + P**2 * post_var
        else:
            sigma = float(d.ddim_sigma(t, eta))
            ab_prev = s.alphas_cumprod_prev[t]
            k = np.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
            P, Q = np.sqrt(ab_prev) - k * a / np.sqrt(om), k / np.sqrt(om)
            base = sigma**2
            model_v = np.full_like(lam, base)
        if variance == "exact":
            v = base + P**2 * post_var
        else:
            v = mask[t] * model_v
        A = P * g + Q
        B = P * (1.0 - a * g) * mu
        steps.append((t, A, B, v))
    return U, steps


def sampler_moments(
    mixture: GaussianMixture,
    diffusion: GaussianDiffusion,
    *,
    sampler: str = "ddpm",
    eta: float = 0.0,
    variance: str = "model",
    start: str = "normal",
) -> SamplerMoments:
    r"""Exact mean and covariance of ``sampler``'s output for single-Gaussian data.

    Starting from x_T ~ N(0, I) (``start="normal"``, what samplers draw) or from the exact
    q(x_T) = N(√ᾱ_T μ, ᾱ_T Σ + (1 − ᾱ_T) I) (``start="marginal"``), the recursion
    ``m ← A m + B``, ``p ← A² p + v`` runs per eigen-coordinate through the steps of
    :func:`sampler_affine_steps`; the result is rotated back,
    ``cov = U diag(p) Uᵀ``. Valid for ``clip_denoised=False``, any schedule, any respacing,
    DDPM with every ``var_type`` (learned ones: diagonal data) and ``variance="exact"``, and
    DDIM with any η. With ``variance="exact"`` and ``start="marginal"`` the output is the
    data distribution up to rounding.
    """
    start = choose(start, "start", ("normal", "marginal"))
    U, steps = sampler_affine_steps(mixture, diffusion, sampler=sampler, eta=eta, variance=variance)
    _, lam, mu = _eigenbasis(mixture)
    if start == "normal":
        m, p = np.zeros(mixture.dim), np.ones(mixture.dim)
    else:
        tT = diffusion.num_timesteps - 1
        ab, om = (
            diffusion.schedule.alphas_cumprod[tT],
            diffusion.schedule.one_minus_alphas_cumprod[tT],
        )
        m, p = np.sqrt(ab) * mu, ab * lam + om
    for _, A, B, v in steps:
        m = A * m + B
        p = A * A * p + v
    if U is None:
        return SamplerMoments(m, np.diag(p), mixture)
    cov = (U * p) @ U.T
    return SamplerMoments(U @ m, 0.5 * (cov + cov.T), mixture)


def solver_moments(
    sampler: Any,
    diffusion_or_path: Any,
    mixture: GaussianMixture,
    *,
    steps: int | None = None,
    start: str = "normal",
    prediction: str | None = None,
    **sampler_kwargs: Any,
) -> SamplerMoments:
    r"""Exact output mean and covariance of an :mod:`npddpm.samplers` solver (stochastic ones
    included: ``euler_ancestral``, ``heun`` with churn, ``dpm_solver(algorithm=
    "sde-dpmsolver++")``) driven by the oracle of single-Gaussian data.

    In the data's eigenbasis the oracle is diagonal and affine, so the solver's output is,
    per coordinate, ``o = a·y_T + Σ_j b_j z_j + c`` with independent standard normal z_j.
    a, b_j and c are read off ``N_steps + 2`` runs on the rows y_T ∈ {0, 1}, z = e_j (through
    the solvers' ``noise=`` argument); then ``E o = a m_T + c`` and ``Var o = a² v_T + Σ b_j²``
    with y_T ~ N(m_T, v_T): ``start="normal"`` is the solvers' own draw
    N(0, (α² + σ²)(t_max)), ``"marginal"`` the exact q(x_{t_max}). Exact up to rounding; the
    sampler must take ``noise=`` if it is stochastic (deterministic ones ignore the rows).
    """
    from ..paths import as_path
    from .flow import PathOracle

    start = choose(start, "start", ("normal", "marginal"))
    U, lam, mu = _eigenbasis(mixture)
    D = mixture.dim
    rotated = GaussianMixture([1.0], mu[None, :], lam[None, :])
    path = as_path(diffusion_or_path)
    if prediction is None:
        mean_type = getattr(diffusion_or_path, "mean_type", "eps")
        prediction = "eps" if mean_type == "x_prev" else mean_type
    oracle = PathOracle(rotated, path, prediction)
    kw = dict(sampler_kwargs, steps=steps, prediction=prediction)
    probe = sampler(path, oracle, np.zeros((1, D)), **kw, return_trajectory=True)[1]
    n_steps = probe.shape[0] - 1
    rows = n_steps + 2
    y_T = np.zeros((rows, D))
    y_T[1] = 1.0
    noise = np.zeros((n_steps, rows, D))
    for j in range(n_steps):
        noise[j, 2 + j] = 1.0
    try:
        out = sampler(path, oracle, y_T, noise=noise, **kw)
    except TypeError:  # a deterministic solver without noise=
        out = sampler(path, oracle, y_T, **kw)
    c = out[0]
    a = out[1] - c
    b = out[2:] - c
    hi = float(sampler_kwargs.get("t_max") or path.t_max)
    al, sg = float(path.alpha(hi)), float(path.sigma(hi))
    if start == "normal":
        m_T, v_T = np.zeros(D), np.full(D, al * al + sg * sg)
    else:
        m_T, v_T = al * mu, al * al * lam + sg * sg
    m = a * m_T + c
    p = a * a * v_T + np.sum(b * b, axis=0)
    if U is None:
        return SamplerMoments(m, np.diag(p), mixture)
    cov = (U * p) @ U.T
    return SamplerMoments(U @ m, 0.5 * (cov + cov.T), mixture)
