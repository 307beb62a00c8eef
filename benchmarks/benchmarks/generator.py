"""The counter-based generator (:func:`npddpm.kernels.standard_normal`, Philox4x32-10 and a
normal transform) on every backend, against NumPy's ``Generator.standard_normal``.

``track_gbps`` counts the one output array written (``cuda``: the public API returns a host
array, so its time includes the copy back). ``track_vs_numpy`` is NumPy's time over
npddpm's, the two alternated in the same process (> 1: npddpm is faster).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from . import common


class StandardNormal:
    params: ClassVar[list] = [common.SIZES, common.DTYPES, common.BACKENDS]
    param_names: ClassVar[list] = ["n", "dtype", "backend"]
    timeout = 300

    def setup(self, n, dtype, backend):
        common.require(backend, n, "in-kernel")
        import npddpm.kernels as K

        def call():
            return K.standard_normal(1, 2, n, dtype, backend=backend)

        self.call = call
        self.call()  # compile / load from cache: not timed
        self.nbytes = n * np.dtype(dtype).itemsize

    def time_standard_normal(self, n, dtype, backend):
        self.call()

    def track_gbps(self, n, dtype, backend):
        return common.gbps(self.nbytes, common.median_seconds(self.call))

    track_gbps.unit = "GB/s"  # type: ignore[attr-defined]

    def track_vs_numpy(self, n, dtype, backend):
        gen = np.random.default_rng(0)
        buf = np.empty(n, dtype)

        def numpy_normals():
            gen.standard_normal(out=buf, dtype=dtype)

        t_ours, t_numpy = common.alternated_medians([self.call, numpy_normals])
        return t_numpy / t_ours

    track_vs_numpy.unit = "NumPy time / npddpm time"  # type: ignore[attr-defined]


class NumpyGenerator:
    """The baseline: NumPy's PCG64 ``Generator.standard_normal`` (ziggurat, one thread)."""

    params: ClassVar[list] = [common.SIZES, common.DTYPES]
    param_names: ClassVar[list] = ["n", "dtype"]

    def setup(self, n, dtype):
        self.gen = np.random.default_rng(0)
        self.buf = np.empty(n, dtype)
        self.dtype = dtype

    def time_standard_normal(self, n, dtype):
        self.gen.standard_normal(out=self.buf, dtype=self.dtype)
