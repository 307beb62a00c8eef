"""Numba CPU kernels: fused, row-parallel (``prange`` over batch rows), no temporaries.

Twin of :mod:`npddpm.kernels.cuda`; the NumPy spec is :mod:`npddpm.kernels.reference`,
whose expressions are evaluated here in the same order, so with fastmath off the results
are bitwise equal. Arrays are 2-D ``(B, D)`` and C-contiguous; per-row coefficients are
``(B,)`` arrays of the array dtype. Nothing here validates (the public wrapper in
:mod:`npddpm.kernels.dispatch` does). Importing this module compiles nothing; each kernel
compiles on its first call for each dtype (and is cached, see :mod:`.config`).

In-kernel noise: each row walks the Philox blocks ``q`` that cover its flat indices
``[b·D, b·D + D)``; a block straddling two rows is computed by both (a pure function of
``(seed, stream, q)``, so both get the same numbers). Blocks fully inside the row write four
elements without bounds checks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import rng
from .config import cpu_jit

_U3 = np.uint64(3)
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)

philox4x32_10 = cpu_jit()(rng.philox4x32_10_words)


@cpu_jit()
def box_muller(w0, w1, like):
    """Two normals from two words in ``like.dtype`` (see :func:`npddpm.rng.box_muller`)."""
    f = like.dtype.type
    u = (f(w0) + f(0.5)) * f(2.0**-32)
    theta = f(w1) * f(2.0 * math.pi * 2.0**-32)
    r = math.sqrt(f(-2.0) * math.log(u))
    return r * math.cos(theta), r * math.sin(theta)


@cpu_jit()
def normal4(q, k0, k1, s0, s1, like):
    """The four normals of Philox block ``q`` (elements ``4q … 4q + 3``)."""
    uq = np.uint64(q)
    w0, w1, w2, w3 = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
    z0, z1 = box_muller(w0, w1, like)
    z2, z3 = box_muller(w2, w3, like)
    return z0, z1, z2, z3


@cpu_jit()
def random_words(n, k0, k1, s0, s1, out):
    """``out[i] = word(i)`` for ``i < n`` (the uint32 stream, for the tests)."""
    for q in range((n + 3) // 4):
        uq = np.uint64(q)
        w = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
        for lane in range(4):
            if 4 * q + lane < n:
                out[4 * q + lane] = np.uint32(w[lane])


_CHUNK = 4096  # elements per parallel work item of standard_normal (a multiple of 4)


@cpu_jit(parallel=True)
def standard_normal_flat(k0, k1, s0, s1, out):
    """Fill a 1-D array with the normals of its indices, in chunks of ``_CHUNK``."""
    n = out.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        i0 = c * _CHUNK
        i1 = min(i0 + _CHUNK, n)
        for q in range(i0 // 4, (i1 + 3) // 4):
            z = normal4(q, k0, k1, s0, s1, out)
            for lane in range(4):
                i = 4 * q + lane
                if i < i1:
                    out[i] = z[lane]


def standard_normal(seed: int, stream: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Backend entry point: :func:`npddpm.rng.standard_normal` computed in parallel."""
    out = np.empty(shape, dtype)
    if out.size:
        standard_normal_flat(*rng.kernel_words(seed, stream), out.reshape(-1))
    return out


# --------------------------------------------------------------------------------------
# Element-wise helpers (the expressions of reference.py, in the same order)
# --------------------------------------------------------------------------------------


@cpu_jit()
def _x0_hat(x, e, c_recip, c_recipm1, clip, one):
    v = c_recip * x - c_recipm1 * e
    if clip:
        if v < -one:
            v = -one
        elif v > one:
            v = one
    return v


@cpu_jit()
def _ddpm(x, e, z, c_recip, c_recipm1, c1, c2, s, clip, one):
    x0 = _x0_hat(x, e, c_recip, c_recipm1, clip, one)
    return (c1 * x0 + c2 * x) + s * z


@cpu_jit()
def _ddim(x, e, z, c_recip, c_recipm1, c_prev, c_dir, s, clip, one):
    x0 = _x0_hat(x, e, c_recip, c_recipm1, clip, one)
    eps_hat = (c_recip * x - x0) / c_recipm1
    return (x0 * c_prev + c_dir * eps_hat) + s * z


# --------------------------------------------------------------------------------------
# Kernels with the noise given
# --------------------------------------------------------------------------------------


@cpu_jit(parallel=True)
def q_sample(x0, z, a, b, out):
    B, D = out.shape
    for r in prange(B):
        ar = a[r]
        br = b[r]
        for j in range(D):
            out[r, j] = ar * x0[r, j] + br * z[r, j]


@cpu_jit(parallel=True)
def ddpm_step(x, eps, z, c_recip, c_recipm1, c1, c2, s, clip, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        cr, crm, k1, k2, sr = c_recip[r], c_recipm1[r], c1[r], c2[r], s[r]
        for j in range(D):
            out[r, j] = _ddpm(x[r, j], eps[r, j], z[r, j], cr, crm, k1, k2, sr, clip, one)


@cpu_jit(parallel=True)
def ddim_step(x, eps, z, c_recip, c_recipm1, c_prev, c_dir, s, clip, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        cr, crm, cp, cd, sr = c_recip[r], c_recipm1[r], c_prev[r], c_dir[r], s[r]
        for j in range(D):
            out[r, j] = _ddim(x[r, j], eps[r, j], z[r, j], cr, crm, cp, cd, sr, clip, one)


# --------------------------------------------------------------------------------------
# Kernels with in-kernel noise
# --------------------------------------------------------------------------------------


@cpu_jit(parallel=True)
def q_sample_rng(x0, a, b, k0, k1, s0, s1, out):
    B, D = out.shape
    for r in prange(B):
        ar = a[r]
        br = b[r]
        i0 = r * D
        for q in range(i0 // 4, (i0 + D + 3) // 4):
            z = normal4(q, k0, k1, s0, s1, out)
            for lane in range(4):
                j = 4 * q + lane - i0
                if 0 <= j < D:
                    out[r, j] = ar * x0[r, j] + br * z[lane]


@cpu_jit(parallel=True)
def ddpm_step_rng(x, eps, c_recip, c_recipm1, c1, c2, s, clip, k0, k1, s0, s1, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        cr, crm, m1, m2, sr = c_recip[r], c_recipm1[r], c1[r], c2[r], s[r]
        i0 = r * D
        for q in range(i0 // 4, (i0 + D + 3) // 4):
            z = normal4(q, k0, k1, s0, s1, out)
            for lane in range(4):
                j = 4 * q + lane - i0
                if 0 <= j < D:
                    out[r, j] = _ddpm(x[r, j], eps[r, j], z[lane], cr, crm, m1, m2, sr, clip, one)


@cpu_jit(parallel=True)
def ddim_step_rng(x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, k0, k1, s0, s1, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        cr, crm, cp, cd, sr = c_recip[r], c_recipm1[r], c_prev[r], c_dir[r], s[r]
        i0 = r * D
        for q in range(i0 // 4, (i0 + D + 3) // 4):
            z = normal4(q, k0, k1, s0, s1, out)
            for lane in range(4):
                j = 4 * q + lane - i0
                if 0 <= j < D:
                    out[r, j] = _ddim(x[r, j], eps[r, j], z[lane], cr, crm, cp, cd, sr, clip, one)


_KERNELS = {"q_sample": q_sample, "ddpm_step": ddpm_step, "ddim_step": ddim_step}
_RNG_KERNELS = {"q_sample": q_sample_rng, "ddpm_step": ddpm_step_rng, "ddim_step": ddim_step_rng}


def run(name, arrays, coefs, extra, noise, seed, stream, out):
    """Backend entry point (see :mod:`.dispatch`): ``(B, D)`` arrays, noise or a seed."""
    x = arrays[0]
    res = np.empty(x.shape, x.dtype) if out is None else out
    if noise is not None:
        _KERNELS[name](*arrays, noise, *coefs, *extra, res)
    else:
        _RNG_KERNELS[name](*arrays, *coefs, *extra, *rng.kernel_words(seed, stream), res)
    return res
