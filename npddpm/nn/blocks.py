r"""Composite U-Net blocks built from the layer pairs: a residual block with timestep
conditioning and a residual self-attention block.

Composite blocks take their parameters as one dict (keys such as ``"conv1.w"``) and return
gradients in a dict with exactly the same keys; caches nest the caches of the layers and
are unwound in reverse order, as in cs231n's ``affine_relu_forward``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .conv import conv2d_backward, conv2d_forward, conv2d_nhwc_backward, conv2d_nhwc_forward
from .layers import (
    group_norm_backward,
    group_norm_forward,
    group_norm_silu_backward,
    group_norm_silu_forward,
    linear_backward,
    linear_forward,
    self_attention_backward,
    self_attention_forward,
    silu_backward,
    silu_forward,
)

__all__ = [
    "attention_block_backward",
    "attention_block_forward",
    "attention_block_params",
    "res_block_backward",
    "res_block_forward",
    "res_block_params",
]

Cache = Any
Params = dict[str, np.ndarray]


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype) -> np.ndarray:
    # PyTorch's default for Linear/Conv2d weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _gn_silu(x, gamma, beta, groups, channels_last):
    """SiLU(GN(x)): fused when channels-last (returns ``out, gn_cache, silu_cache``)."""
    if channels_last:
        out, c = group_norm_silu_forward(x, gamma, beta, groups)
        return out, c, None
    h, c_gn = group_norm_forward(x, gamma, beta, groups)
    out, c_act = silu_forward(h)
    return out, c_gn, c_act


def _gn_silu_backward(dout, c_gn, c_act):
    if c_act is None:
        return group_norm_silu_backward(dout, c_gn)
    dh, _ = silu_backward(dout, c_act)
    return group_norm_backward(dh, c_gn)


def res_block_params(
    rng: np.random.Generator, c_in: int, c_out: int, emb_dim: int, dtype: Any
) -> Params:
    """Initial parameters of :func:`res_block_forward` (PyTorch's default initialisation)."""
    p = {
        "gn1.g": np.ones(c_in, dtype=dtype),
        "gn1.b": np.zeros(c_in, dtype=dtype),
        "conv1.w": _uniform(rng, (c_out, c_in, 3, 3), 9 * c_in, dtype),
        "conv1.b": _uniform(rng, (c_out,), 9 * c_in, dtype),
        "emb.w": _uniform(rng, (emb_dim, c_out), emb_dim, dtype),
        "emb.b": _uniform(rng, (c_out,), emb_dim, dtype),
        "gn2.g": np.ones(c_out, dtype=dtype),
        "gn2.b": np.zeros(c_out, dtype=dtype),
        "conv2.w": _uniform(rng, (c_out, c_out, 3, 3), 9 * c_out, dtype),
        "conv2.b": _uniform(rng, (c_out,), 9 * c_out, dtype),
    }
    if c_in != c_out:
        p["skip.w"] = _uniform(rng, (c_out, c_in, 1, 1), c_in, dtype)
        p["skip.b"] = _uniform(rng, (c_out,), c_in, dtype)
    return p


def res_block_forward(
    x: np.ndarray,
    emb: np.ndarray,
    p: Params,
    groups: int,
    *,
    channels_last: bool = False,
    conv_algorithm: str = "im2col",
) -> tuple[np.ndarray, Cache]:
    r"""Residual block with timestep conditioning (Ho et al. 2020; improved-diffusion's
    ``ResBlock`` without dropout or scale-shift norm).

    .. math::
        h_1 &= \operatorname{conv}_1(\operatorname{SiLU}(\operatorname{GN}_1(x)))
               + W_e^\top \operatorname{SiLU}(e) + b_e \quad\text{(broadcast over H, W)} \\
        y &= \operatorname{skip}(x)
             + \operatorname{conv}_2(\operatorname{SiLU}(\operatorname{GN}_2(h_1)))

    ``skip`` is the identity when ``C_in = C_out`` and a 1×1 convolution otherwise; both
    3×3 convolutions use padding 1.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    emb : ndarray, shape (N, E)
        Timestep embedding.
    p : dict
        Keys ``gn1.g, gn1.b, conv1.w, conv1.b, emb.w, emb.b, gn2.g, gn2.b, conv2.w, conv2.b``
        and, when the widths differ, ``skip.w, skip.b``
        (see :func:`res_block_params`).
    groups : int
        Group-norm groups; must divide ``C_in`` and ``C_out``.
    channels_last : bool
        ``x`` and ``out`` are ``(N, H, W, C)`` (the U-Net's internal layout).
    conv_algorithm : {"im2col", "winograd", "auto"}, default "im2col"
        How the two 3×3 convolutions are computed when ``channels_last`` (see
        :func:`npddpm.nn.conv.conv2d_nhwc_forward`); the 1×1 skip always uses a plain
        product.

    Returns
    -------
    out : ndarray, shape (N, C_out, H, W)
    cache : tuple
    """
    cl = channels_last
    conv = conv2d_nhwc_forward if cl else conv2d_forward
    kw = {"algorithm": conv_algorithm} if cl else {}
    h, c_gn1, c_act1 = _gn_silu(x, p["gn1.g"], p["gn1.b"], groups, cl)
    h, c_conv1 = conv(h, p["conv1.w"], p["conv1.b"], 1, 1, **kw)
    e, c_eact = silu_forward(emb)
    e, c_emb = linear_forward(e, p["emb.w"], p["emb.b"])
    h += e[:, None, None, :] if cl else e[:, :, None, None]
    h, c_gn2, c_act2 = _gn_silu(h, p["gn2.g"], p["gn2.b"], groups, cl)
    h, c_conv2 = conv(h, p["conv2.w"], p["conv2.b"], 1, 1, **kw)
    if "skip.w" in p:
        s, c_skip = conv(x, p["skip.w"], p["skip.b"])
    else:
        s, c_skip = x, None
    out = s + h
    caches = (c_gn1, c_act1, c_conv1, c_eact, c_emb, c_gn2, c_act2, c_conv2, c_skip, cl)
    return out, caches


def res_block_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[tuple[np.ndarray, np.ndarray], Params]:
    """Backward of :func:`res_block_forward`.

    Returns ``(dx, demb)`` and a gradient dict with the keys of the block's parameters.
    """
    c_gn1, c_act1, c_conv1, c_eact, c_emb, c_gn2, c_act2, c_conv2, c_skip, cl = cache
    conv2d_backward_ = conv2d_nhwc_backward if cl else conv2d_backward
    grads: Params = {}
    if c_skip is not None:
        dx, g = conv2d_backward_(dout, c_skip)
        grads["skip.w"], grads["skip.b"] = g["w"], g["b"]
    else:
        dx = None  # the identity skip: dout is added at the end (no copy)
    dh, g = conv2d_backward_(dout, c_conv2)
    grads["conv2.w"], grads["conv2.b"] = g["w"], g["b"]
    dh, g = _gn_silu_backward(dh, c_gn2, c_act2)
    grads["gn2.g"], grads["gn2.b"] = g["g"], g["b"]
    de, g = linear_backward(dh.sum(axis=(1, 2) if cl else (2, 3)), c_emb)
    grads["emb.w"], grads["emb.b"] = g["w"], g["b"]
    demb, _ = silu_backward(de, c_eact)
    dh, g = conv2d_backward_(dh, c_conv1)
    grads["conv1.w"], grads["conv1.b"] = g["w"], g["b"]
    dh, g = _gn_silu_backward(dh, c_gn1, c_act1)
    grads["gn1.g"], grads["gn1.b"] = g["g"], g["b"]
    if dx is None:
        dx = dout + dh
    else:
        dx += dh
    return (dx, demb), grads


def attention_block_params(rng: np.random.Generator, c: int, dtype: Any) -> Params:
    """Initial parameters of :func:`attention_block_forward`."""
    return {
        "gn.g": np.ones(c, dtype=dtype),
        "gn.b": np.zeros(c, dtype=dtype),
        "qkv.w": _uniform(rng, (c, 3 * c), c, dtype),
        "qkv.b": _uniform(rng, (3 * c,), c, dtype),
        "out.w": _uniform(rng, (c, c), c, dtype),
        "out.b": _uniform(rng, (c,), c, dtype),
    }


def attention_block_forward(
    x: np.ndarray, p: Params, groups: int, heads: int = 1, *, channels_last: bool = False
) -> tuple[np.ndarray, Cache]:
    r"""Residual self-attention over the spatial positions (improved-diffusion's
    ``AttentionBlock``).

    .. math:: y = x + \operatorname{Attn}(\operatorname{GN}(x))

    where the ``H·W`` positions are the tokens and the ``C`` channels the features
    (see :func:`npddpm.nn.layers.self_attention_forward`).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), or (N, H, W, C) with ``channels_last``
    p : dict
        Keys ``gn.g, gn.b, qkv.w, qkv.b, out.w, out.b`` (see :func:`attention_block_params`).

    Returns
    -------
    out : ndarray, shape (N, C, H, W)
    cache : tuple
    """
    h, c_gn = group_norm_forward(x, p["gn.g"], p["gn.b"], groups, channels_last=channels_last)
    if channels_last:
        n, hh, ww, c = x.shape
        tokens = h.reshape(n, hh * ww, c)
    else:
        n, c, hh, ww = x.shape
        tokens = h.reshape(n, c, hh * ww).transpose(0, 2, 1)
    a, c_att = self_attention_forward(tokens, p["qkv.w"], p["qkv.b"], p["out.w"], p["out.b"], heads)
    out = x + (a.reshape(x.shape) if channels_last else a.transpose(0, 2, 1).reshape(x.shape))
    return out, (c_gn, c_att, x.shape, channels_last)


def attention_block_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, Params]:
    """Backward of :func:`attention_block_forward`: ``dx`` and the parameter gradients."""
    c_gn, c_att, shape, channels_last = cache
    if channels_last:
        n, hh, ww, c = shape
        dt, g = self_attention_backward(dout.reshape(n, hh * ww, c), c_att)
        dh = dt.reshape(shape)
    else:
        n, c, hh, ww = shape
        dt, g = self_attention_backward(dout.reshape(n, c, hh * ww).transpose(0, 2, 1), c_att)
        dh = dt.transpose(0, 2, 1).reshape(shape)
    dx, g_gn = group_norm_backward(dh, c_gn)
    grads = {
        "gn.g": g_gn["g"],
        "gn.b": g_gn["b"],
        "qkv.w": g["w_qkv"],
        "qkv.b": g["b_qkv"],
        "out.w": g["w_out"],
        "out.b": g["b_out"],
    }
    return dout + dx, grads
