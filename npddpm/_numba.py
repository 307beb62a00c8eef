"""Every compilation option of the Numba kernels, in one place.

Nothing here imports Numba at module level: :func:`cpu_jit` and :func:`cuda_jit` import it
when the first kernel module is imported, which happens on the first call of a ``cpu`` or
``cuda`` backend (so ``import npddpm`` and ``import npddpm.kernels`` compile nothing).

Environment variables (read once, at import of this module)
------------------------------------------------------------
``NPDDPM_NUMBA_CACHE``
    ``1`` (default) caches compiled CPU kernels on disk (``__pycache__`` beside the source,
    or ``NUMBA_CACHE_DIR``); ``0`` compiles afresh in every process.
``NPDDPM_NUMBA_THREADING_LAYER``
    Numba's threading layer for the parallel CPU kernels (``default``, ``omp``, ``tbb``,
    ``workqueue``). The number of threads is Numba's: ``NUMBA_NUM_THREADS`` or
    ``numba.set_num_threads``. Results never depend on it.
``NPDDPM_CUDA_THREADS_PER_BLOCK``, ``NPDDPM_CUDA_MAX_BLOCKS``
    CUDA launch shape (default 256 threads, at most 4096 blocks; the kernels use
    grid-stride loops, so any shape gives the same result).

``fastmath`` is off everywhere: with it off the CPU kernels are bitwise equal to the NumPy
reference (tested in ``tests/kernels``); with it on LLVM contracts multiply-adds (1-ulp changes).
"""

from __future__ import annotations

import os

__all__ = [
    "CACHE",
    "CUDA_MAX_BLOCKS",
    "CUDA_THREADS_PER_BLOCK",
    "FASTMATH",
    "THREADING_LAYER",
    "cpu_jit",
    "cuda_jit",
    "cuda_launch_shape",
]


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


CACHE: bool = _flag("NPDDPM_NUMBA_CACHE", "1")
FASTMATH: bool = False
THREADING_LAYER: str = os.environ.get("NPDDPM_NUMBA_THREADING_LAYER", "default")
CUDA_THREADS_PER_BLOCK: int = int(os.environ.get("NPDDPM_CUDA_THREADS_PER_BLOCK", "256"))
CUDA_MAX_BLOCKS: int = int(os.environ.get("NPDDPM_CUDA_MAX_BLOCKS", "4096"))


def cpu_jit(*, parallel: bool = False, inline: bool = False):
    """``numba.njit`` with npddpm's options: cache as configured, fastmath off, the NumPy
    error model (division by zero gives inf, as in NumPy, and does not block vectorisation),
    no GIL; ``parallel=True`` for the row-parallel kernels; ``inline=True`` inlines a device
    function into its callers at Numba-IR level (needed for the Philox and normal-transform
    helpers: a call left in a loop stops LLVM from vectorising it).

    The on-disk cache is keyed on the source file of each *kernel*; when a helper in another
    file changes (``npddpm/rng.py``), remove ``npddpm/kernels/__pycache__`` (or the
    ``NUMBA_CACHE_DIR``) — the bitwise tests catch a stale cache.
    """
    import numba

    if parallel and THREADING_LAYER != "default":
        numba.config.THREADING_LAYER = THREADING_LAYER
    return numba.njit(
        cache=CACHE,
        fastmath=FASTMATH,
        parallel=parallel,
        nogil=True,
        error_model="numpy",
        boundscheck=False,
        inline="always" if inline else "never",
    )


def cuda_jit(*, device: bool = False):
    """``numba.cuda.jit`` with npddpm's options (fastmath off; no cache: PTX is built per GPU)."""
    from numba import cuda

    return cuda.jit(device=device, fastmath=FASTMATH)


def cuda_launch_shape(n_work: int) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for ``n_work`` grid-stride items."""
    tpb = max(1, int(CUDA_THREADS_PER_BLOCK))
    blocks = max(1, min(int(CUDA_MAX_BLOCKS), -(-int(n_work) // tpb)))
    return blocks, tpb
