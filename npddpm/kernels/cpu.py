"""Numba CPU kernels: fused, row-parallel (``prange`` over batch rows), no temporaries.

Twin of :mod:`npddpm.kernels.cuda`; the NumPy spec is :mod:`npddpm.kernels.reference`,
whose expressions are evaluated here in the same order, so with fastmath off the results
are bitwise equal. Arrays are 2-D ``(B, D)`` and C-contiguous; per-row coefficients are
``(B,)`` arrays of the array dtype. Nothing here validates (the public wrapper in
:mod:`npddpm.kernels.dispatch` does). Importing this module compiles nothing; each kernel
compiles on its first call for each dtype (and is cached, see :mod:`npddpm._numba`).

In-kernel noise: each row is processed in chunks of :data:`CHUNK` elements. For a chunk with
flat indices ``[i, i + n)``, :func:`normals_into` writes the normals into a per-thread
scratch row (``CHUNK`` values, L1-resident, allocated once per call; no array-sized
temporary), and a second loop applies the fused step. Both loops are vectorised by LLVM:
the Philox rounds and the normal transform are straight-line arithmetic
(:mod:`npddpm.rng`), inlined at Numba-IR level into :func:`normals_into` only, so they are
compiled once per dtype and not once per kernel. A Philox block straddling two chunks or
rows is computed by both (a pure function of ``(seed, stream, q)``).
"""

from __future__ import annotations

import numpy as np
from numba import get_thread_id, prange, types
from numba.extending import overload

from .. import rng
from .._numba import cpu_jit

_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)

philox4x32_10 = cpu_jit(inline=True, boundscheck=False)(rng.philox4x32_10_words)
_box_muller_f32 = cpu_jit(inline=True, boundscheck=False)(rng.box_muller_f32)
_box_muller_f64 = cpu_jit(inline=True, boundscheck=False)(rng.box_muller_f64)


def box_muller(w0, w1, like):
    """Two normals from two words in ``like.dtype`` (:func:`npddpm.rng.box_muller`); in
    compiled code the overload below picks the float32 or float64 transform."""
    return rng.box_muller(w0, w1, like.dtype)


@overload(box_muller, inline="always")
def _box_muller_overload(w0, w1, like):
    if like.dtype == types.float32:
        return lambda w0, w1, like: _box_muller_f32(w0, w1)
    return lambda w0, w1, like: _box_muller_f64(w0, w1)


@cpu_jit(inline=True, boundscheck=False)
def _normal4_inline(q, k0, k1, s0, s1, like):
    """The four normals of Philox block ``q`` (elements ``4q … 4q + 3``)."""
    uq = np.uint64(q)
    w0, w1, w2, w3 = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
    z0, z1 = box_muller(w0, w1, like)
    z2, z3 = box_muller(w2, w3, like)
    return z0, z1, z2, z3


@cpu_jit(boundscheck=False)
def normal4(q, k0, k1, s0, s1, like):
    """:func:`_normal4_inline` as a called function (for the partial blocks)."""
    return _normal4_inline(q, k0, k1, s0, s1, like)


@cpu_jit(boundscheck=False)
def normals_into(i, n, k0, k1, s0, s1, buf):
    """``buf[m] = z(i + m)`` for ``m < n``: the normals of flat indices ``[i, i + n)``.

    Blocks fully inside the range go through a straight-line loop that LLVM vectorises; the
    at most two partial blocks at the ends through lane-checked code.
    """
    i_end = i + n
    qf = i // 4
    ql = (i_end - 1) // 4
    qa = (i + 3) // 4  # first full block
    qb = i_end // 4  # one past the last full block
    for q in range(qf, min(qa, ql + 1)):
        _partial_block(q, i, i_end, k0, k1, s0, s1, buf)
    # index from a view that starts at the first full block, so that every index is
    # provably non-negative (no wraparound select) and LLVM vectorises the loop
    dst = buf[4 * qa - i :]
    for p in range(qb - qa):
        z0, z1, z2, z3 = _normal4_inline(qa + p, k0, k1, s0, s1, buf)
        dst[4 * p] = z0
        dst[4 * p + 1] = z1
        dst[4 * p + 2] = z2
        dst[4 * p + 3] = z3
    for q in range(max(qa, qb), ql + 1):
        _partial_block(q, i, i_end, k0, k1, s0, s1, buf)


@cpu_jit(boundscheck=False)
def _partial_block(q, i, i_end, k0, k1, s0, s1, buf):
    z = normal4(q, k0, k1, s0, s1, buf)
    for lane in range(4):
        g = 4 * q + lane
        if i <= g < i_end:
            buf[g - i] = z[lane]


@cpu_jit(boundscheck=False)
def random_words(n, k0, k1, s0, s1, out):
    """``out[i] = word(i)`` for ``i < n`` (the uint32 stream, for the tests)."""
    for q in range((n + 3) // 4):
        uq = np.uint64(q)
        w = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
        for lane in range(4):
            if 4 * q + lane < n:
                out[4 * q + lane] = np.uint32(w[lane])


#: Elements per chunk of in-kernel noise (a multiple of 4).
CHUNK = 512


@cpu_jit(parallel=True, boundscheck=False)
def standard_normal_flat(k0, k1, s0, s1, out):
    """Fill a 1-D array with the normals of its indices, ``CHUNK`` at a time in parallel."""
    n = out.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0 = c * CHUNK
        i1 = min(i0 + CHUNK, n)
        normals_into(i0, i1 - i0, k0, k1, s0, s1, out[i0:i1])


def standard_normal(seed: int, stream: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Backend entry point: :func:`npddpm.rng.standard_normal` computed in parallel."""
    out = np.empty(shape, dtype)
    if out.size:
        standard_normal_flat(*rng.kernel_words(seed, stream), out.reshape(-1))
    return out


# --------------------------------------------------------------------------------------
# Element-wise helpers (the expressions of reference.py, in the same order)
# --------------------------------------------------------------------------------------


@cpu_jit(inline=True, boundscheck=False)
def _x0_hat(x, e, c_recip, c_recipm1, clip, one):
    v = c_recip * x - c_recipm1 * e
    if clip:
        if v < -one:
            v = -one
        elif v > one:
            v = one
    return v


@cpu_jit(inline=True, boundscheck=False)
def _ddpm(x, e, z, c_recip, c_recipm1, c1, c2, s, clip, one):
    x0 = _x0_hat(x, e, c_recip, c_recipm1, clip, one)
    return (c1 * x0 + c2 * x) + s * z


@cpu_jit(inline=True, boundscheck=False)
def _ddim(x, e, z, c_recip, c_recipm1, c_prev, c_dir, s, clip, one):
    x0 = _x0_hat(x, e, c_recip, c_recipm1, clip, one)
    eps_hat = (c_recip * x - x0) / c_recipm1
    return (x0 * c_prev + c_dir * eps_hat) + s * z


# --------------------------------------------------------------------------------------
# Kernels with the noise given
# --------------------------------------------------------------------------------------


@cpu_jit(parallel=True, boundscheck=False)
def q_sample(x0, z, a, b, out):
    B, D = out.shape
    for r in prange(B):
        ar = a[r]
        br = b[r]
        for j in range(D):
            out[r, j] = ar * x0[r, j] + br * z[r, j]


@cpu_jit(parallel=True, boundscheck=False)
def ddpm_step(x, eps, z, c_recip, c_recipm1, c1, c2, s, clip, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        cr, crm, k1, k2, sr = c_recip[r], c_recipm1[r], c1[r], c2[r], s[r]
        for j in range(D):
            out[r, j] = _ddpm(x[r, j], eps[r, j], z[r, j], cr, crm, k1, k2, sr, clip, one)


@cpu_jit(parallel=True, boundscheck=False)
def ddim_step(x, eps, z, c_recip, c_recipm1, c_prev, c_dir, s, clip, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        cr, crm, cp, cd, sr = c_recip[r], c_recipm1[r], c_prev[r], c_dir[r], s[r]
        for j in range(D):
            out[r, j] = _ddim(x[r, j], eps[r, j], z[r, j], cr, crm, cp, cd, sr, clip, one)


@cpu_jit(parallel=True, boundscheck=False)
def langevin_step(x, g, z, a, b, out):
    B, D = out.shape
    for r in prange(B):
        ar = a[r]
        br = b[r]
        for j in range(D):
            out[r, j] = (x[r, j] + ar * g[r, j]) + br * z[r, j]


# --------------------------------------------------------------------------------------
# Kernels with in-kernel noise: normals of a chunk into the thread's scratch row, then the step
# --------------------------------------------------------------------------------------


@cpu_jit(parallel=True, boundscheck=False)
def q_sample_rng(x0, a, b, k0, k1, s0, s1, scratch, out):
    B, D = out.shape
    for r in prange(B):
        z = scratch[get_thread_id()]
        ar = a[r]
        br = b[r]
        for c in range(0, D, CHUNK):
            n = min(CHUNK, D - c)
            normals_into(r * D + c, n, k0, k1, s0, s1, z)
            for m in range(n):
                out[r, c + m] = ar * x0[r, c + m] + br * z[m]


@cpu_jit(parallel=True, boundscheck=False)
def ddpm_step_rng(x, eps, c_recip, c_recipm1, c1, c2, s, clip, k0, k1, s0, s1, scratch, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        z = scratch[get_thread_id()]
        cr, crm, m1, m2, sr = c_recip[r], c_recipm1[r], c1[r], c2[r], s[r]
        for c in range(0, D, CHUNK):
            n = min(CHUNK, D - c)
            normals_into(r * D + c, n, k0, k1, s0, s1, z)
            for m in range(n):
                j = c + m
                out[r, j] = _ddpm(x[r, j], eps[r, j], z[m], cr, crm, m1, m2, sr, clip, one)


@cpu_jit(parallel=True, boundscheck=False)
def ddim_step_rng(x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, k0, k1, s0, s1, scratch, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        z = scratch[get_thread_id()]
        cr, crm, cp, cd, sr = c_recip[r], c_recipm1[r], c_prev[r], c_dir[r], s[r]
        for c in range(0, D, CHUNK):
            n = min(CHUNK, D - c)
            normals_into(r * D + c, n, k0, k1, s0, s1, z)
            for m in range(n):
                j = c + m
                out[r, j] = _ddim(x[r, j], eps[r, j], z[m], cr, crm, cp, cd, sr, clip, one)


@cpu_jit(parallel=True, boundscheck=False)
def langevin_step_rng(x, g, a, b, k0, k1, s0, s1, scratch, out):
    B, D = out.shape
    for r in prange(B):
        z = scratch[get_thread_id()]
        ar = a[r]
        br = b[r]
        for c in range(0, D, CHUNK):
            n = min(CHUNK, D - c)
            normals_into(r * D + c, n, k0, k1, s0, s1, z)
            for m in range(n):
                out[r, c + m] = (x[r, c + m] + ar * g[r, c + m]) + br * z[m]


_KERNELS = {
    "q_sample": q_sample,
    "ddpm_step": ddpm_step,
    "ddim_step": ddim_step,
    "langevin_step": langevin_step,
}
_RNG_KERNELS = {
    "q_sample": q_sample_rng,
    "ddpm_step": ddpm_step_rng,
    "ddim_step": ddim_step_rng,
    "langevin_step": langevin_step_rng,
}


def scratch(dtype) -> np.ndarray:
    """One ``CHUNK``-element scratch row per Numba thread, for the in-kernel noise."""
    import numba

    return np.empty((numba.config.NUMBA_NUM_THREADS, CHUNK), dtype)


#: Rows narrower than this take their in-kernel noise in one flat pass first (the noise
#: is a function of the flat index, so the values are the same): per-row noise chunks of a
#: few elements cost ~50x the arithmetic (10,000 rows of 2: 1 ms one-pass, 0.1 ms two-pass).
NARROW = 64


#: Below this many elements the kernels run on the calling thread only: a parallel region
#: costs more than it saves there, and its idle worker threads spin against a denoiser's
#: own threads (a 10,000 × 2 sampling step cost its MLP ~8 ms per step).
SERIAL_BELOW = 100_000


def run(name, arrays, coefs, extra, noise, seed, stream, out):
    """Backend entry point (see :mod:`.dispatch`): ``(B, D)`` arrays, noise or a seed."""
    if arrays[0].size < SERIAL_BELOW:
        import numba

        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return _run(name, arrays, coefs, extra, noise, seed, stream, out)
        finally:
            numba.set_num_threads(previous)
    return _run(name, arrays, coefs, extra, noise, seed, stream, out)


def _run(name, arrays, coefs, extra, noise, seed, stream, out):
    x = arrays[0]
    res = np.empty(x.shape, x.dtype) if out is None else out
    if noise is None and x.shape[1] < NARROW:
        noise = standard_normal(seed, stream, x.shape, x.dtype)
    if noise is not None:
        _KERNELS[name](*arrays, noise, *coefs, *extra, res)
    else:
        words = rng.kernel_words(seed, stream)
        _RNG_KERNELS[name](*arrays, *coefs, *extra, *words, scratch(x.dtype), res)
    return res
