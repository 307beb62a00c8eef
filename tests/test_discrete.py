"""The grid-aware reverse process: its posterior mean against a brute-force Bayes computation
and its limits, and the wrapper's parameterisation round trips."""

from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm import GaussianDiffusion, Schedule
from npddpm.discrete import grid_denoiser, grid_posterior_mean


def decimal_posterior_mean(x, a, x0, grid, tau):
    # 40-digit Decimal: w_g ∝ exp(−(x − √a g)²/(2(1 − a)) − (g − x0)²/(2τ²)), no shifting.
    getcontext().prec = 40
    x, a, x0, tau = (Decimal(repr(float(v))) for v in (x, a, x0, tau))
    num = den = Decimal(0)
    for g in grid:
        g = Decimal(repr(float(g)))
        e = -((x - a.sqrt() * g) ** 2) / (2 * (1 - a)) - (g - x0) ** 2 / (2 * tau * tau)
        w = e.exp()
        num += w * g
        den += w
    return float(num / den)


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(-1.5, 1.5),
    a=st.floats(0.05, 0.9999),
    x0=st.floats(-1, 1),
    tau=st.floats(0.05, 2.0),
    levels=st.sampled_from([2, 5, 17]),
)
def test_posterior_mean_matches_decimal_bayes(x, a, x0, tau, levels):
    # The log-sum-exp shift makes the float64 result relative-accurate; 1e-12 absolute on a
    # value in [−1, 1] is ~5000 ulp of slack for the 17-term sum and the exp arguments
    # (which reach ~1e3 at a → 1, where cancellation in the exponent costs ~1e-13).
    grid = np.linspace(-1, 1, levels)
    got = grid_posterior_mean(
        np.array([[x]]), np.array([a]), np.array([[x0]]), levels=levels, tau=tau
    )[0, 0]
    assert abs(got - decimal_posterior_mean(x, a, x0, grid, tau)) < 1e-12


def test_limits():
    rng = np.random.default_rng(0)
    grid = np.linspace(-1, 1, 17)
    x0 = rng.choice(grid, size=(50, 8))
    # small noise (σ = 1e-3 ≪ spacing/2 = 0.0625): the nearest level, whatever the network
    a = np.full(50, 1 - 1e-6)
    x_t = np.sqrt(a)[:, None] * x0 + 1e-3 * rng.standard_normal(x0.shape)
    got = grid_posterior_mean(x_t, a, rng.uniform(-1, 1, x0.shape), levels=17)
    np.testing.assert_allclose(got, x0, atol=1e-12)
    # no signal (ᾱ = 1e-20): the grid-restricted Gaussian around x̂₀, whatever x_t; the
    # likelihood's x_t-dependent part √ᾱ·g·x_t/(1 − ᾱ) is ≤ 3e-10, so 1e-9 bounds its effect
    a0 = np.full(50, 1e-20)
    xh = rng.uniform(-1, 1, x0.shape)
    got = grid_posterior_mean(rng.standard_normal(x0.shape), a0, xh, levels=17, tau=0.3)
    w = np.exp(-((grid - xh[..., None]) ** 2) / (2 * 0.3**2))
    np.testing.assert_allclose(got, (w @ grid) / w.sum(-1), atol=1e-9)
    assert got.min() >= -1 and got.max() <= 1


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v"])
def test_wrapper_round_trip_on_grid_data(mean_type):
    # A perfect network (it returns the true x₀ in its parameterisation) on grid data: the
    # grid posterior is then x₀ itself at small t, so the wrapper returns the network's output
    # unchanged there (float64 rounding of the conversions: 1e-9 relative at ᾱ ≈ 1 − 1e-4,
    # where ε carries a factor 1/√(1 − ᾱ) = 100), and the learned-variance channel untouched.
    d = GaussianDiffusion(Schedule.from_name("cosine", 1000), mean_type=mean_type)
    rng = np.random.default_rng(1)
    grid = np.linspace(-1, 1, 17)
    x0 = rng.choice(grid, size=(6, 1, 4, 4))
    t = np.array([0, 1, 2, 0, 1, 2])
    eps = rng.standard_normal(x0.shape)
    x_t = d.q_sample(x0, t, noise=eps)
    ab = d.schedule.alphas_cumprod[t][:, None, None, None]
    v = np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0
    mean = {"eps": eps, "x0": x0, "v": v}[mean_type]
    extra = rng.standard_normal(x0.shape)

    def net(x, tt):
        return np.concatenate([mean, extra], axis=1)

    out = grid_denoiser(d, net, levels=17)(x_t, t)
    np.testing.assert_allclose(out[:, :1], mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(out[:, 1:], extra)


def test_wrapper_uses_original_timesteps_of_a_respaced_diffusion():
    # A respaced diffusion hands the denoiser original timesteps; ᾱ must be looked up by them.
    base = Schedule.from_name("linear", 1000)
    d = GaussianDiffusion(base.respace([0, 500, 999]))
    x0 = np.full((1, 1, 2, 2), 0.5)
    eps = np.zeros_like(x0)
    a = base.alphas_cumprod[500]
    x_t = np.sqrt(a) * x0

    # τ = 1e-3 pins x̃₀ to the level 0.5 = x̂₀, so ε' = (x_t − √ᾱ·0.5)/√(1 − ᾱ) is 0 exactly
    # when ᾱ is the one of timestep 500, and O(0.1) for any other ᾱ.
    out = grid_denoiser(d, lambda x, t: eps, levels=5, tau=1e-3)(x_t, np.array([500]))
    np.testing.assert_allclose(out, 0.0, atol=1e-12)


def test_bad_input():
    d = GaussianDiffusion(Schedule.from_name("cosine", 10))
    with pytest.raises(ValueError, match="levels"):
        grid_denoiser(d, lambda x, t: x, levels=1)
    with pytest.raises(ValueError, match="low < high"):
        grid_denoiser(d, lambda x, t: x, levels=3, low=1.0, high=-1.0)
    with pytest.raises(ValueError, match="x_prev"):
        grid_denoiser(GaussianDiffusion(d.schedule, mean_type="x_prev"), lambda x, t: x, levels=3)
    with pytest.raises(TypeError, match="GaussianDiffusion"):
        grid_denoiser(object(), lambda x, t: x, levels=3)
    with pytest.raises(ValueError, match="tau"):
        grid_posterior_mean(np.zeros((1, 1)), np.array([0.5]), np.zeros((1, 1)), levels=3, tau=0)
    with pytest.raises(ValueError, match="alpha_bar"):
        grid_posterior_mean(np.zeros((1, 1)), np.array([1.0]), np.zeros((1, 1)), levels=3)


def test_wrapper_rejects_a_timestep_outside_the_respaced_map():
    d = GaussianDiffusion(Schedule.from_name("linear", 1000).respace([0, 500, 999]))
    wrapped = grid_denoiser(d, lambda x, t: np.zeros_like(x), levels=5)
    with pytest.raises(ValueError, match="t=400 is not one of the schedule's original timesteps"):
        wrapped(np.zeros((1, 2)), np.array([400]))
