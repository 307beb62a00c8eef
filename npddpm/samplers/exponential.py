r"""Exponential integrators on noise paths: DPM-Solver, DPM-Solver++ (and its SDE form) and
UniPC, float64 references called as described in :mod:`.solvers`.

Both integrate the probability-flow ODE in λ = log(α/σ) exactly in its linear part:
x_s = (σ_s/σ_t)x + σ_s∫e^λ x̂₀ dλ (data prediction) or x_s = (α_s/α_t)x − α_s∫e^{−λ} ε̂ dλ
(noise prediction), with x̂₀ or ε̂ expanded in λ (Lu et al. 2022, Eq. 3.4; 2022b, Eq. 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._checks import as_int, choose
from ..paths import NoisePath
from ._common import sharded
from ._singlestep import diffusers_groups, run_groups
from ._solver import SolverRun, finish

__all__ = ["dpm_solver", "unipc"]

Array = np.ndarray


# ------------------------------------------------------------------------ DPM-Solver


def _dpm_update(alg: str, x: Array, a_t: float, s_t: float, a_s: float, s_s: float, h: float,
                ms: list[Array], hs: list[float], d2_factor: float = 2.0,
                solver_type: str = "midpoint") -> Array:
    """One multistep update from (a_t, s_t) to (a_s, s_s), order len(ms) (1–3).

    ``ms``: model outputs (ε̂ for ``dpmsolver``, x̂₀ for ``dpmsolver++``), newest first;
    ``hs``: the λ gaps behind the current point, newest first (h₀ = λ_cur − λ_prev, …).
    diffusers' ``multistep_dpm_solver_{first,second,third}_order_update``, midpoint form
    (Lu et al. 2022b, Alg. 2 for 2M). ``d2_factor`` multiplies the D₂ term of order 3: 2 is
    the Taylor coefficient (D₂ = (D1₀ − D1₁)/(r₀ + r₁) ≈ h²x̂₀''/2 while the term needs
    h²x̂₀''), 1 what diffusers, k-diffusion and the authors' code use (see :func:`dpm_solver`)."""
    k = len(ms)
    m0 = ms[0]
    # data prediction integrates e^{λ} (ĥ = −h), noise prediction e^{−λ} (ĥ = h); with ĥ the
    # two updates have one form
    if alg == "dpmsolver++":
        hh, ratio, w = -h, s_s / s_t, a_s
    else:
        hh, ratio, w = h, a_s / a_t, s_s
    phi = math.expm1(hh)
    out = ratio * x - w * phi * m0
    if k == 2:
        d1 = (m0 - ms[1]) / (hs[0] / h)
        if solver_type == "heun":  # the Taylor form: the exact weight of a linear x̂₀(λ)
            out = out - w * (phi / hh - 1.0) * d1
        else:  # midpoint: ½ of the first-order weight
            out = out - 0.5 * w * phi * d1
    elif k == 3:
        r0, r1 = hs[0] / h, hs[1] / h
        d10, d11 = (m0 - ms[1]) / r0, (ms[1] - ms[2]) / r1
        d1 = d10 + r0 / (r0 + r1) * (d10 - d11)
        d2 = (d10 - d11) / (r0 + r1)
        out = out - w * (phi / hh - 1.0) * d1
        out = out - d2_factor * w * ((phi - hh) / (hh * hh) - 0.5) * d2
    return np.asarray(out)


def dpm_solver(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    order: int = 2,
    method: str = "multistep",
    algorithm: str = "dpmsolver++",
    spacing: Any = "log_snr",
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
    prediction: str | None = None,
    final: str = "zero",
    lower_order_final: bool = True,
    third_order: str = "taylor",
    solver_type: str = "midpoint",
    orders: Sequence[int] | str | None = None,
    interpolation: str = "log_alpha",
    seed: int = 0,
    row_offset: int = 0,
    client: Any = None,
    shard_size: int | None = None,
    noise: Array | None = None,
    backend: str = "numpy",
    return_trajectory: bool = False,
) -> Any:
    r"""DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2022b), orders 1–3.

    ``algorithm``:
      ``"dpmsolver"``      noise prediction, x_s = (α_s/α_t)x − σ_s(e^h − 1)ε̂ + …
                           (Lu et al. 2022, Eq. 3.7; Alg. 1 DPM-Solver-2, Alg. 2 DPM-Solver-3,
                           r₁ = ½ resp. r₁ = ⅓, r₂ = ⅔);
      ``"dpmsolver++"``    data prediction, x_s = (σ_s/σ_t)x − α_s(e^{−h} − 1)x̂₀ + …
                           (Lu et al. 2022b, Eq. 9; Alg. 1 = 2S, Alg. 2 = 2M; 3M and 3S as in
                           the authors' code);
      ``"sde-dpmsolver++"`` SDE-DPM-Solver++ (Lu et al. 2022b, App. B), multistep, orders
                           1–2: x_s = (σ_s/σ_t)e^{−h}x + α_s(1 − e^{−2h})(x̂₀ + ½D₁)
                           + σ_s√(1 − e^{−2h}) z.
                           Order 1 equals DDPM on the same chain (tested).
    ``method``: ``"multistep"`` (one model call per step; the first steps use the lower
    orders available; with ``lower_order_final`` and N < 15 the last step is first order and
    the one before at most second, diffusers' rule) or ``"singlestep"`` (each step calls the
    model ``order`` times at intermediate λ). Order 1 equals DDIM(η = 0) for both algorithms
    (tested). The step to σ = 0 (``final="zero"``) is x̂₀.

    ``third_order`` (multistep, order 3): ``"taylor"`` (default) weights the second divided
    difference D₂ = (D1₀ − D1₁)/(r₀ + r₁) ≈ h²x̂₀''/2 by 2·φ₃, which the Taylor expansion of the
    exponential integral requires (local error O(h⁴), global order 3); ``"diffusers"`` weights
    it by φ₃ as diffusers' ``multistep_dpm_solver_third_order_update``, k-diffusion's
    ``sample_dpmpp_3m_sde`` and the authors' ``multistep_dpm_solver_third_update`` do — local
    error O(h³), so that 3M converges at order 2 (measured: 2.2–2.3 on a mixture, N = 40…226,
    beside 3.1 with ``"taylor"``; docs/FINDINGS.md).

    ``solver_type`` (multistep order-2 updates, also 3M's second step): ``"midpoint"``
    (default; −½α_s(e^{−h} − 1)D₁, diffusers' default, k-diffusion's ``sample_dpmpp_2m``) or
    ``"heun"`` (α_s((e^{−h} − 1)/h + 1)D₁, the Taylor form: diffusers' ``solver_type="heun"``,
    the authors' ``"taylor"``, k-diffusion's ``sample_dpmpp_3m_sde`` warm-up step). Both are
    second order.

    ``orders`` (singlestep only): group the given levels instead of placing intermediate
    levels inside each step — a list of group lengths (1, 2 or 3, summing to the number of
    steps; a group of k calls the model at its k levels, see :mod:`._singlestep`), or
    ``"diffusers"`` for the groups of diffusers' ``DPMSolverSinglestepScheduler.get_order_list``
    with this ``order``, ``lower_order_final`` and ``final``. ``solver_type`` then also picks
    the second- and third-order forms (``"midpoint"``: diffusers' default).
    """
    if client is not None:
        return sharded(dpm_solver, dict(locals()))
    order = as_int(order, "order", minimum=1)
    if order > 3:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    method = choose(method, "method", ("multistep", "singlestep"))
    algorithm = choose(algorithm, "algorithm", ("dpmsolver", "dpmsolver++", "sde-dpmsolver++"))
    third_order = choose(third_order, "third_order", ("taylor", "diffusers"))
    solver_type = choose(solver_type, "solver_type", ("midpoint", "heun"))
    d2_factor = 2.0 if third_order == "taylor" else 1.0
    if orders is not None and method != "singlestep":
        raise ValueError("orders= groups the levels of method='singlestep'; omit it for multistep")
    if algorithm == "sde-dpmsolver++" and (method != "multistep" or order > 2):
        raise ValueError(
            "algorithm='sde-dpmsolver++' is multistep of order 1 or 2 (got "
            f"method={method!r}, order={order})"
        )
    run = SolverRun("dpm_solver", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing,
               prediction, final, seed, noise, backend, interpolation, rho, t_max, t_min,
               False, row_offset=row_offset)
    if algorithm == "dpmsolver" and run.alpha[0] <= 0:
        raise ValueError(
            "algorithm='dpmsolver' divides by α, which is 0 at t_max on this path; use "
            "algorithm='dpmsolver++' or start below it (t_max=…)"
        )
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    lam, A, S = run.lam, run.alpha, run.sigma
    N = run.n_steps
    use_eps = algorithm == "dpmsolver"
    if method == "multistep":
        ms: list[Array] = []
        for i in range(N):
            x0, eps = run.model(x, i)
            ms.insert(0, eps if use_eps else x0)
            ms = ms[:order]
            if run.zero_step(i):
                x = x0
            else:
                k = min(order, len(ms))
                if lower_order_final and N < 15:
                    k = min(k, N - i)
                hs = [float(lam[i - j] - lam[i - j - 1]) for j in range(k - 1)]
                h = float(lam[i + 1] - lam[i])
                if algorithm == "sde-dpmsolver++":
                    e2 = -math.expm1(-2.0 * h)
                    x = (S[i + 1] / S[i]) * math.exp(-h) * x + A[i + 1] * e2 * ms[0]
                    if k == 2:
                        x = x + 0.5 * A[i + 1] * e2 * (ms[0] - ms[1]) / (hs[0] / h)
                    x = x + S[i + 1] * math.sqrt(e2) * run.z(i + 1, x)
                else:
                    x = _dpm_update(algorithm, x, A[i], S[i], A[i + 1], S[i + 1], h, ms[:k], hs,
                                    d2_factor, solver_type)
            if traj is not None:
                traj.append(x.copy())
        return finish(run, x, traj, return_trajectory)
    if orders is not None:
        groups = (
            diffusers_groups(N, order, lower_order_final, run.final == "zero")
            if isinstance(orders, str) and orders == "diffusers"
            else _group_list(orders)
        )
        x = run_groups(run, x, groups, use_eps, solver_type, traj)
        return finish(run, x, traj, return_trajectory)
    p = run.path
    for i in range(N):
        x0, eps = run.model(x, i)
        if run.zero_step(i):
            x = x0
        else:
            h = float(lam[i + 1] - lam[i])
            x = _singlestep(run, p, use_eps, order, x, x0, eps, lam[i], A[i], S[i],
                            A[i + 1], S[i + 1], h)
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)


def _group_list(orders: Any) -> list[int]:
    if isinstance(orders, str):
        raise ValueError(f"orders must be 'diffusers' or a list of group lengths, got {orders!r}")
    try:
        return [as_int(k, "orders[i]", minimum=1) for k in orders]
    except TypeError:
        raise TypeError(
            f"orders must be 'diffusers' or a list of group lengths, got {orders!r:.60}"
        ) from None


def _singlestep(run: SolverRun, p: NoisePath, use_eps: bool, order: int, x: Array, x0: Array,
                eps: Array, lam_t: float, a_t: float, s_t: float, a_s: float, s_s: float,
                h: float) -> Array:
    """One singlestep DPM-Solver(++) step of ``order`` (Lu et al. 2022 Alg. 1–2; 2022b)."""
    if order == 1:
        return _dpm_update("dpmsolver" if use_eps else "dpmsolver++", x, a_t, s_t, a_s, s_s, h,
                           [eps if use_eps else x0], [])
    r1, r2 = (0.5, 1.0) if order == 2 else (1.0 / 3.0, 2.0 / 3.0)

    def level(r: float) -> tuple[float, float, float]:
        tr = float(p.t_of_lam(np.asarray(lam_t + r * h)))
        return tr, float(p.alpha(np.asarray(tr))), float(p.sigma(np.asarray(tr)))

    # as in _dpm_update: noise prediction integrates e^{−λ} (ĥ = h, weights σ, ratio of α),
    # data prediction e^{λ} (ĥ = −h, weights α, ratio of σ); one form serves both
    hh = h if use_eps else -h
    pick = 1 if use_eps else 0  # model_at returns (x̂₀, ε̂)

    def coefs(a: float, s: float) -> tuple[float, float]:
        return (a / a_t, s) if use_eps else (s / s_t, a)

    m = eps if use_eps else x0
    ratio, w = coefs(a_s, s_s)
    phi = math.expm1(hh)
    t1, a1, s1 = level(r1)
    ratio1, w1 = coefs(a1, s1)
    u1 = ratio1 * x - w1 * math.expm1(r1 * hh) * m
    d1 = run.model_at(u1, t1)[pick] - m
    if order == 2:
        return np.asarray(ratio * x - w * phi * m - w / (2.0 * r1) * phi * d1)
    t2, a2, s2 = level(r2)
    ratio2, w2 = coefs(a2, s2)
    phi2 = math.expm1(r2 * hh)
    u2 = ratio2 * x - w2 * phi2 * m - w2 * r2 / r1 * (phi2 / (r2 * hh) - 1.0) * d1
    d2 = run.model_at(u2, t2)[pick] - m
    return np.asarray(ratio * x - w * phi * m - w / r2 * (phi / hh - 1.0) * d2)


# --------------------------------------------------------------------------- UniPC


def _unipc_coefficients(order: int, h: float, rks: list[float], variant: str
                        ) -> tuple[float, float, Array, Array]:
    """(h_φ₁, B(h), R, b) of UniPC with data prediction (Zhao et al. 2023, Alg. 1 and
    App. C; diffusers ``multistep_uni_{p,c}_bh_update``)."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    fact = 1.0
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r = np.array([*rks, 1.0])
    R, b = [], []
    for i in range(1, order + 1):
        R.append(r ** (i - 1))
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    return h_phi_1, b_h, np.array(R), np.array(b)


def unipc(
    diffusion_or_path: Any,
    denoiser: Callable[..., Array],
    x_T_or_shape: Any,
    *,
    steps: int | None = None,
    order: int = 2,
    variant: str = "bh2",
    corrector: bool = True,
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
    r"""UniPC (Zhao et al. 2023): the multistep predictor UniP-p and corrector UniC, with data
    prediction and B(h) = h (``"bh1"``) or e^h − 1 (``"bh2"``, diffusers' default).

    Predictor (Alg. 1): x_s = (σ_s/σ_t)x − α_s h_φ₁ x̂₀ − α_s B(h) Σ_k ρ_k D_k with
    D_k = (x̂₀(t_k) − x̂₀(t))/r_k, r_k = (λ_{t_k} − λ_t)/h; ρ solves R ρ = b (ρ = ½ at order 2,
    as the authors' code). Corrector (Alg. 2): the same with the model at the predicted point
    added as r = 1, ρ from the full system; it reuses that model call (no extra evaluation) and
    is skipped after the last step. Order p with the predictor alone, p + 1 with the corrector.
    With ``lower_order_final`` the order never exceeds the number of steps left (diffusers).
    The step to σ = 0 is x̂₀. The first step is UniC after a first-order predictor (local
    error O(h³)), which caps UniPC-3's global order at 3 as N → ∞; measured on a mixture:
    4.1 on N = 40…226, 3.2 on N = 80…452 (tests/samplers/test_solver_orders.py)."""
    if client is not None:
        return sharded(unipc, dict(locals()))
    order = as_int(order, "order", minimum=1)
    if order > 3:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    variant = choose(variant, "variant", ("bh1", "bh2"))
    run = SolverRun("unipc", diffusion_or_path, denoiser, x_T_or_shape, steps, spacing, prediction,
               final, seed, None, backend, interpolation, rho, t_max, t_min, False,
               row_offset=row_offset)
    lam, A, S = run.lam, run.alpha, run.sigma
    N = run.n_steps
    x = run.x_T.copy()
    traj = [x.copy()] if return_trajectory else None
    hist: list[tuple[float, Array]] = [(float(lam[0]), run.model(x, 0)[0])]
    for i in range(N):
        if run.zero_step(i):
            x = hist[-1][1]
            if traj is not None:
                traj.append(x.copy())
            break
        k = min(order, len(hist))
        if lower_order_final:
            k = min(k, N - i)
        lam_t, m0 = hist[-1]
        h = float(lam[i + 1]) - lam_t
        rks = [(hist[-(j + 1)][0] - lam_t) / h for j in range(1, k)]
        d1s = [(hist[-(j + 1)][1] - m0) / rk for j, rk in zip(range(1, k), rks, strict=True)]
        h_phi_1, b_h, R, b = _unipc_coefficients(k, h, rks, variant)
        base = (S[i + 1] / S[i]) * x - A[i + 1] * h_phi_1 * m0
        x_pred = base
        if k >= 2:
            rhos_p = np.array([0.5]) if k == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
            x_pred = base - A[i + 1] * b_h * sum(r * d for r, d in zip(rhos_p, d1s, strict=True))
        if i + 1 < N:
            m_new = run.model(x_pred, i + 1)[0]
            if corrector:
                rhos_c = np.array([0.5]) if k == 1 else np.linalg.solve(R, b)
                corr = sum(r * d for r, d in zip(rhos_c[:-1], d1s, strict=True))
                corr = corr + rhos_c[-1] * (m_new - m0)
                x_pred = base - A[i + 1] * b_h * corr
            hist.append((float(lam[i + 1]), m_new))
            hist = hist[-order:]
        x = x_pred
        if traj is not None:
            traj.append(x.copy())
    return finish(run, x, traj, return_trajectory)
