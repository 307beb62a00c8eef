r"""The float32 MLP's forward and backward pass over one chunk of rows as single Numba calls.

The same operations as the NumPy-orchestrated pass in :mod:`npddpm.nn.mlp` (the same
products, called through the same OpenBLAS ``cblas_sgemm`` that ``np.matmul`` uses; the
SiLU kernels of :mod:`npddpm.nn._fused`, and their derivative with the bias-gradient column
sums taken in the same pass), bitwise equal to it (tested), but one compiled call per chunk
instead of about thirty Python-level calls. That matters when chunks run side by side in
threads: every Python-level call needs the GIL, and two threads handing it back and forth
some sixty times a step cost a sizeable part of the step (figures in ``benchmarks/README.md``).
A compiled chunk holds no GIL from start to end.

Only built when NumPy's OpenBLAS exposes ``cblas_sgemm`` (:func:`npddpm.nn._blas.cblas_sgemm`);
the MLP falls back to the NumPy pass otherwise.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from .._numba import cpu_jit

__all__ = ["kernels"]


def _external_sgemm(fn: Any) -> Any:
    """``cblas_sgemm`` as a Numba external function called by symbol name (registered with
    LLVM at this process's address), not as a ctypes pointer: code that calls a ctypes
    pointer embeds its address and cannot be cached on disk; a named symbol is resolved
    again when the cached code is loaded. Pointers are passed as ``intp`` (the same in the
    C ABI); the integer width is the library's (``ctypes.c_int64`` for ``*64_``)."""
    import ctypes

    import llvmlite.binding as ll  # type: ignore[import-untyped]
    from numba import types

    blasint = types.int64 if fn.argtypes[3] is ctypes.c_int64 else types.int32
    name = f"npddpm_cblas_sgemm_{blasint}"
    ll.add_symbol(name, ctypes.cast(fn, ctypes.c_void_p).value)
    i32, f32, ptr = types.int32, types.float32, types.intp
    sig = types.void(
        i32, i32, i32, blasint, blasint, blasint, f32, ptr, blasint, ptr, blasint, f32, ptr, blasint
    )
    return types.ExternalFunction(name, sig)


@functools.cache
def kernels() -> SimpleNamespace | None:
    """Compile (once) and return ``forward`` and ``backward``, or ``None`` without a CBLAS."""
    from ._blas import CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS, cblas_sgemm

    ct_sgemm = cblas_sgemm()
    if ct_sgemm is None:
        return None
    import numpy as np

    sgemm = _external_sgemm(ct_sgemm)

    from ._fused import kernels as fused

    f = fused()
    bias_silu, residual_silu, silu_grad_sum = f.bias_silu, f.residual_silu, f.silu_grad_sum
    one, zero = np.float32(1.0), np.float32(0.0)

    @cpu_jit()
    def mm(a, ta, b, tb, c):
        """c = op(a) @ op(b), op = transpose when the flag is set; rows of every array are
        contiguous (row strides are passed as leading dimensions)."""
        m, n = c.shape
        k = a.shape[0] if ta else a.shape[1]
        sgemm(
            CBLAS_ROW_MAJOR,
            CBLAS_TRANS if ta else CBLAS_NO_TRANS,
            CBLAS_TRANS if tb else CBLAS_NO_TRANS,
            m,
            n,
            k,
            one,
            a.ctypes.data,
            a.strides[0] // 4,
            b.ctypes.data,
            b.strides[0] // 4,
            zero,
            c.ctypes.data,
            c.strides[0] // 4,
        )

    @cpu_jit()
    def column_sum(a, out):
        """out = Σ_rows a, adding row after row (the order of ``np.sum(a, axis=0)``)."""
        n, d = a.shape
        for j in range(d):
            out[j] = zero
        for i in range(n):
            for j in range(d):
                out[j] += a[i, j]

    @cpu_jit()
    def forward(x, emb, z, w_in, b_in, w1, b1, w2, b2, w_out, b_out, h, a, u, au, out, nblocks):
        """One chunk of :meth:`npddpm.nn.MLP.forward`; ``w1`` … ``au`` are tuples over blocks
        (``h``, ``a``: ``nblocks + 1`` buffers)."""
        n, d = x.shape
        for i in range(n):
            for j in range(d):
                z[i, j] = x[i, j]
            for j in range(emb.shape[1]):
                z[i, d + j] = emb[i, j]
        mm(z, False, w_in, False, h[0])
        bias_silu(h[0], b_in, a[0])
        for k in range(nblocks):
            mm(a[k], False, w1[k], False, u[k])
            bias_silu(u[k], b1[k], au[k])
            mm(au[k], False, w2[k], False, h[k + 1])
            residual_silu(h[k + 1], h[k], b2[k], a[k + 1])
        mm(a[nblocks], False, w_out, False, out)
        for i in range(n):
            for j in range(out.shape[1]):
                out[i, j] += b_out[j]

    @cpu_jit()
    def backward(
        dout, z, w_in, w1, w2, w_out, h, a, u, au, g, dh, gw_in, gb_in, gw1, gb1, gw2, gb2,
        gw_out, gb_out, dx, need_dx, nblocks,
    ):  # fmt: skip
        """One chunk of :meth:`npddpm.nn.MLP.vjp` (the buffers ``u``, ``au`` are reused)."""
        mm(a[nblocks], True, dout, False, gw_out)
        column_sum(dout, gb_out)
        mm(dout, False, w_out, True, g)
        # the bias gradients are the column sums of dh / du, taken as those are written
        silu_grad_sum(g, h[nblocks], dh, False, gb2[nblocks - 1] if nblocks else gb_in)
        for k in range(nblocks - 1, -1, -1):
            mm(au[k], True, dh, False, gw2[k])
            mm(dh, False, w2[k], True, g)
            du = au[k]  # free now; not in place (an aliased output is not vectorised)
            silu_grad_sum(g, u[k], du, False, gb1[k])
            mm(a[k], True, du, False, gw1[k])
            mm(du, False, w1[k], True, u[k])  # u[k] is free now
            silu_grad_sum(u[k], h[k], dh, True, gb2[k - 1] if k else gb_in)
        mm(z, True, dh, False, gw_in)
        if need_dx:
            mm(dh, False, w_in[: dx.shape[1]], True, dx)

    return SimpleNamespace(forward=forward, backward=backward, mm=mm, column_sum=column_sum)


@functools.cache
def predict_kernel() -> Any:
    """Compile (once) and return ``predict``: one chunk of :meth:`npddpm.nn.MLP.predict` as
    one compiled call (no GIL held from start to end), the same kernels in the same order as
    the NumPy-orchestrated loop, so bitwise equal to it (tested): per tile of ``tile`` rows
    (the last zero-padded into ``xpad``, ``ipad``, ``opad``) the input layer, the blocks and
    the output layer, products by :mod:`npddpm.nn._gemm` on weights packed once per call
    (``wp1``, ``wp2``, ``wp_out``: ``pack`` of each weight). Needs no CBLAS."""
    from ._fused import kernels as fused
    from ._gemm import kernels as gemm

    f = fused()
    bias_silu, residual_silu, embed_silu = f.bias_silu, f.residual_silu, f.embed_silu
    mm = gemm().matmul_packed

    @cpu_jit()
    def predict(x, inv, c, wx, wp1, b1, wp2, b2, wp_out, h, r, a, u, au, xpad, ipad, opad, out,
                nblocks, tile):  # fmt: skip
        """``out`` (N, D_out) before the output bias; ``wp1`` … ``b2`` tuples over blocks."""
        n = x.shape[0]
        for r0 in range(0, n, tile):
            r1 = min(r0 + tile, n)
            m = r1 - r0
            xt, it, ot = x[r0:r1], inv[r0:r1], out[r0:r1]
            if m < tile:
                xpad[:] = 0.0
                xpad[:m] = xt
                ipad[:] = 0
                ipad[:m] = it
                xt, it, ot = xpad, ipad, opad
            embed_silu(xt, wx, c, it, h, a)
            hh, rr = h, r
            for k in range(nblocks):
                mm(a, wp1[k], u)
                bias_silu(u, b1[k], au)
                mm(au, wp2[k], rr)
                residual_silu(rr, hh, b2[k], a)
                hh, rr = rr, hh
            mm(a, wp_out, ot)
            if m < tile:
                out[r0:r1] = opad[:m]

    return predict
