"""``check_solver`` on diffusers 0.42.1's solver schedulers: the real ones (their verdicts as
measured, docs/FINDINGS.md §1, §8–11) and seeded faults in each style a validator meets, each
failing by ≥ 10× its tolerance (or in the contract, which has no tolerance to scale)."""

import math
import warnings

import pytest

from npddpm.conformance import DiffusersSolverAdapter, SolverClaim, check_solver

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore")]
torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def _check(cls, cfg=None, claim=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check_solver(DiffusersSolverAdapter(cls, cfg or {}, claim=claim), **kw)


@pytest.mark.parametrize(
    "cls,cfg",
    [
        ("EulerDiscreteScheduler", {}),
        ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
        ("HeunDiscreteScheduler", {}),
        ("DPMSolverMultistepScheduler", {}),
        ("UniPCMultistepScheduler", {}),
        ("LMSDiscreteScheduler", {}),
        ("FlowMatchEulerDiscreteScheduler", {}),
    ],
)
def test_conforming_schedulers_conform(cls, cfg):
    r = _check(cls, cfg, n_max=40)
    assert r.conforms, r.table()
    agree = [row for row in r.rows if row.quantity.startswith("agreement")]
    assert len(agree) == 4 and all(row.worst_ratio <= 1 for row in agree), r.table()
    assert {row.quantity for row in agree} == {"agreement", "agreement (float32)"}


def test_third_order_multistep_is_named_and_fails():
    r = _check("DPMSolverMultistepScheduler", {"solver_order": 3}, n_max=5)
    bad = [row for row in r.failures if row.quantity.startswith("agreement")]
    assert len(bad) == 4, r.table()  # float64 and float32, N = 10 and 25
    assert all("φ₃" in row.diagnosis and row.worst_ratio >= 10 for row in bad), r.table()
    # located at the first third-order step (the third step: orders 1, 2, then 3)
    assert bad[0].where.startswith("step 3 of 10"), r.table()


def test_unipc_bh1_is_nan_at_the_final_zero_sigma():
    r = _check("UniPCMultistepScheduler", {"solver_type": "bh1"}, n_max=5)
    assert "contract: loop" in {row.quantity for row in r.failures}, r.table()
    ok = _check("UniPCMultistepScheduler", {"solver_type": "bh1",
                                             "final_sigmas_type": "sigma_min"}, n_max=5)
    assert "contract: loop" not in {row.quantity for row in ok.failures}, ok.table()


def test_log_linear_euler_breaks_the_contract():
    r = _check("EulerDiscreteScheduler", {"interpolation_type": "log_linear"}, n_max=5)
    assert {"contract: count", "contract: final level", "contract: timestep↔σ"} <= {
        row.quantity for row in r.failures
    }, r.table()


def test_trailing_spacing_n61_is_reported():
    r = _check("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing"}, n_max=62,
               agree_steps=(), order_steps=(10, 20, 40))
    count = [row for row in r.failures if row.quantity == "contract: count"]
    assert count and count[0].t_range == "N=61" and "set_timesteps(61)" in count[0].where


# ------------------------------------------------------------------------- seeded faults


class EpsScaled(diffusers.EulerDiscreteScheduler):
    """The model output 1 % too large inside the step."""

    def step(self, model_output, *a, **k):
        return super().step(model_output * 1.01, *a, **k)


class SigmaShifted(diffusers.EulerDiscreteScheduler):
    """Its σ list 2 % off the σ of its timesteps (a wrong interpolation)."""

    def set_timesteps(self, *a, **k):
        super().set_timesteps(*a, **k)
        self.sigmas[1:-1] *= 1.02


class StopsShort(diffusers.EulerDiscreteScheduler):
    """The final level is not zero noise."""

    def set_timesteps(self, *a, **k):
        super().set_timesteps(*a, **k)
        self.sigmas[-1] = 0.5 * self.sigmas[-2]


class NoCorrector(diffusers.UniPCMultistepScheduler):
    """The corrector silently off while the config says on."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.disable_corrector = list(range(1000))


class ScaledState(diffusers.HeunDiscreteScheduler):
    """Every step's output 0.1 % too large."""

    def step(self, model_output, t, sample, **k):
        out = super().step(model_output, t, sample, **k)
        return type(out)(prev_sample=out.prev_sample * (1 + 1e-3))


@pytest.mark.parametrize(
    "cls,cfg,claim,quantity",
    [
        (EpsScaled, {}, None, "agreement"),
        (SigmaShifted, {}, None, "contract: timestep↔σ"),
        (StopsShort, {}, None, "contract: final level"),
        (NoCorrector, {}, None, "agreement"),
        (ScaledState, {}, None, "agreement"),
        # a first-order solver passed off as second order
        ("DPMSolverMultistepScheduler", {"solver_order": 1},
         SolverClaim("dpm_solver", {"order": 2}, order=2), "order"),
    ],
    ids=["eps_scaled", "sigma_shifted", "stops_short", "no_corrector", "scaled_state",
         "order1_claims_2"],
)
def test_seeded_faults_fail_with_margin(cls, cfg, claim, quantity):
    r = _check(cls, cfg, claim, n_max=12)
    rows = [row for row in r.failures if row.quantity == quantity]
    assert rows, r.table()
    if quantity == "agreement":
        assert min(row.worst_ratio for row in rows) >= 10, r.table()
    if quantity == "order":
        assert rows[0].got < 2 - 0.3 * 3, r.table()  # measured ~1.0: ≥ 3 margins short


class EpsLate(diffusers.EulerDiscreteScheduler):
    """The model output 1 % too large from the sixth step on."""

    def step(self, model_output, *a, **k):
        scale = 1.01 if (self.step_index or 0) >= 5 else 1.0
        return super().step(model_output * scale, *a, **k)


def test_a_late_fault_is_located_at_its_step():
    r = _check(EpsLate, n_max=3)
    rows = [row for row in r.failures if row.quantity == "agreement"]
    assert rows and all(row.where.startswith("step 6 of") for row in rows), r.table()


def test_not_an_adapter_is_a_type_error():
    with pytest.raises(TypeError, match="SolverAdapter"):
        check_solver(object())  # type: ignore[arg-type]


def test_cli_checks_one_solver_scheduler_and_writes_the_json_report(tmp_path, capsys):
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    import npddpm.conformance as c
    from npddpm.cli import main

    out = tmp_path / "solver.json"
    argv = ["conform", "diffusers", "--scheduler", "UniPCMultistepScheduler",
            "--option", "solver_type=bh1", "--quiet", "--json", str(out)]
    assert main(argv) == 1  # the NaN at the final σ = 0 (docs/FINDINGS.md §10)
    assert "contract: loop" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(Path(c.__file__).with_name("report_schema.json")
                                        .read_text()))
    rows = doc["reports"][0]["rows"]
    assert {"contract: loop", "agreement", "order"} <= {r["quantity"] for r in rows}


@pytest.mark.parametrize(
    "cfg,claim,passes",
    [
        ({}, None, True),
        ({"algorithm_type": "sde-dpmsolver++"}, None, True),
        ({"algorithm_type": "sde-dpmsolver++", "solver_order": 1}, None, True),
        # the law of another method: η = 0.8 ancestral steps, a first-order SDE step
        ({}, SolverClaim("euler_ancestral", {"eta": 0.8}, stochastic=True), False),
        ({"algorithm_type": "sde-dpmsolver++"},
         SolverClaim("dpm_solver", {"order": 1, "algorithm": "sde-dpmsolver++"},
                     stochastic=True), False),
    ],
    ids=["euler_ancestral", "sde_dpm2m", "sde_dpm1", "claims_eta0.8", "claims_sde1"],
)
def test_stochastic_schedulers_law(cfg, claim, passes):
    """P(false failure) ≤ 3e-6 per row (solver_check._law_row); the wrong claims fail at
    2.3× and 13.8× the 5-standard-error limit (measured)."""
    cls = "DPMSolverMultistepScheduler" if cfg else "EulerAncestralDiscreteScheduler"
    r = _check(cls, cfg, claim, n_max=3)
    law = next(row for row in r.rows if row.quantity == "law")
    assert (law.verdict == "ok") == passes, r.table()
    mix = next(row for row in r.rows if row.quantity == "law (mixture)")
    # the mixture two-sample test (P(false failure) ≤ 1e-4) passes the real ones and catches
    # a first-order step for a second-order one (p ≈ 3e-67); η = 0.8 for 1 (p ≈ 0.006 at
    # n = 20,000) is beyond its power, which is why the exact one-Gaussian moments come first
    if passes:
        assert mix.verdict == "ok", r.table()
    elif "sde" in str(cfg):
        assert mix.verdict == "FAIL", r.table()


def _karras(n):
    import numpy as np

    ramp = np.linspace(0, 1, n)
    return np.append((80 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7, 0.0)


def _euler_step(eps, i, x, sigmas):
    return x + (sigmas[i + 1] - sigmas[i]) * eps  # dx̃/dσ̃ = ε̂ in the VE scale


def _euler_step_wrong(eps, i, x, sigmas):
    return x + (sigmas[i + 1] - sigmas[i]) * 1.002 * eps


@pytest.mark.parametrize("step,ok", [(_euler_step, True), (_euler_step_wrong, False)])
def test_a_step_function_is_checked(step, ok):
    from npddpm.conformance import StepFunctionAdapter

    r = check_solver(StepFunctionAdapter(_karras, step, SolverClaim("euler", order=1),
                                         name="my euler"), n_max=20)
    assert r.conforms == ok, r.table()
    if not ok:
        rows = [row for row in r.failures if row.quantity == "agreement"]
        assert rows and min(row.worst_ratio for row in rows) >= 10, r.table()
        assert rows[0].where.startswith("step 1 of"), r.table()


def test_report_v3_top_level_checks_order_and_contract_violations(tmp_path):
    # Version 3 of the JSON report: every check at the top beside its configuration, the
    # implementation's name and version, and per solver report its claimed and measured
    # order and its contract violations (here a σ list 2 % off its timesteps: contract fails).
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    import npddpm.conformance as c
    from npddpm.conformance import write_reports

    good = _check("EulerDiscreteScheduler", n_max=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = check_solver(
            DiffusersSolverAdapter(SigmaShifted, {}, claim=None, name="diffusers SigmaShifted"),
            n_max=10,
        )
    auto = json.loads(write_reports(tmp_path / "a.json", [good, bad]).read_text())
    assert auto["implementation"] == {"name": "diffusers", "version": diffusers.__version__}
    path = write_reports(tmp_path / "r.json", [good, bad], implementation=("mysolvers", "0.1"))
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, json.loads(Path(c.__file__).with_name("report_schema.json")
                                        .read_text()))
    assert doc["version"] == 3 and doc["implementation"] == {"name": "mysolvers", "version": "0.1"}
    assert len(doc["checks"]) == len(good.rows) + len(bad.rows)
    assert {ch["configuration"] for ch in doc["checks"]} == {good.adapter, bad.adapter}
    g, b = doc["reports"]
    assert g["order"]["claimed"] == 1.0 and g["order"]["verdict"] == "ok"
    assert abs(g["order"]["measured"] - 1.0) < 0.3 and g["contract_violations"] == []
    assert b["contract_violations"], b["rows"]
    v = b["contract_violations"][0]
    assert v["check"] and v["N"] and v["problem"] and v["reproduction"]


# ------------------------------------------------ DPMSolverSinglestep: its order list


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"solver_order": 3},
        {"solver_type": "heun"},
        {"solver_order": 3, "solver_type": "heun"},
        {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"},
        {"final_sigmas_type": "sigma_min", "lower_order_final": False},
    ],
)
def test_singlestep_agrees_with_the_grouped_reference(cfg):
    # npddpm's dpm_solver(method="singlestep", orders="diffusers") on the scheduler's own
    # levels: measured ≤ 0.46 of the tolerance (float32 state, dpmsolver order 3), most ≤ 0.06
    r = _check("DPMSolverSinglestepScheduler", cfg, n_max=12)
    agree = [row for row in r.rows if row.quantity.startswith("agreement")]
    assert len(agree) == 4 and all(row.worst_ratio <= 1 for row in agree), r.table()
    assert r.conforms, r.table()


class AllFirstOrder(diffusers.DPMSolverSinglestepScheduler):
    """Its order list all 1 while the config says solver_order=2."""

    def get_order_list(self, num_inference_steps):
        return [1] * num_inference_steps


class SinglestepEpsScaled(diffusers.DPMSolverSinglestepScheduler):
    def step(self, model_output, *a, **k):
        return super().step(model_output * 1.01, *a, **k)


@pytest.mark.parametrize(
    "cls,cfg,claim_kw",
    [
        (AllFirstOrder, {}, None),
        (SinglestepEpsScaled, {}, None),
        # heun's second-order form run while midpoint (the default) is claimed
        ("DPMSolverSinglestepScheduler", {"solver_type": "heun"}, {"solver_type": "midpoint"}),
    ],
)
def test_singlestep_faults_fail_agreement_by_10x(cls, cfg, claim_kw):
    # measured: all-first-order 2590-7900x, eps 1 % 2610-6690x, heun-as-midpoint 520-3900x;
    # each located at the step where the state first differs
    claim = None
    if claim_kw:
        kw = {"method": "singlestep", "order": 2, "algorithm": "dpmsolver++",
              "solver_type": "midpoint", "orders": "diffusers", "lower_order_final": True}
        claim = SolverClaim("dpm_solver", {**kw, **claim_kw}, order=2)
    r = _check(cls, cfg, claim=claim, n_max=12)
    agree = [row for row in r.rows if row.quantity.startswith("agreement")]
    assert agree, r.table()
    assert all(row.verdict == "FAIL" and row.worst_ratio >= 10 for row in agree), r.table()
    assert agree[0].where.startswith("step "), r.table()


# ------------------------------------------------------------------------------ DEIS


@pytest.mark.parametrize(
    "cfg", [{}, {"solver_order": 1}, {"timestep_spacing": "trailing"}]
)
def test_deis_agrees_with_npddpm_deis(cfg):
    # npddpm's deis (Lagrange basis in log ρ integrated by polynomial algebra): measured
    # ≤ 0.131 of the tolerance at N = 10 and 25, float64 and float32 state
    r = _check("DEISMultistepScheduler", cfg, n_max=12)
    agree = [row for row in r.rows if row.quantity.startswith("agreement")]
    assert len(agree) == 4 and all(row.worst_ratio <= 1 for row in agree), r.table()
    assert r.conforms, r.table()


class Sigmas64(diffusers.DEISMultistepScheduler):
    """The same scheduler with its σ list in float64 (its coefficients then in float64)."""

    def set_timesteps(self, *a, **k):
        super().set_timesteps(*a, **k)
        self.sigmas = self.sigmas.to(torch.float64)


def test_deis_third_order_loses_its_coefficients_to_float32_cancellation():
    # docs/FINDINGS.md §13: each third-order coefficient is a difference of two closed-form
    # antiderivatives ~650x larger than it, computed from float32 σ: at N = 100 the loop is
    # 13.7x its tolerance, from the first third-order step (step 3). The cause is shown by
    # the same class with float64 σ, which agrees to 7e-9 of the tolerance.
    bad = _check("DEISMultistepScheduler", {"solver_order": 3}, n_max=3, agree_steps=(100,),
                 order_steps=(10, 20, 40))
    row = next(r for r in bad.rows if r.quantity == "agreement")
    assert row.verdict == "FAIL" and row.worst_ratio >= 10 and row.where.startswith("step 3 "), (
        bad.table())
    good = _check(Sigmas64, {"solver_order": 3}, n_max=3, agree_steps=(100,),
                  order_steps=(10, 20, 40))
    row = next(r for r in good.rows if r.quantity == "agreement")
    assert row.worst_ratio <= 1e-6, good.table()


class DeisEpsScaled(diffusers.DEISMultistepScheduler):
    def step(self, model_output, *a, **k):
        return super().step(model_output * 1.01, *a, **k)


class SecondAsThird(diffusers.DEISMultistepScheduler):
    """solver_order=3 configured, the second-order update run in its place."""

    def multistep_deis_third_order_update(self, model_output_list, *a, sample=None, **k):
        return self.multistep_deis_second_order_update(model_output_list, sample=sample)


@pytest.mark.parametrize("cls,cfg", [(DeisEpsScaled, {}), (SecondAsThird, {"solver_order": 3})])
def test_deis_faults_fail_agreement_by_10x(cls, cfg):
    # measured: ε 1 % off 2640-6670x (step 1); second order as third 693-3330x (step 3)
    r = _check(cls, cfg, n_max=12)
    agree = [row for row in r.rows if row.quantity.startswith("agreement")]
    assert agree, r.table()
    assert all(row.verdict == "FAIL" and row.worst_ratio >= 10 for row in agree), r.table()
    assert agree[0].where.startswith("step "), r.table()


def test_deis_karras_repeats_its_final_level():
    # σ_min appended to a Karras list that already ends there: a zero-length last step. The
    # contract reports it; agreement is skipped (no reference on a repeated level).
    r = _check("DEISMultistepScheduler", {"use_karras_sigmas": True}, n_max=12)
    assert "contract: final level" in {row.quantity for row in r.failures}, r.table()
    agree = [row for row in r.rows if row.quantity.startswith("agreement")]
    assert agree and all(row.verdict == "skipped" for row in agree), r.table()


# ------------------------------------------------------- FlowMatchEuler: the shift, once


class ShiftOnce(diffusers.FlowMatchEulerDiscreteScheduler):
    """The fix of huggingface/diffusers#13243: t = linspace(1, 1/T, N), the shift applied once
    (diffusers shifts σ given to set_timesteps, so the unshifted t is passed)."""

    def set_timesteps(self, num_inference_steps=None, *a, **k):
        import numpy as np

        t = np.linspace(1.0, 1.0 / self.config.num_train_timesteps, num_inference_steps)
        super().set_timesteps(sigmas=t.astype(np.float32).tolist())


def test_flow_match_shift_is_applied_twice():
    # docs/FINDINGS.md §14: the shipped scheduler's σ list, shift=3, against the documented
    # one; its last level is 0.00893 = shift(shift(1/T)) instead of 0.00299 (2 relative, the
    # tolerance is 1e-5). The same class with the shift applied once conforms.
    r = _check("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, n_max=20)
    row = next(x for x in r.rows if x.quantity == "contract: levels")
    assert row.verdict == "FAIL" and row.t_range.startswith("N=2,"), r.table()
    assert "0.0089286 vs 0.002994" in row.diagnosis, r.table()
    fixed = _check(ShiftOnce, {"shift": 3.0}, n_max=20)
    assert fixed.conforms, fixed.table()
    # shift = 1 (the default) has nothing to apply twice
    plain = _check("FlowMatchEulerDiscreteScheduler", {}, n_max=20)
    assert next(x for x in plain.rows if x.quantity == "contract: levels").verdict == "ok"


class DynamicTwice(diffusers.FlowMatchEulerDiscreteScheduler):
    """Dynamic shifting applied a second time, timesteps kept consistent (σ·T): only the
    documented-levels check can see it."""

    def set_timesteps(self, *a, **k):
        super().set_timesteps(*a, **k)
        mu = k["mu"]
        sig = self.sigmas[:-1]
        self.sigmas[:-1] = self.time_shift(mu, 1.0, sig)
        self.timesteps = self.sigmas[:-1] * self.config.num_train_timesteps


@pytest.mark.parametrize(
    "cfg,mu", [({"use_dynamic_shifting": True}, math.log(3.0)),
               ({"use_dynamic_shifting": True, "time_shift_type": "linear"}, 3.0)]
)
def test_flow_match_dynamic_shift_is_applied_once(cfg, mu):
    # with use_dynamic_shifting, __init__ does not shift, so set_timesteps shifts once: the
    # documented list (e^μ/(e^μ + 1/t − 1), or μ/(μ + 1/t − 1)) to 1e-5; μ = log 3 is the
    # static shift 3 of the test above, which fails
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good = check_solver(DiffusersSolverAdapter("FlowMatchEulerDiscreteScheduler", cfg,
                                                   set_timesteps={"mu": mu}), n_max=20)
        bad = check_solver(DiffusersSolverAdapter(DynamicTwice, cfg, set_timesteps={"mu": mu}),
                           n_max=20)
    assert good.conforms, good.table()
    assert "set_timesteps(mu=" in good.adapter
    assert "contract: levels" in {r.quantity for r in bad.failures}, bad.table()
    assert "contract: timestep↔σ" not in {r.quantity for r in bad.failures}, bad.table()
