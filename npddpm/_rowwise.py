"""Batch-invariant matrix products: each row of ``a @ b`` bitwise independent of the others.

OpenBLAS picks its GEMM kernel by problem size — one row goes to a different kernel, and so
does a thin product below about 2²⁰ multiply-adds — and the kernels sum in different orders,
so row ``i`` of ``a @ b`` can change in its last bits with the number of rows of ``a``.
:func:`matmul` makes every product exactly :data:`TILE` rows (the last tile zero-padded), with
which a row's result depends on that row alone; :func:`matmul_by_row` makes every product one
row, for a handful of rows (checked in ``tests/distributed/test_sharding.py``). Sharded runs
(:mod:`npddpm.distributed`) rely on it to reproduce a single-process run bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TILE", "matmul", "matmul_by_row", "padded"]

#: Rows of every product.
TILE = 256


def padded(a: np.ndarray, rows: int = TILE) -> np.ndarray:
    """``a`` with zero rows appended up to ``rows`` rows."""
    out = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for ``a`` of shape (N, K) and ``b`` (K, M), computed in products of exactly
    :data:`TILE` rows, so that row ``i`` of the result is a function of ``a[i]`` and ``b``
    alone, bitwise. Costs at most one padded tile beyond ``a @ b``."""
    n = a.shape[0]
    out = np.empty((n, b.shape[1]), dtype=np.result_type(a, b))
    for r0 in range(0, n, TILE):
        r1 = min(r0 + TILE, n)
        if r1 - r0 == TILE:
            np.matmul(a[r0:r1], b, out=out[r0:r1])
        else:
            out[r0:r1] = (padded(a[r0:r1]) @ b)[: r1 - r0]
    return out


def matmul_by_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` one row at a time: each row of the result bitwise the same whatever the other
    rows are. For a few rows (the MLP's one row per distinct timestep), where a padded tile
    would cost more — and start BLAS's threads, which then spin beside the model's own."""
    if a.shape[0] == 1:
        return a @ b
    return np.concatenate([a[i : i + 1] @ b for i in range(a.shape[0])])
