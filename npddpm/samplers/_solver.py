"""The state of one solver call, shared by :mod:`.solvers` and :mod:`.exponential`: the path,
its levels, the model evaluations and the noise, checked once. Private to
:mod:`npddpm.samplers`; the calling convention is documented in :mod:`.solvers`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._checks import as_int, choose, sample_shape
from ..diffusion import GaussianDiffusion
from ..paths import PREDICTIONS, NoisePath, as_path, to_x0_eps
from ..spacing import NOISE_SPACINGS, noise_levels
from ._common import check_row_offset, step_noise

__all__ = ["SolverRun", "finish", "ve_level"]

Array = np.ndarray


class SolverRun:
    """One solver call: the path, the levels, the model and the noise (checked once)."""

    def __init__(
        self,
        name: str,
        target: Any,
        denoiser: Any,
        x_T_or_shape: Any,
        steps: Any,
        spacing: Any,
        prediction: str | None,
        final: str,
        seed: int,
        noise: Any,
        backend: str,
        interpolation: str,
        rho: float,
        t_max: float | None,
        t_min: float | None,
        need_finite_ve: bool,
        row_offset: int = 0,
    ) -> None:
        self.name = name
        self.row_offset = check_row_offset(row_offset)
        if backend != "numpy":
            raise ValueError(
                f"{name}: backend={backend!r} is not available for the solvers (they are "
                "float64 NumPy references); use backend='numpy'"
            )
        if not callable(denoiser):
            raise TypeError("denoiser must be callable as denoiser(x_t, t) -> model_output")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.path: NoisePath = as_path(target, interpolation)
        if prediction is None:
            prediction = target.mean_type if isinstance(target, GaussianDiffusion) else "eps"
            if prediction == "x_prev":
                raise ValueError(
                    f"{name}: a model predicting the posterior mean (mean_type='x_prev') has "
                    "no x̂₀ at a continuous level; pass prediction= for what it predicts"
                )
        self.prediction = choose(prediction, "prediction", PREDICTIONS)
        self.final = choose(final, "final", ("zero", "min"))
        self.seed = int(seed)
        self.denoiser = denoiser
        if isinstance(spacing, str):
            spacing = choose(spacing, "spacing", NOISE_SPACINGS)
            if steps is None:
                raise ValueError(f"{name}: steps= (the number of steps N) is required")
            times = noise_levels(self.path, steps, spacing, rho=rho, t_max=t_max, t_min=t_min)
        else:
            times = np.asarray(spacing, dtype=np.float64)
            if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) >= 0):
                raise ValueError(
                    "spacing as an array must be 1-D, at least 2 path times, strictly "
                    f"decreasing (noisiest first); got {np.asarray(spacing)!r:.80}"
                )
            if steps is not None and as_int(steps, "steps", minimum=1) != times.size - 1:
                raise ValueError(
                    f"steps={steps} but spacing gives {times.size - 1} steps; omit steps"
                )
            if not self.path.contains(times):
                raise ValueError(
                    f"spacing has times outside the path's [{self.path.t_min:g}, "
                    f"{self.path.t_max:g}]"
                )
        self.times = times
        # a discrete schedule's denoiser gets int64 timesteps when every step is on one
        self.integer_times = self.path.name == "discrete_vp" and bool(
            np.all(times == np.round(times))
        )
        a, s = self.path.alpha(times), self.path.sigma(times)
        if need_finite_ve and np.any(a <= 0):
            raise ValueError(
                f"{name} steps in σ̃ = σ/α, which is infinite where α = 0 (t_max = "
                f"{times[0]:g} on this path); start below it (t_max=…) or use flow_euler / "
                "dpm_solver(algorithm='dpmsolver++') / unipc"
            )
        if self.final == "zero":
            a, s = np.append(a, 1.0), np.append(s, 0.0)
        self.alpha, self.sigma = a, s
        with np.errstate(divide="ignore"):
            self.lam = np.log(a) - np.log(s)
        self.n_steps = a.size - 1
        x = self._initial(x_T_or_shape)
        self.x_T = x
        self.noise = None
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float64)
            if noise.shape != (self.n_steps, *x.shape):
                raise ValueError(
                    f"noise must have shape (steps, *x_T.shape) = {(self.n_steps, *x.shape)} "
                    f"(noise[i] is used by step i + 1), got {noise.shape}"
                )
            self.noise = noise
        self.nfe = 0

    def _initial(self, x_T_or_shape: Any) -> Array:
        if isinstance(x_T_or_shape, np.ndarray):
            x = np.array(x_T_or_shape, dtype=np.float64)
            if x.ndim < 2 or x.shape[0] < 1:
                raise ValueError(f"x_T must have shape (B, ...) with B ≥ 1, got {x.shape}")
            return x
        shape = sample_shape(x_T_or_shape)
        scale = math.sqrt(float(self.alpha[0]) ** 2 + float(self.sigma[0]) ** 2)
        return scale * step_noise(self.seed, 0, shape, np.dtype(np.float64), self.row_offset)

    def z(self, i: int, like: Array) -> Array:
        """Standard normal noise for step i (from 1)."""
        if self.noise is not None:
            return self.noise[i - 1]
        return step_noise(self.seed, i, like.shape, np.dtype(np.float64), self.row_offset)

    def model_at(self, x: Array, t: float) -> tuple[Array, Array]:
        """(x̂₀, ε̂) of the model at x, path time t."""
        p = self.path
        B = x.shape[0]
        tt: Array
        if self.integer_times:
            tt = np.full(B, round(float(t)), dtype=np.int64)
        else:
            tt = np.full(B, float(t))
        out = np.asarray(self.denoiser(x, tt), dtype=np.float64)
        if out.shape != x.shape:
            raise ValueError(
                f"{self.name}: the denoiser returned shape {out.shape} for x of shape "
                f"{x.shape} (the solvers take one prediction per element)"
            )
        self.nfe += 1
        ta = np.asarray(float(t))
        a, s = float(p.alpha(ta)), float(p.sigma(ta))
        da = ds = None
        if self.prediction == "flow":
            da, ds = float(p.dalpha(ta)), float(p.dsigma(ta))
        x0, eps = to_x0_eps(self.prediction, out, x, a, s, da, ds)  # type: ignore[arg-type]
        return np.asarray(x0), np.asarray(eps)

    def model(self, x: Array, i: int) -> tuple[Array, Array]:
        return self.model_at(x, float(self.times[i]))

    def zero_step(self, i: int) -> bool:
        """Whether the step from level i goes to the appended data level."""
        return self.final == "zero" and i == self.n_steps - 1


def finish(run: SolverRun, x: Array, traj: list[Array] | None, return_trajectory: bool) -> Any:
    if return_trajectory:
        return x, np.stack(traj or [])
    return x


def ve_level(run: SolverRun, i: int) -> float:
    return 0.0 if run.sigma[i] == 0.0 else float(run.sigma[i] / run.alpha[i])
