r"""3×3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(2×2, 3×3).

Each 2×2 output tile is computed from the 4×4 input tile ``d`` around it as (Lavin & Gray,
*Fast Algorithms for Convolutional Neural Networks*, CVPR 2016)

.. math:: y = A^\top\Big[\textstyle\sum_c (G\,w_{fc}\,G^\top) \odot (B^\top d_c\,B)\Big]A + b_f,

with :math:`G = \begin{pmatrix} 1&0&0\\ ½&½&½\\ ½&-½&½\\ 0&0&1 \end{pmatrix}` and ``A``, ``B`` as in
:mod:`npddpm.nn._winograd_kernels`. For each of the 16 positions ``ξ`` of the 4×4 transformed
tile the sum over ``c`` is one matrix product, ``M_ξ = V_ξ U_ξ`` with ``V_ξ`` (tiles × C) and
``U_ξ`` (C × F): 16·T·C·F multiply-adds against im2col's 36·T·C·F, a 2.25× cut, for a few
passes of additions over the activations.

The backward is the exact adjoint of that computation (so it is the gradient of exactly
what the forward computes, in every dtype):

.. math:: \partial M = A\,\partial y\,A^\top,\quad
          \partial V_\xi = \partial M_\xi\,U_\xi^\top,\quad
          \partial U_\xi = V_\xi^\top \partial M_\xi,\quad
          \partial w_{fc} = G^\top \partial U_{fc}\,G,\quad
          \partial x = \textstyle\sum_{tiles} B\,\partial V B^\top

(the last at each tile's window, cropped to the image). The transforms' coefficients are
0, ±½, ±1, so in float32 the result differs from im2col's by a few units of rounding
(tested against the direct convolution).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "WinogradCache",
    "winograd_applicable",
    "winograd_conv_backward",
    "winograd_conv_forward",
]

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# (G ⊗ G): row ξ = 4a + b, column k = 3p + q holds G[a, p]·G[b, q], so that
# U[ξ] = Σ_k (G⊗G)[ξ, k] w[k] is G w Gᵀ flattened (every entry exact in binary).
_GG = np.kron(_G, _G)


class WinogradCache(NamedTuple):
    """What :func:`winograd_conv_backward` needs: the transformed input and filters."""

    v: np.ndarray  # (16, T, C)
    u: np.ndarray  # (16, F, C)
    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]


def winograd_applicable(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int, padding: int
) -> bool:
    """Whether F(2×2, 3×3) computes this convolution: a 3×3 kernel, stride 1, padding 1,
    and an even height and width (whole 2×2 output tiles)."""
    return (
        len(x_shape) == 4
        and tuple(w_shape[2:]) == (3, 3)
        and stride == 1
        and padding == 1
        and x_shape[1] % 2 == 0
        and x_shape[2] % 2 == 0
    )


def winograd_conv_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, WinogradCache]:
    r"""3×3 convolution, stride 1, padding 1, of a channels-last batch by F(2×2, 3×3).

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), H and W even
    w : ndarray, shape (F, C, 3, 3)
    b : ndarray, shape (F,)

    Returns
    -------
    out : ndarray, shape (N, H, W, F)
        Equal to :func:`npddpm.nn.conv.conv2d_nhwc_forward` ``(x, w, b, 1, 1)`` up to
        rounding.
    cache : WinogradCache
        The transformed input ``V`` (16, N·H·W/4, C: 4× the size of ``x``, against 9× for
        im2col's matrix) and filters ``U``.
    """
    from ._winograd_kernels import kernels

    n, h, wd, c = x.shape
    f = w.shape[0]
    if not winograd_applicable(x.shape, w.shape, 1, 1) or w.shape[1] != c:
        raise ValueError(
            f"winograd_conv_forward: needs x (N, H, W, C) with H, W even and w (F, C, 3, 3); "
            f"got x {x.shape} and w {w.shape}"
        )
    k = kernels()
    t = n * (h // 2) * (wd // 2)
    v = np.empty((16, t, c), dtype=x.dtype)
    k.input_transform(np.ascontiguousarray(x), v)
    # U[ξ, f, c] = (G w_fc Gᵀ)[ξ]: one (16 × 9) · (9 × F·C) product.
    u = (_GG.astype(w.dtype) @ w.reshape(f * c, 9).T).reshape(16, f, c)
    m = np.matmul(v, u.transpose(0, 2, 1))  # (16, T, F)
    out = np.empty((n, h, wd, f), dtype=x.dtype)
    k.output_transform(m, np.ascontiguousarray(b, dtype=x.dtype), out)
    return out, WinogradCache(v, u, x.shape, w.shape)


def winograd_conv_backward(
    dout: np.ndarray, cache: WinogradCache, *, need_dx: bool = True
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Backward of :func:`winograd_conv_forward`: ``dx`` (N, H, W, C; ``None`` when not
    ``need_dx``) and ``{"w": dW (F, C, 3, 3), "b": db (F,)}``."""
    from ._winograd_kernels import kernels

    k = kernels()
    v, u, xshape, wshape = cache
    f, c = wshape[0], wshape[1]
    dm = np.empty((16, v.shape[1], f), dtype=dout.dtype)
    db = np.empty(f, dtype=np.float64)
    k.output_adjoint(dout, dm, db)
    du = np.matmul(dm.transpose(0, 2, 1), v)  # (16, F, C)
    dw = (du.reshape(16, f * c).T @ _GG.astype(du.dtype)).reshape(f, c, 3, 3)
    dx = None
    if need_dx:
        dv = np.matmul(dm, u)  # (16, T, C)
        dx = np.empty(xshape, dtype=dout.dtype)
        k.input_adjoint(dv, dx)
    return dx, {"w": dw, "b": db.astype(dout.dtype)}
