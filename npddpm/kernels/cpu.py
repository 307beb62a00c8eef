"""Numba CPU kernels: fused, row-parallel (``prange`` over batch rows), no temporaries.

Twin of :mod:`npddpm.kernels.cuda`; the NumPy spec is :mod:`npddpm.kernels.reference`,
whose expressions are evaluated here in the same order, so with fastmath off the results
are bitwise equal. Arrays are 2-D ``(B, D)`` and C-contiguous; per-row coefficients are
``(B,)`` arrays of the array dtype, in the kernel's named tuple
(:mod:`npddpm.kernels.contract`). Nothing here validates (the public wrapper in
:mod:`npddpm.kernels.dispatch` does). Importing this module compiles nothing; each kernel
compiles on its first call for each dtype (and is cached, see :mod:`npddpm._numba`).

Every kernel is one of two loop drivers, :func:`_given` (noise given) and :func:`_in_kernel`
(in-kernel noise), compiled around the kernel's per-row and per-element functions from
:mod:`npddpm.kernels.elementwise` (inlined at Numba-IR level, so the compiled loops are those
a hand-written kernel would have). Arguments: ``(inputs, noise, coefs, clip, out)`` and
``(inputs, coefs, clip, k0, k1, s0, s1, scratch, out)``, with ``inputs`` a tuple of arrays.

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

from types import FunctionType
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import get_thread_id, prange, types
from numba.extending import overload

from .. import rng
from .._numba import cpu_jit
from . import elementwise
from .contract import KernelCall

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
# The loop drivers: one with the noise given, one with in-kernel noise, for every kernel
# --------------------------------------------------------------------------------------

_ELEMENTWISE = elementwise.build(cpu_jit(inline=True, boundscheck=False))

# The two drivers below are templates: `_bind` gives each kernel a copy whose globals `_row`
# and `_elem` are that kernel's pair (Numba freezes globals into the compiled code, as it
# inlines them). Globals, not closure variables: Numba keys its on-disk cache on a closure's
# contents, and a dispatcher pickles differently in every process, so closures never hit it.
_row: Any = None
_elem: Any = None


def _given(inputs, z, coefs, clip, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        c = _row(coefs, r)
        for j in range(D):
            out[r, j] = _elem(inputs, r, j, z[r, j], c, clip, one)


def _in_kernel(inputs, coefs, clip, k0, k1, s0, s1, scratch, out):
    B, D = out.shape
    one = out.dtype.type(1.0)
    for r in prange(B):
        z = scratch[get_thread_id()]
        c = _row(coefs, r)
        for j0 in range(0, D, CHUNK):
            n = min(CHUNK, D - j0)
            normals_into(r * D + j0, n, k0, k1, s0, s1, z)
            for m in range(n):
                out[r, j0 + m] = _elem(inputs, r, j0 + m, z[m], c, clip, one)


def _bind(template: Any, name: str, row: Any, elem: Any) -> Any:
    """``template`` compiled with ``_row, _elem = row, elem``, under its own name (the cache
    file of a kernel is named after its qualified name)."""
    fn = FunctionType(template.__code__, {**template.__globals__, "_row": row, "_elem": elem}, name)
    fn.__qualname__ = name
    return cpu_jit(parallel=True, boundscheck=False)(fn)


def _drivers(name: str, row: Any, elem: Any) -> tuple[Any, Any]:
    """The two parallel kernels of ``name`` around its ``(row, elem)`` pair
    (:mod:`npddpm.kernels.elementwise`): ``prange`` over rows, the row's coefficients
    hoisted, and either the given noise or the normals of each chunk of the row."""
    return _bind(_given, name, row, elem), _bind(_in_kernel, name + "_rng", row, elem)


_KERNELS: dict[str, tuple[Any, Any]] = {
    name: _drivers(name, *pair) for name, pair in _ELEMENTWISE.items()
}


def scratch(dtype: npt.DTypeLike) -> np.ndarray:
    """One ``CHUNK``-element scratch row per Numba thread, for the in-kernel noise."""
    import numba

    # numba.config's options are set at import, not declared
    threads: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    return np.empty((threads, CHUNK), dtype)


#: Rows narrower than this take their in-kernel noise in one flat pass first (the noise
#: is a function of the flat index, so the values are the same): per-row noise chunks of a
#: few elements cost far more than the arithmetic (figures in ``benchmarks/README.md``).
NARROW = 64


#: Below this many elements the kernels run on the calling thread only: a parallel region
#: costs more than it saves there, and its idle worker threads spin against a denoiser's
#: own threads (figures in ``benchmarks/README.md``).
SERIAL_BELOW = 100_000


def run(call: KernelCall) -> np.ndarray:
    """Backend entry point (see :class:`npddpm.kernels.contract.Backend`)."""
    if call.inputs[0].size < SERIAL_BELOW:
        import numba

        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return _run(call)
        finally:
            numba.set_num_threads(previous)
    return _run(call)


def _run(call: KernelCall) -> np.ndarray:
    x = call.inputs[0]
    res = np.empty(x.shape, x.dtype) if call.out is None else call.out
    noise = call.noise
    if noise is None:
        assert call.seed is not None  # the contract: noise or a seed
        if x.shape[1] < NARROW:
            noise = standard_normal(call.seed, call.stream, x.shape, x.dtype)
    given, in_kernel = _KERNELS[call.kernel]
    if noise is not None:
        given(call.inputs, noise, call.coefs, call.clip, res)
    else:
        assert call.seed is not None
        words = rng.kernel_words(call.seed, call.stream)
        in_kernel(call.inputs, call.coefs, call.clip, *words, scratch(x.dtype), res)
    return res
