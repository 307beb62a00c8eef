"""Tests of npddpm.metrics.density: the exact negative log-likelihood, the entropy estimate
and the support rate.

Every statistical test uses fixed seeds. The standard deviations quoted were measured over
20 independent replicates at the same sizes; a tolerance of 4.5 sd has a false-failure
probability of about 7e-6 under a normal approximation.
"""

import math

import numpy as np
import pytest
from scipy import stats

from npddpm import data
from npddpm import metrics as M

# --- exact NLL ------------------------------------------------------------------------------------


def test_neg_log_likelihood_of_real_samples_is_the_entropy():
    # Entropy of 8gaussians by grid integration with scipy's densities (independent of
    # npddpm's log_prob). 4 standard errors (false failure 6e-5); detects 0.09 nats.
    ds = data.get("8gaussians")
    h = 0.04
    g = np.arange(-5.6, 5.6, h) + h / 2
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    p = sum(
        w * stats.multivariate_normal(m, c).pdf(pts)
        for w, m, c in zip(ds.weights, ds.means, ds.covariances, strict=True)
    )
    entropy = -np.sum(p * np.log(np.maximum(p, 1e-300))) * h * h
    mean, se = M.neg_log_likelihood(ds, ds.sample(4000, rng=5))
    assert abs(mean - entropy) < 4 * se
    mean, se = M.entropy_estimate(ds, 100_000, rng=6)  # se 0.003: detects 0.012 nats
    assert abs(mean - entropy) < 4 * se
    # 2.8316: below log 8 + log(2πe·0.125) = 2.8379, the value for disjoint components,
    # because neighbouring means are only 6.1σ apart and their tails overlap.
    assert 2.825 < entropy < math.log(8) + math.log(2 * math.pi * math.e * 0.125) - 0.003


def test_neg_log_likelihood_and_support_off_the_data():
    cb = data.get("checkerboard")
    assert M.neg_log_likelihood(cb, np.array([[0.5, 0.5], [0.5, -1.0]]))[0] == math.inf
    assert M.inside_support_rate(cb, cb.sample(1000, rng=0)) == 1.0
    x = cb.sample(4000, rng=1)
    gauss = np.random.default_rng(2).multivariate_normal(x.mean(0), np.cov(x.T), 4000)
    assert M.inside_support_rate(cb, gauss) < 0.6
    with pytest.raises(ValueError, match="no exact density"):
        M.neg_log_likelihood(data.get("digits"), np.zeros((2, 64)))
