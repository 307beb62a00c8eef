r"""2-D convolution by im2col / col2im, as a forward/backward pair.

The convolution is cross-correlation, as ``torch.nn.functional.conv2d``:

.. math:: y_{n f i j} = b_f
          + \sum_{c,a,b} w_{f c a b}\; x^{\mathrm{pad}}_{n c,\, s i + a,\, s j + b}

im2col gathers, for every output position, the ``k_h·k_w·C`` input values it sees into one
row of a matrix, so that the convolution is a single matrix product with the reshaped filter
bank; col2im scatters the gradient of that matrix back, adding where windows overlap. The
gather/scatter loops over the ``k_h·k_w`` kernel offsets (9 for a 3×3 kernel) and copies one
strided slice of the whole batch each time, so no Python loop runs over pixels.

The work is done channels-last (``(N, H, W, C)``), where every copy moves rows of ``C``
contiguous values and the product's output is already the next layer's input;
:func:`conv2d_forward` is the channels-first (PyTorch) interface to the same code.

:func:`conv2d_nhwc_forward` can also compute a 3×3, stride-1, padding-1 convolution by
Winograd's F(2×2, 3×3) (``algorithm="winograd"`` or ``"auto"``; :mod:`npddpm.nn.winograd`),
which the U-Net uses; im2col stays the default and the reference.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .winograd import (
    WinogradCache,
    winograd_applicable,
    winograd_conv_backward,
    winograd_conv_forward,
)

__all__ = [
    "ALGORITHMS",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_nhwc_backward",
    "conv2d_nhwc_forward",
    "conv_output_size",
    "im2col",
    "winograd_pays",
]

Cache = Any


def winograd_pays(c: int, f: int) -> bool:
    """Whether ``algorithm="auto"`` picks Winograd for ``C → F`` channels (given that it
    applies): ``min(C, F) ≥ 4`` and ``C·F ≥ 128``.

    Its 16 products have inner dimension ``C`` (forward) or ``F`` (input gradient), which
    run far below the BLAS's peak when thin. Measured (forward + backward, 32 images of
    16×16, one thread), Winograd ÷ im2col time: 1→32 2.1, 32→1 2.6, 2→32 1.03, 8→8 1.11,
    4→32 0.92, 8→32 0.83, 16→16 0.80, 32→32 0.55.
    """
    return min(c, f) >= 4 and c * f >= 128


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size + 2·padding − kernel) / stride) + 1``, as PyTorch."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(
    x: np.ndarray, kh: int, kw: int, stride: int, padding: int, *, fused: bool = False
) -> np.ndarray:
    """Gather convolution windows of a channels-last batch.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C)

    fused : bool, default False
        Use the one-pass Numba kernel (:mod:`npddpm.nn._conv_kernels`, bitwise the same
        result; what the convolution layers use). The default is this NumPy code.

    Returns
    -------
    cols : ndarray, shape (N·H_o·W_o, k_h·k_w·C)
        Row ``(n, i, j)`` holds window ``x_pad[n, s i : s i + k_h, s j : s j + k_w, :]``
        flattened in ``(a, b, c)`` order. Each of the ``k_h·k_w`` copies moves whole rows of
        ``C`` contiguous values.
    """
    n, h, w, c = x.shape
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(w, kw, stride, padding)
    if fused:
        from ._conv_kernels import kernels

        cols2 = np.empty((n * ho * wo, kh * kw * c), dtype=x.dtype)
        kernels().im2col(np.ascontiguousarray(x), kh, kw, stride, padding, ho, wo, cols2)
        return cols2
    if padding:
        xp = np.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=x.dtype)
        xp[:, padding : padding + h, padding : padding + w] = x
    else:
        xp = x
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, :, a, b] = xp[
                :, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride
            ]
    return cols.reshape(n * ho * wo, kh * kw * c)


def col2im(
    dcols: np.ndarray,
    shape: tuple[int, int, int, int],
    kh: int,
    kw: int,
    stride: int,
    padding: int,
    *,
    fused: bool = False,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add window gradients back to the input.

    Parameters
    ----------
    dcols : ndarray, shape (N·H_o·W_o, k_h·k_w·C)
    shape : (N, H, W, C)
        Shape of the input of :func:`im2col`.
    fused : bool, default False
        Use the one-pass Numba kernel (bitwise the same result).

    Returns
    -------
    dx : ndarray, shape (N, H, W, C)
    """
    n, h, w, c = shape
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(w, kw, stride, padding)
    if fused:
        from ._conv_kernels import kernels

        dx = np.empty(shape, dtype=dcols.dtype)
        kernels().col2im(np.ascontiguousarray(dcols), kh, kw, stride, padding, ho, wo, dx)
        return dx
    d6 = dcols.reshape(n, ho, wo, kh, kw, c)
    dxp = np.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=dcols.dtype)
    for a in range(kh):
        for b in range(kw):
            dxp[
                :, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride
            ] += d6[:, :, :, a, b]
    if padding:
        return np.ascontiguousarray(dxp[:, padding : padding + h, padding : padding + w])
    return dxp


ALGORITHMS = ("im2col", "winograd", "auto")


def conv2d_nhwc_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    *,
    algorithm: str = "im2col",
) -> tuple[np.ndarray, Cache]:
    r"""2-D convolution of a channels-last batch (the U-Net's internal layout).

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C)
    w : ndarray, shape (F, C, k_h, k_w)
        PyTorch's filter layout, whatever the layout of ``x``.
    b : ndarray, shape (F,)
    stride, padding : int
    algorithm : {"im2col", "winograd", "auto"}, default "im2col"
        ``"im2col"``: one matrix product with the im2col matrix (any kernel, stride,
        padding). ``"winograd"``: F(2×2, 3×3) minimal filtering
        (:mod:`npddpm.nn.winograd`; 2.25× fewer multiplications; a 3×3 kernel, stride 1,
        padding 1 and an even H and W only). ``"auto"``: Winograd where it applies and
        :func:`winograd_pays` (enough channels that its 16 thin products beat one im2col
        product), im2col otherwise.

    Returns
    -------
    out : ndarray, shape (N, H_o, W_o, F)
    cache : tuple
        For :func:`conv2d_nhwc_backward`, which follows the algorithm used.
    """
    n, h, wd, c = x.shape
    f, c2, kh, kw = w.shape
    if c != c2:
        raise ValueError(f"conv2d: input has {c} channels but the filters expect {c2}")
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(wd, kw, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: a {kh}×{kw} kernel does not fit a {h}×{wd} input")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm != "im2col":
        fits = winograd_applicable(x.shape, w.shape, stride, padding)
        if algorithm == "winograd" and not fits:
            raise ValueError(
                "algorithm='winograd' needs a 3×3 kernel, stride 1, padding 1 and an even "
                f"height and width; got x {x.shape}, w {w.shape}, stride {stride}, "
                f"padding {padding} (use algorithm='auto' to fall back to im2col)"
            )
        if fits and (algorithm == "winograd" or winograd_pays(c, f)):
            return winograd_conv_forward(x, w, b)
    if kh == kw == 1 and stride == 1 and padding == 0:
        cols = x.reshape(n * h * wd, c)
    else:
        cols = im2col(x, kh, kw, stride, padding, fused=True)
    wmat = w.transpose(0, 2, 3, 1).reshape(f, kh * kw * c)  # (a, b, c) order, as cols
    out = cols @ wmat.T
    out += b
    return out.reshape(n, ho, wo, f), (cols, x.shape, wmat, w.shape, stride, padding)


@overload
def conv2d_nhwc_backward(
    dout: np.ndarray, cache: Cache, *, need_dx: Literal[True] = ...
) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...
@overload
def conv2d_nhwc_backward(
    dout: np.ndarray, cache: Cache, *, need_dx: bool
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]: ...
def conv2d_nhwc_backward(
    dout: np.ndarray, cache: Cache, *, need_dx: bool = True
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    r"""Backward of :func:`conv2d_nhwc_forward`.

    With ``X`` the im2col matrix and ``G`` the output gradient as an ``(N·H_o·W_o, F)``
    matrix:

    .. math:: \partial W = G^\top X, \quad \partial b = \textstyle\sum_{rows} G, \quad
              \partial x = \operatorname{col2im}(G\,W)

    (for a stride-1 square kernel, :math:`\partial x` is computed as the equal convolution of
    :math:`G` with the flipped filters; see the comment in the code).

    Returns ``dx`` (N, H, W, C; ``None`` when not ``need_dx``, e.g. for a first layer) and
    ``{"w": dW (F, C, k_h, k_w), "b": db}``.
    """
    if isinstance(cache, WinogradCache):
        return winograd_conv_backward(dout, cache, need_dx=need_dx)
    cols, xshape, wmat, wshape, stride, padding = cache
    f, c, kh, kw = wshape
    g = dout.reshape(-1, f)
    dw = (g.T @ cols).reshape(f, kh, kw, c).transpose(0, 3, 1, 2)
    db = g.sum(axis=0)
    if not need_dx:
        dx = None
    elif kh == kw == 1 and stride == 1 and padding == 0:
        dx = (g @ wmat).reshape(xshape)
    elif stride == 1 and kh == kw and padding < kh:
        # The input gradient of a stride-1 convolution is the convolution of the output
        # gradient, padded by k − 1 − p, with the flipped, transposed filters:
        #   dx[u, v, c] = Σ_{a', b', f} w[f, c, k−1−a', k−1−b'] · g_pad[u + a', v + b', f]
        # An im2col of G (N·H·W × k²·F) is gathered and multiplied, instead of the
        # (N·H_o·W_o × k²·C) matrix G Wᵀ being scattered back by col2im: less memory
        # traffic whenever F ≤ C, and a product with the longer inner dimension k²·F.
        n, h, wd, _ = xshape
        ho, wo = conv_output_size(h, kh, 1, padding), conv_output_size(wd, kw, 1, padding)
        gcols = im2col(g.reshape(n, ho, wo, f), kh, kw, 1, kh - 1 - padding, fused=True)
        dx = (gcols @ _flipped_filters(wmat, f, c, kh, kw)).reshape(xshape)
    else:
        dx = col2im(g @ wmat, xshape, kh, kw, stride, padding, fused=True)
    return dx, {"w": np.ascontiguousarray(dw), "b": db}


def _flipped_filters(wmat: np.ndarray, f: int, c: int, kh: int, kw: int) -> np.ndarray:
    """The filters rotated by 180° and transposed, as a ``(k_h·k_w·F, C)`` matrix whose rows
    follow im2col's ``(a', b', f)`` order: row ``(a', b', f)`` is ``w[f, :, k_h−1−a', k_w−1−b']``.
    ``wmat`` is the forward's ``(F, k_h·k_w·C)`` matrix in ``(a, b, c)`` order."""
    w4 = wmat.reshape(f, kh, kw, c)[:, ::-1, ::-1, :]
    return np.ascontiguousarray(w4.transpose(1, 2, 0, 3)).reshape(kh * kw * f, c)


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, Cache]:
    r"""2-D convolution (cross-correlation) with stride and zero padding, channels first.

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

    Notes
    -----
    Computed as :func:`conv2d_nhwc_forward` on the channels-last view of ``x``.
    """
    out, cache = conv2d_nhwc_forward(x.transpose(0, 2, 3, 1), w, b, stride, padding)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), cache


def conv2d_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Backward of :func:`conv2d_forward`: ``dx`` (N, C, H, W) and ``{"w": dW, "b": db}``."""
    dx, grads = conv2d_nhwc_backward(dout.transpose(0, 2, 3, 1), cache)
    return np.ascontiguousarray(dx.transpose(0, 3, 1, 2)), grads
