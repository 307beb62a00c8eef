r"""A residual MLP denoiser for vector data, with a hand-written, buffer-reusing training step.

Architecture (``H`` = ``hidden``, ``E`` = ``time_embed_dim``, ``B`` = ``num_blocks``):

.. math::
    z &= [x,\ e(t)] \in \mathbb R^{D + E}, \qquad h_0 = z W_{in} + b_{in} \\
    h_k &= h_{k-1} + \operatorname{SiLU}\bigl(\operatorname{SiLU}(h_{k-1}) W_{1,k} + b_{1,k}\bigr)
           W_{2,k} + b_{2,k}, \qquad k = 1..B \\
    y &= \operatorname{SiLU}(h_B)\, W_{out} + b_{out}

where ``e(t)`` is the sinusoidal embedding of :func:`npddpm.nn.layers.timestep_embedding_forward`.
With ``num_blocks=1`` the matrix products are those of a ``(D+E) → H → H → H → D_out`` MLP.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .._checks import as_int
from .._rowwise import matmul_by_row, padded
from ._parallel import ChunkRunner, available_cpus
from ._validate import check_dtype, check_input, check_timesteps
from .layers import timestep_embedding_forward

# Rows per thread below which splitting the batch does not pay. Measured on 2 cores (W = 128
# and 256, separate processes alternated): at 256 rows one pass with a multi-threaded BLAS is
# 5-30 % faster than two chunks; from 1024 rows two chunks are 5-20 % faster (their SiLU
# kernels run side by side too).
MIN_CHUNK = 512
# Rows per tile of the inference pass. Its products (npddpm.nn._gemm) are position-independent
# at any tile size and its SiLU kernels element-wise, so the size is chosen for speed: on one
# Zen 3 core 64-row float32 tiles ran the 10,240-row pass 1-3 % faster than 256-row ones
# (paired rounds, inside the noise), and a call of a few rows pads 4× fewer rows.
INFER_TILE = 64

__all__ = ["MLP"]


def _np_bias_silu(h: np.ndarray, b: np.ndarray, a: np.ndarray) -> None:
    from scipy.special import expit

    h += b
    expit(h, out=a)
    a *= h


def _np_residual_silu(h: np.ndarray, r: np.ndarray, b: np.ndarray, a: np.ndarray) -> None:
    h += r
    _np_bias_silu(h, b, a)


def _np_embed_silu(
    x: np.ndarray, wx: np.ndarray, c: np.ndarray, inv: np.ndarray, h: np.ndarray, a: np.ndarray
) -> None:
    from scipy.special import expit

    np.matmul(x, wx, out=h)
    h += c[inv]
    expit(h, out=a)
    a *= h


def _np_silu_grad(g: np.ndarray, h: np.ndarray, out: np.ndarray, accumulate: bool) -> None:
    from scipy.special import expit

    s = expit(h)
    v = g * (s + h * s * (1 - s))
    if accumulate:
        out += v
    else:
        out[...] = v


class _Workspace:
    """Activation buffers for one chunk of rows; owned by one cache from forward to backward."""

    def __init__(self, n: int, d_in: int, hidden: int, blocks: int, dtype: np.dtype) -> None:
        def buf(*shape: int) -> np.ndarray:
            return np.empty(shape, dtype=dtype)

        self.n = n
        self.z = buf(n, d_in)
        self.h = [buf(n, hidden) for _ in range(blocks + 1)]  # residual stream h_0..h_B
        self.a = [buf(n, hidden) for _ in range(blocks + 1)]  # SiLU(h_k)
        self.u = [buf(n, hidden) for _ in range(blocks)]  # inner pre-activations
        self.au = [buf(n, hidden) for _ in range(blocks)]  # SiLU(u_k)
        self.g = buf(n, hidden)  # gradient scratch
        self.dh = buf(n, hidden)  # gradient of the residual stream
        self.grads: dict[str, np.ndarray] | None = None  # partial gradients (chunks 1, 2, …)


class _MLPCache:
    __slots__ = ("bounds", "model", "n", "wss")

    def __init__(self, model: MLP, n: int, bounds: list[int], wss: list[_Workspace]) -> None:
        self.model = model
        self.n = n
        self.bounds = bounds
        self.wss: list[_Workspace] | None = wss


class MLP:
    r"""Residual MLP denoiser ``(x, t) → model output`` for vectors of dimension ``dim``.

    Parameters
    ----------
    dim : int
        Data dimension ``D``.
    hidden : int, default 256
        Width ``H`` of the residual stream.
    num_blocks : int, default 2
        Residual blocks (two ``H × H`` products each).
    time_embed_dim : int, default 32
        Width of the sinusoidal timestep embedding concatenated to ``x``.
    max_period : float, default 10000
        Longest period of the embedding.
    learn_sigma : bool, default False
        Output ``2D`` channels (ε and the variance interpolation ``v``) instead of ``D``.
    seed : int, default 0
        Initialisation seed (PyTorch's default uniform ``±1/√fan_in`` for every weight and
        bias, drawn in float64 and then cast, so float32 and float64 models agree).
    dtype : np.float32 or np.float64, default np.float32
        float32 for training, float64 for gradient checks.
    fused : bool or None, default None
        Use the fused Numba SiLU kernels (float32 only; :mod:`npddpm.nn._fused`). ``None``
        means "when the dtype is float32".
    threads : int or None, default None
        Data parallelism of the step: a batch of at least ``threads × MIN_CHUNK`` rows
        (``MIN_CHUNK`` = 512) is split into ``threads`` chunks of rows, each run through the
        whole forward and backward pass by its own Python thread with a single-threaded BLAS
        (Numba kernels and BLAS release the GIL), and the chunks' parameter gradients are
        summed. A smaller batch runs as one chunk with BLAS's own threads. ``None`` uses
        every CPU this process may run on; 1 never splits. Results do not depend on timing,
        but the summation order (and so the last bits) depends on the number of chunks.
        While a multi-chunk pass runs, OpenBLAS is set to one thread process-wide (and
        restored afterwards). With fused float32 kernels each chunk's pass is one compiled
        call that holds no GIL (:mod:`npddpm.nn._mlp_kernels`; bitwise the same as the NumPy
        pass, which float64 models and builds without NumPy's CBLAS use).

    Attributes
    ----------
    params : dict of str → ndarray
        ``in.w`` (D+E, H), ``in.b`` (H,), ``block{k}.w1``, ``block{k}.w2`` (H, H),
        ``block{k}.b1``, ``block{k}.b2`` (H,), ``out.w`` (H, D_out), ``out.b`` (D_out,).
        Weights are stored ``(fan_in, fan_out)``: ``y = x W + b``.

    Notes
    -----
    ``forward`` writes activations into preallocated buffers that the returned cache owns
    until ``backward`` consumes it (a cache can be back-propagated once); ``forward`` without
    ``backward`` simply allocates fresh buffers the next time. The returned ``out`` and
    ``grads`` are fresh arrays.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        num_blocks: int = 2,
        time_embed_dim: int = 32,
        max_period: float = 10000.0,
        learn_sigma: bool = False,
        seed: int = 0,
        dtype: Any = np.float32,
        fused: bool | None = None,
        threads: int | None = None,
    ) -> None:
        self.dim = as_int(dim, "dim", minimum=1)
        self.hidden = as_int(hidden, "hidden", minimum=1)
        self.num_blocks = as_int(num_blocks, "num_blocks", minimum=0)
        self.time_embed_dim = as_int(time_embed_dim, "time_embed_dim", minimum=2)
        self.max_period = float(max_period)
        self.learn_sigma = bool(learn_sigma)
        self.out_dim = self.dim * (2 if self.learn_sigma else 1)
        self.dtype = check_dtype(dtype)
        if fused is None:
            fused = self.dtype == np.float32
        if fused and self.dtype != np.float32:
            raise ValueError("fused=True needs dtype=np.float32; float64 models use NumPy SiLU")
        self.fused = bool(fused)
        self.threads = as_int(
            available_cpus() if threads is None else threads, "threads", minimum=1
        )
        self._runner = ChunkRunner(self.threads, MIN_CHUNK)
        self.seed = as_int(seed, "seed", minimum=0)
        self.params = self._init_params(np.random.default_rng(self.seed))
        self._pool: dict[int, list[list[_Workspace]]] = {}
        self._infer_ws: list[list[np.ndarray]] = []
        self._table = np.zeros((0, self.time_embed_dim), dtype=self.dtype)

    # ---------------------------------------------------------------- parameters

    def _init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, size=shape).astype(self.dtype)

        d_in, h = self.dim + self.time_embed_dim, self.hidden
        p = {"in.w": uniform((d_in, h), d_in), "in.b": uniform((h,), d_in)}
        for k in range(self.num_blocks):
            p[f"block{k}.w1"] = uniform((h, h), h)
            p[f"block{k}.b1"] = uniform((h,), h)
            p[f"block{k}.w2"] = uniform((h, h), h)
            p[f"block{k}.b2"] = uniform((h,), h)
        p["out.w"] = uniform((h, self.out_dim), h)
        p["out.b"] = uniform((self.out_dim,), h)
        return p

    def _kernels(self):
        """``(bias_silu, residual_silu, silu_grad, embed_silu)``: Numba or NumPy."""
        if self.fused:
            from ._fused import kernels

            k = kernels()
            return k.bias_silu, k.residual_silu, k.silu_grad, k.embed_silu
        return _np_bias_silu, _np_residual_silu, _np_silu_grad, _np_embed_silu

    def _compiled_ok(self) -> bool:
        """The compiled chunk passes (training and inference) can run this model: fused
        float32 kernels and C-contiguous parameters (their products read rows by pointer and
        row stride)."""
        return self.fused and all(v.flags.c_contiguous for v in self.params.values())

    def _jit(self):
        """The compiled chunk passes (:mod:`npddpm.nn._mlp_kernels`) when this model can use
        them: fused float32 kernels, NumPy's CBLAS found, and C-contiguous parameters (they
        are passed to the BLAS by pointer and row stride). ``None`` otherwise."""
        if not self._compiled_ok():
            return None
        from ._mlp_kernels import kernels

        return kernels()

    def _per_block(self, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple:
        """For each name ("w1", "b2", …), the blocks' ``block{k}.{name}`` arrays as a
        :meth:`_tup` (weights 2-D, biases 1-D), for the compiled passes."""
        return tuple(
            self._tup([arrays[f"block{k}.{n}"] for k in range(self.num_blocks)],
                      2 if n[0] == "w" else 1)
            for n in names
        )

    def _tup(self, arrays: list[np.ndarray], ndim: int) -> tuple[np.ndarray, ...]:
        # Per-block arrays as a tuple for the compiled passes; with no blocks, a never-read
        # placeholder of the right dimension keeps a tuple type the compiler can index.
        return tuple(arrays) if arrays else (np.empty((1,) * ndim, dtype=self.dtype),)

    def _embedding(self, t: np.ndarray) -> np.ndarray:
        # Integer timesteps: embed 0..max(t) once and gather rows (exactly the same values).
        top = int(t.max())
        if top >= self._table.shape[0]:
            size = max(top + 1, 2 * self._table.shape[0], 64)
            self._table, _ = timestep_embedding_forward(
                np.arange(size), self.time_embed_dim, max_period=self.max_period, dtype=self.dtype
            )
        return self._table[t]

    # ---------------------------------------------------------------- forward / backward

    def _chunks(self, n: int) -> list[int]:
        return self._runner.bounds(n)

    def _run(self, fn, jobs: list[tuple]) -> list:
        return self._runner.run(fn, jobs)

    def forward(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, _MLPCache]:
        """Model output for a batch.

        Parameters
        ----------
        x : ndarray, shape (N, dim), the model's dtype
        t : int ndarray, shape (N,)

        Returns
        -------
        out : ndarray, shape (N, D_out)
        cache : object for :meth:`backward`
        """
        check_input(x, "x", self.dtype, (self.dim,), "dim")
        n = x.shape[0]
        t = check_timesteps(t, n)
        bounds = self._chunks(n)
        pool = self._pool.get(n)
        if pool:
            wss = pool.pop()
        else:
            d_in = self.dim + self.time_embed_dim
            wss = [
                _Workspace(r1 - r0, d_in, self.hidden, self.num_blocks, self.dtype)
                for r0, r1 in itertools.pairwise(bounds)
            ]
        emb = self._embedding(t)
        self._kernels()  # compile (once) here, not in the worker threads
        out = np.empty((n, self.out_dim), dtype=self.dtype)
        jobs = [
            (ws, x[r0:r1], emb[r0:r1], out[r0:r1])
            for ws, r0, r1 in zip(wss, bounds[:-1], bounds[1:], strict=True)
        ]
        self._run(self._forward_chunk, jobs)
        return out, _MLPCache(self, n, bounds, wss)

    def _forward_chunk(self, ws: _Workspace, x, emb, out) -> None:
        p = self.params
        jit = self._jit()
        if jit is not None:
            nb = self.num_blocks
            w1, b1, w2, b2 = self._per_block(p, ("w1", "b1", "w2", "b2"))
            u, au = self._tup(ws.u, 2), self._tup(ws.au, 2)
            h, a = tuple(ws.h), tuple(ws.a)
            jit.forward(
                x, emb, ws.z, p["in.w"], p["in.b"], w1, b1, w2, b2, p["out.w"], p["out.b"],
                h, a, u, au, out, nb,
            )  # fmt: skip
            return
        bias_silu, residual_silu, _, _ = self._kernels()
        ws.z[:, : self.dim] = x
        ws.z[:, self.dim :] = emb
        np.matmul(ws.z, p["in.w"], out=ws.h[0])
        bias_silu(ws.h[0], p["in.b"], ws.a[0])
        for k in range(self.num_blocks):
            np.matmul(ws.a[k], p[f"block{k}.w1"], out=ws.u[k])
            bias_silu(ws.u[k], p[f"block{k}.b1"], ws.au[k])
            np.matmul(ws.au[k], p[f"block{k}.w2"], out=ws.h[k + 1])
            residual_silu(ws.h[k + 1], ws.h[k], p[f"block{k}.b2"], ws.a[k + 1])
        np.matmul(ws.a[self.num_blocks], p["out.w"], out=out)
        out += p["out.b"]

    def backward(self, dout: np.ndarray, cache: _MLPCache) -> dict[str, np.ndarray]:
        """Gradients of ``<out, dout>`` with respect to every parameter.

        Parameters
        ----------
        dout : ndarray, shape (N, D_out)
            Gradient of the loss with respect to ``out``.
        cache : the cache returned by :meth:`forward` (consumed: use it once).

        Returns
        -------
        grads : dict with exactly the keys of :attr:`params`
        """
        return self.vjp(dout, cache, input_grad=False)[1]

    def vjp(
        self, dout: np.ndarray, cache: _MLPCache, *, input_grad: bool = True
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Like :meth:`backward`, and also ``dx`` (shape (N, dim)) when ``input_grad``."""
        if not isinstance(cache, _MLPCache) or cache.model is not self:
            raise TypeError("cache must be the cache returned by this model's forward()")
        if cache.wss is None:
            raise ValueError("this cache was already used by backward(); run forward() again")
        check_input(dout, "dout", self.dtype, (self.out_dim,), "D_out")
        dout = np.ascontiguousarray(dout)  # the compiled pass hands rows to the BLAS
        if dout.shape[0] != cache.n:
            raise ValueError(f"dout has {dout.shape[0]} rows but the forward pass had {cache.n}")
        wss, cache.wss = cache.wss, None
        grads = {k: np.empty_like(v) for k, v in self.params.items()}
        b = cache.bounds
        dx = np.empty((cache.n, self.dim), dtype=self.dtype) if input_grad else None
        jobs = []
        for i, ws in enumerate(wss):
            if i == 0:
                g = grads
            else:
                if ws.grads is None:
                    ws.grads = {k: np.empty_like(v) for k, v in self.params.items()}
                g = ws.grads
            jobs.append((ws, dout[b[i] : b[i + 1]], g, None if dx is None else dx[b[i] : b[i + 1]]))
        self._run(self._backward_chunk, jobs)
        for ws in wss[1:]:
            partial = ws.grads
            if partial is None:  # set above for every chunk after the first
                raise AssertionError("a chunk's partial gradients were not allocated")
            for k, v in grads.items():
                v += partial[k]
        self._pool.setdefault(cache.n, []).append(wss)
        return dx, grads

    def _backward_chunk(self, ws: _Workspace, dout, grads, dx) -> None:
        p = self.params
        nb = self.num_blocks
        jit = self._jit()
        if jit is not None:
            w1, w2 = self._per_block(p, ("w1", "w2"))
            gw1, gw2, gb1, gb2 = self._per_block(grads, ("w1", "w2", "b1", "b2"))
            u, au = self._tup(ws.u, 2), self._tup(ws.au, 2)
            need_dx = dx is not None
            jit.backward(
                dout, ws.z, p["in.w"], w1, w2, p["out.w"], tuple(ws.h), tuple(ws.a), u, au,
                ws.g, ws.dh, grads["in.w"], grads["in.b"], gw1, gb1, gw2, gb2, grads["out.w"],
                grads["out.b"], dx if need_dx else np.empty((0, self.dim), self.dtype), need_dx, nb,
            )  # fmt: skip
            return
        silu_grad = self._kernels()[2]
        np.matmul(ws.a[nb].T, dout, out=grads["out.w"])
        np.sum(dout, axis=0, out=grads["out.b"])
        np.matmul(dout, p["out.w"].T, out=ws.g)
        silu_grad(ws.g, ws.h[nb], ws.dh, False)
        for k in reversed(range(nb)):
            np.matmul(ws.au[k].T, ws.dh, out=grads[f"block{k}.w2"])
            np.sum(ws.dh, axis=0, out=grads[f"block{k}.b2"])
            np.matmul(ws.dh, p[f"block{k}.w2"].T, out=ws.g)
            # ws.au[k] is free now: the SiLU derivative goes there, not in place (an aliased
            # output defeats LLVM's vectorisation of the kernel: 6x slower)
            du = ws.au[k]
            silu_grad(ws.g, ws.u[k], du, False)
            np.matmul(ws.a[k].T, du, out=grads[f"block{k}.w1"])
            np.sum(du, axis=0, out=grads[f"block{k}.b1"])
            # ws.u[k] is free now: reuse it for the product before the SiLU derivative.
            np.matmul(du, p[f"block{k}.w1"].T, out=ws.u[k])
            silu_grad(ws.u[k], ws.h[k], ws.dh, True)
        np.matmul(ws.z.T, ws.dh, out=grads["in.w"])
        np.sum(ws.dh, axis=0, out=grads["in.b"])
        if dx is not None:
            np.matmul(ws.dh, p["in.w"][: self.dim].T, out=dx)

    def __repr__(self) -> str:
        n = sum(int(p.size) for p in self.params.values())
        return (
            f"MLP(dim={self.dim}, hidden={self.hidden}, num_blocks={self.num_blocks}, "
            f"time_embed_dim={self.time_embed_dim}, learn_sigma={self.learn_sigma}, "
            f"dtype={np.dtype(self.dtype).name}, fused={self.fused}, params={n:,})"
        )

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Denoiser interface: :meth:`predict` of ``x`` cast to the model's dtype."""
        return self.predict(np.asarray(x).astype(self.dtype, copy=False), t)

    def predict(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        r"""Model output without a cache: the inference pass of the samplers.

        The same function as :meth:`forward`, organised for speed: the timestep part of the
        input layer is computed once per distinct timestep,

        .. math:: [x, e(t)]\,W_{in} + b_{in}
                  = x\,W_{in}^{(x)} + \bigl(e(t)\,W_{in}^{(e)} + b_{in}\bigr)

        (a sampler's batch shares one ``t``, so this is one row), and the rows run in tiles of
        ``INFER_TILE`` rows through all layers, so that a tile's activations stay in cache.
        The result equals ``forward(x, t)[0]`` up to the rounding of the reordered sums (a few
        ulp of the model's dtype; tested in float64 to 1e-12). Its tile buffers belong to the
        model: call it from one thread at a time (the model's own threads are internal).

        **Batch-invariant**: row ``i`` of the output is a function of ``x[i]`` and ``t[i]``
        alone, bitwise, whatever the batch size and the row's position in it —
        ``predict(x, t)[a:b] == predict(x[a:b], t[a:b])``. BLAS is not: OpenBLAS picks its
        GEMM kernel by size (one row, a thin output layer under about 2²⁰ multiply-adds) and
        its float32 kernels on some CPUs sum a row in an order set by the row's position in
        its block (AMD Zen 3: two results by position modulo 12). So the products, in float32
        and float64, are :mod:`npddpm.nn._gemm`'s, every element one fixed chain of fused
        multiply-adds, and the SiLU kernels are element-wise; the last tile is zero-padded and
        the thread chunks start on tile boundaries, so that every row also passes through
        whole tiles. The timestep part is one product per distinct timestep. This is what
        lets a sharded run (:mod:`npddpm.distributed`) reproduce a single-process one bit for
        bit, on every machine. A call packs the weights for the product once (0.17 ms at
        float32 width 256) and costs at most one padded tile more than its rows. A float32
        model with C-contiguous parameters runs each thread's chunk as one compiled call
        (:func:`npddpm.nn._mlp_kernels.predict_kernel`, bitwise the same as the tile loop).

        Parameters
        ----------
        x : ndarray, shape (N, dim), the model's dtype
        t : int ndarray, shape (N,)

        Returns
        -------
        out : ndarray, shape (N, D_out)
        """
        check_input(x, "x", self.dtype, (self.dim,), "dim")
        n = x.shape[0]
        t = check_timesteps(t, n)
        if np.all(t == t[0]):
            tu, inv = t[:1], np.zeros(n, dtype=np.int64)
        else:
            tu, inv = np.unique(t, return_inverse=True)
            inv = inv.astype(np.int64, copy=False)
        p = self.params
        c = matmul_by_row(self._embedding(tu), p["in.w"][self.dim :])
        c += p["in.b"]
        x = np.ascontiguousarray(x)
        self._kernels()  # compile (once) here, not in the worker threads
        # one compiled call per chunk where the model allows it (as the training step)
        jit = self._compiled_ok()
        if jit:
            from ._mlp_kernels import predict_kernel

            predict_kernel()
        packed = self._packed_weights()
        # the thread chunks start on tile boundaries, so that a row's tile is fixed by its index
        tile = INFER_TILE
        bounds = sorted({min(n, -(-b // tile) * tile) for b in self._chunks(n)})
        while len(self._infer_ws) < len(bounds) - 1:
            self._infer_ws.append(
                [np.empty((tile, self.hidden), dtype=self.dtype) for _ in range(5)]
            )
        out = np.empty((n, self.out_dim), dtype=self.dtype)
        jobs = [
            (self._infer_ws[i], x[r0:r1], inv[r0:r1], c, out[r0:r1], packed, jit)
            for i, (r0, r1) in enumerate(itertools.pairwise(bounds))
        ]
        self._run(self._predict_chunk, jobs)
        return out

    def _packed_weights(self) -> tuple:
        """``(wp1, wp2, wp_out)``: the weights packed for :func:`npddpm.nn._gemm.kernels`'
        ``matmul_packed``, once per :meth:`predict` call (the parameters may change between
        calls), shared read-only by the threads."""
        from ._gemm import kernels, packed_size

        pack = kernels(self.dtype).pack

        def packed(w: np.ndarray) -> np.ndarray:
            wp = np.empty(packed_size(w.shape[0], w.shape[1], self.dtype), dtype=self.dtype)
            pack(w, wp)
            return wp

        p = self.params
        wp1, wp2 = (
            self._tup([packed(p[f"block{k}.{n}"]) for k in range(self.num_blocks)], 1)
            for n in ("w1", "w2")
        )
        return wp1, wp2, packed(p["out.w"])

    def _predict_chunk(self, bufs: list[np.ndarray], x, inv, c, out, packed, jit) -> None:
        wp1, wp2, wp_out = packed
        if jit:
            from ._mlp_kernels import predict_kernel

            p, nb = self.params, self.num_blocks
            b1, b2 = self._per_block(p, ("b1", "b2"))
            tile = INFER_TILE
            xpad = np.empty((tile, x.shape[1]), dtype=x.dtype)
            ipad = np.empty(tile, dtype=inv.dtype)
            opad = np.empty((tile, out.shape[1]), dtype=out.dtype)
            h, r, a, u, au = bufs
            predict_kernel()(
                x, inv, c, p["in.w"][: self.dim], wp1, b1, wp2, b2, wp_out, h, r, a, u, au,
                xpad, ipad, opad, out, nb, tile,
            )
            out += p["out.b"]
            return
        from ._gemm import kernels

        bias_silu, residual_silu, _, embed_silu = self._kernels()
        mm = kernels(self.dtype).matmul_packed
        p = self.params
        wx = p["in.w"][: self.dim]
        tile = INFER_TILE
        for r0 in range(0, x.shape[0], tile):
            r1 = min(r0 + tile, x.shape[0])
            h, r, a, u, au = bufs
            xt, it, ot = x[r0:r1], inv[r0:r1], out[r0:r1]
            if r1 - r0 < tile:  # the last tile: zero-padded to a whole tile
                xt, it = padded(xt, tile), padded(it, tile)
                ot = np.empty((tile, out.shape[1]), dtype=out.dtype)
            embed_silu(xt, wx, c, it, h, a)
            for k in range(self.num_blocks):
                mm(a, wp1[k], u)
                bias_silu(u, p[f"block{k}.b1"], au)
                mm(au, wp2[k], r)
                residual_silu(r, h, p[f"block{k}.b2"], a)  # r becomes the residual stream
                h, r = r, h
            mm(a, wp_out, ot)
            if ot.shape[0] != r1 - r0:
                out[r0:r1] = ot[: r1 - r0]
        out += p["out.b"]
