"""Hypothesis strategies for diffusion schedules, timesteps and arrays.

Import these into your own hypothesis suites to property-test a DDPM implementation:

>>> from hypothesis import given
>>> from npddpm.testing import strategies as nst
>>> @given(nst.schedules(max_T=50))
... def test_alpha_bar_decreases(schedule):
...     assert (schedule.alphas_cumprod[1:] < schedule.alphas_cumprod[:-1]).all()
>>> test_alpha_bar_decreases()

Every strategy takes keyword-only arguments and produces valid input only (what
:class:`npddpm.Schedule` accepts); random betas are drawn so that ᾱ_{T−1} stays in a
realistic range ``[1e-12, 0.998]`` instead of underflowing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..schedules import (
    Schedule,
    get_named_beta_schedule,
    inference_timesteps,
    schedule_names,
    space_timesteps,
)

__all__ = [
    "betas",
    "noises",
    "respacings",
    "schedule_names_at",
    "schedules",
    "timesteps",
    "x_starts",
]

# The smallest T at which each named schedule has all betas in (0, 1]; 1 unless listed.
_MIN_T = {"linear": 20}


def schedule_names_at(T: int) -> list[str]:
    """The named schedules that are valid with ``T`` steps (``linear`` needs T ≥ 20)."""
    return [n for n in schedule_names() if T >= _MIN_T.get(n, 1)]


@st.composite
def betas(
    draw: st.DrawFn,
    *,
    min_T: int = 1,
    max_T: int = 1000,
    min_log10_alpha_bar_end: float = -12.0,
    max_log10_alpha_bar_end: float = -1e-3,
) -> np.ndarray:
    """Random valid betas, float64, shape (T,).

    The shape of the curve is flat, monotone increasing (ratio up to 1000) or random
    (three decades, from a drawn seed); it is then scaled so that
    ``log10 ᾱ_{T−1}`` lies in ``[min_log10_alpha_bar_end, max_log10_alpha_bar_end]``:
    ``β_i = −expm1(−c·w_i)`` with ``c = −log ᾱ_{T−1} / Σ w``. All betas lie in (0, 1).
    """
    T = draw(st.integers(min_T, max_T))
    log10_end = draw(st.floats(min_log10_alpha_bar_end, max_log10_alpha_bar_end))
    shape = draw(st.sampled_from(["flat", "increasing", "random"]))
    if shape == "flat":
        w = np.ones(T)
    elif shape == "increasing":
        ratio = draw(st.floats(1.0, 1000.0))
        w = np.linspace(1.0, ratio, T)
    else:
        seed = draw(st.integers(0, 2**32 - 1))
        w = 10.0 ** np.random.default_rng(seed).uniform(-3.0, 0.0, T)
    c = -log10_end * np.log(10.0) / w.sum()
    return -np.expm1(-c * w)


@st.composite
def schedules(
    draw: st.DrawFn,
    *,
    min_T: int = 1,
    max_T: int = 4000,
    names: Sequence[str] | None = None,
    random_betas: bool = True,
    precisions: Sequence[str] = ("default", "high"),
    respaced: bool = False,
) -> Schedule:
    """Schedules: every named schedule valid at the drawn T, and (if ``random_betas``)
    random betas from :func:`betas`; optionally respaced by :func:`respacings`.

    Parameters
    ----------
    min_T, max_T : int
        Range of the number of steps (1 to 4000 by default).
    names : sequence of str, optional
        Restrict the named schedules (default: all of :func:`npddpm.schedules.schedule_names`).
    random_betas : bool
        Also draw random betas.
    precisions : sequence of str
        Precision modes to draw from.
    respaced : bool
        Respace the drawn schedule with a drawn subset of its timesteps.
    """
    T = draw(st.integers(min_T, max_T))
    pool = [n for n in (names or schedule_names()) if n in schedule_names_at(T)]
    kinds = (["named"] if pool else []) + (["random"] if random_betas else [])
    if not kinds:
        raise ValueError(f"no schedule can be drawn at T={T} with names={names}")
    if draw(st.sampled_from(kinds)) == "named":
        b = get_named_beta_schedule(draw(st.sampled_from(pool)), T)
    else:
        b = draw(betas(min_T=T, max_T=T))
    schedule = Schedule(b, precision=draw(st.sampled_from(list(precisions))))
    if respaced:
        schedule = schedule.respace(draw(respacings(T)))
    return schedule


def timesteps(
    schedule: Schedule | int, *, min_size: int = 1, max_size: int = 16
) -> st.SearchStrategy[np.ndarray]:
    """Per-row timestep arrays (int64, shape (n,)) for ``schedule`` (or for T steps),
    with the edge steps 0, 1, T−2, T−1 drawn often."""
    T = schedule if isinstance(schedule, int) else schedule.num_timesteps
    edges = sorted({t for t in (0, 1, T // 2, T - 2, T - 1) if 0 <= t < T})
    element = st.one_of(st.sampled_from(edges), st.integers(0, T - 1))
    return hnp.arrays(np.int64, st.integers(min_size, max_size), elements=element)


@st.composite
def respacings(draw: st.DrawFn, T: int, *, min_steps: int = 1) -> np.ndarray:
    """A strictly increasing int64 array of timesteps to keep out of ``T``, from
    improved-diffusion section counts, :func:`npddpm.schedules.inference_timesteps`
    (every spacing), or a uniformly random subset."""
    n = draw(st.integers(min(min_steps, T), T))
    how = draw(st.sampled_from(["sections", "linspace", "leading", "trailing", "subset"]))
    if how == "sections":
        n_sections = draw(st.integers(1, min(4, T)))
        size = T // n_sections
        counts = [draw(st.integers(1, size)) for _ in range(n_sections)]
        return np.array(sorted(space_timesteps(T, counts)), dtype=np.int64)
    if how == "subset":
        seed = draw(st.integers(0, 2**32 - 1))
        pick = np.random.default_rng(seed).choice(T, size=n, replace=False)
        return np.sort(pick).astype(np.int64)
    return inference_timesteps(T, n, spacing=how)


def x_starts(
    *,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] = (4, 3),
    dtype: type | np.dtype = np.float64,
    bound: float = 1.0,
) -> st.SearchStrategy[np.ndarray]:
    """Data arrays x₀ with finite values in ``[−bound, bound]`` (images live in [−1, 1])."""
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_WIDTHS:
        raise ValueError(f"dtype must be float16, float32 or float64, got {dtype}")
    el = st.floats(-bound, bound, width=_FLOAT_WIDTHS[dtype], allow_subnormal=False)
    return hnp.arrays(dtype, shape, elements=el)


_FLOAT_WIDTHS: dict[np.dtype, Literal[16, 32, 64]] = {
    np.dtype(np.float16): 16,
    np.dtype(np.float32): 32,
    np.dtype(np.float64): 64,
}


@st.composite
def noises(
    draw: st.DrawFn,
    *,
    shape: tuple[int, ...] = (4, 3),
    dtype: type | np.dtype = np.float64,
) -> np.ndarray:
    """Standard-normal noise of the given shape, from a drawn seed (realistic magnitudes,
    including the occasional |z| > 3, which bounded hypothesis floats rarely produce)."""
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
