r"""Check someone's ODE/SDE solver scheduler: its schedule contract, agreement with npddpm's
reference of the method it claims to be, and its measured order against the exact flow map.

A :class:`SolverAdapter` wraps a scheduler with diffusers' interface (``set_timesteps(N)``,
``timesteps``, ``sigmas``, ``step_index``, ``scale_model_input``, ``step(out, t, x)``);
:class:`DiffusersSolverAdapter` reads the claim (method, options, order) off a diffusers
scheduler's class and config. :func:`check_solver` returns a :class:`~.report.Report`:

``contract``  for N = 1 … ``n_max``: ``set_timesteps`` does not raise; exactly the documented
              number of timesteps (Heun: 2N − 1); the distinct timesteps strictly decrease;
              the last σ is 0 (or σ_min where configured); at every step the σ the step uses
              is the σ of the timestep the model is given (within 1e-3 relative, either
              interpolation between the table's integers); the whole loop runs and ends finite.
              A violation lists the N and a one-line reproduction.
``agreement`` the final output of the scheduler's loop (on failure, the first step whose state
              already differs; for diffusers' schedulers also with a float32 state,
              ``agreement (float32)``, against the same tolerance), driven by the exact model of
              single-Gaussian data, against npddpm's reference of the claimed method run on the
              scheduler's own noise levels (:mod:`npddpm.samplers`), for N in ``agree_steps``.
              Tolerance 16·eps₃₂·N·s with s = max(1, σ̃_max) (the VE-scaled schedulers carry
              x̃ = x/α of that size in float32): float32 σ tables round at 6e-8 relative per
              step; measured ≤ 1.2e-6 (VP) and 2.4e-5 (VE, s = 157) at N = 20, against
              tolerances 3.8e-5 and 6e-3. Where the claimed reference disagrees but a named
              variant agrees, the row names it (a fault with its source).
``law``       (stochastic schedulers) the output's mean and covariance from x_T ~ q against the
              exact law of npddpm's reference on the scheduler's levels, n = 20,000,
              P(false failure) ≤ 3e-6 (:func:`_law_row`); and on mixture data against a
              sample of the reference, two-sample KS on 4 projections, P(false failure) ≤ 1e-4
              (``law (mixture)``).
``order``     the RMS error against the exact flow map (one Gaussian: exact to any level,
              also σ = 0) for N in ``order_steps``, the fitted slope beside the claimed order.
              Measured below claimed − 0.3 is a FAIL (one-Gaussian data may converge *faster*
              than a method's order, never slower, so this direction discriminates).

Every model call is the oracle at the σ the scheduler uses for that call
(``sigmas[step_index]``), so a scheduler whose timestep disagrees with its σ is caught by the
contract and not blamed on the solver algebra.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analytic import GaussianMixture, flow_map
from ..paths import VE, FlowMatching
from .convergence import fit_order
from .report import Report, Row
from .solver_adapters import (
    DiffusersSolverAdapter,
    KarrasLoopAdapter,
    SolverAdapter,
    SolverClaim,
)

__all__ = ["check_solver"]

Array = np.ndarray
EPS32 = float(np.finfo(np.float32).eps)
GAUSS = GaussianMixture([1.0], [[0.5, -1.0]], [[[2.0, 0.3], [0.3, 0.5]]])
ORDER_MARGIN = 0.3


# ------------------------------------------------------------------------------ checks


def _contract_rows(adapter: SolverAdapter, n_max: int) -> list[Row]:
    claim = adapter.claim
    bad: dict[str, list[int]] = {k: [] for k in (
        "set_timesteps", "count", "monotone", "final level", "timestep↔σ", "levels", "loop")}
    first_error: dict[str, str] = {}
    x = np.array([[0.3, -0.2], [1.0, 0.5]])
    for n in range(1, n_max + 1):
        try:
            ts, sig, s = adapter.levels(n)
        except Exception as exc:
            bad["set_timesteps"].append(n)
            first_error.setdefault("set_timesteps", f"{type(exc).__name__}: {exc}"[:120])
            continue
        if ts.size != claim.count(n) or sig.size != ts.size + 1:
            bad["count"].append(n)
        distinct = ts[np.concatenate([[True], np.diff(ts) != 0])]
        if distinct.size != n or np.any(np.diff(distinct) >= 0):
            bad["monotone"].append(n)
        want_last = adapter.final_level(s)
        mismatch = adapter.sigma_mismatch(ts, sig, s)
        if mismatch is not None and mismatch > 1e-3:
            bad["timestep↔σ"].append(n)
        if claim.levels is not None and sig.size == n + 1:
            # the σ list (stored in float32) against its documentation: 1e-5 relative is
            # ~100 float32 ulp, 300x below a shift applied twice (3e-3 at N = 2, s = 3)
            want = claim.levels(n)
            dev = float(np.max(np.abs(sig[:-1] - want) / want))
            if dev > 1e-5:
                bad["levels"].append(n)
                first_error.setdefault("levels", f"N={n}: up to {dev:.2g} relative, "
                                       f"last level {float(sig[-2]):.5g} vs {float(want[-1]):.5g}")
        last = float(sig[min(ts.size, sig.size - 1)])  # where the loop ends
        if not math.isclose(last, want_last, rel_tol=1e-5, abs_tol=1e-7):
            bad["final level"].append(n)
        try:
            out, _ = adapter.run(n, GAUSS, x)
            if not np.all(np.isfinite(out)):
                raise FloatingPointError("non-finite output")
        except Exception as exc:
            bad["loop"].append(n)
            first_error.setdefault("loop", f"{type(exc).__name__}: {exc}"[:120])
    rows = []
    what = {
        "set_timesteps": "set_timesteps(N) raises",
        "count": "not the documented number of timesteps, or not one σ more than timesteps",
        "monotone": "distinct timesteps not N strictly decreasing",
        "final level": f"the loop does not end at the configured final level ({claim.final})",
        "timestep↔σ": "the model is given a timestep whose σ is not the σ the step uses",
        "levels": "the σ list is not the documented one",
        "loop": "the loop with the exact model raises or ends non-finite",
    }
    for key, ns in bad.items():
        if key == "levels" and claim.levels is None:
            continue  # no documented σ list to check against
        if ns:
            shown = ", ".join(map(str, ns[:8])) + (" …" if len(ns) > 8 else "")
            repro = f"s = {adapter.name.removeprefix('diffusers ')}; s.set_timesteps({ns[0]})"
            diag = what[key] + (f" ({first_error[key]})" if key in first_error else "")
            rows.append(Row(f"contract: {key}", f"N={shown}", math.nan, math.nan, math.inf,
                            "FAIL", diag, "", f"repro: {repro}"))
        else:
            rows.append(Row(f"contract: {key}", f"N=1…{n_max}", 0.0, 0.0, 0.0, "ok"))
    return rows


def _levels(claim: SolverClaim, sig: Array) -> tuple[Array, str]:
    """The distinct levels of a scheduler's σ list for npddpm's solvers, and their ``final``
    (``"zero"``: the list ends at σ = 0, which the solvers append themselves)."""
    final = "zero" if sig[-1] == 0.0 else "min"
    levels = sig[:-1] if final == "zero" else sig
    if claim.interleaved:  # [σ0, σ1, σ1, …, 0]: the distinct levels
        levels = np.concatenate([[sig[0]], sig[1:-1:2]])
    return levels, final


def _repeated_level(claim: SolverClaim, sig: Array) -> bool:
    """Whether the distinct levels of ``sig`` repeat one (npddpm's solvers refuse a list that
    is not strictly decreasing, e.g. DEIS with Karras σ appending σ_min twice)."""
    return bool(np.any(np.diff(_levels(claim, sig)[0]) >= 0))


def _reference(adapter: SolverAdapter, name: str | None, kwargs: dict[str, Any], sig: Array,
               x_T: Array, trajectory: bool = False) -> Any:
    """npddpm's solver ``name`` with ``kwargs`` on the scheduler's own levels (with
    ``trajectory``: the VP-scale state after each step, a list)."""
    from .. import samplers

    fn = getattr(samplers, name or "")
    levels, final = _levels(adapter.claim, sig)
    if adapter.flow:
        fp = FlowMatching(t_min=float(min(levels[-1], 1e-3)), t_max=1.0)
        oracle = GAUSS.denoiser(fp, prediction="flow")
        if trajectory:
            traj = fn(fp, oracle, x_T, spacing=levels, final=final, return_trajectory=True,
                      **kwargs)[1]
            return [np.asarray(v) for v in traj[1:]]
        return np.asarray(fn(fp, oracle, x_T, spacing=levels, final=final, **kwargs))
    vp = VE(float(levels[-1]), float(levels[0]))
    oracle = GAUSS.denoiser(vp, prediction="eps")
    a0 = 1.0 / math.sqrt(1.0 + float(levels[0]) ** 2)
    if trajectory:
        traj = fn(vp, oracle, x_T / a0, spacing=levels, final=final, prediction="eps",
                  return_trajectory=True, **kwargs)[1]
        after = np.append(levels, 0.0)[1:] if final == "zero" else levels[1:]
        return [np.asarray(v) / math.sqrt(1.0 + float(lv) ** 2)
                for v, lv in zip(traj[1:], after, strict=True)]
    out = np.asarray(fn(vp, oracle, x_T / a0, spacing=levels, final=final, prediction="eps",
                        **kwargs))
    # back to the VP scale at the final level (α = 1 at σ = 0)
    return out if final == "zero" else out / math.sqrt(1.0 + float(levels[-1]) ** 2)


def _first_divergence(adapter: SolverAdapter, claim: SolverClaim, n: int, sig: Array,
                      x_T: Array, tol: float) -> str | None:
    """"step k of N (σ̃ a → b)": the first step after which the scheduler's state and the
    reference's differ by more than the tolerance of k steps; None where the scheduler's
    steps are not one per level (Heun), its loop is opaque, or its state after a call is not
    yet final (UniPC applies the corrector of step k at the start of call k + 1)."""
    corrected = claim.reference == "unipc" and claim.kwargs.get("corrector", True)
    if claim.interleaved or corrected or isinstance(adapter, KarrasLoopAdapter):
        return None
    states: list[Array] = []
    adapter.run(n, GAUSS, x_T, record=states)
    ref = _reference(adapter, claim.reference, claim.kwargs, sig, x_T, trajectory=True)
    if len(states) != len(ref):
        return None
    for k, (a, b) in enumerate(zip(states, ref, strict=True)):
        if np.max(np.abs(a - b)) > tol * (k + 1) / n:
            return f"step {k + 1} of {n} (σ̃ {float(sig[k]):.4g} → {float(sig[k + 1]):.4g})"
    return None


def _yardstick_kwargs(adapter: SolverAdapter) -> tuple[str, dict[str, Any]] | None:
    """npddpm's solver whose order on the scheduler's own levels shows what those levels allow:
    the claimed reference, or DPM-Solver++ multistep of the claimed order."""
    claim = adapter.claim
    if claim.reference is not None:
        return claim.reference, claim.kwargs
    if claim.order is None or adapter.flow:
        return None
    return "dpm_solver", {"order": int(min(max(claim.order, 1), 3))}


def _yardstick_name(adapter: SolverAdapter) -> str:
    ref = _yardstick_kwargs(adapter)
    if ref is None:
        return "reference"
    name, kw = ref
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"


def _yardstick(adapter: SolverAdapter, sig: Array, x_T: Array) -> Array | None:
    ref = _yardstick_kwargs(adapter)
    if ref is None or _repeated_level(adapter.claim, sig):
        return None  # no claim, or a repeated level that npddpm's solvers refuse
    name, kw = ref
    return _reference(adapter, name, kw, sig, x_T)


def _state_scale(adapter: SolverAdapter, sig: Array) -> float:
    """The size of the state the scheduler carries in float32: σ̃_max for the VE-scaled."""
    return max(1.0, float(sig[0])) if adapter.ve_scaled(adapter.make()) else 1.0


def _exact(adapter: SolverAdapter, x_T: Array, sig: Array) -> Array:
    """The exact flow map from the first level to where the loop ends, in the VP scale."""
    first = float(sig[0])
    last = None if sig[-1] == 0.0 else float(sig[-1])
    if adapter.flow:
        return np.asarray(flow_map(GAUSS, FlowMatching(), x_T, first, last))
    a0 = 1.0 / math.sqrt(1.0 + first * first)  # VP x ↔ VE x̃ = x/α; at σ = 0 both are x₀
    exact = np.asarray(flow_map(GAUSS, VE(1e-4, 1e6), x_T / a0, first, last))
    return exact if last is None else exact / math.sqrt(1.0 + last * last)


def _start(adapter: SolverAdapter, sig0: float, n: int, seed: int) -> Array:
    rng = np.random.default_rng(seed)
    x0 = GAUSS.sample(n, rng)
    if adapter.flow:
        a, s = 1.0 - sig0, sig0
    else:
        a = 1.0 / math.sqrt(1.0 + sig0 * sig0)
        s = sig0 * a
    return a * x0 + s * rng.standard_normal(x0.shape)


def check_solver(
    adapter: SolverAdapter,
    *,
    n_max: int = 100,
    agree_steps: Sequence[int] = (10, 25),
    order_steps: Sequence[int] = (10, 14, 20, 28, 40),
    n: int = 16,
    seed: int = 0,
) -> Report:
    """Contract, agreement and order rows for ``adapter`` (see the module docstring)."""
    if not isinstance(adapter, SolverAdapter):
        raise TypeError(
            f"adapter must be an npddpm.conformance SolverAdapter, got {type(adapter).__name__}"
        )
    claim = adapter.claim
    quiet = _QuietDiffusers()
    with quiet:
        return _check(adapter, claim, n_max, agree_steps, order_steps, n, seed)


class _QuietDiffusers:
    """diffusers' warnings (e.g. "lower_order_final set to True") silenced during a check."""

    def __enter__(self) -> None:
        try:
            from diffusers.utils import logging as dlog
        except ImportError:  # a non-diffusers adapter
            self._restore = None
            return
        self._level = dlog.get_verbosity()
        self._restore = dlog.set_verbosity
        dlog.set_verbosity_error()

    def __exit__(self, *exc: object) -> None:
        if self._restore is not None:
            self._restore(self._level)


def _check(adapter: SolverAdapter, claim: SolverClaim, n_max: int, agree_steps: Sequence[int],
           order_steps: Sequence[int], n: int, seed: int) -> Report:
    rows = _contract_rows(adapter, n_max)
    notes = [f"contract for N = 1…{n_max}", "data: one 2-D Gaussian, its exact model"]
    if claim.stochastic and claim.reference is not None:
        rows.append(_law_row(adapter, claim, seed))
        rows.append(_mixture_law_row(adapter, claim, seed))
    elif claim.stochastic:
        rows.append(Row("law", "-", math.nan, math.nan, math.nan, "skipped",
                        "stochastic, and npddpm has no reference of its law"))
    elif claim.reference is None:
        rows.append(Row("agreement", "-", math.nan, math.nan, math.nan, "skipped",
                        "npddpm has no reference of this method's own step rule"))
    else:
        rows += _agreement_rows(adapter, claim, agree_steps, n, seed, "agreement")
        if isinstance(adapter, DiffusersSolverAdapter) and adapter.dtype == "float64":
            adapter.dtype = "float32"  # the state as people run it, against the same tolerance
            try:
                rows += _agreement_rows(adapter, claim, agree_steps, n, seed,
                                        "agreement (float32)")
            finally:
                adapter.dtype = "float64"
    if claim.order is not None and not claim.stochastic:
        try:
            rows.append(_order_row(adapter, claim, order_steps, n, seed))
        except Exception as exc:
            rows.append(Row("order", f"N={order_steps[0]}…{order_steps[-1]}", math.nan,
                            math.nan, math.inf, "FAIL",
                            f"raised {type(exc).__name__}: {exc}"[:160]))
    return Report(adapter.name, rows, notes, dict(adapter.config))


def _agreement_rows(adapter: SolverAdapter, claim: SolverClaim, agree_steps: Sequence[int],
                    n: int, seed: int, label: str) -> list[Row]:
    """The whole-loop agreement rows (see the module docstring)."""
    rows = []
    for N in agree_steps:
        try:
            _, sig, _ = adapter.levels(N)
            x_T = _start(adapter, float(sig[0]), n, seed)
            got, sig = adapter.run(N, GAUSS, x_T)
            if _repeated_level(claim, sig):
                rows.append(Row(label, f"N={N}", math.nan, math.nan, math.nan, "skipped",
                                "a repeated σ level (see the contract rows): no reference "
                                "on these levels"))
                continue
            want = _reference(adapter, claim.reference, claim.kwargs, sig, x_T)
        except Exception as exc:
            rows.append(Row(label, f"N={N}", math.nan, math.nan, math.inf, "FAIL",
                            f"raised {type(exc).__name__}: {exc}"[:160]))
            continue
        tol = 16 * EPS32 * N * _state_scale(adapter, sig)
        err = float(np.max(np.abs(got - want)))
        verdict, diag, source = ("ok", "", "") if err <= tol else ("FAIL", "unexplained", "")
        where = f"element {int(np.argmax(np.abs(got - want)))}"
        if verdict == "FAIL":
            where = _first_divergence(adapter, claim, N, sig, x_T, tol) or where
            for name, (kw, src) in claim.variants.items():
                alt = _reference(adapter, claim.reference, kw, sig, x_T)
                if np.max(np.abs(got - alt)) <= tol:
                    diag, source = name, src
                    break
        i = int(np.argmax(np.abs(got - want)))
        rows.append(Row(label, f"N={N}", err,
                        err / max(float(np.max(np.abs(want))), 1e-300), err / tol,
                        verdict, diag, source, where,
                        float(want.flat[i]), float(got.flat[i]), tol))
    return rows


LAW_SAMPLES = 20_000
LAW_STEPS = 10


def _law_row(adapter: SolverAdapter, claim: SolverClaim, seed: int) -> Row:
    r"""A stochastic scheduler's output law against the exact one of npddpm's reference on its
    levels (:func:`npddpm.analytic.solver_moments`), from x_T ~ q exactly, one Gaussian.

    Each of the 2 means and 3 covariance entries is compared at 5 standard errors
    (n = 20,000; a covariance entry's error √((Σ_ii Σ_jj + Σ_ij²)/n)), so
    P(false failure) ≤ 5 × 5.7e-7 ≈ 3e-6 (normal approximation). A noise scale 2 % off in every
    step moves the output variance by ≈ 2 % of the injected part, ≳ 5 standard errors here.
    """
    import torch

    from .. import samplers
    from ..analytic import solver_moments

    _, sig, _ = adapter.levels(LAW_STEPS)
    x_T = _start(adapter, float(sig[0]), LAW_SAMPLES, seed)
    torch.manual_seed(seed)
    got, sig = adapter.run(LAW_STEPS, GAUSS, x_T)
    levels, final = _levels(claim, sig)
    fn = getattr(samplers, claim.reference or "")
    m = solver_moments(fn, VE(float(levels[-1]), float(levels[0])), GAUSS, spacing=levels,
                       final=final, start="marginal", prediction="eps", **claim.kwargs)
    n = got.shape[0]
    var = np.diag(m.covariance)
    z_mean = np.abs(got.mean(0) - m.mean) / np.sqrt(var / n)
    emp = np.cov(got.T)
    se = np.sqrt((np.outer(var, var) + m.covariance**2) / n)
    z_cov = np.abs(emp - m.covariance) / se
    worst = float(max(np.max(z_mean), np.max(z_cov[np.triu_indices(2)])))
    ok = worst <= 5.0
    return Row("law", f"N={LAW_STEPS}", float(np.max(np.abs(emp - m.covariance))), math.nan,
               worst / 5.0, "ok" if ok else "FAIL",
               "" if ok else "the output's mean or covariance is not the exact law of "
               f"npddpm's {claim.reference} on the same levels (worst {worst:.1f} standard "
               "errors; P(false failure) ≤ 3e-6)", "", f"n = {n}",
               math.nan, math.nan, 5.0)


MIX = GaussianMixture([0.3, 0.7], [[1.0, -1.0], [-1.0, 0.5]], [[0.2, 0.1], [0.3, 0.05]])
LAW_ALPHA = 1e-4  #: P(false failure) of the mixture law row (Bonferroni over its projections)


def _mixture_law_row(adapter: SolverAdapter, claim: SolverClaim, seed: int) -> Row:
    """The scheduler's output on two-component mixture data against npddpm's reference on
    the same levels, both sampled (independent noise, n = 20,000 each), by two-sample
    Kolmogorov–Smirnov tests on 4 fixed projections, each at ``LAW_ALPHA``/4: P(false
    failure) ≤ 1e-4. No closed form exists for a mixture's discretised chain, hence two
    samples."""
    import torch
    from scipy import stats

    from .. import samplers

    _, sig, _ = adapter.levels(LAW_STEPS)
    rng = np.random.default_rng(seed + 7)
    s0 = float(sig[0])
    a0 = 1.0 / math.sqrt(1.0 + s0 * s0)

    def start() -> Array:
        x0 = MIX.sample(LAW_SAMPLES, rng)
        return a0 * x0 + s0 * a0 * rng.standard_normal(x0.shape)

    torch.manual_seed(seed + 7)
    got, sig = adapter.run(LAW_STEPS, MIX, start())
    levels, final = _levels(claim, sig)
    vp = VE(float(levels[-1]), float(levels[0]))
    fn = getattr(samplers, claim.reference or "")
    ref = np.asarray(fn(vp, MIX.denoiser(vp, prediction="eps"), start() / a0, spacing=levels,
                        final=final, prediction="eps", seed=seed + 11, **claim.kwargs))
    if final == "min":
        ref = ref / math.sqrt(1.0 + float(levels[-1]) ** 2)
    angles = np.pi * np.arange(4) / 4
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    p = min(float(stats.ks_2samp(got @ u, ref @ u).pvalue) for u in dirs)
    limit = LAW_ALPHA / len(dirs)
    ok = p >= limit
    return Row("law (mixture)", f"N={LAW_STEPS}", math.nan, math.nan,
               limit / p if p > 0 else math.inf, "ok" if ok else "FAIL",
               "" if ok else f"its output law differs from npddpm's {claim.reference} on the "
               f"same levels (two-sample KS p = {p:.2g} < {limit:g}; P(false failure) ≤ 1e-4)",
               "", f"n = {LAW_SAMPLES} each, smallest p = {p:.3g}", math.nan, p, limit)


def _order_row(adapter: SolverAdapter, claim: SolverClaim, order_steps: Sequence[int], n: int,
               seed: int) -> Row:
    """The measured order against the exact flow map, beside the claimed one."""
    claimed = float(claim.order if claim.order is not None else math.nan)
    errors, ref_errors = [], []
    for N in order_steps:
        _, sig, _ = adapter.levels(N)
        x_T = _start(adapter, float(sig[0]), n, seed)
        got, sig = adapter.run(N, GAUSS, x_T)
        exact = _exact(adapter, x_T, sig)
        errors.append(float(np.sqrt(np.mean((got - exact) ** 2))))
        ref = _yardstick(adapter, sig, x_T)
        if ref is not None:
            ref_errors.append(float(np.sqrt(np.mean((ref - exact) ** 2))))
    steps = np.asarray(order_steps, dtype=np.float64)
    order, se, _ = fit_order(steps, np.asarray(errors))
    ok = order >= claimed - ORDER_MARGIN
    text = f"measured order {order:.2f} ± {se:.2f}, claimed {claimed:g}"
    verdict = "ok" if ok else "FAIL"
    if ref_errors:
        ref_order = fit_order(steps, np.asarray(ref_errors))[0]
        text += f"; npddpm's {_yardstick_name(adapter)} on the same levels: {ref_order:.2f}"
        if not ok and ref_order < claimed - ORDER_MARGIN:
            verdict = "ok"  # the levels, not the solver, limit the order
            text += " (the levels limit the order; not a verdict on the solver)"
    if verdict == "FAIL":
        text += " — converges below the order it claims"
    ratio = abs(min(order - claimed, 0.0)) / ORDER_MARGIN if verdict == "FAIL" else 0.0
    return Row("order", f"N={order_steps[0]}…{order_steps[-1]}", errors[-1], math.nan,
               ratio, verdict, text, "", "", claimed, order, ORDER_MARGIN)
