r"""Thresholding of the predicted x̂₀: Imagen's dynamic thresholding (Saharia et al. 2022, §2.3).

:func:`dynamic_thresholding` gives a ``denoised_fn`` for the reverse steps of
:class:`npddpm.GaussianDiffusion` (re-exported from :mod:`npddpm.diffusion`).
"""

from __future__ import annotations

import numpy as np

from .typing import Array, DenoisedFn

__all__ = ["dynamic_threshold", "dynamic_thresholding"]


def dynamic_threshold(x0: Array, ratio: float = 0.995, max_value: float = 1.0) -> Array:
    r"""Imagen's dynamic thresholding, as diffusers' ``_threshold_sample`` does it.

    Per example, ``s = clip(quantile(|x̂₀|, ratio), 1, max_value)`` (linear interpolation
    between order statistics, as ``torch.quantile``), then ``x̂₀ ← clip(x̂₀, −s, s) / s``
    (Saharia et al. 2022, §2.3). With ``max_value = 1`` this is plain clipping to [−1, 1].
    """
    x0 = np.asarray(x0)
    if x0.ndim < 2:
        raise ValueError(f"x0 must have a batch axis, got shape {x0.shape}")
    flat = x0.reshape(x0.shape[0], -1)
    s = np.quantile(np.abs(flat), ratio, axis=1)
    s = np.clip(s, 1.0, max_value)[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x0.shape).astype(x0.dtype, copy=False)


def dynamic_thresholding(ratio: float = 0.995, max_value: float = 1.0) -> DenoisedFn:
    """A ``denoised_fn`` applying :func:`dynamic_threshold` (pass ``clip_denoised=False``)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
    if max_value < 1.0:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    return lambda x0: dynamic_threshold(x0, ratio, max_value)
