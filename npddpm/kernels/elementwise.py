r"""The per-element updates of the fused kernels, written once for the ``cpu`` and ``cuda``
backends.

:func:`build` takes a backend's decorator for inlined device functions and returns, for
each kernel of :data:`npddpm.kernels.contract.KERNELS`, a pair of compiled functions:

``row(coefs, r)``
    The row's coefficients as a tuple of scalars, in the order of the fields of the kernel's
    coefficient tuple (:mod:`npddpm.kernels.contract`). The CPU kernels take it once per row
    (hoisted out of the inner loop), the CUDA kernels once per element.
``elem(inputs, r, j, z, c, clip, one)``
    Element ``(r, j)`` of the output from the input arrays, the normal ``z`` of that element,
    the row's coefficients ``c``, the clip flag and ``1`` in the array dtype.

The expressions are those of :mod:`npddpm.kernels.reference`, evaluated in the same order,
so with fastmath off the compiled kernels are bitwise equal to it. The backends' loop drivers
(:mod:`npddpm.kernels.cpu`, :mod:`npddpm.kernels.cuda`) are generic over these pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .contract import KernelName

__all__ = ["build"]


def build(jit: Callable[[Callable[..., Any]], Any]) -> dict[KernelName, tuple[Any, Any]]:
    """``{kernel: (row, elem)}`` compiled with ``jit`` (a decorator for inlined functions)."""

    @jit
    def x0_hat(x, e, c_recip, c_recipm1, clip, one):
        v = c_recip * x - c_recipm1 * e
        if clip:
            if v < -one:
                v = -one
            elif v > one:
                v = one
        return v

    @jit
    def q_sample_row(c, r):
        return c.sqrt_alphas_cumprod[r], c.sqrt_one_minus_alphas_cumprod[r]

    @jit
    def q_sample_elem(inputs, r, j, z, c, clip, one):
        a, b = c
        return a * inputs[0][r, j] + b * z

    @jit
    def langevin_row(c, r):
        return c.half_step[r], c.sqrt_step[r]

    @jit
    def langevin_elem(inputs, r, j, z, c, clip, one):
        a, b = c
        return (inputs[0][r, j] + a * inputs[1][r, j]) + b * z

    @jit
    def ddpm_row(c, r):
        return (
            c.sqrt_recip_alphas_cumprod[r],
            c.sqrt_recipm1_alphas_cumprod[r],
            c.posterior_mean_coef1[r],
            c.posterior_mean_coef2[r],
            c.noise_scale[r],
        )

    @jit
    def ddpm_elem(inputs, r, j, z, c, clip, one):
        c_recip, c_recipm1, c1, c2, s = c
        x = inputs[0][r, j]
        x0 = x0_hat(x, inputs[1][r, j], c_recip, c_recipm1, clip, one)
        return (c1 * x0 + c2 * x) + s * z

    @jit
    def ddim_row(c, r):
        return (
            c.sqrt_recip_alphas_cumprod[r],
            c.sqrt_recipm1_alphas_cumprod[r],
            c.sqrt_alphas_cumprod_prev[r],
            c.direction_scale[r],
            c.noise_scale[r],
        )

    @jit
    def ddim_elem(inputs, r, j, z, c, clip, one):
        c_recip, c_recipm1, c_prev, c_dir, s = c
        x = inputs[0][r, j]
        x0 = x0_hat(x, inputs[1][r, j], c_recip, c_recipm1, clip, one)
        eps_hat = (c_recip * x - x0) / c_recipm1
        return (x0 * c_prev + c_dir * eps_hat) + s * z

    return {
        "q_sample": (q_sample_row, q_sample_elem),
        "langevin_step": (langevin_row, langevin_elem),
        "ddpm_step": (ddpm_row, ddpm_elem),
        "ddim_step": (ddim_row, ddim_elem),
    }
