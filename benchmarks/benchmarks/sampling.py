"""Whole sampling loops through :mod:`npddpm.samplers`: DDPM ancestral sampling and DDIM
(η = 0) over 10 respaced steps of a 1000-step linear schedule, float32, with a denoiser that
costs one pass over the batch (``ε_θ = 0.1·x_t``), so the time is the sampler's own: the
step kernels (``numpy``: the NumPy expressions and the reference generator; ``cpu``/``cuda``:
the fused kernels with in-kernel noise), the per-step checks and coefficient gathers, and for
``cuda`` the host-device copies of each step (the samplers work on host arrays).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from . import common

STEPS = 10


def _denoiser(x, t):
    return np.multiply(x, np.asarray(0.1, x.dtype))


class Sample:
    params: ClassVar[list] = [["ddpm", "ddim"], [100_000, 1_000_000], common.BACKENDS]
    param_names: ClassVar[list] = ["sampler", "n", "backend"]
    timeout = 300

    def setup(self, sampler, n, backend):
        common.require(backend, n)
        from npddpm import GaussianDiffusion, Schedule, samplers

        diffusion = GaussianDiffusion(Schedule.from_name("linear", 1000))
        self.diffusion = diffusion.respace(list(range(0, 1000, 1000 // STEPS)))
        self.sampler = getattr(samplers, sampler)
        self.x_T = common.arrays(n, "float32", 1)[0]
        self.backend = backend
        self.time_sample(sampler, n, backend)  # compile / load from cache: not timed

    def time_sample(self, sampler, n, backend):
        self.sampler(self.diffusion, _denoiser, self.x_T, seed=1, backend=self.backend)
