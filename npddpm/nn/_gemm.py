r"""Matrix products whose every element is one fixed chain of fused multiply-adds.

.. math:: c_{ij} = \operatorname{fma}(a_{i,K-1}, w_{K-1,j}, \dots
          \operatorname{fma}(a_{i1}, w_{1j}, \operatorname{fma}(a_{i0}, w_{0j}, 0)) \dots)

— k ascending, one rounding per step, whatever the shapes, the row's position in ``a`` or the
machine (``llvm.fma`` is exactly rounded everywhere), in float32 or float64. So row ``i`` of
``a @ w`` is a function of ``a[i]`` and ``w`` alone, bit for bit: what
:meth:`npddpm.nn.MLP.predict` needs to be batch-invariant, and what BLAS does not give.
OpenBLAS's float32 kernels sum in an order that depends on where the row sits in its block
(measured with OpenBLAS 0.3.30 and 0.3.31 on AMD Zen 3: a row gives one of two results by its
position modulo 12, another in the last partial block; figures in ``benchmarks/README.md``);
its float64 kernels happened not to on the machines measured, which is no guarantee.

The micro-kernel is written in LLVM IR (a Numba intrinsic): a block of up to ``ROWS`` rows ×
``VECS`` vectors of 256 bits (8 float32 or 4 float64 columns) held in registers across the k
loop, each step a broadcast of ``a[i, k]`` and a vector ``fma`` with a row of ``w``; column
tails run the same kernel on zero-padded columns (a lane computes the same chain as any
other). On one AVX2 core (Zen 3) it runs the MLP's float32 256 × 256 × 256 tiles at 78–86
GFLOP/s on packed weights, OpenBLAS's ``sgemm`` at 72–86 in the same runs.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from .._numba import cpu_jit

__all__ = ["ROWS", "VECS", "kernels", "lanes", "packed_size"]

ROWS: int = 5  # rows per register block (5 × 2 vectors = 10 accumulators of the 16 AVX2 registers)
VECS: int = 2  # vectors of 256 bits per register block
_DTYPES = ("float32", "float64")


def lanes(dtype: Any) -> int:
    """Columns per 256-bit vector: 8 for float32, 4 for float64."""
    import numpy as np

    name = np.dtype(dtype).name
    if name not in _DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {name}")
    return 8 if name == "float32" else 4


def _micro(rows: int, vecs: int, dtype: str) -> Any:
    """The intrinsic ``micro(pa, lda, pw, ldw, pc, ldc, k)``: ``c[r, :L·vecs] = a[r, :k] @
    w[:k, :L·vecs]`` for ``r < rows`` (L = :func:`lanes`), addresses as integers, leading
    dimensions in elements, the chains of the module docstring (from zero, k ascending)."""
    nl = lanes(dtype)
    size = 4 if dtype == "float32" else 8
    from llvmlite import ir  # type: ignore[import-untyped]
    from numba.core import cgutils
    from numba.core import types as nt
    from numba.extending import intrinsic

    @intrinsic
    def micro(typingctx: Any, pa: Any, lda: Any, pw: Any, ldw: Any, pc: Any, ldc: Any, k: Any):
        sig = nt.void(*(nt.intp,) * 7)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            a_i, lda_, w_i, ldw_, c_i, ldc_, k_ = args
            ft = ir.FloatType() if size == 4 else ir.DoubleType()
            i32 = ir.IntType(32)
            idx = a_i.type
            vec = ir.VectorType(ft, nl)
            a0, w0, c0 = (builder.inttoptr(v, ft.as_pointer()) for v in (a_i, w_i, c_i))
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{nl}f{8 * size}"
            )
            zero = ir.Constant(vec, [0.0] * nl)
            undef = ir.Constant(vec, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, nl), [0] * nl)

            def at(base: Any, row: int, ld: Any, v: int) -> Any:
                """The vector pointer of columns nl·v … of row ``row`` of ``base``."""
                rowp = builder.gep(base, [builder.mul(ir.Constant(idx, row), ld)])
                return builder.bitcast(builder.gep(rowp, [ir.Constant(idx, nl * v)]),
                                       vec.as_pointer())

            def load(ptr: Any) -> Any:
                value = builder.load(ptr)
                value.align = size
                return value

            def store(value: Any, ptr: Any) -> None:
                st = builder.store(value, ptr)
                st.align = size

            pre = builder.block
            loop = builder.append_basic_block("micro_k")
            done = builder.append_basic_block("micro_done")
            builder.cbranch(builder.icmp_signed("<=", k_, ir.Constant(idx, 0)), done, loop)

            builder.position_at_end(loop)
            kk = builder.phi(idx)
            kk.add_incoming(ir.Constant(idx, 0), pre)
            acc = [builder.phi(vec) for _ in range(rows * vecs)]
            for p in acc:
                p.add_incoming(zero, pre)
            wrow = builder.gep(w0, [builder.mul(kk, ldw_)])
            ws = [load(builder.bitcast(builder.gep(wrow, [ir.Constant(idx, nl * v)]),
                                       vec.as_pointer())) for v in range(vecs)]
            new: list[Any] = []
            for r in range(rows):
                ar = builder.load(builder.gep(a0, [builder.add(builder.mul(ir.Constant(idx, r),
                                                                           lda_), kk)]))
                b = builder.shuffle_vector(
                    builder.insert_element(undef, ar, ir.Constant(i32, 0)), undef, splat
                )
                new.extend(builder.call(fma, [b, ws[v], acc[r * vecs + v]]) for v in range(vecs))
            k1 = builder.add(kk, ir.Constant(idx, 1))
            for p, nv in zip(acc, new, strict=True):
                p.add_incoming(nv, loop)
            kk.add_incoming(k1, loop)
            builder.cbranch(builder.icmp_signed("<", k1, k_), loop, done)

            builder.position_at_end(done)
            finals = []
            for nv in new:  # every phi first: they must head the block
                final = builder.phi(vec)
                final.add_incoming(zero, pre)
                final.add_incoming(nv, loop)
                finals.append(final)
            for i, final in enumerate(finals):
                r, v = divmod(i, vecs)
                store(final, at(c0, r, ldc_, v))
            return context.get_dummy_value()

        return sig, codegen

    return micro


def _dispatch(vecs: int, rows: int, dtype: str) -> Any:
    """``block(r, v, pa, lda, pw, ldw, pc, ldc, k)``: the micro-kernel of ``r`` rows and ``v``
    vectors, for 1 ≤ r ≤ ``rows`` and 1 ≤ v ≤ ``vecs``: a chain of comparisons with
    compile-time constants (each intrinsic has one fixed shape, and Numba cannot index a
    tuple of them at run time)."""
    micro = _micro(rows, vecs, dtype)
    fewer_rows = _dispatch(vecs, rows - 1, dtype) if rows > 1 else _micro_only(micro)

    @cpu_jit(inline=True)
    def by_rows(r, v, pa, lda, pw, ldw, pc, ldc, k):
        if r == rows:
            micro(pa, lda, pw, ldw, pc, ldc, k)
        else:
            fewer_rows(r, v, pa, lda, pw, ldw, pc, ldc, k)

    if rows < ROWS or vecs == 1:
        return by_rows
    fewer_vecs = _dispatch(vecs - 1, ROWS, dtype)

    @cpu_jit(inline=True)
    def by_vecs(r, v, pa, lda, pw, ldw, pc, ldc, k):
        if v == vecs:
            by_rows(r, v, pa, lda, pw, ldw, pc, ldc, k)
        else:
            fewer_vecs(r, v, pa, lda, pw, ldw, pc, ldc, k)

    return by_vecs


def _micro_only(micro: Any) -> Any:
    """The end of a :func:`_dispatch` chain: ``micro`` whatever ``r`` and ``v`` say."""

    @cpu_jit(inline=True)
    def only(r, v, pa, lda, pw, ldw, pc, ldc, k):
        micro(pa, lda, pw, ldw, pc, ldc, k)

    return only


def packed_size(k: int, ncol: int, dtype: Any = "float32") -> int:
    """Length of the array :func:`kernels`' ``pack`` fills for a (k, ncol) ``w``: ``k`` times
    ``ncol`` rounded up to a whole vector (:func:`lanes` columns)."""
    nl = lanes(dtype)
    return k * (-(-ncol // nl) * nl)


def kernels(dtype: Any = "float32") -> SimpleNamespace:
    """Compile (once per dtype, float32 or float64) and return the products, all by the
    chains of the module docstring (rows of each array contiguous, every array of ``dtype``,
    outputs not overlapping the inputs; shapes are checked, a mismatch is a ``ValueError``):

    - ``pack(w, wp)``: ``w`` (K, M) copied into ``wp`` (1-D, :func:`packed_size` long) as
      column panels of ``VECS`` vectors (16 float32 or 8 float64 columns), each contiguous
      (K, width) and so resident in L1 across the rows (w's own rows, 1 KB apart at float32
      width 256, would share 4 cache sets), the last panel one or two vectors wide,
      zero-padded past M. Values are copied, not changed.
    - ``matmul_packed(a, wp, c)``: ``c = a @ w`` for ``a`` (N, K), ``c`` (N, M) and ``wp`` a
      packed ``w``; column blocks outermost.
    - ``matmul(a, w, c)``: ``pack`` into a scratch array, then ``matmul_packed``.

    A model packs its weights once per call and runs every tile on the panels: packing per
    product cost a 256-row tile 10-25 % of its time, a 64-row tile 40 % (one core, figures in
    ``benchmarks/README.md``).
    """
    import numpy as np

    name = np.dtype(dtype).name
    lanes(name)  # the TypeError for anything else
    return _kernels(name)


@functools.cache
def _kernels(name: str) -> SimpleNamespace:
    import numpy as np

    block = _dispatch(VECS, ROWS, name)
    nl, rmax, vmax = lanes(name), ROWS, VECS
    pw_max = vmax * nl
    dt = np.float32 if name == "float32" else np.float64
    size = np.dtype(dt).itemsize

    @cpu_jit()
    def pack(w, wp):
        """wp = the panels of w (see :func:`kernels`)."""
        k, ncol = w.shape
        npad = -(-ncol // nl) * nl
        if wp.shape[0] != k * npad:
            raise ValueError("pack: wp must hold packed_size(k, ncol) values")
        for j0 in range(0, npad, pw_max):
            width = min(pw_max, npad - j0)
            real = min(width, ncol - j0)
            panel = wp[k * j0 : k * (j0 + width)].reshape((k, width))
            for kk in range(k):
                for j in range(real):
                    panel[kk, j] = w[kk, j0 + j]
                for j in range(real, width):
                    panel[kk, j] = 0.0

    @cpu_jit()
    def matmul_packed(a, wp, c):
        """c = a @ w; a (N, K), c (N, M) with contiguous rows, wp = pack(w)."""
        n, k = a.shape
        ncol = c.shape[1]
        npad = -(-ncol // nl) * nl
        if wp.shape[0] != k * npad:
            raise ValueError("matmul: wp must be pack(w) for w of shape (K, M)")
        if c.shape[0] != n:
            raise ValueError("matmul: the arrays' shapes do not match (N, K) @ (K, M)")
        # the kernel reads rows by pointer (a stride along a length-0 or 1 axis is unused)
        if (k > 1 and a.strides[1] != size) or (ncol > 1 and c.strides[1] != size):
            raise ValueError("matmul: every array needs contiguous rows")
        lda, ldc = a.strides[0] // size, c.strides[0] // size
        pa, pc, p0 = a.ctypes.data, c.ctypes.data, wp.ctypes.data
        ct = np.empty((rmax, pw_max), dtype=dt)
        for j0 in range(0, npad, pw_max):
            width = min(pw_max, npad - j0)
            vecs = width // nl
            pw = p0 + size * k * j0
            real = min(width, ncol - j0)
            if real == width:
                for i0 in range(0, n, rmax):
                    block(min(rmax, n - i0), vecs, pa + size * i0 * lda, lda, pw, width,
                          pc + size * (i0 * ldc + j0), ldc, k)
            else:  # the last columns: the same chains into scratch, the real ones kept
                for i0 in range(0, n, rmax):
                    rows = min(rmax, n - i0)
                    block(rows, vecs, pa + size * i0 * lda, lda, pw, width, ct.ctypes.data,
                          pw_max, k)
                    for r in range(rows):
                        for j in range(real):
                            c[i0 + r, j0 + j] = ct[r, j]

    @cpu_jit()
    def matmul(a, w, c):
        """c = a @ w; a (N, K), w (K, M), c (N, M) with contiguous rows."""
        k, ncol = w.shape
        wp = np.empty(k * (-(-ncol // nl) * nl), dtype=dt)
        pack(w, wp)
        matmul_packed(a, wp, c)

    return SimpleNamespace(pack=pack, matmul_packed=matmul_packed, matmul=matmul)
