"""Tests of npddpm.data.toy2d: the 2-D sets' samplers against their exact densities.

Statistical tests use fixed seeds; each states the probability that it would fail for a
correct implementation under a fresh seed, and the size of error it detects.
"""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from npddpm import data

TOY = (
    "8gaussians",
    "25gaussians",
    "moons",
    "circles",
    "swissroll",
    "checkerboard",
    "pinwheel",
    "2spirals",
)


# --- densities against independent formulas --------------------------------------------


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_mixture_log_prob_matches_scipy(name):
    ds = data.get(name)
    x = np.random.default_rng(0).normal(scale=2.0, size=(300, 2))
    x[:100] = ds.sample(100, rng=1)
    dens = sum(
        w * stats.multivariate_normal(m, c).pdf(x)
        for w, m, c in zip(ds.weights, ds.means, ds.covariances, strict=True)
    )
    near = dens > 1e-250
    assert np.allclose(ds.log_prob(x)[near], np.log(dens[near]), rtol=0, atol=1e-10)


def test_mixture_parameters_are_the_documented_ones():
    ds = data.get("8gaussians")
    assert np.allclose(np.hypot(*ds.means.T), 2 * math.sqrt(2))
    assert np.allclose(ds.covariances, 0.125 * np.eye(2))
    ds = data.get("25gaussians")
    assert np.allclose(np.unique(ds.means[:, 0]) * 2 * math.sqrt(2), [-4, -2, 0, 2, 4])


def test_circles_bessel_form_matches_angle_quadrature():
    # Independent: integrate the Gaussian over the angle with adaptive quadrature.
    ds = data.get("circles")
    s = ds.sigma
    for x in ([0.1, 0.2], [2.9, 0.3], [-1.0, 1.2], [4.0, 4.0]):
        x = np.array(x)

        def integrand(phi, r, x=x):
            d = x - r * np.array([math.cos(phi), math.sin(phi)])
            return math.exp(-d @ d / (2 * s * s)) / (2 * math.pi * s * s) / (2 * math.pi)

        p = sum(
            0.5
            * integrate.quad(
                integrand, 0, 2 * math.pi, args=(r,), epsabs=0, epsrel=1e-12, limit=200
            )[0]
            for r in ds.radii
        )
        assert ds.log_prob(x[None])[0] == pytest.approx(math.log(p), abs=1e-9)


@pytest.mark.parametrize("name", ["moons", "swissroll", "2spirals"])
def test_curve_quadrature_is_converged(name):
    # The quadrature rule against one with 4x as many panels: near the data the relative
    # error is at rounding level; up to 5 units away it stays below 1e-8.
    ds = data.get(name)
    near = ds.sample(300, rng=0)
    far = np.random.default_rng(1).uniform(-5, 5, (300, 2))
    for x, tol in ((near, 1e-12), (far, 1e-8)):
        assert np.max(np.abs(ds.log_prob(x) - ds.log_prob(x, refine=4))) < tol


def test_pinwheel_root_grid_is_converged():
    ds = data.get("pinwheel")
    x = np.concatenate([ds.sample(300, rng=0), np.random.default_rng(1).uniform(-5, 5, (200, 2))])
    assert np.max(np.abs(ds.log_prob(x) - ds.log_prob(x, grid=8192))) < 1e-11


# Grid (half-width L, spacing h) for each density; h ≤ σ/2 makes the midpoint rule for the
# total mass spectrally accurate (error ~ exp(−2π²σ²/h²) < 1e-30), and L covers the mass to
# the stated tolerance.
GRIDS = {
    "8gaussians": (5.6, 0.05, 1e-12),
    "25gaussians": (1.6, 0.008, 1e-12),
    "moons": (3.8, 0.04, 1e-12),
    "circles": (4.6, 0.06, 1e-12),
    "swissroll": (3.8, 0.05, 1e-8),
    "pinwheel": (5.0, 0.045, 1e-5),  # the grid clips the arm tips: mass beyond |x| = 5
    "2spirals": (4.4, 0.05, 1e-10),
}


# > 5 s each on the 2-core test machine (6.2 s and 5.0 s): marked slow.
SLOW_GRIDS = {"pinwheel", "2spirals"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_GRIDS else n for n in GRIDS]
)
def test_density_is_normalised_and_matches_the_sampler(name):
    L, h, mass_tol = GRIDS[name]
    ds = data.get(name)
    g = np.arange(-L, L, h) + h / 2
    m = g.size
    xx, yy = np.meshgrid(g, g, indexing="ij")
    logp = ds.log_prob(np.stack([xx.ravel(), yy.ravel()], 1))
    p = np.exp(logp) * h * h
    # 1. Normalised.
    assert abs(p.sum() - 1.0) < mass_tol
    # 2. The entropy −∫ p log p from the grid equals E[−log p(X)] over sampled X. A sampler
    # that does not follow p shifts the mean by KL(s‖p) plus a cross term. 4 standard errors:
    # false-failure probability 6e-5; detects a discrepancy of about 0.04 nats at n = 10,000.
    n = 10_000
    x = ds.sample(n, rng=2024)
    nlp = -ds.log_prob(x)
    h_grid = -np.sum(p * logp)
    se = nlp.std(ddof=1) / math.sqrt(n)
    assert abs(nlp.mean() - h_grid) < 4 * se
    # 3. Chi-square of the sampler against the density integrated over blocks of 8×8 grid
    # cells (blocks with expected count < 5 and the mass off the grid pooled into one bin).
    # The midpoint rule biases each block by at most (h/σ)²/24 ≈ 1 %, well inside the test's
    # resolution. p-value threshold 1e-4 (false-failure probability 1e-4); detects a 10 %
    # misallocation of mass between neighbouring blocks with counts of ~300.
    b = 8
    nb = m // b
    pb = p.reshape(m, m)[: nb * b, : nb * b].reshape(nb, b, nb, b).sum(axis=(1, 3)).ravel()
    idx = np.floor((x + L) / (h * b)).astype(int)
    inside = np.all((idx >= 0) & (idx < nb), axis=1)
    counts = np.bincount(idx[inside, 0] * nb + idx[inside, 1], minlength=nb * nb)
    expected = n * pb
    big = expected >= 5
    obs = np.append(counts[big], n - counts[big].sum())
    exp = np.append(expected[big], n - expected[big].sum())
    chi2 = np.sum((obs - exp) ** 2 / exp)
    assert stats.chi2.sf(chi2, obs.size - 1) > 1e-4


def test_checkerboard_support_and_uniformity():
    ds = data.get("checkerboard")
    x = ds.sample(12_800, rng=5)
    assert ds.in_support(x).all()
    assert np.all(ds.log_prob(x) == -math.log(32.0))
    # Exact support: cell centres of the 16 squares, alternate ones in support.
    c = np.arange(-3.0, 4.0, 2.0)
    centres = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    i, j = np.meshgrid(range(4), range(4), indexing="ij")
    assert np.array_equal(ds.in_support(centres), ((i + j) % 2 == 0).ravel())
    assert not ds.in_support(np.array([[4.0, 0.5], [-4.1, -3.5]])).any()
    # Uniform on 8 squares × 16 sub-squares = 128 cells of mass 1/128: chi-square, p > 1e-4
    # (false-failure probability 1e-4; detects a 15 % deficit in one square's 1600 points).
    cell = np.floor((x + 4.0) / 0.5).astype(int)
    counts = np.bincount(cell[:, 0] * 16 + cell[:, 1], minlength=256)
    occupied = counts > 0
    assert occupied.sum() == 128
    assert stats.chisquare(counts[occupied]).pvalue > 1e-4


def test_mixture_distribution_is_the_analytic_gaussian_mixture():
    # npddpm.analytic lands on another branch; until then this test is skipped.
    pytest.importorskip("npddpm.analytic")
    ds = data.get("8gaussians")
    gm = ds.distribution
    x = ds.sample(50, rng=0)
    assert np.allclose(gm.log_prob(x), ds.log_prob(x), rtol=1e-12, atol=1e-12)
