"""The :class:`Dataset` base class and argument checks shared by the dataset modules."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import as_int

__all__ = ["Dataset", "as_points", "as_rng"]


def as_rng(rng: object) -> np.random.Generator:
    """Return a ``numpy.random.Generator``: a Generator is used as is, an int seeds a new one."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator or an integer seed, got {type(rng).__name__}; "
        "pass e.g. rng=np.random.default_rng(0) or rng=0"
    )


def as_points(x: object, dim: int, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float64 array of shape (n, dim) of finite values."""
    arr = np.asarray(x)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (n, {dim}), got {arr.shape}; pass one point per row"
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return arr


class Dataset:
    """A named data distribution with a sampler.

    Attributes
    ----------
    name : str
        The name :func:`npddpm.data.get` knows it by.
    shape : tuple of int
        The shape of one example: ``(2,)`` for points, ``(1, H, W)`` for images.
    dim : int
        ``prod(shape)``.
    """

    kind = "points"

    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name = name
        self.shape = tuple(shape)
        self.dim = math.prod(self.shape)

    def __repr__(self) -> str:
        return f"<npddpm dataset {self.name!r}, shape {self.shape}>"

    @property
    def has_log_prob(self) -> bool:
        """True where :meth:`log_prob` gives the exact density."""
        return type(self).log_prob is not Dataset.log_prob

    def sample(self, n: int, rng: np.random.Generator | int) -> np.ndarray:
        """Draw ``n`` independent examples.

        Parameters
        ----------
        n : int
            Number of examples, ``n >= 1``.
        rng : numpy.random.Generator or int
            The random source; an int seeds a fresh generator, so the same seed gives the
            same array.

        Returns
        -------
        x : ndarray, shape (n, *shape), float64
        """
        n = as_int(n, "n", minimum=1)
        return self._sample(n, as_rng(rng))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, x: object) -> np.ndarray:
        """Exact log density (nats) of each row of ``x``, shape (n,)."""
        raise NotImplementedError(
            f"dataset {self.name!r} has no density; use its exact checks instead"
        )
