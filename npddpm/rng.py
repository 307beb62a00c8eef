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

Normal transform (Box–Muller, both outputs)
-------------------------------------------
Words ``(w0, w1)`` of one Philox call give elements ``4q`` and ``4q + 1``; ``(w2, w3)`` give
``4q + 2`` and ``4q + 3``. In the output dtype (float32 or float64), with ``f`` the
round-to-nearest conversion of a uint32 to that dtype:

.. math::
    u = (f(w_0) + 0.5)\,2^{-32} \in (0, 1],\quad
    \theta = f(w_1) \cdot \mathrm{fl}(2\pi\,2^{-32}),\quad
    r = \sqrt{-2 \ln u},\quad z_{4q} = r\cos\theta,\quad z_{4q+1} = r\sin\theta

(Box & Muller 1958). Every operation is evaluated in the output dtype. ``sqrt`` and the
products are correctly rounded on every backend; ``log``, ``cos`` and ``sin`` come from
different libraries (NumPy's SIMD routines, the C library, CUDA's libdevice), so normals
agree to within :data:`NORMAL_ULP_BOUND` ulp, not bitwise.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "NORMAL_ULP_BOUND",
    "PHILOX_W32",
    "PHILOX_M4x32",
    "kernel_words",
    "philox4x32",
    "philox4x32_10_words",
    "random_words",
    "standard_normal",
]

#: Philox4x32 multipliers (Salmon et al. 2011, Table 2; Random123 ``PHILOX_M4x32_0/1``).
PHILOX_M4x32 = (0xD2511F53, 0xCD9E8D57)
#: Philox 32-bit Weyl key increments (golden ratio and √3 − 1; Random123 ``PHILOX_W32_0/1``).
PHILOX_W32 = (0x9E3779B9, 0xBB67AE85)

#: Largest difference, in units in the last place of the output dtype, between the normals
#: of any two backends (NumPy reference, Numba CPU, CUDA), for both float32 and float64.
#: Measured maxima are stated in ``tests/kernels/test_rng_backends.py``.
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


def box_muller(w0: np.ndarray, w1: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    r"""Two standard normals from two uint32 words, evaluated in ``dtype`` (reference).

    .. math:: u = (f(w_0) + \tfrac12) 2^{-32},\ \theta = f(w_1)\,\mathrm{fl}(2\pi 2^{-32}),
              \ (r\cos\theta,\ r\sin\theta),\ r = \sqrt{-2\ln u}
    """
    dt = _check_dtype(dtype)
    f = dt.type
    u = (np.asarray(w0, np.uint32).astype(dt) + f(0.5)) * f(2.0**-32)
    theta = np.asarray(w1, np.uint32).astype(dt) * f(2.0 * np.pi * 2.0**-32)
    r = np.sqrt(f(-2.0) * np.log(u))
    return r * np.cos(theta), r * np.sin(theta)


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
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return np.zeros(shape, dt)
    q = np.arange(start // 4, (start + n + 3) // 4, dtype=np.uint64)
    w0, w1, w2, w3 = np.broadcast_arrays(*_block_words(seed, stream, q))
    z = np.empty((q.size, 4), dt)
    z[:, 0], z[:, 1] = box_muller(w0, w1, dt)
    z[:, 2], z[:, 3] = box_muller(w2, w3, dt)
    off = start % 4
    return z.reshape(-1)[off : off + n].reshape(shape)
