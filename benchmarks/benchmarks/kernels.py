"""The fused kernels of :mod:`npddpm.kernels`: ``q_sample``, the DDPM, DDIM and Langevin
steps, on every backend, noise given or drawn in the kernel.

Each class times one kernel (``time_kernel``) and records its bandwidth (``track_gbps``:
bytes moved per call, see :mod:`.common`, over the median time of a few calls) and, measured
in the same process, its fraction of the STREAM-triad bandwidth (``track_vs_triad``: kernel
GB/s ÷ triad GB/s, calls alternated; the triad runs on the host for ``numpy``/``cpu``, on the
device for ``cuda``). ``setup`` builds the arrays and calls the kernel once, so compilation
(or loading from Numba's on-disk cache) is never timed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from . import common


class _Kernel:
    kernel = ""
    params: ClassVar[list] = [common.SIZES, common.DTYPES, common.BACKENDS, common.NOISE]
    param_names: ClassVar[list] = ["n", "dtype", "backend", "noise"]
    timeout = 300

    def setup(self, n, dtype, backend, noise):
        common.require(backend, n, noise)
        self.call = common.kernel_call(self.kernel, n, dtype, backend, noise)
        self.call()  # compile / load from cache: not timed
        self.nbytes = common.ARRAYS[self.kernel][noise] * n * np.dtype(dtype).itemsize

    def time_kernel(self, n, dtype, backend, noise):
        self.call()

    def track_gbps(self, n, dtype, backend, noise):
        return common.gbps(self.nbytes, common.median_seconds(self.call))

    track_gbps.unit = "GB/s"  # type: ignore[attr-defined]

    def track_vs_triad(self, n, dtype, backend, noise):
        triad = common.triad_call(n, dtype, backend)
        t_kernel, t_triad = common.alternated_medians([self.call, triad])
        itemsize = np.dtype(dtype).itemsize
        return common.gbps(self.nbytes, t_kernel) / common.gbps(3 * n * itemsize, t_triad)

    track_vs_triad.unit = "fraction of triad GB/s"  # type: ignore[attr-defined]


class QSample(_Kernel):
    """``q_sample``: x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε."""

    kernel = "q_sample"


class DDPMStep(_Kernel):
    """``ddpm_step`` with the ``fixed_small`` log-variance, no clipping."""

    kernel = "ddpm_step"


class DDIMStep(_Kernel):
    """``ddim_step`` with η = 1 (the noise term active), no clipping."""

    kernel = "ddim_step"


class LangevinStep(_Kernel):
    """``langevin_step`` with δ = 1e-3."""

    kernel = "langevin_step"


class Bandwidth:
    """The STREAM-triad probe itself (3 arrays moved), for reading the kernels' GB/s."""

    params: ClassVar[list] = [common.SIZES, common.DTYPES, ["cpu", "cuda"]]
    param_names: ClassVar[list] = ["n", "dtype", "backend"]
    timeout = 120

    def setup(self, n, dtype, backend):
        common.require(backend, n)
        self.call = common.triad_call(n, dtype, backend)
        self.call()

    def track_triad_gbps(self, n, dtype, backend):
        nbytes = 3 * n * np.dtype(dtype).itemsize
        return common.gbps(nbytes, common.median_seconds(self.call))

    track_triad_gbps.unit = "GB/s"  # type: ignore[attr-defined]
