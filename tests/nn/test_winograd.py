"""The Winograd F(2×2, 3×3) convolution against independent references.

- forward: the loop-by-loop cross-correlation of ``test_layers.naive_conv2d``;
- backward: centred finite differences in float64 (it is the exact adjoint of the forward,
  so it must be the gradient of what the forward computes), and the im2col backward;
- each Numba transform against its adjoint: ``<T x, y> = <x, Tᵀ y>``;
- float32 against the float64 result, with a rounding bound.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm.nn import conv
from npddpm.nn._winograd_kernels import kernels
from npddpm.nn.winograd import (
    winograd_applicable,
    winograd_conv_backward,
    winograd_conv_forward,
)

from .test_layers import check_pair, check_res_block, naive_conv2d

seeds = st.integers(0, 2**32 - 1)
cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "h": st.integers(1, 5).map(lambda k: 2 * k),
        "w": st.integers(1, 5).map(lambda k: 2 * k),
        "c": st.integers(1, 6),
        "f": st.integers(1, 6),
        "seed": seeds,
    }
)


def _arrays(case, dtype=np.float64):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["h"], case["w"], case["c"])).astype(dtype)
    w = rng.standard_normal((case["f"], case["c"], 3, 3)).astype(dtype)
    b = rng.standard_normal(case["f"]).astype(dtype)
    return rng, x, w, b


@settings(max_examples=40)
@given(case=cases)
def test_forward_matches_naive_loops(case):
    _, x, w, b = _arrays(case)
    y, _ = winograd_conv_forward(x, w, b)
    ref = naive_conv2d(x.transpose(0, 3, 1, 2), w, b, 1, 1).transpose(0, 2, 3, 1)
    # Both sum at most 9·C products of O(1) values in float64 (the transforms' coefficients
    # 0, ±½, ±1 are exact); 1e-12 is ~1e3 ulp of the O(10) results.
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=25)
@given(case=cases)
def test_backward_against_finite_differences(case):
    rng, x, w, b = _arrays(case)
    # Tolerance: see tests/nn/test_layers.py (1e-7, two orders above the difference error).
    check_pair(
        winograd_conv_forward,
        winograd_conv_backward,
        {"x": x, "w": w, "b": b},
        rng,
        input_names=["x"],
        param_names={"w": "w", "b": "b"},
    )


@settings(max_examples=30)
@given(case=cases)
def test_backward_matches_im2col(case):
    rng, x, w, b = _arrays(case)
    _, cw = winograd_conv_forward(x, w, b)
    y, ci = conv.conv2d_nhwc_forward(x, w, b, 1, 1)
    g = rng.standard_normal(y.shape)
    dx_w, gw = winograd_conv_backward(g, cw)
    dx_i, gi = conv.conv2d_nhwc_backward(g, ci)
    # Two different float64 summations of the same ≤ 9·F·N·H·W products: 1e-11.
    np.testing.assert_allclose(dx_w, dx_i, rtol=1e-11, atol=1e-11)
    for k in ("w", "b"):
        np.testing.assert_allclose(gw[k], gi[k], rtol=1e-11, atol=1e-11)
    dx_none, g2 = winograd_conv_backward(g, cw, need_dx=False)
    assert dx_none is None
    np.testing.assert_array_equal(g2["w"], gw["w"])


@settings(max_examples=30)
@given(case=cases)
def test_transforms_are_adjoint_pairs(case):
    # <input_transform(x), V> = <x, input_adjoint(V)> and likewise for the output pair:
    # each kernel is checked against the other, written separately (gather vs scatter).
    rng, x, _, _ = _arrays(case)
    k = kernels()
    n, h, w, c = x.shape
    t = n * (h // 2) * (w // 2)
    v = np.empty((16, t, c))
    k.input_transform(x, v)
    v2 = rng.standard_normal(v.shape)
    dx = np.empty_like(x)
    k.input_adjoint(v2, dx)
    assert np.isclose(np.vdot(v, v2), np.vdot(x, dx), rtol=1e-12, atol=1e-12)

    m = rng.standard_normal((16, t, case["f"]))
    y = np.empty((n, h, w, case["f"]))
    k.output_transform(m, np.zeros(case["f"]), y)
    y2 = rng.standard_normal(y.shape)
    dm = np.empty_like(m)
    db = np.empty(case["f"])
    k.output_adjoint(y2, dm, db)
    assert np.isclose(np.vdot(y, y2), np.vdot(m, dm), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, y2.sum(axis=(0, 1, 2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c,f", [(8, 8), (32, 32), (96, 32), (64, 64)])
def test_float32_rounding(c, f):
    # Relative error of the float32 result against float64, norm-wise. im2col's own error is
    # ~eps·sqrt(9C) (eps = 6e-8); the transforms add a handful of roundings per value with
    # coefficients ≤ 1 in magnitude, so a 2e-6 bound (≥ 3× the worst we measured, ~6e-7 at
    # C = 96) catches a wrong sign or index (O(1) errors) while allowing the rounding.
    rng = np.random.default_rng(c * 100 + f)
    x = rng.standard_normal((2, 8, 8, c))
    w = rng.standard_normal((f, c, 3, 3)) / np.sqrt(9 * c)
    b = rng.standard_normal(f)
    y64, c64 = winograd_conv_forward(x, w, b)
    y32, c32 = winograd_conv_forward(*(a.astype(np.float32) for a in (x, w, b)))
    g = rng.standard_normal(y64.shape)
    dx64, g64 = winograd_conv_backward(g, c64)
    dx32, g32 = winograd_conv_backward(g.astype(np.float32), c32)
    assert y32.dtype == dx32.dtype == g32["w"].dtype == g32["b"].dtype == np.float32
    for lo, hi in [(y32, y64), (dx32, dx64), (g32["w"], g64["w"]), (g32["b"], g64["b"])]:
        assert np.linalg.norm(lo - hi) / np.linalg.norm(hi) < 2e-6


def test_backward_takes_a_non_contiguous_gradient():
    # The U-Net hands the convolution a channel slice of a concatenation's gradient.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 3))
    w = rng.standard_normal((5, 3, 3, 3))
    _, cache = winograd_conv_forward(x, w, np.zeros(5))
    g_wide = rng.standard_normal((2, 4, 6, 9))
    g = g_wide[..., 2:7]
    assert not g.flags.c_contiguous
    dx1, g1 = winograd_conv_backward(g, cache)
    dx2, g2 = winograd_conv_backward(np.ascontiguousarray(g), cache)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(g1["w"], g2["w"])


def test_applicability_and_dispatch():
    x = np.zeros((1, 4, 6, 3))
    assert winograd_applicable(x.shape, (2, 3, 3, 3), 1, 1)
    assert not winograd_applicable((1, 5, 6, 3), (2, 3, 3, 3), 1, 1)  # odd height
    assert not winograd_applicable(x.shape, (2, 3, 3, 3), 2, 1)  # stride 2
    assert not winograd_applicable(x.shape, (2, 3, 3, 3), 1, 0)  # padding 0
    assert not winograd_applicable(x.shape, (2, 3, 1, 1), 1, 1)  # 1×1 kernel
    with pytest.raises(ValueError, match="needs a 3×3 kernel, stride 1, padding 1"):
        conv.conv2d_nhwc_forward(x, np.zeros((2, 3, 3, 3)), np.zeros(2), 2, 1, algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        conv.conv2d_nhwc_forward(x, np.zeros((2, 3, 3, 3)), np.zeros(2), 1, 1, algorithm="fft")
    with pytest.raises(ValueError, match="H, W even"):
        winograd_conv_forward(np.zeros((1, 5, 6, 3)), np.zeros((2, 3, 3, 3)), np.zeros(2))
    # "auto": Winograd only where it applies and winograd_pays (16 → 16: yes; 3 → 8: no).
    wide = np.zeros((1, 4, 4, 16))
    _, cache = conv.conv2d_nhwc_forward(
        wide, np.zeros((16, 16, 3, 3)), np.zeros(16), 1, 1, algorithm="auto"
    )
    assert type(cache).__name__ == "WinogradCache"
    _, cache = conv.conv2d_nhwc_forward(
        x, np.zeros((8, 3, 3, 3)), np.zeros(8), 1, 1, algorithm="auto"
    )
    assert isinstance(cache, tuple) and type(cache).__name__ == "tuple"


@settings(max_examples=6)
@given(c_in=st.sampled_from([2, 4]), c_out=st.sampled_from([2, 4]), seed=seeds)
def test_res_block_with_winograd(c_in, c_out, seed):
    cache = check_res_block(
        np.random.default_rng(seed),
        c_in,
        c_out,
        (2, 4, 2, c_in),
        channels_last=True,
        conv_algorithm="winograd",
    )
    assert type(cache[2]).__name__ == "WinogradCache"  # conv1 really ran by Winograd
