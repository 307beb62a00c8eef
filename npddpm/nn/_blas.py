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

import numpy as np

__all__ = ["blas_threads", "single_threaded_blas"]

_SYMBOLS = [
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
]


@functools.cache
def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    root = os.path.dirname(os.path.dirname(np.__file__))
    candidates = glob.glob(os.path.join(root, "numpy.libs", "*openblas*"))
    candidates += glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                getter, setter = getattr(lib, get), getattr(lib, set_)
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


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
