"""The shared validators of :mod:`npddpm._checks`: what each accepts (and returns), what it
rejects, and that every message names the argument, says what was expected and, where a
mechanical fix exists, how to fix it.

Deterministic: Hypothesis draws the examples (the ``ci`` profile is derandomized).
"""

import re
import string

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npddpm import _checks
from npddpm._checks import as_int, as_real_1d, as_timesteps, choose

NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)


def raises_naming(exc, name, *fragments):
    """``pytest.raises`` whose message must contain ``name`` and every fragment (literal)."""
    return pytest.raises(exc, match="(?s)" + ".*".join(re.escape(f) for f in (name, *fragments)))


# --- as_int --------------------------------------------------------------------------------


@given(st.integers(-(2**62), 2**62), NAMES)
def test_as_int_accepts_integers_and_returns_a_python_int(v, name):
    for value in (v, np.int64(v)):
        out = as_int(value, name)
        assert out == v and type(out) is int
    assert as_int(np.int8(3), name) == 3 and as_int(np.uint16(7), name) == 7


@pytest.mark.parametrize("bad", [True, False, np.bool_(True), 2.0, np.float64(3.0), "4", None, [1]])
def test_as_int_rejects_non_integers_naming_the_argument(bad):
    with raises_naming(TypeError, "n_steps", "must be an integer, got"):
        as_int(bad, "n_steps")


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), NAMES)
def test_as_int_minimum(v, minimum, name):
    if v >= minimum:
        assert as_int(v, name, minimum=minimum) == v
    else:
        with raises_naming(ValueError, name, f"must be >= {minimum}, got {v}"):
            as_int(v, name, minimum=minimum)


# --- as_real_1d ----------------------------------------------------------------------------


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20))
def test_as_real_1d_returns_a_fresh_float64_copy(values):
    src = np.array(values, dtype=np.float64)
    out = as_real_1d(src, "betas")
    assert out.dtype == np.float64 and out.ndim == 1
    assert np.array_equal(out, src)
    assert out is not src and not np.shares_memory(out, src)  # a fresh copy
    assert np.array_equal(as_real_1d(values, "betas"), src)  # lists are accepted too


def test_as_real_1d_accepts_integer_and_float32_input():
    assert as_real_1d(np.arange(3, dtype=np.int32), "x").dtype == np.float64
    assert as_real_1d(np.ones(2, dtype=np.float32), "x").dtype == np.float64
    assert as_real_1d([], "x").shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [np.array([True, False]), np.array([1 + 2j]), np.array(["a"]), np.array([None])],
    ids=["bool", "complex", "str", "object"],
)
def test_as_real_1d_rejects_non_real_dtypes(bad):
    with raises_naming(TypeError, "betas", "must be an array of real numbers", "pass a float"):
        as_real_1d(bad, "betas")


@pytest.mark.parametrize("shape", [(), (2, 3), (1, 1, 1)])
def test_as_real_1d_rejects_other_shapes(shape):
    with raises_naming(ValueError, "betas", "must be 1-D", str(shape), "pass a flat array"):
        as_real_1d(np.zeros(shape), "betas")


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20),
    st.data(),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_as_real_1d_names_the_first_non_finite_entry(values, data, bad):
    i = data.draw(st.integers(0, len(values) - 1))
    arr = np.array(values)
    arr[i:] = bad  # the first non-finite entry is at i
    with raises_naming(ValueError, "betas", "must be finite", f"betas[{i}] = {bad}"):
        as_real_1d(arr, "betas")


# --- as_timesteps --------------------------------------------------------------------------


@given(st.integers(1, 2000), st.data())
def test_as_timesteps_sorts_sets_and_keeps_increasing_sequences(T, data):
    use = data.draw(st.sets(st.integers(0, T - 1), min_size=1, max_size=50))
    want = np.array(sorted(use), dtype=np.int64)
    for value in (use, frozenset(use), sorted(use), tuple(sorted(use)), want.astype(np.int32)):
        out = as_timesteps(value, "use_timesteps", T)
        assert out.dtype == np.int64 and np.array_equal(out, want)


@given(st.integers(2, 500), st.data())
def test_as_timesteps_rejects_unsorted_sequences_with_the_fix(T, data):
    use = data.draw(st.lists(st.integers(0, T - 1), min_size=2, max_size=30, unique=True))
    use = sorted(use, reverse=True)  # strictly decreasing, no duplicates
    with raises_naming(
        ValueError, "use_timesteps", "must be strictly increasing", "pass sorted(use_timesteps)"
    ):
        as_timesteps(use, "use_timesteps", T)


def test_as_timesteps_names_a_duplicate_and_says_remove_it():
    with raises_naming(ValueError, "ts", "contains the timestep 4 more than once", "remove"):
        as_timesteps([1, 4, 4, 7], "ts", 10)


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ([0, 10], ("must lie in [0, 9]", "from 0 to 10")),
        ([-1, 3], ("must lie in [0, 9]", "from -1 to 3")),
        ([], ("must be a non-empty 1-D sequence of integers", "(0,)")),
        (np.zeros((2, 2), dtype=int), ("must be a non-empty 1-D sequence", "(2, 2)")),
    ],
)
def test_as_timesteps_range_and_shape_errors(values, fragments):
    with raises_naming(ValueError, "ts", *fragments):
        as_timesteps(values, "ts", 10)


@pytest.mark.parametrize("values", [[0.0, 1.0], np.array([True, False]), ["a", "b"]])
def test_as_timesteps_rejects_non_integer_dtypes(values):
    with raises_naming(TypeError, "ts", "must hold integers, got dtype"):
        as_timesteps(values, "ts", 10)


# --- choose ----------------------------------------------------------------------------------


@given(st.lists(NAMES, min_size=1, max_size=6, unique=True), st.data(), NAMES)
def test_choose_returns_a_listed_option_and_lists_them_otherwise(options, data, name):
    pick = data.draw(st.sampled_from(options))
    assert choose(pick, name, options) == pick
    assert choose(pick, name, iter(options)) == pick  # any iterable of options
    other = max(options, key=len) + "_"  # longer than every option: not one of them
    with raises_naming(ValueError, name, repr(other), "expected one of: " + ", ".join(options)):
        choose(other, name, options)


@pytest.mark.parametrize("bad", [None, 1, b"eps", ["eps"]])
def test_choose_rejects_non_strings(bad):
    with raises_naming(ValueError, "mean_type", repr(bad), "expected one of: eps, x0"):
        choose(bad, "mean_type", ("eps", "x0"))


# --- batch and timestep validators (where this version of _checks has them) -----------------

needs_batch = pytest.mark.skipif(
    not hasattr(_checks, "check_batch"), reason="npddpm._checks has no check_batch"
)
needs_timesteps = pytest.mark.skipif(
    not hasattr(_checks, "check_timesteps"), reason="npddpm._checks has no check_timesteps"
)


@needs_batch
def test_check_batch_accepts_floating_batches_and_rejects_the_rest():
    x = np.zeros((3, 2), dtype=np.float32)
    assert _checks.check_batch(x, "x0") is x
    assert _checks.check_batch(x, "noise", like=x) is x
    with raises_naming(TypeError, "x0", "floating-point"):
        _checks.check_batch(np.zeros((3, 2), dtype=int), "x0")
    with raises_naming(ValueError, "x0", "batch axis", "(2,)", "x0[None]"):
        _checks.check_batch(np.zeros(2), "x0")
    with raises_naming(ValueError, "noise", "(3, 3)", "(3, 2)"):
        _checks.check_batch(np.zeros((3, 3), dtype=np.float32), "noise", like=x)
    with raises_naming(TypeError, "noise", "float64", "float32"):
        _checks.check_batch(np.zeros((3, 2)), "noise", like=x)


@needs_timesteps
@given(st.integers(1, 50), st.integers(1, 1000), st.data())
def test_check_timesteps_broadcasts_scalars_and_checks_shape_and_range(batch, T, data):
    t = data.draw(st.integers(0, T - 1))
    out = _checks.check_timesteps(t, batch, T)
    assert out.dtype == np.int64 and out.shape == (batch,) and np.all(out == t)
    ts = np.full(batch, t, dtype=np.int32)
    assert np.array_equal(_checks.check_timesteps(ts, batch, T), ts)
    with raises_naming(ValueError, "t", f"shape ({batch},)", f"({batch + 1},)"):
        _checks.check_timesteps(np.zeros(batch + 1, dtype=int), batch, T)
    with raises_naming(ValueError, "t", f"[0, {T - 1}]", f"to {T}"):
        _checks.check_timesteps(np.full(batch, T), batch, T)
    with raises_naming(TypeError, "t"):
        _checks.check_timesteps(np.full(batch, 0.0), batch, T)
    with raises_naming(TypeError, "t"):
        _checks.check_timesteps(np.full(batch, True), batch, T)


@given(st.lists(st.integers(1, 9), min_size=2, max_size=4))
def test_sample_shape_takes_int_shapes_and_names_the_fix(shape):
    assert _checks.sample_shape(shape) == tuple(shape)
    assert _checks.sample_shape(np.array(shape)) == tuple(shape)  # numpy ints too
    with raises_naming(ValueError, "shape", "(B, ...)", str(tuple(shape[:1]))):
        _checks.sample_shape(shape[:1])
    with raises_naming(ValueError, "shape", "positive"):
        _checks.sample_shape([0, *shape[1:]])
    with raises_naming(TypeError, "x_T_or_shape", "shape tuple of ints"):
        _checks.sample_shape(3)
    with raises_naming(TypeError, "x_T_or_shape", "'a'"):
        _checks.sample_shape(["a", 2])


# --- coverage of this file -------------------------------------------------------------------

TESTED = {
    "as_int",
    "as_real_1d",
    "as_timesteps",
    "choose",
    "check_batch",
    "check_timesteps",
    "sample_shape",
}


def test_every_public_validator_is_tested_here():
    untested = set(_checks.__all__) - TESTED
    assert not untested, f"add tests to tests/test_checks.py for {sorted(untested)}"
