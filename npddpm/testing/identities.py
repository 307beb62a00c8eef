r"""Every schedule identity npddpm checks for itself, run on a user's own arrays.

:func:`check_schedule_identities` takes β or ᾱ (or both, and any derived tables under
npddpm's names) in whatever precision the user computes them, and returns a
:class:`IdentityReport`: one row per identity, each with its worst error/tolerance ratio and
where it is. :func:`assert_schedule_identities` raises with the table.

The identities (t = 0..T−1, ᾱ_{−1} = 1, α_t = 1 − β_t):

==============================  ===============================================================
identity                        statement
==============================  ===============================================================
``betas in (0, 1]``             0 < β_t ≤ 1, finite (β_{T−1} = 1 only at zero terminal SNR)
``alphas_cumprod = cumprod``    ᾱ_t = ∏_{s≤t} (1 − β_s)
``alphas_cumprod decreasing``   1 > ᾱ_0 > ᾱ_1 > … > ᾱ_{T−1} ≥ 0 (= 0 only at zero SNR)
``beta from alphas_cumprod``    β_t = 1 − ᾱ_t/ᾱ_{t−1}
``posterior_variance``          β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t), and 0 ≤ β̃_t ≤ β_t
``posterior mean of x_0``       c1_t + c2_t·√ᾱ_t = √ᾱ_{t−1}  (μ̃ maps the noiseless x_t back)
``posterior marginal variance`` c2_t²(1 − ᾱ_t) + β̃_t = 1 − ᾱ_{t−1}  (q(x_{t−1}) is recovered)
``log-SNR decreasing``          λ_t = ½ log(ᾱ_t/(1 − ᾱ_t)) strictly decreasing
``VE sigma``                    σ_VE,t = √(1/ᾱ_t − 1) (given as ``sigmas``), increasing
``respacing preserves ᾱ``       the user's β' of a chain τ has ∏(1 − β') = ᾱ_τ
``zero terminal SNR``           where ᾱ_{T−1} = 0: √ᾱ_{T−1} = 0 and β_{T−1} = 1
==============================  ===============================================================

(c1, c2 are ``posterior_mean_coef1``/``coef2``, Ho et al. 2020 Eq. 7.) The derived tables a
user may pass, each compared with its definition from the user's own ᾱ: ``sqrt_alphas_cumprod``,
``sqrt_one_minus_alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
``sqrt_recipm1_alphas_cumprod``, ``posterior_variance``, ``posterior_log_variance_clipped``
(log β̃ with t = 0 replaced by t = 1, improved-diffusion), ``posterior_mean_coef1``,
``posterior_mean_coef2``, ``sigmas``.

Tolerances are conditioning-aware, at the precision of the arrays (or ``dtype=``): a table
computed in precision eps from ᾱ has relative error ``k·eps·(t + 2)`` from the cumulative
product, amplified by 1/(1 − ᾱ) where 1 − ᾱ is formed and by 1/β where β is derived from a
ratio of ᾱ's (the bounds of :mod:`npddpm.conformance.tolerances`; k = 16 below float64, 64
in float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

__all__ = [
    "IdentityReport",
    "IdentityRow",
    "assert_schedule_identities",
    "check_schedule_constructor",
    "check_schedule_identities",
]

Array = np.ndarray
_DERIVED = (
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "sigmas",
)


@dataclass
class IdentityRow:
    """One identity over the indices it covers: worst error/tolerance and where."""

    identity: str
    t_range: str
    worst_ratio: float
    ok: bool
    where: str = ""


@dataclass
class IdentityReport:
    """The rows of :func:`check_schedule_identities`; ``ok`` when every row holds."""

    rows: list[IdentityRow]
    dtype: str

    @property
    def ok(self) -> bool:
        """True when every identity holds."""
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[IdentityRow]:
        """The rows that do not hold."""
        return [r for r in self.rows if not r.ok]

    def table(self) -> str:
        """The report as text, one line per identity, then ``OK`` or ``FAILED (n)``."""
        head = f"{'identity':<32} {'t':<12} {'err/tol':>9}  verdict"
        lines = [f"schedule identities ({self.dtype})", head, "-" * len(head)]
        for r in self.rows:
            v = "ok" if r.ok else f"FAIL [worst at {r.where}]"
            lines.append(f"{r.identity:<32} {r.t_range:<12} {r.worst_ratio:>9.3g}  {v}")
        lines.append("OK" if self.ok else f"FAILED ({len(self.failures)})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _as_table(a: Any, name: str) -> Array:
    arr = np.asarray(a)
    if arr.ndim != 1 or arr.size < 2 or arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a 1-D float array of at least 2 steps, got "
            f"{arr.dtype} of shape {arr.shape}; pass the table for t = 0..T−1"
        )
    return arr


def check_schedule_identities(
    *,
    betas: Any = None,
    alphas_cumprod: Any = None,
    timesteps: Sequence[int] | None = None,
    respaced_betas: Any = None,
    dtype: Any = None,
    k: float | None = None,
    **tables: Any,
) -> IdentityReport:
    """Check every schedule identity on the user's arrays (see the module docstring).

    Parameters
    ----------
    betas, alphas_cumprod : array (T,), optional
        At least one. Each is checked in the precision it is given in.
    timesteps, respaced_betas : sequence of int and array (N,), optional
        A respaced chain (ascending or descending) and the β the user's code computes for it;
        checks that respacing preserves ᾱ: ∏(1 − β') = ᾱ on the chain.
    dtype : numpy dtype, optional
        The precision the arrays were computed in (default: that of ``alphas_cumprod``, else
        of ``betas``).
    k : float, optional
        Tolerance multiplier (default 16 below float64, 64 in float64).
    **tables : array (T,)
        Derived tables under npddpm's names (``posterior_variance``, ``sigmas``, …).

    Returns
    -------
    IdentityReport
    """
    if betas is None and alphas_cumprod is None:
        raise TypeError("check_schedule_identities needs betas=, alphas_cumprod= or both")
    unknown = set(tables) - set(_DERIVED)
    if unknown:
        raise TypeError(
            f"unknown table(s) {sorted(unknown)}; the derived tables are: {', '.join(_DERIVED)}"
        )
    b_in = None if betas is None else _as_table(betas, "betas")
    ab_in = None if alphas_cumprod is None else _as_table(alphas_cumprod, "alphas_cumprod")
    if b_in is not None and ab_in is not None and b_in.size != ab_in.size:
        raise ValueError(f"betas has {b_in.size} steps but alphas_cumprod has {ab_in.size}")
    given = ab_in if ab_in is not None else b_in
    assert given is not None
    dt = np.dtype(dtype if dtype is not None else given.dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    eps = float(np.finfo(dt).eps)
    kk = (64.0 if dt == np.float64 else 16.0) if k is None else float(k)
    with np.errstate(all="ignore"):
        return _check(b_in, ab_in, timesteps, respaced_betas, dt, eps, kk, tables)


def _check(b_in, ab_in, timesteps, respaced_betas, dt, eps, k, tables) -> IdentityReport:
    rows: list[IdentityRow] = []
    T = (ab_in if ab_in is not None else b_in).size
    t = np.arange(T)
    cum = k * eps * (t + 2.0)  # relative error of a cumulative product of t + 1 factors

    def row(name: str, err: Array, tol: Array, idx: Array | None = None) -> None:
        err = np.asarray(err, dtype=np.float64)
        tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), err.shape)
        idx = t if idx is None else idx
        ratio = np.where(np.isnan(err), np.inf, err / np.maximum(tol, 1e-300))
        if ratio.size == 0:
            return
        i = int(np.argmax(ratio))
        worst = float(ratio[i])
        span = f"{int(idx[0])}…{int(idx[-1])}" if ratio.size > 1 else f"{int(idx[0])}"
        rows.append(IdentityRow(name, span, worst, worst <= 1.0, f"t={int(idx[i])}"))

    def bad(name: str, mask: Array) -> None:  # a property, not a tolerance: 0 or inf
        row(name, np.where(mask, np.inf, 0.0), np.ones(mask.shape))

    b64 = None if b_in is None else b_in.astype(np.float64)
    if b64 is not None:
        bad("betas in (0, 1]", ~np.isfinite(b64) | (b64 <= 0) | (b64 > 1))
    if ab_in is not None:
        ab = ab_in.astype(np.float64)
        if b64 is not None:
            ref = np.cumprod(1.0 - b64)
            row("alphas_cumprod = cumprod", np.abs(ab - ref), cum * np.maximum(ref, eps))
    else:
        assert b64 is not None  # check_schedule_identities required one of the two
        ab = np.cumprod(1.0 - b64)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    zero_snr = bool(ab[-1] == 0.0)
    decreasing = np.concatenate([[ab[0] >= 1.0], np.diff(ab) >= 0]) | (ab < 0) | ~np.isfinite(ab)
    bad("alphas_cumprod decreasing", decreasing)
    beta = 1.0 - ab / ab_prev
    om, om_prev = 1.0 - ab, 1.0 - ab_prev
    # relative error of 1 − a formed from a table value a: eps·a/(1 − a)
    c_om = ab / np.maximum(om, 1e-300)
    c_beta = (ab / ab_prev) / np.maximum(beta, 1e-300)
    if b64 is not None and ab_in is not None:
        row(
            "beta from alphas_cumprod",
            np.abs(b64 - beta),
            # ᾱ_t/ᾱ_{t−1} of a table built by a cumulative product carries the rounding of
            # the last product and of (1 − β_t), ≈ eps·ratio; 1 − ratio keeps it absolute
            k * eps * (np.abs(beta) + 2.0 * (ab / ab_prev)),
        )
    tilde = beta * om_prev / np.maximum(om, 1e-300)
    last = T - 1 if zero_snr else T  # at zero SNR the last step's posterior is degenerate
    inside = t[:last]
    c_post = 1.0 + c_om + c_beta + (t + 2.0)  # relative error of a posterior table

    def user(name: str) -> Array | None:
        if name not in tables:
            return None
        got = _as_table(tables[name], name).astype(np.float64)
        if got.size != T:
            raise ValueError(f"{name} has {got.size} steps, not {T}")
        return got

    pv, c1, c2 = (
        user(n) for n in ("posterior_variance", "posterior_mean_coef1", "posterior_mean_coef2")
    )
    if pv is not None:  # the user's β̃ against the user's β (or the one their ᾱ implies)
        b_ref = b64 if b64 is not None else beta
        slack = k * eps * c_post * np.maximum(b_ref, eps)
        bad("posterior_variance ≤ beta", ((pv < -slack) | (pv > b_ref + slack))[:last])
    if c1 is not None and c2 is not None:
        lhs = c1 + c2 * np.sqrt(ab)
        tol = k * eps * c_post * (np.abs(c1) + np.abs(c2) * np.sqrt(ab) + np.sqrt(ab_prev))
        row("posterior mean of x_0", np.abs(lhs - np.sqrt(ab_prev))[:last], tol[:last], inside)
        if pv is not None:
            lhs = c2**2 * om + pv
            tol = k * eps * c_post * (c2**2 * om + np.abs(pv) + om_prev)
            row("posterior marginal variance", np.abs(lhs - om_prev)[:last], tol[:last], inside)
    snr_t = t[: T - 1] if zero_snr else t
    lam = 0.5 * (np.log(ab[snr_t]) - np.log(om[snr_t]))
    bad_lam = np.concatenate([[False], np.diff(lam) >= 0])
    row("log-SNR decreasing", np.where(bad_lam, np.inf, 0.0), np.ones(bad_lam.shape), snr_t)
    if zero_snr:
        bad("zero terminal SNR", (t == T - 1) & (beta != 1.0) & (np.abs(beta - 1.0) > k * eps))
    # derived tables, each against its definition from the user's ᾱ
    coef1 = np.sqrt(ab_prev) * beta / np.maximum(om, 1e-300)
    coef2 = np.sqrt(1.0 - beta) * om_prev / np.maximum(om, 1e-300)
    defs = {
        "sqrt_alphas_cumprod": (np.sqrt(ab), cum),
        "sqrt_one_minus_alphas_cumprod": (np.sqrt(om), 0.5 * cum * (1 + c_om)),
        "sqrt_recip_alphas_cumprod": (1.0 / np.sqrt(ab), cum),
        "sqrt_recipm1_alphas_cumprod": (
            np.sqrt(1.0 / ab - 1.0),
            0.5 * cum * (1 + 1 / np.maximum(om, 1e-300)),
        ),
        "posterior_variance": (tilde, k * eps * c_post),
        "posterior_mean_coef1": (coef1, k * eps * c_post),
        "posterior_mean_coef2": (coef2, k * eps * c_post),
        "sigmas": (np.sqrt(om / ab), 0.5 * cum * (1 + c_om)),
    }
    tl = np.log(np.concatenate([[tilde[1]], tilde[1:]]))
    for name in tables:
        got = user(name)
        assert got is not None
        if name == "posterior_log_variance_clipped":
            tol_abs = k * eps * np.concatenate([[c_post[1]], c_post[1:]])
            row(name, np.abs(got - tl)[:last], tol_abs[:last], inside)
            continue
        ref, rel = defs[name]
        fin = np.isfinite(ref)
        err = np.where(fin, np.abs(got - ref), np.where(got == ref, 0.0, np.inf))
        row(name, err, rel * np.maximum(np.abs(np.where(fin, ref, 1.0)), eps))
        if name == "sigmas":
            bad("VE sigma increasing", np.concatenate([[False], np.diff(got) <= 0]))
    if timesteps is not None:
        chain = sorted({int(v) for v in timesteps})
        if not chain or chain[0] < 0 or chain[-1] >= T:
            raise ValueError(f"timesteps must lie in [0, {T}), got {chain[:4]}…")
        if respaced_betas is None:
            raise TypeError(
                "timesteps= needs respaced_betas=, the β of the respaced chain your code "
                "computes (improved-diffusion's SpacedDiffusion.betas)"
            )
        rb = _as_table(respaced_betas, "respaced_betas").astype(np.float64)
        if rb.size != len(chain):
            raise ValueError(f"respaced_betas has {rb.size} steps; the chain has {len(chain)}")
        sub, idx = ab[chain], np.asarray(chain)
        again = np.cumprod(1.0 - rb)
        row("respacing preserves ᾱ", np.abs(again - sub), cum[idx] * np.maximum(sub, eps), idx)
    return IdentityReport(rows, dt.name)


def assert_schedule_identities(**kwargs: Any) -> IdentityReport:
    """:func:`check_schedule_identities`, raising AssertionError with the table unless every
    identity holds."""
    report = check_schedule_identities(**kwargs)
    if not report.ok:
        raise AssertionError("\n" + report.table())
    return report


def check_schedule_constructor(
    constructor: Any,
    *,
    T: Any = (2, 1000),
    params: dict[str, Any] | None = None,
    max_examples: int = 50,
) -> None:
    """The property form: hypothesis draws T (and the constructor's parameters) and every
    schedule identity must hold on what ``constructor(T, **params)`` returns.

    Parameters
    ----------
    constructor : callable
        ``constructor(T, **params)`` → β, shape (T,), or a dict of tables accepted by
        :func:`check_schedule_identities` (``betas``, ``alphas_cumprod``, derived tables).
    T : (int, int) or hypothesis strategy
        The range of T (inclusive), or a strategy for it.
    params : dict of name → hypothesis strategy, optional
        Strategies for the constructor's keyword parameters.
    max_examples : int

    Raises
    ------
    AssertionError
        With the smallest failing (T, parameters) hypothesis found and its report.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    t_strategy = st.integers(*T) if isinstance(T, tuple) else T
    strategies = dict(params or {})
    found: list[str] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(t=t_strategy, kw=st.fixed_dictionaries(strategies))
    def prop(t: int, kw: dict[str, Any]) -> None:
        args = ", ".join([str(t), *(f"{k}={v!r}" for k, v in kw.items())])
        try:
            out = constructor(t, **kw)
        except Exception as exc:  # the constructor under test raised: a finding
            found[:] = [f"constructor({args}) raised {type(exc).__name__}: {exc}"]
            raise AssertionError(found[0]) from None
        tabs = dict(out) if isinstance(out, dict) else {"betas": out}
        first = tabs.get("betas", tabs.get("alphas_cumprod"))
        shape = None if first is None else np.shape(cast(Any, first))
        if shape != (t,):
            found[:] = [f"constructor({args}) returned shape {shape}, expected ({t},)"]
            raise AssertionError(found[0])
        report = check_schedule_identities(**tabs)
        if not report.ok:
            found[:] = [f"constructor({args}) breaks a schedule identity:\n{report.table()}"]
            raise AssertionError(found[0])

    try:
        prop()
    except AssertionError:
        if not found:
            raise
        raise AssertionError(found[0]) from None
