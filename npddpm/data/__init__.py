r"""Embedded datasets: nothing is downloaded at run time.

:func:`get` returns a dataset object by name. Every dataset has ``name``, ``shape`` (of one
example), ``dim`` and ``sample(n, rng)``; where the answer is known exactly it also has
``log_prob(x)`` (nats) or an exact check.

==================  =========  ==============================================================
name                shape      exact answer
==================  =========  ==============================================================
``8gaussians``      (2,)       ``log_prob`` closed form; ``weights``, ``means``,
                               ``covariances`` and ``.distribution`` (an
                               :class:`npddpm.analytic.GaussianMixture`)
``25gaussians``     (2,)       as ``8gaussians``
``moons``           (2,)       ``log_prob`` by quadrature along the two arcs
``circles``         (2,)       ``log_prob`` closed form (Bessel ``I₀``)
``swissroll``       (2,)       ``log_prob`` by quadrature along the roll
``checkerboard``    (2,)       ``in_support`` and ``log_prob`` (uniform, 1/32)
``pinwheel``        (2,)       ``log_prob`` by change of variables, summed over preimages
``2spirals``        (2,)       ``log_prob`` by quadrature along the spirals
``digits``          (1, 8, 8)  UCI optical digits (1797, 17 levels), fixed train/test split
``bars_and_stripes`` (1, 4, 4) ``is_valid``, ``pattern_index`` (30 valid patterns)
==================  =========  ==============================================================

Each 2-D set documents its generative model (curve, law of the curve parameter, noise) so the
density is the exact density of the sampler. Images are scaled to [−1, 1].

Examples
--------
>>> from npddpm import data
>>> ds = data.get("8gaussians")
>>> x = ds.sample(2000, rng=0)            # (2000, 2) float64
>>> nll = -ds.log_prob(x).mean()          # ≈ the entropy, 2.83 nats
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

from .._checks import choose
from .base import Dataset
from .images import BarsAndStripes, Digits
from .toy2d import (
    Checkerboard,
    Circles,
    GaussianMixtureData,
    Moons,
    Pinwheel,
    SwissRoll,
    TwoSpirals,
    eight_gaussians,
    twenty_five_gaussians,
)

__all__ = [
    "NAMES",
    "BarsAndStripes",
    "Checkerboard",
    "Circles",
    "Dataset",
    "Digits",
    "GaussianMixtureData",
    "Moons",
    "Pinwheel",
    "SwissRoll",
    "TwoSpirals",
    "get",
]

_REGISTRY: dict[str, Callable[[], Dataset]] = {
    "8gaussians": eight_gaussians,
    "25gaussians": twenty_five_gaussians,
    "moons": Moons,
    "circles": Circles,
    "swissroll": SwissRoll,
    "checkerboard": Checkerboard,
    "pinwheel": Pinwheel,
    "2spirals": TwoSpirals,
    "digits": Digits,
    "bars_and_stripes": BarsAndStripes,
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)
"""The names :func:`get` accepts."""


# The overloads only tell a type checker which class a literal name returns.
@overload
def get(name: Literal["digits"]) -> Digits: ...
@overload
def get(name: Literal["bars_and_stripes"]) -> BarsAndStripes: ...
@overload
def get(name: Literal["8gaussians", "25gaussians"]) -> GaussianMixtureData: ...
@overload
def get(name: Literal["moons"]) -> Moons: ...
@overload
def get(name: Literal["circles"]) -> Circles: ...
@overload
def get(name: Literal["swissroll"]) -> SwissRoll: ...
@overload
def get(name: Literal["checkerboard"]) -> Checkerboard: ...
@overload
def get(name: Literal["pinwheel"]) -> Pinwheel: ...
@overload
def get(name: Literal["2spirals"]) -> TwoSpirals: ...
@overload
def get(name: str) -> Dataset: ...


def get(name: str) -> Dataset:
    """Return the dataset called ``name`` (one of :data:`NAMES`).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    return _REGISTRY[choose(name, "dataset", NAMES)]()
