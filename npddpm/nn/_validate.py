"""Input validation shared by the models and the optimiser (errors say what was expected)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

__all__ = ["check_dtype", "check_keys", "check_timesteps"]


def check_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """Return ``dtype`` as float32 or float64, or raise a ``TypeError``."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(
            f"dtype must be np.float32 (training) or np.float64 (gradient checks), got {dt}"
        )
    return dt


def check_input(x: object, name: str, dtype: np.dtype, shape_tail: tuple, what: str) -> np.ndarray:
    """Check that ``x`` is an ndarray of ``dtype`` and shape ``(N, *shape_tail)``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape (N, {what}), got {type(x)}")
    if x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model computes in {dtype}; pass "
            f"{name}.astype(np.{dtype.name}) or build the model with dtype=np.{x.dtype.name}"
        )
    if x.ndim != 1 + len(shape_tail) or x.shape[1:] != tuple(shape_tail) or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, {what}) with N >= 1, got {x.shape}")
    return x


def check_timesteps(t: object, n: int) -> np.ndarray:
    """Return ``t`` as an int64 array of shape ``(n,)`` of non-negative timesteps."""
    arr = np.asarray(t)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(
            f"t must be an integer array (one timestep per row), got dtype {arr.dtype}; "
            "pass t.astype(np.int64)"
        )
    if arr.shape != (n,):
        raise ValueError(f"t must have shape ({n},), one timestep per row of x; got {arr.shape}")
    if n and arr.min() < 0:
        raise ValueError(f"t must be >= 0, got a minimum of {arr.min()}")
    return arr.astype(np.int64, copy=False)


def check_keys(got: Mapping, expected: Mapping, name: str) -> None:
    """Raise a ``KeyError``-free ``ValueError`` listing missing and unexpected keys."""
    if got.keys() == expected.keys():
        return
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    raise ValueError(
        f"{name} must have exactly the keys of params; missing {missing}, unexpected {extra}"
    )
