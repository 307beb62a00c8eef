"""Score-based samplers against exact answers: the AR(1) law of ULA on a Gaussian, MALA's
invariance on a mixture, the score adapters against the oracle, and bad input."""

import math

import numpy as np
import pytest
from scipy import stats

from npddpm import GaussianDiffusion, Schedule
from npddpm.analytic import GaussianMixture
from npddpm.samplers.langevin import (
    annealed_langevin,
    eps_from_score_fn,
    langevin,
    predictor_corrector,
    score_from_denoiser,
)

MU, S = 0.7, 0.5


def gauss_score(x):
    return -(x - MU) / S**2


def test_ula_is_the_exact_ar1_chain():
    """ULA on N(μ, s²I): x_k − μ = ρ(x_{k−1} − μ) + √δ ε, ρ = 1 − δ/(2s²), so
    m_k = μ + ρ^k (x₀ − μ) and v_k = δ(1 − ρ^{2k})/(1 − ρ²), with stationary variance
    s²/(1 − δ/(4s²)). N = 20000 chains × 3 dims = 60000 draws per check; each check uses a
    5σ band (two-sided false-failure probability 5.7e-7; 8 checks: < 5e-6 in all). A wrong
    step (e.g. δ instead of δ/2 in the drift, ρ = 1 − δ/s²) moves v_∞ by 12 % here, > 50σ."""
    delta = 0.8 * S**2  # large on purpose: the δ-bias of ULA is 25 % of the variance
    x0 = np.full((20000, 3), MU + 2.0)
    traj = langevin(gauss_score, x0, step_size=delta, n_steps=60, seed=3, return_trajectory=True)[1]
    rho = 1 - delta / (2 * S**2)
    n = x0.size
    for k in (1, 5, 20, 60):
        m = MU + rho**k * 2.0
        v = delta * (1 - rho ** (2 * k)) / (1 - rho**2)
        xs = traj[k].ravel()
        assert abs(xs.mean() - m) < 5 * math.sqrt(v / n)
        assert abs(xs.var(ddof=1) - v) < 5 * v * math.sqrt(2 / (n - 1))
    v_inf = S**2 / (1 - delta / (4 * S**2))
    v_hat = traj[60].var(ddof=1)
    se = v_inf * math.sqrt(2 / (n - 1))
    assert abs(v_hat - v_inf) < 5 * se  # the biased law, exactly
    assert v_hat - S**2 > 20 * se  # and visibly not the target


def test_ula_injected_noise_and_seed_are_reproducible():
    x0 = np.zeros((4, 2))
    a = langevin(gauss_score, x0, step_size=0.1, n_steps=5, seed=1)
    b = langevin(gauss_score, x0, step_size=0.1, n_steps=5, seed=1)
    assert np.array_equal(a, b)
    z = np.random.default_rng(0).standard_normal((5, 4, 2))
    c = langevin(gauss_score, x0, step_size=0.1, n_steps=5, noise=z)
    x = x0.copy()
    for k in range(5):  # the unadjusted Langevin update, transcribed
        x = x + 0.05 * gauss_score(x) + math.sqrt(0.1) * z[k]
    assert np.allclose(c, x, rtol=1e-15, atol=1e-15)


# A 2-D mixture with well-separated modes, its density and score written here with scipy
# (independently of npddpm.analytic).
W = np.array([0.3, 0.7])
MEANS = np.array([[-3.0, 0.0], [3.0, 1.0]])
COV = np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]]])
PREC = np.linalg.inv(COV)


def mix_logpdf(x):
    comps = np.stack(
        [np.log(W[k]) + stats.multivariate_normal(MEANS[k], COV[k]).logpdf(x) for k in range(2)],
        axis=-1,
    )
    return np.logaddexp(comps[..., 0], comps[..., 1])


def mix_score(x):
    logs = np.stack(
        [np.log(W[k]) + stats.multivariate_normal(MEANS[k], COV[k]).logpdf(x) for k in range(2)],
        axis=-1,
    )
    r = np.exp(logs - np.logaddexp(logs[:, :1], logs[:, 1:]))
    return sum(-r[:, k : k + 1] * ((x - MEANS[k]) @ PREC[k]) for k in range(2))


def mix_sample(n, rng):
    k = rng.choice(2, size=n, p=W)
    z = rng.standard_normal((n, 2))
    L = np.linalg.cholesky(COV)
    return MEANS[k] + np.einsum("nij,nj->ni", L[k], z)


def test_mala_leaves_the_mixture_invariant():
    """Started from exact samples, MALA's marginal after 100 steps is the target: KS tests on
    the two coordinates and 4 random projections against fresh exact samples (n = 4000
    each), Bonferroni at α = 1e-4 in total (false-failure probability ≤ 1e-4). Power check:
    ULA with the same large step δ = 0.4 inflates the variance of the second coordinate by
    about 30 % (within-mode variances 0.4–0.6); the variance ratio's sampling sd at n = 4000
    is ≈ 0.03, so requiring a ratio > 1.15 separates the two by > 5 sd."""
    rng = np.random.default_rng(11)
    x0 = mix_sample(4000, rng)
    ref = mix_sample(4000, rng)
    xm, info = langevin(
        mix_score,
        x0,
        step_size=0.4,
        n_steps=100,
        seed=5,
        metropolis=True,
        log_prob=mix_logpdf,
        return_info=True,
    )
    xu = langevin(mix_score, x0, step_size=0.4, n_steps=100, seed=5)
    dirs = np.vstack([np.eye(2), rng.standard_normal((4, 2))])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    alpha = 1e-4 / len(dirs)
    p_mala = [stats.ks_2samp(xm @ d, ref @ d).pvalue for d in dirs]
    assert min(p_mala) > alpha, p_mala
    assert xu[:, 1].var() / ref[:, 1].var() > 1.15
    assert abs(xm[:, 1].var() / ref[:, 1].var() - 1) < 0.15
    assert 0.3 < info["acceptance_rate"] < 0.99


def test_score_adapters_match_the_oracle():
    gm = GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.2])
    s = Schedule.from_name("cosine", 100).respace(range(0, 100, 10))
    x = np.random.default_rng(0).standard_normal((5, 2))
    t = np.array([0, 3, 5, 8, 9])
    exact = gm.score(x, s, t)
    for mt in ("eps", "x0", "v", "x_prev"):
        d = GaussianDiffusion(s, mean_type=mt)
        got = score_from_denoiser(d, gm.denoiser(d))(x, t)
        # Tweedie through x̂₀: rounding amplified by 1/(1 − ᾱ_t) ≤ 1/(1 − ᾱ_0) ≈ 4e3
        assert np.allclose(got, exact, rtol=1e-9, atol=1e-9), mt
    d = GaussianDiffusion(s)
    eps_model = eps_from_score_fn(d, lambda y, idx: gm.score(y, s, idx))
    assert np.allclose(eps_model(x, d.model_timesteps(t)), gm.eps(x, s, t), rtol=1e-12)


def test_predictor_corrector_and_annealed_run_with_the_oracle():
    """PC with the oracle score on a 1-D two-component mixture: the output's first two
    moments match the data within 5σ of their Monte-Carlo error (n = 4000; the DDPM/PC
    discretisation error at T = 100 is far below that, as measured in `npddpm verify`)."""
    gm = GaussianMixture([0.5, 0.5], [[-0.6], [0.6]], [0.04, 0.04])
    s = Schedule.from_name("cosine", 100)
    d = GaussianDiffusion(s)
    den = gm.denoiser(d)
    x, info = predictor_corrector(d, den, (4000, 1), n_corrector=1, seed=2, return_info=True)
    assert info["model_calls"] == 200
    m, v = float(gm.mean()[0]), float(gm.covariance()[0, 0])
    assert abs(x.mean() - m) < 5 * math.sqrt(v / 4000)
    assert abs(x.var() - v) < 5 * v * math.sqrt(2 / 3999) + 0.02 * v
    y = annealed_langevin(d, den, (500, 1), n_steps_each=2, step_lr=1e-3, seed=1)
    assert y.shape == (500, 1) and np.all(np.isfinite(y))


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"step_size": float("nan")}, ValueError, "step_size"),
        ({"step_size": -1.0}, ValueError, "step_size"),
        ({"step_size": "big"}, TypeError, "step_size"),
        ({"n_steps": -1}, ValueError, "n_steps"),
        ({"metropolis": True}, ValueError, "log_prob"),
        ({"noise": np.zeros((3, 2, 2))}, ValueError, "noise must have shape"),
    ],
)
def test_bad_input(kw, exc, match):
    args = {"step_size": 0.1, "n_steps": 2, **kw}
    with pytest.raises(exc, match=match):
        langevin(gauss_score, np.zeros((4, 2)), **args)
    with pytest.raises(ValueError, match="score_fn returned shape"):
        langevin(lambda x: x[:, :1], np.zeros((4, 2)), step_size=0.1, n_steps=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_langevin_cpu_backend_equals_numpy(dtype):
    # the fused kernel evaluates (x + (δ/2)·g) + √δ·z in the array dtype, like the NumPy path,
    # with the same counter-based noise: bitwise equal (fastmath off)
    x0 = np.random.default_rng(0).standard_normal((50, 3)).astype(dtype)
    a = langevin(gauss_score, x0, step_size=0.1, n_steps=7, seed=4)
    b = langevin(gauss_score, x0, step_size=0.1, n_steps=7, seed=4, backend="cpu")
    assert a.dtype == b.dtype == dtype and np.array_equal(a, b)
    c = langevin(
        mix_score,
        mix_sample(30, np.random.default_rng(1)),
        step_size=0.2,
        n_steps=5,
        seed=2,
        metropolis=True,
        log_prob=mix_logpdf,
        backend="cpu",
    )
    d = langevin(
        mix_score,
        mix_sample(30, np.random.default_rng(1)),
        step_size=0.2,
        n_steps=5,
        seed=2,
        metropolis=True,
        log_prob=mix_logpdf,
    )
    assert np.array_equal(c, d)


def test_pc_and_annealed_backends_agree():
    gm = GaussianMixture([0.5, 0.5], [[-0.6], [0.6]], [0.04, 0.04])
    d = GaussianDiffusion(Schedule.from_name("cosine", 30))
    den = gm.denoiser(d)
    a = predictor_corrector(d, den, (64, 1), seed=2)
    b = predictor_corrector(d, den, (64, 1), seed=2, backend="cpu")
    assert np.array_equal(a, b)
    c = annealed_langevin(d, den, (64, 1), n_steps_each=2, step_lr=1e-3, seed=1)
    e = annealed_langevin(d, den, (64, 1), n_steps_each=2, step_lr=1e-3, seed=1, backend="cpu")
    assert np.array_equal(c, e)
