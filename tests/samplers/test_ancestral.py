"""Samplers driven by the analytic oracle.

* Deterministic: with the same x_T and noise, each sampler's output equals the per-coordinate
  affine recursion of :func:`npddpm.analytic.sampler_affine_steps` to rounding.
* The exact-variance samplers reproduce single-Gaussian data to rounding.
* The moment recursion agrees with Monte Carlo.
* The oracle-driven ancestral chain from N(0, I) matches q(x_t) at several checkpoints for
  mixture data in 2-D and 16-D.
"""

import numpy as np
import pytest
from scipy import stats

from npddpm import GaussianDiffusion, Schedule
from npddpm.analytic import GaussianMixture, sampler_affine_steps, sampler_moments
from npddpm.samplers import ddim, ddpm, step_noise
from npddpm.schedules import get_named_beta_schedule, rescale_zero_terminal_snr, space_timesteps
from npddpm.verify import directions, mean_chi2_pvalue, mixture_2d, projection_ks_pvalues

LINEAR = Schedule.from_name("linear", 1000)
COSINE = Schedule.from_name("cosine", 1000)


def full_gaussian(D=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((D, D))
    return GaussianMixture([1.0], [rng.standard_normal(D)], (A @ A.T / D + 0.1 * np.eye(D))[None])


def run(sampler, d, den, x, **kw):
    fn = ddpm if sampler == "ddpm" else ddim
    if sampler == "ddpm":
        kw.pop("eta", None)
    return fn(d, den, x, clip_denoised=False, **kw)


def affine_reference(gm, d, sampler, eta, variance, x_T, noise):
    U, steps = sampler_affine_steps(gm, d, sampler=sampler, eta=eta, variance=variance)
    y = x_T if U is None else x_T @ U
    for t, A, B, v in steps:
        y = A * y + B + np.sqrt(v) * (noise[t] if U is None else noise[t] @ U)
    return y if U is None else y @ U.T


# ---------------------------------------------------------------- API behaviour


def test_same_seed_same_samples_and_noise_indexing():
    gm = mixture_2d()
    d = GaussianDiffusion(LINEAR.respace(space_timesteps(1000, "20")))
    den = gm.denoiser(d)
    a = ddpm(d, den, (8, 2), seed=3, clip_denoised=False)
    b = ddpm(d, den, (8, 2), seed=3, clip_denoised=False)
    c = ddpm(d, den, (8, 2), seed=4, clip_denoised=False)
    np.testing.assert_array_equal(a, b)
    assert np.all(a != c)
    # the documented schedule of draws: x_T is step 0, index t uses step T − t
    T = d.num_timesteps
    x_T = step_noise(3, 0, (8, 2), np.dtype(np.float64))
    noise = np.stack([step_noise(3, T - t, (8, 2), np.dtype(np.float64)) for t in range(T)])
    np.testing.assert_array_equal(ddpm(d, den, x_T, noise=noise, clip_denoised=False), a)


def test_trajectory_callback_and_original_timesteps():
    gm = mixture_2d()
    s = LINEAR.respace(space_timesteps(1000, "ddim10"))
    d = GaussianDiffusion(s)
    seen_t = []

    def den(x, t):
        seen_t.append(int(t[0]))
        return gm.denoiser(d)(x, t)

    infos = []
    x_T = np.random.default_rng(0).standard_normal((4, 2))
    out, traj = ddim(d, den, x_T, callback=infos.append, return_trajectory=True)
    assert seen_t == list(s.timestep_map[::-1]) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert traj.shape == (11, 4, 2)
    np.testing.assert_array_equal(traj[0], x_T)
    np.testing.assert_array_equal(traj[-1], out)
    assert [i["i"] for i in infos] == list(range(10))
    assert [i["t"] for i in infos] == list(range(9, -1, -1))
    np.testing.assert_array_equal(infos[3]["x"], traj[4])
    assert np.all(np.abs(infos[-1]["pred_xstart"]) <= 1.0)  # clip_denoised=True by default


def test_progress_goes_to_stderr(capsys):
    gm = mixture_2d()
    d = GaussianDiffusion(Schedule.from_name("cosine", 5))
    ddpm(d, gm.denoiser(d), (2, 2), progress=True)
    captured = capsys.readouterr()
    assert "ddpm:" in captured.err and "/5" in captured.err  # a tqdm bar over the 5 steps
    assert captured.out == ""


def test_float32_and_image_shapes():
    gm = GaussianMixture([1.0], np.zeros((1, 8)), [0.2])
    d = GaussianDiffusion(Schedule.from_name("cosine", 10))
    x = np.zeros((3, 2, 2, 2), dtype=np.float32)
    out = ddim(d, gm.denoiser(d), x, eta=1.0, clip_denoised=False)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(x, 0)  # the input is not modified


def test_bad_arguments():
    gm = mixture_2d()
    d = GaussianDiffusion(Schedule.from_name("cosine", 5))
    den = gm.denoiser(d)
    with pytest.raises(ValueError, match="available backends: numpy, cpu, cuda"):
        ddpm(d, den, (2, 2), backend="tpu")
    with pytest.raises(ValueError, match="x0_covariance"):
        ddpm(d, lambda x, t: np.zeros_like(x), (2, 2), variance="exact")
    with pytest.raises(ValueError, match="unknown variance"):
        ddim(d, den, (2, 2), variance="large")
    with pytest.raises(ValueError, match=r"noise must have shape \(T, \*x_T.shape\)"):
        ddpm(d, den, np.zeros((2, 2)), noise=np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="eta"):
        ddim(d, den, (2, 2), eta=-1.0)
    with pytest.raises(TypeError, match="GaussianDiffusion"):
        ddpm(LINEAR, den, (2, 2))
    with pytest.raises(ValueError, match="shape must be"):
        ddpm(d, den, (2,))
    with pytest.raises(ValueError, match="seed"):
        ddpm(d, den, (2, 2), seed=-1)
    with pytest.raises(TypeError, match="shape tuple of ints"):
        ddpm(d, den, [0.5, 1.5])


def test_sampler_moments_bad_arguments():
    d = GaussianDiffusion(Schedule.from_name("cosine", 5))
    with pytest.raises(ValueError, match="single-Gaussian data"):
        sampler_moments(mixture_2d(), d)
    dl = GaussianDiffusion(Schedule.from_name("cosine", 5), var_type="learned")
    with pytest.raises(ValueError, match="learned variances"):
        sampler_moments(full_gaussian(), dl)
    with pytest.raises(ValueError, match="unknown start"):
        sampler_moments(full_gaussian(), d, start="prior")
    with pytest.raises(ValueError, match="unknown sampler"):
        sampler_moments(full_gaussian(), d, sampler="euler")


# ---------------------------------------------------------------- deterministic checks

CASES = [
    ("ddpm", 0.0, "fixed_small", "model"),
    ("ddpm", 0.0, "fixed_large", "model"),
    ("ddpm", 0.0, "fixed_small", "exact"),
    ("ddim", 0.0, "fixed_small", "model"),
    ("ddim", 0.3, "fixed_small", "model"),
    ("ddim", 1.0, "fixed_large", "model"),
    ("ddim", 0.5, "fixed_small", "exact"),
]


@pytest.mark.parametrize(("sampler", "eta", "var_type", "variance"), CASES)
@pytest.mark.parametrize("mean_type", ["eps", "x0", "v", "x_prev"])
@pytest.mark.parametrize(
    ("schedule", "spacing"), [(LINEAR, "40"), (COSINE, "ddim25"), (LINEAR, "10,5,3")]
)
def test_sampler_equals_affine_recursion_with_identical_noise(
    sampler, eta, var_type, variance, mean_type, schedule, spacing
):
    """Each sampler step goes through GaussianDiffusion (p_sample / ddim_sample, with the
    parameterisation conversions) and the oracle's eigenbasis posterior; the reference is
    the scalar recursion per eigen-coordinate. Observed differences are ≤ 5e-13; 1e-10
    allows for error growth ∝ steps · eps · max √(1/ᾱ)."""
    gm = full_gaussian()
    d = GaussianDiffusion(
        schedule.respace(space_timesteps(1000, spacing)), mean_type=mean_type, var_type=var_type
    )
    rng = np.random.default_rng(1)
    x_T = rng.standard_normal((16, 3))
    noise = rng.standard_normal((d.num_timesteps, 16, 3))
    out = run(sampler, d, gm.denoiser(d), x_T, eta=eta, noise=noise, variance=variance)
    ref = affine_reference(gm, d, sampler, eta, variance, x_T, noise)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)


def test_ddim_trajectory_equals_recursion_at_every_step():
    """Deterministic DDIM (η = 0) from a fixed x_T, every intermediate
    state compared, not only the output (observed ≤ 1e-14; limit 1e-11)."""
    gm = full_gaussian(4, seed=12)
    d = GaussianDiffusion(COSINE.respace(space_timesteps(1000, "ddim50")), mean_type="v")
    x_T = np.random.default_rng(13).standard_normal((8, 4))
    _, traj = ddim(d, gm.denoiser(d), x_T, clip_denoised=False, return_trajectory=True)
    U, steps = sampler_affine_steps(gm, d, sampler="ddim", eta=0.0)
    y = x_T @ U
    for i, (_, A, B, v) in enumerate(steps, start=1):
        assert np.all(v == 0)
        y = A * y + B
        np.testing.assert_allclose(traj[i], y @ U.T, rtol=0, atol=1e-11)


@pytest.mark.parametrize("var_type", ["learned", "learned_range"])
def test_learned_variance_oracle_channels_match_recursion(var_type):
    """The oracle's variance channels (exact diagonal reverse variance) through the
    diffusion's learned-variance decoding, for diagonal data (where the recursion applies)."""
    gm = GaussianMixture([1.0], [[0.5, -1.0]], [[0.3, 0.05]])
    d = GaussianDiffusion(LINEAR.respace(space_timesteps(1000, "30")), var_type=var_type)
    rng = np.random.default_rng(2)
    x_T = rng.standard_normal((8, 2))
    noise = rng.standard_normal((d.num_timesteps, 8, 2))
    out = ddpm(d, gm.denoiser(d), x_T, noise=noise, clip_denoised=False)
    np.testing.assert_allclose(
        out, affine_reference(gm, d, "ddpm", 0.0, "model", x_T, noise), atol=1e-10
    )


def test_diffusers_profile_last_step_noise_under_respacing_that_skips_timestep_0():
    """diffusers masks the noise by the original timestep: a chain that ends at timestep 10
    adds noise at its last step, and the recursion must know it. (fixed_large: with
    fixed_small the last-step variance is β̃ = 0, floored to 1e-20, so the noise is nil.)"""
    gm = full_gaussian()
    d = GaussianDiffusion(
        LINEAR.respace([10, 300, 600, 900]), var_type="fixed_large", profile="diffusers"
    )
    rng = np.random.default_rng(3)
    x_T = rng.standard_normal((8, 3))
    noise = rng.standard_normal((4, 8, 3))
    out = ddpm(d, gm.denoiser(d), x_T, noise=noise, clip_denoised=False)
    np.testing.assert_allclose(
        out, affine_reference(gm, d, "ddpm", 0.0, "model", x_T, noise), atol=1e-10
    )
    noise[0] = 0.0  # the last step's noise matters under this profile
    assert not np.allclose(ddpm(d, gm.denoiser(d), x_T, noise=noise, clip_denoised=False), out)


# ---------------------------------------------------------------- exact reproduction


def test_zero_terminal_snr_exact_sampler_from_standard_normal_is_exact():
    """With ᾱ_{T−1} = 0 (Lin et al. 2024), q(x_T) = N(0, I) exactly, so the exact-variance
    samplers started where samplers start reproduce the data to rounding (observed ≤ 2e-14,
    limit 1e-12), and the v-parameterised sampler (ε-parameterisation divides by √ᾱ = 0)
    still equals the recursion step by step.

    ``xstart_from_eps="divide"``: DDIM re-derives ε from x̂₀, and improved-diffusion's
    formula (√(1/ᾱ)·x_t − x̂₀)/√(1/ᾱ − 1) is ∞/∞ at ᾱ = 0 (NaN); diffusers' form
    (x_t − √ᾱ·x̂₀)/√(1 − ᾱ) is finite there."""
    gm = full_gaussian(3, seed=2)
    betas = rescale_zero_terminal_snr(get_named_beta_schedule("linear", 1000))
    s = Schedule(betas).respace(np.linspace(0, 999, 20).round().astype(int))
    assert s.alphas_cumprod[-1] == 0.0
    d = GaussianDiffusion(s, mean_type="v", xstart_from_eps="divide")
    rng = np.random.default_rng(4)
    x_T = rng.standard_normal((8, 3))
    noise = rng.standard_normal((20, 8, 3))
    for sampler, eta in (("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)):
        m = sampler_moments(gm, d, sampler=sampler, eta=eta, variance="exact")
        assert m.mean_error < 1e-12 and m.covariance_error < 1e-12, (sampler, eta, m)
        out = run(sampler, d, gm.denoiser(d), x_T, eta=eta, noise=noise, variance="exact")
        ref = affine_reference(gm, d, sampler, eta, "exact", x_T, noise)
        np.testing.assert_allclose(out, ref, atol=1e-10)


@pytest.mark.parametrize("kind", ["full", "diag", "isotropic"])
@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_exact_variance_recursion_reproduces_the_data(kind, name):
    """Started from q(x_T), the exact reverse variance (β̃ + coef1²·Cov[x₀|x_t], DDPM; σ² +
    P²·Cov, DDIM) makes every step map q(x_t) to q(x_{t−1}) exactly: the output moments equal
    the data's to rounding (observed ≤ 3e-12 over 1000 steps; limit 1e-10)."""
    if kind == "full":
        gm = full_gaussian(4, seed=5)
    elif kind == "diag":
        gm = GaussianMixture([1.0], [[1.0, -2.0, 0.0, 3.0]], [[0.01, 0.5, 2.0, 10.0]])
    else:
        gm = GaussianMixture([1.0], [[1.0, -2.0, 0.0, 3.0]], [0.02])
    base = Schedule.from_name(name, 1000)
    for spacing in ("1000", "50", "ddim7", "10,1,5"):
        s = base if spacing == "1000" else base.respace(space_timesteps(1000, spacing))
        d = GaussianDiffusion(s)
        for sampler, eta in (("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.6), ("ddim", 1.0)):
            m = sampler_moments(gm, d, sampler=sampler, eta=eta, variance="exact", start="marginal")
            assert m.mean_error < 1e-10 and m.covariance_error < 1e-10, (spacing, sampler, m)


def test_exact_variance_sampler_reproduces_gaussian_data_monte_carlo():
    """The sampler itself (not the recursion), x_T ~ q(x_T), ddim10 spacing, n = 20000.

    The output is exactly N(μ, Σ) (previous tests), so each mean entry has z = (x̄ − μ)/√(Σ_ii/n)
    ~ N(0, 1) and each covariance entry z = (S_ij − Σ_ij)/√((Σ_iiΣ_jj + Σ_ij²)/n) ≈ N(0, 1).
    |z| < 5 for all 3 + 6 entries of 2 samplers: family-wise false-failure probability
    < 18 · 5.7e-7 ≈ 1e-5. Detects (z ≥ 5) a mean error of 5·√(Σ_ii/n) ≤ 0.07 or a
    covariance error ≤ 0.18 (this Σ has diagonal entries up to ≈ 3.7)."""
    gm = full_gaussian(3, seed=6)
    s = LINEAR.respace(space_timesteps(1000, "ddim10"))
    d = GaussianDiffusion(s)
    n = 20_000
    rng = np.random.default_rng(7)
    x_T = gm.marginal(s, s.num_timesteps - 1).sample(n, rng)
    mu, S = gm.means[0], gm.covariance_matrices()[0]
    for sampler, eta in (("ddpm", 0.0), ("ddim", 0.0)):
        out = run(sampler, d, gm.denoiser(d), x_T, eta=eta, variance="exact", seed=11)
        z_mean = (out.mean(0) - mu) / np.sqrt(np.diag(S) / n)
        C = np.cov(out.T, bias=True)
        se = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
        z_cov = ((C - S) / se)[np.triu_indices(3)]
        assert np.all(np.abs(z_mean) < 5) and np.all(np.abs(z_cov) < 5), (z_mean, z_cov)


@pytest.mark.parametrize(
    ("sampler", "eta", "var_type"),
    [
        ("ddpm", 0.0, "fixed_small"),
        ("ddpm", 0.0, "fixed_large"),
        ("ddim", 0.0, "fixed_small"),
        ("ddim", 0.5, "fixed_small"),
    ],
)
def test_moment_recursion_agrees_with_monte_carlo(sampler, eta, var_type):
    """sampler_moments (start N(0, I)) vs n = 30000 sampler outputs, ddim25 spacing of the
    cosine schedule (where these samplers are visibly biased against the data, so agreement
    is informative). Output is Gaussian, so the z-scores are as in the previous test; |z| < 5
    for 9 entries: false-failure probability < 6e-6 per case, < 3e-5 for all four. Detects
    an error of 5 standard errors: ≤ 0.04 in the mean, ≤ 0.085 in the covariance (observed
    max |z| = 2.2). The recursion's covariance error against the data is 0.12–0.35 for
    these cases, so the data moments in place of the recursion's would fail."""
    gm = full_gaussian(3, seed=8)
    d = GaussianDiffusion(COSINE.respace(space_timesteps(1000, "ddim25")), var_type=var_type)
    mom = sampler_moments(gm, d, sampler=sampler, eta=eta)
    n = 30_000
    out = run(sampler, d, gm.denoiser(d), (n, 3), eta=eta, seed=21)
    M, S = mom.mean, mom.covariance
    z_mean = (out.mean(0) - M) / np.sqrt(np.diag(S) / n)
    C = np.cov(out.T, bias=True)
    se = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    z_cov = ((C - S) / se)[np.triu_indices(3)]
    assert np.all(np.abs(z_mean) < 5) and np.all(np.abs(z_cov) < 5), (z_mean, z_cov)


# ---------------------------------------------------------------- chain vs q(x_t)


def mixture_16d_full():
    rng = np.random.default_rng(160)
    covs = []
    for _ in range(3):
        A = rng.standard_normal((16, 16))
        covs.append(0.3 * (A @ A.T) / 16 + 0.05 * np.eye(16))
    return GaussianMixture([0.45, 0.35, 0.2], 1.2 * rng.standard_normal((3, 16)), covs)


def chain_pvalues(gm, d, n, checkpoints, seed, n_dir):
    """p-values (KS on n_dir projections + χ² of the mean) of the ancestral chain's state at
    each checkpoint index (−1 = the output) against the exact q(x_t)."""
    keep = {}

    def grab(info):
        if info["t"] - 1 in checkpoints:
            keep[info["t"] - 1] = info["x"].copy()

    ddpm(d, gm.denoiser(d), (n, gm.dim), seed=seed, clip_denoised=False, callback=grab)
    u = directions(gm.dim, n_dir, np.random.default_rng(seed + 1))
    out = {}
    for t in checkpoints:
        target = gm if t == -1 else gm.marginal(d.schedule, t)
        out[t] = np.append(
            projection_ks_pvalues(keep[t], target, u), mean_chi2_pvalue(keep[t], target)
        )
    return out


@pytest.mark.parametrize(
    ("gm", "n_dir"), [(mixture_2d(), 4), (mixture_16d_full(), 8)], ids=["2-D", "16-D"]
)
def test_ancestral_chain_matches_q_xt_at_checkpoints(gm, n_dir):
    """The T = 1000 linear-schedule ancestral chain (fixed_small) with the oracle, from
    N(0, I), n = 2000 independent chains, checkpoints t = 700, 300, 50 and the output.

    Tests: one-sample KS of n_dir projections against the exact projected mixture CDF, and
    χ² of the mean against the exact mean/covariance (n(x̄−m)ᵀC⁻¹(x̄−m) ~ χ²_D by the CLT).
    m = 4·(n_dir + 1) tests at level α/m with α = 1e-3: the false-failure probability is
    ≤ 1e-3 (Bonferroni; fixed seeds make the run reproducible). Power, by the DKW
    inequality: a projection whose CDF is off by δ in sup-norm is missed with probability
    ≤ 2·exp(−2n(δ − D_crit)²); D_crit = √(ln(2m/α)/(2n)) ≈ 0.051 (2-D) / 0.053 (16-D), so
    δ ≥ 0.10 is detected with probability ≥ 0.999. The χ² test detects a mean error of
    Mahalanobis size 0.13 (2-D) / 0.16 (16-D) with probability 0.9 (non-central χ²). The
    chain's own discretisation error at T = 1000 is below sampling noise at n = 8000–20000
    (measured KS distances 0.007–0.012), far below detection here."""
    d = GaussianDiffusion(LINEAR)
    cps = (700, 300, 50, -1)
    p = chain_pvalues(gm, d, 2000, cps, seed=5, n_dir=n_dir)
    m = len(cps) * (n_dir + 1)
    smallest = min(v.min() for v in p.values())
    assert smallest >= 1e-3 / m, {t: v.round(5).tolist() for t, v in p.items()}


def test_chain_check_detects_a_wrong_denoiser():
    """Power check (negative control): the same test on the 2-D mixture, but the chain is
    driven by the oracle of a mixture with the first two weights swapped (0.5/0.3 → 0.3/0.5,
    a CDF change of up to ≈ 0.2 along the first axis). It must be rejected at the output.
    T = 100 steps to stay fast; the level is the same α/m as above."""
    gm = mixture_2d()
    wrong = GaussianMixture([0.3, 0.5, 0.2], gm.means, gm.covariances)
    d = GaussianDiffusion(Schedule.from_name("linear", 100))
    keep = {}
    ddpm(
        d,
        wrong.denoiser(d),
        (2000, 2),
        seed=5,
        clip_denoised=False,
        callback=lambda info: keep.setdefault("x", info["x"]) if info["t"] == 0 else None,
    )
    u = directions(2, 4, np.random.default_rng(6))
    p = projection_ks_pvalues(keep["x"], gm, u)
    assert p.min() < 1e-3 / 20


def test_ks_pvalues_are_uniform_under_the_null():
    """Calibration of the test machinery on exact draws: 200 KS p-values from independent
    samples of the 2-D mixture must look uniform (KS of the p-values, p > 1e-4; false-failure
    probability 1e-4)."""
    gm = mixture_2d()
    rng = np.random.default_rng(9)
    u = directions(2, 2, rng)
    ps = np.concatenate([projection_ks_pvalues(gm.sample(300, rng), gm, u) for _ in range(100)])
    assert stats.kstest(ps, "uniform").pvalue > 1e-4


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("eta", ["0.5", True, np.bool_(False), None, [0.5]])
def test_ddim_eta_must_be_a_real_number(eta):
    d = GaussianDiffusion(Schedule.from_name("cosine", 20))
    with pytest.raises(TypeError, match=r"eta must be a real number.*eta=0\.5"):
        ddim(d, lambda x, t: np.zeros_like(x), (2, 2), eta=eta)


@pytest.mark.parametrize("sampler", [ddpm, ddim])
def test_eps_model_on_zero_terminal_snr_is_refused_up_front(sampler):
    betas = rescale_zero_terminal_snr(get_named_beta_schedule("linear", 100))
    d = GaussianDiffusion(Schedule(betas))
    calls = []

    def den(x, t):
        calls.append(1)
        return np.zeros_like(x)

    with pytest.raises(ValueError, match=r"zero terminal SNR.*mean_type='v' or 'x0'"):
        sampler(d, den, (2, 2))
    assert not calls  # before any model evaluation
    v = GaussianDiffusion(Schedule(betas), mean_type="v")
    assert np.all(np.isfinite(sampler(v, den, (2, 2))))
