"""The ODE/SDE solvers, the continuous-time paths and the exact flow map.

Each identity is checked against a different formula (DDIM's, DDPM's, the velocity form), the
paths against closed forms or quadrature, the flow map against the marginals it must carry
and against its own composition, and the stochastic solvers' exact moments against DDPM's
moment recursion and Monte Carlo.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

from npddpm import GaussianDiffusion, Schedule, paths
from npddpm import samplers as S
from npddpm.analytic import GaussianMixture, flow_map, sampler_moments, solver_moments
from npddpm.schedules import space_timesteps
from npddpm.spacing import noise_levels

LINEAR = Schedule.from_name("linear", 1000)
COSINE = Schedule.from_name("cosine", 1000)
GAUSS = GaussianMixture([1.0], [[0.5, -1.0]], [[[2.0, 0.3], [0.3, 0.5]]])
MIX = GaussianMixture([0.3, 0.7], [[1.0, -1.0], [-1.0, 0.5]], [[0.2, 0.1], [0.3, 0.05]])
# float64 rounding of a 20-step chain of O(1) values: well under 1e-13 (seen: ≤ 6e-15)
ROUND = 1e-13


def _chain(schedule, n=20):
    chain = sorted(space_timesteps(schedule.num_timesteps, f"ddim{n}"))
    return chain, np.array(chain[::-1], dtype=np.float64)


X = np.random.default_rng(0).normal(size=(6, 2))


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
@pytest.mark.parametrize("mean_type", ["eps", "v", "x0"])
@pytest.mark.parametrize(
    "solver,kw",
    [
        (S.euler, {}),
        (S.dpm_solver, {"order": 1}),
        (S.dpm_solver, {"order": 1, "algorithm": "dpmsolver"}),
        (S.dpm_solver, {"order": 1, "method": "singlestep"}),
        (S.unipc, {"order": 1, "corrector": False}),
        (S.lms, {"order": 1}),
    ],
    ids=["euler", "dpm++1", "dpm1", "dpm++1S", "unip1", "lms1"],
)
def test_first_order_solvers_are_ddim(schedule, mean_type, solver, kw):
    """Euler in σ̃, DPM-Solver(++)-1, UniP-1 and LMS-1 on DDIM's chain equal DDIM(η = 0)."""
    chain, times = _chain(schedule)
    d = GaussianDiffusion(schedule.respace(chain), mean_type=mean_type)
    ref = S.ddim(d, GAUSS.denoiser(d), X, clip_denoised=False)
    full = GaussianDiffusion(schedule, mean_type=mean_type)
    out = solver(full, GAUSS.denoiser(full), X, spacing=times, **kw)
    assert np.max(np.abs(out - ref)) <= ROUND


@pytest.mark.parametrize(
    "solver,kw",
    [(S.euler_ancestral, {}), (S.dpm_solver, {"order": 1, "algorithm": "sde-dpmsolver++"})],
    ids=["euler_ancestral", "sde-dpm++1"],
)
def test_ancestral_solvers_are_ddpm_with_the_same_noise(solver, kw):
    chain, times = _chain(LINEAR)
    d = GaussianDiffusion(LINEAR.respace(chain))
    ref = S.ddpm(d, GAUSS.denoiser(d), X, clip_denoised=False, seed=3)
    full = GaussianDiffusion(LINEAR)
    out = solver(full, GAUSS.denoiser(full), X, spacing=times, seed=3, **kw)
    assert np.max(np.abs(out - ref)) <= ROUND


def test_flow_euler_is_ddim_on_the_flow_path():
    """The velocity form x + Δt·(ε̂ − x̂₀) equals the exponential-integrator form of DDIM."""
    p = paths.FlowMatching()
    oracle = MIX.denoiser(p, prediction="flow")
    for shift in (None, 3.0):
        a = S.flow_euler(p, oracle, X, steps=12, shift=shift)
        times = noise_levels(p, 12, "time_uniform")
        if shift is not None:
            times = paths.flow_shift(times, shift)
        b = S.dpm_solver(p, oracle, X, spacing=times, order=1, prediction="flow")
        assert np.max(np.abs(a - b)) <= ROUND


@given(st.floats(1e-6, 1 - 1e-6), st.floats(0.1, 10.0))
def test_a_shift_is_a_constant_offset_of_lambda(sigma, shift):
    p = paths.FlowMatching(t_min=1e-9)
    moved = paths.flow_shift(sigma, shift)
    # λ = log((1 − σ)/σ) moves by −log s exactly; float64 rounding of logs of O(1e6) ratios
    assert abs(float(p.lam(moved) - p.lam(sigma)) + math.log(shift)) <= 1e-9
    assert abs(float(paths.dynamic_shift(sigma, math.log(shift)) - moved)) <= 1e-12


def test_exponential_and_log_snr_spacings_coincide():
    for p in (paths.VPLinear(), paths.DiscreteVP(COSINE), paths.VE()):
        a, b = noise_levels(p, 17, "exponential"), noise_levels(p, 17, "log_snr")
        assert np.allclose(a, b, rtol=1e-13, atol=0)


def test_karras_levels_are_the_karras_formula():
    p = paths.VE(0.002, 80.0)
    t = noise_levels(p, 10, "karras", rho=7.0)
    ramp = np.linspace(0, 1, 11)
    want = (80.0 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert np.allclose(t, want, rtol=1e-12)


# --------------------------------------------------------------------------------- paths


ALL_PATHS = [
    paths.DiscreteVP(LINEAR, "log_alpha"),
    paths.DiscreteVP(COSINE, "log_sigma"),
    paths.DiscreteVP(LINEAR.respace(range(0, 1000, 37)), "sigma"),
    paths.VPLinear(),
    paths.VPCosine(),
    paths.VE(),
    paths.FlowMatching(),
    paths.GaussianPath(lambda t: np.cos(t), lambda t: 2 * np.sin(t), 0.01, 1.5),
]


@pytest.mark.parametrize("p", ALL_PATHS, ids=repr)
def test_t_of_lam_inverts_lam(p):
    t = np.linspace(p.t_min, p.t_max if p.alpha(p.t_max) > 0 else p.t_max - 1e-3, 101)
    back = p.t_of_lam(p.lam(t))
    assert np.allclose(back, t, rtol=1e-9, atol=1e-9 * max(1.0, p.t_max))
    assert np.all(np.diff(p.lam(t)) < 0)


@pytest.mark.parametrize("interp", ["log_alpha", "log_sigma", "sigma"])
def test_discrete_path_is_the_table_at_the_knots(interp):
    s = COSINE.respace(range(0, 1000, 10))
    p = paths.DiscreteVP(s, interp)
    t = s.timestep_map.astype(float)
    assert np.allclose(p.alpha(t) ** 2, s.alphas_cumprod, rtol=1e-13)
    assert np.allclose(p.sigma(t) ** 2, s.one_minus_alphas_cumprod, rtol=1e-12)


def test_vp_linear_alpha_is_the_integral_of_beta():
    p = paths.VPLinear(0.1, 20.0)
    for t in (0.01, 0.3, 1.0):
        integral = integrate.quad(lambda u: 0.1 + u * 19.9, 0.0, t)[0]
        assert abs(math.log(float(p.alpha(t))) + 0.5 * integral) <= 1e-12


@pytest.mark.parametrize("p", [paths.VPLinear(), paths.VPCosine(), paths.FlowMatching()], ids=repr)
def test_closed_form_derivatives_match_centred_differences(p):
    t = np.linspace(p.t_min + 0.01, p.t_max - 0.01, 9)
    h = 1e-6
    for f, df in ((p.alpha, p.dalpha), (p.sigma, p.dsigma)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        assert np.allclose(df(t), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("prediction", paths.PREDICTIONS)
def test_prediction_conversions_round_trip(prediction):
    rng = np.random.default_rng(1)
    x0, eps = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    a, s, da, ds = 0.7, 1.9, -0.4, 1.3  # a general path: α² + σ² ≠ 1
    x = a * x0 + s * eps
    out = paths.from_x0_eps(prediction, x0, eps, a, s, da, ds)
    got0, gote = paths.to_x0_eps(prediction, out, x, a, s, da, ds)
    assert np.allclose(got0, x0, atol=1e-13) and np.allclose(gote, eps, atol=1e-13)


# ----------------------------------------------------------------------------- flow map


@pytest.mark.parametrize("p", [paths.VPLinear(), paths.FlowMatching(), paths.DiscreteVP(COSINE)],
                         ids=repr)
def test_gaussian_flow_map_carries_marginal_to_marginal(p):
    t0, t1 = p.t_max, p.t_min + 0.3 * (p.t_max - p.t_min)
    # the map is affine: read off its matrix and offset
    c = flow_map(GAUSS, p, np.zeros((1, 2)), t0, t1)[0]
    M = flow_map(GAUSS, p, np.eye(2), t0, t1) - c
    a0, s0, a1, s1 = (float(v) for v in (p.alpha(t0), p.sigma(t0), p.alpha(t1), p.sigma(t1)))
    cov = GAUSS.covariance()
    V0, V1 = a0**2 * cov + s0**2 * np.eye(2), a1**2 * cov + s1**2 * np.eye(2)
    assert np.allclose(M.T @ V0 @ M, V1, atol=1e-12)
    assert np.allclose(a0 * GAUSS.mean() @ M + c, a1 * GAUSS.mean(), atol=1e-12)


def test_mixture_reference_solve_is_within_its_stated_error():
    twin = GaussianMixture([0.5, 0.5], [[0.5, -1.0]] * 2, [[[2.0, 0.3], [0.3, 0.5]]] * 2)
    for p in (paths.VPLinear(), paths.FlowMatching()):
        exact = flow_map(GAUSS, p, X, p.t_max, p.t_min)
        got, err = flow_map(twin, p, X, p.t_max, p.t_min, return_error=True)
        assert np.max(np.abs(got - exact)) <= err <= 1e-6


def test_mixture_flow_map_composes():
    p = paths.VPLinear()
    direct, e1 = flow_map(MIX, p, X, 1.0, 1e-3, return_error=True)
    mid, e2 = flow_map(MIX, p, X, 1.0, 0.4, return_error=True)
    two, e3 = flow_map(MIX, p, mid, 0.4, 1e-3, return_error=True)
    assert np.max(np.abs(direct - two)) <= 10 * (e1 + e2 + e3)


# ------------------------------------------------------------------- stochastic solvers


@pytest.mark.parametrize(
    "solver,kw",
    [(S.euler_ancestral, {}), (S.dpm_solver, {"order": 1, "algorithm": "sde-dpmsolver++"})],
    ids=["euler_ancestral", "sde-dpm++1"],
)
def test_solver_moments_equal_ddpm_moments(solver, kw):
    chain, times = _chain(LINEAR)
    d = GaussianDiffusion(LINEAR.respace(chain))
    ref = sampler_moments(GAUSS, d, sampler="ddpm")
    got = solver_moments(solver, GaussianDiffusion(LINEAR), GAUSS, spacing=times, **kw)
    assert np.allclose(got.mean, ref.mean, atol=1e-13)
    assert np.allclose(got.covariance, ref.covariance, atol=1e-13)


@pytest.mark.parametrize(
    "solver,kw",
    [
        (S.heun, {"s_churn": 40.0, "spacing": "karras"}),
        (S.euler_ancestral, {"eta": 0.5}),
        (S.dpm_solver, {"order": 2, "algorithm": "sde-dpmsolver++"}),
    ],
    ids=["heun_churn", "euler_ancestral_eta0.5", "sde-dpm++2M"],
)
def test_solver_moments_agree_with_monte_carlo(solver, kw):
    """n = 40,000 samples; each of the 2 means and 3 covariance entries is compared at 5
    standard errors, so P(false failure) ≤ 5 × 5.7e-7 ≈ 3e-6 (normal approximation). A moment
    off by 0.1 (≈ 6 standard errors of a variance near 2) fails."""
    p = paths.VE(0.002, 80.0)
    m = solver_moments(solver, p, GAUSS, steps=18, **kw)
    n = 40_000
    xs = solver(p, GAUSS.denoiser(p), (n, 2), steps=18, seed=11, **kw)
    var = np.diag(m.covariance)
    assert np.all(np.abs(xs.mean(0) - m.mean) <= 5 * np.sqrt(var / n))
    emp = np.cov(xs.T)
    # standard error of a sample covariance entry: √((Σ_ii Σ_jj + Σ_ij²)/n)
    se = np.sqrt((np.outer(var, var) + m.covariance**2) / n)
    assert np.all(np.abs(emp - m.covariance) <= 5 * se)


# ----------------------------------------------------------------------------- bad input


def test_solvers_refuse_bad_input_with_the_argument_named():
    p = paths.VPLinear()
    o = GAUSS.denoiser(p)
    with pytest.raises(ValueError, match="backend"):
        S.euler(p, o, X, steps=4, backend="cpu")
    with pytest.raises(ValueError, match="spacing"):
        S.euler(p, o, X, steps=4, spacing="nope")
    with pytest.raises(ValueError, match="strictly"):
        S.euler(p, o, X, spacing=np.array([0.5, 0.7]))
    with pytest.raises(ValueError, match="order"):
        S.dpm_solver(p, o, X, steps=4, order=4)
    with pytest.raises(ValueError, match="σ̃"):
        S.euler(paths.FlowMatching(), MIX.denoiser(paths.FlowMatching()), X, steps=4)
    with pytest.raises(ValueError, match="noise must have shape"):
        S.euler_ancestral(p, o, X, steps=4, noise=np.zeros((3, 6, 2)))
    with pytest.raises(ValueError, match="prediction"):
        S.heun(p, o, X, steps=4, prediction="score")
    with pytest.raises(TypeError, match="denoiser"):
        S.unipc(p, None, X, steps=4)
