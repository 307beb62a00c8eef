"""The fixed-order float32 product of npddpm.nn._gemm and the compiled inference chunk."""

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


SHAPES = [(1, 1, 1), (7, 5, 3), (13, 64, 24), (33, 17, 40), (256, 256, 256), (256, 256, 2),
          (11, 0, 9), (6, 300, 17)]


@pytest.mark.parametrize("n, k, m", SHAPES)
def test_matmul_is_the_fma_chain(n, k, m):
    from npddpm.nn._gemm import kernels

    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    a = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    c = np.full((n, m), np.nan, np.float32)
    kernels().matmul(a, w, c)
    np.testing.assert_array_equal(c, chain_oracle(a, w))


def test_matmul_row_is_independent_of_its_position():
    # The property BLAS lacks here (OpenBLAS float32: two results by row position mod 12):
    # every row of a rolled batch, tails included, gives the bits it gives in place.
    from npddpm.nn._gemm import kernels

    mm = kernels().matmul
    rng = np.random.default_rng(1)
    a = rng.standard_normal((256, 256)).astype(np.float32)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    ref = np.empty((256, 256), np.float32)
    mm(a, w, ref)
    for s in (1, 5, 6, 7, 12, 100):
        got = np.empty_like(ref)
        mm(np.roll(a, s, axis=0), w, got)
        np.testing.assert_array_equal(np.roll(got, -s, axis=0), ref, err_msg=f"shift {s}")
    for rows in (1, 4, 9):  # a few rows alone: the tail blocks
        got = np.empty((rows, 256), np.float32)
        mm(a[20 : 20 + rows], w, got)
        np.testing.assert_array_equal(got, ref[20 : 20 + rows])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 300, 1100])
def test_compiled_predict_equals_the_numpy_loop(threads, n):
    # The one-call chunk (npddpm.nn._mlp_kernels.predict_kernel) runs the same kernels in the
    # same order as the Python tile loop, so the two are bitwise equal; partial tiles included.
    rng = np.random.default_rng(n)
    m = MLP(2, hidden=48, num_blocks=2, learn_sigma=True, threads=threads, seed=4)
    assert m._compiled_ok()
    x = rng.standard_normal((n, 2)).astype(np.float32)
    t = rng.integers(0, 1000, n)
    got = m.predict(x, t)
    m._compiled_ok = lambda: False  # the Python loop on this instance
    np.testing.assert_array_equal(got, m.predict(x, t))


@pytest.mark.parametrize("k, m", [(0, 3), (5, 1), (9, 8), (9, 16), (9, 17), (9, 24), (9, 40)])
def test_pack_layout(k, m):
    # Panels of 16 columns, the last 8 or 16 wide, zero past M, each (K, width) contiguous:
    # rebuilt here from the layout's definition, independently of pack's loops.
    from npddpm.nn._gemm import kernels, packed_size

    w = np.random.default_rng(k + m).standard_normal((k, m)).astype(np.float32)
    npad = -(-m // 8) * 8
    assert packed_size(k, m) == k * npad
    wp = np.full(packed_size(k, m), np.nan, np.float32)
    kernels().pack(w, wp)
    wz = np.zeros((k, npad), np.float32)
    wz[:, :m] = w
    want = np.concatenate([wz[:, j : j + 16].ravel() for j in range(0, npad, 16)] or [wp[:0]])
    np.testing.assert_array_equal(wp, want)


def test_packed_size_mismatch_is_refused():
    from npddpm.nn._gemm import kernels

    g = kernels()
    w = np.ones((4, 9), np.float32)
    with pytest.raises(ValueError, match="packed_size"):
        g.pack(w, np.empty(4 * 9, np.float32))  # 9 columns pack as 16
    with pytest.raises(ValueError, match="pack"):
        g.matmul_packed(np.ones((2, 4), np.float32), np.empty(4 * 8, np.float32),
                        np.empty((2, 9), np.float32))


@pytest.mark.parametrize("tile", [5, 64, 256])
def test_float32_predict_does_not_depend_on_the_tile(monkeypatch, tile):
    # INFER_TILE_F32 is a speed choice only: the products are fixed chains per element and the
    # SiLU kernels element-wise, so any tile gives the same bits (a tile-dependent sum would
    # show here, as OpenBLAS's did by row position).
    import npddpm.nn.mlp as mlp

    rng = np.random.default_rng(7)
    x = rng.standard_normal((700, 2)).astype(np.float32)
    t = rng.integers(0, 1000, 700)
    ref = MLP(2, hidden=48, num_blocks=2, seed=4).predict(x, t)
    monkeypatch.setattr(mlp, "INFER_TILE_F32", tile)
    np.testing.assert_array_equal(MLP(2, hidden=48, num_blocks=2, seed=4).predict(x, t), ref)
