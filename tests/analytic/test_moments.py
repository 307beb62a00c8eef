"""Property tests: for any schedule (named or random betas, either precision, optionally
respaced), any parameterisation, profile, sampler, η and variance choice, an oracle-driven
sampler equals the exact affine recursion, and the exact reverse variance reproduces
single-Gaussian data."""

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from npddpm import GaussianDiffusion
from npddpm.analytic import GaussianMixture, sampler_affine_steps, sampler_moments
from npddpm.samplers import ddim, ddpm
from npddpm.testing.strategies import schedules


@st.composite
def gaussians(draw):
    D = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["full", "diag", "isotropic"]))
    mu = 2.0 * rng.standard_normal((1, D))
    if kind == "full":
        A = rng.standard_normal((D, D))
        cov = (A @ A.T / D + 0.05 * np.eye(D))[None]
    elif kind == "diag":
        cov = rng.uniform(0.01, 3.0, (1, D))
    else:
        cov = rng.uniform(0.01, 3.0, 1)
    return GaussianMixture([1.0], mu, cov)


SAMPLERS = st.sampled_from(
    [
        ("ddpm", 0.0, "model"),
        ("ddpm", 0.0, "exact"),
        ("ddim", 0.0, "model"),
        ("ddim", 0.5, "model"),
        ("ddim", 1.0, "model"),
        ("ddim", 0.3, "exact"),
    ]
)


@given(
    gm=gaussians(),
    schedule=schedules(max_T=60, respaced=True),
    mean_type=st.sampled_from(["eps", "x0", "v", "x_prev"]),
    var_type=st.sampled_from(["fixed_small", "fixed_large"]),
    profile=st.sampled_from(["improved_diffusion", "diffusers", "original_tf"]),
    case=SAMPLERS,
    seed=st.integers(0, 2**16),
)
def test_oracle_sampler_equals_affine_recursion(
    gm, schedule, mean_type, var_type, profile, case, seed
):
    """Tolerance: each step's x̂₀ conversion loses up to eps·√(1/ᾱ) relative accuracy (the
    ε-parameterisation multiplies x_t by √(1/ᾱ)), and errors can grow along the chain, so
    atol = 1e-11·T·max(1, √(1/ᾱ_min))·scale.

    Zero terminal SNR (ᾱ = 0, e.g. T = 1 with β = 1) is excluded: ε-prediction cannot
    give x̂₀ there, and DDIM's re-derived ε is ∞/∞ under the default profile
    (diffusers#3851); tests/samplers/test_ancestral.py covers ᾱ = 0 with v-prediction."""
    assume(schedule.alphas_cumprod[-1] > 0)
    sampler, eta, variance = case
    d = GaussianDiffusion(schedule, mean_type=mean_type, var_type=var_type, profile=profile)
    rng = np.random.default_rng(seed)
    x_T = rng.standard_normal((4, gm.dim))
    noise = rng.standard_normal((d.num_timesteps, 4, gm.dim))
    fn = ddpm if sampler == "ddpm" else ddim
    kw = {} if sampler == "ddpm" else {"eta": eta}
    out = fn(d, gm.denoiser(d), x_T, noise=noise, clip_denoised=False, variance=variance, **kw)
    U, steps = sampler_affine_steps(gm, d, sampler=sampler, eta=eta, variance=variance)
    y = x_T if U is None else x_T @ U
    for t, A, B, v in steps:
        y = A * y + B + np.sqrt(v) * (noise[t] if U is None else noise[t] @ U)
    ref = y if U is None else y @ U.T
    scale = 1.0 + np.abs(ref).max()
    growth = d.num_timesteps * max(1.0, float(schedule.sqrt_recip_alphas_cumprod.max()))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-11 * growth * scale)


@given(
    gm=gaussians(),
    schedule=schedules(max_T=200, respaced=True),
    case=st.sampled_from([("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.7), ("ddim", 1.0)]),
)
def test_exact_variance_reproduces_data_for_any_schedule(gm, schedule, case):
    """From q(x_T), the exact-variance chain maps q(x_t) to q(x_{t−1}) at every step, so the
    output moments equal the data's; rounding only (limit 1e-9·scale for ≤ 200 steps)."""
    sampler, eta = case
    d = GaussianDiffusion(schedule)
    m = sampler_moments(gm, d, sampler=sampler, eta=eta, variance="exact", start="marginal")
    scale = 1.0 + np.abs(gm.covariance_matrices()).max() + np.abs(gm.means).max()
    assert m.mean_error < 1e-9 * scale and m.covariance_error < 1e-9 * scale, m
