"""GaussianMixture and the oracle denoiser against independent computations: scipy densities,
centred finite differences of log q(x_t), Bayes' rule by quadrature on a grid (1-D), textbook
conditional-Gaussian formulas with dense solves, and Monte Carlo of the forward process."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

from npddpm import GaussianDiffusion, Schedule
from npddpm.analytic import GaussianMixture
from npddpm.schedules import space_timesteps
from npddpm.testing.gradcheck import numerical_vjp

LINEAR = Schedule.from_name("linear", 1000)
COSINE = Schedule.from_name("cosine", 1000)


def random_spd(rng, D, scale=1.0):
    A = rng.standard_normal((D, D))
    return scale * (A @ A.T / D + 0.2 * np.eye(D))


def random_mixture(rng, K, D, kind):
    w = rng.dirichlet(np.ones(K))
    mu = 2.0 * rng.standard_normal((K, D))
    if kind == "full":
        cov = np.stack([random_spd(rng, D, 0.5) for _ in range(K)])
    elif kind == "diag":
        cov = rng.uniform(0.05, 1.5, (K, D))
    else:
        cov = rng.uniform(0.05, 1.5, K)
    return GaussianMixture(w, mu, cov)


def reference_log_prob(gm, x):
    """log Σ w_k N(x; μ_k, Σ_k) with scipy, independent of the class's solves."""
    covs = gm.covariance_matrices()
    comps = [
        np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
        for w, m, c in zip(gm.weights, gm.means, covs, strict=True)
    ]
    return logsumexp(np.stack(comps, axis=1), axis=1)


def reference_posterior(gm, x, ab):
    """E[x₀|x_t], Cov[x₀|x_t] from the textbook conditional-Gaussian formulas, dense solves."""
    a, s2 = np.sqrt(ab), 1.0 - ab
    D = gm.dim
    covs = gm.covariance_matrices()
    logr = np.stack(
        [
            np.log(w) + stats.multivariate_normal(a * m, ab * c + s2 * np.eye(D)).logpdf(x)
            for w, m, c in zip(gm.weights, gm.means, covs, strict=True)
        ],
        axis=-1,
    ).reshape(x.shape[0], -1)
    r = np.exp(logr - logsumexp(logr, axis=1, keepdims=True))
    means, cvs = [], []
    for m, c in zip(gm.means, covs, strict=True):
        S = ab * c + s2 * np.eye(D)
        gain = np.linalg.solve(S, a * c).T  # a Σ S⁻¹ (S, Σ symmetric)
        means.append(m + (x - a * m) @ gain.T)
        cvs.append(c - gain @ (a * c))
    mean = sum(r[:, k : k + 1] * means[k] for k in range(len(means)))
    cov = sum(
        r[:, k, None, None] * (cvs[k] + np.einsum("bi,bj->bij", means[k] - mean, means[k] - mean))
        for k in range(len(means))
    )
    return mean, cov


# ---------------------------------------------------------------- densities


@pytest.mark.parametrize("kind", ["full", "diag", "isotropic"])
def test_log_prob_matches_scipy(kind):
    rng = np.random.default_rng(1)
    gm = random_mixture(rng, 4, 3, kind)
    x = 3.0 * rng.standard_normal((50, 3))
    # both sides are float64 evaluations of the same density; 1e-10 allows for differing
    # summation orders in solves and log-sum-exp
    np.testing.assert_allclose(gm.log_prob(x), reference_log_prob(gm, x), rtol=1e-10, atol=1e-10)


def test_single_gaussian_log_prob_is_scipy_multivariate_normal():
    rng = np.random.default_rng(2)
    c = random_spd(rng, 5)
    gm = GaussianMixture([1.0], [np.arange(5.0)], c[None])
    x = rng.standard_normal((20, 5))
    ref = stats.multivariate_normal(np.arange(5.0), c).logpdf(x)
    np.testing.assert_allclose(gm.log_prob(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_marginal_density_two_ways(schedule, t):
    """marginal(...).log_prob (Cholesky of the formed covariance) and marginal_log_prob
    (eigenbasis, per-row t) are separate code paths; both must equal scipy's density of
    N(√ᾱ μ_k, ᾱ Σ_k + (1 − ᾱ) I)."""
    rng = np.random.default_rng(3)
    gm = random_mixture(rng, 3, 4, "full")
    ab = schedule.alphas_cumprod[t]
    x = rng.standard_normal((40, 4)) + np.sqrt(ab) * gm.means[0]
    ref = reference_log_prob(
        GaussianMixture(
            gm.weights,
            np.sqrt(ab) * gm.means,
            ab * gm.covariance_matrices() + (1 - ab) * np.eye(4),
        ),
        x,
    )
    np.testing.assert_allclose(gm.marginal(schedule, t).log_prob(x), ref, rtol=1e-10)
    np.testing.assert_allclose(gm.marginal_log_prob(x, schedule, t), ref, rtol=1e-10)


def test_marginal_matches_forward_process_monte_carlo():
    """Moments of q_sample(x₀ ~ data) vs marginal(...).mean()/covariance().

    n = 200000; each entry's z-score is checked at |z| < 5 (two-sided p = 5.7e-7; 2 + 3 + 3
    entries per t, 3 timesteps: family-wise false-failure probability < 2e-5). Detects a mean
    error of about 0.013 and a covariance error of about 0.02 (5 standard errors).
    """
    rng = np.random.default_rng(4)
    gm = random_mixture(rng, 3, 2, "full")
    d = GaussianDiffusion(LINEAR)
    n = 200_000
    x0 = gm.sample(n, rng)
    for t in (50, 300, 700):
        xt = d.q_sample(x0, np.full(n, t), rng.standard_normal(x0.shape))
        mg = gm.marginal(LINEAR, t)
        m, C = mg.mean(), mg.covariance()
        z_mean = (xt.mean(0) - m) / np.sqrt(np.diag(C) / n)
        assert np.all(np.abs(z_mean) < 5), z_mean
        # Var of a sample covariance entry: E[(x_i x_j)²] − C_ij² about the mean; estimated
        # from the sample itself (fourth moments), accurate to a few % at this n
        dx = xt - m
        prods = np.einsum("bi,bj->bij", dx, dx)
        se = prods.std(axis=0) / np.sqrt(n)
        z_cov = (prods.mean(0) - C) / se
        assert np.all(np.abs(z_cov) < 5), z_cov


def test_sample_moments_and_component_forms_agree():
    """A diagonal or isotropic mixture equals the same mixture given with full matrices."""
    rng = np.random.default_rng(5)
    for kind in ("diag", "isotropic"):
        gm = random_mixture(rng, 3, 3, kind)
        full = GaussianMixture(gm.weights, gm.means, gm.covariance_matrices())
        x = rng.standard_normal((30, 3))
        for t in (0, 400, 999):
            np.testing.assert_allclose(gm.score(x, LINEAR, t), full.score(x, LINEAR, t), rtol=1e-10)
            np.testing.assert_allclose(
                gm.x0_covariance(x, LINEAR, t), full.x0_covariance(x, LINEAR, t), atol=1e-12
            )


# ---------------------------------------------------------------- score, eps, x0


@given(
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(1, 4),
    D=st.integers(1, 5),
    kind=st.sampled_from(["full", "diag", "isotropic"]),
    t=st.integers(0, 999),
)
def test_score_is_gradient_of_marginal_log_prob(seed, K, D, kind, t):
    """score == centred finite difference of log q(x_t) (marginal(...).log_prob).

    h = 1e-5 on O(1) inputs: truncation O(h²·|f'''|) ≈ 1e-10·(1/σ_min³) and rounding
    O(eps/h) ≈ 1e-11·|f|; the tolerance 1e-5·(1 + |score|) leaves a wide margin for the
    smallest variances drawn here (σ² ≥ 0.05·ᾱ + (1 − ᾱ) ≥ 0.05 for this schedule)."""
    rng = np.random.default_rng(seed)
    gm = random_mixture(rng, K, D, kind)
    mg = gm.marginal(LINEAR, t)
    x = mg.sample(3, rng)
    score = gm.score(x, LINEAR, t)
    # the rows are independent, so the gradient of Σ_b log q(x_b) is the per-row gradient
    fd = numerical_vjp(mg.log_prob, x, np.ones(x.shape[0]), h=1e-5)
    np.testing.assert_allclose(score, fd, atol=1e-5 * (1 + np.abs(score).max()))


@pytest.mark.parametrize("t", [0, 20, 200, 600, 999])
def test_1d_posterior_by_quadrature(t):
    """E[x₀|x_t], E[ε|x_t] and Var[x₀|x_t] by Bayes' rule on a grid of x₀ (trapezoid rule,
    40001 points on [−14, 14], spacing 7e-4). The narrowest posterior (t = 0, σ² = 1e-4) has
    std ≈ 0.01, i.e. ≥ 14 grid points per std; the trapezoid rule on smooth, rapidly decaying
    integrands is then accurate far below the 1e-7 tolerance."""
    gm = GaussianMixture([0.2, 0.5, 0.3], [[-2.0], [0.3], [2.5]], [0.04, 0.25, 0.5])
    ab = LINEAR.alphas_cumprod[t]
    a, s = np.sqrt(ab), np.sqrt(1 - ab)
    grid = np.linspace(-14, 14, 40001)
    prior = np.exp(gm.log_prob(grid[:, None]))
    xs = np.linspace(-3, 3, 13)
    post = prior[None, :] * stats.norm.pdf(xs[:, None], a * grid[None, :], s)
    Z = np.trapezoid(post, grid, axis=1)
    m1 = np.trapezoid(post * grid, grid, axis=1) / Z
    m2 = np.trapezoid(post * grid**2, grid, axis=1) / Z
    x = xs[:, None]
    np.testing.assert_allclose(gm.x0_mean(x, LINEAR, t)[:, 0], m1, atol=1e-7)
    np.testing.assert_allclose(gm.eps(x, LINEAR, t)[:, 0], (xs - a * m1) / s, atol=1e-6)
    np.testing.assert_allclose(gm.x0_covariance(x, LINEAR, t)[:, 0, 0], m2 - m1**2, atol=1e-7)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_posterior_matches_textbook_formulas_with_per_row_t(kind):
    rng = np.random.default_rng(6)
    gm = random_mixture(rng, 3, 4, kind)
    t = rng.integers(0, 1000, size=12)
    x = 2.0 * rng.standard_normal((12, 4))
    mean = gm.x0_mean(x, COSINE, t)
    cov = gm.x0_covariance(x, COSINE, t)
    for i in range(12):
        m_ref, c_ref = reference_posterior(gm, x[i : i + 1], COSINE.alphas_cumprod[t[i]])
        np.testing.assert_allclose(mean[i], m_ref[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(cov[i], c_ref[0], rtol=1e-8, atol=1e-9)


def test_tweedie_consistency_of_eps_and_x0():
    """x_t = √ᾱ E[x₀|x_t] + √(1−ᾱ) E[ε|x_t] (linearity of the expectation of Eq. 4); eps
    comes from the score and x0_mean from the posterior means, two different sums."""
    rng = np.random.default_rng(7)
    gm = random_mixture(rng, 5, 6, "full")
    x = 2.0 * rng.standard_normal((25, 6))
    t = rng.integers(0, 1000, 25)
    a = LINEAR.sqrt_alphas_cumprod[t][:, None]
    s = LINEAR.sqrt_one_minus_alphas_cumprod[t][:, None]
    recon = a * gm.x0_mean(x, LINEAR, t) + s * gm.eps(x, LINEAR, t)
    np.testing.assert_allclose(recon, x, atol=1e-10)


def test_stable_for_many_components_high_dimension_and_far_points():
    """K = 200, D = 64, points 1e3 away: every density underflows to 0 (exp(−5e5)), so a
    naive implementation gives 0/0; log-sum-exp must give the nearest component's answer."""
    rng = np.random.default_rng(8)
    K, D = 200, 64
    gm = GaussianMixture(np.full(K, 1.0 / K), rng.standard_normal((K, D)), np.full(K, 0.5))
    x = 1e3 * np.ones((4, D)) / np.sqrt(D) + 1e3
    for t in (0, 500):
        sc = gm.score(x, LINEAR, t)
        assert np.all(np.isfinite(sc)) and np.all(np.isfinite(gm.log_prob(x)))
        ab = LINEAR.alphas_cumprod[t]
        dist = np.linalg.norm(x[:, None, :] - np.sqrt(ab) * gm.means[None], axis=2)
        k = np.argmin(dist, axis=1)
        expected = -(x - np.sqrt(ab) * gm.means[k]) / (ab * 0.5 + 1 - ab)
        np.testing.assert_allclose(sc, expected, rtol=1e-9)


# ---------------------------------------------------------------- the denoiser


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v", "x_prev"])
@pytest.mark.parametrize("respace", [None, "ddim25"])
def test_denoiser_is_optimal_for_every_parameterisation(mean_type, respace):
    """Through the diffusion's own conversions, the denoiser's output must give
    E[x₀|x_t] (pred_xstart) and, for x_prev, E[x_{t−1}|x_t] = coef1 E[x₀|x_t] + coef2 x_t,
    evaluated at the index whose original timestep the denoiser was given."""
    rng = np.random.default_rng(9)
    gm = random_mixture(rng, 3, 3, "full")
    s = LINEAR if respace is None else LINEAR.respace(space_timesteps(1000, respace))
    d = GaussianDiffusion(s, mean_type=mean_type)
    den = gm.denoiser(d)
    idx = rng.integers(0, s.num_timesteps, 16)
    x = 1.5 * rng.standard_normal((16, 3))
    out = den(x, d.model_timesteps(idx))
    pm = d.p_mean_variance(out, x, idx, clip_denoised=False)
    ref_x0 = gm.x0_mean(x, s, idx)
    np.testing.assert_allclose(pm["pred_xstart"], ref_x0, rtol=1e-8, atol=1e-8)
    c1 = s.posterior_mean_coef1[idx][:, None]
    c2 = s.posterior_mean_coef2[idx][:, None]
    np.testing.assert_allclose(pm["mean"], c1 * ref_x0 + c2 * x, rtol=1e-8, atol=1e-8)
    # the index schedule of a respaced diffusion differs from the original: check the
    # denoiser did not use ᾱ of the original index
    if respace is not None:
        assert not np.allclose(ref_x0, gm.x0_mean(x, LINEAR, idx))


@pytest.mark.parametrize("var_type", ["learned", "learned_range"])
@pytest.mark.parametrize("profile", ["improved_diffusion", "diffusers"])
def test_denoiser_learned_variance_channels_give_exact_diagonal_variance(var_type, profile):
    rng = np.random.default_rng(10)
    gm = random_mixture(rng, 2, 3, "diag")
    d = GaussianDiffusion(LINEAR, var_type=var_type, profile=profile)
    idx = np.array([0, 1, 10, 500, 999, 250])
    x = rng.standard_normal((6, 3))
    out = gm.denoiser(d)(x, idx)
    assert out.shape == (6, 6)
    pm = d.p_mean_variance(out, x, idx, clip_denoised=False)
    cov = gm.x0_covariance(x, LINEAR, idx)
    want = LINEAR.posterior_variance[idx][:, None] + LINEAR.posterior_mean_coef1[idx][
        :, None
    ] ** 2 * np.diagonal(cov, axis1=1, axis2=2)
    np.testing.assert_allclose(pm["variance"], want, rtol=1e-10)


def test_denoiser_keeps_dtype_and_image_shapes():
    gm = GaussianMixture([1.0], np.zeros((1, 12)), [0.3])
    d = GaussianDiffusion(LINEAR)
    x = np.ones((2, 3, 2, 2), dtype=np.float32)
    out = gm.denoiser(d)(x, np.array([5, 900]))
    assert out.shape == x.shape and out.dtype == np.float32


def test_denoiser_rejects_timesteps_outside_the_respaced_map():
    gm = GaussianMixture([1.0], np.zeros((1, 2)), [1.0])
    d = GaussianDiffusion(LINEAR.respace(space_timesteps(1000, "ddim10")))
    with pytest.raises(ValueError, match="not one of the schedule's original timesteps"):
        gm.denoiser(d)(np.zeros((1, 2)), np.array([5]))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("weights", "means", "covs", "match"),
    [
        ([0.5, 0.6], [[0.0], [1.0]], [1.0, 1.0], "sum to 1"),
        ([1.5, -0.5], [[0.0], [1.0]], [1.0, 1.0], ">= 0"),
        ([[1.0]], [[0.0]], [1.0], "1-D"),
        ([0.5, 0.5], [[0.0, 1.0]], [1.0, 1.0], r"means must have shape \(K, D\) = \(2, D\)"),
        ([0.5, 0.5], [[0.0], [1.0]], [1.0, -1.0], r"covariances\[1\] is not positive"),
        ([0.5, 0.5], [[0.0, 0], [1, 1]], [[1.0, 1], [1, 0]], r"covariances\[1\] is not positive"),
        ([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]], r"covariances\[0\] is not positive"),
        ([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.4, 1.0]]], r"covariances\[0\] is not symmetric"),
        ([1.0], [[0.0, 0.0]], [[1.0, 1.0, 1.0]], "covariances must have shape"),
        ([1.0], [[np.nan]], [1.0], "finite"),
    ],
)
def test_bad_parameters_raise_clear_errors(weights, means, covs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(weights, means, covs)


def test_zero_weight_components_are_ignored():
    rng = np.random.default_rng(11)
    gm = GaussianMixture([0.0, 0.4, 0.6], [[9.0, 9.0], [0.0, 1.0], [1.0, -1.0]], [0.3, 0.5, 0.2])
    ref = GaussianMixture([0.4, 0.6], [[0.0, 1.0], [1.0, -1.0]], [0.5, 0.2])
    x = rng.standard_normal((10, 2))
    np.testing.assert_allclose(gm.log_prob(x), ref.log_prob(x), rtol=1e-13)
    np.testing.assert_allclose(gm.x0_covariance(x, LINEAR, 300), ref.x0_covariance(x, LINEAR, 300))
    assert np.all(np.abs(gm.sample(500, rng)) < 6)


def test_dimension_mismatch_and_bad_t():
    gm = GaussianMixture([1.0], [[0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        gm.score(np.zeros((3, 3)), LINEAR, 0)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        gm.score(np.zeros((3, 2)), LINEAR, 1000)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        gm.eps(np.zeros((3, 2)), LINEAR, np.array([1, 2]))
    with pytest.raises(ValueError, match="single timestep"):
        gm.marginal(LINEAR, np.array([1, 2]))
