"""Tests of npddpm.data.images: the digits file and its split, bars and stripes.

Statistical tests use fixed seeds; each states the probability that it would fail for a
correct implementation under a fresh seed, and the size of error it detects.
"""

import itertools

import numpy as np
import pytest
from scipy import stats

from npddpm import data

# --- digits -------------------------------------------------------------------------------


def test_digits_file_contents_and_split():
    ds = data.get("digits")
    x_all = ds.images("all")
    assert x_all.shape == (1797, 1, 8, 8)
    # UCI optdigits as distributed by scikit-learn: these per-class counts.
    counts = np.bincount(ds.labels("all"))
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    levels = ds.to_levels(x_all)
    assert np.array_equal(np.unique(levels), np.arange(17))
    assert np.array_equal(ds.to_unit(levels), x_all)
    train, test = ds.images("train"), ds.images("test")
    assert train.shape[0] == 1078 and test.shape[0] == 719
    # Stratified: each class's test share is 40 % rounded.
    assert np.array_equal(np.bincount(ds.labels("test")), np.round(0.4 * counts).astype(int))
    # No image is in both splits.
    tr = {r.tobytes() for r in ds.to_levels(train)}
    assert not any(r.tobytes() in tr for r in ds.to_levels(test))


def test_digits_sample_draws_distinct_images_of_the_split():
    ds = data.get("digits")
    x = ds.sample(719, rng=0, split="test")
    assert np.unique(x.reshape(719, -1), axis=0).shape[0] == 719
    with pytest.raises(ValueError, match="exceeds the 719 images"):
        ds.sample(720, rng=0, split="test")
    with pytest.raises(ValueError, match="unknown split"):
        ds.images("validation")


# --- bars and stripes -------------------------------------------------------------------


def _brute_valid(b):
    # Independent definition: a pattern is valid when it has one distinct value per row
    # or one per column.
    rows = all(len(set(r)) == 1 for r in b)
    cols = all(len(set(c)) == 1 for c in b.T)
    return rows or cols


def test_bars_and_stripes_has_exactly_30_patterns():
    ds = data.get("bars_and_stripes")
    everything = np.array(list(itertools.product((-1.0, 1.0), repeat=16))).reshape(-1, 1, 4, 4)
    valid = ds.is_valid(everything)
    brute = np.array([_brute_valid(e[0]) for e in everything])
    assert np.array_equal(valid, brute) and valid.sum() == 30
    idx = ds.pattern_index(everything)
    assert np.array_equal(idx >= 0, valid)
    assert sorted(idx[valid].tolist()) == list(range(30))
    assert np.array_equal(everything[valid][np.argsort(idx[valid])], ds.patterns)


def test_bars_and_stripes_threshold_at_zero():
    ds = data.get("bars_and_stripes")
    noisy = ds.patterns * 0.1 + np.random.default_rng(0).uniform(-0.09, 0.09, ds.patterns.shape)
    assert ds.is_valid(noisy).all()
    assert np.array_equal(ds.pattern_index(noisy), np.arange(30))
    broken = ds.patterns.copy()
    broken[:, 0, 1, 2] *= -1  # flipping one pixel breaks every valid pattern
    assert not ds.is_valid(broken).any()


def test_bars_and_stripes_sampler_is_uniform_over_all_patterns():
    ds = data.get("bars_and_stripes")
    x = ds.sample(6000, rng=3)
    idx = ds.pattern_index(x)
    counts = np.bincount(idx, minlength=30)
    # Missing a pattern has probability 30·(29/30)^6000 < 1e-80. Chi-square, p > 1e-4
    # (false-failure probability 1e-4; detects one pattern at ±25 % of its 200 expected).
    assert counts.min() > 0 and idx.min() >= 0
    assert stats.chisquare(counts).pvalue > 1e-4
