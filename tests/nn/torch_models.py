"""The npddpm models rebuilt in PyTorch from an npddpm model's ``params``.

Written from the architecture descriptions (docstrings of ``npddpm.nn.mlp`` and
``npddpm.nn.unet``) with stock ``torch.nn`` layers, so autograd provides the reference
gradients. The timestep embedding is recomputed here from its formula, not taken from npddpm.
Used by the torch-marked tests and by ``benchmarks/bench_train_step.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal(t: torch.Tensor, dim: int, max_period: float, dtype) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    args = t.to(torch.float64)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb.to(dtype)


class _Mapped(nn.Module):
    """A module that knows which npddpm key each of its parameters came from."""

    def _load(self, params: dict, layout: dict[str, tuple[nn.Parameter, bool]], dtype) -> None:
        self._layout = layout
        with torch.no_grad():
            for key, (p, transpose) in layout.items():
                arr = torch.from_numpy(np.ascontiguousarray(params[key])).to(dtype)
                p.copy_(arr.T if transpose else arr)

    def npddpm_grads(self) -> dict[str, np.ndarray]:
        """Autograd's gradients in npddpm's key names and layouts."""
        out = {}
        for key, (p, transpose) in self._layout.items():
            g = p.grad.detach()
            out[key] = (g.T if transpose else g).numpy().copy()
        return out


class TorchMLP(_Mapped):
    def __init__(self, model, dtype):
        super().__init__()
        d, h, e = model.dim, model.hidden, model.time_embed_dim
        self.dim, self.emb_dim, self.max_period = d, e, model.max_period
        self.inp = nn.Linear(d + e, h, dtype=dtype)
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Linear(h, h, dtype=dtype), nn.Linear(h, h, dtype=dtype)])
            for _ in range(model.num_blocks)
        )
        self.out = nn.Linear(h, model.out_dim, dtype=dtype)
        layout = {
            "in.w": (self.inp.weight, True),
            "in.b": (self.inp.bias, False),
            "out.w": (self.out.weight, True),
            "out.b": (self.out.bias, False),
        }
        for k, (l1, l2) in enumerate(self.blocks):
            layout |= {
                f"block{k}.w1": (l1.weight, True),
                f"block{k}.b1": (l1.bias, False),
                f"block{k}.w2": (l2.weight, True),
                f"block{k}.b2": (l2.bias, False),
            }
        self._load(model.params, layout, dtype)
        self.dtype = dtype
        self._table = sinusoidal(torch.arange(1000), e, self.max_period, dtype)

    def forward(self, x, t):
        t = torch.as_tensor(t)
        if int(t.max()) >= self._table.shape[0]:
            self._table = sinusoidal(
                torch.arange(int(t.max()) + 1), self.emb_dim, self.max_period, self.dtype
            )
        h = self.inp(torch.cat([x, self._table[t]], dim=1))
        for l1, l2 in self.blocks:
            h = h + l2(F.silu(l1(F.silu(h))))
        return self.out(F.silu(h))


def torch_mlp(model, dtype=torch.float64) -> TorchMLP:
    return TorchMLP(model, dtype)


class _ResBlock(nn.Module):
    def __init__(self, c_in, c_out, e, groups, dtype):
        super().__init__()
        self.gn1 = nn.GroupNorm(groups, c_in, dtype=dtype)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, dtype=dtype)
        self.emb = nn.Linear(e, c_out, dtype=dtype)
        self.gn2 = nn.GroupNorm(groups, c_out, dtype=dtype)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, dtype=dtype)
        self.skip = nn.Conv2d(c_in, c_out, 1, dtype=dtype) if c_in != c_out else None

    def layout(self, prefix):
        out = {}
        for name in ("gn1", "gn2"):
            m = getattr(self, name)
            out[f"{prefix}.{name}.g"] = (m.weight, False)
            out[f"{prefix}.{name}.b"] = (m.bias, False)
        for name in ("conv1", "conv2", "skip"):
            m = getattr(self, name)
            if m is not None:
                out[f"{prefix}.{name}.w"] = (m.weight, False)
                out[f"{prefix}.{name}.b"] = (m.bias, False)
        out[f"{prefix}.emb.w"] = (self.emb.weight, True)
        out[f"{prefix}.emb.b"] = (self.emb.bias, False)
        return out

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.gn1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.gn2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class _Attention(nn.Module):
    """Residual multi-head self-attention over the H·W positions, written out by hand."""

    def __init__(self, c, groups, heads, dtype):
        super().__init__()
        self.gn = nn.GroupNorm(groups, c, dtype=dtype)
        self.qkv = nn.Linear(c, 3 * c, dtype=dtype)
        self.out = nn.Linear(c, c, dtype=dtype)
        self.heads = heads

    def layout(self, prefix):
        return {
            f"{prefix}.gn.g": (self.gn.weight, False),
            f"{prefix}.gn.b": (self.gn.bias, False),
            f"{prefix}.qkv.w": (self.qkv.weight, True),
            f"{prefix}.qkv.b": (self.qkv.bias, False),
            f"{prefix}.out.w": (self.out.weight, True),
            f"{prefix}.out.b": (self.out.bias, False),
        }

    def forward(self, x):
        n, c, hh, ww = x.shape
        tok = self.gn(x).reshape(n, c, hh * ww).transpose(1, 2)
        q, k, v = self.qkv(tok).chunk(3, dim=-1)
        d = c // self.heads

        def split(z):
            return z.reshape(n, hh * ww, self.heads, d).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(q), split(k), split(v))
        o = o.transpose(1, 2).reshape(n, hh * ww, c)
        return x + self.out(o).transpose(1, 2).reshape(x.shape)


class TorchUNet(_Mapped):
    def __init__(self, model, dtype):
        super().__init__()
        c0, e, g = model.base_channels, model.time_embed_dim, model.groups
        self.c0, self.max_period, self.dtype = c0, model.max_period, dtype
        self.t0 = nn.Linear(c0, e, dtype=dtype)
        self.t1 = nn.Linear(e, e, dtype=dtype)
        self.conv_in = nn.Conv2d(model.channels, c0, 3, padding=1, dtype=dtype)
        layout = {
            "temb.0.w": (self.t0.weight, True),
            "temb.0.b": (self.t0.bias, False),
            "temb.1.w": (self.t1.weight, True),
            "temb.1.b": (self.t1.bias, False),
            "conv_in.w": (self.conv_in.weight, False),
            "conv_in.b": (self.conv_in.bias, False),
        }
        widths = [c0 * m for m in model.channel_mult]
        self.levels, self.nrb = len(widths), model.num_res_blocks
        self.blocks = nn.ModuleDict()
        ch = c0
        for i, w in enumerate(widths):
            for j in range(self.nrb):
                self.blocks[f"down{i}_{j}"] = _ResBlock(ch, w, e, g, dtype)
                layout |= self.blocks[f"down{i}_{j}"].layout(f"down{i}.{j}")
                ch = w
        self.blocks["mid_0"] = _ResBlock(ch, ch, e, g, dtype)
        self.blocks["mid_1"] = _ResBlock(ch, ch, e, g, dtype)
        layout |= self.blocks["mid_0"].layout("mid.0") | self.blocks["mid_1"].layout("mid.1")
        self.attn = _Attention(ch, g, model.heads, dtype) if model.attention else None
        if self.attn is not None:
            layout |= self.attn.layout("mid.attn")
        for i in reversed(range(len(widths))):
            w = widths[i]
            for j in range(self.nrb):
                self.blocks[f"up{i}_{j}"] = _ResBlock(ch + w if j == 0 else w, w, e, g, dtype)
                layout |= self.blocks[f"up{i}_{j}"].layout(f"up{i}.{j}")
                ch = w
        self.gn_out = nn.GroupNorm(g, ch, dtype=dtype)
        self.conv_out = nn.Conv2d(ch, model.out_channels, 3, padding=1, dtype=dtype)
        layout |= {
            "out.gn.g": (self.gn_out.weight, False),
            "out.gn.b": (self.gn_out.bias, False),
            "out.conv.w": (self.conv_out.weight, False),
            "out.conv.b": (self.conv_out.bias, False),
        }
        self._load(model.params, layout, dtype)

    def forward(self, x, t):
        emb = self.t1(
            F.silu(self.t0(sinusoidal(torch.as_tensor(t), self.c0, self.max_period, self.dtype)))
        )
        h = self.conv_in(x)
        skips = []
        for i in range(self.levels):
            for j in range(self.nrb):
                h = self.blocks[f"down{i}_{j}"](h, emb)
            skips.append(h)
            if i < self.levels - 1:
                h = F.avg_pool2d(h, 2)
        h = self.blocks["mid_0"](h, emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.blocks["mid_1"](h, emb)
        for i in reversed(range(self.levels)):
            if i < self.levels - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = torch.cat([h, skips[i]], dim=1)
            for j in range(self.nrb):
                h = self.blocks[f"up{i}_{j}"](h, emb)
        return self.conv_out(F.silu(self.gn_out(h)))


def torch_unet(model, dtype=torch.float64) -> TorchUNet:
    return TorchUNet(model, dtype)
