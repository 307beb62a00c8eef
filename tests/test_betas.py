"""Bad parameters of the named beta schedules are a ValueError naming the parameter."""

import pytest

from npddpm.schedules import get_named_beta_schedule


@pytest.mark.parametrize("s", [-1.0, -0.5, float("nan"), float("inf")])
def test_cosine_offset_must_be_finite_and_non_negative(s):
    with pytest.raises(ValueError, match=r"s must be a finite offset >= 0.*default s=0.008"):
        get_named_beta_schedule("cosine", 1000, s=s)


@pytest.mark.parametrize("s", ["0.008", True, None])
def test_cosine_offset_must_be_a_real_number(s):
    with pytest.raises(ValueError, match="s must be a real number"):
        get_named_beta_schedule("cosine", 1000, s=s)


def test_cosine_offset_zero_and_default_still_work():
    assert get_named_beta_schedule("cosine", 100, s=0).shape == (100,)
    assert get_named_beta_schedule("cosine", 100, s=0.008).shape == (100,)
