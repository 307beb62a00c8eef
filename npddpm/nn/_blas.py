"""Control of the BLAS thread count around the MLP's data-parallel step (no dependency).

NumPy's wheels bundle OpenBLAS as ``libscipy_openblas*``; its ``*_set_num_threads*`` entry
point is cheap (microseconds), so the MLP can run its batch chunks in Python threads with a
single-threaded BLAS each and restore the previous setting afterwards. Where no OpenBLAS is
found (another BLAS, or a NumPy built differently) :func:`blas_threads` returns ``None`` and
the MLP falls back to one chunk.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["blas_threads", "cblas_sgemm", "single_threaded_blas"]

_SYMBOLS = [
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
]


@functools.cache
def _numpy_openblas() -> tuple[ctypes.CDLL, int] | None:
    """NumPy's bundled OpenBLAS and the index of its symbol family in ``_SYMBOLS``."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    candidates = glob.glob(os.path.join(root, "numpy.libs", "*openblas*"))
    candidates += glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for i, (get, set_) in enumerate(_SYMBOLS):
            if hasattr(lib, get) and hasattr(lib, set_):
                return lib, i
    return None


@functools.cache
def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    found = _numpy_openblas()
    if found is None:
        return None
    lib, i = found
    get, set_ = _SYMBOLS[i]
    getter, setter = getattr(lib, get), getattr(lib, set_)
    getter.restype = ctypes.c_int
    setter.argtypes = [ctypes.c_int]
    return getter, setter


# CBLAS enums (cblas.h): row-major storage, no transpose, transpose.
CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112


@functools.cache
def cblas_sgemm() -> Any:
    """NumPy's own OpenBLAS ``cblas_sgemm`` as a ctypes function (callable from Numba's
    nopython mode, so a whole pass of matrix products runs without the GIL), or ``None``.

    Arguments: ``(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)``
    with pointers as integers; the integer width follows the library's ABI (64-bit for
    NumPy's ``scipy_openblas64_``). It is the routine ``np.matmul`` calls for float32, so
    the products are the same and its thread count is the one :func:`single_threaded_blas`
    sets.
    """
    found = _numpy_openblas()
    if found is None:
        return None
    lib, i = found
    get = _SYMBOLS[i][0]
    prefix = "scipy_" if get.startswith("scipy_") else ""
    suffix = "64_" if get.endswith("64_") else ""
    fn = getattr(lib, f"{prefix}cblas_sgemm{suffix}", None)
    if fn is None:
        return None
    blasint = ctypes.c_int64 if suffix else ctypes.c_int
    fn.restype = None
    fn.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        blasint,
        blasint,
        blasint,
        ctypes.c_float,
        ctypes.c_void_p,
        blasint,
        ctypes.c_void_p,
        blasint,
        ctypes.c_float,
        ctypes.c_void_p,
        blasint,
    ]
    return fn


def blas_threads() -> int | None:
    """OpenBLAS's current thread count, or ``None`` if NumPy's OpenBLAS was not found."""
    lib = _openblas()
    return None if lib is None else int(lib[0]())


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one OpenBLAS thread, then restore the previous count."""
    lib = _openblas()
    if lib is None:
        yield
        return
    get, set_ = lib
    previous = int(get())
    set_(1)
    try:
        yield
    finally:
        set_(previous)
