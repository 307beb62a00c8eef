"""Progress bars (npddpm._progress): they never change a result; auto (None) is silent when
stderr is not a terminal (as under pytest's capture)."""

from __future__ import annotations

import numpy as np

from npddpm import GaussianDiffusion, Schedule, losses, samplers
from npddpm.spacing import space_timesteps


def _zero(x, t):
    return np.zeros_like(x)


def test_sampling_progress_changes_nothing_and_auto_is_quiet(capsys):
    d = GaussianDiffusion(Schedule.from_name("linear", 1000).respace(space_timesteps(1000, "20")))
    quiet = samplers.ddpm(d, _zero, (4, 2), seed=3, progress=False)
    assert capsys.readouterr().err == ""
    auto = samplers.ddpm(d, _zero, (4, 2), seed=3, progress=None)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    shown = samplers.ddpm(d, _zero, (4, 2), seed=3, progress=True)
    assert "ddpm" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet, auto)
    np.testing.assert_array_equal(quiet, shown)


def test_nll_progress_changes_nothing(capsys):
    d = GaussianDiffusion(Schedule.from_name("linear", 1000).respace(space_timesteps(1000, "10")))
    x = np.random.default_rng(0).standard_normal((5, 2))
    a = losses.calc_bpd_loop(d, _zero, x, decoder="gaussian", clip_denoised=False)
    b = losses.calc_bpd_loop(d, _zero, x, decoder="gaussian", clip_denoised=False, progress=True)
    assert "nll" in capsys.readouterr().err
    np.testing.assert_array_equal(a["total_bpd"], b["total_bpd"])
