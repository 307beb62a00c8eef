"""The fixed-order float32 product of npddpm.nn._gemm and the compiled inference chunk."""

from fractions import Fraction

import numpy as np
import pytest

from npddpm.nn import MLP


def chain_oracle(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    # c = fma(a_k, w_k, c) for k ascending from 0, evaluated independently of the kernel: a
    # product of two float32 is exact in float64 (48 significant bits), the float64 sum is
    # rounded once and then to float32. That double rounding differs from one fma rounding
    # only when the float64 result lies exactly on a float32 midpoint (probability ~2^-29 per
    # step; none in these fixed draws, or the exact comparison below would say so).
    c = np.zeros((a.shape[0], w.shape[1]), np.float32)
    for k in range(a.shape[1]):
        prod = a[:, k : k + 1].astype(np.float64) * w[k].astype(np.float64)
        c = (prod + c.astype(np.float64)).astype(np.float32)
    return c


def chain_oracle_exact(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    # The same chain for float64, in exact rational arithmetic: fma(a, w, c) is the exact
    # a·w + c rounded once, and float(Fraction) rounds correctly (to nearest, ties to even).
    c = np.zeros((a.shape[0], w.shape[1]), np.float64)
    for i in range(a.shape[0]):
        for j in range(w.shape[1]):
            acc = 0.0
            for k in range(a.shape[1]):
                acc = float(Fraction(float(a[i, k])) * Fraction(float(w[k, j])) + Fraction(acc))
            c[i, j] = acc
    return c


SHAPES = [(1, 1, 1), (7, 5, 3), (13, 64, 24), (33, 17, 40), (256, 256, 256), (256, 256, 2),
          (11, 0, 9), (6, 300, 17)]
# float64 shapes: the exact oracle costs a Fraction product per multiply-add; every panel and
# tail case of the float32 list (4 lanes: 3, 24, 40 and 17 columns are 1, 6, 10 and 5 vectors)
SHAPES64 = [(1, 1, 1), (7, 5, 3), (13, 64, 24), (33, 17, 40), (11, 0, 9), (6, 300, 17),
            (40, 30, 2)]


@pytest.mark.parametrize(
    "dtype, n, k, m",
    [("float32", *s) for s in SHAPES] + [("float64", *s) for s in SHAPES64],
)
def test_matmul_is_the_fma_chain(dtype, n, k, m):
    from npddpm.nn._gemm import kernels

    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    a = rng.standard_normal((n, k)).astype(dtype)
    w = rng.standard_normal((k, m)).astype(dtype)
    c = np.full((n, m), np.nan, dtype)
    kernels(dtype).matmul(a, w, c)
    oracle = chain_oracle(a, w) if dtype == "float32" else chain_oracle_exact(a, w)
    np.testing.assert_array_equal(c, oracle)
    if n * k * m >= 1000:
        # the test can fail: products rounded before each sum (no fma) part from the chain
        plain = np.zeros_like(c)
        for q in range(k):
            plain = plain + a[:, q : q + 1] * w[q]
        assert not np.array_equal(plain, oracle)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_row_is_independent_of_its_position(dtype):
    # The property BLAS lacks here (OpenBLAS float32: two results by row position mod 12):
    # every row of a rolled batch, tails included, gives the bits it gives in place.
    from npddpm.nn._gemm import kernels

    mm = kernels(dtype).matmul
    rng = np.random.default_rng(1)
    a = rng.standard_normal((256, 256)).astype(dtype)
    w = rng.standard_normal((256, 256)).astype(dtype)
    ref = np.empty((256, 256), dtype)
    mm(a, w, ref)
    for s in (1, 5, 6, 7, 12, 100):
        got = np.empty_like(ref)
        mm(np.roll(a, s, axis=0), w, got)
        np.testing.assert_array_equal(np.roll(got, -s, axis=0), ref, err_msg=f"shift {s}")
    for rows in (1, 4, 9):  # a few rows alone: the tail blocks
        got = np.empty((rows, 256), dtype)
        mm(a[20 : 20 + rows], w, got)
        np.testing.assert_array_equal(got, ref[20 : 20 + rows])


@pytest.mark.parametrize("hidden", [48, 20])  # 20: a column tail (16 + 4) in the products
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 300, 1100])
def test_compiled_predict_equals_the_numpy_loop(threads, n, hidden):
    # The one-call chunk (npddpm.nn._mlp_kernels.predict_kernel) runs the same kernels in the
    # same order as the Python tile loop, so the two are bitwise equal; partial tiles and
    # column tails included.
    rng = np.random.default_rng(n)
    m = MLP(2, hidden=hidden, num_blocks=2, learn_sigma=True, threads=threads, seed=4)
    assert m._compiled_ok()
    x = rng.standard_normal((n, 2)).astype(np.float32)
    t = rng.integers(0, 1000, n)
    got = m.predict(x, t)
    m._compiled_ok = lambda: False  # the Python loop on this instance
    np.testing.assert_array_equal(got, m.predict(x, t))


@pytest.mark.parametrize("dtype, lanes", [("float32", 8), ("float64", 4)])
@pytest.mark.parametrize("k, m", [(0, 3), (5, 1), (9, 8), (9, 16), (9, 17), (9, 24), (9, 40)])
def test_pack_layout(k, m, dtype, lanes):
    # Panels of two vectors (16 float32 or 8 float64 columns), the last one or two vectors
    # wide, zero past M, each (K, width) contiguous: rebuilt from the layout's definition,
    # independently of pack's loops.
    from npddpm.nn._gemm import kernels, packed_size

    w = np.random.default_rng(k + m).standard_normal((k, m)).astype(dtype)
    npad, panel = -(-m // lanes) * lanes, 2 * lanes
    assert packed_size(k, m, dtype) == k * npad
    wp = np.full(packed_size(k, m, dtype), np.nan, dtype)
    kernels(dtype).pack(w, wp)
    wz = np.zeros((k, npad), dtype)
    wz[:, :m] = w
    want = np.concatenate([wz[:, j : j + panel].ravel() for j in range(0, npad, panel)]
                          or [wp[:0]])
    np.testing.assert_array_equal(wp, want)


def test_kernels_refuse_other_dtypes():
    from npddpm.nn._gemm import kernels, packed_size

    with pytest.raises(TypeError, match="float32 or float64"):
        kernels(np.float16)
    with pytest.raises(TypeError, match="float32 or float64"):
        packed_size(3, 3, "int64")


def test_packed_size_mismatch_is_refused():
    from npddpm.nn._gemm import kernels

    g = kernels()
    w = np.ones((4, 9), np.float32)
    with pytest.raises(ValueError, match="packed_size"):
        g.pack(w, np.empty(4 * 9, np.float32))  # 9 columns pack as 16
    with pytest.raises(ValueError, match="pack"):
        g.matmul_packed(np.ones((2, 4), np.float32), np.empty(4 * 8, np.float32),
                        np.empty((2, 9), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", [5, 64, 256])
def test_predict_does_not_depend_on_the_tile(monkeypatch, tile, dtype):
    # INFER_TILE is a speed choice only: the products are fixed chains per element and the
    # SiLU kernels element-wise, so any tile gives the same bits (a tile-dependent sum would
    # show here, as OpenBLAS's did by row position).
    import npddpm.nn.mlp as mlp

    rng = np.random.default_rng(7)
    x = rng.standard_normal((700, 2)).astype(dtype)
    t = rng.integers(0, 1000, 700)
    ref = MLP(2, hidden=48, num_blocks=2, seed=4, dtype=dtype).predict(x, t)
    monkeypatch.setattr(mlp, "INFER_TILE", tile)
    got = MLP(2, hidden=48, num_blocks=2, seed=4, dtype=dtype).predict(x, t)
    np.testing.assert_array_equal(got, ref)


def test_product_shapes_are_checked():
    # the product takes raw pointers: a wrong shape must be refused, never read past an end
    from npddpm.nn._gemm import kernels, packed_size

    g = kernels()
    a = np.ones((4, 6), np.float32)
    wp = np.empty(packed_size(6, 9), np.float32)
    g.pack(np.ones((6, 9), np.float32), wp)
    with pytest.raises(ValueError, match="shapes"):
        g.matmul_packed(a, wp, np.empty((3, 9), np.float32))
    with pytest.raises(ValueError, match="pack"):
        g.matmul_packed(a[:, :5], wp, np.empty((4, 9), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        g.matmul_packed(a, wp, np.empty((4, 18), np.float32)[:, ::2])
