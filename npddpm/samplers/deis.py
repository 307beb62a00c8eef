r"""DEIS (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator",
ICLR; the ρAB-DEIS / "log-ρ" multistep variant of diffusers' ``DEISMultistepScheduler``).

In the VE-scaled state x̃ = x/α and the level ρ = σ/α = σ̃ the probability-flow ODE is
dx̃/dρ = ε̂(x̃, ρ). A step from ρ_i to ρ_{i+1} interpolates the last k noise predictions
ε̂_i, ε̂_{i−1}, … by the Lagrange polynomial in u = log ρ through their nodes and integrates it
exactly:

.. math::
    x̃_{i+1} = x̃_i + \sum_{j<k} ε̂_{i−j} \int_{ρ_i}^{ρ_{i+1}} L_j(\log ρ)\,dρ,
    \qquad \int p(u)\,e^u\,du = e^u \sum_{m \ge 0} (−1)^m p^{(m)}(u),

the antiderivative of a polynomial times e^u (so the integral to ρ = 0 is finite too). Here it
is evaluated with :mod:`numpy.polynomial` algebra, not with hand-expanded coefficients.
Order k = 1 is DDIM(η = 0). The first steps use the orders available (k grows 1, 2, 3) and,
with ``lower_order_final`` and N < 15, the last step is first order and the one before at most
second (diffusers' rule). Local error O(h^{k+1}): global order k (measured in the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.polynomial import polynomial as P

from .._checks import as_int
from ._common import sharded
from ._solver import SolverRun, finish, ve_level

__all__ = ["deis", "deis_coefficients"]

Array = np.ndarray


def deis_coefficients(rho_nodes: Array, rho_from: float, rho_to: float) -> Array:
    r"""``[∫_{ρ_from}^{ρ_to} L_j(log ρ) dρ for j]`` for the Lagrange basis L_j in u = log ρ on
    the nodes ``log rho_nodes`` (newest first). ``rho_to`` may be 0."""
    u = np.log(np.asarray(rho_nodes, dtype=np.float64))
    out = np.empty(u.size)
    for j in range(u.size):
        basis: Array = np.array([1.0])
        for m in range(u.size):
            if m != j:
                basis = P.polymul(basis, np.array([-u[m], 1.0]) / (u[j] - u[m]))
        q: Array = np.zeros(1)  # q = L − L' + L'' − …: ∫ L(u) e^u du = e^u q(u)
        term, sign = basis, 1.0
        while term.size and np.any(term):
            q = P.polyadd(q, sign * term)
            term, sign = P.polyder(term), -sign

        def F(rho: float, q: Array = q) -> float:
            return 0.0 if rho == 0.0 else rho * float(P.polyval(np.log(rho), q))

        out[j] = F(rho_to) - F(rho_from)
    return out


def deis(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    order: int = 3,
    spacing: Any = "log_snr",
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    lower_order_final: bool = True,
    interpolation: str = "log_alpha",
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""DEIS multistep in log ρ, orders 1–3 (see the module docstring); called as every solver
    (:mod:`npddpm.samplers.solvers`). The step to σ = 0 (``final="zero"``) is x̂₀."""
    if client is not None:
        return sharded(deis, dict(locals()))
    order = as_int(order, "order", minimum=1)
    if order > 3:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    run = SolverRun("deis", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing,
                    prediction, final, seed, None, backend, interpolation, rho, t_max, t_min,
                    True, row_offset=row_offset)  # fmt: skip
    N = run.n_steps
    levels = np.array([ve_level(run, i) for i in range(N + 1)])
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    eps_hist: list[Array] = []
    for i in range(N):
        x0, eps = run.model(x, i)
        eps_hist.insert(0, eps)
        eps_hist = eps_hist[:order]
        if run.zero_step(i):
            x = x0
        else:
            k = min(order, len(eps_hist))
            if lower_order_final and N < 15:
                k = min(k, N - i)
            c = deis_coefficients(levels[i - np.arange(k)], float(levels[i]), float(levels[i + 1]))
            xt = x / run.alpha[i] + sum(cj * e for cj, e in zip(c, eps_hist[:k], strict=False))
            x = run.alpha[i + 1] * xt
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)
