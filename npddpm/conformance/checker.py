r"""Compare another implementation with npddpm, quantity by quantity and timestep by
timestep, and give every mismatch an earned verdict.

Method:

* The implementation's own ᾱ (upcast to float64) is injected into npddpm, so errors in its
  schedule construction do not mask errors in its step maths; the ᾱ table is checked
  separately, at every t, against npddpm's construction of the schedule it claims.
* ``q_sample`` is checked at every t of the table.
* Each term of a step is checked at its own scale (:mod:`npddpm.conformance.tolerances`):
  the **mean** (a call with noise 0; or, for an implementation that draws its own noise,
  the whole step with the reported draw), the **noise term** (two calls that differ only in
  the noise: their difference must be σ_t·Δz, so a fault the size of one step's noise is
  visible in float32 at every t, t = 0 and 1 included) and **x̂₀** where it is exposed.
  The steps are checked at every entry of a chain of at most 100 steps, else at the first
  and last 4 entries and 24 spread evenly between (``steps="all"`` for every entry).
* Every row carries its worst ratio error/tolerance; a row conforms at ≤ 1.
* A failing row is re-checked under each diagnosis in scope; the naming rule (scope, no
  widened tolerance, discrimination, choice) is stated in :mod:`npddpm.conformance.diagnoses`.
  A row no diagnosis explains is ``"unexplained"``: it does not conform.
* An exception raised by the implementation is a failing row (what raised, where); the
  report still comes back. :func:`check` raises only for misuse of npddpm itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..betas import rescale_zero_terminal_snr
from ..schedules import get_named_beta_schedule
from .adapters import Adapter
from .diagnoses import DIAGNOSES, Diagnosis, diagnose_schedule
from .plan import pick_steps, step_inputs
from .reference import RefConfig, Reference
from .report import ConformanceError, Report, Row
from .tolerances import default_k, machine_eps, noise_tolerance, step_tolerance, table_tolerance

__all__ = ["assert_conforms", "check"]

Array = np.ndarray


@dataclass
class _Result:
    quantity: str
    t: int
    label: int
    max_abs: float
    max_rel: float
    ratio: float
    verdict: str
    diagnosis: str = ""
    source: str = ""
    where: str = ""
    expected: float = np.nan
    got: float = np.nan
    tolerance: float = np.nan


@dataclass
class _Pending:
    quantity: str
    t: int
    compute: Callable[[Reference], Array | None]
    got: Array
    tol: Array | Callable[[Array], Array]
    dtype: str

    def tolerance(self, expected: Array) -> Array:
        return self.tol(expected) if callable(self.tol) else self.tol

    def matches(self, ref: Reference, scale: float) -> float | None:
        """The worst ratio under ``ref`` when the row matches there, else None."""
        exp = self.compute(ref)
        if exp is None:
            return None
        _, _, ratio, ok, _ = _compare(exp, self.got, self.tolerance(exp) * scale)
        return (ratio if np.isfinite(ratio) else 0.0) if ok else None


def _compare(
    expected: Array, got: Array, tol: Array
) -> tuple[float, float, float, bool, tuple[int, ...]]:
    """(max abs, max rel, worst err/tol, conforms, index of the worst element).

    Non-finite values must be the same on both sides (NaN for NaN, ±∞ for ±∞: the exact
    maths of the claimed configuration predicts them, e.g. x̂₀ = ±∞ at ᾱ = 0 from ε); any
    other non-finite value, on either side, is an infinite error.
    """
    got = np.asarray(got, dtype=np.float64)
    expected = np.broadcast_to(np.asarray(expected, dtype=np.float64), got.shape)
    tol = np.broadcast_to(tol, got.shape)
    fin_g, fin_e = np.isfinite(got), np.isfinite(expected)
    with np.errstate(invalid="ignore"):
        same = (np.isnan(got) & np.isnan(expected)) | (np.isinf(got) & (got == expected))
    bad = ~(fin_g & fin_e) & ~same
    if np.any(bad):
        where = np.unravel_index(int(np.argmax(bad)), got.shape)
        return np.inf, np.inf, np.inf, False, tuple(int(v) for v in cast(Any, where))
    if not np.any(fin_g):  # non-finite everywhere, and the same on both sides
        return 0.0, 0.0, 0.0, True, (0,) * got.ndim
    err = np.where(fin_g, np.abs(got - expected), 0.0)
    ratio = err / tol
    i = int(np.argmax(ratio))
    rel = err / np.maximum(np.abs(expected), tol)  # tol: no 1e300 where expected is 0
    worst = float(ratio.flat[i])
    at = tuple(int(v) for v in cast(Any, np.unravel_index(i, got.shape)))
    return float(err.max()), float(rel[fin_g].max()), worst, worst <= 1.0, at


def check(
    adapter: Adapter,
    *,
    etas: Sequence[float] = (0.0, 0.5, 1.0),
    seed: int = 0,
    batch: int = 32,
    dim: int | None = None,
    k: float | None = None,
    steps: str | Sequence[int] = "default",
    q_steps: str | Sequence[int] = "all",
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
    batch : int
        Rows of the inputs.
    dim : int, optional
        Values per row (default: the size of the adapter's ``sample_shape``, else 4).
    k : float, optional
        Tolerance multiplier (default :func:`npddpm.conformance.tolerances.default_k`).
    steps : "default", "all" or sequence of int
        The chain entries whose steps are checked (see the module docstring).
    q_steps : "all" or sequence of int
        The timesteps of the q_sample check (default every t of the table).
    """
    if not isinstance(adapter, Adapter):
        raise TypeError(
            f"adapter must be an npddpm.conformance.Adapter, got {type(adapter).__name__}; "
            "wrap the implementation in one (DiffusersAdapter, ImprovedDiffusionAdapter, "
            "CallablesAdapter or a subclass of Adapter)"
        )
    shape_d = None if adapter.sample_shape is None else int(np.prod(adapter.sample_shape))
    if dim is None:
        dim = shape_d or 4
    elif shape_d is not None and dim != shape_d:
        raise ValueError(
            f"dim={dim} disagrees with the adapter's sample_shape {adapter.sample_shape}"
        )
    if int(batch) < 2 or int(dim) < 1:
        raise ValueError(f"batch must be >= 2 and dim >= 1, got batch={batch}, dim={dim}")
    with np.errstate(all="ignore"):
        checker = _Checker(adapter, etas, seed, int(batch), int(dim), k, steps)
        if not isinstance(q_steps, str):
            checker.q_steps = sorted({int(t) for t in q_steps})
            if any(not 0 <= t < adapter.num_timesteps for t in checker.q_steps):
                raise ValueError(f"q_steps must lie in [0, {adapter.num_timesteps})")
        elif q_steps != "all":
            raise ValueError(f"q_steps must be 'all' or a list of timesteps, got {q_steps!r}")
        return checker.run()


class _Checker:
    def __init__(self, adapter, etas, seed, batch, dim, k, steps) -> None:
        self.ad = adapter
        self.etas = [float(e) for e in etas]
        self.rng = np.random.default_rng(seed)
        self.B, self.D = batch, dim
        self.k = default_k(adapter.dtype) if k is None else float(k)
        self.steps = steps
        self.base = RefConfig(
            mean_type=adapter.mean_type,
            var_type=adapter.var_type,
            clip=bool(adapter.clip_denoised),
            clip_range=float(adapter.clip_range),
            threshold=adapter.thresholding,
            final_alpha=adapter.final_alpha,
        )
        self.refs: dict[RefConfig, Reference] = {}
        self.results: list[_Result] = []
        self.pending: list[_Pending] = []
        self.q_steps: list[int] | None = None  # None: every t
        self.dtype = np.dtype(adapter.dtype).name
        self.q_dtype = np.dtype(adapter.q_dtype or adapter.dtype).name

    def ref(self, cfg: RefConfig) -> Reference:
        if cfg not in self.refs:
            ad = self.ad
            self.refs[cfg] = Reference(ad.alphas_cumprod, cast(list[int], ad.timesteps), cfg)
        return self.refs[cfg]

    # ------------------------------------------------------------------ running

    def run(self) -> Report:
        ad = self.ad
        rows: list[Row] = [Row(q, "all", np.inf, np.inf, np.inf, "FAIL", d) for q, d in ad.findings]
        rows += [
            Row(q, "all", np.nan, np.nan, np.nan, "skipped", f"not checked: {why}")
            for q, why in ad.skipped.items()
        ]
        rows += self.schedule_rows()
        ref0 = self.ref(self.base)
        if not ref0.ok:
            ab = np.asarray(ad.alphas_cumprod, dtype=np.float64)
            f16 = np.array_equal(ab, ab.astype(np.float16).astype(np.float64))
            why = "ᾱ cast to float16" if f16 else "ᾱ is not strictly decreasing in [0, 1)"
            rows.append(Row("alphas_cumprod", "all", np.inf, np.inf, np.inf, "FAIL", why))
            return Report(ad.name, rows)
        chain = cast(list[int], ad.timesteps)
        picked = pick_steps(chain, self.steps)
        self.check_q_sample()
        self.check_steps(picked)
        rows += _group(self.results, ad.num_timesteps)
        notes = [
            f"q_sample at {'all' if self.q_steps is None else len(self.q_steps)} of "
            f"{ad.num_timesteps} t; steps at {len(picked)} of the chain's "
            f"{len(chain)} entries; {self.B}×{self.D} inputs; tolerance k = {self.k:g} × eps "
            f"of {self.dtype}"
        ]
        return Report(ad.name, rows, notes=notes, config=_claimed(ad))

    def call(self, quantity: str, t: int, fn: Callable, *args: Any) -> tuple[Any, bool]:
        """``fn(*args)``; an exception becomes a failing result of ``quantity`` at ``t``."""
        try:
            return fn(*args), True
        except Exception as exc:  # the implementation under test raised: a finding
            msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:160]
            self.results.append(
                _Result(
                    quantity,
                    t,
                    self.ad.label(t),
                    np.inf,
                    np.inf,
                    np.inf,
                    "FAIL",
                    f"raised {msg}",
                    "",
                    f"in {getattr(fn, '__name__', 'the call')} at t={t}",
                )
            )
            return None, False

    def compare(
        self,
        quantity: str,
        t: int,
        compute: Callable[[Reference], Array | None],
        got: Array,
        tol: Array | Callable[[Array], Array],
        dtype: str,
    ) -> None:
        """Queue one comparison of the current step (or q_sample); :meth:`flush` runs them.

        ``tol`` is an array, or a function of the expected values (the noise term, whose
        tolerance scales with the σ the reference — or a diagnosis — predicts).
        """
        self.pending.append(_Pending(quantity, t, compute, got, tol, dtype))

    def flush(self) -> None:
        """Compare the queued rows of one step; diagnose the failing ones (a diagnosis must
        first explain the whole step — every queued row — and only failing that the row)."""
        group, self.pending = self.pending, []
        base = self.ref(self.base)
        done = []
        for p in group:
            expected = p.compute(base)
            if expected is None:
                continue
            label = self.ad.label(p.t)
            if np.shape(p.got) != np.shape(expected):  # a finding about the output itself
                shape = f"returned shape {np.shape(p.got)}, expected {np.shape(expected)}"
                self.results.append(
                    _Result(p.quantity, p.t, label, np.inf, np.inf, np.inf, "FAIL", shape)
                )
                continue
            tol = p.tolerance(expected)
            a, r, ratio, ok, where = _compare(expected, p.got, tol)
            res = _Result(p.quantity, p.t, self.ad.label(p.t), a, r, ratio, "ok" if ok else "FAIL")
            res.where = _where(p.t, self.ad.label(p.t), where)
            if len(where) == np.ndim(p.got):  # the values at the worst element
                res.expected = float(np.asarray(expected)[where])
                res.got = float(np.asarray(p.got)[where])
                res.tolerance = float(np.broadcast_to(tol, np.shape(p.got))[where])
            done.append((p, res))
        for p, res in done:
            if res.verdict == "FAIL":
                ratios = {id(q): r.ratio for q, r in done}
                self.diagnose(res, p, [q for q, _ in done], ratios)
            self.results.append(res)

    # ------------------------------------------------------------------ quantities

    def schedule_rows(self) -> list[Row]:
        ad = self.ad
        if ad.schedule is None:
            return []
        name, kw = ad.schedule
        kw = dict(kw)
        got = np.asarray(ad.alphas_cumprod, dtype=np.float64)
        T_full = int(kw.pop("T", ad.num_timesteps if ad.labels is None else max(ad.labels) + 1))
        betas = get_named_beta_schedule(name, T_full, **kw)
        if ad.rescale_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        ref = np.cumprod(1.0 - betas)
        t = np.arange(T_full)
        if ad.labels is not None:
            ref, t = ref[list(ad.labels)], np.asarray(ad.labels)
        tol = table_tolerance(t, ad.dtype) * np.maximum(ref, 1e-300)
        # ᾱ_{T−1} = 0 exactly under the zero-SNR rescale: allow the float32 floor there
        tol = np.maximum(tol, machine_eps(ad.dtype) * 4 * (ref == 0))
        err = np.abs(got - ref)
        ratio = err / np.maximum(tol, 1e-300)
        i = int(np.argmax(ratio))
        worst = float(ratio[i])
        label = f"{name}{' (zero SNR)' if ad.rescale_zero_snr else ''}, T={T_full}"
        row = Row(
            "alphas_cumprod",
            label,
            float(err.max()),
            float(np.max(err / np.maximum(ref, 1e-300))),
            worst,
            "ok" if worst <= 1 else "FAIL",
            where=f"t={int(t[i])}",
        )
        if row.verdict == "FAIL":
            row.diagnosis = (
                diagnose_schedule(got, name, kw, ad.dtype, rescale_zero_snr=ad.rescale_zero_snr)
                if ad.labels is None
                else "unexplained"
            )
        return [row]

    def check_q_sample(self) -> None:
        ad = self.ad
        if "q_sample" in ad.skipped:
            return
        B = min(self.B, 8)
        for t in range(ad.num_timesteps) if self.q_steps is None else self.q_steps:
            x0 = self.rng.uniform(-1, 1, (B, self.D))
            z = self.rng.standard_normal((B, self.D))
            got, ok = self.call("q_sample", t, ad.q_sample, x0, t, z)
            if not ok or got is None:
                if got is None and ok:
                    ad.skipped["q_sample"] = "the adapter returned None"
                    return
                continue
            ab = float(ad.alphas_cumprod[t])
            tol = step_tolerance(ab, x0, z, dtype=self.q_dtype, k=self.k)
            self.compare(
                "q_sample",
                t,
                cast(Callable[[Reference], Any], lambda r, x0=x0, t=t, z=z: r.q_sample(x0, t, z)),
                got,
                tol,
                self.q_dtype,
            )
            self.flush()

    def check_steps(self, picked: list[int]) -> None:
        ad = self.ad
        ref0 = self.ref(self.base)
        plans: list[tuple[str, float | None]] = []
        if "ddpm" not in ad.skipped:
            plans.append(("ddpm", None))
        if "ddim" not in ad.skipped:
            plans += [("ddim", eta) for eta in self.etas]
        for kind, eta in plans:
            for t in picked:
                x0, z, mo = step_inputs(ad, self.rng, self.B, self.D)
                x_t = ref0.q_sample(x0, t, self.rng.standard_normal((self.B, self.D)))
                if not self.check_step(kind, eta, t, mo, x_t, z, ref0):
                    break  # the adapter does not offer this step

    def check_step(self, kind, eta, t, mo, x_t, z, ref0) -> bool:
        ad = self.ad
        suffix = "" if eta is None else f"(eta={eta:g})"
        q = lambda name: f"{kind}.{name}{suffix}"  # noqa: E731
        fn = ad.ddpm_step if kind == "ddpm" else ad.ddim_step
        args = (
            (lambda noise: (mo, x_t, t, noise))
            if kind == "ddpm"
            else (lambda noise: (mo, x_t, t, eta, noise))
        )
        zero = np.zeros_like(z)
        res_a, ok_a = self.call(q("mean"), t, fn, *args(z))
        if ok_a and res_a is None:
            ad.skipped[kind if eta is None else f"ddim(eta={eta:g})"] = "the adapter returned None"
            return False
        res_b, ok_b = self.call(q("mean"), t, fn, *args(zero)) if ok_a else (None, False)
        if not (ok_a and ok_b):
            return True
        xa, pa, ua = cast(tuple, res_a)
        xb, _, ub = cast(tuple, res_b)
        ua = z if ua is None else ua
        ub = zero if ub is None else ub

        def step(r: Reference, noise: Array) -> tuple[Array, Array] | None:
            return r.ddpm(mo, x_t, t, noise) if kind == "ddpm" else r.ddim(mo, x_t, t, eta, noise)

        def first(r: Reference, noise: Array) -> Array | None:
            out = step(r, noise)
            return None if out is None else out[0]

        ab = float(ad.alphas_cumprod[t])
        mo_mean = mo[:, : self.D]
        if not np.any(ub):  # the mean alone (noise 0)
            tol = step_tolerance(ab, x_t, mo_mean, dtype=self.dtype, k=self.k)
            self.compare(q("mean"), t, lambda r: first(r, ub), xb, tol, self.dtype)
        else:  # an implementation that draws its own noise: the whole step, noise included
            tol = step_tolerance(ab, x_t, mo_mean, ua, dtype=self.dtype, k=self.k)
            self.compare(q("step"), t, lambda r: first(r, ua), xa, tol, self.dtype)

        def noise_term(r: Reference) -> Array | None:
            a, b = first(r, ua), first(r, ub)
            return None if a is None or b is None else a - b

        du = ua - ub
        abp = ref0.alpha_prev(t)
        du_norm = max(float(np.linalg.norm(du)), 1e-300)

        def noise_tol(expected: Array) -> Array:
            # σ as the reference (or a diagnosis) predicts it: ‖σ·Δz‖/‖Δz‖
            sigma = float(np.linalg.norm(np.nan_to_num(expected))) / du_norm
            return noise_tolerance(ab, abp, sigma, ua, ub, xa, xb, dtype=self.dtype, k=self.k)

        self.compare(q("noise"), t, noise_term, xa - xb, noise_tol, self.dtype)
        if pa is not None:
            tol = step_tolerance(ab, x_t, mo_mean, dtype=self.dtype, k=self.k)

            def x0(r: Reference) -> Array | None:
                out = step(r, ua)
                return None if out is None else out[1]

            self.compare(f"{kind}.x0{suffix}", t, x0, pa, tol, self.dtype)
        self.flush()
        return True

    # ------------------------------------------------------------------ diagnosis

    def diagnose(
        self, res: _Result, row: _Pending, step: list[_Pending], base: dict[int, float]
    ) -> None:
        """Name ``res`` by the rule of :mod:`npddpm.conformance.diagnoses`: a diagnosis must
        explain every row of the step (``step``), or, failing that, the row alone, and on
        every failing row remove at least half of the discrepancy (``base``: the rows' worst
        ratios under the claimed reference)."""
        ad = self.ad
        quantity = row.quantity.split("(")[0]
        scoped = [dg for dg in DIAGNOSES if dg.in_scope(quantity, ad.profile, row.dtype, ad.config)]

        def residual(diags: tuple[Diagnosis, ...], rows: list[_Pending]) -> float | None:
            cfg: RefConfig | None = self.base
            for dg in diags:
                cfg = dg.apply(cfg) if cfg is not None else None
            if cfg is None:
                return None
            try:
                ref = self.ref(cfg)
                if not ref.ok:
                    return None
                scale = 1.0
                for dg in diags:
                    if dg.tolerance_dtype is not None:
                        scale = machine_eps(dg.tolerance_dtype) / machine_eps(row.dtype)
                worst = 0.0
                for p in rows:
                    r = p.matches(ref, scale)
                    b = base.get(id(p), 0.0)
                    if r is None or (b > 1.0 and r > 0.5 * b):  # it must remove most of it
                        return None
                    worst = max(worst, r)
                return worst
            except (ValueError, KeyError, ZeroDivisionError, FloatingPointError, IndexError):
                return None

        known = [dg for dg in scoped if dg.kind == "known"]
        candidates: list[tuple[Diagnosis, ...]] = [(dg,) for dg in scoped]
        pairs = list(
            itertools.chain(
                itertools.combinations(known, 2),
                ((a, b) for a in known for b in scoped if b.kind == "fault"),
            )
        )
        for rows in (step, [row]):
            singles = [(r, c) for c in candidates if (r := residual(c, rows)) is not None]
            if singles:
                _name(res, min(singles, key=lambda p: p[0])[1])
                return
            for pair in pairs:
                if residual(pair, rows) is not None:
                    _name(res, pair)
                    return
        res.diagnosis = "unexplained"


def _claimed(ad: Adapter) -> dict[str, Any]:
    """What the adapter claims, for the report: npddpm's reading and the implementation's own
    config (``implementation``)."""
    chain = cast(list[int], ad.timesteps)
    return {
        "mean_type": ad.mean_type,
        "var_type": ad.var_type,
        "clip_denoised": bool(ad.clip_denoised),
        "clip_range": float(ad.clip_range),
        "thresholding": None if ad.thresholding is None else list(ad.thresholding),
        "final_alpha": ad.final_alpha,
        "dtype": np.dtype(ad.dtype).name,
        "schedule": None if ad.schedule is None else [ad.schedule[0], dict(ad.schedule[1])],
        "rescale_zero_snr": bool(ad.rescale_zero_snr),
        "profile": ad.profile,
        "T": ad.num_timesteps,
        "chain": [chain[0], chain[-1], len(chain)],
        "implementation": dict(ad.config),
    }


def _name(res: _Result, diags: tuple[Diagnosis, ...]) -> None:
    res.diagnosis = " + ".join(dg.name for dg in diags)
    res.source = "; ".join(dg.source for dg in diags)
    if all(dg.kind == "known" for dg in diags):
        res.verdict = "known"


def _where(t: int, label: int, idx: tuple[int, ...]) -> str:
    at = f"t={label}" if label == t else f"t={label} (index {t})"
    return at + (f", row {idx[0]}, value {idx[1]}" if len(idx) == 2 else "")


def _group(results: list[_Result], T: int) -> list[Row]:
    """One :class:`Row` per quantity and outcome (verdict and diagnosis), over every checked
    t with that outcome; its worst ratio and where that worst element is."""
    rows: list[Row] = []
    order: dict[str, dict[tuple[str, str], list[_Result]]] = {}
    for r in results:
        order.setdefault(r.quantity, {}).setdefault((r.verdict, r.diagnosis), []).append(r)
    for quantity, outcomes in order.items():
        for run_l in outcomes.values():
            worst = max(run_l, key=lambda r: r.ratio)
            labels = [r.label for r in run_l]
            hi, lo = max(labels), min(labels)
            span = f"t={lo}" if len(run_l) == 1 else f"t={hi}…{lo} ({len(run_l)})"
            rows.append(
                Row(
                    quantity,
                    span,
                    max(r.max_abs for r in run_l),
                    max(r.max_rel for r in run_l),
                    worst.ratio,
                    worst.verdict,
                    worst.diagnosis,
                    worst.source,
                    where=worst.where,
                    expected=worst.expected,
                    got=worst.got,
                    tolerance=worst.tolerance,
                )
            )
    return rows


def assert_conforms(
    adapter: Adapter,
    *,
    allow_known: bool = True,
    etas: Sequence[float] = (0.0, 0.5, 1.0),
    seed: int = 0,
    batch: int = 32,
    dim: int | None = None,
    k: float | None = None,
    steps: str | Sequence[int] = "default",
    q_steps: str | Sequence[int] = "all",
) -> Report:
    """Run :func:`check` and raise :class:`ConformanceError` (with the table) unless the
    implementation conforms (known divergences allowed unless ``allow_known=False``)."""
    report = check(
        adapter, etas=etas, seed=seed, batch=batch, dim=dim, k=k, steps=steps, q_steps=q_steps
    )
    if not report.conforms or (not allow_known and report.known):
        raise ConformanceError("\n" + report.table())
    return report
