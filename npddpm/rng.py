r"""Counter-based Gaussian noise: Philox4x32-10 plus Box–Muller, NumPy reference.

The normal variate for element ``i`` of stream ``k`` under seed ``s`` is a pure function of
``(s, k, i)``: it does not depend on how many numbers were drawn before, on the number of
threads, or on how work is split between CUDA blocks. This module is the reference; the
Numba CPU and CUDA kernels (:mod:`npddpm.kernels`) compile the *same* Philox source
(:func:`philox4x32_10_words`) and must reproduce its ``uint32`` output bitwise and its
normals to within :data:`NORMAL_ULP_BOUND` units in the last place.

Generator
---------
Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011, §3.3 and Table 2): a 10-round keyed bijection of a 128-bit counter
``(c0, c1, c2, c3)`` under a 64-bit key ``(k0, k1)``. One round is

.. math::
    (c_0, c_1, c_2, c_3) \leftarrow
    (\mathrm{hi}(M_1 c_2) \oplus c_1 \oplus k_0,\ \mathrm{lo}(M_1 c_2),\
     \mathrm{hi}(M_0 c_0) \oplus c_3 \oplus k_1,\ \mathrm{lo}(M_0 c_0))

with ``M0 = 0xD2511F53``, ``M1 = 0xCD9E8D57``; between rounds the key is bumped by the Weyl
constants ``W0 = 0x9E3779B9``, ``W1 = 0xBB67AE85`` (mod 2³²). Checked against the
Random123 known-answer vectors in ``tests/kernels/test_rng_kat.py``.

Counter/key layout (npddpm's choice)
------------------------------------
For seed ``s`` and stream ``k`` (both in ``[0, 2⁶⁴)``) and element index ``i >= 0``::

    key     = (s mod 2³², s div 2³²)
    counter = (q mod 2³², q div 2³², k mod 2³², k div 2³²),   q = i div 4
    word    = philox4x32_10(counter, key)[i mod 4]

so one Philox call feeds four consecutive elements, and each stream has 2⁶⁶ elements. A
kernel working on a ``(B, D)`` array uses the C-order flat index ``i = b·D + j``; a sampler
uses one stream per step.

Normal transform (Box–Muller with npddpm's own log, sin and cos)
-----------------------------------------------------------------
Words ``(w0, w1)`` of one Philox call give elements ``4q`` and ``4q + 1``; ``(w2, w3)`` give
``4q + 2`` and ``4q + 3`` (Box & Muller 1958, both outputs used):

.. math::
    u = (m_0 + \tfrac12)\,2^{-b},\quad v = m_1\,2^{-b},\quad
    r = \sqrt{-2 \ln u},\quad z_{4q} = r\cos 2\pi v,\quad z_{4q+1} = r\sin 2\pi v

with ``m = w >> (32 − b)``: ``b = 23`` (u) and 24 (v) in float32, ``b = 31`` in float64, so
``u`` and ``v`` are exact in the dtype and ``u ∈ (0, 1)``; the normals are bounded by
``√(2b ln 2)`` (5.77 in float32, 6.66 in float64; P(|z| > 5.77) = 8e-9).

``ln``, ``sin`` and ``cos`` are not taken from a maths library but written out here, with
only ``+ − × ÷``, comparisons and ``sqrt`` (all correctly rounded in IEEE arithmetic), so that

* the same source runs on NumPy arrays (the reference) and, compiled by Numba, on scalars
  in the CPU and CUDA kernels — the CPU kernels reproduce the reference **bitwise** (fastmath
  off: no contraction; they do the exact power-of-two scaling and the quarter-turn below on
  the float bits, same values), and LLVM vectorises them (no library calls; about 2× the
  normals/s of a Box–Muller on the C library's ``logf``/``sincosf`` on these machines);
* a GPU differs only where it contracts ``a·b + c`` into one FMA: within
  :data:`NORMAL_ULP_BOUND` ulp.

``ln u``: scale ``u`` by powers of two into ``[½, 1]`` (exact; five branch-free compare and
multiply steps), once more by 2 below √½, then ``ln x = 2 artanh s``, ``s = (x − 1)/(x + 1)``,
``|s| ≤ 0.172``, by its series to ``s⁹`` (float32) or ``s²¹`` (float64), plus ``e·ln 2``.
``sin``/``cos``: ``k = ⌊4v + ½⌋``, ``y = v − k/4 ∈ [−⅛, ⅛]`` (exact), Taylor series of sin and
cos of ``a = 2πy`` (``|a| ≤ π/4``) to ``a⁹``/``a¹⁰`` (float32) or ``a¹⁷``/``a¹⁸`` (float64),
then the quarter-turn ``k mod 4`` applied by exact 0/1 selections. Against Box–Muller
evaluated in extended precision from the same ``u``, ``v``: float32 within 4 ulp (measured
3.4, mean 0.5), float64 within ``4·eps·max(1, |z|)`` absolute (measured 3.6·eps)
(``tests/kernels/test_rng_backends.py``).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "NORMAL_ULP_BOUND",
    "PHILOX_W32",
    "PHILOX_M4x32",
    "box_muller",
    "box_muller_f32",
    "box_muller_f64",
    "kernel_words",
    "philox4x32",
    "philox4x32_10_words",
    "random_words",
    "standard_normal",
    "transform_constants",
    "uniforms",
]

#: Philox4x32 multipliers (Salmon et al. 2011, Table 2; Random123 ``PHILOX_M4x32_0/1``).
PHILOX_M4x32 = (0xD2511F53, 0xCD9E8D57)
#: Philox 32-bit Weyl key increments (golden ratio and √3 − 1; Random123 ``PHILOX_W32_0/1``).
PHILOX_W32 = (0x9E3779B9, 0xBB67AE85)

#: Largest difference, in units in the last place of the output dtype, between the normals
#: of two backends. NumPy and the Numba CPU kernels (and the CUDA simulator) agree bitwise;
#: a GPU may contract multiply-adds into FMAs, which this bound covers.
NORMAL_ULP_BOUND = 8

# np.uint64 constants (not Python ints) so that the same source types as uint64 in Numba.
_M0 = np.uint64(PHILOX_M4x32[0])
_M1 = np.uint64(PHILOX_M4x32[1])
_W0 = np.uint64(PHILOX_W32[0])
_W1 = np.uint64(PHILOX_W32[1])
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def philox4x32_10_words(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 values that hold 32-bit words; returns four such values.

    Works unchanged on NumPy uint64 arrays (the reference) and, compiled by Numba, on uint64
    scalars inside the CPU and CUDA kernels: one source, so the backends agree bitwise.
    The key is bumped before each of rounds 2–10, as in Random123. (Self-contained, with no
    helper calls, so that Numba can compile it as it stands.)
    """
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = _M0 * c0  # a full 32 x 32 -> 64-bit product, < 2**64
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _SHIFT) ^ c1 ^ k0, p1 & _MASK, (p0 >> _SHIFT) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


def _philox_round(c0, c1, c2, c3, k0, k1):
    p0 = _M0 * c0
    p1 = _M1 * c2
    return (p1 >> _SHIFT) ^ c1 ^ k0, p1 & _MASK, (p0 >> _SHIFT) ^ c3 ^ k1, p0 & _MASK


def _philox_rounds(c0, c1, c2, c3, k0, k1, rounds):
    for r in range(rounds):
        if r:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    return c0, c1, c2, c3


def philox4x32(counter, key, rounds: int = 10) -> np.ndarray:
    """Philox4x32-R of a batch of counters under a batch of keys.

    Parameters
    ----------
    counter : array_like of uint32, shape (..., 4)
        Counter words ``(c0, c1, c2, c3)``.
    key : array_like of uint32, shape (..., 2)
        Key words ``(k0, k1)``; broadcast against ``counter``.
    rounds : int
        Number of rounds; 10 is Philox4x32-10 (7 is the smallest Crush-resistant count).

    Returns
    -------
    ndarray of uint32, shape (..., 4)

    Examples
    --------
    >>> out = philox4x32([0, 0, 0, 0], [0, 0])
    >>> [f"{w:08x}" for w in out]
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    c = _as_words(counter, "counter", 4)
    k = _as_words(key, "key", 2)
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    c, k = c[..., :, None], k[..., :, None]  # keep the word axis while broadcasting
    args = (c[..., 0, 0], c[..., 1, 0], c[..., 2, 0], c[..., 3, 0], k[..., 0, 0], k[..., 1, 0])
    if rounds == 10:
        words = philox4x32_10_words(*args)
    else:
        words = _philox_rounds(*args, int(rounds))
    return np.stack(np.broadcast_arrays(*words), axis=-1).astype(np.uint32)


def _as_words(values, name: str, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu" or arr.shape[-1:] != (n,):
        raise ValueError(
            f"{name} must be an integer array whose last axis has {n} words, got dtype "
            f"{arr.dtype} and shape {arr.shape}"
        )
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
        raise ValueError(f"{name} words must lie in [0, 2**32 - 1]")
    return arr.astype(np.uint64)


def _as_u64(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not 0 <= value < 2**64:
        raise ValueError(f"{name} must lie in [0, 2**64), got {value}")
    return value


def split_u64(value: int) -> tuple[np.uint64, np.uint64]:
    """``(value mod 2³², value div 2³²)`` as two uint64 scalars (the kernels' key layout)."""
    return np.uint64(value & 0xFFFFFFFF), np.uint64(value >> 32)


def kernel_words(seed: int, stream: int) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """``(k0, k1, s0, s1)``: the key and the stream half of the counter, as the kernels take
    them (uint64 scalars holding 32-bit words)."""
    return (*split_u64(_as_u64(seed, "seed")), *split_u64(_as_u64(stream, "stream")))


def _block_words(seed: int, stream: int, q: np.ndarray):
    """The four Philox words of blocks ``q`` (uint64 array) of ``(seed, stream)``."""
    k0, k1 = split_u64(seed)
    s0, s1 = split_u64(stream)
    return philox4x32_10_words(q & _MASK, q >> _SHIFT, s0, s1, k0, k1)


def _flat_index(index) -> np.ndarray:
    idx = np.asarray(index)
    if idx.dtype == bool or idx.dtype.kind not in "iu":
        raise TypeError(f"index must be an integer array, got dtype {idx.dtype}")
    if idx.size and idx.min() < 0:
        raise ValueError("index must be non-negative")
    return idx.astype(np.uint64)


def random_words(seed: int, stream: int, index) -> np.ndarray:
    """The uint32 word of elements ``index`` of stream ``stream`` under ``seed``.

    ``word(i) = philox4x32_10(counter(i div 4, stream), key(seed))[i mod 4]`` (layout in the
    module docstring).

    Parameters
    ----------
    seed, stream : int in [0, 2⁶⁴)
    index : array_like of non-negative int, any shape

    Returns
    -------
    ndarray of uint32, the shape of ``index``
    """
    seed = _as_u64(seed, "seed")
    stream = _as_u64(stream, "stream")
    i = _flat_index(index)
    words = np.stack(np.broadcast_arrays(*_block_words(seed, stream, i >> np.uint64(2))))
    lane = (i & np.uint64(3)).astype(np.intp)
    return np.take_along_axis(words, lane[None], axis=0)[0].astype(np.uint32)


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


# --- the normal transform ------------------------------------------------------------
# Module-level NumPy scalars, so that Numba freezes them as constants of the right dtype.
_F32 = np.float32
_F64 = np.float64
_I32 = np.int32
_U1 = np.uint64(1)
_U8 = np.uint64(8)
_U9 = np.uint64(9)


def _consts(F, n_log, n_sin, n_cos):
    """Constants of the transform in dtype ``F``: scalars and series coefficients."""
    c = {
        "half": F(0.5),
        "one": F(1.0),
        "two": F(2.0),
        "four": F(4.0),
        "quarter": F(0.25),
        "sqrt_half": F(np.sqrt(0.5)),
        "ln2": F(np.log(2.0)),
        "minus_two": F(-2.0),
        "two_pi": F(2.0 * np.pi),
    }
    for k in (16, 8, 4, 2, 1):  # u < 2^-k  ->  u·2^k, e − k
        c[f"t{k}"], c[f"g{k}"], c[f"e{k}"] = F(2.0**-k), F(2.0**k - 1), F(k)
    c["log"] = tuple(F(1.0 / (2 * i + 1)) for i in range(1, n_log + 1))  # artanh: 1/3, 1/5, …
    fact = [float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(2 * n_cos + 2)]
    c["sin"] = tuple(F((-1) ** i / fact[2 * i + 1]) for i in range(1, n_sin + 1))
    c["cos"] = tuple(F((-1) ** i / fact[2 * i]) for i in range(1, n_cos + 1))
    return c


_C32 = _consts(np.float32, 4, 4, 5)  # series to s⁹, a⁹, a¹⁰
_C64 = _consts(np.float64, 10, 8, 9)  # series to s²¹, a¹⁷, a¹⁸
# Unpacked into module globals (Numba reads globals, not dict entries).
(_H4, _ONE4, _TWO4, _FOUR4, _QRT4, _SQH4, _LN2_4, _M2_4, _2PI4) = (
    _C32[k] for k in ("half", "one", "two", "four", "quarter", "sqrt_half", "ln2", "minus_two",
                      "two_pi")
)  # fmt: skip
(_T16_4, _G16_4, _E16_4, _T8_4, _G8_4, _E8_4, _T4_4, _G4_4, _E4_4, _T2_4, _G2_4, _E2_4,
 _T1_4, _G1_4, _E1_4) = (_C32[f"{p}{k}"] for k in (16, 8, 4, 2, 1) for p in "tge")  # fmt: skip
_L3_4, _L5_4, _L7_4, _L9_4 = _C32["log"]
_S3_4, _S5_4, _S7_4, _S9_4 = _C32["sin"]
_C2_4, _C4_4, _C6_4, _C8_4, _C10_4 = _C32["cos"]
_USC4, _VSC4 = _F32(2.0**-23), _F32(2.0**-24)

(_H8, _ONE8, _TWO8, _FOUR8, _QRT8, _SQH8, _LN2_8, _M2_8, _2PI8) = (
    _C64[k] for k in ("half", "one", "two", "four", "quarter", "sqrt_half", "ln2", "minus_two",
                      "two_pi")
)  # fmt: skip
(_T16_8, _G16_8, _E16_8, _T8_8, _G8_8, _E8_8, _T4_8, _G4_8, _E4_8, _T2_8, _G2_8, _E2_8,
 _T1_8, _G1_8, _E1_8) = (_C64[f"{p}{k}"] for k in (16, 8, 4, 2, 1) for p in "tge")  # fmt: skip
(_L3_8, _L5_8, _L7_8, _L9_8, _L11_8, _L13_8, _L15_8, _L17_8, _L19_8, _L21_8) = _C64["log"]
(_S3_8, _S5_8, _S7_8, _S9_8, _S11_8, _S13_8, _S15_8, _S17_8) = _C64["sin"]
(_C2_8, _C4_8, _C6_8, _C8_8, _C10_8, _C12_8, _C14_8, _C16_8, _C18_8) = _C64["cos"]
_USC8 = _F64(2.0**-31)


def transform_constants(dtype) -> dict:
    """The constants of the normal transform in ``dtype`` (float32 or float64), by name.

    Keys ``half, one, two, four, quarter, sqrt_half, ln2, minus_two, two_pi``, the range
    reduction's ``t{k}, g{k}, e{k}`` (``k`` = 16, 8, 4, 2, 1), and the series coefficients
    ``log`` (artanh: 1/3, 1/5, …), ``sin`` and ``cos`` (tuples, lowest order first), each a
    NumPy scalar of ``dtype``: the values :func:`box_muller_f32` / :func:`box_muller_f64`
    use, for kernels that evaluate the same transform in another (exactly equivalent) form.
    """
    return dict(_C32 if _check_dtype(dtype) == np.float32 else _C64)


def box_muller_f32(w0, w1):
    """Two float32 normals from two words (uint64 values holding 32 bits); the transform of
    the module docstring. Runs on NumPy arrays and, compiled by Numba, on scalars."""
    u = (_F32(_I32(w0 >> _U9)) + _H4) * _USC4
    e = _F32(0.0)
    m = _F32(u < _T16_4)
    u = u * (_ONE4 + m * _G16_4)
    e = e - m * _E16_4
    m = _F32(u < _T8_4)
    u = u * (_ONE4 + m * _G8_4)
    e = e - m * _E8_4
    m = _F32(u < _T4_4)
    u = u * (_ONE4 + m * _G4_4)
    e = e - m * _E4_4
    m = _F32(u < _T2_4)
    u = u * (_ONE4 + m * _G2_4)
    e = e - m * _E2_4
    m = _F32(u < _T1_4)
    u = u * (_ONE4 + m * _G1_4)
    e = e - m * _E1_4
    m = _F32(u < _SQH4)
    u = u * (_ONE4 + m)
    e = e - m
    s = (u - _ONE4) / (u + _ONE4)
    s2 = s * s
    ln_u = _TWO4 * (s + s * s2 * (_L3_4 + s2 * (_L5_4 + s2 * (_L7_4 + s2 * _L9_4)))) + e * _LN2_4
    r = np.sqrt(np.abs(_M2_4 * ln_u))  # the argument is >= 0; abs lets LLVM use vsqrtps
    v = _F32(_I32(w1 >> _U8)) * _VSC4
    k = _I32(v * _FOUR4 + _H4)
    a = (v - _F32(k) * _QRT4) * _2PI4
    a2 = a * a
    sn = a + a * a2 * (_S3_4 + a2 * (_S5_4 + a2 * (_S7_4 + a2 * _S9_4)))
    cs = _ONE4 + a2 * (_C2_4 + a2 * (_C4_4 + a2 * (_C6_4 + a2 * (_C8_4 + a2 * _C10_4))))
    swap = _F32(k & 1)
    neg_c = _F32(((k + 1) >> 1) & 1)
    neg_s = _F32((k >> 1) & 1)
    c = swap * sn + (_ONE4 - swap) * cs
    s_ = swap * cs + (_ONE4 - swap) * sn
    return r * ((_ONE4 - _TWO4 * neg_c) * c), r * ((_ONE4 - _TWO4 * neg_s) * s_)


def box_muller_f64(w0, w1):
    """Two float64 normals from two words; as :func:`box_muller_f32` with 31-bit uniforms
    and longer series."""
    u = (_F64(_I32(w0 >> _U1)) + _H8) * _USC8
    e = _F64(0.0)
    m = _F64(u < _T16_8)
    u = u * (_ONE8 + m * _G16_8)
    e = e - m * _E16_8
    m = _F64(u < _T8_8)
    u = u * (_ONE8 + m * _G8_8)
    e = e - m * _E8_8
    m = _F64(u < _T4_8)
    u = u * (_ONE8 + m * _G4_8)
    e = e - m * _E4_8
    m = _F64(u < _T2_8)
    u = u * (_ONE8 + m * _G2_8)
    e = e - m * _E2_8
    m = _F64(u < _T1_8)
    u = u * (_ONE8 + m * _G1_8)
    e = e - m * _E1_8
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
    swap = _F64(k & 1)
    neg_c = _F64(((k + 1) >> 1) & 1)
    neg_s = _F64((k >> 1) & 1)
    c = swap * sn + (_ONE8 - swap) * cs
    s_ = swap * cs + (_ONE8 - swap) * sn
    return r * ((_ONE8 - _TWO8 * neg_c) * c), r * ((_ONE8 - _TWO8 * neg_s) * s_)


def uniforms(w0, w1, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The ``(u, v)`` of the transform, exactly, as float64 arrays (for tests and docs)."""
    w0 = np.asarray(w0, np.uint64)
    w1 = np.asarray(w1, np.uint64)
    if _check_dtype(dtype) == np.float32:
        return ((w0 >> _U9).astype(np.float64) + 0.5) * 2.0**-23, (w1 >> _U8) * 2.0**-24
    return ((w0 >> _U1).astype(np.float64) + 0.5) * 2.0**-31, (w1 >> _U1) * 2.0**-31


def box_muller(w0, w1, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of normals from two arrays of uint32 words, in ``dtype`` (the reference)."""
    f = box_muller_f32 if _check_dtype(dtype) == np.float32 else box_muller_f64
    z0, z1 = f(np.asarray(w0, np.uint64), np.asarray(w1, np.uint64))
    return np.asarray(z0), np.asarray(z1)


def standard_normal(
    seed: int, stream: int, shape: int | tuple[int, ...], dtype=np.float64, *, start: int = 0
) -> np.ndarray:
    """Standard normals for elements ``start, start + 1, …`` of ``(seed, stream)``.

    The reference for the in-kernel noise: a kernel on an array of this ``shape`` (flat
    C-order index ``i``) uses exactly the element ``i`` returned here.

    Parameters
    ----------
    seed, stream : int in [0, 2⁶⁴)
    shape : int or tuple of int
    dtype : float32 or float64
        The dtype in which the Box–Muller transform is evaluated.
    start : int, optional
        Flat index of the first element.

    Returns
    -------
    ndarray, shape ``shape``, dtype ``dtype``

    Examples
    --------
    >>> z = standard_normal(0, 0, 6)
    >>> bool(np.array_equal(z[4:], standard_normal(0, 0, 2, start=4)))
    True
    """
    seed = _as_u64(seed, "seed")
    stream = _as_u64(stream, "stream")
    start = _as_u64(start, "start")
    dt = _check_dtype(dtype)
    dims = (int(shape),) if isinstance(shape, (int, numbers.Integral)) else tuple(shape)
    n = int(np.prod(dims, dtype=np.int64))
    if n == 0:
        return np.zeros(dims, dt)
    q = np.arange(start // 4, (start + n + 3) // 4, dtype=np.uint64)
    w0, w1, w2, w3 = np.broadcast_arrays(*_block_words(seed, stream, q))
    z = np.empty((q.size, 4), dt)
    z[:, 0], z[:, 1] = box_muller(w0, w1, dt)
    z[:, 2], z[:, 3] = box_muller(w2, w3, dt)
    off = start % 4
    return z.reshape(-1)[off : off + n].reshape(dims)
