"""Compile seconds of the Numba kernels: a cold compile, and the first call that loads the
compiled code from Numba's on-disk cache instead.

Both are measured in a fresh interpreter (:data:`SCRIPT`): a benchmark's own process has
usually loaded the kernels already, and the package caches the compiled CPU kernels on disk
(``NPDDPM_NUMBA_CACHE``, default on; see :mod:`npddpm._numba`), so a kernel is never cold in
asv's process. In the child, Numba is initialised first (a trivial function compiled), the
backend module imported and the arrays built; then the kernel is called twice on 4 rows of
1000 float32 elements and the figure is the first call's time minus the second's.

``Compile.track_compile_seconds``: ``NPDDPM_NUMBA_CACHE=0`` in the child, so nothing comes
from the disk cache (``cpu``); the ``cuda`` kernels are never cached (PTX is built per GPU).
In-kernel noise includes compiling the generator, which a process compiles once per dtype
and shares between kernels; a cold process pays for it with its first such kernel.

``CacheLoad.track_cached_first_call_seconds``: the same with the cache on and filled (by
``setup``): what a new process pays on its first call (``cpu`` only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from . import common

SCRIPT = r"""
import importlib.util, json, sys, time
path, kernel, noise, dtype, backend = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("asv_common", path)
common = importlib.util.module_from_spec(spec)
spec.loader.exec_module(common)
from numba import njit
njit(lambda v: v + 1)(1)  # Numba and LLVM initialised outside the measurement
if backend == "cuda":
    from numba import cuda

    @cuda.jit
    def _init(a):
        a[0] = 1.0

    _init[1, 1](cuda.to_device(common.arrays(1000, "float32", 1)[0].reshape(-1)))
    cuda.synchronize()
    import npddpm.kernels.cuda
else:
    import npddpm.kernels.cpu
import npddpm.kernels as K

n = 4 * common.ROW
if kernel == "standard_normal":
    def call():
        K.standard_normal(1, 2, n, dtype, backend=backend)
else:
    call = common.kernel_call(kernel, n, dtype, backend, noise)
t0 = time.perf_counter()
call()
t1 = time.perf_counter()
call()
t2 = time.perf_counter()
print(json.dumps({"first": t1 - t0, "second": t2 - t1}))
"""

_CASES = [(k, nz) for k in common.KERNELS for nz in common.NOISE] + [
    ("standard_normal", "in-kernel")
]
_CASE_NAMES = [f"{k}[{nz}]" for k, nz in _CASES]


def first_call_seconds(case: str, backend: str, cache: bool, dtype: str = "float32") -> float:
    """First call minus second call of ``case`` (``"kernel[noise]"``) in a fresh interpreter."""
    kernel, noise = case.rstrip("]").split("[")
    env = dict(os.environ, NPDDPM_NUMBA_CACHE="1" if cache else "0")
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(Path(common.__file__)), kernel, noise, dtype, backend],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"child failed ({res.returncode}):\n{res.stderr[-2000:]}")
    times = json.loads(res.stdout.strip().splitlines()[-1])
    return float(times["first"] - times["second"])


class Compile:
    params: ClassVar[list] = [_CASE_NAMES, ["cpu", "cuda"]]
    param_names: ClassVar[list] = ["kernel", "backend"]
    timeout = 600
    number = 1
    repeat = 1
    rounds = 1

    def setup(self, case, backend):
        common.require(backend, 0)

    def track_compile_seconds(self, case, backend):
        return first_call_seconds(case, backend, cache=False)

    track_compile_seconds.unit = "seconds"  # type: ignore[attr-defined]


class CacheLoad:
    params: ClassVar[list] = [_CASE_NAMES]
    param_names: ClassVar[list] = ["kernel"]
    timeout = 300
    number = 1
    repeat = 1
    rounds = 1

    def setup(self, case):
        kernel, noise = case.rstrip("]").split("[")
        import npddpm.kernels as K

        if kernel == "standard_normal":
            K.standard_normal(1, 2, 1000, "float32", backend="cpu")
        else:  # fills the on-disk cache if it is empty
            common.kernel_call(kernel, 4 * common.ROW, "float32", "cpu", noise)()

    def track_cached_first_call_seconds(self, case):
        return first_call_seconds(case, "cpu", cache=True)

    track_cached_first_call_seconds.unit = "seconds"  # type: ignore[attr-defined]
