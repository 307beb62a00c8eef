"""Mutation pass over the reference maths: an independent implementation of q_sample, the
DDPM step and the DDIM step, written as small formulas whose every coefficient is read
through one hook, is mutated coefficient by coefficient — timestep index ±1, sign flipped,
√ dropped (or added), the coefficient rounded to float16 / bfloat16 / float32 — and each
mutant is run through :func:`npddpm.conformance.check`.

Whether a mutation *should* be detected is decided independently of the checker: every call
the checker makes on the unmutated implementation is recorded, replayed through the mutant,
and the change of each checked value (q_sample; a step's mean, i.e. the noise-0 call; its
noise term, the difference of the two calls; x̂₀) is measured against the tolerance
functions of :mod:`npddpm.conformance.tolerances` on exactly those inputs. A mutation that
moves a checked value past its tolerance must make the report not conform.

Run as a script for the whole table (``python tests/conformance/test_mutations.py``), or as
the ``sweep`` test (``NPDDPM_SWEEPS=1``); about 9 minutes on 2 cores. Measured: 518 mutants
(16 coefficients × 7 mutations over 3 configurations, float64 and float32), 457 detected; all
457 that move a checked value past its tolerance are caught, and none that stays within it
is flagged. The 61 undetected move nothing or too little: 24 change the 0/1 noise mask by
rounding or a √ (no-ops), 34 round to float32 inside a float32 implementation (no-ops), 3
round the posterior-mean coefficient on x̂₀ to float16 in float32 (0.43–0.46× the tolerance
at the checked steps). None is excused as a known divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from npddpm.conformance import CallablesAdapter, check
from npddpm.conformance.reference import round_to
from npddpm.conformance.tolerances import default_k, noise_tolerance, step_tolerance
from npddpm.schedules import get_named_beta_schedule

T = 100
BETAS = get_named_beta_schedule("linear", T)
AB = np.cumprod(1.0 - BETAS)
ETAS = (0.0, 0.5, 1.0)
# the chain entries whose steps are checked: both ends (t = 0 and 1 are where the noise mask
# and the cancellation live) and the middle; every mutant's cost is its diagnosis search
STEPS = [99, 98, 97, 60, 30, 3, 2, 1, 0]


@dataclass(frozen=True)
class Mutation:
    coef: str = ""
    kind: str = "none"  # none, shift+1, shift-1, sign, drop_sqrt, add_sqrt, float16, …

    def __str__(self) -> str:
        return "none" if self.kind == "none" else f"{self.coef}: {self.kind}"


@dataclass
class Impl:
    """Ho et al. 2020 / Song et al. 2021 from the papers, float64 tables, computing in
    ``dtype``; every coefficient goes through :meth:`c`."""

    mean_type: str = "eps"
    var_type: str = "fixed_small"
    clip: bool = True
    dtype: type = np.float64
    mutation: Mutation = field(default_factory=Mutation)
    used: set = field(default_factory=set)

    # underlying value u(i) of each coefficient and whether the coefficient is √u
    def _tables(self, i: int, eta: float = 0.0) -> dict[str, tuple[float, bool]]:
        ab = AB[i]
        abp = AB[i - 1] if i > 0 else 1.0
        beta = BETAS[i]
        post = beta * (1 - abp) / (1 - ab)
        sig2 = eta**2 * (1 - abp) / (1 - ab) * (1 - ab / abp)
        return {
            "q.A": (ab, True),
            "q.B": (1 - ab, True),
            "x0.R1": (1 / ab, True),
            "x0.R2": (1 / ab - 1, True),
            "v.A": (ab, True),
            "v.B": (1 - ab, True),
            "eps.R1": (1 / ab, True),
            "eps.R2": (1 / ab - 1, True),
            "mean.C1": (beta * np.sqrt(abp) / (1 - ab), False),
            "mean.C2": ((1 - abp) * np.sqrt(1 - beta) / (1 - ab), False),
            "std.small": (post if i > 0 else BETAS[1] * (1 - AB[0]) / (1 - AB[1]), True),
            "std.large": (beta if i > 0 else BETAS[1] * (1 - AB[0]) / (1 - AB[1]), True),
            "mask": (float(i > 0), False),
            "ddim.AP": (abp, True),
            "ddim.SIG": (sig2, True),
            "ddim.DIR": (max(1 - abp - sig2, 0.0), True),
        }

    def c(self, name: str, t: int, eta: float = 0.0):
        """The coefficient ``name`` at timestep ``t``, mutated if it is the mutation's."""
        self.used.add(name)
        m = self.mutation
        i = t
        if m.coef == name and m.kind.startswith("shift"):
            i = min(max(t + (1 if m.kind == "shift+1" else -1), 0), T - 1)
        u, is_sqrt = self._tables(i, eta)[name]
        if m.coef == name and m.kind == "drop_sqrt":
            is_sqrt = False
        elif m.coef == name and m.kind == "add_sqrt":
            u, is_sqrt = abs(u), True
        v = float(np.sqrt(u)) if is_sqrt else float(u)
        if m.coef == name and m.kind == "sign":
            v = -v
        if m.coef == name and m.kind in ("float16", "bfloat16", "float32"):
            v = float(round_to(np.array([v]), m.kind)[0])
        return self.dtype(v)

    def q_sample(self, x0, t, z):
        return self.c("q.A", t) * x0 + self.c("q.B", t) * z

    def x0_hat(self, mo, x, t):
        if self.mean_type == "eps":
            x0 = self.c("x0.R1", t) * x - self.c("x0.R2", t) * mo
        elif self.mean_type == "v":
            x0 = self.c("v.A", t) * x - self.c("v.B", t) * mo
        else:
            x0 = mo
        return np.clip(x0, -1, 1) if self.clip else x0

    def ddpm(self, mo, x, t, z):
        x0 = self.x0_hat(mo, x, t)
        mean = self.c("mean.C1", t) * x0 + self.c("mean.C2", t) * x
        std = self.c("std.small" if self.var_type == "fixed_small" else "std.large", t)
        return mean + self.c("mask", t) * std * z, x0

    def ddim(self, mo, x, t, eta, z):
        x0 = self.x0_hat(mo, x, t)
        eps = (self.c("eps.R1", t) * x - x0) / self.c("eps.R2", t)  # re-derived from x̂₀
        sig = self.c("ddim.SIG", t, eta)
        out = self.c("ddim.AP", t) * x0 + self.c("ddim.DIR", t, eta) * eps + sig * z
        return out.astype(self.dtype), x0

    def adapter(self) -> CallablesAdapter:
        return CallablesAdapter(
            name=f"mutant[{self.mutation}]",
            alphas_cumprod=AB,
            mean_type=self.mean_type,
            var_type=self.var_type,
            clip_denoised=self.clip,
            dtype=self.dtype,
            q_sample_fn=self.q_sample,
            ddpm_step_fn=self.ddpm,
            ddim_step_fn=self.ddim,
        )


def record(impl: Impl) -> list[tuple]:
    """Run ``check`` on ``impl`` and record every call: (kind, args, output)."""
    calls: list[tuple] = []
    ad = impl.adapter()

    def wrap(kind, fn):
        def f(*args):
            out = fn(*args)
            calls.append((kind, args, out))
            return out

        return f

    ad.q_sample_fn = wrap("q", impl.q_sample)
    ad.ddpm_step_fn = wrap("ddpm", impl.ddpm)
    ad.ddim_step_fn = wrap("ddim", impl.ddim)
    report = check(ad, steps=STEPS)
    assert report.conforms and not report.known, report.table()
    return calls


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def moved_ratio(mutant: Impl, calls: list[tuple]) -> float:
    """max over the recorded calls of |mutant − original| / tolerance, per checked value."""
    k = default_k(mutant.dtype)
    dt = mutant.dtype
    worst = 0.0
    pending: dict = {}
    with np.errstate(all="ignore"):
        for kind, args, out in calls:
            if kind == "q":
                x0, t, z = args
                d = _f64(mutant.q_sample(*args)) - _f64(out)
                tol = step_tolerance(AB[t], _f64(x0), _f64(z), dtype=dt, k=k)
                worst = max(worst, _ratio(d, tol))
                continue
            fn = mutant.ddpm if kind == "ddpm" else mutant.ddim
            mo, x, t = args[0], args[1], args[2]
            z = args[-1]
            new = fn(*args)
            D = x.shape[1]
            mo_mean = _f64(mo)[:, :D]
            tol = step_tolerance(AB[t], _f64(x), mo_mean, dtype=dt, k=k)
            worst = max(worst, _ratio(_f64(new[1]) - _f64(out[1]), tol))  # x̂₀
            key = (kind, t, args[3] if kind == "ddim" else None)
            if not np.any(z):  # the noise-0 call: the mean, then the noise term of the pair
                worst = max(worst, _ratio(_f64(new[0]) - _f64(out[0]), tol))
                if key in pending:
                    za, xa_old, xa_new = pending.pop(key)
                    old_d = xa_old - _f64(out[0])
                    new_d = xa_new - _f64(new[0])
                    abp = AB[t - 1] if t > 0 else 1.0
                    sigma = float(np.linalg.norm(old_d) / max(np.linalg.norm(za), 1e-300))
                    ntol = noise_tolerance(
                        AB[t], abp, sigma, za, np.zeros_like(za), xa_old, _f64(out[0]),
                        dtype=dt, k=k,
                    )
                    worst = max(worst, _ratio(new_d - old_d, ntol))
            else:
                pending[key] = (_f64(z), _f64(out[0]), _f64(new[0]))
    return worst


def _ratio(d, tol) -> float:
    if not np.all(np.isfinite(d)):
        return np.inf
    return float(np.max(np.abs(d) / tol))


KINDS = ("shift+1", "shift-1", "sign", "sqrt", "float16", "bfloat16", "float32")


def mutations(impl: Impl, calls: list[tuple]) -> list[Mutation]:
    """Every mutation of every coefficient the unmutated run read."""
    out = []
    for name in sorted(impl.used):
        _, is_sqrt = impl._tables(5)[name]
        for kind in KINDS:
            if kind == "sqrt":
                kind = "drop_sqrt" if is_sqrt else "add_sqrt"
            out.append(Mutation(name, kind))
    return out


@dataclass
class Result:
    mutation: Mutation
    moved: float
    detected: bool
    diagnosis: str


def mutation_pass(config: dict, only: set[str] | None = None) -> list[Result]:
    base = Impl(**config)
    calls = record(base)
    results = []
    for m in mutations(base, calls):
        if only is not None and str(m) not in only:
            continue
        mutant = Impl(**config, mutation=m)
        moved = moved_ratio(mutant, calls)
        r = check(mutant.adapter(), steps=STEPS)
        diag = "; ".join(sorted(r.faults())) or ("known: " + "; ".join(
            sorted({row.diagnosis for row in r.known})) if r.known else "")
        results.append(Result(m, moved, not r.conforms, diag))
    return results


CONFIGS = {
    "eps fixed_small clip": dict(mean_type="eps", var_type="fixed_small", clip=True),
    "v fixed_large noclip": dict(mean_type="v", var_type="fixed_large", clip=False),
    "x0 fixed_small clip": dict(mean_type="x0", var_type="fixed_small", clip=True),
}
DTYPES = {"float64": np.float64, "float32": np.float32}


def _assert_pass(results: list[Result]) -> None:
    missed = [r for r in results if r.moved > 1 and not r.detected]
    assert not missed, [(str(r.mutation), r.moved) for r in missed]
    # nothing that leaves every checked value within its tolerance is flagged either
    false = [r for r in results if r.moved <= 1 and r.detected]
    assert not false, [(str(r.mutation), r.moved, r.diagnosis) for r in false]


FAST = {
    "q.A: shift+1",
    "q.B: drop_sqrt",
    "x0.R2: sign",
    "mean.C1: float16",
    "std.small: shift-1",
    "mask: shift+1",
    "mask: shift-1",
    "ddim.DIR: sign",
    "ddim.SIG: bfloat16",
    "eps.R1: float32",
}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_mutation_subset_detected(dtype):
    cfg = dict(CONFIGS["eps fixed_small clip"], dtype=DTYPES[dtype])
    results = mutation_pass(cfg, only=FAST)
    assert len(results) == len(FAST)
    _assert_pass(results)


@pytest.mark.sweep
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_mutation_pass(config, dtype):
    _assert_pass(mutation_pass(dict(CONFIGS[config], dtype=DTYPES[dtype])))


if __name__ == "__main__":
    for cname, cfg in CONFIGS.items():
        for dname, dt in DTYPES.items():
            res = mutation_pass(dict(cfg, dtype=dt))
            det = sum(r.detected for r in res)
            moved = sum(r.moved > 1 for r in res)
            print(f"\n## {cname}, {dname}: {det}/{len(res)} detected, {moved} moved past tol")
            print("| mutation | moved max ratio | detected | diagnosis |\n|---|---|---|---|")
            for r in res:
                print(f"| {r.mutation} | {r.moved:.3g} | {r.detected} | {r.diagnosis} |")
