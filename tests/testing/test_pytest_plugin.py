"""The pytest plugin end to end, each session a subprocess in a fresh directory: inert
without --npddpm-impl; a conforming implementation passes check by check; a faulty one
fails with the fault named; a divergences file turns its failures into xfails with the
reason; the JSON report validates."""

import json
from pathlib import Path

import pytest

from ._run import Sandbox

pytestmark = pytest.mark.slow  # each test runs pytest sessions in subprocesses (5–15 s)

IMPL = '''
import numpy as np
from npddpm.conformance import CallablesAdapter

T = 100
BETAS = np.linspace(1e-4 * 10, 0.02 * 10, T)  # improved-diffusion's linear at T = 100
AB = np.cumprod(1 - BETAS)
AB_PREV = np.append(1.0, AB[:-1])


def q_sample(x0, t, z, shift=0):
    t = min(t + shift, T - 1)
    return np.sqrt(AB[t]) * x0 + np.sqrt(1 - AB[t]) * z


def ddpm(mo, xt, t, z, last_noise=False):
    ab, abp, b = AB[t], AB_PREV[t], BETAS[t]
    x0 = np.clip((xt - np.sqrt(1 - ab) * mo) / np.sqrt(ab), -1, 1)
    mean = np.sqrt(abp) * b / (1 - ab) * x0 + np.sqrt(1 - b) * (1 - abp) / (1 - ab) * xt
    var = b * (1 - abp) / (1 - ab) if t > 0 else BETAS[1] * (1 - AB[0]) / (1 - AB[1])
    noisy = t > 0 or last_noise
    return mean + (np.sqrt(var) * z if noisy else 0 * z), x0


def good():
    return CallablesAdapter(name="mine", alphas_cumprod=AB, q_sample_fn=q_sample,
                            ddpm_step_fn=ddpm, schedule=("linear", {}))


def bad():
    return [CallablesAdapter(name="mine-bad", alphas_cumprod=AB,
                             q_sample_fn=lambda x0, t, z: q_sample(x0, t, z, shift=1),
                             ddpm_step_fn=lambda mo, xt, t, z: ddpm(mo, xt, t, z, True))]


def not_an_adapter():
    return 42


def loop():
    """A whole loop with its own RNG, checked black-box (check_loop) beside the adapter."""
    from npddpm import GaussianDiffusion, Schedule
    from npddpm.conformance import check_loop

    s = Schedule(BETAS)

    def sampler(model, shape, seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape)
        for t in range(T - 1, -1, -1):
            x, _ = ddpm(model(x, np.full(shape[0], t)), x, t, rng.standard_normal(shape))
        return x

    return [good(), lambda: check_loop(sampler, GaussianDiffusion(s), name="my loop")]


def solvers():
    """Solver schedulers: one that conforms, one that samples NaN (docs/FINDINGS.md §10)."""
    from npddpm.conformance import DiffusersSolverAdapter

    return [DiffusersSolverAdapter("EulerDiscreteScheduler", name="euler"),
            DiffusersSolverAdapter("UniPCMultistepScheduler", {"solver_type": "bh1"},
                                   name="unipc-bh1")]
'''


@pytest.fixture
def impl():
    box = Sandbox()
    box.makepyfile(myimpl=IMPL)
    return box


def test_inert_without_an_implementation(impl):
    impl.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = impl.runpytest("-q")
    result.assert_outcomes(passed=1)


def test_a_conforming_implementation_passes_check_by_check(impl):
    result = impl.runpytest("--npddpm-impl=myimpl:good", "-q", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 4, result.stdout.str()
    assert outcomes["skipped"] == 1  # no ddim_fn given: a skipped check, with its reason
    result.stdout.fnmatch_lines(["*no ddim_fn given*"])
    ids = impl.runpytest("--npddpm-impl=myimpl:good", "--collect-only", "-q").stdout.str()
    assert "test_conformance[mine::q_sample::t=99" in ids and "mine::ddpm.noise::" in ids


def test_a_faulty_implementation_fails_with_the_fault_named(impl):
    result = impl.runpytest("--npddpm-impl=myimpl:bad", "--npddpm-max-examples=10", "-q")
    assert result.ret == 1
    out = result.stdout.str()
    assert "off-by-one timestep (uses t+1)" in out and "noise added at the last step" in out
    assert "worst error/tolerance" in out
    # the drawn check shrank its failure and printed the call that reproduces it
    assert "test_drawn[mine-bad]" in out and "the smallest failing case" in out
    assert "print(check(adapter, steps=[" in out


def test_divergences_file_makes_xfails_with_the_reason(impl, tmp_path):
    (tmp_path / "known.toml").write_text(
        '[divergences]\n"*::q_sample::*" = "our add_noise is one step ahead, on purpose"\n'
    )
    result = impl.runpytest(
        "--npddpm-impl=myimpl:bad", f"--npddpm-divergences={tmp_path / 'known.toml'}", "-q", "-rx"
    )
    out = result.stdout.str()
    assert "one step ahead, on purpose" in out
    outcomes = result.parseoutcomes()
    assert outcomes["xfailed"] >= 1 and outcomes["failed"] >= 1  # the noise fault still fails


def test_json_report_validates(impl, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    import npddpm.conformance as c

    out = tmp_path / "report.json"
    impl.runpytest("--npddpm-impl=myimpl:bad", f"--npddpm-report={out}", "-q")
    doc = json.loads(out.read_text())
    schema = json.loads(Path(c.__file__).with_name("report_schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["conforms"] is False and doc["reports"][0]["adapter"] == "mine-bad"


@pytest.mark.torch
def test_solver_schedulers_are_checked_row_by_row(impl):
    pytest.importorskip("diffusers")
    result = impl.runpytest("--npddpm-impl=myimpl:solvers", "-q", "-p", "no:warnings")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "unipc-bh1::contract: loop" in out and "ends non-finite" in out
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 9, out  # euler's 6 contract rows, 2 agreement, 1 order
    assert "euler::agreement" not in out.split("short test summary")[-1]


def test_environment_variable_and_bad_factories(impl, monkeypatch):
    monkeypatch.setenv("NPDDPM_IMPL", "myimpl:good")
    assert impl.runpytest("-q").ret == 0
    monkeypatch.delenv("NPDDPM_IMPL")
    result = impl.runpytest("--npddpm-impl=myimpl:loop", "-q", "--collect-only")
    assert "my loop (ddpm)::output variance::" in result.stdout.str()
    assert impl.runpytest("--npddpm-impl=myimpl:loop", "-q").ret == 0
    for spec, message in (
        ("myimpl", "expected MODULE:FACTORY"),
        ("nosuchmodule:f", "cannot import it"),
        ("myimpl:not_an_adapter", "the factory must return an npddpm.conformance.Adapter"),
    ):
        result = impl.runpytest(f"--npddpm-impl={spec}", "-q")
        assert result.ret != 0
        err = result.stderr.str() + result.stdout.str()
        assert message in err and "Traceback" not in err, spec
