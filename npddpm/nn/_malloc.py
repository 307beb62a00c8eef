"""Keep freed memory in the process (glibc ``mallopt``), for the U-Net's training step.

The U-Net's layers allocate their activations afresh every step (tens of MB at 16×16). By
default glibc serves blocks above a (dynamic, at most 32 MiB) threshold with ``mmap`` and
returns freed memory at the top of the heap to the kernel once more than 128 KiB is free, so
each step page-faults its activations in again — about a quarter of a step on these machines,
and worse with two threads, whose page faults serialise on the process's memory map.
:func:`retain_freed_memory` sets the mmap threshold to 32 MiB and the trim threshold to
512 MiB, and grows the heap 64 MiB at a time, so the same blocks are reused from step to
step (the process keeps up to 512 MiB of freed memory instead of returning it).

Process-wide and idempotent; a no-op returning ``False`` where glibc's ``mallopt`` is not
available (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20
TOP_PAD = 64 << 20


@functools.cache
def retain_freed_memory() -> bool:
    """Apply the glibc settings above once; ``True`` if they took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    return all([bool(mallopt(k, v)) for k, v in settings])
