r"""Numba transforms of the Winograd F(2×2, 3×3) convolution (compiled on first use).

With the 4×4 input tile ``d`` of an output tile ``(n, i, j)`` (input rows ``2i − 1 … 2i + 2``,
columns ``2j − 1 … 2j + 2``, zeros outside the image) and the matrices of Lavin & Gray (2016)

.. math:: B^\top = \begin{pmatrix} 1&0&-1&0\\ 0&1&1&0\\ 0&-1&1&0\\ 0&1&0&-1 \end{pmatrix},\quad
          A^\top = \begin{pmatrix} 1&1&1&0\\ 0&1&-1&-1 \end{pmatrix},

the kernels compute, channel by channel (the innermost, contiguous loop):

- ``input_transform``: :math:`V = B^\top d\,B` for every tile, stored as ``v[ξ, tile, c]`` with
  ``ξ = 4·row + column`` of the 4×4 result;
- ``output_transform``: :math:`y = A^\top m\,A + b` (the 2×2 output tile) from ``m[ξ, tile, f]``;
- ``output_adjoint``: :math:`\partial m = A\,\partial y\,A^\top` (the adjoint of
  ``output_transform``), and the bias gradient :math:`\sum \partial y` accumulated in float64;
- ``input_adjoint``: :math:`\partial x = \sum_{tiles} B\,\partial V B^\top` placed at the
  tile's window and cropped to the image (the adjoint of ``input_transform``).

Every kernel is serial and releases the GIL; the U-Net runs chunks of its batch in threads.
Each works one tile row at a time through small scratch rows, and every array index is built
from loop counters only (``2 * j + 1``, never a precomputed offset ``o + ch``): LLVM can then
prove the index non-negative, drop Numba's negative-index wrap-around and vectorise the
channel loops (faster than flat offset arithmetic; figures in ``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from .._numba import cpu_jit

__all__ = ["kernels"]


@functools.cache
def kernels() -> SimpleNamespace:
    """Compile (once) and return the four transforms."""
    import numpy as np


    @cpu_jit()
    def input_transform(x, v):
        """x (N, H, W, C), H and W even → v (16, N·H/2·W/2, C)."""
        n, h, w, c = x.shape
        th, tw = h // 2, w // 2
        xp = np.zeros((h + 2, w + 2, c), dtype=x.dtype)  # one image, zero-padded by 1
        t = np.empty((4, w + 2, c), dtype=x.dtype)
        for s in range(n):
            for y in range(h):
                for xx in range(w):
                    for ch in range(c):
                        xp[y + 1, xx + 1, ch] = x[s, y, xx, ch]
            for i in range(th):
                # rows: t = Bᵀ d over the whole padded tile row (every tile at once)
                for b in range(w + 2):
                    for ch in range(c):
                        t[0, b, ch] = xp[2 * i, b, ch] - xp[2 * i + 2, b, ch]
                    for ch in range(c):
                        t[1, b, ch] = xp[2 * i + 1, b, ch] + xp[2 * i + 2, b, ch]
                    for ch in range(c):
                        t[2, b, ch] = xp[2 * i + 2, b, ch] - xp[2 * i + 1, b, ch]
                    for ch in range(c):
                        t[3, b, ch] = xp[2 * i + 1, b, ch] - xp[2 * i + 3, b, ch]
                # columns: V = t B, tile by tile
                for j in range(tw):
                    tile = (s * th + i) * tw + j
                    for a in range(4):
                        for ch in range(c):
                            v[4 * a, tile, ch] = t[a, 2 * j, ch] - t[a, 2 * j + 2, ch]
                        for ch in range(c):
                            v[4 * a + 1, tile, ch] = t[a, 2 * j + 1, ch] + t[a, 2 * j + 2, ch]
                        for ch in range(c):
                            v[4 * a + 2, tile, ch] = t[a, 2 * j + 2, ch] - t[a, 2 * j + 1, ch]
                        for ch in range(c):
                            v[4 * a + 3, tile, ch] = t[a, 2 * j + 1, ch] - t[a, 2 * j + 3, ch]

    @cpu_jit()
    def output_transform(m, bias, y):
        """m (16, T, F), bias (F,) → y (N, H, W, F)."""
        n, h, w, f = y.shape
        th, tw = h // 2, w // 2
        r = np.empty((2, tw, 4, f), dtype=m.dtype)
        for s in range(n):
            for i in range(th):
                # rows: r = Aᵀ m for every tile of the row
                for j in range(tw):
                    tile = (s * th + i) * tw + j
                    for b in range(4):
                        for ch in range(f):
                            r[0, j, b, ch] = (
                                m[b, tile, ch] + m[4 + b, tile, ch] + m[8 + b, tile, ch]
                            )
                        for ch in range(f):
                            r[1, j, b, ch] = (
                                m[4 + b, tile, ch] - m[8 + b, tile, ch] - m[12 + b, tile, ch]
                            )
                # columns: y = r A + bias
                for a in range(2):
                    for j in range(tw):
                        for ch in range(f):
                            y[s, 2 * i + a, 2 * j, ch] = (
                                r[a, j, 0, ch] + r[a, j, 1, ch] + r[a, j, 2, ch] + bias[ch]
                            )
                        for ch in range(f):
                            y[s, 2 * i + a, 2 * j + 1, ch] = (
                                r[a, j, 1, ch] - r[a, j, 2, ch] - r[a, j, 3, ch] + bias[ch]
                            )

    @cpu_jit()
    def output_adjoint(dy, dm, db):
        """dy (N, H, W, F) → dm (16, T, F); db (F,) float64 ← Σ dy over N, H, W."""
        n, h, w, f = dy.shape
        th, tw = h // 2, w // 2
        sb = np.empty((4, w, f), dtype=dy.dtype)
        for ch in range(f):
            db[ch] = 0.0
        for s in range(n):
            for y in range(h):
                for xx in range(w):
                    for ch in range(f):
                        db[ch] += np.float64(dy[s, y, xx, ch])
            for i in range(th):
                # rows: s = A g for every tile of the row
                for b in range(w):
                    for ch in range(f):
                        sb[0, b, ch] = dy[s, 2 * i, b, ch]
                    for ch in range(f):
                        sb[1, b, ch] = dy[s, 2 * i, b, ch] + dy[s, 2 * i + 1, b, ch]
                    for ch in range(f):
                        sb[2, b, ch] = dy[s, 2 * i, b, ch] - dy[s, 2 * i + 1, b, ch]
                    for ch in range(f):
                        sb[3, b, ch] = -dy[s, 2 * i + 1, b, ch]
                # columns: dm = s Aᵀ, tile by tile
                for j in range(tw):
                    tile = (s * th + i) * tw + j
                    for a in range(4):
                        for ch in range(f):
                            dm[4 * a, tile, ch] = sb[a, 2 * j, ch]
                        for ch in range(f):
                            dm[4 * a + 1, tile, ch] = sb[a, 2 * j, ch] + sb[a, 2 * j + 1, ch]
                        for ch in range(f):
                            dm[4 * a + 2, tile, ch] = sb[a, 2 * j, ch] - sb[a, 2 * j + 1, ch]
                        for ch in range(f):
                            dm[4 * a + 3, tile, ch] = -sb[a, 2 * j + 1, ch]

    @cpu_jit()
    def input_adjoint(dv, dx):
        """dv (16, T, C) → dx (N, H, W, C) = Σ_tiles B dV Bᵀ at each tile's window."""
        n, h, w, c = dx.shape
        th, tw = h // 2, w // 2
        dp = np.empty((h + 2, w + 2, c), dtype=dx.dtype)  # one image's padded gradient
        t = np.empty((4, w + 2, c), dtype=dx.dtype)
        for s in range(n):
            dp[:] = 0
            for i in range(th):
                # columns: t[a] = dV[a] Bᵀ, added at each tile's four columns
                t[:] = 0
                for j in range(tw):
                    tile = (s * th + i) * tw + j
                    for a in range(4):
                        for ch in range(c):
                            t[a, 2 * j, ch] += dv[4 * a, tile, ch]
                        for ch in range(c):
                            t[a, 2 * j + 1, ch] += (
                                dv[4 * a + 1, tile, ch] - dv[4 * a + 2, tile, ch]
                            ) + dv[4 * a + 3, tile, ch]
                        for ch in range(c):
                            t[a, 2 * j + 2, ch] += (
                                dv[4 * a + 1, tile, ch] + dv[4 * a + 2, tile, ch]
                            ) - dv[4 * a, tile, ch]
                        for ch in range(c):
                            t[a, 2 * j + 3, ch] -= dv[4 * a + 3, tile, ch]
                # rows: B t, added at the tile row's four padded rows
                for b in range(w + 2):
                    for ch in range(c):
                        dp[2 * i, b, ch] += t[0, b, ch]
                    for ch in range(c):
                        dp[2 * i + 1, b, ch] += (t[1, b, ch] - t[2, b, ch]) + t[3, b, ch]
                    for ch in range(c):
                        dp[2 * i + 2, b, ch] += (t[1, b, ch] + t[2, b, ch]) - t[0, b, ch]
                    for ch in range(c):
                        dp[2 * i + 3, b, ch] -= t[3, b, ch]
            for y in range(h):
                for xx in range(w):
                    for ch in range(c):
                        dx[s, y, xx, ch] = dp[y + 1, xx + 1, ch]

    return SimpleNamespace(
        input_transform=input_transform,
        output_transform=output_transform,
        output_adjoint=output_adjoint,
        input_adjoint=input_adjoint,
    )
