"""The public strategies produce only valid input, of the promised shapes and dtypes."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npddpm.schedules import Schedule
from npddpm.testing import strategies as nst


@given(nst.betas(min_T=1, max_T=4000))
def test_betas_are_valid_and_alpha_bar_in_range(b):
    s = Schedule(b)
    assert 1e-12 * 0.99 <= s.alphas_cumprod[-1] <= 0.998


@given(nst.schedules(respaced=True, max_T=500), st.data())
def test_schedules_timesteps_respacings(s, data):
    assert isinstance(s, Schedule)
    t = data.draw(nst.timesteps(s))
    assert t.dtype == np.int64 and t.min() >= 0 and t.max() < s.num_timesteps
    use = data.draw(nst.respacings(s.num_timesteps))
    assert np.all(np.diff(use) > 0) and use[0] >= 0 and use[-1] < s.num_timesteps


@given(nst.x_starts(shape=(3, 5), dtype=np.float32), nst.noises(shape=(3, 5)))
def test_arrays(x, z):
    assert x.shape == z.shape == (3, 5) and x.dtype == np.float32 and z.dtype == np.float64
    assert np.all(np.abs(x) <= 1) and np.all(np.isfinite(z))


def test_names_at_small_T():
    assert "linear" not in nst.schedule_names_at(19) and "linear" in nst.schedule_names_at(20)
