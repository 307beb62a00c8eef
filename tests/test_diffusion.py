"""GaussianDiffusion: the forward process, posterior and reverse steps against closed forms,
numerical Bayes' rule, independent transcriptions of the papers' equations, and properties
over the public strategies."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from npddpm import GaussianDiffusion, Schedule
from npddpm.diffusion import dynamic_threshold, dynamic_thresholding
from npddpm.testing import strategies as nst

U = np.finfo(np.float64).eps / 2
LIN = Schedule.from_name("linear", 1000)
COS = Schedule.from_name("cosine", 1000)
EDGE_T = np.array([0, 1, 2, 500, 998, 999])


def data(B=6, D=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (B, D)).astype(dtype), rng.standard_normal((B, D)).astype(dtype))


def err_bound(s: Schedule, t: np.ndarray) -> np.ndarray:
    """Relative error bound B_t of the computed 1 − ᾱ_t (see
    tests/test_schedules_properties.py); every coefficient built on 1 − ᾱ inherits it."""
    snr = s.alphas_cumprod[t] / s.one_minus_alphas_cumprod[t]
    return 2 * (t + 1) * U * (1 + snr) + U


# --- forward process -----------------------------------------------------------------------


def test_q_sample_is_eq4():
    x0, eps = data()
    d = GaussianDiffusion(LIN)
    xt = d.q_sample(x0, EDGE_T, eps)
    ab = LIN.alphas_cumprod[EDGE_T][:, None]
    assert np.allclose(xt, np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps, rtol=0, atol=8 * U * 4)
    mean, var, logvar = d.q_mean_variance(x0, EDGE_T)
    assert mean.shape == var.shape == logvar.shape == x0.shape
    assert np.allclose(var, 1 - ab, rtol=1e-12) and np.allclose(np.exp(logvar), var, rtol=1e-14)


def test_q_sample_draws_from_rng_and_requires_noise_or_rng():
    x0, _ = data()
    d = GaussianDiffusion(LIN)
    a = d.q_sample(x0, EDGE_T, rng=np.random.default_rng(3))
    b = d.q_sample(x0, EDGE_T, np.random.default_rng(3).standard_normal(x0.shape))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"noise= .* or rng="):
        d.q_sample(x0, EDGE_T)


@given(nst.schedules(min_T=3, max_T=500), st.data())
def test_transition_kernels_compose(s, data_):
    # q(x_t|x_s) after q(x_s|x_r) is q(x_t|x_r): coefficients multiply and variances add as
    # Var_{t|r} = (ᾱ_t/ᾱ_s)·Var_{s|r} + Var_{t|s}. Evaluated through the public method on a
    # unit input (mean coefficient) — a different code path from the composed formula.
    T = s.num_timesteps
    r = data_.draw(st.integers(-1, T - 3))
    s_ = data_.draw(st.integers(r + 1, T - 2))
    t = data_.draw(st.integers(s_ + 1, T - 1))
    d = GaussianDiffusion(s)
    one = np.ones((1, 1))

    def kernel(a, b):
        m, v, _ = d.q_transition_mean_variance(one, np.array([a]), np.array([b]))
        return m[0, 0], v[0, 0]

    m_ts, v_ts = kernel(s_, t)
    m_sr, v_sr = kernel(r, s_)
    m_tr, v_tr = kernel(r, t)
    assert m_ts * m_sr == pytest.approx(m_tr, rel=64 * U * (t + 2), abs=1e-300)
    assert m_ts**2 * v_sr + v_ts == pytest.approx(v_tr, rel=64 * U * (t + 2))


def test_one_step_transition_and_from_data():
    d = GaussianDiffusion(COS)
    x = data()[0]
    t = np.array([1, 2, 3, 500, 998, 999])
    m, v, _ = d.q_transition_mean_variance(x, t - 1, t)
    assert np.allclose(m, np.sqrt(COS.alphas[t])[:, None] * x, rtol=4 * U)
    assert np.allclose(v, np.broadcast_to(COS.betas[t][:, None], x.shape), rtol=1e-12)
    m0, v0, _ = d.q_transition_mean_variance(x, -1, EDGE_T)
    mq, vq, _ = d.q_mean_variance(x, EDGE_T)
    assert np.allclose(m0, mq, rtol=1e-13) and np.allclose(v0, vq, rtol=1e-12)


# --- posterior -----------------------------------------------------------------------------


@pytest.mark.parametrize("sched", [LIN, COS], ids=["linear", "cosine"])
@pytest.mark.parametrize("t", [1, 2, 10, 500, 999])
def test_posterior_is_bayes_rule_by_quadrature(sched, t):
    """q(x_{t−1}|x_t, x₀) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x₀), integrated numerically with
    scipy.integrate.quad (epsabs 1e-13), not by the closed form."""
    a, b = sched.alphas[t], sched.betas[t]
    x0 = 0.3
    xt = np.sqrt(sched.alphas_cumprod[t]) * x0 - 0.7 * np.sqrt(1 - sched.alphas_cumprod[t])
    ab_prev = sched.alphas_cumprod_prev[t]

    def unnorm(y):
        return stats.norm.pdf(xt, np.sqrt(a) * y, np.sqrt(b)) * stats.norm.pdf(
            y, np.sqrt(ab_prev) * x0, np.sqrt(1 - ab_prev)
        )

    # the integrand is concentrated within a few posterior std of the mean: integrate there
    m_guess = sched.posterior_mean_coef1[t] * x0 + sched.posterior_mean_coef2[t] * xt
    sd = np.sqrt(sched.posterior_variance[t])
    lo, hi = m_guess - 40 * sd, m_guess + 40 * sd
    z = integrate.quad(unnorm, lo, hi, epsabs=0, epsrel=1e-13, limit=200)[0]
    m1 = integrate.quad(lambda y: y * unnorm(y), lo, hi, epsabs=0, epsrel=1e-13, limit=200)[0] / z
    m2 = (
        integrate.quad(
            lambda y: (y - m1) ** 2 * unnorm(y), lo, hi, epsabs=0, epsrel=1e-13, limit=200
        )[0]
        / z
    )
    d = GaussianDiffusion(sched)
    mean, var, _ = d.q_posterior_mean_variance(np.array([[x0]]), np.array([[xt]]), np.array([t]))
    # quadrature relative accuracy ~1e-12 on each moment (epsrel 1e-13, three integrals)
    assert mean[0, 0] == pytest.approx(m1, rel=1e-9, abs=1e-12)
    assert var[0, 0] == pytest.approx(m2, rel=1e-9)


@pytest.mark.parametrize("sched", [LIN, COS], ids=["linear", "cosine"])
def test_ddpm_eq11_equals_posterior_mean_at_true_x0(sched):
    """Ho et al. Eq. 11, μ = (x_t − β/√(1−ᾱ)·ε)/√α, transcribed here, equals the model mean
    for the true ε (which gives the true x₀)."""
    rng = np.random.default_rng(1)
    t = np.arange(1000)
    x0 = rng.uniform(-1, 1, (1000, 4))
    eps = rng.standard_normal((1000, 4))
    d = GaussianDiffusion(sched)
    xt = d.q_sample(x0, t, eps)
    c = lambda a: a[t][:, None]  # noqa: E731
    eq11 = (xt - c(sched.betas) / c(sched.sqrt_one_minus_alphas_cumprod) * eps) / np.sqrt(
        c(sched.alphas)
    )
    mean = d.p_mean_variance(eps, xt, t, clip_denoised=False)["mean"]
    # Both sides are O(1); x̂₀ = √(1/ᾱ)x_t − √(1/ᾱ−1)ε cancels terms of size √(1/ᾱ)|x_t|,
    # so rounding is amplified by √(1/ᾱ) (≤ 2e4 for cosine) and coefficient errors by B_t.
    scale = (np.abs(xt) + np.abs(eps) + 1) * (
        16 * U * c(sched.sqrt_recip_alphas_cumprod) + 8 * c(err_bound(sched, np.arange(1000)))
    )
    assert np.all(np.abs(mean - eq11) <= scale)


def test_posterior_mean_at_t0_is_x0():
    x0, eps = data()
    d = GaussianDiffusion(LIN)
    t = np.zeros(6, dtype=np.int64)
    mean, var, logvar = d.q_posterior_mean_variance(x0, d.q_sample(x0, t, eps), t)
    # coef1[0] = 1 + 1.1e-13 in float64 (1 − (1 − β₀) ≠ β₀ in floating point)
    assert np.allclose(mean, x0, rtol=2e-13) and np.all(var == 0)
    assert np.all(logvar == LIN.posterior_log_variance_clipped[1])


# --- conversions (properties) --------------------------------------------------------------


@given(nst.schedules(max_T=1000), st.data())
def test_parameterisation_round_trips(s, data_):
    t = data_.draw(nst.timesteps(s, min_size=4, max_size=4))
    x0 = data_.draw(nst.x_starts(shape=(4, 3)))
    eps = data_.draw(nst.noises(shape=(4, 3)))
    d = GaussianDiffusion(s)
    xt = d.q_sample(x0, t, eps)
    sr = s.sqrt_recip_alphas_cumprod[t][:, None]
    finite = np.isfinite(sr[:, 0])  # ᾱ = 0 at a terminal β = 1: x̂₀ is undefined there
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _check_round_trips(s, d, t, x0, eps, xt, sr, finite)


def _check_round_trips(s, d, t, x0, eps, xt, sr, finite):
    # errors: x̂₀ recovery cancels terms of size √(1/ᾱ)(|x_t| + |ε|); plus B_t on coefficients
    tol = (32 * U * np.where(np.isfinite(sr), sr, 0) + 8 * err_bound(s, t)[:, None]) * (
        np.abs(xt) + np.abs(eps) + 1
    )
    x0_hat = d.predict_xstart_from_eps(xt, t, eps)
    assert np.all((np.abs(x0_hat - x0) <= tol)[finite])
    v = d.predict_v(x0, t, eps)
    assert np.all((np.abs(d.predict_xstart_from_v(xt, t, v) - x0) <= tol)[finite])
    assert np.all((np.abs(d.predict_eps_from_v(xt, t, v) - eps) <= tol)[finite])
    # score round trip is exact up to two roundings
    sc = d.score_from_eps(eps, t)
    ok = s.one_minus_alphas_cumprod[t] > 0
    assert np.allclose(d.eps_from_score(sc, t)[ok], eps[ok], rtol=4 * U, atol=0)


@given(nst.schedules(min_T=2, max_T=1000), st.data())
def test_eps_from_xstart_inverts_xstart_from_eps(s, data_):
    t = data_.draw(nst.timesteps(s, min_size=3, max_size=3))
    t = np.maximum(t, 1)  # at t = 0, √(1/ᾱ − 1) ≈ √β₀ is small and ε is ill-conditioned
    x0 = data_.draw(nst.x_starts(shape=(3, 2)))
    eps = data_.draw(nst.noises(shape=(3, 2)))
    for profile in ("improved_diffusion", "diffusers"):
        d = GaussianDiffusion(s, profile=profile)
        xt = d.q_sample(x0, t, eps)
        back = d.predict_eps_from_xstart(xt, t, d.predict_xstart_from_eps(xt, t, eps))
        srm1 = s.sqrt_recipm1_alphas_cumprod[t][:, None]
        sr = s.sqrt_recip_alphas_cumprod[t][:, None]
        ok = np.isfinite(sr[:, 0])
        tol = (64 * U * sr / srm1 + 8 * err_bound(s, t)[:, None] / srm1) * (
            np.abs(xt) + np.abs(eps) + 1
        )
        assert np.all((np.abs(back - eps) <= tol)[ok])


def test_xprev_round_trip():
    x0, eps = data()
    t = np.array([1, 2, 3, 500, 998, 999])
    d = GaussianDiffusion(LIN, mean_type="x_prev")
    xt = d.q_sample(x0, t, eps)
    mean, _, _ = d.q_posterior_mean_variance(x0, xt, t)
    assert np.allclose(d.predict_xstart_from_xprev(xt, t, mean), x0, atol=1e-9)
    out = d.p_mean_variance(mean, xt, t, clip_denoised=False)
    assert np.array_equal(out["mean"], mean)


# --- DDIM --------------------------------------------------------------------------------


@given(nst.schedules(min_T=2, respaced=True, max_T=2000))
def test_ddim_eta1_variance_is_posterior_variance(s):
    d = GaussianDiffusion(s)
    t = np.arange(s.num_timesteps)
    sig2 = d.ddim_sigma(t, 1.0) ** 2
    # both are β(1 − ᾱ_prev)/(1 − ᾱ) rearranged: a few roundings times B_t, and the default
    # path's 1 − ᾱ/ᾱ_prev recovers β from a ratio near 1 (absolute error 2u, relative 2u/β)
    tol = (8 * (err_bound(s, t) + np.append(0, err_bound(s, t)[:-1])) + 8 * U / s.betas) * (
        s.posterior_variance
    )
    ok = s.alphas_cumprod > 0
    assert np.all((np.abs(sig2 - s.posterior_variance) <= tol + 8 * U * s.posterior_variance)[ok])


def test_ddim_eta0_is_deterministic_and_inverse_of_reverse():
    """η = 0 with the true ε: x_prev = √ᾱ_prev x₀ + √(1−ᾱ_prev) ε (Song et al. Eq. 12), and
    ddim_reverse_sample maps it back to x_t."""
    x0, eps = data(B=5)
    t = np.array([1, 2, 10, 500, 999])
    d = GaussianDiffusion(LIN)
    xt = d.q_sample(x0, t, eps)
    prev = d.ddim_sample(eps, xt, t, eta=0.0, clip_denoised=False)["sample"]
    ab_prev = LIN.alphas_cumprod_prev[t][:, None]
    expected = np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev) * eps
    assert np.allclose(prev, expected, atol=1e-10)
    back = d.ddim_reverse_sample(eps, prev, t - 1, clip_denoised=False)["sample"]
    assert np.allclose(back, xt, atol=1e-10)


def test_ddim_respaced_uses_previous_retained_step():
    s = LIN.respace(range(0, 1000, 100))
    d = GaussianDiffusion(s)
    x0, eps = data(B=3)
    t = np.array([1, 5, 9])
    xt = d.q_sample(x0, t, eps)
    prev = d.ddim_sample(eps, xt, t, clip_denoised=False)["sample"]
    ab_prev = LIN.alphas_cumprod[(t - 1) * 100][:, None]  # original timesteps 0, 400, 800
    assert np.allclose(prev, np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev) * eps, atol=1e-9)


def test_ddim_eta_validation():
    d = GaussianDiffusion(LIN)
    x0, eps = data()
    with pytest.raises(ValueError, match="eta must be"):
        d.ddim_sample(eps, x0, EDGE_T, eta=-0.1)
    with pytest.raises(ValueError, match="exceed"):
        d.ddim_sample(eps, x0, EDGE_T, eta=50.0, noise=eps)
    with pytest.raises(ValueError, match="eta must be 0"):
        d.ddim_reverse_sample(eps, x0, EDGE_T, eta=0.5)


# --- the reverse step -----------------------------------------------------------------------


def test_p_sample_masks_noise_at_index_zero():
    x0, eps = data()
    z = np.random.default_rng(9).standard_normal(x0.shape)
    d = GaussianDiffusion(LIN, var_type="fixed_large")
    out = d.p_mean_variance(eps, x0, EDGE_T)
    smp = d.p_sample(eps, x0, EDGE_T, z)["sample"]
    expected = out["mean"] + (EDGE_T != 0)[:, None] * np.exp(0.5 * out["log_variance"]) * z
    assert np.allclose(smp, expected, rtol=0, atol=4 * U * 8)
    assert np.array_equal(smp[0], out["mean"][0])


def test_variance_types_and_t0_choices():
    x0, eps = data()
    t = EDGE_T
    pv1 = LIN.posterior_variance[1]
    small = GaussianDiffusion(LIN).p_mean_variance(eps, x0, t)
    assert small["variance"][0, 0] == 0.0 and small["log_variance"][0, 0] == np.log(pv1)
    floor = GaussianDiffusion(LIN, profile="diffusers").p_mean_variance(eps, x0, t)
    assert floor["variance"][0, 0] == 1e-20 and floor["log_variance"][0, 0] == np.log(1e-20)
    large = GaussianDiffusion(LIN, var_type="fixed_large").p_mean_variance(eps, x0, t)
    assert large["variance"][0, 0] == pv1 and large["variance"][3, 0] == LIN.betas[500]
    tf = GaussianDiffusion(LIN, var_type="fixed_large", profile="original_tf")
    tfo = tf.p_mean_variance(eps, x0, t)
    assert tfo["variance"][0, 0] == LIN.betas[0] and tfo["log_variance"][0, 0] == np.log(pv1)
    hf = GaussianDiffusion(LIN, var_type="fixed_large", profile="diffusers").p_mean_variance(
        eps, x0, t
    )
    assert hf["log_variance"][0, 0] == np.log(LIN.betas[0])


def test_learned_variances():
    x0, eps = data()
    t = EDGE_T
    v = np.random.default_rng(2).uniform(-1, 1, x0.shape)
    out = np.concatenate([eps, v], axis=1)
    lr = GaussianDiffusion(LIN, var_type="learned_range").p_mean_variance(out, x0, t)
    frac = (v + 1) / 2
    expected = (
        frac * np.log(LIN.betas[t])[:, None]
        + (1 - frac) * LIN.posterior_log_variance_clipped[t][:, None]
    )
    assert np.allclose(lr["log_variance"], expected, rtol=4 * U)
    lv = GaussianDiffusion(LIN, var_type="learned").p_mean_variance(out, x0, t)
    assert np.array_equal(lv["log_variance"], v)
    hf = GaussianDiffusion(LIN, var_type="learned", profile="diffusers")
    pos = np.concatenate([eps, np.abs(v) + 0.1], axis=1)
    assert np.allclose(hf.p_mean_variance(pos, x0, t)["variance"], np.abs(v) + 0.1, rtol=4 * U)


def test_last_step_noise_by_timestep_value_under_respacing():
    # trailing spacing that skips timestep 0: diffusers adds noise at the last index.
    s = LIN.respace([99, 499, 999])
    x0, eps = data(B=3)
    z = np.ones_like(x0)
    t = np.array([0, 1, 2])
    by_index = GaussianDiffusion(s, var_type="fixed_large").p_sample(eps, x0, t, z)["sample"]
    by_value = GaussianDiffusion(s, var_type="fixed_large", last_step_noise="timestep").p_sample(
        eps, x0, t, z
    )["sample"]
    assert np.array_equal(by_index[1:], by_value[1:])
    assert not np.allclose(by_index[0], by_value[0])


def test_xstart_formula_forms_agree_to_rounding():
    x0, eps = data()
    t = EDGE_T
    a = GaussianDiffusion(COS).predict_xstart_from_eps(x0, t, eps)
    b = GaussianDiffusion(COS, xstart_from_eps="divide").predict_xstart_from_eps(x0, t, eps)
    # both cancel terms of size √(1/ᾱ)·(|x_t|+|ε|) ≤ 2e4·3: a few ulps of that
    assert np.allclose(a, b, rtol=0, atol=16 * U * COS.sqrt_recip_alphas_cumprod[-1] * 4)
    assert not np.array_equal(a, b)


def test_ddim_rederive_choice():
    x0, eps = data()
    t = EDGE_T
    big = 5 * eps  # makes x̂₀ leave [−1, 1] so clipping triggers
    a = GaussianDiffusion(LIN).ddim_sample(big, x0, t)["sample"]
    b = GaussianDiffusion(LIN, profile="diffusers").ddim_sample(big, x0, t)["sample"]
    assert not np.allclose(a, b)
    a2 = GaussianDiffusion(LIN).ddim_sample(big, x0, t, clip_denoised=False)["sample"]
    b2 = GaussianDiffusion(LIN, ddim_rederive_eps=False).ddim_sample(
        big, x0, t, clip_denoised=False
    )["sample"]
    assert np.allclose(a2, b2, atol=1e-9)  # without clipping the two choices coincide


# --- dtypes and arithmetic ----------------------------------------------------------------


def test_float32_inputs_keep_dtype_and_match_float64():
    x0, eps = data(dtype=np.float32)
    d = GaussianDiffusion(COS)
    out32 = d.p_mean_variance(eps, x0, EDGE_T)
    out64 = d.p_mean_variance(eps.astype(np.float64), x0.astype(np.float64), EDGE_T)
    for k in out32:
        assert out32[k].dtype == np.float32
        # float64 arithmetic, then one rounding to float32: ≤ 1/2 ulp of float32
        assert np.array_equal(out32[k], out64[k].astype(np.float32)), k


def test_input_dtype_arithmetic_reproduces_improved_diffusion_float32():
    # improved-diffusion's _extract_into_tensor casts each gathered coefficient to float32
    # and PyTorch computes in float32: transcribed here with explicit NumPy float32 casts.
    x0, eps = data(dtype=np.float32)
    d = GaussianDiffusion(COS, arithmetic="input_dtype")
    t = EDGE_T
    c = lambda a: a[t].astype(np.float32)[:, None]  # noqa: E731
    xt = c(COS.sqrt_alphas_cumprod) * x0 + c(COS.sqrt_one_minus_alphas_cumprod) * eps
    assert np.array_equal(d.q_sample(x0, t, eps), xt)
    x0h = c(COS.sqrt_recip_alphas_cumprod) * xt - c(COS.sqrt_recipm1_alphas_cumprod) * eps
    x0h = np.clip(x0h, -1, 1)
    mean = c(COS.posterior_mean_coef1) * x0h + c(COS.posterior_mean_coef2) * xt
    out = d.p_mean_variance(eps, xt, t)
    assert np.array_equal(out["pred_xstart"], x0h) and np.array_equal(out["mean"], mean)


# --- dynamic thresholding -------------------------------------------------------------------


def test_dynamic_threshold_against_sorted_quantile():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5, 5)) * np.array([0.5, 2.0, 10.0])[:, None, None, None]
    y = dynamic_threshold(x, 0.995, max_value=3.0)
    for i in range(3):
        a = np.sort(np.abs(x[i]).ravel())
        pos = 0.995 * (a.size - 1)
        q = a[int(np.floor(pos))] + (pos - np.floor(pos)) * (
            a[int(np.ceil(pos))] - a[int(np.floor(pos))]
        )
        s = min(max(q, 1.0), 3.0)
        assert np.allclose(y[i], np.clip(x[i], -s, s) / s, rtol=4 * U)
    assert np.array_equal(dynamic_threshold(x, 0.9, 1.0), np.clip(x, -1, 1))
    fn = dynamic_thresholding(0.995, 3.0)
    d = GaussianDiffusion(LIN, mean_type="x0")
    out = d.p_mean_variance(
        x.reshape(3, -1), x.reshape(3, -1), np.array([5, 5, 5]), clip_denoised=False, denoised_fn=fn
    )
    assert np.allclose(out["pred_xstart"], y.reshape(3, -1))


# --- bad input --------------------------------------------------------------------------------


def test_bad_input():
    d = GaussianDiffusion(LIN)
    x0, eps = data()
    with pytest.raises(ValueError, match="noise has shape"):
        d.q_sample(x0, EDGE_T, eps[:, :2])
    with pytest.raises(TypeError, match="noise has dtype"):
        d.q_sample(x0, EDGE_T, eps.astype(np.float32))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 999\]"):
        d.q_sample(x0, EDGE_T + 1, eps)
    with pytest.raises(ValueError, match="t must have shape"):
        d.q_sample(x0, EDGE_T[:3], eps)
    with pytest.raises(TypeError, match="integer"):
        d.q_sample(x0, EDGE_T.astype(float), eps)
    with pytest.raises(ValueError, match="batch axis"):
        d.q_sample(x0[0], 5, eps[0])
    with pytest.raises(TypeError, match="floating"):
        d.q_sample(x0.astype(int), EDGE_T, eps)
    with pytest.raises(ValueError, match="mean_type"):
        GaussianDiffusion(LIN, mean_type="score")
    with pytest.raises(ValueError, match="var_type"):
        GaussianDiffusion(LIN, var_type="big")
    with pytest.raises(ValueError, match="loss_type"):
        GaussianDiffusion(LIN, loss_type="l1")
    with pytest.raises(ValueError, match="unknown profile"):
        GaussianDiffusion(LIN, profile="k_diffusion")
    with pytest.raises(ValueError, match="unknown profile option"):
        GaussianDiffusion(LIN, clip="yes")
    with pytest.raises(ValueError, match="not one of"):
        GaussianDiffusion(LIN, cdf="logistic")
    with pytest.raises(TypeError, match=r"npddpm\.Schedule"):
        GaussianDiffusion(LIN.betas)
    learned = GaussianDiffusion(LIN, var_type="learned")
    with pytest.raises(ValueError, match="twice the channels"):
        learned.p_mean_variance(eps, x0, EDGE_T)


def test_ddim_at_zero_terminal_snr_is_finite():
    """With ᾱ_{T−1} = 0 (Lin et al. 2023) a v-model's DDIM step from T−1 is x_prev =
    √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·x_t (ε = x_t exactly there); the recip form is ∞/∞."""
    from npddpm.schedules import rescale_zero_terminal_snr

    s = Schedule(rescale_zero_terminal_snr(LIN.betas))
    d = GaussianDiffusion(s, mean_type="v")
    rng = np.random.default_rng(0)
    x_t, v = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    t = np.full(3, 999)
    out = d.ddim_sample(v, x_t, t, clip_denoised=False)
    x0 = -v  # x̂₀ = √ᾱ·x_t − √(1−ᾱ)·v with ᾱ = 0
    ab_prev = s.alphas_cumprod[998]
    expected = np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev) * x_t
    assert np.allclose(out["sample"], expected, rtol=1e-12, atol=1e-14)


def test_xstart_from_eps_at_zero_terminal_snr_is_the_exact_limit():
    """At ᾱ = 0, x̂₀ = (x_t − √(1 − ᾱ)·ε)/√ᾱ = (x_t − ε)/0: ±∞ by the sign of x_t − ε (what
    diffusers' divide form gives), not the recip form's ∞ − ∞ = NaN; clipped, ±1 exactly."""
    from npddpm.schedules import rescale_zero_terminal_snr

    s = Schedule(rescale_zero_terminal_snr(LIN.betas))
    x_t = np.array([[0.5, -0.5], [2.0, 0.1]])
    eps = np.array([[0.1, 0.3], [-1.0, 0.4]])
    t = np.full(2, 999)
    with np.errstate(divide="ignore", invalid="ignore"):
        for profile in ("improved_diffusion", "diffusers"):
            d = GaussianDiffusion(s, profile=profile)
            x0 = d.predict_xstart_from_eps(x_t, t, eps)
            assert np.array_equal(x0, np.sign(x_t - eps) * np.inf), (profile, x0)
            out = d.p_mean_variance(eps, x_t, t, clip_denoised=True)
            assert np.array_equal(out["pred_xstart"], np.sign(x_t - eps))


# --- published internals -------------------------------------------------------------------


def test_index_of_inverts_timestep_map_and_names_a_missing_timestep():
    from npddpm.schedules import space_timesteps

    r = LIN.respace(space_timesteps(1000, "ddim10"))
    idx = np.arange(r.num_timesteps)
    np.testing.assert_array_equal(r.index_of(r.timestep_map), idx)
    np.testing.assert_array_equal(
        r.index_of(r.timestep_map[::-1].reshape(2, 5)), idx[::-1].reshape(2, 5)
    )
    assert r.index_of(np.int64(r.timestep_map[3])) == 3
    assert r.index_of(r.timestep_map).dtype == np.int64
    np.testing.assert_array_equal(LIN.index_of(EDGE_T), EDGE_T)
    with pytest.raises(ValueError, match="t=5 is not one of the schedule's original timesteps"):
        r.index_of(np.array([0, 5]))
    with pytest.raises(ValueError, match="t=1000 is not one of"):
        LIN.index_of(np.array([1000]))
    with pytest.raises(TypeError, match="integer array of original timesteps"):
        r.index_of(np.array([0.0]))


def test_respace_keeps_every_option():
    hi = Schedule(LIN.betas, precision="high")
    d = GaussianDiffusion(
        hi,
        mean_type="v",
        var_type="learned_range",
        loss_type="rescaled_kl",
        profile="diffusers",
        t0_log_variance="floor",
    )
    r = d.respace([0, 250, 500, 999])
    assert (r.mean_type, r.var_type, r.loss_type) == ("v", "learned_range", "rescaled_kl")
    assert r.profile == d.profile and r.profile.t0_log_variance == "floor"
    assert r.schedule == hi.respace([0, 250, 500, 999]) and r.schedule.precision == "high"
    np.testing.assert_array_equal(r.model_timesteps(np.arange(4)), [0, 250, 500, 999])


@pytest.mark.parametrize("var_type", ["fixed_small", "fixed_large", "learned", "learned_range"])
@pytest.mark.parametrize("mean_type", ["eps", "x0", "v", "x_prev"])
def test_reverse_step_fields_equal_p_mean_variance(mean_type, var_type):
    from npddpm.diffusion import ReverseStep

    d = GaussianDiffusion(COS, mean_type=mean_type, var_type=var_type)
    x0, x_t = data(dtype=np.float32)
    C = 2 * x0.shape[1] if var_type.startswith("learned") else x0.shape[1]
    out = np.random.default_rng(3).uniform(-1, 1, (x0.shape[0], C)).astype(np.float32)
    r = d.reverse(out, x_t, EDGE_T, clip_denoised=True)
    assert isinstance(r, ReverseStep) and r.dtype == np.float64 and r.x_t.dtype == np.float64
    pm = d.p_mean_variance(out, x_t, EDGE_T, clip_denoised=True)
    for k in ("mean", "variance", "log_variance", "pred_xstart"):
        np.testing.assert_array_equal(getattr(r, k).astype(np.float32), pm[k])
    np.testing.assert_array_equal(r.mean_part, out[:, : x0.shape[1]].astype(np.float64))
    assert (r.var_values is None) == (not var_type.startswith("learned"))
    np.testing.assert_array_equal(r.pred_xstart, np.clip(r.raw_xstart, -1, 1))


def test_published_tables_helpers_and_literals():
    from typing import get_args

    from npddpm.diffusion import LOSS_TYPES, MEAN_TYPES, VAR_TYPES, LossType, MeanType, VarType

    assert MEAN_TYPES == get_args(MeanType) and VAR_TYPES == get_args(VarType)
    assert LOSS_TYPES == get_args(LossType)
    from npddpm.kernels import BACKENDS
    from npddpm.typing import BackendName

    assert BACKENDS == get_args(BackendName)
    d = GaussianDiffusion(LIN, var_type="fixed_large", profile="original_tf")
    tab = d.tables
    for arr in tab:
        assert arr.shape == (1000,) and arr.dtype == np.float64 and not arr.flags.writeable
    np.testing.assert_array_equal(tab.log_betas, np.log(LIN.betas))
    np.testing.assert_array_equal(tab.small_var, LIN.posterior_variance)
    t = np.array([0, 3, 999])
    c = d.coef(LIN.sqrt_alphas_cumprod, t, 4, np.dtype(np.float32))
    assert c.shape == (3, 1, 1, 1) and c.dtype == np.float32
    assert d.work_dtype(np.zeros((1, 1), np.float32)) == np.float64
    assert (
        GaussianDiffusion(LIN, arithmetic="input_dtype").work_dtype(np.zeros((1, 1), np.float32))
        == np.float32
    )
    np.testing.assert_array_equal(d.nonzero_mask(t, 2, np.dtype(np.float64)), [[0.0], [1.0], [1.0]])
    x0, x_t = data(B=3)
    np.testing.assert_array_equal(
        d.posterior_mean(x0, x_t, t, np.dtype(np.float64)),
        d.q_posterior_mean_variance(x0, x_t, t)[0],
    )
    assert d.check_eta(1, t) == 1.0
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        d.check_eta(-0.5, t)


def test_the_one_timestep_and_batch_validator():
    from npddpm._checks import check_batch, check_timesteps

    np.testing.assert_array_equal(check_timesteps(np.int32(4), 3, 10), [4, 4, 4])
    assert check_timesteps(np.array([1, 2], np.uint8), 2, 10).dtype == np.int64
    with pytest.raises(TypeError, match=r"t must be an integer array \(one timestep per row\)"):
        check_timesteps(np.array([1.0]), 1, 10)
    with pytest.raises(TypeError, match="integer array"):
        check_timesteps(np.array([True]), 1, 10)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\), one timestep per batch row"):
        check_timesteps(np.array([1, 2, 3]), 2, 10)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\] \(indices into the schedule\)"):
        check_timesteps(np.array([0, 10]), 2, 10)
    with pytest.raises(ValueError, match="indices into the respaced schedule"):
        GaussianDiffusion(LIN.respace([0, 500])).check_t(np.array([2]), 1)
    x = np.zeros((2, 3))
    assert check_batch(x, "x") is x
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        check_batch(x.astype(int), "x")
    with pytest.raises(ValueError, match=r"x must have a batch axis first.*pass x\[None\]"):
        check_batch(np.zeros(3), "x")
    with pytest.raises(ValueError, match=r"noise has shape \(2, 2\) but the data has \(2, 3\)"):
        check_batch(np.zeros((2, 2)), "noise", x)
    with pytest.raises(TypeError, match="noise has dtype float32 but the data has float64"):
        check_batch(np.zeros((2, 3), np.float32), "noise", x)


def test_denoiser_protocol_accepts_plain_callables():
    from npddpm.analytic import GaussianMixture
    from npddpm.typing import Denoiser

    def net(x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
        return x_t

    d = GaussianDiffusion(LIN)
    dens: list[Denoiser] = [net, GaussianMixture([1.0], np.zeros((1, 2)), [1.0]).denoiser(d)]
    x = np.zeros((2, 2))
    for den in dens:
        assert den(x, np.array([0, 1])).shape == x.shape


def test_parameterisation_round_trips_and_matches_the_methods():
    from npddpm import parameterisation as par

    d = GaussianDiffusion(COS, profile="diffusers")
    x0, eps = data()
    w = np.dtype(np.float64)
    x_t = d.q_sample(x0, EDGE_T, eps)
    x0_hat = par.xstart_from_eps(COS, x_t, EDGE_T, eps, w, form="divide")
    np.testing.assert_array_equal(x0_hat, d.predict_xstart_from_eps(x_t, EDGE_T, eps))
    k = slice(0, -1)  # not t = 999, where ᾱ ≈ 0 amplifies the rounding of x̂₀
    back = par.eps_from_xstart(COS, x_t[k], EDGE_T[k], x0_hat[k], w)
    np.testing.assert_allclose(back, eps[k], rtol=1e-6, atol=1e-9)
    v = par.v_from_xstart_eps(COS, x0, EDGE_T, eps, w)
    np.testing.assert_array_equal(v, d.predict_v(x0, EDGE_T, eps))
    np.testing.assert_allclose(par.xstart_from_v(COS, x_t, EDGE_T, v, w), x0, atol=1e-12)
    np.testing.assert_allclose(par.eps_from_v(COS, x_t, EDGE_T, v, w), eps, atol=1e-12)
    score = par.score_from_eps(COS, eps, EDGE_T, w)
    np.testing.assert_allclose(par.eps_from_score(COS, score, EDGE_T, w), eps, rtol=1e-15)
    xprev = d.posterior_mean(x0, x_t, EDGE_T, w)
    np.testing.assert_allclose(
        par.xstart_from_xprev(COS, x_t, EDGE_T, xprev, w)[1:], x0[1:], rtol=1e-9, atol=1e-9
    )
