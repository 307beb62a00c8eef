r"""2-D convolution by im2col / col2im, as a forward/backward pair.

The convolution is cross-correlation, as ``torch.nn.functional.conv2d``:

.. math:: y_{n f i j} = b_f
          + \sum_{c,a,b} w_{f c a b}\; x^{\mathrm{pad}}_{n c,\, s i + a,\, s j + b}

im2col gathers, for every output position, the ``C·k_h·k_w`` input values it sees into one
row of a matrix, so that the convolution is a single matrix product with the reshaped filter
bank; col2im scatters the gradient of that matrix back, adding where windows overlap. The
gather/scatter loops over the ``k_h·k_w`` kernel offsets (9 for a 3×3 kernel) and copies one
strided slice of the whole batch each time, so no Python loop runs over pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["col2im", "conv2d_backward", "conv2d_forward", "conv_output_size", "im2col"]

Cache = Any


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size + 2·padding − kernel) / stride) + 1``, as PyTorch."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> np.ndarray:
    """Gather convolution windows.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)

    Returns
    -------
    cols : ndarray, shape (N·H_o·W_o, C·k_h·k_w)
        Row ``(n, i, j)`` holds window ``x_pad[n, :, s i : s i + k_h, s j : s j + k_w]``
        flattened in ``(c, a, b)`` order, matching ``w.reshape(F, -1)``.
    """
    n, c, h, w = x.shape
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(w, kw, stride, padding)
    if padding:
        xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
        xp[:, :, padding : padding + h, padding : padding + w] = x
    else:
        xp = x
    cols = np.empty((n, ho, wo, c, kh, kw), dtype=x.dtype)
    # A view of xp with axes (N, H_o, W_o, C) for each kernel offset.
    xt = xp.transpose(0, 2, 3, 1)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, :, :, a, b] = xt[
                :, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride
            ]
    return cols.reshape(n * ho * wo, c * kh * kw)


def col2im(
    dcols: np.ndarray,
    shape: tuple[int, int, int, int],
    kh: int,
    kw: int,
    stride: int,
    padding: int,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add window gradients back to the input.

    Parameters
    ----------
    dcols : ndarray, shape (N·H_o·W_o, C·k_h·k_w)
    shape : (N, C, H, W)
        Shape of the input of :func:`im2col`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    n, c, h, w = shape
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(w, kw, stride, padding)
    d6 = dcols.reshape(n, ho, wo, c, kh, kw)
    dxp = np.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=dcols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxp[
                :, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride
            ] += d6[:, :, :, :, a, b]
    dxp = dxp[:, padding : padding + h, padding : padding + w]
    return np.ascontiguousarray(dxp.transpose(0, 3, 1, 2))


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, Cache]:
    r"""2-D convolution (cross-correlation) with stride and zero padding.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, k_h, k_w)
    b : ndarray, shape (F,)
    stride, padding : int

    Returns
    -------
    out : ndarray, shape (N, F, H_o, W_o)
        :math:`H_o = \lfloor (H + 2p - k_h)/s \rfloor + 1`, likewise :math:`W_o`.
    cache : tuple
    """
    n, c, h, wd = x.shape
    f, c2, kh, kw = w.shape
    if c != c2:
        raise ValueError(f"conv2d: input has {c} channels but the filters expect {c2}")
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(wd, kw, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: a {kh}×{kw} kernel does not fit a {h}×{wd} input")
    if kh == kw == 1 and stride == 1 and padding == 0:
        cols = x.transpose(0, 2, 3, 1).reshape(n * h * wd, c)
    else:
        cols = im2col(x, kh, kw, stride, padding)
    wmat = w.reshape(f, -1)
    out = cols @ wmat.T
    out += b
    out = out.reshape(n, ho, wo, f).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), (cols, x.shape, w, stride, padding)


def conv2d_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Backward of :func:`conv2d_forward`.

    With ``X`` the im2col matrix and ``G`` the output gradient as an ``(N·H_o·W_o, F)``
    matrix:

    .. math:: \partial W = G^\top X, \quad \partial b = \textstyle\sum_{rows} G, \quad
              \partial x = \operatorname{col2im}(G\,W)

    Returns ``dx`` and ``{"w": dW, "b": db}``.
    """
    cols, xshape, w, stride, padding = cache
    f, c, kh, kw = w.shape
    n = xshape[0]
    g = dout.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (g.T @ cols).reshape(w.shape)
    db = g.sum(axis=0)
    dcols = g @ w.reshape(f, -1)
    if kh == kw == 1 and stride == 1 and padding == 0:
        _, _, h, wd = xshape
        dx = np.ascontiguousarray(dcols.reshape(n, h, wd, c).transpose(0, 3, 1, 2))
    else:
        dx = col2im(dcols, xshape, kh, kw, stride, padding)
    return dx, {"w": dw, "b": db}
