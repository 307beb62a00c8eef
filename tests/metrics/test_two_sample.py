"""Tests of npddpm.metrics.two_sample (sliced Wasserstein, energy distance, MMD², C2ST,
precision/recall/density/coverage) against closed forms, brute-force loops and null
distributions.

Every statistical test uses fixed seeds. The standard deviations quoted were measured over
20 independent replicates at the same sizes; a tolerance of 4.5 sd has a false-failure
probability of about 7e-6 under a normal approximation.
"""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import gamma

from npddpm import data
from npddpm import metrics as M


def normal(seed, n, d, shift=0.0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


# --- sliced Wasserstein -------------------------------------------------------------------


def mean_abs_theta1(d):
    # θ uniform on S^{d−1}: θ₁² ~ Beta(½, (d−1)/2), so E|θ₁| = Γ(d/2) / (√π Γ((d+1)/2)).
    return gamma(d / 2) / (math.sqrt(math.pi) * gamma((d + 1) / 2))


def test_mean_abs_theta1_constant():
    assert mean_abs_theta1(2) == pytest.approx(2 / math.pi, rel=1e-15)
    assert mean_abs_theta1(3) == pytest.approx(0.5, rel=1e-15)
    # Independent Monte Carlo check of the d = 5 constant: sd(|θ₁|) = 0.244, so the mean of
    # 200,000 has sd 5.5e-4; 6 sd (false failure 2e-9).
    v = np.random.default_rng(0).standard_normal((200_000, 5))
    mc = np.mean(np.abs(v[:, 0]) / np.linalg.norm(v, axis=1))
    assert mc == pytest.approx(mean_abs_theta1(5), abs=6 * 0.244 / math.sqrt(200_000))


@pytest.mark.parametrize(
    ("d", "n", "n_proj", "sd"),
    [(2, 8000, 128, 0.0132), (5, 8000, 1000, 0.0139)],
)
def test_sliced_w1_of_a_shift_matches_closed_form(d, n, n_proj, sd):
    # W1 of N(0,1) and N(θ·μ,1) is |θ·μ|, so SW1 = ‖μ‖ E|θ₁|. sd measured over 20
    # replicates at these sizes. Tolerance 4.5 sd (false failure ~7e-6): detects an 8 % (d=2)
    # or 10 % (d=5) error, e.g. the 2-D constant 2/π used in d = 5 (a 70 % error).
    mu = np.linspace(1.0, 0.5, d)
    want = np.linalg.norm(mu) * mean_abs_theta1(d)
    got = M.sliced_wasserstein(normal(1, n, d), normal(2, n, d, mu), n_projections=n_proj, rng=3)
    assert abs(got - want) < 4.5 * sd


def test_sliced_w1_in_1d_is_exact_w1():
    # One dimension: every direction is ±1, so SW1 is the exact W1 of the two samples,
    # for equal and unequal sizes (scipy's implementation as the reference).
    x, y, z = normal(0, 500, 1), normal(1, 500, 1, 0.3), normal(2, 377, 1, -0.2)
    assert M.sliced_wasserstein(x, y, n_projections=3) == pytest.approx(
        stats.wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-12
    )
    assert M.sliced_wasserstein(x, z, n_projections=3) == pytest.approx(
        stats.wasserstein_distance(x[:, 0], z[:, 0]), rel=1e-12
    )


# --- energy distance ------------------------------------------------------------------------


def mean_norm_gaussian(m, var, d):
    # E‖N(m, var·I_d)‖ = √var · E√V with V ~ noncentral χ²(d, ‖m‖²/var), by quadrature.
    lam = float(np.dot(m, m)) / var
    if lam == 0:
        return math.sqrt(var) * math.sqrt(2) * gamma((d + 1) / 2) / gamma(d / 2)
    return math.sqrt(var) * stats.ncx2(d, lam).expect(np.sqrt)


def test_mean_norm_gaussian_helper_against_the_1d_formula():
    m, s = 0.7, math.sqrt(2)
    folded = s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s * s)) + m * (
        1 - 2 * stats.norm.cdf(-m / s)
    )
    assert mean_norm_gaussian(np.array([m]), 2.0, 1) == pytest.approx(folded, rel=1e-8)


def test_energy_distance_of_shifted_gaussians_matches_closed_form():
    # D = 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ with X−Y ~ N(−μ, 2I), X−X' ~ N(0, 2I).
    mu = np.array([1.2, -0.6])
    want = 2 * mean_norm_gaussian(mu, 2.0, 2) - 2 * mean_norm_gaussian(np.zeros(2), 2.0, 2)
    got = M.energy_distance(normal(1, 3000, 2), normal(2, 3000, 2, mu))
    # The value is 0.756; sd 0.026 at n = 3000 (measured over 20 replicates); 4.5 sd, i.e.
    # a 16 % error is detected (a missing factor 2 on the cross term is a 300 % error). The
    # U- vs V-statistic difference (~1e-3) is checked by the brute-force test below.
    assert abs(got - want) < 4.5 * 0.026


def test_energy_distance_is_zero_under_h0_and_unbiased():
    # H0: null sd 0.0024 at n = 1000 (measured); 4.5 sd (false failure ~7e-6).
    assert abs(M.energy_distance(normal(3, 1000, 2), normal(4, 1000, 2))) < 4.5 * 0.0024
    # The U-statistic against a brute-force full-matrix computation on a small case.
    x, y = normal(5, 40, 3), normal(6, 31, 3, 0.5)
    dxy = np.linalg.norm(x[:, None] - y[None], axis=-1)
    dxx = np.linalg.norm(x[:, None] - x[None], axis=-1)
    dyy = np.linalg.norm(y[:, None] - y[None], axis=-1)
    brute = 2 * dxy.mean() - dxx.sum() / (40 * 39) - dyy.sum() / (31 * 30)
    assert M.energy_distance(x, y) == pytest.approx(brute, rel=1e-12)


# --- MMD² -------------------------------------------------------------------------------------


def mmd2_gaussians(delta, s2, h, d):
    # E k(X,X') for X−X' ~ N(0, 2s²I): c = (h²/(h²+2s²))^{d/2}; E k(X,Y) = c·exp(−‖Δ‖²/(2(h²+2s²))).
    h = np.asarray(h)
    c = (h**2 / (h**2 + 2 * s2)) ** (d / 2)
    return float(np.sum(2 * c * (1 - np.exp(-np.dot(delta, delta) / (2 * (h**2 + 2 * s2))))))


def brute_mmd2(x, y, h):
    def k(a, b):
        sq = ((a[:, None] - b[None]) ** 2).sum(-1)
        return sum(np.exp(-sq / (2 * hh * hh)) for hh in h)

    kxx, kyy = k(x, x), k(y, y)
    n, m = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


@pytest.mark.parametrize("h", [[0.25, 0.5, 1.0, 2.0, 4.0], [0.3, 0.7, 1.1]])
def test_mmd2_matches_brute_force(h):
    # Powers of two take the squaring path; the second set takes the exp path.
    x, y = normal(0, 60, 2), normal(1, 45, 2, 0.4)
    assert M.mmd2(x, y, h) == pytest.approx(brute_mmd2(x, y, h), rel=1e-11, abs=1e-14)


def test_mmd2_of_shifted_gaussians_matches_closed_form():
    h = [0.5, 1.0, 2.0]
    delta = np.array([1.0, 0.0])
    want = mmd2_gaussians(delta, 1.0, h, 2)  # 0.253
    got = M.mmd2(normal(7, 2000, 2), normal(8, 2000, 2, delta), h)
    # sd of the estimator 0.0135 at n = 2000 (measured over 20 replicates); 4.5 sd, i.e. a
    # 24 % error is detected (e.g. bandwidth h used as h² in the exponent).
    assert abs(got - want) < 4.5 * 0.0135


def test_mmd2_unbiased_under_h0():
    # 20 replicates at n = 200: the mean of the unbiased estimator is 0; one-sample t-test,
    # |t| < 4.5 (false failure 2.4e-4 with 19 degrees of freedom). The biased V-statistic,
    # whose mean is 2(k(0) − E k)/n > 0, fails the same test: that is the error it detects.
    h = M.default_bandwidths(normal(99, 500, 2))
    vals = np.array(
        [M.mmd2(normal(2 * i, 200, 2), normal(2 * i + 1, 200, 2), h) for i in range(20)]
    )
    t = vals.mean() / (vals.std(ddof=1) / math.sqrt(vals.size))
    assert abs(t) < 4.5
    v_bias = 2 * sum(1 - (hh**2 / (hh**2 + 2)) for hh in h) / 200
    assert abs(vals.mean() + v_bias) / (vals.std(ddof=1) / math.sqrt(20)) > 4.5


def test_default_bandwidths_scale_with_the_median_distance():
    y = normal(0, 800, 2)
    # Median of ‖X − X'‖ for N(0, I₂): √2 · √(2 ln 2) (Rayleigh median), to ±3 %.
    med = M.default_bandwidths(y, factors=(1.0,))[0]
    assert med == pytest.approx(math.sqrt(2) * math.sqrt(2 * math.log(2)), rel=0.03)


# --- C2ST ----------------------------------------------------------------------------------------


def test_c2st_under_h0_has_its_exact_mean():
    # Exchangeability: the nearest other point has the same label with probability
    # (n−1)/(2n−1). sd 0.013 at n = 1000 (measured); 4.5 sd.
    acc = M.c2st_1nn(normal(10, 1000, 2), normal(11, 1000, 2))
    assert abs(acc - 999 / 1999) < 4.5 * 0.013


def test_c2st_extremes():
    x = normal(0, 300, 2)
    assert M.c2st_1nn(x, normal(1, 300, 2, 50.0)) == 1.0  # separable
    assert M.c2st_1nn(x, x.copy()) == 0.0  # every point's twin is in the other set
    # Exact ties count ½: one point shared by well-separated sets. x[0] and y[0] are both
    # wrong; each other x whose nearest neighbour is x[0] now ties with y[0]: ½.
    y = normal(2, 300, 2, 50.0)
    y[0] = x[0]
    dxx = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(dxx, np.inf)
    m = int(np.sum(np.argmin(dxx[1:], axis=1) == 0))
    assert m >= 1
    assert M.c2st_1nn(x, y) == pytest.approx((600 - 2 - m / 2) / 600, rel=1e-15)


# --- precision / recall / density / coverage ------------------------------------------------------


def brute_prc(fake, real, k):
    drr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    dff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    dfr = np.linalg.norm(fake[:, None] - real[None], axis=-1)
    r = np.sort(drr, axis=1)[:, k]  # column 0 is the point itself
    f = np.sort(dff, axis=1)[:, k]
    inside = dfr <= r[None, :]
    return (
        inside.any(axis=1).mean(),
        (dfr <= f[:, None]).any(axis=0).mean(),
        inside.sum() / (k * len(fake)),
        (dfr.min(axis=0) <= r).mean(),
    )


def test_precision_recall_matches_brute_force():
    fake, real = normal(0, 150, 3, 0.3), normal(1, 120, 3)
    got = M.precision_recall(fake, real, k=4)
    want = brute_prc(fake, real, 4)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(want, rel=1e-12)


def test_precision_recall_for_identical_distributions():
    got = M.precision_recall(normal(20, 1000, 2), normal(21, 1000, 2), k=5)
    # Coverage has expectation 1 − Π_{i=1..5} (N−i)/(2N−i) = 0.969 (Naeem et al. 2020);
    # density has expectation 1. sds 0.0098 and 0.0126 (measured); 4.5 sd.
    cov = 1 - np.prod([(1000 - i) / (2000 - i) for i in range(1, 6)])
    assert abs(got.coverage - cov) < 4.5 * 0.0098
    assert abs(got.density - 1.0) < 4.5 * 0.0126
    # Precision and recall are ≈ 1 (measured 0.9976 ± 0.0018); require > 0.985.
    assert got.precision > 0.985 and got.recall > 0.985


def test_precision_recall_detects_mode_dropping_and_disjoint_sets():
    ds = data.get("8gaussians")
    real = ds.sample(2000, rng=0)
    fake = ds.sample(2300, rng=1)
    fake = fake[fake[:, 0] < 2.0][:2000]  # drop the mode at (2√2, 0)
    got = M.precision_recall(fake, real)
    assert got.precision > 0.98 and got.recall == pytest.approx(7 / 8, abs=0.03)
    far = M.precision_recall(normal(0, 100, 2, 100.0), normal(1, 100, 2))
    assert far.precision == far.recall == far.coverage == far.density == 0.0
