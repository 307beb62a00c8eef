"""The fused Langevin step against its transcription, NumPy vs CPU, both noise sources."""

import math

import numpy as np
import pytest

import npddpm.kernels as K
from npddpm import rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_langevin_step_formula_and_backends(dtype):
    r = np.random.default_rng(0)
    x = r.standard_normal((7, 130)).astype(dtype)  # rows not a multiple of the Philox block
    g = r.standard_normal((7, 130)).astype(dtype)
    z = r.standard_normal((7, 130)).astype(dtype)
    delta = 0.37
    # the unadjusted Langevin update in the array dtype: (x + (δ/2)·g) + √δ·z, coefficients
    # cast first
    a, b = dtype(delta / 2), dtype(math.sqrt(delta))
    expected = (x + a * g) + b * z
    for backend in ("numpy", "cpu"):
        assert np.array_equal(K.langevin_step(x, g, delta, z, backend=backend), expected)
    zs = rng.standard_normal(9, 4, x.shape, dtype)
    ref = (x + a * g) + b * zs
    for backend in ("numpy", "cpu"):
        got = K.langevin_step(x, g, delta, seed=9, stream=4, backend=backend)
        assert np.array_equal(got, ref)


def test_langevin_step_validation():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="step_size"):
        K.langevin_step(x, x, 0.0, seed=0)
    with pytest.raises(ValueError, match="score must have the shape"):
        K.langevin_step(x, np.zeros((2, 2)), 0.1, seed=0)
