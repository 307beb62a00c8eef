"""Tests of the dataset contract every set shares: the registry ``npddpm.data.get`` (in
``npddpm/data/__init__.py``) and the argument checks of :class:`npddpm.data.base.Dataset`.
"""

import math

import numpy as np
import pytest

from npddpm import data

# --- registry, shapes, determinism ------------------------------------------------------


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"8gaussians.*bars_and_stripes"):
        data.get("mnist")


@pytest.mark.parametrize("name", data.NAMES)
def test_shape_dtype_range_and_determinism(name):
    ds = data.get(name)
    a = ds.sample(64, rng=7)
    b = ds.sample(64, rng=np.random.default_rng(7))
    c = ds.sample(64, rng=8)
    assert a.shape == (64, *ds.shape) and a.dtype == np.float64
    assert ds.dim == math.prod(ds.shape)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.isfinite(a))
    if ds.kind == "images":
        assert a.min() >= -1.0 and a.max() <= 1.0


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_bad_sample_counts_are_rejected(bad):
    with pytest.raises((ValueError, TypeError), match="n must"):
        data.get("moons").sample(bad, rng=0)


def test_rng_must_be_a_generator_or_int():
    with pytest.raises(TypeError, match="rng must be"):
        data.get("moons").sample(3, rng="seed")


def test_log_prob_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        data.get("moons").log_prob(np.zeros((3, 3)))
