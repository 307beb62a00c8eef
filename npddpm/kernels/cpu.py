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
the Philox rounds (:func:`npddpm.rng.philox4x32_10_words`) and the normal transform are
straight-line arithmetic, inlined at Numba-IR level into :func:`normals_into` only, so they are
compiled once per dtype and not once per kernel. The transform is :mod:`npddpm.rng`'s, with
its exact range reduction and quarter-turn done on the bits (same values, fewer instructions:
see ``_box_muller_f32``). A Philox block straddling two chunks or
rows is computed by both (a pure function of ``(seed, stream, q)``).
"""

from __future__ import annotations

from types import FunctionType
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import get_thread_id, prange, types
from numba.extending import intrinsic, overload

from .. import rng
from .._numba import cpu_jit
from . import elementwise
from .contract import KernelCall

_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)

philox4x32_10 = cpu_jit(inline=True, boundscheck=False)(rng.philox4x32_10_words)


# --------------------------------------------------------------------------------------
# The normal transform, in an exactly equivalent form with fewer operations
# --------------------------------------------------------------------------------------
# rng.box_muller_f32/_f64 are written for NumPy arrays and Numba scalars alike, so they
# scale u into [1/2, 1) by five compare-and-multiply steps and apply the quarter-turn by
# 0/1 multiplications. Both are exact, so the same values come from (a) the exponent and
# mantissa bits of u (u·2^-e is the one value of the binade [1/2, 1), and e an integer), and
# (b) selections and negations instead of products with 0, 1 and ±1 (no operand is -0, inf
# or nan there; see rng's docstring for the bounds). Every other operation is the reference's,
# in its order: the results are bitwise those of rng.box_muller_f32/_f64 (checked for every
# float32 u and v, and by the tests), with about 40 % fewer vector instructions.


@intrinsic
def _bitcast(typingctx: Any, x: Any, like: Any) -> Any:
    """The bits of ``x`` reinterpreted as the type of ``like`` (float32 <-> int32,
    float64 <-> int64; a no-op in machine code)."""
    if {x, like} not in ({types.float32, types.int32}, {types.float64, types.int64}):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))

    return like(x, like), codegen


_F32, _F64, _I32, _I64 = np.float32, np.float64, np.int32, np.int64
_U1, _U8, _U9 = np.uint64(1), np.uint64(8), np.uint64(9)
_K4 = rng.transform_constants(np.float32)
_K8 = rng.transform_constants(np.float64)
_NAMES = ("half", "one", "two", "four", "quarter", "sqrt_half", "ln2", "minus_two", "two_pi")
(_H4, _ONE4, _TWO4, _FOUR4, _QRT4, _SQH4, _LN2_4, _M2_4, _2PI4) = (_K4[k] for k in _NAMES)
(_H8, _ONE8, _TWO8, _FOUR8, _QRT8, _SQH8, _LN2_8, _M2_8, _2PI8) = (_K8[k] for k in _NAMES)
_L3_4, _L5_4, _L7_4, _L9_4 = _K4["log"]
_S3_4, _S5_4, _S7_4, _S9_4 = _K4["sin"]
_C2_4, _C4_4, _C6_4, _C8_4, _C10_4 = _K4["cos"]
(_L3_8, _L5_8, _L7_8, _L9_8, _L11_8, _L13_8, _L15_8, _L17_8, _L19_8, _L21_8) = _K8["log"]
(_S3_8, _S5_8, _S7_8, _S9_8, _S11_8, _S13_8, _S15_8, _S17_8) = _K8["sin"]
(_C2_8, _C4_8, _C6_8, _C8_8, _C10_8, _C12_8, _C14_8, _C16_8, _C18_8) = _K8["cos"]
_USC4, _VSC4, _USC8 = _F32(2.0**-23), _F32(2.0**-24), _F64(2.0**-31)
# float32 / float64 bit fields: mantissa mask, the exponent bits of 1/2, bias - 1, shift
_MANT4, _HALF_BITS4, _BIAS4, _EXP_SHIFT4 = _I32(0x007FFFFF), _I32(0x3F000000), 126, 23
_MANT8, _HALF_BITS8 = _I64(0x000FFFFFFFFFFFFF), _I64(0x3FE0000000000000)
_BIAS8, _EXP_SHIFT8 = 1022, 52


@cpu_jit(inline=True, boundscheck=False)
def _box_muller_f32(w0, w1):
    """:func:`npddpm.rng.box_muller_f32`, bitwise, in fewer operations."""
    u = (_F32(_I32(w0 >> _U9)) + _H4) * _USC4
    bits = _bitcast(u, _I32(0))
    e = _F32((bits >> _EXP_SHIFT4) - _BIAS4)
    u = _bitcast(_I32((bits & _MANT4) | _HALF_BITS4), _F32(0.0))
    m = _F32(u < _SQH4)
    u = u * (_ONE4 + m)
    e = e - m
    s = (u - _ONE4) / (u + _ONE4)
    s2 = s * s
    ln_u = _TWO4 * (s + s * s2 * (_L3_4 + s2 * (_L5_4 + s2 * (_L7_4 + s2 * _L9_4)))) + e * _LN2_4
    r = np.sqrt(np.abs(_M2_4 * ln_u))
    v = _F32(_I32(w1 >> _U8)) * _VSC4
    k = _I32(v * _FOUR4 + _H4)
    a = (v - _F32(k) * _QRT4) * _2PI4
    a2 = a * a
    sn = a + a * a2 * (_S3_4 + a2 * (_S5_4 + a2 * (_S7_4 + a2 * _S9_4)))
    cs = _ONE4 + a2 * (_C2_4 + a2 * (_C4_4 + a2 * (_C6_4 + a2 * (_C8_4 + a2 * _C10_4))))
    b_sn = _bitcast(sn, _I32(0))
    b_cs = _bitcast(cs, _I32(0))
    swap = _I32(-(k & 1))  # all ones where the quarter-turn swaps sin and cos
    c = _bitcast(_I32(((b_sn & swap) | (b_cs & ~swap)) ^ ((((k + 1) >> 1) & 1) << 31)), _F32(0))
    s_ = _bitcast(_I32(((b_cs & swap) | (b_sn & ~swap)) ^ (((k >> 1) & 1) << 31)), _F32(0))
    return r * c, r * s_


@cpu_jit(inline=True, boundscheck=False)
def _box_muller_f64(w0, w1):
    """:func:`npddpm.rng.box_muller_f64`, bitwise, in fewer operations."""
    u = (_F64(_I32(w0 >> _U1)) + _H8) * _USC8
    bits = _bitcast(u, _I64(0))
    e = _F64((bits >> _EXP_SHIFT8) - _BIAS8)
    u = _bitcast(_I64((bits & _MANT8) | _HALF_BITS8), _F64(0.0))
    m = _F64(u < _SQH8)
    u = u * (_ONE8 + m)
    e = e - m
    s = (u - _ONE8) / (u + _ONE8)
    s2 = s * s
    p = _L19_8 + s2 * _L21_8
    p = _L11_8 + s2 * (_L13_8 + s2 * (_L15_8 + s2 * (_L17_8 + s2 * p)))
    p = _L3_8 + s2 * (_L5_8 + s2 * (_L7_8 + s2 * (_L9_8 + s2 * p)))
    ln_u = _TWO8 * (s + s * s2 * p) + e * _LN2_8
    r = np.sqrt(np.abs(_M2_8 * ln_u))
    v = _F64(_I32(w1 >> _U1)) * _USC8
    k = _I32(v * _FOUR8 + _H8)
    a = (v - _F64(k) * _QRT8) * _2PI8
    a2 = a * a
    ps = _S11_8 + a2 * (_S13_8 + a2 * (_S15_8 + a2 * _S17_8))
    sn = a + a * a2 * (_S3_8 + a2 * (_S5_8 + a2 * (_S7_8 + a2 * (_S9_8 + a2 * ps))))
    pc = _C10_8 + a2 * (_C12_8 + a2 * (_C14_8 + a2 * (_C16_8 + a2 * _C18_8)))
    cs = _ONE8 + a2 * (_C2_8 + a2 * (_C4_8 + a2 * (_C6_8 + a2 * (_C8_8 + a2 * pc))))
    b_sn = _bitcast(sn, _I64(0))
    b_cs = _bitcast(cs, _I64(0))
    swap = _I64(-(k & 1))
    c = _bitcast(_I64(((b_sn & swap) | (b_cs & ~swap)) ^ (_I64(((k + 1) >> 1) & 1) << 63)), _F64(0))
    s_ = _bitcast(_I64(((b_cs & swap) | (b_sn & ~swap)) ^ (_I64((k >> 1) & 1) << 63)), _F64(0))
    return r * c, r * s_


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
