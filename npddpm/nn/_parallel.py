"""Data parallelism over chunks of batch rows, shared by the MLP and the U-Net.

Each chunk runs the whole forward (or backward) pass in its own Python thread with a
single-threaded BLAS; NumPy, OpenBLAS and the Numba kernels release the GIL, so on ``k`` cores
the chunks run side by side without any BLAS or Numba thread pool spinning against another.
Parameter gradients of the chunks are summed (in chunk order, so results do not depend on
timing).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._blas import blas_threads, single_threaded_blas

__all__ = ["ChunkRunner", "available_cpus"]


def available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ChunkRunner:
    """Split ``n`` rows into at most ``threads`` chunks of at least ``min_chunk`` rows and run
    one job per chunk (the first on the calling thread)."""

    def __init__(self, threads: int, min_chunk: int) -> None:
        self.threads = threads
        self.min_chunk = min_chunk
        self._executor: ThreadPoolExecutor | None = None

    def bounds(self, n: int) -> list[int]:
        """Row boundaries ``[0, …, n]`` of the chunks (one chunk without OpenBLAS control)."""
        k = min(self.threads, n // self.min_chunk) if blas_threads() is not None else 1
        k = max(k, 1)
        return [n * i // k for i in range(k + 1)]

    def run(self, fn: Callable[..., Any], jobs: Sequence[tuple]) -> list[Any]:
        """``[fn(*job) for job in jobs]``, the jobs side by side when there are several.

        A single job (a batch too small to split) runs with BLAS's own threads."""
        if len(jobs) == 1:
            return [fn(*jobs[0])]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="npddpm")
        with single_threaded_blas():
            futures = [self._executor.submit(fn, *job) for job in jobs[1:]]
            first = fn(*jobs[0])
            return [first, *(f.result() for f in futures)]
