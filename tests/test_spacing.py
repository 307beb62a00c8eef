"""Timestep spacing tables against independent re-implementations of the published rules
(improved-diffusion ``respace.py``; diffusers ``set_timesteps``), written here in plain
Python without NumPy, and against published counts of diffusers' spacing quirks."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from npddpm.schedules import diffusers_timesteps, inference_timesteps, space_timesteps

TS = (1000, 4000)
NS = (1, 2, 3, 10, 21, 50, 61, 100, 103, 250)


# --- independent re-implementations ----------------------------------------------------


def id_sections(T: int, counts: list[int]) -> set[int]:
    """improved-diffusion section rule: float stride accumulated by repeated addition,
    Python round (half to even)."""
    n = len(counts)
    sizes = [T // n + (1 if i < T % n else 0) for i in range(n)]
    starts = [0, *itertools.accumulate(sizes)]
    out: set[int] = set()
    for start, size, count in zip(starts, sizes, counts, strict=False):
        if size < count:
            raise ValueError
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        positions = itertools.accumulate([0.0] + [stride] * (count - 1)) if count else []
        out.update(start + round(p) for p in positions)
    return out


def id_ddim(T: int, N: int) -> set[int] | None:
    """Smallest integer stride i in [1, T) with ceil(T / i) == N, else None."""
    for i in range(1, T):
        if -(-T // i) == N:
            return set(range(0, T, i))
    return None


def hf_linspace(T: int, N: int) -> list[int]:
    # numpy.linspace(0, T−1, N): y_k = k·((T−1)/(N−1)), last element set to T−1 exactly.
    if N == 1:
        return [0]
    step = (T - 1) / (N - 1)
    ys = [k * step for k in range(N - 1)] + [float(T - 1)]
    return [round(y) for y in reversed(ys)]


def hf_leading(T: int, N: int, offset: int) -> list[int]:
    return [k * (T // N) + offset for k in reversed(range(N))]


def hf_trailing(T: int, N: int) -> list[int]:
    # numpy.arange(T, 0, −T/N): length ceil((0 − T)/(−T/N)) in float; numpy fills
    # y_i = T + i·d with d = (T + step) − T, the step as represented after one addition.
    step = -(T / N)
    n = math.ceil((0 - T) / step)
    d = (T + step) - T
    return [round(T + i * d) - 1 for i in range(n)]


# --- improved-diffusion ----------------------------------------------------------------


@pytest.mark.parametrize("T", TS)
def test_space_timesteps_single_section(T):
    for N in (*NS, T - 1, T):
        assert space_timesteps(T, str(N)) == id_sections(T, [N])
        assert space_timesteps(T, [N]) == id_sections(T, [N])


@given(st.integers(1, 4000), st.data())
@example(T=1000, data=None)
def test_space_timesteps_sections(T, data):
    if data is None:  # the multi-section example from the improved-diffusion docstring
        counts = [10, 15, 20]
    else:
        n = data.draw(st.integers(1, min(5, T)))
        counts = [data.draw(st.integers(0, T // n + 1)) for _ in range(n)]
    if sum(counts) == 0:  # improved-diffusion returns set(); npddpm refuses an empty respacing
        with pytest.raises(ValueError, match="keep no timestep"):
            space_timesteps(T, counts)
        return
    try:
        expected = id_sections(T, counts)
    except ValueError:
        with pytest.raises(ValueError, match="cannot divide"):
            space_timesteps(T, counts)
        return
    assert space_timesteps(T, ",".join(map(str, counts))) == expected


@pytest.mark.parametrize("T", TS)
def test_space_timesteps_ddim(T):
    for N in range(1, 300):
        expected = id_ddim(T, N)
        if expected is None:
            with pytest.raises(ValueError, match="integer stride"):
                space_timesteps(T, f"ddim{N}")
        else:
            assert space_timesteps(T, f"ddim{N}") == expected


def test_published_spacing_counts_T1000():
    """Published counts of the spacing quirks (T = 1000, N ∈ [2, 1000])."""
    T = 1000
    differ = sum(
        sorted(space_timesteps(T, str(N)), reverse=True)
        != diffusers_timesteps(T, N, "linspace").tolist()
        for N in range(2, T + 1)
    )
    assert differ == 278  # ID "N" vs HF linspace differ at .5 ties, e.g. N = 21
    assert 499 in space_timesteps(T, "21") and 500 in diffusers_timesteps(T, 21, "linspace")
    raises = 0
    for N in range(2, T + 1):
        try:
            space_timesteps(T, f"ddim{N}")
        except ValueError:
            raises += 1
    assert raises == 937
    assert space_timesteps(T, "ddim3") == {0, 334, 668}
    for N in (10, 50, 100, 250):  # ddimN equals HF leading (offset 0) where it exists
        assert sorted(space_timesteps(T, f"ddim{N}")) == sorted(
            diffusers_timesteps(T, N, "leading")
        )
    overshoot = [N for N in range(1, T + 1) if len(diffusers_timesteps(T, N, "trailing")) > N]
    assert len(overshoot) == 62 and 61 in overshoot and 103 in overshoot


# --- diffusers --------------------------------------------------------------------------


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("offset", [0, 1])
def test_diffusers_timesteps_against_reimplementation(T, offset):
    for N in (*NS, T - 1, T):
        got = {
            s: diffusers_timesteps(T, N, s, steps_offset=offset)
            for s in ("linspace", "leading", "trailing")
        }
        for arr in got.values():
            assert arr.dtype == np.int64
        assert got["linspace"].tolist() == hf_linspace(T, N)
        assert got["leading"].tolist() == hf_leading(T, N, offset)
        assert got["trailing"].tolist() == hf_trailing(T, N)


@given(st.integers(1, 4000), st.data())
def test_diffusers_timesteps_any_T_N(T, data):
    N = data.draw(st.integers(1, T))
    assert diffusers_timesteps(T, N, "linspace").tolist() == hf_linspace(T, N)
    assert diffusers_timesteps(T, N, "trailing").tolist() == hf_trailing(T, N)
    lead = diffusers_timesteps(T, N, "leading")
    assert lead.tolist() == hf_leading(T, N, 0)
    # the documented flaw: leading reaches T−1 only when T // N · (N−1) = T−1
    assert (lead[0] == T - 1) == ((T // N) * (N - 1) == T - 1)


def test_diffusers_quirks():
    assert diffusers_timesteps(1000, 1000, "leading", steps_offset=1)[0] == 1000  # HF #10003
    assert diffusers_timesteps(1000, 50, "leading")[0] == 980
    with pytest.raises(ValueError, match="cannot be larger"):
        diffusers_timesteps(10, 11, "linspace")


# --- npddpm's own spacing -----------------------------------------------------------------


@given(st.integers(1, 4000), st.data())
def test_inference_timesteps_invariants(T, data):
    N = data.draw(st.integers(1, T))
    for spacing in ("trailing", "linspace", "leading"):
        ts = inference_timesteps(T, N, spacing)
        assert ts.size == N and ts.dtype == np.int64
        assert np.all(np.diff(ts) > 0) and 0 <= ts[0] and ts[-1] <= T - 1
    tr = inference_timesteps(T, N, "trailing")
    # exact rational rule T − 1 − floor(kT/N), checked with Fractions
    assert sorted(tr.tolist()) == sorted(T - 1 - math.floor(Fraction(k * T, N)) for k in range(N))
    li = inference_timesteps(T, N, "linspace").tolist()
    if N > 1:
        assert li == [math.floor(Fraction(k * (T - 1), N - 1) + Fraction(1, 2)) for k in range(N)]


@pytest.mark.parametrize("counts", ["0", "0,0", [0], [0, 0, 0]])
def test_section_counts_that_keep_no_step_are_refused(counts):
    with pytest.raises(ValueError, match=r"keep no timestep.*give a positive count"):
        space_timesteps(1000, counts)


@pytest.mark.parametrize("counts", ["-3", [5, -1]])
def test_negative_section_counts_are_refused(counts):
    with pytest.raises(ValueError, match=r"non-negative.*give a count per section"):
        space_timesteps(1000, counts)


def test_a_zero_section_inside_a_respacing_is_improved_diffusions():
    assert space_timesteps(30, "2,0,2") == {0, 9, 20, 29}
