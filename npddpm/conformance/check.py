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
from dataclasses import dataclass, field, replace

import numpy as np

from ..diffusion import GaussianDiffusion
from ..schedules import Schedule, get_named_beta_schedule, schedule_names
from .adapters import Adapter

__all__ = [
    "DIAGNOSES",
    "ConformanceError",
    "Diagnosis",
    "Report",
    "Row",
    "assert_conforms",
    "check",
]

Array = np.ndarray


class ConformanceError(AssertionError):
    """Raised by :func:`assert_conforms`; the message is the report's table."""


# --------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class RefConfig:
    """How npddpm computes the expected values (a diagnosis changes one field)."""

    mean_type: str
    var_type: str
    clip: bool
    overrides: tuple = ()
    t_shift: int = 0
    negate_output: bool = False
    alpha_dtype: str | None = None
    force_last_noise: bool = False
    ddim_prev_by_stride: bool = False
    std_of_log_beta: bool = False


def _betas_from_alphas_cumprod(ab: Array) -> Array:
    prev = np.concatenate([[1.0], ab[:-1]])
    betas = 1.0 - ab / prev
    return np.clip(betas, 1e-300, 1.0)


class _Reference:
    def __init__(self, adapter: Adapter, cfg: RefConfig) -> None:
        ab = np.asarray(adapter.alphas_cumprod, dtype=np.float64)
        if cfg.alpha_dtype is not None:
            ab = ab.astype(cfg.alpha_dtype).astype(np.float64)
        # a float16 table has runs of equal values (ᾱ rounds to 1 at small t); the reference
        # then reproduces the same divisions by zero as the implementation
        strict = np.all(np.diff(ab) < 0) if cfg.alpha_dtype is None else np.all(np.diff(ab) <= 0)
        self.ok = bool(strict and ab[-1] >= 0 and (ab[0] < 1 or cfg.alpha_dtype is not None))
        self.cfg, self.T = cfg, ab.size
        if not self.ok:
            return
        base = Schedule(_betas_from_alphas_cumprod(ab))
        chain = sorted(adapter.timesteps)
        kw = dict(mean_type=cfg.mean_type, var_type=cfg.var_type, **dict(cfg.overrides))
        self.full = GaussianDiffusion(base, **kw)
        self.chain = chain
        self.d = (
            GaussianDiffusion(base.respace(chain), **kw)
            if chain != list(range(self.T))
            else self.full
        )
        self.pos = {t: i for i, t in enumerate(chain)}
        self.stride = self.T // len(chain)

    def _mo(self, mo: Array) -> Array:
        if self.cfg.negate_output:
            mo = mo.copy()
            D = mo.shape[1] // (2 if self.cfg.var_type.startswith("learned") else 1)
            mo[:, :D] = -mo[:, :D]
        return mo

    def q_sample(self, x0, t, noise):
        i = t + self.cfg.t_shift
        if not 0 <= i < self.T:
            return None
        return self.full.q_sample(x0, np.full(len(x0), i), noise)

    def ddpm(self, mo, x_t, t, noise):
        i = self.pos[t] + self.cfg.t_shift
        if not 0 <= i < self.d.num_timesteps:
            return None
        tb = np.full(len(x_t), i)
        if self.cfg.std_of_log_beta:  # diffusers fixed_large_log: √(log β)·z, NaN (HF #14569)
            out = self.d.p_mean_variance(self._mo(mo), x_t, tb, clip_denoised=self.cfg.clip)
            with np.errstate(invalid="ignore"):
                std = np.sqrt(np.log(self.d.schedule.betas[i])) if i > 0 else 0.0
            return out["mean"] + std * noise, out["pred_xstart"]
        if self.cfg.force_last_noise:
            out = self.d.p_mean_variance(self._mo(mo), x_t, tb, clip_denoised=self.cfg.clip)
            return out["mean"] + np.exp(0.5 * out["log_variance"]) * noise, out["pred_xstart"]
        out = self.d.p_sample(self._mo(mo), x_t, tb, noise, clip_denoised=self.cfg.clip)
        return out["sample"], out["pred_xstart"]

    def ddim(self, mo, x_t, t, eta, noise):
        i = self.pos[t] + self.cfg.t_shift
        if not 0 <= i < self.d.num_timesteps:
            return None
        if self.cfg.ddim_prev_by_stride:  # diffusers DDIM: prev = t − T//N (HF #12633)
            s = self.full.schedule
            prev = t - self.stride
            pair = [prev, t] if prev >= 0 else [t]
            d2 = GaussianDiffusion(
                s.respace(pair),
                mean_type=self.cfg.mean_type,
                var_type=self.cfg.var_type,
                **dict(self.cfg.overrides),
            )
            out = d2.ddim_sample(
                self._mo(mo),
                x_t,
                np.full(len(x_t), len(pair) - 1),
                eta,
                noise,
                clip_denoised=self.cfg.clip,
            )
            return out["sample"], out["pred_xstart"]
        out = self.d.ddim_sample(
            self._mo(mo), x_t, np.full(len(x_t), i), eta, noise, clip_denoised=self.cfg.clip
        )
        return out["sample"], out["pred_xstart"]


# --------------------------------------------------------------------------- diagnoses


@dataclass(frozen=True)
class Diagnosis:
    """One explanation of a mismatch: a change of the reference that makes it conform."""

    name: str
    kind: str  # "known" (documented divergence) or "fault"
    source: str
    change: dict = field(default_factory=dict)
    #: adapter profiles this (known) divergence belongs to; None: any implementation
    profiles: tuple[str, ...] | None = None
    #: the precision the diagnosed computation runs in, when it is not the adapter's
    tolerance_dtype: str | None = None

    def apply(self, cfg: RefConfig, adapter: Adapter) -> RefConfig | None:
        if self.profiles is not None and adapter.profile not in self.profiles:
            return None
        ch = dict(self.change)
        if "var_swap" in ch:
            if cfg.var_type not in ("fixed_small", "fixed_large"):
                return None
            return replace(
                cfg, var_type="fixed_large" if cfg.var_type == "fixed_small" else "fixed_small"
            )
        if "clip_flip" in ch:
            return replace(cfg, clip=not cfg.clip)
        if "negate_output" in ch:
            return replace(cfg, negate_output=True) if cfg.mean_type == "v" else None
        if "overrides" in ch:
            return replace(
                cfg, overrides=tuple(sorted({**dict(cfg.overrides), **ch["overrides"]}.items()))
            )
        return replace(cfg, **ch)


DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis(
        "add_noise runs in the sample dtype: float16 samples cast ᾱ to float16 too",
        "known",
        "huggingface/diffusers PR #3005",
        {"alpha_dtype": "float16"},
        profiles=("diffusers",),
        tolerance_dtype="float16",
    ),
    Diagnosis(
        "t = 0 log-variance floored at log 1e-20 instead of log β̃₁",
        "known",
        "diffusers ddpm.py:391; TF1 diffusion_utils.py:82; lucidrains ddp.py:566",
        {"overrides": {"t0_log_variance": "floor"}},
    ),
    Diagnosis(
        "last-step noise keyed on the timestep value, not the index",
        "known",
        "diffusers ddpm.py:543",
        {"overrides": {"last_step_noise": "timestep"}},
    ),
    Diagnosis(
        "DDIM ε not re-derived from the clipped x̂₀ (use_clipped_model_output=False)",
        "known",
        "diffusers ddim.py:483-485 (B.10.6)",
        {"overrides": {"ddim_rederive_eps": False}},
    ),
    Diagnosis(
        "'learned' variance output read as σ², not log σ²",
        "known",
        "diffusers ddpm.py:408-409 (B.10.4)",
        {"overrides": {"learned_output": "variance"}},
    ),
    Diagnosis(
        "x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ form (rounding only)",
        "known",
        "diffusers ddpm.py:513",
        {"overrides": {"xstart_from_eps": "divide"}},
    ),
    Diagnosis(
        "fixed_large uses β (not β̃₁) at t = 0",
        "known",
        "diffusers current_beta_t; improved-diffusion#45 (B.10.3)",
        {"overrides": {"fixed_large_t0": "beta"}},
    ),
    Diagnosis(
        "DDIM previous timestep taken as t − T//N, not the previous chain entry",
        "known",
        "diffusers ddim.py:445; huggingface/diffusers#12633, #11347",
        {"ddim_prev_by_stride": True},
    ),
    Diagnosis(
        "fixed_large_log: the std is taken as √(log β), which is NaN",
        "known",
        "huggingface/diffusers#14569 (open), PR #14571",
        {"std_of_log_beta": True},
    ),
    Diagnosis(
        "off-by-one timestep (uses t+1)", "fault", "index convention, README", {"t_shift": 1}
    ),
    Diagnosis(
        "off-by-one timestep (uses t−1)", "fault", "index convention, README", {"t_shift": -1}
    ),
    Diagnosis(
        "ᾱ cast to float16",
        "fault",
        "huggingface/diffusers PR #3005; AUTOMATIC1111/stable-diffusion-webui#14071",
        {"alpha_dtype": "float16"},
    ),
    Diagnosis(
        "β used where β̃ belongs (or β̃ where β belongs): fixed_small/fixed_large swapped",
        "fault",
        "Ho et al. 2020 §3.2",
        {"var_swap": True},
    ),
    Diagnosis(
        "x̂₀ clipping missing (or added)",
        "fault",
        "improved-diffusion clip_denoised",
        {"clip_flip": True},
    ),
    Diagnosis(
        "wrong sign in the v-conversion", "fault", "Salimans & Ho 2022 §4", {"negate_output": True}
    ),
    Diagnosis(
        "noise added at the last step",
        "fault",
        "Ho et al. 2020 Algorithm 2",
        {"force_last_noise": True},
    ),
)


# --------------------------------------------------------------------------- the report


@dataclass
class Row:
    quantity: str
    t_range: str
    max_abs: float
    max_rel: float
    worst_ratio: float  # max |error| / tolerance
    verdict: str  # "ok", "known", "FAIL", "skipped"
    diagnosis: str = ""
    source: str = ""


@dataclass
class Report:
    adapter: str
    rows: list[Row]

    @property
    def conforms(self) -> bool:
        return all(r.verdict in ("ok", "known", "skipped") for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "FAIL"]

    @property
    def known(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "known"]

    def faults(self) -> set[str]:
        """Names of the faults diagnosed in failing rows."""
        return {r.diagnosis for r in self.failures if r.diagnosis}

    def table(self) -> str:
        head = f"{'quantity':<24} {'t':<14} {'max abs':>10} {'max rel':>10} {'err/tol':>8}  verdict"
        lines = [f"conformance of {self.adapter}", head, "-" * len(head)]
        for r in self.rows:
            if r.verdict == "known":
                continue
            verdict = r.verdict + (f" — {r.diagnosis}" if r.diagnosis else "")
            lines.append(
                f"{r.quantity:<24} {r.t_range:<14} {r.max_abs:>10.3g} "
                f"{r.max_rel:>10.3g} {r.worst_ratio:>8.3g}  {verdict}"
            )
        if self.known:
            lines += ["", "known divergences (documented; not failures):"]
            groups: dict[tuple[str, str], list[str]] = {}
            for r in self.known:
                groups.setdefault((r.diagnosis, r.source), []).append(f"{r.quantity} {r.t_range}")
            for (diag, source), where in groups.items():
                lines.append(f"  - {diag}")
                lines.append(f"      where: {', '.join(where)}")
                lines.append(f"      source: {source}")
        ok = "CONFORMS" if self.conforms else f"DOES NOT CONFORM ({len(self.failures)} rows)"
        lines += ["", ok]
        return "\n".join(lines)


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
    """The chain entries to test: both ends and the middle (C3: 0, 1, 2, T/2, T−2, T−1)."""
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


def check(adapter: Adapter, **kw) -> Report:
    """Compare ``adapter`` with npddpm and return a :class:`Report` (see :func:`_check`).

    Floating-point warnings are silenced inside: an implementation under test may produce
    inf/NaN, and that is what the report is for.
    """
    with np.errstate(all="ignore"):
        return _check(adapter, **kw)


def _check(
    adapter: Adapter,
    *,
    etas=(0.0, 0.5, 1.0),
    seed: int = 0,
    batch: int = 64,
    dim: int = 4,
    k: float | None = None,
) -> Report:
    """Compare ``adapter`` with npddpm and return a :class:`Report`.

    Parameters
    ----------
    etas : DDIM η values to test.
    k : tolerance multiplier (default 16 for float32 implementations, 64 for float64).
    """
    k = k if k is not None else (16.0 if np.dtype(adapter.dtype) == np.float32 else 64.0)
    base = RefConfig(
        mean_type=adapter.mean_type, var_type=adapter.var_type, clip=adapter.clip_denoised
    )
    rows: list[Row] = []
    rows += _check_schedule(adapter)
    rng = np.random.default_rng(seed)
    ab_all = np.asarray(adapter.alphas_cumprod, dtype=np.float64)
    ref0 = _Reference(adapter, base)
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
    for t in _pick(adapter.timesteps):
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
            ref = _Reference(adapter, cfg)
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


def assert_conforms(adapter: Adapter, *, allow_known: bool = True, **kw) -> Report:
    """Run :func:`check` and raise :class:`ConformanceError` (with the table) unless the
    implementation conforms (known divergences allowed unless ``allow_known=False``)."""
    report = check(adapter, **kw)
    if not report.conforms or (not allow_known and report.known):
        raise ConformanceError("\n" + report.table())
    return report
