r"""Elementwise, dense, normalisation, resampling and attention layers as forward/backward pairs.

Every layer follows the cs231n convention::

    out, cache = f_forward(x, *params, **options)
    dx, grads = f_backward(dout, cache)

``grads`` is a dict whose keys name the layer's parameters (``{}`` for a layer without
parameters). Caches hold exactly what the backward pass needs and nothing else; there is no
state between calls. Arrays are computed in the dtype of ``x`` (float32 for training,
float64 for gradient checks). Convolution lives in :mod:`npddpm.nn.conv`, composite blocks in
:mod:`npddpm.nn.blocks`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "avg_pool_backward",
    "avg_pool_forward",
    "gelu_backward",
    "gelu_forward",
    "group_norm_backward",
    "group_norm_forward",
    "group_norm_silu_backward",
    "group_norm_silu_forward",
    "linear_backward",
    "linear_forward",
    "self_attention_backward",
    "self_attention_forward",
    "silu_backward",
    "silu_forward",
    "timestep_embedding_backward",
    "timestep_embedding_forward",
    "upsample_backward",
    "upsample_forward",
]

Cache = Any


# --------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    r"""Affine map over the last axis.

    .. math:: y = x W + b

    Parameters
    ----------
    x : ndarray, shape (..., D_in)
    w : ndarray, shape (D_in, D_out)
    b : ndarray, shape (D_out,)

    Returns
    -------
    out : ndarray, shape (..., D_out)
    cache : tuple
    """
    out = x @ w
    out += b
    return out, (x, w)


def linear_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`linear_forward`.

    .. math:: \partial x = \partial y\, W^\top, \quad
              \partial W = x^\top \partial y, \quad \partial b = \textstyle\sum_n \partial y_n

    (sums over every leading axis of ``x``). Returns ``dx`` and ``{"w": dW, "b": db}``.
    """
    x, w = cache
    d_in, d_out = w.shape
    x2 = x.reshape(-1, d_in)
    g2 = dout.reshape(-1, d_out)
    dx = (g2 @ w.T).reshape(x.shape)
    return dx, {"w": x2.T @ g2, "b": g2.sum(axis=0)}


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # scipy's expit is exact for large |x| (no overflow warning) and keeps the dtype.
    return special.expit(x)


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    r"""SiLU / swish (Elfwing et al. 2018; Hendrycks & Gimpel 2016).

    .. math:: y = x\,\sigma(x), \qquad \sigma(x) = 1 / (1 + e^{-x})

    Shapes: any; ``out`` has the shape of ``x``.
    """
    s = _sigmoid(x)
    return x * s, (x, s)


def silu_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`silu_forward`.

    .. math:: \partial x = \partial y\; \sigma(x)\,\bigl(1 + x\,(1 - \sigma(x))\bigr)
    """
    x, s = cache
    return dout * s * (1 + x * (1 - s)), {}


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    r"""GELU with the exact normal CDF (Hendrycks & Gimpel 2016; PyTorch's default).

    .. math:: y = x\,\Phi(x), \qquad \Phi(x) = \tfrac12\bigl(1 + \operatorname{erf}(x/\sqrt2)\bigr)

    Shapes: any; ``out`` has the shape of ``x``.
    """
    cdf = 0.5 * (1 + special.erf(x * x.dtype.type(_INV_SQRT2)))
    return x * cdf, (x, cdf)


def gelu_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`gelu_forward`.

    .. math:: \partial x = \partial y\,\bigl(\Phi(x) + x\,\varphi(x)\bigr), \qquad
              \varphi(x) = e^{-x^2/2} / \sqrt{2\pi}
    """
    x, cdf = cache
    pdf = np.exp(-0.5 * x * x) * x.dtype.type(_INV_SQRT_2PI)
    return dout * (cdf + x * pdf), {}


# --------------------------------------------------------------------------------------
# Timestep embedding
# --------------------------------------------------------------------------------------


def _frequencies(dim: int, max_period: float, dtype: npt.DTypeLike) -> np.ndarray:
    half = dim // 2
    return np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half).astype(dtype)


def timestep_embedding_forward(
    t: np.ndarray, dim: int, *, max_period: float = 10000.0, dtype: Any = np.float32
) -> tuple[np.ndarray, Cache]:
    r"""Sinusoidal timestep embedding (Vaswani et al. 2017; improved-diffusion's layout).

    With ``half = dim // 2`` and :math:`f_k = P^{-k/\mathrm{half}}`, ``k = 0..half-1``:

    .. math:: e(t) = [\cos(t f_0), …, \cos(t f_{h-1}),\ \sin(t f_0), …, \sin(t f_{h-1})]

    followed by one zero column when ``dim`` is odd. The phase ``t f_k`` is formed in float64
    and then cast, so float32 and float64 embeddings differ only by the final rounding.

    Parameters
    ----------
    t : ndarray, shape (N,)
        Timesteps (integers, or real numbers for a gradient check).
    dim : int
        Embedding width ``>= 2``.
    max_period : float
        ``P``, the longest period.
    dtype : numpy dtype
        Output dtype.

    Returns
    -------
    out : ndarray, shape (N, dim)
    cache : tuple
    """
    t64 = np.asarray(t, dtype=np.float64)
    freqs = _frequencies(dim, max_period, np.float64)
    args = t64[:, None] * freqs[None, :]
    out = np.zeros((t64.shape[0], dim), dtype=dtype)
    half = freqs.shape[0]
    out[:, :half] = np.cos(args)
    out[:, half : 2 * half] = np.sin(args)
    return out, (args, freqs, dim)


def timestep_embedding_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Derivative of :func:`timestep_embedding_forward` with respect to a real-valued ``t``.

    .. math:: \partial t = \textstyle\sum_k f_k\,\bigl(-\sin(t f_k)\,\partial e_k
              + \cos(t f_k)\,\partial e_{h+k}\bigr)

    The models feed integer timesteps and never need this; it exists so the embedding is
    gradient-checked like every other layer. Returns ``dt`` (float64, shape (N,)) and ``{}``.
    """
    args, freqs, _dim = cache
    half = freqs.shape[0]
    g = np.asarray(dout, dtype=np.float64)
    dt = (-np.sin(args) * g[:, :half] + np.cos(args) * g[:, half : 2 * half]) @ freqs
    return dt, {}


# --------------------------------------------------------------------------------------
# Group normalisation
# --------------------------------------------------------------------------------------


def group_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    groups: int,
    eps: float = 1e-5,
    *,
    channels_last: bool = False,
) -> tuple[np.ndarray, Cache]:
    r"""Group normalisation (Wu & He 2018), as ``torch.nn.GroupNorm``.

    Channels are split into ``groups`` contiguous groups; each (sample, group) is normalised
    over its channels and spatial positions with the biased variance:

    .. math:: \hat x = (x - \mu_{ng}) / \sqrt{\sigma^2_{ng} + \epsilon}, \qquad
              y = \gamma_c\,\hat x + \beta_c

    Parameters
    ----------
    x : ndarray, shape (N, C, ...), or (N, ..., C) with ``channels_last``
    gamma, beta : ndarray, shape (C,)
    groups : int
        Must divide ``C``.
    eps : float
    channels_last : bool
        Channels on the last axis (the U-Net's internal layout).

    Returns
    -------
    out : ndarray, shape of ``x``
    cache : tuple
    """
    n = x.shape[0]
    c = x.shape[-1] if channels_last else x.shape[1]
    if c % groups:
        raise ValueError(f"groups={groups} must divide the channel count {c}")
    if channels_last:
        return _group_norm_channels_last(x, gamma, beta, groups, eps)
    xg = x.reshape(n, groups, -1)
    axes = (2,)
    mu = xg.mean(axis=axes, keepdims=True)
    xc = xg - mu
    var = np.mean(xc * xc, axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = (xc * rstd).reshape(x.shape)
    bshape = (c,) if channels_last else (1, c) + (1,) * (x.ndim - 2)
    out = xhat * gamma.reshape(bshape) + beta.reshape(bshape)
    return out, (xhat, rstd, gamma, groups, channels_last)


def group_norm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`group_norm_forward`.

    With :math:`g = \gamma\,\partial y` and means over each group's ``M`` elements:

    .. math:: \partial x = r\,\bigl(g - \overline{g} - \hat x\,\overline{g\,\hat x}\bigr), \quad
              \partial\gamma_c = \textstyle\sum \partial y\,\hat x, \quad
              \partial\beta_c = \textstyle\sum \partial y

    where ``r`` is the group's reciprocal standard deviation. Returns ``dx`` and
    ``{"g": dγ, "b": dβ}``.
    """
    xhat, rstd, gamma, groups, channels_last = cache
    n = xhat.shape[0]
    if channels_last:
        return _group_norm_channels_last_backward(dout, cache)
    else:
        c = xhat.shape[1]
        red = (0, *range(2, xhat.ndim))
        dgamma = np.sum(dout * xhat, axis=red)
        dbeta = np.sum(dout, axis=red)
        bshape = (1, c) + (1,) * (xhat.ndim - 2)
        g = (dout * gamma.reshape(bshape)).reshape(n, groups, -1)
        xg = xhat.reshape(n, groups, -1)
        axes = (2,)
    dx = rstd * (
        g - g.mean(axis=axes, keepdims=True) - xg * np.mean(g * xg, axis=axes, keepdims=True)
    )
    return dx.reshape(xhat.shape), {"g": dgamma, "b": dbeta}


def group_norm_silu_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float = 1e-5
) -> tuple[np.ndarray, Cache]:
    r"""Group norm followed by SiLU, fused, for channels-last input (the U-Net's layout).

    The same function as ``silu_forward(group_norm_forward(x, …, channels_last=True))``:

    .. math:: y = z\,\sigma(z), \qquad z = \gamma_c\,\hat x + \beta_c

    computed in one Numba kernel per direction (:mod:`npddpm.nn._gn_kernels`, where the
    backward equations are written out), keeping only :math:`\hat x` and the group
    reciprocal standard deviations for the backward pass.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C)
    gamma, beta : ndarray, shape (C,)
    groups : int
        Must divide ``C``.

    Returns
    -------
    out : ndarray, shape of ``x``
    cache : tuple
    """
    from ._gn_kernels import kernels

    n, c = x.shape[0], x.shape[-1]
    if c % groups:
        raise ValueError(f"groups={groups} must divide the channel count {c}")
    x3 = np.ascontiguousarray(x).reshape(n, -1, c)
    xhat = np.empty_like(x3)
    out = np.empty_like(x3)
    rstd = np.empty((n, groups), dtype=np.float64)
    kernels().forward(x3, gamma, beta, groups, float(eps), xhat, rstd, out)
    return out.reshape(x.shape), (xhat, rstd, gamma, beta, groups, x.shape)


def group_norm_silu_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Backward of :func:`group_norm_silu_forward`: ``dx`` and ``{"g": dγ, "b": dβ}``."""
    from ._gn_kernels import kernels

    xhat, rstd, gamma, beta, groups, shape = cache
    c = shape[-1]
    d3 = np.ascontiguousarray(dout).reshape(xhat.shape)
    dx = np.empty_like(xhat)
    dgamma = np.zeros(c, dtype=np.float64)
    dbeta = np.zeros(c, dtype=np.float64)
    kernels().backward(d3, xhat, rstd, gamma, beta, groups, dx, dgamma, dbeta)
    dt = xhat.dtype
    return dx.reshape(shape), {"g": dgamma.astype(dt), "b": dbeta.astype(dt)}


def _group_sums(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, S, C) → per-(sample, group) sums broadcast back to channels, shape (N, 1, C)."""
    n, _, c = a.shape
    per_channel = a.sum(axis=1)  # contiguous reduction over positions
    per_group = per_channel.reshape(n, groups, c // groups).sum(axis=2)
    return np.repeat(per_group, c // groups, axis=1)[:, None, :]


def _group_norm_channels_last(x, gamma, beta, groups, eps):
    # Channels-last: reduce over positions first (contiguous rows of C values), then over
    # the channels of each group, instead of reducing a strided (N, S, G, C/G) view.
    n, c = x.shape[0], x.shape[-1]
    x3 = x.reshape(n, -1, c)
    m = x3.shape[1] * (c // groups)
    inv_m = x.dtype.type(1.0 / m)
    xc = x3 - _group_sums(x3, groups) * inv_m
    var = _group_sums(xc * xc, groups) * inv_m
    rstd = 1.0 / np.sqrt(var + x.dtype.type(eps))  # (N, 1, C)
    xhat = xc * rstd
    out = xhat * gamma + beta
    return out.reshape(x.shape), (xhat.reshape(x.shape), rstd, gamma, groups, True)


def _group_norm_channels_last_backward(dout, cache):
    xhat, rstd, gamma, groups, _ = cache
    n, c = xhat.shape[0], xhat.shape[-1]
    d3 = dout.reshape(n, -1, c)
    x3 = xhat.reshape(n, -1, c)
    inv_m = xhat.dtype.type(1.0 / (x3.shape[1] * (c // groups)))
    dxhat_x = d3 * x3
    dgamma = dxhat_x.reshape(-1, c).sum(axis=0)
    dbeta = d3.reshape(-1, c).sum(axis=0)
    g = d3 * gamma
    gx = dxhat_x
    gx *= gamma
    dx = g - _group_sums(g, groups) * inv_m - x3 * (_group_sums(gx, groups) * inv_m)
    dx *= rstd
    return dx.reshape(xhat.shape), {"g": dgamma, "b": dbeta}


# --------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------


def avg_pool_forward(
    x: np.ndarray, factor: int = 2, *, channels_last: bool = False
) -> tuple[np.ndarray, Cache]:
    r"""Average pooling over non-overlapping ``factor × factor`` windows (down-sampling).

    .. math:: y_{nc ij} = \frac{1}{f^2} \sum_{a,b < f} x_{nc,\,fi+a,\,fj+b}

    Shapes: ``x`` (N, C, H, W) with ``H`` and ``W`` divisible by ``factor`` →
    ``out`` (N, C, H/f, W/f); with ``channels_last``, (N, H, W, C) → (N, H/f, W/f, C).
    """
    if channels_last:
        n, h, w, c = x.shape
    else:
        n, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"avg_pool needs H and W divisible by {factor}, got {h}×{w}")
    f = factor
    if channels_last:
        out = x.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))
    else:
        out = x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))
    return out, (x.shape, factor, channels_last)


def avg_pool_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`avg_pool_forward`: each input gets :math:`\partial y / f^2`."""
    shape, f, channels_last = cache
    scaled = dout * dout.dtype.type(1.0 / (f * f))
    if channels_last:
        n, h, w, c = shape
        dx = np.broadcast_to(scaled[:, :, None, :, None, :], (n, h // f, f, w // f, f, c))
    else:
        n, c, h, w = shape
        dx = np.broadcast_to(scaled[:, :, :, None, :, None], (n, c, h // f, f, w // f, f))
    return dx.reshape(shape), {}


def upsample_forward(
    x: np.ndarray, factor: int = 2, *, channels_last: bool = False
) -> tuple[np.ndarray, Cache]:
    r"""Nearest-neighbour up-sampling.

    .. math:: y_{nc ij} = x_{nc,\lfloor i/f\rfloor,\lfloor j/f\rfloor}


    Shapes: ``x`` (N, C, H, W) → ``out`` (N, C, fH, fW); with ``channels_last``,
    (N, H, W, C) → (N, fH, fW, C).
    """
    f = factor
    if channels_last:
        n, h, w, c = x.shape
        out = np.broadcast_to(x[:, :, None, :, None, :], (n, h, f, w, f, c))
        return out.reshape(n, h * f, w * f, c), (f, channels_last)
    n, c, h, w = x.shape
    out = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, f, w, f))
    return out.reshape(n, c, h * f, w * f), (f, channels_last)


def upsample_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`upsample_forward`: sum of the gradient over each ``f × f`` block."""
    f, channels_last = cache
    if channels_last:
        n, hf, wf, c = dout.shape
        return dout.reshape(n, hf // f, f, wf // f, f, c).sum(axis=(2, 4)), {}
    n, c, hf, wf = dout.shape
    return dout.reshape(n, c, hf // f, f, wf // f, f).sum(axis=(3, 5)), {}


# --------------------------------------------------------------------------------------
# Self-attention
# --------------------------------------------------------------------------------------


def self_attention_forward(
    x: np.ndarray,
    w_qkv: np.ndarray,
    b_qkv: np.ndarray,
    w_out: np.ndarray,
    b_out: np.ndarray,
    heads: int = 1,
) -> tuple[np.ndarray, Cache]:
    r"""Multi-head scaled dot-product self-attention over a token sequence (Vaswani et al. 2017).

    With ``d = C / heads`` and per head ``h``:

    .. math:: [Q, K, V] = x W_{qkv} + b_{qkv}, \quad
              P = \operatorname{softmax}(Q K^\top / \sqrt d), \quad
              y = [P_1 V_1, …, P_H V_H]\, W_o + b_o

    Parameters
    ----------
    x : ndarray, shape (N, L, C)
    w_qkv : ndarray, shape (C, 3C)
        Columns ``[0, C)`` give the queries, ``[C, 2C)`` the keys, ``[2C, 3C)`` the values;
        head ``h`` uses columns ``h d … (h+1) d − 1`` of each.
    b_qkv : ndarray, shape (3C,)
    w_out : ndarray, shape (C, C)
    b_out : ndarray, shape (C,)
    heads : int
        Must divide ``C``.

    Returns
    -------
    out : ndarray, shape (N, L, C)
        (without the residual connection; see :func:`npddpm.nn.blocks.attention_block_forward`)
    cache : tuple
    """
    n, length, c = x.shape
    if c % heads:
        raise ValueError(f"heads={heads} must divide the channel count {c}")
    d = c // heads
    qkv, qkv_cache = linear_forward(x, w_qkv, b_qkv)
    # (N, L, 3, H, d) -> (3, N, H, L, d)
    qkv = qkv.reshape(n, length, 3, heads, d).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scale = x.dtype.type(1.0 / math.sqrt(d))
    s = (q @ k.transpose(0, 1, 3, 2)) * scale
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    o = p @ v  # (N, H, L, d)
    o_tok = o.transpose(0, 2, 1, 3).reshape(n, length, c)
    out, out_cache = linear_forward(o_tok, w_out, b_out)
    return out, (qkv_cache, out_cache, q, k, v, p, scale, heads)


def self_attention_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`self_attention_forward`.

    With :math:`\partial O` the gradient at the heads' outputs:

    .. math:: \partial V = P^\top \partial O, \quad \partial P = \partial O\,V^\top, \quad
              \partial S = P \odot \bigl(\partial P
              - \textstyle\sum_j P_{ij}\,\partial P_{ij}\bigr), \\
              \partial Q = \partial S\,K / \sqrt d, \quad \partial K = \partial S^\top Q / \sqrt d

    Returns ``dx`` and ``{"w_qkv", "b_qkv", "w_out", "b_out"}``.
    """
    qkv_cache, out_cache, q, k, v, p, scale, heads = cache
    n, _h, length, d = q.shape
    c = heads * d
    do_tok, g_out = linear_backward(dout, out_cache)
    do = do_tok.reshape(n, length, heads, d).transpose(0, 2, 1, 3)
    dv = p.transpose(0, 1, 3, 2) @ do
    dp = do @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    ds *= scale
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    dqkv = np.stack([dq, dk, dv])  # (3, N, H, L, d)
    dqkv = dqkv.transpose(1, 3, 0, 2, 4).reshape(n, length, 3 * c)
    dx, g_qkv = linear_backward(dqkv, qkv_cache)
    grads = {"w_qkv": g_qkv["w"], "b_qkv": g_qkv["b"], "w_out": g_out["w"], "b_out": g_out["b"]}
    return dx, grads
