"""Fused noising and sampling kernels with three backends: ``numpy`` (the spec), ``cpu``
(Numba) and ``cuda`` (Numba CUDA). See :mod:`npddpm.kernels.dispatch` for the API.

Importing this package imports no Numba and compiles nothing; a backend's kernels are
imported on its first use and compiled on their first call.
"""

from .dispatch import (
    BACKENDS,
    ddim_step,
    ddpm_step,
    fixed_log_variance,
    langevin_step,
    q_sample,
    standard_normal,
)

__all__ = [
    "BACKENDS",
    "ddim_step",
    "ddpm_step",
    "fixed_log_variance",
    "langevin_step",
    "q_sample",
    "standard_normal",
]
