"""Test vectors: export, read back, and compare results written by 'another implementation'."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from npddpm import GaussianDiffusion, Schedule
from npddpm.conformance.vectors import compare_vectors, export_vectors, load_vectors


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    d = tmp_path_factory.mktemp("vec")
    export_vectors(d)
    return d


def test_index_and_arrays(vectors):
    index, data = load_vectors(vectors)
    assert index["format"] == "npddpm-vectors" and index["version"] == 1
    kinds = {c["kind"] for c in index["cases"]}
    assert kinds == {
        "schedule",
        "spacing",
        "q_sample",
        "q_posterior",
        "p_mean_variance",
        "ddpm_step",
        "ddim_step",
        "losses",
        "oracle",
        "oracle_trajectory",
    }
    for case in index["cases"]:
        assert set(case["inputs"]) | set(case["outputs"]) == set(data[case["file"]])


def test_a_reimplementation_from_the_inputs_agrees(vectors, tmp_path):
    """Recompute one DDPM-step case from its stored inputs with the formulas written out here
    (Ho et al. Eqs. 7, 11, improved-diffusion clipping) — what another project would do."""
    index, data = load_vectors(vectors)
    case = next(
        c for c in index["cases"] if c["file"] == "ddpm_step_linear_eps_fixed_small_clip.npz"
    )
    a = data[case["file"]]
    ab, t = a["alphas_cumprod"], a["t"]
    abp = np.append(1.0, ab[:-1])
    beta = 1 - ab / abp
    x0 = np.clip(
        np.sqrt(1 / ab[t])[:, None] * a["x_t"]
        - np.sqrt(1 / ab[t] - 1)[:, None] * a["model_output"],
        -1,
        1,
    )
    c1 = (beta * np.sqrt(abp) / (1 - ab))[t][:, None]
    c2 = ((1 - abp) * np.sqrt(1 - beta) / (1 - ab))[t][:, None]
    pv = beta * (1 - abp) / (1 - ab)
    logv = np.log(np.append(pv[1], pv[1:]))[t][:, None]
    sample = c1 * x0 + c2 * a["x_t"] + (t != 0)[:, None] * np.exp(0.5 * logv) * a["noise"]
    assert np.allclose(sample, a["sample"], rtol=1e-12, atol=1e-12)
    # write it as results and compare through the public path
    res = tmp_path / "res"
    shutil.copytree(vectors, res)
    rows = compare_vectors(vectors, res)
    assert all(r["verdict"] == "ok" for r in rows)
    np.savez(res / case["file"], **{**a, "sample": sample + 1e-3})
    bad = [r for r in compare_vectors(vectors, res) if r["verdict"] != "ok"]
    assert [(r["file"], r["output"]) for r in bad] == [(case["file"], "sample")]


def test_vectors_match_the_library(vectors):
    _, data = load_vectors(vectors)
    a = data["q_sample_cosine_ddim50.npz"]
    s = Schedule.from_name("cosine", 1000).respace(a["timestep_map"])
    xt = GaussianDiffusion(s).q_sample(a["x0"], a["t"], a["noise"])
    assert np.array_equal(xt, a["x_t"])


def test_cli_export_and_conform(tmp_path, vectors):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "npddpm.cli",
            "conform",
            "--vectors",
            str(vectors),
            "--expected",
            str(vectors),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "outputs agree" in r.stdout
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "npddpm.cli",
            "conform",
            "--vectors",
            str(tmp_path / "nothing"),
            "--expected",
            str(vectors),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an npddpm vectors index"):
        load_vectors(tmp_path / "idx")


def test_oracle_vectors_against_closed_form(vectors):
    """For a single component the exact denoiser is linear; for the stored mixture check
    E[ε|x_t] against Tweedie on the marginal density written out here (finite differences of
    log q(x_t) in float64, step 1e-5, error ~1e-9)."""
    from scipy import stats

    _, data = load_vectors(vectors)
    a = data["oracle_linear.npz"]
    w, mu, var, ab = a["weights"], a["means"], a["variances"], a["alphas_cumprod"]
    for row, t in enumerate(a["t"]):
        x = a["x_t"][row]

        def logq(y, t=t):
            comps = [
                w[k]
                * stats.multivariate_normal(
                    np.sqrt(ab[t]) * mu[k], (ab[t] * var[k] + 1 - ab[t]) * np.eye(2)
                ).pdf(y)
                for k in range(2)
            ]
            return np.log(sum(comps))

        h = 1e-5
        score = np.array([(logq(x + h * e) - logq(x - h * e)) / (2 * h) for e in np.eye(2)])
        assert np.allclose(a["score"][row], score, rtol=1e-6, atol=1e-7)
        assert np.allclose(a["eps"][row], -np.sqrt(1 - ab[t]) * score, rtol=1e-6, atol=1e-7)
