"""Autograd-free denoisers: layers as forward/backward pairs, an MLP and a U-Net, Adam and EMA.

Nothing here compiles at import; the fused Numba kernels of the MLP compile on first use.
"""

from .models import MLP, UNet
from .optim import EMA, Adam, AdamW, clip_grad_norm, warmup_lr

__all__ = ["EMA", "MLP", "Adam", "AdamW", "UNet", "clip_grad_norm", "warmup_lr"]
