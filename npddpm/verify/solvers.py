r"""Verification rows for the ODE/SDE solvers (:mod:`npddpm.samplers.solvers`,
:mod:`npddpm.samplers.exponential`) and the exact flow map.

``identity``
    Deterministic: each first-order solver on DDIM's 20-step chain equals DDIM(η = 0), and the
    ancestral ones equal DDPM with the same seed (limit :data:`DETERMINISTIC_TOL`).
``order``
    Each solver's order of convergence against the exact probability-flow map on
    two-component mixture data (VP-linear path, ε model, log-SNR steps; value =
    |measured − theoretical|, limit 0.3; :func:`npddpm.conformance.convergence_order`).
    Deterministic (fixed points).
``flow map``
    The mixture reference solve on a mixture of two equal components (one Gaussian) against
    the closed form: value = its error, limit its own stated error.
``solver moments``
    The exact output law of Euler ancestral (:func:`npddpm.analytic.solver_moments`) against
    DDPM's moment recursion on the same chain (limit :data:`DETERMINISTIC_TOL`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..analytic import GaussianMixture, flow_map, sampler_moments, solver_moments
from ..diffusion import GaussianDiffusion
from ..paths import VPLinear
from ..samplers import (
    ddim,
    ddpm,
    deis,
    dpm_solver,
    euler,
    euler_ancestral,
    heun,
    lms,
    unipc,
)
from ..schedules import Schedule, space_timesteps
from .common import DETERMINISTIC_TOL, Row

__all__ = ["ORDER_CASES", "ORDER_MARGIN", "solver_rows"]

#: The margin on a measured order (the tests' margin, tests/samplers/test_solver_orders.py).
ORDER_MARGIN = 0.3

#: (label, solver, options, theoretical order).
ORDER_CASES: tuple[tuple[str, Callable[..., Any], dict[str, Any], int], ...] = (
    ("euler", euler, {}, 1),
    ("heun", heun, {}, 2),
    ("lms(order=2)", lms, {"order": 2}, 2),
    ("dpm_solver++ 2M", dpm_solver, {"order": 2}, 2),
    ("dpm_solver++ 3M", dpm_solver, {"order": 3}, 3),
    ("dpm_solver 2M", dpm_solver, {"order": 2, "algorithm": "dpmsolver"}, 2),
    ("dpm_solver++ 2S", dpm_solver, {"order": 2, "method": "singlestep"}, 2),
    ("dpm_solver 3S", dpm_solver, {"order": 3, "method": "singlestep",
                                   "algorithm": "dpmsolver"}, 3),
    ("unipc(order=2)", unipc, {"order": 2}, 3),
    ("unip(order=2)", unipc, {"order": 2, "corrector": False}, 2),
    ("deis(order=2)", deis, {"order": 2}, 2),
    ("deis(order=3)", deis, {"order": 3}, 3),
    ("dpm_solver++ 2S (diffusers groups)", dpm_solver,
     {"order": 2, "method": "singlestep", "orders": "diffusers"}, 2),
)

_MIX = GaussianMixture([0.3, 0.7], [[1.0, -1.0], [-1.0, 0.5]], [[0.2, 0.1], [0.3, 0.05]])
_GAUSS = GaussianMixture([1.0], [[0.5, -1.0]], [[[2.0, 0.3], [0.3, 0.5]]])


def _row(check: str, data: str, schedule: str, sampler: str, metric: str, value: float,
         limit: float, note: str = "") -> Row:
    return Row(check, data, schedule, sampler, "-", metric, float(value), float(limit),
               bool(value <= limit), note)


def solver_rows(*, quick: bool = False) -> list[Row]:
    """The solver rows (see the module docstring); ``quick``: fewer orders and step counts."""
    from ..conformance.convergence import convergence_order

    rows: list[Row] = []
    s = Schedule.from_name("linear", 1000)
    chain = sorted(space_timesteps(1000, "ddim20"))
    times = np.array(chain[::-1], dtype=np.float64)
    small = GaussianDiffusion(s.respace(chain))
    full = GaussianDiffusion(s)
    x = np.random.default_rng(0).standard_normal((16, 2))
    ref = ddim(small, _GAUSS.denoiser(small), x, clip_denoised=False)
    first: tuple[tuple[str, Callable[..., Any], dict[str, Any]], ...] = (
        ("euler", euler, {}),
        ("dpm_solver++ 1", dpm_solver, {"order": 1}),
        ("dpm_solver 1", dpm_solver, {"order": 1, "algorithm": "dpmsolver"}),
        ("unip(order=1)", unipc, {"order": 1, "corrector": False}),
    )
    for label, fn, kw in first:
        out = fn(full, _GAUSS.denoiser(full), x, spacing=times, **kw)
        rows.append(_row("identity", "gaussian 2-D", "linear ddim20", label,
                         "max |x − DDIM(η=0)|", np.max(np.abs(out - ref)), DETERMINISTIC_TOL))
    ref = ddpm(small, _GAUSS.denoiser(small), x, clip_denoised=False, seed=5)
    ancestral: tuple[tuple[str, Callable[..., Any], dict[str, Any]], ...] = (
        ("euler_ancestral", euler_ancestral, {}),
        ("sde-dpm_solver++ 1", dpm_solver, {"order": 1, "algorithm": "sde-dpmsolver++"}),
    )
    for label, fn, kw in ancestral:
        out = fn(full, _GAUSS.denoiser(full), x, spacing=times, seed=5, **kw)
        rows.append(_row("identity", "gaussian 2-D", "linear ddim20", label,
                         "max |x − DDPM| (same noise)", np.max(np.abs(out - ref)),
                         DETERMINISTIC_TOL))
    m_ref = sampler_moments(_GAUSS, small, sampler="ddpm")
    m = solver_moments(euler_ancestral, full, _GAUSS, spacing=times)
    err = max(np.max(np.abs(m.mean - m_ref.mean)), np.max(np.abs(m.covariance - m_ref.covariance)))
    rows.append(_row("solver moments", "gaussian 2-D", "linear ddim20", "euler_ancestral",
                     "max |moments − DDPM's|", err, DETERMINISTIC_TOL))
    path = VPLinear()
    twin = GaussianMixture([0.5, 0.5], [[0.5, -1.0]] * 2, [[[2.0, 0.3], [0.3, 0.5]]] * 2)
    exact = flow_map(_GAUSS, path, x, 1.0, 1e-3)
    got, stated = flow_map(twin, path, x, 1.0, 1e-3, return_error=True)
    rows.append(_row("flow map", "gaussian as 2 components", "vp_linear", "reference solve",
                     "max |solve − closed form|", np.max(np.abs(got - exact)), stated,
                     f"stated error {stated:.1e}"))
    steps = (80, 160, 320) if quick else (80, 113, 160, 226, 320, 452)
    cases = ORDER_CASES[:3] if quick else ORDER_CASES
    for label, fn, kw, claimed in cases:
        r = convergence_order(fn, path, _MIX, steps=steps, n=16, **kw)
        rows.append(_row("order", "mixture 2-D", "vp_linear", label,
                         f"|order − {claimed}|", abs(r.order - claimed), ORDER_MARGIN,
                         f"order {r.order:.2f} ± {r.stderr:.2f} (N = {steps[0]}…{steps[-1]})"))
    return rows
