"""The verification suite and the ``npddpm verify`` command: it passes on the real samplers,
and it fails — with a non-zero exit status — when a sampler is broken."""

import subprocess
import sys

import numpy as np
import pytest

from npddpm import cli, verify
from npddpm.analytic import GaussianMixture


@pytest.mark.slow  # 32 s on the 2-core test machine
def test_full_command_passes_and_prints_a_table():
    """The real command, end to end (≈ 20 s here). The chain rows are statistical: their
    family-wise false-failure probability is verify.ALPHA = 1e-3, and the seeds are fixed."""
    r = subprocess.run(
        [sys.executable, "-m", "npddpm.cli", "verify"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:6] == ["check", "data", "schedule", "sampler", "variance", "metric"]
    rows = [x for x in lines if x.startswith(("moments ", "chain "))]
    # 2 schedules × 3 spacings each × 8 sampler/variance cases, 2 data sets × 2 samplers × 4
    # checkpoints
    assert len(rows) == 48 + 16
    assert sum(" exact " in x for x in rows) == 12
    assert any("mixture 16-D" in x for x in rows) and any("mixture 2-D" in x for x in rows)
    # plus the score-based rows: 3 ULA, 1 MALA, 2 PC-vs-ancestral (npddpm/verify/score.py)
    # and the solver rows: 6 identity, 1 solver moments, 1 flow map, 13 order
    # (npddpm/verify/solvers.py)
    assert "91 checks, 0 failed" in r.stdout
    solver = ("identity ", "order ", "flow map ", "solver moments ")
    assert sum(x.startswith(solver) for x in lines) == 21
    assert sum(x.startswith(("langevin ", "pc-vs-ddpm ")) for x in lines) == 6
    assert sum("learned_range" in x for x in rows) == 6


def test_quick_suite_rows_pass():
    rows = verify.run_verification(quick=True)
    assert {r.check for r in rows} == {
        "moments", "chain", "langevin", "pc-vs-ddpm", "identity", "solver moments", "flow map",
        "order",
    }
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    exact = [r for r in rows if r.variance == "exact"]
    assert exact and all("from q(x_T)" in r.note for r in exact)


def test_a_sampler_that_is_slightly_wrong_fails_the_moment_rows(monkeypatch):
    """A sampler whose output is off by 1e-7 (far below anything Monte Carlo could see)
    must fail the deterministic rows."""
    real = verify.suite.ddim

    def biased(*args, **kw):
        return real(*args, **kw) + 1e-7

    monkeypatch.setattr(verify.suite, "ddim", biased)
    rows = verify.moment_rows({"cosine": ("ddim10",)})
    assert len(rows) == 8 and all(r.passed == r.sampler.startswith("ddpm") for r in rows)


def test_chain_rows_flag_a_wrong_noise_level(monkeypatch):
    """Power of the chain rows (negative control), with n = 2000 as in the command: an
    ancestral chain whose noise is 20% too large must be flagged at the 2-D output
    (observed p ≈ 2e-7 against the limit 1.8e-5). Measured, not asserted: in 16-D the
    oracle's pull towards the modes hides this error at x₀ (p ≈ 0.005); 30% is caught at
    t = 497 (p ≈ 2e-12). The projection tests are weakest for pure scale errors."""
    real = verify.suite.ddpm

    def noisy(diffusion, denoiser, shape, *, seed, callback, **kw):
        T = diffusion.num_timesteps
        noise = 1.2 * np.random.default_rng(seed).standard_normal((T, *shape))
        return real(diffusion, denoiser, shape, seed=seed, noise=noise, callback=callback, **kw)

    monkeypatch.setattr(verify.suite, "ddpm", noisy)
    rows = verify.chain_rows(samplers=(("ddpm", 0.0),))
    assert rows[3].data == "mixture 2-D" and "x₀" in rows[3].metric and not rows[3].passed


def test_chain_rows_flag_a_biased_denoiser(monkeypatch):
    """A denoiser for data shifted by 0.1 in every coordinate (≈ 10% of the data std)
    must fail the output rows of both data sets (observed p ≈ 3e-24 and 7e-159)."""
    real = GaussianMixture.denoiser

    def biased(self, diffusion):
        shifted = GaussianMixture(self.weights, self.means + 0.1, self.covariances)
        return real(shifted, diffusion)

    monkeypatch.setattr(GaussianMixture, "denoiser", biased)
    rows = verify.chain_rows(samplers=(("ddpm", 0.0),))
    outputs = [r for r in rows if "x₀" in r.metric]
    assert len(outputs) == 2 and not any(r.passed for r in outputs)


def test_statistics_helpers():
    gm = verify.mixture_2d()
    rng = np.random.default_rng(0)
    x = gm.sample(2000, rng)
    u = verify.directions(2, 4, rng)
    np.testing.assert_allclose(np.linalg.norm(u, axis=0), 1.0)
    # exact draws: p-values are uniform; each > 1e-4 with probability 1 − 1e-4
    assert verify.projection_ks_pvalues(x, gm, u).min() > 1e-4
    assert verify.mean_chi2_pvalue(x, gm) > 1e-4
    # a shift of 0.2 along the first axis: KS distance ≈ 0.1 ≫ 1.36/√2000 ≈ 0.03
    shifted = x + np.array([0.2, 0.0])
    assert verify.projection_ks_pvalues(shifted, gm, u)[0] < 1e-8
    assert verify.mean_chi2_pvalue(shifted, gm) < 1e-8


def test_table_and_quiet_output(monkeypatch, capsys):
    ok = verify.Row("moments", "d", "s", "ddpm", "exact", "m", 1e-15, 1e-9, True)
    bad = verify.Row("chain", "d", "s", "ddpm", "fixed_small", "min p", 1e-9, 1e-5, False, "n")
    table = verify.format_table([ok, bad], seconds=1.5)
    assert "FAIL" in table and table.splitlines()[-1] == "2 checks, 1 failed, 1.5 s"
    monkeypatch.setattr(verify, "run_verification", lambda **kw: [ok, bad])
    assert cli.main(["verify", "--quiet"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "FAIL" in out[2] and out[3].startswith("2 checks, 1 failed")
    monkeypatch.setattr(verify, "run_verification", lambda **kw: [ok])
    assert cli.main(["verify", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("1 checks, 0 failed")


@pytest.mark.parametrize("arg", ["--frobnicate"])
def test_verify_usage_error(arg):
    r = subprocess.run(
        [sys.executable, "-m", "npddpm.cli", "verify", arg], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_a_solver_below_its_order_fails_its_order_row(monkeypatch):
    """Euler passed off as Heun (order 1 where 2 is claimed) fails by ≥ 0.7 > the 0.3 limit."""
    from npddpm.samplers import euler

    monkeypatch.setattr(verify.solvers, "ORDER_CASES", (("heun", euler, {}, 2),))
    rows = [r for r in verify.solver_rows(quick=True) if r.check == "order"]
    assert len(rows) == 1 and not rows[0].passed and rows[0].value >= 0.7

