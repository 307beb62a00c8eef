"""What the workers receive: objects as standard-pickle bytes, models as checkpoint bytes.

:func:`pack` turns an object into ``(digest, bytes)`` with the standard :mod:`pickle`, which
sends arrays and module-level classes by value and functions by name only; it refuses what a
worker could not rebuild (lambdas, closures) and compiled Numba functions. :func:`unpack`
rebuilds it on the worker, once per process and digest.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointModel", "batch_invariant", "pack", "tune_worker_malloc", "unpack"]

Array = np.ndarray

#: Objects a worker process keeps rebuilt, by digest (a model, an oracle): a few at a time.
CACHE_SIZE = 4
_CACHE: OrderedDict[str, Any] = OrderedDict()

_HOW = (
    "send arrays or checkpoint bytes: an oracle denoiser (GaussianMixture.denoiser), "
    "npddpm.distributed.CheckpointModel(path) for a trained model, or an instance of a "
    "module-level class that holds arrays"
)


#: glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): 32 MiB.
MMAP_THRESHOLD = 32 * 1024 * 1024
_TUNED: list[bool] = []


def tune_worker_malloc() -> bool:
    """On a Dask worker whose nanny set ``MALLOC_TRIM_THRESHOLD_`` (Dask's default, 64 KiB),
    raise glibc's mmap threshold to :data:`MMAP_THRESHOLD`, once per process; True if done.

    Setting any trim threshold freezes glibc's mmap threshold at 128 KiB, so every temporary
    array above it is a fresh ``mmap`` whose pages fault in on each use: the 16-D oracle's
    DDPM step on 5,000 rows ran 3.3× slower (2.5 s against 0.76 s) in such a process.
    Memory is still trimmed at the top of the heap; results do not change.
    """
    if _TUNED:
        return _TUNED[0]
    done = False
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            done = bool(libc.mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD
        except (OSError, AttributeError):  # not glibc
            done = False
    _TUNED.append(done)
    return done


def pack(obj: Any, what: str = "denoiser") -> tuple[str, bytes]:
    """``(sha256 hex digest, bytes)`` of ``obj`` pickled with the standard :mod:`pickle`.

    Raises
    ------
    TypeError
        Naming ``what``, if ``obj`` cannot be pickled by value (a lambda, a closure, a model
        holding threads) or holds a compiled Numba function.
    """
    try:
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(f"{what} cannot be sent to the workers ({exc}); {_HOW}") from None
    if b"numba.core.serialize" in blob or b"numba.cuda" in blob:
        raise TypeError(f"{what} holds a compiled Numba function, which is not sent; {_HOW}")
    return hashlib.sha256(blob).hexdigest(), blob


def unpack(digest: str, blob: bytes) -> Any:
    """The object :func:`pack` gave ``(digest, blob)`` for, rebuilt once per process."""
    obj = _CACHE.get(digest)
    if obj is None:
        obj = pickle.loads(blob)
        _CACHE[digest] = obj
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(digest)
    return obj


class CheckpointModel:
    """A trained model as a denoiser that travels as its checkpoint's bytes.

    ``CheckpointModel(path_or_bytes, ema=True)(x_t, t)`` is the denoiser of
    :func:`npddpm.training.load_for_sampling`; it is built from the bytes on first use, in
    each process, and pickles as the bytes only (never the built model or its kernels).
    ``config`` and ``diffusion`` are those of the checkpoint.
    """

    def __init__(self, path_or_bytes: str | os.PathLike[str] | bytes, *, ema: bool = True) -> None:
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            self.data = bytes(path_or_bytes)
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            self.data = Path(path_or_bytes).read_bytes()
        else:
            raise TypeError(
                "path_or_bytes must be a checkpoint path or its bytes, got "
                f"{type(path_or_bytes).__name__}"
            )
        if not isinstance(ema, bool):
            raise TypeError(f"ema must be True or False, got {ema!r}")
        self.ema = ema
        self._built: tuple[Any, Any, Any] | None = None

    def _build(self) -> tuple[Any, Any, Any]:
        if self._built is None:
            from ..training import load_for_sampling

            with tempfile.TemporaryDirectory(prefix="npddpm-ckpt-") as tmp:
                path = Path(tmp) / "model.npz"
                path.write_bytes(self.data)
                with warnings.catch_warnings():  # the client saw any EMA warning already
                    warnings.simplefilter("ignore")
                    self._built = load_for_sampling(path, ema=self.ema)
        return self._built

    @property
    def config(self) -> Any:
        """The checkpoint's :class:`npddpm.training.TrainConfig`."""
        return self._build()[0]

    @property
    def diffusion(self) -> Any:
        """The checkpoint's :class:`npddpm.GaussianDiffusion`."""
        return self._build()[1]

    def __call__(self, x_t: Array, t: Array) -> Array:
        return np.asarray(self._build()[2](x_t, t))

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data, "ema": self.ema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data, self.ema, self._built = state["data"], state["ema"], None

    def __repr__(self) -> str:
        return f"CheckpointModel(<{len(self.data)} bytes>, ema={self.ema})"


def batch_invariant(denoiser: Any, x: Array, t: Array) -> bool:
    """Whether ``denoiser`` evaluates each row on its own, bitwise, on this input.

    Compares ``denoiser(x, t)`` with the same rows evaluated alone, in pairs and in an uneven
    split (x needs at least 3 rows). True is evidence, not proof (other sizes may differ);
    False proves that a sharded run can differ from a single-process one in the last bits.
    """
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim < 2 or x.shape[0] < 3 or t.shape != (x.shape[0],):
        raise ValueError(
            f"x must have shape (B, ...) with B ≥ 3 and t shape (B,), got {x.shape} and {t.shape}"
        )
    full = np.asarray(denoiser(x, t))
    n = x.shape[0]
    for a, b in ((0, 1), (1, 3), (n - 1, n), (0, n - 1)):
        if not np.array_equal(np.asarray(denoiser(x[a:b], t[a:b])), full[a:b]):
            return False
    return True
