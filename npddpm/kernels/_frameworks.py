"""The array frameworks a benchmarked kernel may be written in (used by
:mod:`npddpm.kernels.bench`).

Each framework converts NumPy inputs to its own arrays and its results back (both outside the
timed region), synchronises its device (inside the timed region: a call is not finished until
its device work is) and provides the device-to-device copy that is the bandwidth probe of a
GPU. Nothing is imported at module import: a framework's package is imported when it is first
used, and one that is not installed gives a one-line ``RuntimeError`` saying how to install it.

=================  ===================================================  ====================
name               arrays                                               synchronisation
=================  ===================================================  ====================
``numpy``          ``numpy.ndarray`` (also plain Numba ``@njit`` code)  none
``torch``          ``torch.Tensor`` on the CPU                          none
``torch-cuda``     ``torch.Tensor`` on ``cuda``                         ``torch.cuda.synchronize()``
``cupy``           ``cupy.ndarray``                                     ``Device().synchronize()``
``jax``            ``jax.Array`` (float64 needs ``jax_enable_x64``)     ``block_until_ready``
``numba-cuda``     Numba CUDA device arrays                             ``cuda.synchronize()``
=================  ===================================================  ====================
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from .._numba import code_names

__all__ = ["FRAMEWORKS", "Framework", "detect", "get", "gpu_usable", "triad_probe"]

#: The framework names, in the order of the table above.
FRAMEWORKS: tuple[str, ...] = ("numpy", "torch", "torch-cuda", "cupy", "jax", "numba-cuda")

_INSTALL = {
    "torch": "pip install 'npddpm[torch]' (or torch from pytorch.org)",
    "cupy": "pip install cupy-cuda12x (the wheel for your CUDA version)",
    "jax": "pip install jax (jax[cuda12] for a GPU)",
    "numba-cuda": "pip install 'npddpm[cuda]' on a machine with an NVIDIA GPU",
}


def _import(package: str, framework: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise RuntimeError(
            f"framework {framework!r} needs {package}, which is not installed ({exc}); "
            f"{_INSTALL[framework]}"
        ) from None


def gpu_usable() -> bool:
    """Whether Numba sees a real NVIDIA GPU (False under the CUDA simulator and without
    numba-cuda, a driver or a GPU)."""
    try:
        from numba import config as nbconfig
        from numba import cuda as nbcuda

        sim = getattr(nbconfig, "ENABLE_CUDASIM", False)
        if sim or getattr(nbcuda, "implementation", None) != "NVIDIA":
            return False
        return bool(nbcuda.is_available())
    except Exception:  # any failure means: no usable GPU
        return False


class Framework:
    """One framework: conversion both ways, synchronisation, and a device copy.

    Parameters
    ----------
    name : str
        One of :data:`FRAMEWORKS`.
    """

    def __init__(self, name: str) -> None:
        if name not in FRAMEWORKS:
            raise ValueError(f"unknown framework {name!r}; choose one of {', '.join(FRAMEWORKS)}")
        self.name = name
        self.gpu = name in ("torch-cuda", "cupy", "numba-cuda") or (
            name == "jax" and self._jax_on_gpu()
        )

    def __repr__(self) -> str:
        return f"Framework({self.name!r})"

    # -- the packages, imported on first use -------------------------------------------------

    @functools.cached_property
    def module(self) -> Any:
        """The framework's package (``numpy``, ``torch``, ``cupy``, ``jax.numpy``,
        ``numba.cuda``), imported now; ``RuntimeError`` if missing or unusable."""
        if self.name == "numpy":
            return np
        if self.name in ("torch", "torch-cuda"):
            torch = _import("torch", "torch")
            if self.name == "torch-cuda" and not torch.cuda.is_available():
                raise RuntimeError(
                    "framework 'torch-cuda' found no GPU (torch.cuda.is_available() is False); "
                    "use framework 'torch' for a CPU kernel"
                )
            return torch
        if self.name == "cupy":
            return _import("cupy", "cupy")
        if self.name == "jax":
            _import("jax", "jax")
            return importlib.import_module("jax.numpy")
        if not gpu_usable():
            raise RuntimeError(
                "framework 'numba-cuda' needs a usable NVIDIA GPU (numba.cuda.is_available() "
                f"is False, or the CUDA simulator is on); {_INSTALL['numba-cuda']}"
            )
        from numba import cuda

        return cuda

    def _jax_on_gpu(self) -> bool:
        if "jax" not in sys.modules:
            return False
        jax = sys.modules["jax"]
        return any(d.platform == "gpu" for d in jax.devices())

    # -- conversion (outside the timed region) ----------------------------------------------

    def from_numpy(self, a: np.ndarray) -> Any:
        """``a`` as this framework's array (on its device)."""
        m = self.module
        if self.name == "numpy":
            return a
        if self.name == "torch":
            return m.from_numpy(np.ascontiguousarray(a))
        if self.name == "torch-cuda":
            return m.from_numpy(np.ascontiguousarray(a)).to("cuda")
        if self.name == "cupy":
            return m.asarray(a)
        if self.name == "jax":
            if a.dtype == np.float64 and m.asarray(a).dtype != np.float64:
                raise RuntimeError(
                    "jax truncates float64 to float32 unless x64 is on: call "
                    "jax.config.update('jax_enable_x64', True) in your kernel's module, or "
                    "benchmark float32 only"
                )
            return m.asarray(a)
        return m.to_device(np.ascontiguousarray(a))

    def is_array(self, obj: object) -> bool:
        """Whether ``obj`` is an array of this framework."""
        if self.name == "numpy":
            return isinstance(obj, np.ndarray)
        if self.name in ("torch", "torch-cuda"):
            return isinstance(obj, self.module.Tensor)
        if self.name == "cupy":
            return isinstance(obj, self.module.ndarray)
        if self.name == "jax":
            return type(obj).__module__.split(".")[0] in ("jax", "jaxlib")
        return hasattr(obj, "copy_to_host")

    def to_numpy(self, obj: Any, what: str) -> np.ndarray:
        """``obj`` (a result of this framework) as a NumPy array; ``TypeError`` naming
        ``what`` for anything that is not one of this framework's arrays."""
        if not self.is_array(obj):
            raise TypeError(
                f"{what} returned {type(obj).__module__}.{type(obj).__qualname__}; a "
                f"{self.name} kernel must return one {self.name} array (the result), not a "
                "tuple, list or scalar — or pass the right framework="
            )
        if self.name == "numpy":
            return obj
        if self.name in ("torch", "torch-cuda"):
            return obj.detach().cpu().numpy()
        if self.name == "cupy":
            return obj.get()
        if self.name == "jax":
            return np.asarray(obj)
        return obj.copy_to_host()

    # -- synchronisation (inside the timed region) ------------------------------------------

    def sync(self, result: Any) -> None:
        """Wait until ``result`` (and all work queued before it) is computed."""
        if self.name == "torch-cuda":
            self.module.cuda.synchronize()
        elif self.name == "cupy":
            self.module.cuda.Device().synchronize()
        elif self.name == "jax":
            sys.modules["jax"].block_until_ready(result)
        elif self.name == "numba-cuda":
            self.module.synchronize()

    def copy_probe(self, shape: tuple[int, ...], dtype: np.dtype) -> Callable[[], None]:
        """A device-to-device copy of one array of ``shape`` (2 arrays moved), synchronised:
        the bandwidth probe of a GPU framework."""
        src = self.from_numpy(np.ones(shape, dtype))
        dst = self.from_numpy(np.zeros(shape, dtype))
        copies: dict[str, Callable[[], Any]] = {
            "torch-cuda": lambda: dst.copy_(src),
            "cupy": lambda: self.module.copyto(dst, src),
            "jax": lambda: self.module.copy(src),
            "numba-cuda": lambda: dst.copy_to_device(src),
        }
        if self.name not in copies:
            raise ValueError(f"framework {self.name!r} has no device: use the STREAM triad")
        copy = copies[self.name]

        def run() -> None:
            res = copy()
            self.sync(dst if res is None else res)

        return run


@functools.cache
def get(name: str) -> Framework:
    """The :class:`Framework` called ``name`` (one per name)."""
    return Framework(name)


def _modules_used(fn: Any, depth: int = 2) -> set[str]:
    """The frameworks among the globals that ``fn``'s code refers to (``torch``, ``cupy``,
    ``jax``, ``numba.cuda`` modules, or objects defined in them), following the functions of
    its module that it calls ``depth`` levels deep; read without importing anything. For a
    callable object without code, its module's namespace."""
    fn = getattr(fn, "py_func", getattr(fn, "__wrapped__", fn))  # numba dispatchers, wrappers
    while isinstance(fn, functools.partial):
        fn = fn.func
    code, glob = getattr(fn, "__code__", None), getattr(fn, "__globals__", None)
    if code is None or glob is None:
        module = sys.modules.get(getattr(type(fn), "__module__", ""))
        values = list(vars(module).values()) if module is not None else []
    else:
        values = [glob[n] for n in code_names(code) if n in glob]
    found = set()
    for value in values:
        if isinstance(value, types.ModuleType):
            name = value.__name__
        elif isinstance(value, types.FunctionType) and depth > 0:
            found |= _modules_used(value, depth - 1)
            continue
        else:
            name = getattr(value, "__module__", None) or ""
        if name == "numba.cuda" or name.startswith("numba.cuda."):
            found.add("numba-cuda")
        elif name.split(".")[0] in ("torch", "cupy", "jax", "jaxlib"):
            found.add(name.split(".")[0].replace("jaxlib", "jax"))
    return found


def detect(fn: Any) -> str:
    """The framework a kernel is written in, from the modules its code uses: ``torch``
    (on the CPU: say ``torch-cuda`` yourself for a GPU kernel), ``cupy``, ``jax``,
    ``numba-cuda``, else ``numpy``. ``ValueError`` when more than one is found."""
    found = _modules_used(fn)
    if len(found) > 1:
        raise ValueError(
            f"cannot tell the kernel's framework: its code uses {', '.join(sorted(found))}; "
            f"pass framework= (one of {', '.join(FRAMEWORKS)})"
        )
    return found.pop() if found else "numpy"


_TRIAD: dict[bool, Any] = {}


def triad_probe(shape: tuple[int, int], dtype: np.dtype) -> Callable[[], None]:
    """The STREAM triad ``a = b + s·c`` (Numba, 3 arrays moved) on arrays of ``shape``: the
    bandwidth probe of the CPU (as ``benchmarks/common.py``). Parallel over rows from
    :data:`npddpm.kernels.cpu.SERIAL_BELOW` elements, on the calling thread below, as the
    ``cpu`` kernels (a parallel region costs more than a small triad)."""
    from . import cpu

    parallel = shape[0] * shape[1] >= cpu.SERIAL_BELOW
    if parallel not in _TRIAD:
        from numba import prange

        from .._numba import cpu_jit

        def triad(a: Any, b: Any, c: Any, s: Any) -> None:  # pragma: no cover - compiled
            rows, cols = a.shape
            for r in range(rows):
                for j in range(cols):
                    a[r, j] = b[r, j] + s * c[r, j]

        def triad_parallel(a: Any, b: Any, c: Any, s: Any) -> None:  # pragma: no cover
            rows, cols = a.shape
            for r in prange(rows):
                for j in range(cols):
                    a[r, j] = b[r, j] + s * c[r, j]

        triad = cpu_jit(parallel=parallel, cache=False)(triad_parallel if parallel else triad)
        _TRIAD[parallel] = triad
    kernel = _TRIAD[parallel]
    b, c, a = np.ones(shape, dtype), np.ones(shape, dtype), np.empty(shape, dtype)
    s = np.dtype(dtype).type(3.0)
    return lambda: kernel(a, b, c, s)
