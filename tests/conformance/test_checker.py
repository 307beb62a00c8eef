"""The conformance checker: a correct implementation conforms; each deliberately broken one
is detected and named (the fault bed); real diffusers conforms up to its documented
divergences (skipped cleanly without torch/diffusers)."""

import numpy as np
import pytest

from npddpm.conformance import CallablesAdapter, ConformanceError, assert_conforms, check
from npddpm.schedules import get_named_beta_schedule


class Impl:
    """An improved-diffusion-style implementation written out from the papers (float64),
    with switchable faults. Independent of npddpm's code paths."""

    def __init__(self, betas, mean_type="eps", var_type="fixed_small", clip=True, fault=None):
        self.fault = fault
        b = np.asarray(betas, dtype=np.float64)
        a = 1 - b
        ab = np.cumprod(a)
        self.ab_table = ab
        if fault == "float16":
            ab = ab.astype(np.float16).astype(np.float64)
        abp = np.append(1.0, ab[:-1])
        self.b, self.a, self.ab, self.abp = b, a, ab, abp
        with np.errstate(divide="ignore", invalid="ignore"):  # float16 ᾱ rounds to 1: 0/0
            self.pv = b * (1 - abp) / (1 - ab)
        self.mean_type, self.var_type, self.clip = mean_type, var_type, clip

    def t(self, t):
        return t + 1 if self.fault == "off_by_one" and t + 1 < len(self.b) else t

    def q_sample(self, x0, t, z):
        t = self.t(t)
        return np.sqrt(self.ab[t]) * x0 + np.sqrt(1 - self.ab[t]) * z

    def x0_hat(self, mo, xt, t):
        ab = self.ab[t]
        if self.mean_type == "eps":
            x0 = (xt - np.sqrt(1 - ab) * mo) / np.sqrt(ab)
        else:  # v
            sign = 1.0 if self.fault == "v_sign" else -1.0
            x0 = np.sqrt(ab) * xt + sign * np.sqrt(1 - ab) * mo
        if self.clip and self.fault != "no_clip":
            x0 = np.clip(x0, -1, 1)
        return x0

    def ddpm(self, mo, xt, t, z):
        t = self.t(t)
        x0 = self.x0_hat(mo, xt, t)
        c1 = self.b[t] * np.sqrt(self.abp[t]) / (1 - self.ab[t])
        c2 = (1 - self.abp[t]) * np.sqrt(self.a[t]) / (1 - self.ab[t])
        mean = c1 * x0 + c2 * xt
        small = self.var_type == "fixed_small" and self.fault != "beta_for_beta_tilde"
        var = (self.pv if small else np.append(self.pv[1], self.b[1:]))[t]
        if small and t == 0:
            var = self.pv[1]  # log-variance clipped at t = 0 (masked anyway)
        mask = 1.0 if (t != 0 or self.fault == "last_noise") else 0.0
        return mean + mask * np.sqrt(var) * z, x0

    def adapter(self, schedule=None):
        return CallablesAdapter(
            name=f"impl[{self.fault}]",
            alphas_cumprod=self.ab_table,
            mean_type=self.mean_type,
            var_type=self.var_type,
            clip_denoised=self.clip,
            schedule=schedule,
            q_sample_fn=self.q_sample,
            ddpm_step_fn=self.ddpm,
        )


COS = get_named_beta_schedule("cosine", 1000)


def test_correct_implementation_conforms():
    for mt in ("eps", "v"):
        r = check(Impl(COS, mean_type=mt).adapter(schedule=("cosine", {})))
        assert r.conforms and not r.known, r.table()
    assert_conforms(Impl(COS).adapter())


@pytest.mark.parametrize(
    "fault, kwargs, name",
    [
        ("off_by_one", {}, "off-by-one timestep"),
        ("beta_for_beta_tilde", {}, "β used where β̃ belongs"),
        ("no_clip", {}, "clipping missing"),
        ("v_sign", {"mean_type": "v"}, "wrong sign in the v-conversion"),
        ("last_noise", {}, "noise added at the last step"),
    ],
)
def test_fault_is_detected_and_named(fault, kwargs, name):
    r = check(Impl(COS, fault=fault, **kwargs).adapter())
    assert not r.conforms
    assert any(name in f for f in r.faults()), r.table()
    assert "unexplained" not in r.faults(), r.table()
    with pytest.raises(ConformanceError, match=name):
        assert_conforms(Impl(COS, fault=fault, **kwargs).adapter())


def test_float16_alpha_bar_is_named():
    r = check(Impl(COS, fault="float16").adapter())
    assert not r.conforms and any("float16" in f for f in r.faults()), r.table()
    impl = Impl(COS)
    table = impl.ab_table.astype(np.float16).astype(np.float64)
    ad = CallablesAdapter(name="f16 table", alphas_cumprod=table, schedule=("cosine", {}))
    r = check(ad)
    assert not r.conforms and any("float16" in f for f in r.faults()), r.table()


def test_unscaled_linear_schedule_is_named():
    # At T = 500, improved-diffusion's linear is 2× TF/diffusers' unscaled one.
    betas = get_named_beta_schedule("linear_unscaled", 500)
    r = check(Impl(betas).adapter(schedule=("linear", {})))
    assert not r.conforms
    assert any("unscaled linear schedule" in f for f in r.faults()), r.table()
    # the steps themselves conform once its own ᾱ is injected
    steps = [row for row in r.rows if row.quantity != "alphas_cumprod"]
    assert all(row.verdict in ("ok", "skipped") for row in steps), r.table()


# --- real diffusers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diffusers():
    pytest.importorskip("torch")
    return pytest.importorskip("diffusers")


@pytest.mark.torch
@pytest.mark.parametrize(
    "kw, steps",
    [
        ({}, None),
        ({"variance_type": "fixed_large", "timestep_spacing": "trailing"}, 50),
        ({"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2"}, None),
        ({"prediction_type": "sample", "clip_sample": False}, 20),
    ],
)
def test_diffusers_ddpm_conforms_up_to_known_divergences(diffusers, kw, steps):
    from npddpm.conformance import DiffusersAdapter

    r = check(
        DiffusersAdapter(
            diffusers.DDPMScheduler(num_train_timesteps=1000, **kw), num_inference_steps=steps
        )
    )
    assert r.conforms, r.table()


@pytest.mark.torch
@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_diffusers_ddim_known_divergences(diffusers, spacing):
    from npddpm.conformance import DiffusersAdapter

    r = check(
        DiffusersAdapter(
            diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing),
            num_inference_steps=50,
        )
    )
    assert r.conforms, r.table()
    names = {row.diagnosis for row in r.known}
    assert any("not re-derived" in n for n in names)  # clipping triggers on purpose
    if spacing == "linspace":
        assert any("t − T//N" in n for n in names)  # HF #12633


@pytest.mark.torch
def test_diffusers_timestep_tables_are_reproduced_exactly(diffusers):
    from npddpm.schedules import diffusers_timesteps

    for T in (1000, 4000):
        for N in (1, 2, 3, 10, 21, 50, 61, 100, 103, 250, T - 1, T):
            for spacing in ("leading", "trailing", "linspace"):
                for offset in (0, 1):
                    s = diffusers.DDPMScheduler(
                        num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset
                    )
                    s.set_timesteps(N)
                    ours = diffusers_timesteps(T, N, spacing, offset)
                    assert np.array_equal(s.timesteps.numpy(), ours), (T, N, spacing, offset)


@pytest.mark.torch
@pytest.mark.parametrize(
    "variance_type, diagnosis",
    [
        ("learned", "read as σ²"),  # diffusers reads `learned` as σ²
        ("fixed_large_log", "√(log β)"),  # HF #14569: NaN samples
    ],
)
def test_diffusers_variance_divergences_are_known(diffusers, variance_type, diagnosis):
    from npddpm.conformance import DiffusersAdapter

    r = check(
        DiffusersAdapter(
            diffusers.DDPMScheduler(num_train_timesteps=1000, variance_type=variance_type)
        )
    )
    assert r.conforms, r.table()
    assert any(diagnosis in row.diagnosis for row in r.known), r.table()


class IDStyle:
    """A NumPy port with improved-diffusion's method names and calling conventions
    (tensors of per-row timesteps, a model callable, dict results), built on Impl."""

    def __init__(self, impl):
        self.impl = impl
        self.alphas_cumprod = impl.ab_table
        self._noise = None

    def set_noise(self, z):
        self._noise = z

    def q_sample(self, x_start, t, noise=None):
        return self.impl.q_sample(x_start, int(t[0]), noise)

    def p_sample(self, model, x, t, clip_denoised=True):
        mo = model(x, t)
        sample, x0 = self.impl.ddpm(mo, x, int(t[0]), self._noise)
        return {"sample": sample, "pred_xstart": x0}


def test_improved_diffusion_style_adapter():
    from npddpm.conformance import ImprovedDiffusionAdapter

    good = IDStyle(Impl(COS))
    ad = ImprovedDiffusionAdapter(good, dtype=np.float64, noise_hook=good.set_noise)
    r = check(ad)
    assert r.conforms and any(row.quantity == "ddpm.noise" for row in r.rows), r.table()
    bad = IDStyle(Impl(COS, fault="last_noise"))
    r = check(ImprovedDiffusionAdapter(bad, dtype=np.float64, noise_hook=bad.set_noise))
    assert any("noise added at the last step" in f for f in r.faults()), r.table()


@pytest.mark.torch
def test_diffusers_float16_add_noise_is_a_known_divergence(diffusers):
    from npddpm.conformance import DiffusersAdapter

    ad = DiffusersAdapter(
        diffusers.DDPMScheduler(num_train_timesteps=1000), sample_dtype=np.float16
    )
    r = check(ad)
    # float16 samples: q_sample is held to float16's tolerance, within which the documented
    # cast of ᾱ is invisible (its error, ≤ 1e-2·|ε| at small t, is far below the float16
    # cancellation bound there), so the row conforms outright and nothing needs naming
    q_rows = [row for row in r.rows if row.quantity == "q_sample"]
    assert all(row.verdict == "ok" for row in q_rows), r.table()
    assert r.conforms, r.table()
    # the float16 divergence never explains a float32 row: float32 samples conform outright
    r32 = check(DiffusersAdapter(diffusers.DDPMScheduler(num_train_timesteps=1000)))
    assert r32.conforms and not r32.known, r32.table()
    # and the same float16 cast in an implementation that is not diffusers is a fault
    bad = check(Impl(COS, fault="float16").adapter())
    assert any("ᾱ cast to float16" == f for f in bad.faults()), bad.table()


@pytest.mark.parametrize("adapter", [None, "diffusers", object()])
def test_check_needs_an_adapter(adapter):
    with pytest.raises(TypeError, match=r"adapter must be an npddpm.conformance.Adapter"):
        check(adapter)


@pytest.mark.torch
def test_cli_checks_one_configuration_and_names_its_divergences(diffusers, capsys):
    from npddpm.cli import main

    status = main(
        [
            "conform",
            "diffusers",
            "--scheduler",
            "DDPMScheduler",
            "--option",
            "variance_type=fixed_large",
            "--option",
            'timestep_spacing="trailing"',
            "--steps",
            "50",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "last-step noise keyed on the timestep value" in out
    assert "fixed_large uses β" in out and "CONFORMS" in out


@pytest.mark.torch
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--option", "clip_sample=false"], "--option needs --scheduler"),
        (["--scheduler", "DDPMScheduler", "--option", "novalue"], "expected KEY=VALUE"),
        (
            ["--scheduler", "DDPMScheduler", "--option", 'prediction_type="score"'],
            "prediction_type='score' is not an option npddpm knows",
        ),
    ],
)
def test_cli_bad_configuration_is_one_line(diffusers, capsys, argv, message):
    from npddpm.cli import main

    with pytest.raises(SystemExit) as exc:
        status = main(["conform", "diffusers", "--quiet", *argv])
        raise SystemExit(status)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) <= 2, err


@pytest.mark.torch
def test_inverse_and_unknown_schedulers_are_refused_up_front(diffusers):
    from npddpm.conformance import DiffusersAdapter

    with pytest.raises(ValueError, match="DDIMInverseScheduler runs the chain upwards"):
        DiffusersAdapter(diffusers.DDIMInverseScheduler(num_train_timesteps=1000))
    with pytest.raises(ValueError, match="cannot drive EulerDiscreteScheduler"):
        DiffusersAdapter(diffusers.EulerDiscreteScheduler(num_train_timesteps=1000))


@pytest.mark.torch
def test_trailing_chain_with_minus_one_is_a_finding_not_a_crash(diffusers):
    from npddpm.conformance import DiffusersAdapter

    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    r = check(DiffusersAdapter(sched, num_inference_steps=61))
    chain = [row for row in r.failures if row.quantity == "chain"]
    assert chain and "[-1]" in chain[0].diagnosis, r.table()


def _zero_snr_ddim(diffusers, nudge: bool):
    """diffusers' zero-SNR DDIM; with ``nudge`` its η-variance is one float32 ulp larger, so the
    radicand 1 − ᾱ_prev − σ² at ᾱ_t = 0 is negative on every platform (without it, whether
    the float32 radicand rounds to −1 ulp or +1 ulp depends on the CPU's vector unit: −5.96e-8
    on AVX2 machines, +5.96e-8 on AVX-512 ones)."""

    class Nudged(diffusers.DDIMScheduler):
        def _get_variance(self, timestep, prev_timestep):
            v = super()._get_variance(timestep, prev_timestep)
            return v * (1 + 2**-22) if nudge else v

    return Nudged(
        num_train_timesteps=1000,
        rescale_betas_zero_snr=True,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
    )


def _radicand_negative(sched) -> bool:
    # the radicand as DDIMScheduler.step forms it at η = 1: σ = η·√variance, then
    # 1 − ᾱ_prev − σ² (σ² is not the variance bit for bit: the square root and the square
    # each round, and which way decides the sign here)
    sched.set_timesteps(50)
    a_p = sched.alphas_cumprod[979]
    std = 1.0 * sched._get_variance(999, 979) ** 0.5
    return float(1 - a_p - std**2) < 0


@pytest.mark.torch
@pytest.mark.parametrize("nudge", [False, True], ids=["as_shipped", "radicand_forced_negative"])
def test_zero_snr_ddim_eta_1_nan_is_the_documented_divergence(diffusers, nudge):
    """huggingface/diffusers#5969: at ᾱ_t = 0 with η = 1 the float32 radicand of the DDIM
    direction coefficient can round below 0 and the step is then NaN (scaled_linear, zero
    SNR). Where it does the report names the divergence; where it does not (this platform's
    rounding) there is nothing to name and the report must not claim it."""
    from npddpm.conformance import DiffusersAdapter

    sched = _zero_snr_ddim(diffusers, nudge)
    negative = _radicand_negative(sched)
    assert negative or not nudge
    r = check(DiffusersAdapter(sched, num_inference_steps=50), etas=(1.0,))
    assert r.conforms, r.table()
    names = {row.diagnosis for row in r.known}
    assert any("not clamped" in n for n in names) == negative, r.table()


def _schema():
    import json
    from pathlib import Path

    import npddpm.conformance as c

    return json.loads((Path(c.__file__).with_name("report_schema.json")).read_text())


def test_json_report_validates_and_keeps_every_row(tmp_path):
    import json

    jsonschema = pytest.importorskip("jsonschema")
    from npddpm.conformance import REPORT_VERSION, write_reports

    good = check(Impl(COS).adapter(schedule=("cosine", {})))
    bad = check(Impl(COS, fault="last_noise").adapter())
    path = write_reports(tmp_path / "r.json", [good, bad])
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, _schema())
    assert doc["version"] == REPORT_VERSION and doc["conforms"] is False
    assert [r["conforms"] for r in doc["reports"]] == [True, False]
    assert len(doc["reports"][1]["rows"]) == len(bad.rows) == len(doc["reports"][1]["checks"])
    checks = doc["reports"][1]["checks"]
    assert {c["verdict"] for c in checks} <= {"ok", "fault", "divergence", "error", "refused"}
    fault = next(c for c in checks if c["verdict"] == "fault")
    assert fault["id"].startswith("mine-bad::") or "::" in fault["id"]
    assert fault["ratio"] == "inf" or float(fault["ratio"]) > 1
    fail = next(r for r in doc["reports"][1]["rows"] if r["verdict"] == "FAIL")
    assert fail["diagnosis"] == "noise added at the last step" and fail["where"].startswith("t=0")
    skipped = next(r for r in doc["reports"][0]["rows"] if r["verdict"] == "skipped")
    assert skipped["worst_ratio"] == "nan"  # JSON has no NaN: the string stands for it
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_reports(path, [good])
    write_reports(path, [good], overwrite=True)
    assert json.loads(path.read_text())["conforms"] is True


@pytest.mark.torch
def test_cli_json_report_and_refusal_to_overwrite(diffusers, tmp_path, capsys):
    import json

    jsonschema = pytest.importorskip("jsonschema")
    from npddpm.cli import main

    out = tmp_path / "report.json"
    argv = ["conform", "diffusers", "--scheduler", "DDPMScheduler", "--steps", "10", "--quiet"]
    assert main([*argv, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, _schema())
    assert doc["conforms"] and doc["reports"][0]["adapter"].startswith("diffusers DDPMScheduler")
    capsys.readouterr()
    assert main([*argv, "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--json", str(out), "--force"]) == 0
