"""Whole-model checks for MLP and UNet: random-direction VJP checks in float64 (JAX's
``check_vjp`` idea), the params/grads contract, determinism, buffer reuse and bad input."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm.nn import MLP, UNet
from npddpm.testing.gradcheck import directional_vjp_check, relative_error

seeds = st.integers(0, 2**32 - 1)

# <u, Jᵀv> against <(f(x+hu) − f(x−hu))/2h, v> with h = 1e-5: the difference is the O(h²)
# truncation term (~1e-10 of the scale) plus rounding ~ε·|f|/h (~1e-11), so 1e-7 of the scale
# Σ|uᵢ (Jᵀv)ᵢ| is two orders above what a correct backward produces, and any wrong or missing
# term (an O(1) part of the sum) is far above it. When <u, Jᵀv> is tiny the rounding of the
# two evaluations dominates: each carries ~ε·Σ|fᵢvᵢ| of absolute error and the quotient
# divides by 2h, so a floor ROUND·Σ|fᵢvᵢ| with ROUND = 1e-9 (≈ 50·ε/h) covers it.
VJP_TOL = 1e-7
ROUND = 1e-9


def assert_vjp(f, x, vjp, v, rng):
    u = rng.standard_normal(x.shape)
    floor = ROUND * float(np.sum(np.abs(f(x) * v)))
    analytic, numeric = directional_vjp_check(f, x, vjp, v, u)
    scale = float(np.sum(np.abs(u * vjp)))
    assert abs(analytic - numeric) <= VJP_TOL * scale + floor, (analytic, numeric, scale, floor)


def check_model_vjp(model, x, t, rng, *, per_key=True):
    y, cache = model.forward(x, t)
    v = rng.standard_normal(y.shape)
    dx, grads = model.vjp(v, cache)
    assert list(grads) == list(model.params)
    assert_vjp(lambda z: model.forward(z, t)[0], x, dx, v, rng)
    keys = list(model.params) if per_key else []
    for k in keys:
        assert grads[k].shape == model.params[k].shape
        assert_vjp(lambda _: model.forward(x, t)[0], model.params[k], grads[k], v, rng)
    # All parameters at once, along one random direction.
    flat = np.concatenate([model.params[k].ravel() for k in model.params])
    gflat = np.concatenate([grads[k].ravel() for k in model.params])

    def f_all(z):
        i = 0
        for p in model.params.values():
            p[...] = z[i : i + p.size].reshape(p.shape)
            i += p.size
        return model.forward(x, t)[0]

    assert_vjp(f_all, flat, gflat, v, rng)
    f_all(flat)


def perturb(model, rng, scale=0.3):
    """Move group-norm γ/β (1 and 0 at initialisation) away from special values."""
    for p in model.params.values():
        p += scale * rng.standard_normal(p.shape)


@settings(max_examples=20)
@given(
    dim=st.integers(1, 3),
    hidden=st.integers(1, 6),
    blocks=st.integers(0, 2),
    emb=st.integers(2, 5),
    learn_sigma=st.booleans(),
    n=st.integers(1, 4),
    seed=seeds,
)
def test_mlp_vjp(dim, hidden, blocks, emb, learn_sigma, n, seed):
    rng = np.random.default_rng(seed)
    m = MLP(
        dim,
        hidden=hidden,
        num_blocks=blocks,
        time_embed_dim=emb,
        learn_sigma=learn_sigma,
        seed=seed % 1000,
        dtype=np.float64,
    )
    x = rng.standard_normal((n, dim))
    t = rng.integers(0, 1000, n)
    assert m.forward(x, t)[0].shape == (n, dim * (2 if learn_sigma else 1))
    check_model_vjp(m, x, t, rng)


unet_cases = st.fixed_dictionaries(
    {
        "mult": st.sampled_from([(1,), (1, 2), (1, 1, 2)]),
        "attention": st.booleans(),
        "heads": st.sampled_from([1, 2]),
        "learn_sigma": st.booleans(),
        "channels": st.integers(1, 2),
        "side": st.sampled_from([4, 8]),
        "seed": seeds,
    }
)


@settings(max_examples=8)
@given(case=unet_cases)
def test_unet_vjp(case):
    rng = np.random.default_rng(case["seed"])
    # base 4 with 2 groups: every group has ≥ 2 channels (a one-channel group would make the
    # gradient w.r.t. the embedding projection exactly zero, see test_res_block).
    m = UNet(
        case["channels"],
        base_channels=4,
        channel_mult=case["mult"],
        groups=2,
        attention=case["attention"],
        heads=case["heads"],
        learn_sigma=case["learn_sigma"],
        time_embed_dim=6,
        dtype=np.float64,
        seed=1,
    )
    perturb(m, rng)
    x = rng.standard_normal((2, case["channels"], case["side"], case["side"]))
    t = rng.integers(0, 1000, 2)
    out, _ = m.forward(x, t)
    assert out.shape == (2, m.out_channels, case["side"], case["side"])
    check_model_vjp(m, x, t, rng, per_key=case["seed"] % 3 == 0)


def test_unet_vjp_with_winograd_convolutions():
    # base 16: every 3×3 convolution but the input and output ones runs by Winograd
    # (16·16 ≥ 128, see conv.winograd_pays); the models above are too narrow for it.
    rng = np.random.default_rng(5)
    m = UNet(1, base_channels=16, groups=4, time_embed_dim=6, dtype=np.float64, seed=3)
    perturb(m, rng, scale=0.1)
    x = rng.standard_normal((2, 1, 4, 4))
    t = rng.integers(0, 1000, 2)
    _, cache = m.forward(x, t)
    kinds = {type(c[2]).__name__ for kind, _, c in cache.chunks[0][0] if kind == "res"}
    assert kinds == {"WinogradCache"}
    check_model_vjp(m, x, t, rng, per_key=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unet_conv_algorithms_agree(dtype):
    # The same model computed with Winograd ("auto") and with im2col everywhere: equal up
    # to rounding. Observed worst relative errors (outputs and every gradient): 3.4e-15 in
    # float64 and 2.0e-6 in float32 (eps = 6e-8 amplified by ~20 layers and the group norms'
    # divisions); the bounds 1e-12 and 2e-5 leave ~10× headroom and are far below the O(1)
    # error of a wrong term.
    rng = np.random.default_rng(6)
    a = UNet(1, dtype=dtype, seed=4)
    b = UNet(1, dtype=dtype, seed=4, conv_algorithm="im2col")
    x = rng.standard_normal((3, 1, 8, 8)).astype(dtype)
    t = rng.integers(0, 1000, 3)
    ya, ca = a.forward(x, t)
    yb, cb = b.forward(x, t)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert relative_error(ya, yb) < tol
    v = rng.standard_normal(ya.shape).astype(dtype)
    ga, gb = a.backward(v, ca), b.backward(v, cb)
    for k in a.params:
        assert relative_error(ga[k], gb[k]) < tol, k
    with pytest.raises(ValueError, match="conv_algorithm must be 'auto'"):
        UNet(1, conv_algorithm="fft")


def test_deterministic_init_and_dtypes():
    a, b = MLP(3, seed=5, dtype=np.float64), MLP(3, seed=5, dtype=np.float64)
    c, d = MLP(3, seed=6, dtype=np.float64), MLP(3, seed=5, dtype=np.float32)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(d.params[k], a.params[k].astype(np.float32))
        assert d.params[k].dtype == np.float32
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)
    u, w = UNet(1, seed=2, dtype=np.float64), UNet(1, seed=2)
    for k in u.params:
        np.testing.assert_array_equal(w.params[k], u.params[k].astype(np.float32))


def test_default_options_and_learn_sigma():
    m = MLP(2)
    x = np.zeros((3, 2), np.float32)
    assert m(x, np.array([0, 5, 999])).shape == (3, 2)
    assert MLP(2, learn_sigma=True).forward(x, np.arange(3))[0].shape == (3, 4)
    u = UNet(3, learn_sigma=True)
    out, cache = u.forward(np.zeros((2, 3, 8, 8), np.float32), np.array([1, 2]))
    assert out.shape == (2, 6, 8, 8) and out.dtype == np.float32
    g = u.backward(np.ones_like(out), cache)
    assert list(g) == list(u.params)
    assert all(g[k].dtype == np.float32 and g[k].shape == u.params[k].shape for k in g)


def test_mlp_buffers_are_owned_by_their_cache():
    # Two forwards in flight, backpropagated in either order, give the gradients of a fresh
    # model; returned outputs and grads are not overwritten by later steps.
    rng = np.random.default_rng(0)
    m, ref = MLP(2, hidden=8, num_blocks=2), MLP(2, hidden=8, num_blocks=2)
    x1, x2 = (rng.standard_normal((4, 2)).astype(np.float32) for _ in range(2))
    t = np.arange(4)
    v = rng.standard_normal((4, 2)).astype(np.float32)
    y1, c1 = m.forward(x1, t)
    y1_copy = y1.copy()
    _, c2 = m.forward(x2, t)
    g2 = m.backward(v, c2)
    g2_copy = {k: a.copy() for k, a in g2.items()}
    g1 = m.backward(v, c1)
    m.backward(v, m.forward(x2, t)[1])
    np.testing.assert_array_equal(y1, y1_copy)
    for k in g2:
        np.testing.assert_array_equal(g2[k], g2_copy[k])
    for x, g in ((x1, g1), (x2, g2)):
        gr = ref.backward(v, ref.forward(x, t)[1])
        for k in g:
            np.testing.assert_array_equal(g[k], gr[k])
    with pytest.raises(ValueError, match="already used by backward"):
        m.backward(v, c1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shared_t", [True, False])
def test_mlp_predict_equals_forward(dtype, threads, shared_t):
    # The inference pass regroups the input layer as x·W_x + (e(t)·W_e + b) and runs in
    # tiles of INFER_TILE rows; it is the same function as forward(). 2·MIN_CHUNK + 88 rows
    # make, with threads=2, two chunks, each ending in a partial tile. Tolerance: in float64 the
    # regrouped sums differ by a few ulp of the pre-activations (|h| ≲ 10) amplified through
    # 2 blocks of 64-wide products: 1e-12 is ~5000 ulp, far below any wrong term (O(1e-2)).
    # In float32 the same argument with ε = 6e-8 plus the fused σ's 3e-7 error gives 2e-5.
    from npddpm.nn.mlp import INFER_TILE, MIN_CHUNK

    rng = np.random.default_rng(3)
    n = 2 * MIN_CHUNK + 88
    assert (n // 2) % INFER_TILE and n // 2 > INFER_TILE
    assert len(m_bounds := MLP(3, threads=threads)._chunks(n)) == threads + 1, m_bounds
    m = MLP(3, hidden=64, num_blocks=2, learn_sigma=True, dtype=dtype, threads=threads)
    x = rng.standard_normal((n, 3)).astype(dtype)
    t = np.full(n, 417) if shared_t else rng.integers(0, 1000, n)
    ref, _ = m.forward(x, t)
    got = m.predict(x, t)
    scale = np.max(np.abs(ref))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert got.dtype == dtype and got.shape == (n, 6)
    assert np.max(np.abs(got - ref)) <= tol * scale
    np.testing.assert_array_equal(m(x, t), got)  # __call__ is predict
    # a model whose timestep embedding is ignored would pass the shared-t case only; a
    # different t must change the output
    assert np.max(np.abs(m.predict(x, (t + 1) % 1000) - got)) > 1e-4 * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shared_t", [True, False])
def test_mlp_predict_is_batch_invariant(dtype, threads, shared_t):
    # Row i of predict() depends on x[i], t[i] alone, bitwise: a sharded sampler
    # (npddpm.distributed) reproduces a single-process run only if so. OpenBLAS alone is not
    # (its GEMM kernel depends on the number of rows: 1 row, and a thin output layer below
    # about 2^20 multiply-adds, sum differently, up to 1e-7 apart in float32), so this fails
    # without the fixed-size tiles. Slices: one row, a few rows, across a tile boundary, a
    # whole thread chunk and a tail; out_dim 2 is the thin layer where the kernel switches.
    rng = np.random.default_rng(5)
    n = 2 * 1100 + 37  # two thread chunks at threads=2, a partial last tile
    m = MLP(2, hidden=256, num_blocks=2, dtype=dtype, threads=threads)
    x = rng.standard_normal((n, 2)).astype(dtype)
    t = np.full(n, 417) if shared_t else rng.integers(0, 1000, n)
    full = m.predict(x, t)
    for a, b in ((0, 1), (1, 2), (5, 9), (250, 262), (0, 1023), (1000, 2100), (7, n), (n - 1, n)):
        np.testing.assert_array_equal(m.predict(x[a:b], t[a:b]), full[a:b], err_msg=f"{a}:{b}")


@pytest.mark.parametrize("blocks", [0, 1, 2])
@pytest.mark.parametrize("n", [300, 1100])  # one chunk; two chunks in two threads
def test_mlp_compiled_pass_equals_numpy_pass(blocks, n):
    # The float32 step runs each chunk as one compiled call (_mlp_kernels) that calls the
    # same cblas_sgemm as np.matmul and the same SiLU kernels in the same order, so it must
    # equal the NumPy-orchestrated pass bit for bit (outputs, dx and every gradient).
    from npddpm.nn._mlp_kernels import kernels

    if kernels() is None:
        pytest.skip("NumPy's OpenBLAS exposes no cblas_sgemm: the compiled pass is not used")
    rng = np.random.default_rng(blocks * 10 + n)
    m = MLP(3, hidden=24, num_blocks=blocks, time_embed_dim=6, threads=2, seed=1)
    assert m._jit() is not None
    x = rng.standard_normal((n, 3)).astype(np.float32)
    t = rng.integers(0, 1000, n)
    v = rng.standard_normal((n, 3)).astype(np.float32)
    y1, c1 = m.forward(x, t)
    dx1, g1 = m.vjp(v, c1)
    m._jit = lambda: None  # force the NumPy pass on this instance
    y2, c2 = m.forward(x, t)
    dx2, g2 = m.vjp(v, c2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)


def test_mlp_compiled_pass_with_strided_inputs_and_parameters():
    # Non-contiguous x and dout are accepted; a parameter replaced by a Fortran-ordered
    # array (the BLAS gets pointers and row strides) makes the model fall back to the NumPy
    # pass rather than read it wrongly. Reference: float64 copies of the same model.
    rng = np.random.default_rng(3)
    m = MLP(2, hidden=16, num_blocks=1, time_embed_dim=4, seed=2)
    ref = MLP(2, hidden=16, num_blocks=1, time_embed_dim=4, seed=2, dtype=np.float64)
    wide = rng.standard_normal((50, 4)).astype(np.float32)
    x, v = wide[:, ::2], wide[:, 1::2]
    t = rng.integers(0, 1000, 50)
    m.params["block0.w1"] = np.asfortranarray(m.params["block0.w1"])
    assert m._jit() is None
    for model_params_contiguous in (False, True):
        if model_params_contiguous:
            m.params["block0.w1"] = np.ascontiguousarray(m.params["block0.w1"])
        y, c = m.forward(x, t)
        dx, g = m.vjp(v, c)
        y64, c64 = ref.forward(x.astype(np.float64), t)
        dx64, g64 = ref.vjp(v.astype(np.float64), c64)
        # float32 against float64 through four layers: observed ≤ 2.3e-7 (a few eps); 1e-5
        # leaves 40× of slack and is far below the O(1) error of a misread matrix.
        assert relative_error(y, y64) < 1e-5
        assert relative_error(dx, dx64) < 1e-5
        assert max(relative_error(g[k], g64[k]) for k in g) < 1e-5


def test_fused_sigmoid_accuracy():
    # The rational-tanh logistic against float64 on a dense grid covering the whole range in
    # which σ is not 0 or 1 in float32, plus the tails; the bound 3e-7 (≈ 2.5 ulp at 1) is
    # what the docstring of npddpm.nn._fused promises.
    from npddpm.nn._fused import kernels

    k = kernels()
    h = np.linspace(-30, 30, 2_000_000, dtype=np.float32).reshape(1000, -1)
    a = np.empty_like(h)
    k.bias_silu(h, np.zeros(h.shape[1], np.float32), a)
    h64 = h.astype(np.float64)
    silu = h64 / (1 + np.exp(-h64))
    assert np.max(np.abs(a - silu) / np.maximum(np.abs(h64), 1)) < 3e-7


def test_import_compiles_nothing():
    code = "import sys, npddpm.nn; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_bad_input_errors():
    m = MLP(2, hidden=4)
    with pytest.raises(TypeError, match=r"dtype float64 .*astype\(np.float32\)"):
        m.forward(np.zeros((3, 2)), np.arange(3))
    with pytest.raises(ValueError, match=r"shape \(N, dim\)"):
        m.forward(np.zeros((3, 5), np.float32), np.arange(3))
    with pytest.raises(TypeError, match="integer array"):
        m.forward(np.zeros((3, 2), np.float32), np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        m.forward(np.zeros((3, 2), np.float32), np.arange(4))
    with pytest.raises(ValueError, match=">= 0"):
        m.forward(np.zeros((3, 2), np.float32), np.array([0, -1, 2]))
    with pytest.raises(TypeError, match=r"float32.*float64"):
        MLP(2, dtype=np.int64)
    with pytest.raises(ValueError, match="fused=True needs"):
        MLP(2, dtype=np.float64, fused=True)
    _, cache = m.forward(np.zeros((3, 2), np.float32), np.arange(3))
    with pytest.raises(ValueError, match="dout has 2 rows"):
        m.backward(np.zeros((2, 2), np.float32), cache)
    with pytest.raises(TypeError, match="this model's forward"):
        MLP(2, hidden=4).backward(np.zeros((3, 2), np.float32), cache)


def test_unet_side_errors():
    u = UNet(1, channel_mult=(1, 2, 2))
    t = np.arange(2)
    for side in (6, 2, 36):
        with pytest.raises(ValueError, match=rf"side {side} is not supported.*multiple of 4"):
            u.forward(np.zeros((2, 1, side, side), np.float32), t)
    with pytest.raises(ValueError, match="square"):
        u.forward(np.zeros((2, 1, 8, 4), np.float32), t)
    with pytest.raises(ValueError, match=r"shape \(N, channels, S, S\)"):
        u.forward(np.zeros((2, 3, 8, 8), np.float32), t)
    with pytest.raises(TypeError, match="astype"):
        u.forward(np.zeros((2, 1, 8, 8)), t)
    with pytest.raises(ValueError, match="groups=8 must divide every width"):
        UNet(1, base_channels=12)
    for side in (4, 8, 32):  # every supported side works for a 2-level U-Net
        out = UNet(1, base_channels=8).forward(np.zeros((1, 1, side, side), np.float32), t[:1])[0]
        assert out.shape == (1, 1, side, side)


def test_mlp_data_parallel_chunks_vjp():
    # threads=3 with 3·MIN_CHUNK + 5 rows: three chunks run in worker threads and their
    # parameter gradients are summed; the VJP check covers the split and the sum.
    from npddpm.nn.mlp import MIN_CHUNK

    rng = np.random.default_rng(7)
    m = MLP(2, hidden=4, num_blocks=1, time_embed_dim=4, dtype=np.float64, threads=3)
    n = 3 * MIN_CHUNK + 5
    assert len(m._chunks(n)) - 1 == 3
    x = rng.standard_normal((n, 2))
    check_model_vjp(m, x, rng.integers(0, 1000, n), rng)


def test_unet_data_parallel_chunks_vjp():
    # threads=2 with 17 images: two chunks (8 and 9 images) in two threads, gradients summed.
    rng = np.random.default_rng(8)
    m = UNet(1, base_channels=4, groups=2, time_embed_dim=4, dtype=np.float64, threads=2)
    perturb(m, rng)
    assert m._runner.bounds(17) == [0, 8, 17]
    x = rng.standard_normal((17, 1, 4, 4))
    check_model_vjp(m, x, rng.integers(0, 1000, 17), rng, per_key=False)


def test_retain_freed_memory_is_idempotent_and_optional():
    # On glibc (the CI and development machines) mallopt accepts both settings; elsewhere
    # the function must be a harmless no-op that says so.
    import platform

    from npddpm.nn._malloc import retain_freed_memory

    applied = retain_freed_memory()
    assert applied is retain_freed_memory()  # cached: applied once per process
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied is True
    m = UNet(1, base_channels=8, channel_mult=(1,), attention=False, retain_memory=False)
    assert m.retain_memory is False
