"""Unit tests of npddpm.schedules against published formulas and pinned values."""

import math

import numpy as np
import pytest

from npddpm import Schedule
from npddpm.schedules import (
    betas_for_alpha_bar,
    get_named_beta_schedule,
    inference_timesteps,
    rescale_zero_terminal_snr,
    schedule_names,
)

U = np.finfo(np.float64).eps / 2  # unit roundoff 2^-53


# --- named schedules against their published definitions ------------------------------


def test_linear_is_scaled_by_1000_over_T():
    # improved-diffusion: linspace(1e-4·1000/T, 0.02·1000/T, T). At T=4000 the end is 0.005.
    b = get_named_beta_schedule("linear", 4000)
    assert b[0] == 0.25e-4 and b[-1] == 0.005
    assert np.allclose(np.diff(b), (0.005 - 0.25e-4) / 3999, rtol=1e-9, atol=0)


def test_linear_unscaled_matches_tf_and_diffusers_for_any_T():
    b = get_named_beta_schedule("linear_unscaled", 10)
    assert b[0] == 1e-4 and b[-1] == 0.02 and b.size == 10


def test_quadratic_and_scaled_linear_are_squares_of_a_line():
    b = get_named_beta_schedule("scaled_linear", 50, beta_start=0.00085, beta_end=0.012)
    r = np.sqrt(b)
    # √β is affine in the index: second differences vanish to float64 rounding (|√β| < 0.11).
    assert np.max(np.abs(np.diff(r, 2))) < 1e-16 * 8
    assert np.array_equal(
        b, get_named_beta_schedule("quadratic", 50, beta_start=0.00085, beta_end=0.012)
    )


def test_cosine_alpha_bar_closed_form_at_unclipped_steps():
    # Nichol & Dhariwal Eq. 17: ᾱ_t = f((t+1)/T)/f(0), f(u) = cos²((u+s)/(1+s)·π/2), except
    # where β was clipped to 0.999. Computed here with math.fsum of logs, independently.
    T = 1000
    s = Schedule.from_name("cosine", T)
    f = [math.cos((i / T + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(T + 1)]
    unclipped = s.betas < 0.999
    assert unclipped.sum() == T - 1 and not unclipped[-1]  # exactly one clipped β, the last
    expected = np.array([f[i + 1] / f[0] for i in range(T)])
    # cumprod of T ratios: relative error ≤ 2(t+1)u from the product, plus the ratio roundings.
    rel = np.abs(s.alphas_cumprod[:-1] - expected[:-1]) / expected[:-1]
    assert np.all(rel <= 4 * (np.arange(T - 1) + 2) * U)
    assert s.betas[0] == pytest.approx(4.12842e-5, rel=1e-5)


@pytest.mark.parametrize("T, n_clipped", [(1000, 1), (4000, 1)])
def test_cosine_clips_exactly_one_beta(T, n_clipped):
    assert int(np.sum(get_named_beta_schedule("cosine", T) == 0.999)) == n_clipped


def test_cosine_min_beta_and_max_beta():
    b = get_named_beta_schedule("cosine", 100, min_beta=1e-3, max_beta=0.5)
    assert b.min() >= 1e-3 and b.max() == 0.5


def test_sigmoid_beta_matches_diffusers_formula():
    T = 7
    x = np.linspace(-6, 6, T)
    expected = (0.02 - 1e-4) / (1 + np.exp(-x)) + 1e-4
    assert np.allclose(get_named_beta_schedule("sigmoid_beta", T), expected, rtol=4 * U)
    assert np.array_equal(
        get_named_beta_schedule("sigmoid", T), get_named_beta_schedule("sigmoid_beta", T)
    )


def test_sigmoid_alpha_bar_is_a_sigmoid_in_alpha_bar_space():
    # Jabri et al. 2022: ᾱ(u) ∝ −σ((u(end−start)+start)/τ) + σ(end/τ), normalised to ᾱ(0)=1.
    T = 200
    s = Schedule.from_name("sigmoid_alpha_bar", T)

    def sig(z):
        return 1 / (1 + math.exp(-z))

    def ab(u):
        return (sig(3) - sig(-3 + 6 * u)) / (sig(3) - sig(-3))

    expected = np.array([ab((i + 1) / T) for i in range(T - 1)])
    assert np.allclose(s.alphas_cumprod[:-1], expected, rtol=1e-12)
    assert s.betas[-1] == 0.999  # ᾱ(1) = 0 would need β = 1; clipped as lucidrains does


def test_tf_schedules():
    T = 100
    w10 = get_named_beta_schedule("warmup10", T)
    assert np.array_equal(w10[:10], np.linspace(1e-4, 0.02, 10)) and np.all(w10[10:] == 0.02)
    w50 = get_named_beta_schedule("warmup50", T)
    assert np.array_equal(w50[:50], np.linspace(1e-4, 0.02, 50)) and np.all(w50[50:] == 0.02)
    assert np.all(get_named_beta_schedule("const", T) == 0.02)
    jsd = get_named_beta_schedule("jsd", T)
    assert np.allclose(jsd, 1 / np.arange(T, 0, -1), rtol=2 * U) and jsd[-1] == 1.0
    assert Schedule(jsd).alphas_cumprod[-1] == 0.0


def test_laplace_and_exp_follow_their_alpha_bar():
    T = 50
    s = Schedule.from_name("exp", T)
    assert np.allclose(s.alphas_cumprod, np.exp(-12 * np.arange(1, T + 1) / T), rtol=1e-13)
    lap = Schedule.from_name("laplace", T)
    assert np.all(np.diff(lap.alphas_cumprod) < 0)


def test_betas_for_alpha_bar_clips():
    b = betas_for_alpha_bar(4, lambda u: 1 - u, max_beta=0.9)
    # ratios 3/4, 2/3, 1/2, 0 → β = 1/4, 1/3, 1/2, 1 → last clipped to 0.9
    assert np.allclose(b, [0.25, 1 / 3, 0.5, 0.9], rtol=4 * U)


def test_every_name_is_valid_at_T_1000():
    for name in schedule_names():
        s = Schedule.from_name(name, 1000)
        assert s.betas.dtype == np.float64 and s.num_timesteps == 1000


# --- pinned values (reference figures for these schedules, computed separately in float64) ---


def test_linear_T1000_reference_values():
    s = Schedule.from_name("linear", 1000)
    assert s.alphas_cumprod[0] == pytest.approx(0.9999, rel=1e-15)
    assert s.alphas_cumprod[-1] == pytest.approx(4.035830e-5, rel=5e-7)
    assert math.log(s.posterior_variance[1]) == pytest.approx(-9.816725, abs=5e-7)
    assert s.posterior_variance[1] == pytest.approx(5.453188e-5, rel=5e-7)
    assert s.sqrt_recip_alphas_cumprod[-1] == pytest.approx(157.4105, rel=5e-7)


def test_cosine_reference_values():
    assert Schedule.from_name("cosine", 1000).alphas_cumprod[-1] == pytest.approx(
        2.428767e-9, rel=5e-7
    )
    assert Schedule.from_name("cosine", 4000).alphas_cumprod[-1] == pytest.approx(
        1.517980e-10, rel=5e-6
    )


def test_default_precision_is_improved_diffusion_arithmetic_verbatim():
    # The exact expressions of improved-diffusion gaussian_diffusion.py:133-169, written out
    # here independently; the default mode must match them bit for bit.
    betas = get_named_beta_schedule("cosine", 300)
    s = Schedule(betas)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    acp = np.append(1.0, ac[:-1])
    pv = betas * (1.0 - acp) / (1.0 - ac)
    expected = {
        "alphas_cumprod_next": np.append(ac[1:], 0.0),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": pv,
        "posterior_log_variance_clipped": np.log(np.append(pv[1], pv[1:])),
        "posterior_mean_coef1": betas * np.sqrt(acp) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - acp) * np.sqrt(alphas) / (1.0 - ac),
    }
    for name, value in expected.items():
        assert np.array_equal(getattr(s, name), value), name


# --- Schedule behaviour -----------------------------------------------------------------


def test_schedule_is_immutable():
    s = Schedule.from_name("linear", 100)
    with pytest.raises(AttributeError):
        s.betas = np.ones(100)
    with pytest.raises(ValueError):
        s.alphas_cumprod[0] = 0.5
    with pytest.raises(AttributeError):
        del s.betas


def test_schedule_copies_its_input():
    b = get_named_beta_schedule("linear", 100)
    s = Schedule(b)
    b[0] = 0.5
    assert s.betas[0] == 1e-3  # 1e-4 · 1000/T


def test_T_equals_1():
    s = Schedule([0.3])
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == math.log(1e-20)
    assert s.alphas_cumprod_next[0] == 0.0 and s.alphas_cumprod[0] == pytest.approx(0.7)


def test_dict_round_trip_and_equality():
    s = Schedule.from_name("cosine", 100, precision="high").respace([0, 5, 50, 99])
    r = Schedule.from_dict(s.to_dict())
    assert r == s and hash(r) == hash(s)
    assert np.array_equal(r.alphas_cumprod, s.alphas_cumprod)
    assert "respaced" in repr(s)


def test_respace_composes_timestep_maps():
    s = Schedule.from_name("linear", 1000)
    r = s.respace(range(0, 1000, 10)).respace([0, 50, 99])
    assert r.timestep_map.tolist() == [0, 500, 990]
    assert np.allclose(r.alphas_cumprod, s.alphas_cumprod[[0, 500, 990]], rtol=1e-13)


def test_respace_accepts_a_set_and_sorts_it():
    s = Schedule.from_name("linear", 100)
    assert s.respace({50, 0, 99}).timestep_map.tolist() == [0, 50, 99]


def test_zero_terminal_snr_on_linear():
    b = rescale_zero_terminal_snr(get_named_beta_schedule("linear", 1000))
    s = Schedule(b)
    assert s.alphas_cumprod[-1] == 0.0 and b[-1] == 1.0
    assert s.alphas_cumprod[0] == pytest.approx(0.9999, rel=8 * U)


def test_inference_timesteps_exact_counts():
    for T in (1, 7, 1000):
        for N in {n for n in (1, 2, 3, T // 2 or 1, T) if n <= T}:
            for spacing in ("linspace", "leading", "trailing"):
                ts = inference_timesteps(T, N, spacing)
                assert ts.size == N and np.all(np.diff(ts) > 0)
                assert ts[0] >= 0 and ts[-1] <= T - 1
                if spacing != "leading":
                    assert ts[-1] == T - 1


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "betas, match",
    [
        ([[0.1, 0.2]], "1-D"),
        ([0.1, np.nan], "finite"),
        ([0.1, np.inf], "finite"),
        ([], "empty"),
        ([0.1, 0.0], r"\(0, 1\]"),
        ([0.1, -0.2], r"\(0, 1\]"),
        ([0.1, 1.5], r"\(0, 1\]"),
        ([1.0, 0.5], "only the last"),
    ],
)
def test_bad_betas(betas, match):
    with pytest.raises(ValueError, match=match):
        Schedule(betas)


def test_bad_types():
    with pytest.raises(TypeError, match="betas"):
        Schedule(["a", "b"])
    with pytest.raises(TypeError, match="betas"):
        Schedule(np.array([True, False]))
    with pytest.raises(ValueError, match="precision"):
        Schedule([0.1], precision="extreme")


def test_unknown_schedule_lists_known_names():
    with pytest.raises(ValueError, match="known names: linear, linear_unscaled"):
        get_named_beta_schedule("lineer", 10)
    with pytest.raises(ValueError, match="bad parameters"):
        get_named_beta_schedule("linear", 1000, bogus=1)


@pytest.mark.parametrize("T", [0, -3])
def test_bad_T(T):
    with pytest.raises(ValueError, match="num_diffusion_timesteps"):
        get_named_beta_schedule("cosine", T)
    with pytest.raises(TypeError, match="num_diffusion_timesteps"):
        get_named_beta_schedule("cosine", 10.0)


def test_linear_below_T_20_explains_itself():
    with pytest.raises(ValueError, match="T >= 20"):
        get_named_beta_schedule("linear", 19)
    get_named_beta_schedule("linear", 20)  # β_{T−1} = 1 exactly: allowed (last step only)


@pytest.mark.parametrize(
    "steps, exc, match",
    [
        ([0, 100], ValueError, r"\[0, 99\]"),
        ([-1, 5], ValueError, r"\[0, 99\]"),
        ([5, 3], ValueError, "strictly increasing"),
        ([3, 3], ValueError, "more than once"),
        ([], ValueError, "non-empty"),
        ([0.5, 1.0], TypeError, "integers"),
    ],
)
def test_bad_respace(steps, exc, match):
    with pytest.raises(exc, match=match):
        Schedule.from_name("linear", 100).respace(steps)


def test_bad_spacing_arguments():
    with pytest.raises(ValueError, match="spacing"):
        inference_timesteps(10, 3, "middle")
    with pytest.raises(ValueError, match="cannot exceed"):
        inference_timesteps(10, 11)
    with pytest.raises(ValueError, match="at least 2"):
        rescale_zero_terminal_snr([0.5])
