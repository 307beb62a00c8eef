r"""A small convolutional U-Net denoiser (Ho et al. 2020; Nichol & Dhariwal 2021) for square
images of side 4 to 32, built from the layer pairs of :mod:`npddpm.nn.layers`,
:mod:`npddpm.nn.conv` and :mod:`npddpm.nn.blocks`.

Architecture (``C₀`` = ``base_channels``, ``m`` = ``channel_mult``, ``L = len(m)`` levels,
``R`` = ``num_res_blocks``)::

    temb = Linear(SiLU(Linear(e(t))))                       e(t): sinusoidal, width C₀
    h = Conv3×3(x)                                           C → C₀
    for level i = 0..L−1:   R × ResBlock(h, temb) → C₀·mᵢ;  skipᵢ = h;  AvgPool2 if i < L−1
    middle:                 ResBlock, [self-attention], ResBlock      (lowest resolution)
    for level i = L−1..0:   Upsample2 if i < L−1;  h = concat(h, skipᵢ);  R × ResBlock → C₀·mᵢ
    out = Conv3×3(SiLU(GroupNorm(h)))                        C₀·m₀ → C (2C with learn_sigma)

The side must be divisible by ``2^(L−1)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import as_int
from ._parallel import ChunkRunner, available_cpus
from ._validate import check_dtype, check_input, check_timesteps
from .blocks import (
    attention_block_backward,
    attention_block_forward,
    attention_block_params,
    res_block_backward,
    res_block_forward,
    res_block_params,
)
from .conv import conv2d_nhwc_backward, conv2d_nhwc_forward
from .layers import (
    avg_pool_backward,
    avg_pool_forward,
    group_norm_silu_backward,
    group_norm_silu_forward,
    linear_backward,
    linear_forward,
    silu_backward,
    silu_forward,
    timestep_embedding_forward,
    upsample_backward,
    upsample_forward,
)

__all__ = ["UNet"]

MIN_SIDE, MAX_SIDE = 4, 32


MIN_CHUNK = 8  # images per thread below which splitting the batch does not pay


class _UNetCache:
    __slots__ = ("bounds", "chunks", "model", "n")

    def __init__(self, model: UNet, n: int, bounds: list[int], chunks: list) -> None:
        self.model, self.n, self.bounds, self.chunks = model, n, bounds, chunks


class UNet:
    r"""Convolutional U-Net denoiser ``(x, t) → model output`` for ``(N, C, S, S)`` images.

    Parameters
    ----------
    channels : int
        Image channels ``C``.
    base_channels : int, default 32
        Width ``C₀`` of the first level.
    channel_mult : tuple of int, default (1, 2)
        Width multiplier per resolution level; ``L`` levels halve the side ``L − 1`` times.
    num_res_blocks : int, default 1
        Residual blocks per level on each path.
    attention : bool, default True
        Self-attention in the middle, at the lowest resolution.
    heads : int, default 1
        Attention heads (must divide the middle width).
    groups : int, default 8
        Group-norm groups (must divide every width).
    time_embed_dim : int or None, default None
        Width of the timestep MLP; ``4·C₀`` when None.
    max_period : float, default 10000
    learn_sigma : bool, default False
        Output ``2C`` channels (ε and the variance interpolation ``v``).
    seed : int, default 0
        Initialisation seed (PyTorch's default ``±1/√fan_in`` uniform for convolutions and
        linear layers, drawn in float64 then cast; group norms start at γ = 1, β = 0).
    dtype : np.float32 or np.float64, default np.float32
    threads : int or None, default None
        Data parallelism: a batch of at least ``threads × 8`` images is split into
        ``threads`` chunks, each run by its own Python thread with a single-threaded BLAS,
        and the chunks' gradients are summed (see :class:`npddpm.nn.MLP`). ``None`` uses
        every CPU this process may run on.
    retain_memory : bool, default True
        On glibc, set ``mallopt`` once per process so that freed activation memory is reused
        from step to step instead of being returned to the kernel and page-faulted in
        again (a quarter of a training step otherwise; see :mod:`npddpm.nn._malloc`).
        Process-wide: the process keeps up to 512 MiB of freed memory. ``False`` leaves
        the allocator alone.
    conv_algorithm : {"auto", "im2col"}, default "auto"
        ``"auto"`` computes the 3×3 convolutions of even-sided maps with enough channels
        (:func:`npddpm.nn.conv.winograd_pays`: all but the input and output ones of the
        default model) by Winograd's F(2×2, 3×3) (:mod:`npddpm.nn.winograd`: 2.25×
        fewer multiplications, the exact gradient of what it computes, equal to im2col up to
        float rounding) and the others by im2col; ``"im2col"`` uses im2col everywhere.

    Attributes
    ----------
    params : dict of str → ndarray
        Keys ``temb.0.w``, ``conv_in.w``, ``down{i}.{j}.conv1.w``, ``mid.attn.qkv.w``,
        ``up{i}.{j}.skip.w``, ``out.conv.w``, …; convolution weights are
        ``(C_out, C_in, k, k)``, linear weights ``(fan_in, fan_out)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attention: bool = True,
        heads: int = 1,
        groups: int = 8,
        time_embed_dim: int | None = None,
        max_period: float = 10000.0,
        learn_sigma: bool = False,
        seed: int = 0,
        dtype: Any = np.float32,
        threads: int | None = None,
        retain_memory: bool = True,
        conv_algorithm: str = "auto",
    ) -> None:
        self.channels = as_int(channels, "channels", minimum=1)
        self.base_channels = as_int(base_channels, "base_channels", minimum=1)
        mult = tuple(channel_mult)
        if not mult:
            raise ValueError("channel_mult must hold at least one multiplier, e.g. (1, 2)")
        self.channel_mult = tuple(as_int(m, "channel_mult[i]", minimum=1) for m in mult)
        self.num_res_blocks = as_int(num_res_blocks, "num_res_blocks", minimum=1)
        self.attention = bool(attention)
        self.heads = as_int(heads, "heads", minimum=1)
        self.groups = as_int(groups, "groups", minimum=1)
        widths = [self.base_channels * m for m in self.channel_mult]
        bad = [w for w in [self.base_channels, *widths] if w % self.groups]
        if bad:
            raise ValueError(
                f"groups={self.groups} must divide every width, but not {bad}; choose "
                "base_channels as a multiple of groups or lower groups"
            )
        if self.attention and widths[-1] % self.heads:
            raise ValueError(f"heads={self.heads} must divide the middle width {widths[-1]}")
        temb = 4 * self.base_channels if time_embed_dim is None else time_embed_dim
        self.time_embed_dim = as_int(temb, "time_embed_dim", minimum=1)
        self.max_period = float(max_period)
        self.learn_sigma = bool(learn_sigma)
        self.out_channels = self.channels * (2 if self.learn_sigma else 1)
        self.dtype = check_dtype(dtype)
        self.seed = as_int(seed, "seed", minimum=0)
        self.params = self._init_params(np.random.default_rng(self.seed))
        self.threads = as_int(
            available_cpus() if threads is None else threads, "threads", minimum=1
        )
        self._runner = ChunkRunner(self.threads, MIN_CHUNK)
        if conv_algorithm not in ("auto", "im2col"):
            raise ValueError(
                f"conv_algorithm must be 'auto' (Winograd F(2×2, 3×3) where it applies) or "
                f"'im2col', got {conv_algorithm!r}"
            )
        self.conv_algorithm = conv_algorithm
        self.retain_memory = bool(retain_memory)
        if self.retain_memory:
            from ._malloc import retain_freed_memory

            retain_freed_memory()

    @property
    def downsample_factor(self) -> int:
        """``2^(L−1)``: the image side must be a multiple of it."""
        return 2 ** (len(self.channel_mult) - 1)

    # ---------------------------------------------------------------- parameters

    def _init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        dt, c0, e = self.dtype, self.base_channels, self.time_embed_dim

        def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, size=shape).astype(dt)

        p: dict[str, np.ndarray] = {
            "temb.0.w": uniform((c0, e), c0),
            "temb.0.b": uniform((e,), c0),
            "temb.1.w": uniform((e, e), e),
            "temb.1.b": uniform((e,), e),
            "conv_in.w": uniform((c0, self.channels, 3, 3), 9 * self.channels),
            "conv_in.b": uniform((c0,), 9 * self.channels),
        }

        def add(prefix: str, block: dict[str, np.ndarray]) -> None:
            p.update({f"{prefix}.{k}": v for k, v in block.items()})

        ch = c0
        widths = [c0 * m for m in self.channel_mult]
        for i, w in enumerate(widths):
            for j in range(self.num_res_blocks):
                add(f"down{i}.{j}", res_block_params(rng, ch, w, e, dt))
                ch = w
        add("mid.0", res_block_params(rng, ch, ch, e, dt))
        if self.attention:
            add("mid.attn", attention_block_params(rng, ch, dt))
        add("mid.1", res_block_params(rng, ch, ch, e, dt))
        for i in reversed(range(len(widths))):
            w = widths[i]
            for j in range(self.num_res_blocks):
                add(f"up{i}.{j}", res_block_params(rng, ch + w if j == 0 else w, w, e, dt))
                ch = w
        p["out.gn.g"] = np.ones(ch, dtype=dt)
        p["out.gn.b"] = np.zeros(ch, dtype=dt)
        p["out.conv.w"] = uniform((self.out_channels, ch, 3, 3), 9 * ch)
        p["out.conv.b"] = uniform((self.out_channels,), 9 * ch)
        return p

    def _sub(self, prefix: str) -> dict[str, np.ndarray]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.params.items() if k.startswith(prefix + ".")}

    # ---------------------------------------------------------------- forward / backward

    def _check_x(self, x: np.ndarray) -> None:
        if isinstance(x, np.ndarray) and x.ndim == 4:
            side = x.shape[2]
            if x.shape[3] != side:
                raise ValueError(f"x must hold square images (N, C, S, S), got {x.shape}")
            f = self.downsample_factor
            if not MIN_SIDE <= side <= MAX_SIDE or side % f:
                raise ValueError(
                    f"image side {side} is not supported: it must lie in [{MIN_SIDE}, "
                    f"{MAX_SIDE}] and be a multiple of {f} (this U-Net halves it "
                    f"{len(self.channel_mult) - 1} times); use fewer channel_mult levels "
                    "or pad the images"
                )
        side = x.shape[2] if isinstance(x, np.ndarray) and x.ndim == 4 else 0
        check_input(x, "x", self.dtype, (self.channels, side, side), "channels, S, S")

    def forward(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, _UNetCache]:
        """Model output for a batch.

        Parameters
        ----------
        x : ndarray, shape (N, channels, S, S), the model's dtype; ``S`` in [4, 32] and a
            multiple of :attr:`downsample_factor`
        t : int ndarray, shape (N,)

        Returns
        -------
        out : ndarray, shape (N, out_channels, S, S)
        cache : object for :meth:`backward`
        """
        self._check_x(x)
        n = x.shape[0]
        t = check_timesteps(t, n)
        b = self._runner.bounds(n)
        jobs = [(x[b[i] : b[i + 1]], t[b[i] : b[i + 1]]) for i in range(len(b) - 1)]
        results = self._runner.run(self._forward_chunk, jobs)
        out = results[0][0] if len(results) == 1 else np.concatenate([r[0] for r in results])
        return out, _UNetCache(self, n, b, [r[1] for r in results])

    def _forward_chunk(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, tuple]:
        p, g = self.params, self.groups
        e0, _ = timestep_embedding_forward(
            t, self.base_channels, max_period=self.max_period, dtype=self.dtype
        )
        e1, c1 = linear_forward(e0, p["temb.0.w"], p["temb.0.b"])
        e2, c2 = silu_forward(e1)
        temb, c3 = linear_forward(e2, p["temb.1.w"], p["temb.1.b"])

        # Channels-last inside (contiguous im2col copies, no transposes around products).
        ops: list[tuple] = []
        algo = self.conv_algorithm
        h, c = conv2d_nhwc_forward(
            x.transpose(0, 2, 3, 1), p["conv_in.w"], p["conv_in.b"], 1, 1, algorithm=algo
        )
        ops.append(("conv", "conv_in", c))

        def res(prefix: str, h: np.ndarray) -> np.ndarray:
            h, c = res_block_forward(
                h, temb, self._sub(prefix), g, channels_last=True, conv_algorithm=algo
            )
            ops.append(("res", prefix, c))
            return h

        levels = len(self.channel_mult)
        skips = []
        for i in range(levels):
            for j in range(self.num_res_blocks):
                h = res(f"down{i}.{j}", h)
            skips.append(h)
            ops.append(("skip", i, None))
            if i < levels - 1:
                h, c = avg_pool_forward(h, channels_last=True)
                ops.append(("pool", None, c))
        h = res("mid.0", h)
        if self.attention:
            h, c = attention_block_forward(
                h, self._sub("mid.attn"), g, self.heads, channels_last=True
            )
            ops.append(("attn", "mid.attn", c))
        h = res("mid.1", h)
        for i in reversed(range(levels)):
            if i < levels - 1:
                h, c = upsample_forward(h, channels_last=True)
                ops.append(("up", None, c))
            ops.append(("concat", i, h.shape[-1]))
            h = np.concatenate([h, skips[i]], axis=-1)
            for j in range(self.num_res_blocks):
                h = res(f"up{i}.{j}", h)
        h, c = group_norm_silu_forward(h, p["out.gn.g"], p["out.gn.b"], g)
        ops.append(("gnsilu", "out.gn", c))
        out, c = conv2d_nhwc_forward(h, p["out.conv.w"], p["out.conv.b"], 1, 1, algorithm=algo)
        ops.append(("conv", "out.conv", c))
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return out, (ops, (c1, c2, c3))

    def backward(self, dout: np.ndarray, cache: _UNetCache) -> dict[str, np.ndarray]:
        """Gradients of ``<out, dout>`` with respect to every parameter.

        Returns a dict with exactly the keys of :attr:`params`.
        """
        return self.vjp(dout, cache, input_grad=False)[1]

    def vjp(
        self, dout: np.ndarray, cache: _UNetCache, *, input_grad: bool = True
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Like :meth:`backward`, and also ``dx`` (the shape of ``x``) when ``input_grad``."""
        if not isinstance(cache, _UNetCache) or cache.model is not self:
            raise TypeError("cache must be the cache returned by this model's forward()")
        side = dout.shape[2] if isinstance(dout, np.ndarray) and dout.ndim == 4 else 0
        check_input(dout, "dout", self.dtype, (self.out_channels, side, side), "C_out, S, S")
        if dout.shape[0] != cache.n:
            raise ValueError(f"dout has {dout.shape[0]} rows but the forward pass had {cache.n}")
        b = cache.bounds
        jobs = [(dout[b[i] : b[i + 1]], c, input_grad) for i, c in enumerate(cache.chunks)]
        results = self._runner.run(self._vjp_chunk, jobs)
        dx, grads = results[0]
        for _, g_i in results[1:]:
            for k, v in grads.items():
                v += g_i[k]
        if input_grad and len(results) > 1:
            dx = np.concatenate([r[0] for r in results])
        return dx, grads

    def _vjp_chunk(
        self, dout: np.ndarray, chunk: tuple, input_grad: bool
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        ops, temb_caches = chunk
        grads: dict[str, np.ndarray] = {}
        dtemb = np.zeros((dout.shape[0], self.time_embed_dim), dtype=self.dtype)
        dskips: dict[int, np.ndarray] = {}
        dh = np.ascontiguousarray(dout.transpose(0, 2, 3, 1))
        for kind, key, c in reversed(ops):
            if kind == "conv":
                first = key == "conv_in"
                dx_conv, gr = conv2d_nhwc_backward(dh, c, need_dx=input_grad or not first)
                grads[f"{key}.w"], grads[f"{key}.b"] = gr["w"], gr["b"]
                # None only for conv_in (ops[0], the last op here) when not input_grad,
                # and dh is not read after it then
                if dx_conv is not None:
                    dh = dx_conv
            elif kind == "res":
                (dh, de), gr = res_block_backward(dh, c)
                dtemb += de
                grads.update({f"{key}.{k}": v for k, v in gr.items()})
            elif kind == "attn":
                dh, gr = attention_block_backward(dh, c)
                grads.update({f"{key}.{k}": v for k, v in gr.items()})
            elif kind == "gnsilu":
                dh, gr = group_norm_silu_backward(dh, c)
                grads[f"{key}.g"], grads[f"{key}.b"] = gr["g"], gr["b"]
            elif kind == "pool":
                dh, _ = avg_pool_backward(dh, c)
            elif kind == "up":
                dh, _ = upsample_backward(dh, c)
            elif kind == "concat":
                dskips[key] = dh[..., c:]
                dh = dh[..., :c]
            elif kind == "skip":
                dh = dh + dskips.pop(key)
        c1, c2, c3 = temb_caches
        de, gr = linear_backward(dtemb, c3)
        grads["temb.1.w"], grads["temb.1.b"] = gr["w"], gr["b"]
        de, _ = silu_backward(de, c2)
        _, gr = linear_backward(de, c1)
        grads["temb.0.w"], grads["temb.0.b"] = gr["w"], gr["b"]
        grads = {k: grads[k] for k in self.params}  # same order as params
        dx = np.ascontiguousarray(dh.transpose(0, 3, 1, 2)) if input_grad else None
        return dx, grads

    def __repr__(self) -> str:
        n = sum(int(p.size) for p in self.params.values())
        return (
            f"UNet(channels={self.channels}, base_channels={self.base_channels}, "
            f"channel_mult={self.channel_mult}, num_res_blocks={self.num_res_blocks}, "
            f"attention={self.attention}, heads={self.heads}, groups={self.groups}, "
            f"learn_sigma={self.learn_sigma}, dtype={np.dtype(self.dtype).name}, params={n:,})"
        )

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Denoiser interface: the model output for ``x`` cast to the model's dtype."""
        return self.forward(np.asarray(x).astype(self.dtype, copy=False), t)[0]
