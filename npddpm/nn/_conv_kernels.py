r"""Numba im2col / col2im for the channels-last convolution (compiled on first use).

Same contracts as :func:`npddpm.nn.conv.im2col` and :func:`npddpm.nn.conv.col2im`, in one
pass each, with the zero padding handled by bounds checks instead of a padded copy:

- ``im2col``: row ``(n, i, j)`` of ``cols`` holds the window
  ``x_pad[n, s i + a, s j + b, :]`` for ``(a, b)`` in row-major order (zeros outside);
- ``col2im`` gathers instead of scattering: input pixel ``(n, y, x)`` sums the window
  entries that read it, ``(a, b)`` in the same row-major order and starting from zero, which
  is exactly the order in which the NumPy scatter-add accumulates them — so both kernels are
  bitwise equal to the NumPy functions (tested), in float32 and float64.

The kernels are serial and release the GIL: the U-Net parallelises over chunks of the batch
in Python threads (:mod:`npddpm.nn._parallel`).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from .._numba import cpu_jit

__all__ = ["kernels"]


@functools.cache
def kernels() -> SimpleNamespace:
    """Compile (once) and return ``im2col`` and ``col2im``."""


    @cpu_jit()
    def im2col(x, kh, kw, stride, padding, ho, wo, cols):
        """x (N, H, W, C) → cols (N·Ho·Wo, kh·kw·C)."""
        n, h, w, c = x.shape
        zero = x.dtype.type(0)
        for s in range(n):
            for i in range(ho):
                for j in range(wo):
                    row = (s * ho + i) * wo + j
                    for a in range(kh):
                        y = i * stride + a - padding
                        for b in range(kw):
                            xx = j * stride + b - padding
                            base = (a * kw + b) * c
                            if 0 <= y < h and 0 <= xx < w:
                                for ch in range(c):
                                    cols[row, base + ch] = x[s, y, xx, ch]
                            else:
                                for ch in range(c):
                                    cols[row, base + ch] = zero

    @cpu_jit()
    def col2im(dcols, kh, kw, stride, padding, ho, wo, dx):
        """dcols (N·Ho·Wo, kh·kw·C) → dx (N, H, W, C), the adjoint of im2col.

        Scatter-add over the rows of ``dcols`` in *reverse* order: an input pixel is read
        by window offset ``(a, b)`` of output ``(i, j) = ((y + p − a)/s, (x + p − b)/s)``,
        so descending ``(i, j)`` visits its ``(a, b)`` in ascending row-major order — the
        order of the NumPy scatter-add, hence the same sums bit for bit."""
        n, h, w, c = dx.shape
        zero = dx.dtype.type(0)
        for s in range(n):
            for y in range(h):
                for xx in range(w):
                    for ch in range(c):
                        dx[s, y, xx, ch] = zero
            for i in range(ho - 1, -1, -1):
                for j in range(wo - 1, -1, -1):
                    src = dcols[(s * ho + i) * wo + j]
                    for a in range(kh):
                        y = i * stride + a - padding
                        if y < 0 or y >= h:
                            continue
                        for b in range(kw):
                            xx = j * stride + b - padding
                            if xx < 0 or xx >= w:
                                continue
                            dst = dx[s, y, xx]
                            base = (a * kw + b) * c
                            for ch in range(c):
                                dst[ch] += src[base + ch]

    return SimpleNamespace(im2col=im2col, col2im=col2im)
