"""check_loop: a whole sampling loop, with its own RNG, run on the analytic oracle and judged by
the law of its output (npddpm.conformance.loop).

The loops below are written for these tests from Ho et al. 2020 (Algorithm 2, Eq. 7) and Song
et al. 2021 (Eq. 12, 16), not from npddpm's code, with one switchable seeded fault each.
Correct loops must pass on the fixed seed; every fault must FAIL on it. The detection power
over 20 seeds (the table in npddpm/conformance/loop.py) is re-measured by
``python tests/conformance/test_loop.py``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from npddpm import GaussianDiffusion
from npddpm.analytic import GaussianMixture
from npddpm.conformance.loop import LOOP_ALPHA, check_loop, default_loop_data
from npddpm.schedules import Schedule, get_named_beta_schedule

T = 1000
BETAS = get_named_beta_schedule("linear", T)


def make_loop(
    betas=BETAS,
    *,
    sampler="ddpm",
    eta=0.0,
    mean_type="eps",
    timesteps=None,
    var="small",
    fault=None,
    pass_index=False,
):
    """A NumPy DDPM/DDIM loop over the chain ``timesteps`` (original timesteps, ascending)."""
    ab_full = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    ts = np.arange(len(betas)) if timesteps is None else np.asarray(timesteps)
    ab = ab_full[ts]
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    beta = 1.0 - ab / ab_prev
    post_var = beta * (1.0 - ab_prev) / (1.0 - ab)
    small = np.concatenate([[post_var[1]], post_var[1:]])  # log-variance clipped at t = 0
    S = ts.size
    if fault == "wrong_eta":
        eta = 1.0 - eta

    def sample_fn(model, shape, seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape)
        first = S - 2 if fault == "starts_late" else S - 1
        last = 1 if fault == "skip_final" else 0
        for i in range(first, last - 1, -1):
            t_model = ts[i - 1] if fault == "model_t_lags" and i > 0 else ts[i]
            tt = np.full(shape[0], i if pass_index else t_model, dtype=np.int64)
            out = model(x, tt)
            a, a_prev = ab[i], ab_prev[i]
            a_x0 = ab_prev[i] if fault == "x0_prev_table" else a
            if mean_type == "eps":
                eps = out
                x0 = np.sqrt(1.0 / a_x0) * x - np.sqrt(1.0 / a_x0 - 1.0) * eps
            elif mean_type == "x0":
                x0 = out
                eps = (x - np.sqrt(a) * x0) / np.sqrt(1.0 - a)
            else:  # v
                x0 = np.sqrt(a) * x - np.sqrt(1.0 - a) * out
                eps = np.sqrt(1.0 - a) * x + np.sqrt(a) * out
            z = rng.standard_normal(shape)
            if sampler == "ddpm":
                c1 = beta[i] * np.sqrt(a_prev) / (1.0 - a)
                c2 = (1.0 - a_prev) * np.sqrt(1.0 - beta[i]) / (1.0 - a)
                v = beta[i] if (var == "large" or fault == "beta_for_beta_tilde") else small[i]
                mask = i > 0
                if fault == "noise_last":
                    mask = True
                if fault == "no_noise_t1":
                    mask = i > 1
                x = c1 * x0 + c2 * x + mask * np.sqrt(v) * z
            else:
                sig = eta * np.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
                k = np.sqrt(1.0 - a_prev - sig**2)
                sign = -1.0 if fault == "ddim_sign" else 1.0
                x = np.sqrt(a_prev) * x0 + sign * k * eps + sig * z
        return x

    return sample_fn


def diffusion(mean_type="eps", var_type="fixed_small", timesteps=None):
    d = GaussianDiffusion(Schedule(BETAS), mean_type=mean_type, var_type=var_type)
    return d if timesteps is None else d.respace(timesteps)


# (fault, sampler, eta): every fault the bed seeds, on the loop it applies to
FAULTS = {
    "skip_final": ("ddpm", 0.0),
    "starts_late": ("ddpm", 0.0),
    "model_t_lags": ("ddpm", 0.0),
    "noise_last": ("ddpm", 0.0),
    "no_noise_t1": ("ddpm", 0.0),
    "beta_for_beta_tilde": ("ddpm", 0.0),
    "x0_prev_table": ("ddpm", 0.0),
    "ddim_sign": ("ddim", 0.0),
    "wrong_eta": ("ddim", 0.0),
}
# faults the chain row names (the model is called at the wrong timesteps)
CHAIN_FAULTS = {"skip_final", "starts_late", "model_t_lags"}


_CACHE: dict = {}


def run(fault=None, sampler="ddpm", eta=0.0, seed=0, n=10_000, **kw):
    """check_loop of ``make_loop(fault=...)``; fault runs on the fixed seed are shared by tests."""
    key = (fault, sampler, eta, seed, n) if not kw else None
    if key in _CACHE:
        return _CACHE[key]
    rep = _run(fault, sampler, eta, seed, n, **kw)
    if key is not None and seed == 0:
        _CACHE[key] = rep
    return rep


def _run(fault, sampler, eta, seed, n, **kw):
    timesteps = kw.pop("timesteps", None)
    mean_type = kw.pop("mean_type", "eps")
    var_type = kw.pop("var_type", "fixed_small")
    loop = make_loop(
        sampler=sampler,
        eta=eta,
        mean_type=mean_type,
        timesteps=timesteps,
        var="large" if var_type == "fixed_large" else "small",
        fault=fault,
        pass_index=kw.get("t_map") == "index",
    )
    d = diffusion(mean_type, var_type, timesteps)
    return check_loop(loop, d, sampler=sampler, eta=eta, n=n, seed=seed, **kw)


# ---------------------------------------------------------------- correct loops pass


@pytest.mark.parametrize(
    "kw",
    [
        {"sampler": "ddpm"},
        {"sampler": "ddpm", "mean_type": "x0"},
        {"sampler": "ddpm", "mean_type": "v"},
        {"sampler": "ddpm", "var_type": "fixed_large"},
        {"sampler": "ddim", "eta": 0.0},
        {"sampler": "ddim", "eta": 1.0, "mean_type": "v"},
        {"sampler": "ddpm", "timesteps": np.arange(0, T, 20)},
        {"sampler": "ddim", "eta": 0.5, "timesteps": np.arange(3, T, 4), "mean_type": "x0"},
        {"sampler": "ddim", "timesteps": np.arange(0, T, 50), "t_map": "index"},
    ],
    ids=lambda kw: "-".join(f"{k}={v if np.ndim(v) == 0 else len(v)}" for k, v in kw.items()),
)
def test_correct_loop_conforms(kw):
    report = run(**kw)
    assert report.conforms, report.table()
    assert [r.quantity for r in report.rows] == [
        "chain",
        "output mean",
        "output variance",
        "output correlation",
    ]
    assert all(0 <= r.worst_ratio <= 1 for r in report.rows)


def test_claim_decides_fixed_large_versus_small():
    # the σ² = β loop is correct when it claims fixed_large, and a fault when it claims small
    assert run("beta_for_beta_tilde", var_type="fixed_large").conforms
    assert not run("beta_for_beta_tilde").conforms


# ---------------------------------------------------------------- seeded faults fail


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_on_the_fixed_seed(fault):
    sampler, eta = FAULTS[fault]
    report = run(fault, sampler, eta)
    assert not report.conforms, report.table()
    failing = {r.quantity for r in report.failures}
    if fault in CHAIN_FAULTS:
        assert "chain" in failing
    else:
        assert "chain" not in failing
        assert failing & {"output mean", "output variance", "output correlation"}


def test_chain_row_names_what_differs():
    rep = run("skip_final")
    chain = rep.rows[0]
    assert chain.verdict == "FAIL" and "never called at t=0" in chain.diagnosis
    assert "visited 999..1, 999 visits" in chain.where
    assert "never called at t=999" in run("starts_late").rows[0].diagnosis
    lags = run("model_t_lags").rows[0].diagnosis
    assert "never called at t=999" in lags and "visit 0 was t=998" in lags


def test_call_outside_the_chain_stops_the_loop_as_a_row():
    def loop(model, shape, seed):  # 1-based timesteps: calls the model at t = T
        x = np.random.default_rng(seed).standard_normal(shape)
        for t in range(T, 0, -1):
            x = x - 0.0 * model(x, np.full(shape[0], t))
        return x

    rep = check_loop(loop, diffusion(), n=100)
    assert [r.verdict for r in rep.rows] == ["FAIL", "FAIL"]
    assert "t=1000, not a timestep of the claimed chain" in rep.rows[1].diagnosis
    assert "called at t=1000, not in the chain" in rep.rows[0].diagnosis


def test_exception_inside_the_loop_is_a_fail_row():
    def loop(model, shape, seed):
        x = np.zeros(shape)
        model(x, np.full(shape[0], T - 1))
        raise RuntimeError("boom")

    rep = check_loop(loop, diffusion(), n=100)
    assert rep.rows[-1].quantity == "loop" and rep.rows[-1].diagnosis == "raised RuntimeError: boom"
    assert "after 1 model calls, the last at t=999" in rep.rows[-1].where
    assert not rep.conforms and "boom" in rep.table()


def test_unusable_output_is_a_fail_row():
    good = make_loop()
    rep = check_loop(lambda m, s, k: good(m, s, k)[:, :2], diffusion(), n=100)
    assert rep.rows[-1].quantity == "output" and "returned shape (100, 2)" in rep.rows[-1].diagnosis
    rep = check_loop(lambda m, s, k: good(m, s, k) * np.nan, diffusion(), n=100)
    assert "100 of 100 samples are not finite" in rep.rows[-1].diagnosis


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v", "x_prev"])
def test_the_model_is_npddpms_oracle(mean_type):
    d = diffusion(mean_type, timesteps=np.arange(3, T, 4))
    data = default_loop_data(4)
    ref = data.denoiser(d)
    errs = []

    def loop(model, shape, seed):
        x = np.random.default_rng(seed).standard_normal(shape)
        for t in d.schedule.timestep_map[[0, 1, 125, -1]]:
            tt = np.full(shape[0], t)
            errs.append(np.max(np.abs(model(x, tt) - ref(x, tt))))
        tt = d.schedule.timestep_map[np.arange(shape[0]) % 250]  # per-row timesteps
        errs.append(np.max(np.abs(model(x, tt) - ref(x, tt))))
        return x

    check_loop(loop, d, n=500)
    assert max(errs) < 1e-12


def test_image_shaped_samples_and_full_covariance_data():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6))
    cov = 1e-4 * (A @ A.T / 6 + 0.5 * np.eye(6))
    data = GaussianMixture([1.0], [np.linspace(-0.1, 0.1, 6)], [cov])
    rep = check_loop(make_loop(), diffusion(), data=data, event_shape=(1, 2, 3), n=4000)
    assert rep.conforms, rep.table()
    assert "eigen-coordinate" in rep.rows[2].where
    rep = check_loop(
        make_loop(fault="noise_last"), diffusion(), data=data, event_shape=(1, 2, 3), n=4000
    )
    assert not rep.conforms


def test_notes_state_the_false_failure_probability():
    rep = run(n=1000)
    assert any("P(false FAIL) <= 1e-06" in note for note in rep.notes)
    assert LOOP_ALPHA == 1e-6


def test_misuse_of_npddpm_raises_naming_the_argument():
    d, loop = diffusion(), make_loop()
    with pytest.raises(TypeError, match="sample_fn must be a callable"):
        check_loop(None, d)
    with pytest.raises(TypeError, match=r"diffusion must be the npddpm\.GaussianDiffusion"):
        check_loop(loop, "linear")
    with pytest.raises(ValueError, match="unknown sampler"):
        check_loop(loop, d, sampler="plms")
    with pytest.raises(TypeError, match="data must be a one-component"):
        check_loop(loop, d, data=GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [0.1, 0.1]))
    with pytest.raises(ValueError, match="event_shape"):
        check_loop(loop, d, data=default_loop_data(4), event_shape=(3,))
    with pytest.raises(ValueError, match="alpha must be a probability"):
        check_loop(loop, d, alpha=2.0)
    with pytest.raises(ValueError, match="t_map must be"):
        check_loop(loop, d, t_map="respaced")
    with pytest.raises(ValueError, match="n must be >="):
        check_loop(loop, d, n=3)
    with pytest.raises(TypeError, match="to_numpy must be a callable"):
        check_loop(loop, d, to_numpy="numpy")
    with pytest.raises(ValueError, match="eta"):
        check_loop(loop, d, sampler="ddim", eta=-1.0)


# ---------------------------------------------------------------- power (run as a script)


def measure_power(seeds=20):
    """Per fault over ``seeds`` seeds: the FAIL rate, the rate at which the law rows alone
    FAIL, and the median law worst_ratio (the correct loops' rows are the false-FAIL rates)."""
    LAW = ("output mean", "output variance", "output correlation")
    table = {}
    cases = [(f, *FAULTS[f]) for f in FAULTS] + [(None, "ddpm", 0.0), (None, "ddim", 0.0)]
    for fault, sampler, eta in cases:
        reps = [run(fault, sampler, eta, seed=s) for s in range(seeds)]
        law = [
            max((r.worst_ratio for r in rep.rows if r.quantity in LAW), default=np.inf)
            for rep in reps
        ]
        table[fault or f"correct {sampler}"] = (
            np.mean([not rep.conforms for rep in reps]),
            np.mean([v > 1 for v in law]),
            float(np.median(law)),
        )
    return table


if __name__ == "__main__":  # pragma: no cover
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"{'fault':<22} {'FAIL rate':>9} {'law FAIL':>9} {'median law ratio':>17}")
    for name, (rate, law_rate, ratio) in measure_power(n_seeds).items():
        print(f"{name:<22} {rate:>9.2f} {law_rate:>9.2f} {ratio:>17.3g}")
