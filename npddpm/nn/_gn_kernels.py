r"""Fused group norm + SiLU for channels-last batches (Numba, compiled on first use).

Every normalisation in the U-Net's residual blocks and its output head is followed by a
SiLU; fusing the two keeps one activation array instead of three and makes one pass over
the data for each of the statistics, the normalisation and the activation:

.. math::
    \hat x = (x - \mu_{ng})\, r_{ng}, \quad r_{ng} = (\sigma^2_{ng} + \epsilon)^{-1/2},
    \quad z = \gamma_c \hat x + \beta_c, \quad y = z\,\sigma(z)

and backward, with :math:`\partial z = \partial y\,\sigma(z)(1 + z(1 - \sigma(z)))`,
:math:`g = \gamma_c\,\partial z` and means over each group's ``M = S·C/G`` elements,

.. math::
    \partial x = r_{ng}\bigl(g - \overline g - \hat x\,\overline{g \hat x}\bigr), \quad
    \partial\gamma_c = \textstyle\sum \partial z\,\hat x, \quad
    \partial\beta_c = \textstyle\sum \partial z .

Sums are accumulated in float64 (more accurate than the NumPy layers' float32 pairwise
sums). The logistic function is the rational approximation of :mod:`npddpm.nn._fused` in
float32 (absolute error < 3e-7) and ``1 / (1 + exp(−z))`` in float64, so float64 gradient
checks run through this code. Serial kernels that release the GIL (the U-Net splits the
batch over Python threads).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from .._numba import cpu_jit

__all__ = ["kernels"]


@functools.cache
def kernels() -> SimpleNamespace:
    """Compile (once) and return ``forward`` and ``backward`` (each dispatching on dtype)."""
    import math

    import numpy as np

    from ._fused import kernels as silu_kernels

    sig32 = silu_kernels().sigmoid_scalar

    @cpu_jit(inline=True)
    def sig64(z):
        return 1.0 / (1.0 + math.exp(-z))

    def build(sig):
        @cpu_jit()
        def forward(x, gamma, beta, groups, eps, xhat, rstd, y):
            """x, xhat, y (N, S, C); gamma, beta (C,); rstd (N, G) float64."""
            n, npos, c = x.shape
            cg = c // groups
            inv_m = 1.0 / (npos * cg)
            sums = np.empty(c, np.float64)
            mu = np.empty(c, np.float64)
            rc = np.empty(c, x.dtype)
            muc = np.empty(c, x.dtype)
            for s in range(n):
                sums[:] = 0.0
                for p in range(npos):
                    for ch in range(c):
                        sums[ch] += x[s, p, ch]
                for g in range(groups):
                    tot = 0.0
                    for ch in range(g * cg, (g + 1) * cg):
                        tot += sums[ch]
                    for ch in range(g * cg, (g + 1) * cg):
                        mu[ch] = tot * inv_m
                sums[:] = 0.0
                for p in range(npos):
                    for ch in range(c):
                        d = x[s, p, ch] - mu[ch]
                        sums[ch] += d * d
                for g in range(groups):
                    tot = 0.0
                    for ch in range(g * cg, (g + 1) * cg):
                        tot += sums[ch]
                    r = 1.0 / math.sqrt(tot * inv_m + eps)
                    rstd[s, g] = r
                    for ch in range(g * cg, (g + 1) * cg):
                        rc[ch] = r
                        muc[ch] = mu[ch]
                for p in range(npos):
                    for ch in range(c):
                        xh = (x[s, p, ch] - muc[ch]) * rc[ch]
                        xhat[s, p, ch] = xh
                        z = xh * gamma[ch] + beta[ch]
                        y[s, p, ch] = z * sig(z)

        @cpu_jit()
        def backward(dy, xhat, rstd, gamma, beta, groups, dx, dgamma, dbeta):
            """dy, xhat, dx (N, S, C); rstd (N, G); dgamma, dbeta (C,) float64 (summed into)."""
            n, npos, c = dy.shape
            cg = c // groups
            inv_m = 1.0 / (npos * cg)
            one = dy.dtype.type(1.0)
            sg = np.empty(c, np.float64)
            sgx = np.empty(c, np.float64)
            mg = np.empty(c, dy.dtype)
            mgx = np.empty(c, dy.dtype)
            rc = np.empty(c, dy.dtype)
            for s in range(n):
                # pass 1: dz (into dx) — one output, read-only inputs: vectorised
                for p in range(npos):
                    for ch in range(c):
                        xh = xhat[s, p, ch]
                        z = xh * gamma[ch] + beta[ch]
                        sz = sig(z)
                        dx[s, p, ch] = dy[s, p, ch] * (sz + z * sz * (one - sz))
                # passes 2-3: per-channel sums of dz and dz·x̂ (one accumulator each)
                sg[:] = 0.0
                for p in range(npos):
                    for ch in range(c):
                        sg[ch] += dx[s, p, ch]
                sgx[:] = 0.0
                for p in range(npos):
                    for ch in range(c):
                        sgx[ch] += dx[s, p, ch] * xhat[s, p, ch]
                for ch in range(c):
                    dbeta[ch] += sg[ch]
                    dgamma[ch] += sgx[ch]
                for g in range(groups):
                    a = 0.0
                    b = 0.0
                    for ch in range(g * cg, (g + 1) * cg):
                        a += gamma[ch] * sg[ch]
                        b += gamma[ch] * sgx[ch]
                    for ch in range(g * cg, (g + 1) * cg):
                        mg[ch] = a * inv_m
                        mgx[ch] = b * inv_m
                        rc[ch] = rstd[s, g]
                # pass 4: dx = r (γ dz − mean(g) − x̂ mean(g x̂))
                for p in range(npos):
                    for ch in range(c):
                        gv = dx[s, p, ch] * gamma[ch]
                        dx[s, p, ch] = rc[ch] * (gv - mg[ch] - xhat[s, p, ch] * mgx[ch])

        return forward, backward

    f32, b32 = build(sig32)
    f64, b64 = build(sig64)

    def forward(x, gamma, beta, groups, eps, xhat, rstd, y):
        (f32 if x.dtype == np.float32 else f64)(x, gamma, beta, groups, eps, xhat, rstd, y)

    def backward(dy, xhat, rstd, gamma, beta, groups, dx, dgamma, dbeta):
        fn = b32 if dy.dtype == np.float32 else b64
        fn(dy, xhat, rstd, gamma, beta, groups, dx, dgamma, dbeta)

    return SimpleNamespace(forward=forward, backward=backward)
