"""Input validation shared by the public functions.

Every public function validates its arguments here and raises a ``ValueError`` or
``TypeError`` that names the argument, says what was expected and how to fix it.
Private kernels never validate.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

__all__ = [
    "as_int",
    "as_real_1d",
    "as_timesteps",
    "check_batch",
    "check_timesteps",
    "choose",
    "sample_shape",
]


def as_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, rejecting bools, floats and out-of-range values."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_real_1d(values: object, name: str) -> np.ndarray:
    """Return a fresh float64 1-D array of finite values (may be empty)."""
    arr = np.asarray(values)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of real numbers, got dtype {arr.dtype}; "
            "pass a float or integer array"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}; pass a flat array")
    arr = arr.astype(np.float64, copy=True)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite, but {name}[{bad}] = {arr[bad]}")
    return arr


def as_timesteps(values: object, name: str, num_timesteps: int) -> np.ndarray:
    """Return a sorted int64 array of distinct timesteps in ``[0, num_timesteps)``.

    A ``set``/``frozenset`` (as returned by :func:`npddpm.schedules.space_timesteps`) is
    unordered and is sorted here; any other sequence must already be strictly increasing.
    """
    if isinstance(values, (set, frozenset)):
        values = sorted(values)
    if isinstance(values, Iterable) and not isinstance(values, np.ndarray):
        values = list(values)
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of integers, got shape {arr.shape}"
        )
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= num_timesteps:
        raise ValueError(
            f"{name} must lie in [0, {num_timesteps - 1}], got values from {arr.min()} to "
            f"{arr.max()}"
        )
    steps = np.diff(arr)
    if np.any(steps == 0):
        dup = int(arr[1:][steps == 0][0])
        raise ValueError(f"{name} contains the timestep {dup} more than once; remove duplicates")
    if np.any(steps < 0):
        raise ValueError(
            f"{name} must be strictly increasing; pass sorted({name}) (a set is sorted for you)"
        )
    return arr


def check_batch(x: object, name: str, like: np.ndarray | None = None) -> np.ndarray:
    """Return ``x`` as a floating-point array with a batch axis first, shape ``(B, ...)``.

    Parameters
    ----------
    x : array_like
        The array to check.
    name : str
        Its name in the error messages.
    like : ndarray, optional
        When given, ``x`` must have exactly its shape and dtype.

    Raises
    ------
    TypeError
        If ``x`` is not floating point, or its dtype differs from ``like``'s.
    ValueError
        If ``x`` has no batch axis (``ndim < 2``) or its shape differs from ``like``'s.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have a batch axis first, shape (B, ...), got {x.shape}; "
            f"for one example pass {name}[None]"
        )
    if like is not None:
        if x.shape != like.shape:
            raise ValueError(f"{name} has shape {x.shape} but the data has {like.shape}")
        if x.dtype != like.dtype:
            raise TypeError(
                f"{name} has dtype {x.dtype} but the data has {like.dtype}; pass one dtype"
            )
    return x


def check_timesteps(
    t: object, batch: int, num_timesteps: int, *, respaced: bool = False
) -> np.ndarray:
    """Return ``t`` as int64 indices of shape ``(batch,)``, one per batch row, in ``[0, T)``.

    The one timestep/batch validator of the maths and the samplers. A scalar is broadcast to
    every row.

    Parameters
    ----------
    t : int or integer array (batch,)
        Indices into the (possibly respaced) schedule.
    batch : int
        B, the number of rows.
    num_timesteps : int
        T; every index must satisfy ``0 <= t < T``.
    respaced : bool
        Say "respaced schedule" in the range error (the indices are not original timesteps).

    Raises
    ------
    TypeError
        If ``t`` is not of an integer dtype (bools are rejected).
    ValueError
        If ``t`` does not have shape ``(batch,)`` or lies outside ``[0, T − 1]``.
    """
    arr = np.asarray(t)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"t must be an integer array (one timestep per row), got {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full(batch, int(arr), dtype=np.int64)
    if arr.shape != (batch,):
        raise ValueError(
            f"t must have shape ({batch},), one timestep per batch row, got {arr.shape}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= num_timesteps):
        raise ValueError(
            f"t must lie in [0, {num_timesteps - 1}] (indices into the "
            f"{'respaced ' if respaced else ''}schedule), got "
            f"values from {arr.min()} to {arr.max()}"
        )
    return arr.astype(np.int64)


def sample_shape(x_T_or_shape: object) -> tuple[int, ...]:
    """A sampler's ``x_T_or_shape`` given as a shape: ``(B, ...)`` as ints, B ≥ 1, or a
    TypeError/ValueError naming it (an array is checked by the caller)."""
    try:
        shape = tuple(int(n) for n in x_T_or_shape)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(
            "x_T_or_shape must be a NumPy array x_T or a shape tuple of ints such as "
            f"(B, D), got {x_T_or_shape!r:.60}"
        ) from None
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, ...) with positive sizes, got {shape}")
    return shape


def choose(value: object, name: str, options: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``options``; otherwise list the options."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(options)}")
    return value
