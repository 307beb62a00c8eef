r"""Compare another implementation with npddpm, quantity by quantity and t-range by t-range,
and explain every mismatch: a documented divergence (with its source) or a named fault.

Method:

* The implementation's own ᾱ (upcast to float64) is injected into npddpm, so errors in its
  schedule construction do not mask errors in its step maths; the schedule table is checked
  separately against npddpm's construction of the schedule it claims to use.
* Step tolerances scale with the conditioning of each quantity:
  ``atol = k·eps·(1 + 1/(1 − ᾱ_t) + √(1/ᾱ_t))·(|x_t| + |model_output| + 1)``, where eps is
  the implementation's machine epsilon (float32 or float64): x̂₀ amplifies errors by √(1/ᾱ)
  and every coefficient divided by 1 − ᾱ inherits its cancellation at small t.
* A failing row is re-checked under each diagnosis (a one-option change of the reference,
  alone and then in pairs among the known divergences); the first that makes it conform
  names the row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import cast

import numpy as np

from ..schedules import Schedule, get_named_beta_schedule, schedule_names
from .adapters import Adapter
from .diagnoses import DIAGNOSES, RefConfig, Reference
from .report import ConformanceError, Report, Row

__all__ = ["assert_conforms", "check"]

Array = np.ndarray


# --------------------------------------------------------------------------- checking


def _tolerance(adapter: Adapter, ab: float, *arrays: Array, k: float) -> Array:
    eps = float(np.finfo(np.dtype(adapter.dtype)).eps)
    cond = 1.0 + 1.0 / max(1.0 - ab, 1e-300) + np.sqrt(1.0 / max(ab, 1e-300))
    mag = sum(np.abs(a) for a in arrays) + 1.0
    return k * eps * cond * mag


def _compare(
    expected: Array, got: Array, tol: Array, all_nonfinite_ok: bool = False
) -> tuple[float, float, float, bool]:
    fin_g, fin_e = np.isfinite(got), np.isfinite(expected)
    if np.any(fin_g != fin_e):
        return np.inf, np.inf, np.inf, False
    if not np.all(fin_g):  # non-finite in the same places on both sides: compare the rest
        if not np.any(fin_g):  # nothing left to compare: evidence only for a NaN diagnosis
            return np.inf, np.inf, np.inf, all_nonfinite_ok
        expected, got, tol = expected[fin_g], got[fin_g], np.broadcast_to(tol, fin_g.shape)[fin_g]
    err = np.abs(got - expected)
    rel = err / np.maximum(np.abs(expected), 1e-300)
    ratio = float(np.max(err / tol))
    return float(err.max()), float(rel.max()), ratio, ratio <= 1.0


def _t_label(t: int, T: int) -> str:
    return f"t={t}"


def _pick(chain: list[int]) -> list[int]:
    """The chain entries to test: both ends and the middle (0, 1, 2, T/2, T−2, T−1)."""
    asc = sorted(chain)
    idx = sorted({0, 1, 2, len(asc) // 2, len(asc) - 2, len(asc) - 1} & set(range(len(asc))))
    return [asc[i] for i in idx]


def _inputs(adapter: Adapter, rng: np.random.Generator, B: int, D: int):
    x0 = rng.uniform(-1, 1, (B, D))
    noise = rng.standard_normal((B, D))
    mean = rng.standard_normal((B, D))
    mean[: B // 2] *= 3.0  # large outputs so that clipping triggers on half the rows
    if adapter.var_type == "learned_range":
        var = rng.uniform(-1, 1, (B, D))
    elif adapter.var_type == "learned":
        var = (
            rng.uniform(-8, -2, (B, D))
            if adapter.profile != "diffusers"
            else rng.uniform(1e-4, 1e-2, (B, D))
        )
    else:
        var = None
    mo = mean if var is None else np.concatenate([mean, var], axis=1)
    return x0, noise, mo


def check(
    adapter: Adapter,
    *,
    etas: Sequence[float] = (0.0, 0.5, 1.0),
    seed: int = 0,
    batch: int = 64,
    dim: int = 4,
    k: float | None = None,
) -> Report:
    """Compare ``adapter`` with npddpm and return a :class:`Report`.

    Floating-point warnings are silenced inside: an implementation under test may produce
    inf/NaN, and that is what the report is for.

    Parameters
    ----------
    adapter : Adapter
        The implementation under test.
    etas : sequence of float
        DDIM η values to test.
    seed : int
        Seed of the inputs (x₀, noise, model outputs).
    batch, dim : int
        Rows and values per row of the inputs.
    k : float, optional
        Tolerance multiplier (default 16 for float32 implementations, 64 for float64).
    """
    if not isinstance(adapter, Adapter):
        raise TypeError(
            f"adapter must be an npddpm.conformance.Adapter, got {type(adapter).__name__}; "
            "wrap the implementation in one (DiffusersAdapter, ImprovedDiffusionAdapter, "
            "CallablesAdapter or a subclass of Adapter)"
        )
    with np.errstate(all="ignore"):
        return _check(adapter, etas=etas, seed=seed, batch=batch, dim=dim, k=k)


def _check(
    adapter: Adapter,
    *,
    etas: Sequence[float],
    seed: int,
    batch: int,
    dim: int,
    k: float | None,
) -> Report:
    k = k if k is not None else (16.0 if np.dtype(adapter.dtype) == np.float32 else 64.0)
    base = RefConfig(
        mean_type=adapter.mean_type, var_type=adapter.var_type, clip=adapter.clip_denoised
    )
    rows: list[Row] = []
    rows += _check_schedule(adapter)
    rng = np.random.default_rng(seed)
    ab_all = np.asarray(adapter.alphas_cumprod, dtype=np.float64)
    ref0 = Reference(adapter, base)
    if not ref0.ok:
        f16 = np.array_equal(ab_all, ab_all.astype(np.float16).astype(np.float64))
        why = "ᾱ cast to float16" if f16 else "ᾱ is not strictly decreasing in [0, 1)"
        rows.append(
            Row(
                "alphas_cumprod",
                "all",
                np.inf,
                np.inf,
                np.inf,
                "FAIL",
                why,
                "huggingface/diffusers PR #3005" if f16 else "",
            )
        )
        return Report(adapter.name, rows)
    cases = []
    for t in _pick(cast(list[int], adapter.timesteps)):  # a list after Adapter.__post_init__
        x0, noise, mo = _inputs(adapter, rng, batch, dim)
        x_t = ref0.q_sample(x0, t, noise)
        cases.append((t, x0, noise, mo, x_t))

    def run(quantity, t, compute_ref, got, mags):
        if got is None:
            return
        ab = ab_all[t]
        tol = _tolerance(adapter, ab, *mags, k=k)
        exp = compute_ref(ref0)
        row = _row(quantity, _t_label(t, adapter.num_timesteps), exp, got, tol)
        if row.verdict == "FAIL":
            _diagnose(row, adapter, base, compute_ref, got, tol)
        rows.append(row)

    for t, x0, noise, _mo, _xt in cases:
        got = adapter.q_sample(x0, t, noise)
        run(
            "q_sample",
            t,
            lambda r, x0=x0, t=t, noise=noise: r.q_sample(x0, t, noise),
            got,
            (x0, noise),
        )
    for t, _x0, noise, mo, x_t in cases:
        res = adapter.ddpm_step(mo, x_t, t, noise)
        if res is None:
            continue
        x_prev, pred, used = res
        z = noise if used is None else used
        run(
            "ddpm_step",
            t,
            lambda r, mo=mo, x_t=x_t, t=t, z=z: _first(r.ddpm(mo, x_t, t, z)),
            x_prev,
            (x_t, mo[:, :dim]),
        )
        if pred is not None:
            run(
                "ddpm_pred_xstart",
                t,
                lambda r, mo=mo, x_t=x_t, t=t, z=z: _second(r.ddpm(mo, x_t, t, z)),
                pred,
                (x_t, mo[:, :dim]),
            )
    for eta in etas:
        for t, _x0, noise, mo, x_t in cases:
            res = adapter.ddim_step(mo, x_t, t, eta, noise)
            if res is None:
                continue
            x_prev, pred, used = res
            z = noise if used is None else used
            run(
                f"ddim_step(eta={eta:g})",
                t,
                lambda r, mo=mo, x_t=x_t, t=t, z=z, eta=eta: _first(r.ddim(mo, x_t, t, eta, z)),
                x_prev,
                (x_t, mo[:, :dim]),
            )
    return Report(adapter.name, rows)


def _first(pair):
    return None if pair is None else pair[0]


def _second(pair):
    return None if pair is None else pair[1]


def _row(quantity: str, label: str, expected, got: Array, tol: Array) -> Row:
    if expected is None:
        return Row(quantity, label, np.nan, np.nan, np.nan, "skipped")
    a, r, ratio, ok = _compare(expected, got, tol)
    return Row(quantity, label, a, r, ratio, "ok" if ok else "FAIL")


def _diagnose(row: Row, adapter: Adapter, base: RefConfig, compute_ref, got, tol) -> None:
    def conforms(diags) -> bool:
        with np.errstate(all="ignore"):
            return _conforms(diags)

    def _conforms(diags) -> bool:
        cfg = base
        for dg in diags:
            cfg = dg.apply(cfg, adapter)
            if cfg is None:
                return False
        try:
            ref = Reference(adapter, cfg)
            if not ref.ok:
                return False
            exp = compute_ref(ref)
        except (ValueError, KeyError, ZeroDivisionError, FloatingPointError):
            return False
        if exp is None:
            return False
        nan_ok = any(dg.change.get("std_of_log_beta") for dg in diags)
        t = tol
        for dg in diags:
            if dg.tolerance_dtype is not None:
                t = tol * (np.finfo(dg.tolerance_dtype).eps / np.finfo(adapter.dtype).eps)
        with np.errstate(all="ignore"):
            return _compare(exp, got, t, all_nonfinite_ok=nan_ok)[3]

    known = [dg for dg in DIAGNOSES if dg.kind == "known"]
    for group in ([(dg,) for dg in DIAGNOSES], itertools.combinations(known, 2)):
        for diags in group:
            if conforms(diags):
                row.diagnosis = " + ".join(dg.name for dg in diags)
                row.source = "; ".join(dg.source for dg in diags)
                if all(dg.kind == "known" for dg in diags):
                    row.verdict = "known"
                return
    row.diagnosis = "unexplained"


def _check_schedule(adapter: Adapter) -> list[Row]:
    if adapter.schedule is None:
        return []
    name, kw = adapter.schedule
    T = adapter.num_timesteps
    got = np.asarray(adapter.alphas_cumprod, dtype=np.float64)
    eps = float(np.finfo(np.dtype(adapter.dtype)).eps)
    t = np.arange(T)
    tol_rel = 4 * (t + 2) * eps  # a cumprod of t+1 factors plus the cast of β

    def agree(ref_ab):
        return np.all(np.abs(got - ref_ab) <= tol_rel * ref_ab)

    ref = Schedule(get_named_beta_schedule(name, T, **kw)).alphas_cumprod
    err = np.abs(got - ref)
    ratio = float(np.max(err / (tol_rel * ref)))
    row = Row(
        "alphas_cumprod",
        f"{name}, T={T}",
        float(err.max()),
        float(np.max(err / ref)),
        ratio,
        "ok" if ratio <= 1 else "FAIL",
    )
    if row.verdict == "FAIL":
        if agree(ref.astype(np.float16).astype(np.float64)):
            row.diagnosis = "ᾱ cast to float16"
        else:
            for other in schedule_names():
                if other == name:
                    continue
                try:
                    alt = Schedule(get_named_beta_schedule(other, T, **kw)).alphas_cumprod
                except (ValueError, TypeError):
                    try:
                        alt = Schedule(get_named_beta_schedule(other, T)).alphas_cumprod
                    except (ValueError, TypeError):
                        continue
                if agree(alt):
                    desc = {
                        "linear_unscaled": "unscaled linear schedule (TF/diffusers 'linear') "
                        "instead of improved-diffusion's 1000/T-scaled 'linear'"
                    }
                    row.diagnosis = desc.get(other, f"uses the {other!r} schedule")
                    break
            else:
                row.diagnosis = "unexplained"
    return [row]


def assert_conforms(
    adapter: Adapter,
    *,
    allow_known: bool = True,
    etas: Sequence[float] = (0.0, 0.5, 1.0),
    seed: int = 0,
    batch: int = 64,
    dim: int = 4,
    k: float | None = None,
) -> Report:
    """Run :func:`check` and raise :class:`ConformanceError` (with the table) unless the
    implementation conforms (known divergences allowed unless ``allow_known=False``)."""
    report = check(adapter, etas=etas, seed=seed, batch=batch, dim=dim, k=k)
    if not report.conforms or (not allow_known and report.known):
        raise ConformanceError("\n" + report.table())
    return report
