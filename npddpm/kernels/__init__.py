"""Fused noising and sampling kernels with three backends: ``numpy`` (the spec), ``cpu``
(Numba) and ``cuda`` (Numba CUDA). See :mod:`npddpm.kernels.dispatch` for the API, and
:mod:`npddpm.kernels.bench` (:func:`bench_kernel`, ``npddpm bench``) to time your own kernel
beside them (the function is not called ``bench``, which would hide the module).

Importing this package imports no Numba and compiles nothing; a backend's kernels are
imported on its first use and compiled on their first call.
"""

from .bench import Adapted, BenchReport, adapt, bench_kernel, load_kernel
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
    "Adapted",
    "BenchReport",
    "adapt",
    "bench_kernel",
    "ddim_step",
    "ddpm_step",
    "fixed_log_variance",
    "langevin_step",
    "load_kernel",
    "q_sample",
    "standard_normal",
]
