r"""Singlestep DPM-Solver(++) on given levels: groups of steps whose interior levels are the
intermediate evaluation points (diffusers' ``DPMSolverSinglestepScheduler``).

A group of order k starts at level j with state x_j and model output m_a; it covers the k
intervals up to level j + k and calls the model at each of its k levels:

* k = 1: x_{j+1} = first-order update (DDIM) from j;
* k = 2: u = first-order update j → j+1, m_b = model(u); x_{j+2} = the second-order update
  from x_j with m_a, m_b and r = (λ_{j+1} − λ_j)/(λ_{j+2} − λ_j);
* k = 3: as k = 2 up to u₂ = second-order update j → j+2, m_c = model(u₂); x_{j+3} = the
  third-order update from x_j with m_a, m_b, m_c.

With D₁ = (m_b − m_a)/r (second order) and, for third order, r₀ = (λ_c − λ_a)/h,
r₁ = (λ_b − λ_a)/h, D1₀ = (m_b − m_a)/r₁, D1₁ = (m_c − m_a)/r₀,
D₁ = (r₀D1₀ − r₁D1₁)/(r₀ − r₁), D₂ = 2(D1₁ − D1₀)/(r₀ − r₁), and in the form shared by both
algorithms (data prediction: ĥ = −h, weights α, ratio σ_t/σ_a; noise prediction: ĥ = h,
weights σ, ratio α_t/α_a; φ = e^ĥ − 1):

* second order, ``"midpoint"``: x = ratio·x − wφ m_a − ½wφ D₁; ``"heun"``:
  x = ratio·x − wφ m_a − w(φ/ĥ − 1) D₁ (Lu et al. 2022b, Eq. 9 and App.; 2022 Alg. 1);
* third order, ``"midpoint"``: x = ratio·x − wφ m_a − w(φ/ĥ − 1) D1₁ (Lu et al. 2022, Alg. 2);
  ``"heun"``: x = ratio·x − wφ m_a − w(φ/ĥ − 1) D₁ − w((φ − ĥ)/ĥ² − ½) D₂.

These are the formulas of diffusers 0.42.1's ``singlestep_dpm_solver_second_order_update`` /
``…_third_order_update`` (checked against them by the conformance tests), derived here from the
exponential-integrator expansion, not copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["diffusers_groups", "group_lengths", "run_groups"]

Array = np.ndarray


def diffusers_groups(n: int, order: int, lower_order_final: bool, final_zero: bool) -> list[int]:
    """The group lengths of diffusers' ``get_order_list(n)`` for ``solver_order=order``: its
    per-step order list, where each 1 starts a group (and a final σ = 0 makes the last step
    first order). As diffusers' ``set_timesteps`` does on a fresh scheduler,
    ``lower_order_final`` is switched on when ``n`` is not a multiple of ``order`` or the final
    σ is 0 (diffusers writes the switch into the scheduler's config, so it persists for later
    ``set_timesteps`` calls on the same object)."""
    lower_order_final = lower_order_final or n % order != 0 or final_zero
    if lower_order_final:
        if order == 3:
            orders = ([1, 2, 3] * (n // 3 - 1) + [1, 2] + [1]) if n % 3 == 0 else (
                [1, 2, 3] * (n // 3) + ([1] if n % 3 == 1 else [1, 2]))
        elif order == 2:
            orders = [1, 2] * (n // 2 - 1) + [1, 1] if n % 2 == 0 else [1, 2] * (n // 2) + [1]
        else:
            orders = [1] * n
    else:
        orders = [1, 2, 3][:order] * (n // order)
    orders = orders[:n] if n > 0 else []
    if final_zero and orders:
        orders[-1] = 1
    return group_lengths(orders)


def group_lengths(step_orders: Sequence[int]) -> list[int]:
    """Group lengths from a per-step order list such as ``[1, 2, 1, 2, 1]`` → ``[2, 2, 1]``
    (each 1 starts a group; a group's k-th step has order k)."""
    groups: list[int] = []
    for k in step_orders:
        if k == 1 or not groups:
            groups.append(1)
        elif k == groups[-1] + 1:
            groups[-1] = k
        else:
            raise ValueError(
                f"a per-step order list must run 1, 2, 3 within a group, got {list(step_orders)}"
            )
    return groups


def _update(use_eps: bool, k: int, x: Array, ms: list[Array], lam: Array, A: Array, S: Array,
            a: int, t: int, solver_type: str) -> Array:
    """The order-k update from level a to level t with model outputs ``ms`` at levels a, a+1, …"""
    h = float(lam[t] - lam[a])
    hh = h if use_eps else -h
    ratio = A[t] / A[a] if use_eps else S[t] / S[a]
    w = S[t] if use_eps else A[t]
    phi = float(np.expm1(hh))
    out = ratio * x - w * phi * ms[0]
    if k == 1:
        return np.asarray(out)
    if k == 2:
        r = float(lam[a + 1] - lam[a]) / h
        d1 = (ms[1] - ms[0]) / r
        coef = 0.5 * phi if solver_type == "midpoint" else phi / hh - 1.0
        return np.asarray(out - w * coef * d1)
    r1, r0 = float(lam[a + 1] - lam[a]) / h, float(lam[a + 2] - lam[a]) / h
    d10, d11 = (ms[1] - ms[0]) / r1, (ms[2] - ms[0]) / r0
    if solver_type == "midpoint":
        return np.asarray(out - w * (phi / hh - 1.0) * d11)
    d1 = (r0 * d10 - r1 * d11) / (r0 - r1)
    d2 = 2.0 * (d11 - d10) / (r0 - r1)
    return np.asarray(out - w * (phi / hh - 1.0) * d1 - w * ((phi - hh) / hh**2 - 0.5) * d2)


def run_groups(run: Any, x: Array, groups: Sequence[int], use_eps: bool, solver_type: str,
               traj: list[Array] | None) -> Array:
    """The grouped singlestep loop over ``run``'s levels (a :class:`SolverRun`); ``traj``
    receives the state after every step (the intermediate states u inside a group)."""
    lam, A, S = run.lam, run.alpha, run.sigma
    if sum(groups) != run.n_steps or any(k not in (1, 2, 3) for k in groups):
        raise ValueError(
            f"orders must be group lengths of 1, 2 or 3 summing to the {run.n_steps} steps, got "
            f"{list(groups)}"
        )
    j = 0
    for k in groups:
        ms: list[Array] = []
        u = x
        for stage in range(k):
            x0, eps = run.model(u, j + stage)
            ms.append(eps if use_eps else x0)
            if run.zero_step(j + stage):  # the step to σ = 0 is x̂₀ (a group of one)
                u = x0
            else:
                u = _update(use_eps, stage + 1, x, ms, lam, A, S, j, j + stage + 1, solver_type)
            if traj is not None:
                traj.append(u.copy())
        x = u
        j += k
    return x
