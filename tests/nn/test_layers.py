"""Every layer's backward pass against centred finite differences in float64.

Tolerance: the centred difference with h = 1e-5 has truncation error ~h²·|f'''|/6 ≈ 1e-11 and
rounding error ~ε·|f|/h ≈ 1e-11 relative to O(1) gradients, so a correct backward agrees to
~1e-9 or better; the issue's bound 1e-7 (norm-wise relative error) leaves two orders of
margin and still catches any wrong term (a missing term gives an O(1) error).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm.nn import blocks, conv, layers
from npddpm.testing.gradcheck import numerical_vjp, relative_error

TOL = 1e-7
seeds = st.integers(0, 2**32 - 1)


def check_pair(forward, backward, arrays, rng, *, input_names, param_names, tol=TOL):
    """Compare backward(v, cache) with centred differences of <forward(...), v> for every array.

    ``arrays`` maps argument position names to float64 arrays; ``forward`` takes them in order.
    ``input_names`` are the names whose gradient is the first return of backward (a tuple if
    several), ``param_names`` maps array name -> key in the grads dict.
    """
    names = list(arrays)

    def f(_):
        return forward(*[arrays[k] for k in names])[0]

    out, cache = forward(*[arrays[k] for k in names])
    v = rng.standard_normal(out.shape)
    dins, grads = backward(v, cache)
    if len(input_names) == 1:
        dins = (dins,)
    worst = 0.0
    for name, d in zip(input_names, dins, strict=True):
        err = relative_error(d, numerical_vjp(f, arrays[name], v))
        assert err < tol, (name, err)
        worst = max(worst, err)
    assert sorted(grads) == sorted(param_names.values())
    for name, key in param_names.items():
        assert grads[key].shape == arrays[name].shape
        err = relative_error(grads[key], numerical_vjp(f, arrays[name], v))
        assert err < tol, (name, err)
        worst = max(worst, err)
    return worst


@given(n=st.integers(1, 4), d_in=st.integers(1, 5), d_out=st.integers(1, 5), seed=seeds)
def test_linear(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    a = {
        "x": rng.standard_normal((n, 2, d_in)),
        "w": rng.standard_normal((d_in, d_out)),
        "b": rng.standard_normal(d_out),
    }
    check_pair(
        layers.linear_forward,
        layers.linear_backward,
        a,
        rng,
        input_names=["x"],
        param_names={"w": "w", "b": "b"},
    )


@pytest.mark.parametrize("name", ["silu", "gelu"])
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=seeds)
def test_activations(name, shape, seed):
    rng = np.random.default_rng(seed)
    fwd = getattr(layers, f"{name}_forward")
    bwd = getattr(layers, f"{name}_backward")
    check_pair(
        fwd, bwd, {"x": 3 * rng.standard_normal(shape)}, rng, input_names=["x"], param_names={}
    )


def test_activation_values_against_closed_forms():
    # Independent closed forms: SiLU(x) = x/(1+e^-x); GELU(1) = Φ(1) = 0.841344746068543.
    x = np.array([-30.0, -1.0, 0.0, 2.0, 30.0])
    # A few ulp: expit and 1/(1+e^-x) are each correctly rounded to within ~1 ulp (ε ≈ 2e-16).
    np.testing.assert_allclose(layers.silu_forward(x)[0], x / (1 + np.exp(-x)), rtol=1e-15)
    g = layers.gelu_forward(np.array([1.0, -1.0]))[0]
    # The reference values carry 15 significant digits, so 1e-14 is their own precision.
    np.testing.assert_allclose(g, [0.841344746068543, -0.158655253931457], rtol=1e-14)
    assert layers.silu_forward(np.float32([1.0]))[0].dtype == np.float32


@given(n=st.integers(1, 3), half=st.integers(1, 4), odd=st.booleans(), seed=seeds)
def test_timestep_embedding(n, half, odd, seed):
    rng = np.random.default_rng(seed)
    dim = 2 * half + int(odd)
    t = rng.uniform(0, 50, size=n)

    def fwd(t):
        return layers.timestep_embedding_forward(t, dim, dtype=np.float64)

    check_pair(
        fwd, layers.timestep_embedding_backward, {"t": t}, rng, input_names=["t"], param_names={}
    )


def test_timestep_embedding_values():
    # improved-diffusion: freqs_k = exp(-ln(10000) k / half); e = [cos(t f), sin(t f)].
    e, _ = layers.timestep_embedding_forward(np.array([0, 7]), 5, dtype=np.float64)
    f = np.array([1.0, 0.01])  # 10000^(-k/2), k = 0, 1
    # Same float64 cos/sin of phases that differ by ≤ 1 ulp (exp(−ln(1e4)/2) vs 0.01): 1e-15.
    np.testing.assert_allclose(e[1], np.r_[np.cos(7 * f), np.sin(7 * f), 0.0], rtol=1e-15)
    np.testing.assert_array_equal(e[0], [1, 1, 0, 0, 0])


@settings(max_examples=30)
@given(
    channels_last=st.booleans(),
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    per=st.integers(1, 2),
    hw=st.integers(1, 3),
    seed=seeds,
)
def test_group_norm(channels_last, n, groups, per, hw, seed):
    rng = np.random.default_rng(seed)
    c = groups * per
    # Groups of >= 3 elements: with 2 the normalised output is ±√(var/(var+ε)), a constant up
    # to O(ε), so dx ≈ 0 and a relative error would measure finite-difference noise only.
    a = {
        "x": rng.standard_normal((n, c, hw, hw + 2)),
        "g": rng.standard_normal(c),
        "b": rng.standard_normal(c),
    }

    if channels_last:
        a["x"] = np.ascontiguousarray(np.moveaxis(a["x"], 1, -1))

    def fwd(x, g, b):
        return layers.group_norm_forward(x, g, b, groups, channels_last=channels_last)

    check_pair(
        fwd, layers.group_norm_backward, a, rng, input_names=["x"], param_names={"g": "g", "b": "b"}
    )


@settings(max_examples=30)
@given(
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    per=st.integers(1, 3),
    hw=st.integers(1, 3),
    seed=seeds,
)
def test_group_norm_silu_gradients(n, groups, per, hw, seed):
    # The fused kernel in float64 (exact logistic) against centred differences, as every
    # other layer; groups of >= 3 elements for the reason given in test_group_norm.
    rng = np.random.default_rng(seed)
    c = groups * per
    a = {
        "x": rng.standard_normal((n, hw, hw + 2, c)),
        "g": rng.standard_normal(c),
        "b": rng.standard_normal(c),
    }

    def fwd(x, g, b):
        return layers.group_norm_silu_forward(x, g, b, groups)

    check_pair(
        fwd,
        layers.group_norm_silu_backward,
        a,
        rng,
        input_names=["x"],
        param_names={"g": "g", "b": "b"},
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_group_norm_silu_equals_the_composition(dtype):
    # Same function as silu(group_norm(x)) computed by the NumPy layers, forward and
    # backward. float64: the statistics are summed in a different order (float64 both), so
    # ~1e-15 relative; 1e-12 is a wide margin that still catches any wrong term (O(1e-2)).
    # float32: the fused kernel sums in float64 and uses a rational logistic (3e-7 absolute),
    # the NumPy layers sum pairwise in float32 over 8·8·8 = 512 elements (~1e-6 relative) and
    # the backward's mean subtractions amplify that by ~10: 1e-4 of the scale.
    rng = np.random.default_rng(7)
    x = (3 * rng.standard_normal((4, 8, 8, 16)) + 1).astype(dtype)
    g = rng.standard_normal(16).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    h, c_gn = layers.group_norm_forward(x, g, b, 2, channels_last=True)
    ref, c_act = layers.silu_forward(h)
    out, cache = layers.group_norm_silu_forward(x, g, b, 2)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, atol=tol * np.abs(ref).max(), rtol=0)
    v = rng.standard_normal(x.shape).astype(dtype)
    dref, gref = layers.group_norm_backward(layers.silu_backward(v, c_act)[0], c_gn)
    dx, grads = layers.group_norm_silu_backward(v, cache)
    assert dx.dtype == dtype and grads["g"].dtype == dtype
    np.testing.assert_allclose(dx, dref, atol=tol * np.abs(dref).max(), rtol=0)
    for k in ("g", "b"):
        np.testing.assert_allclose(grads[k], gref[k], atol=tol * np.abs(gref[k]).max(), rtol=0)
    with pytest.raises(ValueError, match="must divide"):
        layers.group_norm_silu_forward(x, g, b, 3)


def test_group_norm_statistics():
    # Each (sample, group) is standardised: mean 0, biased variance var/(var+eps).
    rng = np.random.default_rng(0)
    x = 3 + 2 * rng.standard_normal((2, 6, 4, 4))
    y, _ = layers.group_norm_forward(x, np.ones(6), np.zeros(6), 3, eps=0.0)
    yg = y.reshape(2, 3, -1)
    # Means and variances of 32 O(1) float64 values: rounding ~32·ε ≈ 1e-14.
    np.testing.assert_allclose(yg.mean(axis=2), 0, atol=1e-14)
    np.testing.assert_allclose(yg.var(axis=2), 1, rtol=1e-13)


@settings(max_examples=30)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 2),
    h=st.integers(1, 3),
    w=st.integers(1, 3),
    factor=st.integers(1, 3),
    seed=seeds,
)
def test_resampling(n, c, h, w, factor, seed):
    rng = np.random.default_rng(seed)
    for cl in (False, True):
        x = rng.standard_normal(
            (n, h * factor, w * factor, c) if cl else (n, c, h * factor, w * factor)
        )
        check_pair(
            lambda x, cl=cl: layers.avg_pool_forward(x, factor, channels_last=cl),
            layers.avg_pool_backward,
            {"x": x},
            rng,
            input_names=["x"],
            param_names={},
        )
        x = rng.standard_normal((n, h, w, c) if cl else (n, c, h, w))
        check_pair(
            lambda x, cl=cl: layers.upsample_forward(x, factor, channels_last=cl),
            layers.upsample_backward,
            {"x": x},
            rng,
            input_names=["x"],
            param_names={},
        )


def test_channels_last_layers_match_channels_first():
    # The same numbers in the other memory layout (the U-Net runs channels-last).
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6, 6))
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    pairs = [
        (
            layers.group_norm_forward(x, g, b, 2)[0],
            layers.group_norm_forward(xl, g, b, 2, channels_last=True)[0],
        ),
        (layers.avg_pool_forward(x)[0], layers.avg_pool_forward(xl, channels_last=True)[0]),
        (layers.upsample_forward(x)[0], layers.upsample_forward(xl, channels_last=True)[0]),
    ]
    for first, last in pairs:
        # Same formulas, different summation order over ≤ 72 values: ~1e-14 of O(1) numbers.
        np.testing.assert_allclose(last, first.transpose(0, 2, 3, 1), rtol=1e-13, atol=1e-14)


def test_resampling_values():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(layers.avg_pool_forward(x)[0][0, 0], [[2.5, 4.5], [10.5, 12.5]])
    u = layers.upsample_forward(np.array([[[[1.0, 2.0]]]]))[0]
    np.testing.assert_array_equal(u[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2]])
    with pytest.raises(ValueError, match="divisible by 2"):
        layers.avg_pool_forward(np.zeros((1, 1, 3, 4)))


@settings(max_examples=20)
@given(
    n=st.integers(1, 2),
    length=st.integers(1, 4),
    heads=st.integers(1, 2),
    d=st.integers(1, 3),
    seed=seeds,
)
def test_self_attention(n, length, heads, d, seed):
    rng = np.random.default_rng(seed)
    c = heads * d
    a = {
        "x": rng.standard_normal((n, length, c)),
        "wqkv": rng.standard_normal((c, 3 * c)) / np.sqrt(c),
        "bqkv": rng.standard_normal(3 * c),
        "wo": rng.standard_normal((c, c)),
        "bo": rng.standard_normal(c),
    }

    def fwd(x, wqkv, bqkv, wo, bo):
        return layers.self_attention_forward(x, wqkv, bqkv, wo, bo, heads)

    check_pair(
        fwd,
        layers.self_attention_backward,
        a,
        rng,
        input_names=["x"],
        param_names={"wqkv": "w_qkv", "bqkv": "b_qkv", "wo": "w_out", "bo": "b_out"},
    )


def test_self_attention_against_explicit_loops():
    # Independent oracle: per-head softmax attention written with explicit loops.
    rng = np.random.default_rng(1)
    n, length, heads, d = 2, 3, 2, 2
    c = heads * d
    x = rng.standard_normal((n, length, c))
    wqkv, bqkv = rng.standard_normal((c, 3 * c)), rng.standard_normal(3 * c)
    wo, bo = rng.standard_normal((c, c)), rng.standard_normal(c)
    y, _ = layers.self_attention_forward(x, wqkv, bqkv, wo, bo, heads)
    expected = np.zeros_like(y)
    for b in range(n):
        qkv = x[b] @ wqkv + bqkv
        o = np.zeros((length, c))
        for h in range(heads):
            q = qkv[:, h * d : (h + 1) * d]
            k = qkv[:, c + h * d : c + (h + 1) * d]
            v = qkv[:, 2 * c + h * d : 2 * c + (h + 1) * d]
            for i in range(length):
                s = np.array([q[i] @ k[j] / np.sqrt(d) for j in range(length)])
                p = np.exp(s) / np.exp(s).sum()
                o[i, h * d : (h + 1) * d] = sum(p[j] * v[j] for j in range(length))
        expected[b] = o @ wo + bo
    # Float64 sums of ≤ 12 products in a different order, then a softmax: ~1e-14; 1e-12 margin.
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------


def naive_conv2d(x, w, b, stride, padding):
    """Loop-by-loop cross-correlation: the independent oracle for the im2col version."""
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, f, ho, wo))
    for i in range(n):
        for j in range(f):
            for r in range(ho):
                for s in range(wo):
                    win = xp[i, :, r * stride : r * stride + kh, s * stride : s * stride + kw]
                    out[i, j, r, s] = np.sum(win * w[j]) + b[j]
    return out


conv_cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 2),
        "c": st.integers(1, 3),
        "f": st.integers(1, 3),
        "k": st.integers(1, 3),
        "stride": st.integers(1, 2),
        "padding": st.integers(0, 2),
        "extra": st.integers(0, 3),
        "seed": seeds,
    }
)


@settings(max_examples=40)
@given(case=conv_cases)
def test_conv2d_matches_naive_loops(case):
    rng = np.random.default_rng(case["seed"])
    k, c, f = case["k"], case["c"], case["f"]
    side = k + case["extra"]
    x = rng.standard_normal((case["n"], c, side, side + 1))
    w = rng.standard_normal((f, c, k, k))
    b = rng.standard_normal(f)
    y, _ = conv.conv2d_forward(x, w, b, case["stride"], case["padding"])
    # Both sum the same few products in float64; 1e-12 covers the different summation order.
    np.testing.assert_allclose(
        y, naive_conv2d(x, w, b, case["stride"], case["padding"]), rtol=1e-12, atol=1e-12
    )


@settings(max_examples=60)
@given(case=conv_cases, dtype=st.sampled_from([np.float32, np.float64]))
def test_fused_im2col_col2im_are_bitwise_the_numpy_ones(case, dtype):
    # The Numba kernels the convolution layers use copy the same values (im2col) and add the
    # same terms in the same order (col2im's reverse-order scatter), so equality is exact;
    # the NumPy functions are checked against loops above and by the gradient checks below.
    rng = np.random.default_rng(case["seed"])
    k, s, p = case["k"], case["stride"], case["padding"]
    side = k + case["extra"]
    x = rng.standard_normal((case["n"], side, side + 1, case["c"])).astype(dtype)
    cols = conv.im2col(x, k, k, s, p)
    np.testing.assert_array_equal(conv.im2col(x, k, k, s, p, fused=True), cols)
    d = rng.standard_normal(cols.shape).astype(dtype)
    np.testing.assert_array_equal(
        conv.col2im(d, x.shape, k, k, s, p, fused=True), conv.col2im(d, x.shape, k, k, s, p)
    )


@settings(max_examples=25)
@given(case=conv_cases)
def test_conv2d_gradients(case):
    rng = np.random.default_rng(case["seed"])
    k, c, f = case["k"], case["c"], case["f"]
    side = k + case["extra"]
    a = {
        "x": rng.standard_normal((case["n"], c, side, side + 1)),
        "w": rng.standard_normal((f, c, k, k)),
        "b": rng.standard_normal(f),
    }

    def fwd(x, w, b):
        return conv.conv2d_forward(x, w, b, case["stride"], case["padding"])

    check_pair(
        fwd, conv.conv2d_backward, a, rng, input_names=["x"], param_names={"w": "w", "b": "b"}
    )


def test_conv2d_shape_errors():
    with pytest.raises(ValueError, match="3 channels but the filters expect 2"):
        conv.conv2d_forward(np.zeros((1, 3, 4, 4)), np.zeros((1, 2, 3, 3)), np.zeros(1))
    with pytest.raises(ValueError, match="does not fit"):
        conv.conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), np.zeros(1))


# --------------------------------------------------------------------------------------
# Composite blocks
# --------------------------------------------------------------------------------------


@settings(max_examples=6)
@given(c_in=st.sampled_from([2, 4]), c_out=st.sampled_from([2, 4]), cl=st.booleans(), seed=seeds)
def test_res_block(c_in, c_out, cl, seed):
    shape = (2, 3, 3, c_in) if cl else (2, c_in, 3, 3)
    check_res_block(np.random.default_rng(seed), c_in, c_out, shape, channels_last=cl)


def check_res_block(rng, c_in, c_out, shape, **options):
    """check_pair for a residual block with perturbed parameters (``options`` go to
    ``res_block_forward``); returns the cache of one forward pass, for inspection."""
    p = blocks.res_block_params(rng, c_in, c_out, 3, np.float64)
    for key in p:  # non-trivial norms
        p[key] = p[key] + 0.3 * rng.standard_normal(p[key].shape)
    a = {"x": rng.standard_normal(shape), "emb": rng.standard_normal((2, 3))}
    a.update({f"p:{k}": v for k, v in p.items()})

    def fwd(x, emb, *vals):
        # One group: with one channel per group, GN₂ would remove the per-channel shift
        # that the embedding adds, and d/d(emb) would be exactly 0.
        return blocks.res_block_forward(x, emb, dict(zip(p, vals, strict=True)), 1, **options)

    check_pair(
        fwd,
        blocks.res_block_backward,
        a,
        rng,
        input_names=["x", "emb"],
        param_names={f"p:{k}": k for k in p},
    )
    return fwd(a["x"], a["emb"], *p.values())[1]


@settings(max_examples=6)
@given(heads=st.sampled_from([1, 2]), cl=st.booleans(), seed=seeds)
def test_attention_block(heads, cl, seed):
    rng = np.random.default_rng(seed)
    p = blocks.attention_block_params(rng, 4, np.float64)
    for key in p:
        p[key] = p[key] + 0.3 * rng.standard_normal(p[key].shape)
    a = {"x": rng.standard_normal((2, 2, 3, 4) if cl else (2, 4, 2, 3))}
    a.update({f"p:{k}": v for k, v in p.items()})

    def fwd(x, *vals):
        return blocks.attention_block_forward(
            x, dict(zip(p, vals, strict=True)), 2, heads, channels_last=cl
        )

    check_pair(
        fwd,
        blocks.attention_block_backward,
        a,
        rng,
        input_names=["x"],
        param_names={f"p:{k}": k for k in p},
    )
