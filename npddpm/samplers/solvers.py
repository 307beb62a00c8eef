r"""ODE and SDE solvers on noise paths: the samplers people use, as float64 references.

This module has the Karras family (Euler, Heun, Euler ancestral, LMS) and flow Euler;
:mod:`.exponential` has the exponential integrators (DPM-Solver(++), UniPC). All share
this convention:

Every solver is called as

``solver(diffusion_or_path, denoiser, x_T_or_shape, *, steps, spacing=…, prediction=None,
final="zero", seed=0, noise=None, backend="numpy", return_trajectory=False, …)``

* ``diffusion_or_path``: a :class:`npddpm.GaussianDiffusion` (its schedule made continuous,
  :class:`npddpm.paths.DiscreteVP` with ``interpolation``; ``prediction`` defaults to its
  ``mean_type``) or any :mod:`npddpm.paths` path (``prediction`` default ``"eps"``).
* ``denoiser(x_t, t) -> model_output``: ``t`` one path time per row — for a discrete
  schedule, the original timestep, passed as an int64 array when every step lands on an
  integer (an explicit integer ``spacing``), as float64 otherwise.
* ``steps`` N and ``spacing`` (:data:`npddpm.spacing.NOISE_SPACINGS`, or an explicit array of
  N + 1 decreasing path times, when ``steps`` may be omitted); ``rho``, ``t_max``, ``t_min``
  go to :func:`npddpm.spacing.noise_levels`.
* ``final="zero"`` (default) appends the data level σ = 0 and ends with the first-order step
  there, x = x̂₀ (k-diffusion's and diffusers' appended σ = 0; the higher-order updates are
  undefined at h = ∞). ``final="min"`` stops at ``t_min``: what the probability-flow map to
  ``t_min`` is compared with (:func:`npddpm.conformance.convergence_order`).
* x_T from a shape: ``√(α² + σ²)(t_max)·z``, z = :func:`step_noise` ``(seed, 0, …)``
  (N(0, I) on a VP path). Step i (from 1) of a stochastic solver uses ``noise[i − 1]`` when
  ``noise`` (shape ``(N_steps, *shape)``) is given, otherwise ``step_noise(seed, i, …)`` —
  the numbering of :func:`npddpm.samplers.ddpm`, so on the same chain the same seed gives the
  same noise.
* Only ``backend="numpy"`` (the references); the fused kernels cover DDPM/DDIM.
* Returns x (float64, x_T's shape), or ``(x, trajectory)`` with the state at every level.

In the formulas, h = λ_next − λ_cur with λ = log(α/σ); σ̃ = σ/α is the VE (Karras) level and
x̃ = x/α the VE-scaled state; x̂₀, ε̂ are the model's output converted at (α, σ)
(:func:`npddpm.paths.to_x0_eps`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import as_int
from ..paths import FlowMatching, as_path, flow_shift
from ..spacing import noise_levels
from ._common import sharded
from ._solver import SolverRun, finish, ve_level

__all__ = ["euler", "euler_ancestral", "flow_euler", "heun", "lms"]

Array = np.ndarray


# --------------------------------------------------------------------- Karras family


def euler(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    spacing: Any = "karras",
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    interpolation: str = "log_alpha",
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""Euler on the probability-flow ODE in σ̃ (Karras et al. 2022, Eq. 6 and Alg. 1 without
    the correction; k-diffusion ``sample_euler``):

    x̃_{i+1} = x̃_i + (σ̃_{i+1} − σ̃_i)·(x̃_i − x̂₀)/σ̃_i, x = α x̃. Order 1. Equal to DDIM(η = 0)
    on the same levels (tested)."""
    if client is not None:
        return sharded(euler, dict(locals()))
    run = SolverRun("euler", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing, prediction,
               final, seed, None, backend, interpolation, rho, t_max, t_min, True,
               row_offset=row_offset)
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    for i in range(run.n_steps):
        x0, _ = run.model(x, i)
        s_cur, s_next = ve_level(run, i), ve_level(run, i + 1)
        xt = x / run.alpha[i]
        xt = xt + (s_next - s_cur) * (xt - x0) / s_cur
        x = run.alpha[i + 1] * xt
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)


def heun(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    spacing: Any = "karras",
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    interpolation: str = "log_alpha",
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    noise: Array | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""Heun's 2nd-order method (Karras et al. 2022, Alg. 1), with the churn of Alg. 2.

    Churn (``s_churn > 0``): for σ̃_i in [s_tmin, s_tmax], γ = min(s_churn/N, √2 − 1),
    σ̂ = σ̃_i(1 + γ), x̃ ← x̃ + √(σ̂² − σ̃_i²)·s_noise·z, then the Heun step from σ̂. The
    correction is skipped on the step to σ̃ = 0 (Euler there, as Alg. 1). Order 2 (ODE)."""
    if client is not None:
        return sharded(heun, dict(locals()))
    for v, nm in ((s_churn, "s_churn"), (s_noise, "s_noise")):
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{nm} must be a finite number ≥ 0, got {v!r}")
    run = SolverRun("heun", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing, prediction,
               final, seed, noise, backend, interpolation, rho, t_max, t_min, True,
               row_offset=row_offset)
    p = run.path
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    gamma_max = min(s_churn / run.n_steps, math.sqrt(2.0) - 1.0)
    for i in range(run.n_steps):
        s_cur, s_next = ve_level(run, i), ve_level(run, i + 1)
        xt = x / run.alpha[i]
        gamma = gamma_max if s_tmin <= s_cur <= s_tmax else 0.0
        if gamma > 0:
            s_hat = s_cur * (1.0 + gamma)
            xt = xt + math.sqrt(s_hat * s_hat - s_cur * s_cur) * s_noise * run.z(i + 1, x)
            t_hat = float(p.t_of_sigma_ve(np.asarray(s_hat)))
            if not p.contains(np.asarray([t_hat])):
                raise ValueError(
                    f"heun: the churned level σ̂ = {s_hat:g} lies beyond the path's t_max; "
                    "lower s_churn or set s_tmax below σ̃(t_max)"
                )
            a_hat = float(p.alpha(np.asarray(t_hat)))
            x0, _ = run.model_at(a_hat * xt, t_hat)
        else:
            s_hat = s_cur
            x0, _ = run.model(x, i)
        d = (xt - x0) / s_hat
        xn = xt + (s_next - s_hat) * d
        if s_next > 0:
            x0n, _ = run.model(run.alpha[i + 1] * xn, i + 1)
            d2 = (xn - x0n) / s_next
            xn = xt + (s_next - s_hat) * 0.5 * (d + d2)
        x = run.alpha[i + 1] * xn
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)


def euler_ancestral(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    spacing: Any = "karras",
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    interpolation: str = "log_alpha",
    eta: float = 1.0,
    s_noise: float = 1.0,
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    noise: Array | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""Euler ancestral (k-diffusion ``sample_euler_ancestral``, ``get_ancestral_step``):

    σ_up = min(σ̃_{i+1}, η·√(σ̃_{i+1}²(σ̃_i² − σ̃_{i+1}²)/σ̃_i²)), σ_down = √(σ̃_{i+1}² − σ_up²);
    x̃ ← x̃ + (σ_down − σ̃_i)(x̃ − x̂₀)/σ̃_i + σ_up·s_noise·z. With η = 1 each step samples the
    exact posterior q(x_{i+1} | x_i, x̂₀), so it equals DDPM on the same chain (tested)."""
    if client is not None:
        return sharded(euler_ancestral, dict(locals()))
    if not (0.0 <= eta and math.isfinite(eta)):
        raise ValueError(f"eta must be a finite number ≥ 0, got {eta!r}")
    run = SolverRun("euler_ancestral", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing,
               prediction, final, seed, noise, backend, interpolation, rho, t_max, t_min, True,
               row_offset=row_offset)
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    for i in range(run.n_steps):
        x0, _ = run.model(x, i)
        s_cur, s_next = ve_level(run, i), ve_level(run, i + 1)
        up = min(s_next, eta * math.sqrt(s_next**2 * (s_cur**2 - s_next**2) / s_cur**2))
        down = math.sqrt(s_next**2 - up**2)
        xt = x / run.alpha[i]
        xt = xt + (down - s_cur) * (xt - x0) / s_cur
        if s_next > 0:
            xt = xt + up * s_noise * run.z(i + 1, x)
        x = run.alpha[i + 1] * xt
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)


def _lms_coefficient(nodes: Array, a: float, b: float, j: int) -> float:
    """∫_a^b of the j-th Lagrange basis polynomial on ``nodes`` (exact polynomial integral)."""
    others = np.delete(nodes, j)
    poly = np.poly1d(np.poly(others)) / float(np.prod(nodes[j] - others))
    integral = np.polyint(poly)
    return float(integral(b) - integral(a))


def lms(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    spacing: Any = "karras",
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    interpolation: str = "log_alpha",
    order: int = 4,
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""Linear multistep in σ̃ (k-diffusion ``sample_lms``): the derivative
    d = (x̃ − x̂₀)/σ̃ at the last min(i + 1, order) levels, interpolated by a polynomial in σ̃
    and integrated exactly over [σ̃_i, σ̃_{i+1}] (Adams–Bashforth on the non-uniform grid;
    k-diffusion integrates with ``scipy.integrate.quad``). On the step to σ̃ = 0 it integrates
    the same polynomial (as k-diffusion)."""
    if client is not None:
        return sharded(lms, dict(locals()))
    order = as_int(order, "order", minimum=1)
    run = SolverRun("lms", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing, prediction,
               final, seed, None, backend, interpolation, rho, t_max, t_min, True,
               row_offset=row_offset)
    ve = np.array([ve_level(run, i) for i in range(run.n_steps + 1)])
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    ds: list[Array] = []
    for i in range(run.n_steps):
        x0, _ = run.model(x, i)
        xt = x / run.alpha[i]
        ds.append((xt - x0) / ve[i])
        ds = ds[-order:]
        k = len(ds)
        nodes = ve[i - k + 1 : i + 1][::-1]  # σ̃_i, σ̃_{i−1}, …
        for j in range(k):
            xt = xt + _lms_coefficient(nodes, ve[i], ve[i + 1], j) * ds[-(j + 1)]
        x = run.alpha[i + 1] * xt
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)


# --------------------------------------------------------------------- flow matching


def flow_euler(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    spacing: Any = "time_uniform",
    shift: float | None = None,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""Euler on the velocity of the path: x_{i+1} = x_i + (t_{i+1} − t_i)·û with
    û = α′(t)x̂₀ + σ′(t)ε̂ (for flow matching û = ε̂ − x̂₀; diffusers
    ``FlowMatchEulerDiscreteScheduler.step``). ``prediction`` defaults to ``"flow"``.

    ``shift`` (flow paths only) maps the spaced times through :func:`npddpm.paths.flow_shift`
    (SD3's static shift). ``final="zero"`` needs a flow path (the data is t = 0). On any path
    the step equals DDIM(η = 0) on the same levels: x_{i+1} = α_{i+1}x̂₀ + σ_{i+1}ε̂ holds for
    the linear flow path exactly (tested)."""
    if client is not None:
        return sharded(flow_euler, dict(locals()))
    path = as_path(diffusion_or_path)
    is_flow = isinstance(path, FlowMatching)
    if final == "zero" and not is_flow:
        raise ValueError(
            "flow_euler with final='zero' needs a FlowMatching path (t = 0 is the data); use "
            "final='min' on other paths"
        )
    if shift is not None:
        if not is_flow:
            raise ValueError("shift= applies to a FlowMatching path's σ only")
        if isinstance(spacing, str):
            spacing = flow_shift(
                noise_levels(path, as_int(steps, "steps", minimum=1), spacing, t_max=t_max,
                             t_min=t_min),
                shift,
            )
            steps = None
        else:
            spacing = flow_shift(np.asarray(spacing, dtype=np.float64), shift)
    run = SolverRun("flow_euler", path, denoiser, x_T_or_shape, steps, spacing,
               prediction or "flow", final, seed, None, backend, "log_alpha", 7.0, t_max,
               t_min, False, row_offset=row_offset)
    times = np.append(run.times, 0.0) if run.final == "zero" else run.times
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    for i in range(run.n_steps):
        x0, eps = run.model(x, i)
        t = np.asarray(times[i])
        u = float(path.dalpha(t)) * x0 + float(path.dsigma(t)) * eps
        x = x + (times[i + 1] - times[i]) * u
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)
