"""The Numba CPU generator against the NumPy reference, and the accuracy of the transform.

The CPU kernels compile the reference's own source (no maths library calls, fastmath off), so
both the uint32 words and the normals are bitwise equal. Accuracy of the normal transform
against Box–Muller evaluated in extended precision from the same uniforms (measured on 2¹⁹
normals, 2026-11-28): float32 at most 3.4 ulp (mean 0.51); float64 at most 3.6·eps absolute
(relative ulps are meaningless near zero crossings of cos/sin there, where the extended-
precision reference itself loses digits).
"""

import numba
import numpy as np
import pytest

import npddpm.kernels as K
from npddpm import rng
from npddpm.kernels import cpu


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| in units of the last place of the larger magnitude, in a's dtype."""
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / spacing


@pytest.mark.parametrize(("seed", "stream"), [(0, 0), (2**64 - 1, 2**63 + 5), (77, 2**32)])
def test_words_bitwise(seed, stream):
    n = 4099
    out = np.empty(n, np.uint32)
    cpu.random_words(n, *rng.kernel_words(seed, stream), out)
    np.testing.assert_array_equal(out, rng.random_words(seed, stream, np.arange(n)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("start", [0, 3])
def test_normals_bitwise(dtype, start):
    n = 2**18 + 7
    ref = rng.standard_normal(2026, 11, n, dtype, start=start)
    out = np.empty(n + start, dtype)
    cpu.standard_normal_flat(*rng.kernel_words(2026, 11), out)
    np.testing.assert_array_equal(out[start:], ref)
    assert ulp_distance(out[start:], ref).max() <= rng.NORMAL_ULP_BOUND  # the documented bound


@pytest.mark.parametrize(("dtype", "max_ulp"), [(np.float32, 4.0), (np.float64, None)])
def test_transform_accuracy(dtype, max_ulp):
    """Against Box–Muller in long double from the same (u, v); float32: ≤ 4 ulp, float64:
    ≤ 4·eps·max(1, |z|) absolute."""
    n = 2**16
    w = rng.random_words(7, 1, np.arange(2 * n)).reshape(-1, 2)
    z = rng.box_muller(w[:, 0], w[:, 1], dtype)
    u, v = (a.astype(np.longdouble) for a in rng.uniforms(w[:, 0], w[:, 1], dtype))
    r = np.sqrt(-2 * np.log(u))
    two_pi = np.longdouble("6.283185307179586476925286766559006")
    for got, exact in zip(z, (r * np.cos(two_pi * v), r * np.sin(two_pi * v)), strict=True):
        err = np.abs(got.astype(np.longdouble) - exact)
        if max_ulp is not None:
            spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
            assert float((err / spacing).max()) <= max_ulp
        bound = 4 * np.finfo(dtype).eps * np.maximum(1, np.abs(got))
        assert np.all(err <= bound)


def test_normals_independent_of_thread_count_and_shape():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = K.standard_normal(5, 6, (9, 1001), np.float32, backend="cpu")
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = K.standard_normal(5, 6, 9009, np.float32, backend="cpu")
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.ravel(), many)
