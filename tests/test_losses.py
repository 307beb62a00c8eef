"""Losses and the variational bound: closed forms, scipy and Monte Carlo, exact bin sums,
and every hand-derived gradient against centred finite differences."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from npddpm import GaussianDiffusion, Schedule
from npddpm.diffusion import LOSS_TYPES, MEAN_TYPES, VAR_TYPES
from npddpm.losses import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    normal_kl,
)
from npddpm.profiles import PROFILES
from npddpm.testing import strategies as nst
from npddpm.testing.gradcheck import numerical_vjp

U = np.finfo(np.float64).eps / 2
LIN = Schedule.from_name("linear", 1000)


# --- normal_kl -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "m1, lv1, m2, lv2", [(0.0, 0.0, 1.0, 0.5), (0.3, -2.0, -0.1, 1.0), (2.0, 1.5, 2.0, -0.5)]
)
def test_normal_kl_against_quadrature(m1, lv1, m2, lv2):
    p = stats.norm(m1, math.exp(lv1 / 2))
    q = stats.norm(m2, math.exp(lv2 / 2))
    lo, hi = p.ppf(1e-15), p.isf(1e-15)
    kl = integrate.quad(
        lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)),
        lo,
        hi,
        epsabs=1e-13,
        epsrel=1e-12,
        limit=200,
    )[0]
    # quadrature error ≤ 1e-12 plus the mass outside ±ppf(1e-15), negligible at this size
    assert float(normal_kl(m1, lv1, m2, lv2)) == pytest.approx(kl, rel=1e-9, abs=1e-11)


def test_normal_kl_against_monte_carlo():
    # KL = E_p[log p − log q]. n = 4e5 draws: the MC standard error is sd/√n with sd the
    # std of the log ratio (≈ 1.6 here), ≈ 2.5e-3; a 5σ band has false-failure prob 6e-7.
    rng = np.random.default_rng(12)
    m1, lv1, m2, lv2 = 0.4, -0.3, -0.2, 0.6
    x = rng.normal(m1, math.exp(lv1 / 2), 400_000)
    lr = stats.norm.logpdf(x, m1, math.exp(lv1 / 2)) - stats.norm.logpdf(x, m2, math.exp(lv2 / 2))
    se = lr.std() / math.sqrt(x.size)
    assert abs(lr.mean() - float(normal_kl(m1, lv1, m2, lv2))) < 5 * se


@given(st.floats(-5, 5), st.floats(-8, 8), st.floats(-5, 5), st.floats(-8, 8))
def test_normal_kl_properties(m1, lv1, m2, lv2):
    assert normal_kl(m1, lv1, m1, lv1) == 0.0
    # KL ≥ 0; rounding of the four terms (each ≤ e^16·25) can undershoot 0 by a few ulp
    kl = float(normal_kl(m1, lv1, m2, lv2))
    assert kl >= -8 * U * (1 + abs(lv1) + abs(lv2) + math.exp(abs(lv1 - lv2)))


# --- discretised Gaussian likelihood -----------------------------------------------------------


@pytest.mark.parametrize("cdf", ["tanh", "erf"])
@pytest.mark.parametrize(
    "mu, log_scale", [(0.0, -3.0), (0.9, -5.0), (-0.95, -1.0), (0.2, 1.0), (1.0, -6.0)]
)
def test_discretized_probabilities_sum_to_one(cdf, mu, log_scale):
    # The 256 bins tile the real line (edge bins are half-infinite), so the probabilities
    # telescope to 1 for ANY cdf; rounding of the bin edges leaves ≤ 256·pdf·ulp ≪ 1e-9,
    # provided no bin hits the 1e-12 clamp (true for these scales).
    x = -1 + 2 * np.arange(256) / 255.0
    lp = discretized_gaussian_log_likelihood(
        x, means=np.full(256, mu), log_scales=np.full(256, log_scale), cdf=cdf
    )
    p = np.exp(lp)
    p = p[p > 1e-12]  # clamped bins contribute 1e-12 each by construction
    assert abs(p.sum() - 1.0) < 1e-9 + 256e-12


def test_tanh_cdf_error_is_the_published_1_8e4():
    z = np.linspace(-6, 6, 200001)
    err = np.max(np.abs(approx_standard_normal_cdf(z) - stats.norm.cdf(z)))
    assert 1.7e-4 < err < 1.8e-4  # the reference figure for this tanh approximation: 1.79e-4


def test_discretized_edges_use_half_infinite_bins():
    lp = discretized_gaussian_log_likelihood(
        np.array([-1.0, 1.0, 0.0]), means=np.zeros(3), log_scales=np.zeros(3), cdf="erf"
    )
    e = 1 / 255
    assert lp[0] == pytest.approx(math.log(stats.norm.cdf(-1 + e)), rel=1e-12)
    assert lp[1] == pytest.approx(math.log(stats.norm.sf(1 - e)), rel=1e-12)
    assert lp[2] == pytest.approx(math.log(stats.norm.cdf(e) - stats.norm.cdf(-e)), rel=1e-9)


@given(st.floats(-1, 1), st.floats(-1.5, 1.5), st.floats(-6, 1), st.sampled_from(["tanh", "erf"]))
def test_discretized_gradient_finite_differences(x, mu, ls, cdf):
    x = np.array([round((x + 1) * 127.5) / 127.5 - 1])  # a pixel value

    def f(m, s):
        return discretized_gaussian_log_likelihood(
            x, means=np.array([m]), log_scales=np.array([s]), cdf=cdf
        )[0]

    _, gm, gs = discretized_gaussian_log_likelihood(
        x, means=np.array([mu]), log_scales=np.array([ls]), cdf=cdf, return_grad=True
    )
    # Where P(bin) < 1e-4 the probability is a difference of two CDF values that cancels
    # (the tanh form's 1 + tanh(g) loses every digit in the tail), so the *value* is noisy
    # and finite differences are meaningless there; the gradient is the same expression.
    if f(mu, ls) < math.log(1e-4):
        return
    # Steps scaled to the Gaussian's width σ = e^{ls}: truncation ~ (h/σ)²·|f'|, rounding
    # noise ~ u·CDF/(P·h) ≤ 2e-12/h.
    hm, hs = 1e-4 * math.exp(ls), 1e-4
    one = np.ones(1)
    num_m = numerical_vjp(lambda m: np.array([f(m[0], ls)]), np.array([mu]), one, h=hm)[0]
    num_s = numerical_vjp(lambda s: np.array([f(mu, s[0])]), np.array([ls]), one, h=hs)[0]
    assert abs(gm[0] - num_m) <= 1e-6 * max(abs(num_m), 1.0)
    assert abs(gs[0] - num_s) <= 1e-6 * max(abs(num_s), 1.0)


# --- training losses: values -------------------------------------------------------------------


def setup(
    mean_type,
    var_type,
    loss_type="mse",
    B=4,
    D=3,
    seed=0,
    profile="improved_diffusion",
    schedule=LIN,
    **overrides,
):
    d = GaussianDiffusion(
        schedule,
        mean_type=mean_type,
        var_type=var_type,
        loss_type=loss_type,
        profile=profile,
        **overrides,
    )
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (B, D))
    noise = rng.standard_normal((B, D))
    C = 2 * D if var_type.startswith("learned") else D
    out = 0.5 * rng.standard_normal((B, C))
    if var_type == "learned" and d.profile.learned_output == "variance":
        out[:, D:] = np.abs(out[:, D:]) + 0.1
    t = np.array([0, 1, schedule.num_timesteps // 2, schedule.num_timesteps - 1])[:B]
    return d, out, x0, noise, t


@pytest.mark.parametrize("mean_type", MEAN_TYPES)
def test_mse_targets(mean_type):
    d, out, x0, noise, t = setup(mean_type, "fixed_small")
    ab = LIN.alphas_cumprod[t][:, None]
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise
    target = {
        "eps": noise,
        "x0": x0,
        "v": np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0,
        "x_prev": LIN.posterior_mean_coef1[t][:, None] * x0
        + LIN.posterior_mean_coef2[t][:, None] * xt,
    }[mean_type]
    terms, grad = d.training_losses(out, x0, t, noise)
    assert np.allclose(terms["loss"], np.mean((out - target) ** 2, axis=1), rtol=1e-12)
    assert np.allclose(grad, 2 * (out - target) / 3, rtol=1e-12)


def test_hybrid_and_kl_scalings():
    d_mse, out, x0, noise, t = setup("eps", "learned_range", "mse")
    d_res = GaussianDiffusion(
        LIN, mean_type="eps", var_type="learned_range", loss_type="rescaled_mse"
    )
    d_lr = GaussianDiffusion(
        LIN,
        mean_type="eps",
        var_type="learned_range",
        loss_type="rescaled_mse",
        profile="lucidrains",
    )
    vb = d_mse.training_losses(out, x0, t, noise)[0]["vb"]
    # ID: × T/1000 (λ = 0.001 on the full bound); lucidrains: × 0.001 on the per-step term
    assert np.allclose(d_res.training_losses(out, x0, t, noise)[0]["vb"], vb * 1000 / 1000)
    # lucidrains' clipped variance floor changes vb at t = 0 only
    lr_vb = d_lr.training_losses(out, x0, t, noise)[0]["vb"]
    assert np.allclose(lr_vb[1:], vb[1:] * 1e-3)
    d4 = Schedule.from_name("cosine", 4000)
    a = GaussianDiffusion(d4, var_type="learned_range", loss_type="rescaled_mse")
    b = GaussianDiffusion(d4, var_type="learned_range", loss_type="mse")
    t4 = np.array([0, 1, 2000, 3999])
    assert np.allclose(
        a.training_losses(out, x0, t4, noise)[0]["vb"],
        4 * b.training_losses(out, x0, t4, noise)[0]["vb"],
    )
    k = GaussianDiffusion(LIN, loss_type="kl", var_type="learned")
    rk = GaussianDiffusion(LIN, loss_type="rescaled_kl", var_type="learned")
    assert np.allclose(
        rk.training_losses(out, x0, t, noise)[0]["loss"],
        1000 * k.training_losses(out, x0, t, noise)[0]["loss"],
    )


# --- training losses: gradients against finite differences --------------------------------------


def fd_grad(d, out, x0, t, noise, key_for):
    """Richardson-extrapolated centred differences of loss_i w.r.t. out[i, j] (float64):
    (4·D(h/2) − D(h))/3, truncation error O(h⁴).

    The step is per row, h = 1e-3·min(1, σ_t/|c_t|), where c_t = ∂(model mean)/∂(output)
    and σ_t the posterior std: large enough that rounding noise δ ≈ 1e-16 in the loss stays
    small after division (δ/(c·h)), small enough that the mean moves by ≤ 1e-3·σ, the scale
    on which the loss curves (the decoder NLL varies on the scale of σ)."""
    s = d.schedule
    dx0 = {
        "eps": s.sqrt_recipm1_alphas_cumprod[t],
        "x0": np.ones(t.size),
        "v": s.sqrt_one_minus_alphas_cumprod[t],
        "x_prev": 1 / s.posterior_mean_coef1[t],
    }
    c = np.abs(s.posterior_mean_coef1[t] * dx0[d.mean_type])
    sigma = np.sqrt(np.maximum(s.posterior_variance[t], s.posterior_variance[min(1, t.max())]))
    hs = 1e-3 * np.minimum(1.0, sigma / np.maximum(c, 1e-300))
    num = np.zeros_like(out)

    # Not npddpm.testing.gradcheck: the step differs per row (scaled to that row's σ) and the
    # estimate is Richardson-extrapolated, which numerical_vjp does not do.
    def central(idx, h):
        e = np.zeros_like(out)
        e[idx] = h
        key = key_for(idx)
        fp = d.training_losses(out + e, x0, t, noise)[0][key][idx[0]]
        fm = d.training_losses(out - e, x0, t, noise)[0][key][idx[0]]
        return (fp - fm) / (2 * h)

    for idx in np.ndindex(out.shape):
        h = hs[idx[0]]
        num[idx] = (4 * central(idx, h / 2) - central(idx, h)) / 3
    return num


@given(
    st.sampled_from(MEAN_TYPES),
    st.sampled_from(VAR_TYPES),
    st.sampled_from(LOSS_TYPES),
    st.sampled_from(sorted(PROFILES)),
    nst.schedules(min_T=4, max_T=1000, names=["linear", "cosine"]),
    st.integers(0, 2**16),
)
def test_training_loss_gradients(mean_type, var_type, loss_type, profile, schedule, seed):
    # The exact (erf) CDF: with the references' tanh form, 1 + tanh(g) cancels in the tail
    # and the decoder NLL's value is too noisy to difference (its gradient is checked in
    # test_discretized_gradient_finite_differences where it is well conditioned).
    d, out, x0, noise, t = setup(
        mean_type, var_type, loss_type, seed=seed, profile=profile, schedule=schedule, cdf="erf"
    )
    terms, grad = d.training_losses(out, x0, t, noise)
    D = x0.shape[1]
    hybrid = loss_type in ("mse", "rescaled_mse") and var_type.startswith("learned")

    # In the hybrid loss the mean is detached from the VLB term: the mean channels' gradient
    # is that of the MSE term alone, the variance channels' that of the whole loss.
    def key_for(idx):
        return "mse" if hybrid and idx[1] < D else "loss"

    num = fd_grad(d, out, x0, t, noise, key_for)
    # Relative error < 1e-6 against the row's gradient scale, plus the finite differences'
    # own rounding noise 2u·|loss|/h ≈ 4.4e-13·|loss| (allowed 1e-8·|loss|): a loss of size
    # 10 with a 1e-12 gradient component cannot be differenced more finely than that.
    scale = np.abs(num).max(axis=1, keepdims=True)
    tol = 1e-6 * scale + 1e-8 * np.abs(terms["loss"])[:, None] + 1e-12
    # A decoder (t = 0) whose std is far below the bin width 2/255 (the 1e-20 variance
    # floor of diffusers/lucidrains) is a step function of the mean: no finite difference
    # approximates its derivative there (analytically 0 almost everywhere), so skip it.
    xt = d.q_sample(x0, t, noise)
    logv = d.p_mean_variance(out, xt, t, clip_denoised=False)["log_variance"]
    step = (t == 0) & (np.exp(0.5 * logv).min(axis=1) < 1e-3 / 255)
    ok = ~step[:, None]
    assert np.all((np.abs(grad - num) <= tol) | ~ok), np.max(np.abs(grad - num) - tol)


# --- the variational bound ---------------------------------------------------------------------


def test_prior_bpd_reference_value():
    d = GaussianDiffusion(LIN)
    x0 = np.array([[1.0, -1.0, 1.0]])
    # reference figure: 2.911e-5 bits for x₀ = ±1 under linear T = 1000
    assert d.prior_bpd(x0)[0] == pytest.approx(2.911e-5, rel=2e-4)
    cos = GaussianDiffusion(Schedule.from_name("cosine", 1000))
    assert cos.prior_bpd(x0)[0] == pytest.approx(1.75e-9, rel=3e-3)


def test_calc_bpd_loop_with_the_true_noise():
    """A denoiser that knows the ε used at each step predicts x₀ exactly; then every KL term
    (t > 0) vanishes and L₀ is the decoder NLL of a Gaussian centred on the pixel with
    variance β̃₁: −log(Φ(e/σ) − Φ(−e/σ)), e = 1/255, in closed form (erf CDF)."""
    s = Schedule.from_name("linear", 50)
    d = GaussianDiffusion(s, cdf="erf")
    rng = np.random.default_rng(0)
    x0 = (rng.integers(1, 255, (3, 4)) / 127.5 - 1).astype(np.float64)  # interior pixels
    noise = rng.standard_normal((50, 3, 4))

    def denoiser(x_t, t_orig):
        return noise[t_orig[0]]

    res = d.calc_bpd_loop(denoiser, x0, clip_denoised=False, noise=noise)
    assert res["vb"].shape == (3, 50)
    assert np.all(np.abs(res["vb"][:, 1:]) < 1e-9)  # KL of identical Gaussians, up to rounding
    sigma = math.sqrt(s.posterior_variance[1])
    e = 1 / 255
    nll = -math.log(stats.norm.cdf(e / sigma) - stats.norm.cdf(-e / sigma)) / math.log(2)
    assert np.allclose(res["vb"][:, 0], nll, rtol=1e-9)
    assert np.allclose(res["total_bpd"], res["vb"].sum(1) + res["prior_bpd"], rtol=1e-14)
    assert np.all(res["mse"] < 1e-18) and np.all(res["xstart_mse"] < 1e-18)


def test_calc_bpd_loop_seeded_is_reproducible_and_respaced_calls_original_timesteps():
    s = Schedule.from_name("cosine", 100).respace([0, 10, 50, 99])
    d = GaussianDiffusion(s)
    seen = []

    def denoiser(x_t, t):
        seen.append(int(t[0]))
        return np.zeros_like(x_t)

    x0 = np.zeros((2, 3))
    a = d.calc_bpd_loop(denoiser, x0, seed=5)
    b = d.calc_bpd_loop(denoiser, x0, seed=5)
    assert np.array_equal(a["total_bpd"], b["total_bpd"])
    assert seen[:4] == [99, 50, 10, 0]


def test_gaussian_decoder_bound_on_gaussian_data_is_the_entropy():
    """For data N(0, s²) in 1-D every reverse transition q(x_{t−1}|x_t) is exactly Gaussian,
    with mean from E[ε|x_t] and variance β̃ + coef1²·Var[x₀|x_t] (the oracle's closed form). A
    model with those means and (learned) variances makes the continuous VLB tight: its
    expectation is the differential entropy ½log(2πe s²) plus KL(q(x_T)‖N(0,1)) (≈ 1e-5
    here). With fixed_small variances it is a strict upper bound. n = 4000 examples; the
    bound's per-example sd is ≤ 2.2 nats, so 5 s.e. ≈ 0.17 nats (false-failure ≈ 6e-7)."""
    s2 = 0.09
    s = Schedule.from_name("linear", 200)
    ab, om = s.alphas_cumprod, s.one_minus_alphas_cumprod
    c1, pv = s.posterior_mean_coef1, s.posterior_variance

    def eps(x_t, t):
        return np.sqrt(om[t])[:, None] * x_t / (ab[t] * s2 + om[t])[:, None]

    def exact(x_t, t):  # ε channel, then the exact reverse log-variance
        var_x0 = s2 * om[t] / (ab[t] * s2 + om[t])
        logv = np.log(pv[t] + c1[t] ** 2 * var_x0)
        return np.concatenate([eps(x_t, t), np.broadcast_to(logv[:, None], x_t.shape)], 1)

    x0 = np.random.default_rng(4).normal(0, math.sqrt(s2), (4000, 1))
    entropy = 0.5 * math.log(2 * math.pi * math.e * s2)
    tight = GaussianDiffusion(s, var_type="learned").calc_bpd_loop(
        exact, x0, clip_denoised=False, decoder="gaussian", seed=1
    )
    nats = tight["total_bpd"] * math.log(2)
    se = nats.std() / math.sqrt(nats.size)
    assert abs(nats.mean() - entropy) < 5 * se
    loose = GaussianDiffusion(s).calc_bpd_loop(
        eps, x0, clip_denoised=False, decoder="gaussian", seed=1
    )
    nats2 = loose["total_bpd"] * math.log(2)
    assert nats2.mean() - nats.mean() > 10 * se  # the fixed-variance bound is not tight


def test_gaussian_decoder_gradient_finite_differences():
    s = Schedule.from_name("cosine", 50)
    d = GaussianDiffusion(s, var_type="learned_range", mean_type="x0")
    rng = np.random.default_rng(3)
    x0, x_t = rng.uniform(-1, 1, (3, 2)), rng.standard_normal((3, 2))
    out = np.concatenate([rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, (3, 2))], 1)
    t = np.array([0, 0, 0])

    def f(o):
        return d.vb_terms_bpd(o, x0, x_t, t, clip_denoised=False, decoder="gaussian")["output"]

    g = d.vb_terms_bpd(out, x0, x_t, t, clip_denoised=False, return_grad=True, decoder="gaussian")[
        "grad"
    ]
    # smooth (quadratic in the mean, exp in the log-variance): centred FD error ~1e-9 at
    # h = 1e-6. Each row's output depends on its own row only, so Jᵀ·1 is the gradient.
    num = numerical_vjp(f, out.copy(), np.ones(out.shape[0]), h=1e-6)
    assert np.all(np.abs(g - num) <= 1e-6 * np.maximum(1.0, np.abs(num)))


@pytest.mark.parametrize("cdf", ["tanh", "erf"])
def test_discretized_probabilities_sum_to_one_for_17_levels(cdf):
    # the UCI digits: 17 grey levels v/8 − 1; the bins tile the line, so the probabilities
    # telescope to 1 for any CDF (rounding ≪ 1e-9)
    x = np.arange(17) / 8.0 - 1.0
    for mu, ls in ((0.1, -2.0), (-0.9, -1.0), (0.5, 0.5)):
        lp = discretized_gaussian_log_likelihood(
            x, means=np.full(17, mu), log_scales=np.full(17, ls), cdf=cdf, bin_width=1 / 8
        )
        assert abs(np.exp(lp).sum() - 1.0) < 1e-9
