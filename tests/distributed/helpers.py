"""Denoisers for the Dask tests; module-level classes, so that workers can unpickle them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class KillOnce:
    """``inner`` as a denoiser that kills the worker process calling it, once: the first call
    made in a process other than ``parent`` (the test's) creates ``flag`` and exits at once,
    mid-task, as a crashed or pre-empted machine would; every later call is ``inner``'s."""

    def __init__(self, inner: Any, flag: str | os.PathLike[str], parent: int) -> None:
        self.inner, self.flag, self.parent = inner, str(flag), parent

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        if os.getpid() != self.parent:
            try:
                fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(17)
        return self.inner(x, t)


class BatchDependent:
    """A denoiser whose rows depend on the batch: ``x·(1 + 1e-12·B)`` — not batch-invariant."""

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        return x * (1.0 + 1e-12 * x.shape[0])


def flag_exists(flag: str | os.PathLike[str]) -> bool:
    return Path(flag).exists()
