r"""Fused float32 SiLU kernels for the MLP's training step (Numba, compiled on first use).

NumPy's float32 ``exp`` is a library call per element, so a NumPy SiLU on a large batch costs
about as much as one of the MLP's matrix products (figures in ``benchmarks/README.md``).
These kernels compute the logistic function from a rational approximation of tanh,

.. math:: \sigma(x) = \tfrac12 + \tfrac12 \tanh(x/2), \qquad
          \tanh(y) \approx y\,P(y^2) / Q(y^2), \quad |y| \le 7.905\ (\text{clamped})

with the degree-13/6 minimax coefficients used by Eigen, XLA and ONNX Runtime's MLAS (about
2 ulp from tanh in float32), the Horner steps as fused multiply-adds
(:func:`npddpm._numba.fma`: one rounding each, the same bits on every machine; 20-30 % faster
than separate products and sums on an AVX2 core, figures in ``benchmarks/README.md``). Only
arithmetic remains, so LLVM vectorises the inner loop (no SVML is needed). The absolute error
of σ is below 3e-7 (checked against float64 in the tests); float64 models never use these
kernels.

Nothing is compiled at import: :func:`kernels` builds the jitted functions on first call.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from .._numba import cpu_jit
from .._numba import fma as fma_intrinsic

__all__ = ["kernels"]


@functools.cache
def kernels() -> SimpleNamespace:
    """Compile (once) and return the fused kernels.

    Serial kernels: the MLP parallelises over chunks of rows in Python threads instead (the
    kernels release the GIL), which avoids Numba's and OpenBLAS's thread pools spinning
    against each other.
    """
    import numpy as np

    fma = fma_intrinsic()
    f32 = np.float32
    a1, a3, a5, a7 = (
        f32(4.89352455891786e-03),
        f32(6.37261928875436e-04),
        f32(1.48572235717979e-05),
        f32(5.12229709037114e-08),
    )
    a9, a11, a13 = f32(-8.60467152213735e-11), f32(2.00018790482477e-13), f32(-2.76076847742355e-16)
    b0, b2, b4, b6 = (
        f32(4.89352518554385e-03),
        f32(2.26843463243900e-03),
        f32(1.18534705686654e-04),
        f32(1.19825839466702e-06),
    )
    clamp = f32(7.90531110763549805)
    half = f32(0.5)
    one = f32(1.0)
    zero = f32(0.0)


    @cpu_jit(inline=True)
    def sigmoid(x):
        y = x * half
        y = min(max(y, -clamp), clamp)
        y2 = y * y
        p = fma(a13, y2, a11)
        p = fma(p, y2, a9)
        p = fma(p, y2, a7)
        p = fma(p, y2, a5)
        p = fma(p, y2, a3)
        p = fma(p, y2, a1)
        q = fma(b6, y2, b4)
        q = fma(q, y2, b2)
        q = fma(q, y2, b0)
        return fma(half, y * p / q, half)

    def build():

        @cpu_jit()
        def bias_silu(h, b, a):
            """h += b (in place); a = h·σ(h).   h, a (N, D) float32; b (D,)."""
            n, d = h.shape
            for i in range(n):
                for j in range(d):
                    x = h[i, j] + b[j]
                    h[i, j] = x
                    a[i, j] = x * sigmoid(x)

        @cpu_jit()
        def residual_silu(h, r, b, a):
            """h += r + b (in place); a = h·σ(h)."""
            n, d = h.shape
            for i in range(n):
                for j in range(d):
                    x = h[i, j] + r[i, j] + b[j]
                    h[i, j] = x
                    a[i, j] = x * sigmoid(x)

        @cpu_jit(inline=True)
        def dsilu(x):
            """SiLU'(x) = σ(x) (1 + x (1 − σ(x))), written σ + x σ (1 − σ)."""
            sg = sigmoid(x)
            return sg + x * sg * (one - sg)

        @cpu_jit()
        def silu_grad(g, h, out, accumulate):
            """out (+)= g · SiLU'(h), the SiLU derivative (σ recomputed)."""
            n, d = g.shape
            for i in range(n):
                for j in range(d):
                    v = g[i, j] * dsilu(h[i, j])
                    if accumulate:
                        out[i, j] += v
                    else:
                        out[i, j] = v

        @cpu_jit()
        def silu_grad_sum(g, h, out, accumulate, colsum):
            """:func:`silu_grad` and ``colsum = Σ_rows out`` in the same pass (row after row,
            from zero: the order of ``np.sum(out, axis=0)``); the MLP's bias gradients."""
            n, d = g.shape
            for j in range(d):
                colsum[j] = zero
            for i in range(n):
                for j in range(d):
                    v = g[i, j] * dsilu(h[i, j])
                    if accumulate:
                        v = out[i, j] + v
                    out[i, j] = v
                    colsum[j] += v

        @cpu_jit()
        def embed_silu(x, wx, c, inv, h, a):
            """h = x wx + c[inv] (the input layer with the timestep part hoisted); a = h·σ(h).

            x (N, D), wx (D, H), c (U, H) float32; inv (N,) int64 rows of c."""
            n, d = x.shape
            hid = wx.shape[1]
            for i in range(n):
                ci = inv[i]
                for j in range(hid):
                    h[i, j] = c[ci, j]
                for k in range(d):
                    xk = x[i, k]
                    for j in range(hid):
                        h[i, j] += xk * wx[k, j]
                for j in range(hid):
                    v = h[i, j]
                    a[i, j] = v * sigmoid(v)

        return SimpleNamespace(
            bias_silu=bias_silu,
            residual_silu=residual_silu,
            silu_grad=silu_grad,
            silu_grad_sum=silu_grad_sum,
            embed_silu=embed_silu,
        )

    k = build()
    k.sigmoid_scalar = sigmoid
    return k
