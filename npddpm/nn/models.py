"""The two denoisers, under one import: :class:`MLP` (``npddpm.nn.mlp``, vector data, with a
buffer-reusing fused training step) and :class:`UNet` (``npddpm.nn.unet``, images of side 4
to 32). Each lives in its own module because each is a screenful of its own."""

from .mlp import MLP
from .unet import UNet

__all__ = ["MLP", "UNet"]
