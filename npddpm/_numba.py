"""Every compilation option of npddpm's Numba code, in one place.

Every ``numba.njit`` and ``numba.cuda.jit`` in the package goes through :func:`cpu_jit` or
:func:`cuda_jit`; no other module passes options to Numba. Nothing here imports Numba at
module level: the helpers import it when the first kernel is built, which happens on the
first call that needs one (so ``import npddpm`` and its subpackages compile nothing).

Environment variables (read once, at import of this module)
------------------------------------------------------------
``NPDDPM_NUMBA_CACHE``
    ``1`` (default) caches the compiled sampling kernels (:mod:`npddpm.kernels.cpu`) on
    disk (``__pycache__`` beside the source, or ``NUMBA_CACHE_DIR``); ``0`` compiles afresh
    in every process.
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
from collections.abc import Callable
from typing import Any, Literal

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


def cpu_jit(
    *,
    parallel: bool = False,
    inline: bool = False,
    cache: bool | None = None,
    nogil: bool = True,
    error_model: Literal["numpy", "python"] = "numpy",
    boundscheck: bool | None = None,
    signature: Any = None,
) -> Callable[[Callable[..., Any]], Any]:
    """A ``numba.njit`` decorator with npddpm's options.

    Parameters
    ----------
    parallel : bool, default False
        ``parallel=True`` for the row-parallel (``prange``) kernels; selects
        :data:`THREADING_LAYER` when that is not ``"default"``.
    inline : bool, default False
        Inline the function into its callers at Numba-IR level (``inline="always"``; needed
        for the Philox, normal-transform and per-element helpers: a call left in a loop stops
        LLVM from vectorising it). ``False`` is Numba's default, ``"never"``.
    cache : bool or None, default None
        Cache the compiled code on disk; ``None`` means :data:`CACHE`. The cache is keyed on
        the source file of each *kernel*: when a helper in another file changes
        (``npddpm/rng.py``, ``npddpm/kernels/elementwise.py``), remove the kernel's
        ``__pycache__`` (or ``NUMBA_CACHE_DIR``) — the bitwise tests catch a stale cache.
    nogil : bool, default True
        Release the GIL while running (the nn layers run chunks of a batch in threads).
    error_model : {"numpy", "python"}, default "numpy"
        ``"numpy"``: division by zero gives inf or nan, as in NumPy, and does not block
        vectorisation; ``"python"`` raises ``ZeroDivisionError`` (Numba's default).
    boundscheck : bool or None, default None
        Passed on when not None; None leaves Numba's default (off, or ``NUMBA_BOUNDSCHECK``).
    signature : optional
        An explicit Numba signature (eager compilation); None compiles lazily per type.

    ``fastmath`` is always :data:`FASTMATH` (off).
    """
    import numba

    if parallel and THREADING_LAYER != "default":
        # numba.config's options are set at import, not declared
        numba.config.THREADING_LAYER = THREADING_LAYER  # type: ignore[attr-defined]
    options: dict[str, Any] = {
        "cache": CACHE if cache is None else bool(cache),
        "fastmath": FASTMATH,
        "parallel": parallel,
        "nogil": nogil,
        "error_model": error_model,
        "inline": "always" if inline else "never",
    }
    if boundscheck is not None:
        options["boundscheck"] = boundscheck
    if signature is not None:
        return numba.njit(signature, **options)
    return numba.njit(**options)


def cuda_jit(*, device: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """A ``numba.cuda.jit`` decorator with npddpm's options: fastmath off, no cache (PTX is
    built per GPU); ``device=True`` for functions called from kernels."""
    from numba import cuda

    return cuda.jit(device=device, fastmath=FASTMATH)


def cuda_launch_shape(n_work: int) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for ``n_work`` grid-stride items (read from
    :data:`CUDA_THREADS_PER_BLOCK` and :data:`CUDA_MAX_BLOCKS` at each call)."""
    tpb = max(1, int(CUDA_THREADS_PER_BLOCK))
    blocks = max(1, min(int(CUDA_MAX_BLOCKS), -(-int(n_work) // tpb)))
    return blocks, tpb
