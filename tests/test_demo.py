"""The main job end to end on a tiny budget, and its command-line errors."""

import json
import subprocess
import sys

import numpy as np

from npddpm.demo import run_demo


def test_demo_writes_its_outputs(tmp_path):
    # 60 training steps: the point is the plumbing (files, keys, shapes), not the quality;
    # the default run's figures are in the README and the closing notes.
    summary = run_demo(
        tmp_path,
        progress=False,
        n=120,
        steps=60,
        vlb_n=20,
        num_timesteps=100,
        figures=False,
        log=lambda s: None,
    )
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["samplers"]) == {"ddpm", "ddim100", "oracle_ddpm"}
    for metrics in m["samplers"].values():
        assert {"c2st", "precision", "recall", "nll"} <= set(metrics)
        assert all(set(v) == {"value", "floor"} for v in metrics.values())
    with np.load(tmp_path / "samples.npz") as z:
        assert z["samples"].shape == (120, 2) and np.all(np.isfinite(z["samples"]))
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "log.jsonl").exists()
    assert summary["train_steps"] == 60
    # the exact oracle sampler is the reference: its C2ST is near chance even at n = 120
    assert m["samplers"]["oracle_ddpm"]["c2st"]["value"] < 0.65


def test_demo_cli_errors_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (
        ["--out", str(blocker / "sub")],
        ["--out", str(tmp_path), "--n", "0"],
        ["--out", str(tmp_path), "--steps", "0"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "npddpm.cli", "demo", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr


def test_demo_without_matplotlib_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    lines: list[str] = []
    run_demo(
        tmp_path,
        progress=False,
        n=120,
        steps=60,
        vlb_n=20,
        num_timesteps=100,
        log=lambda s: lines.extend(s.splitlines()),
    )
    notes = [x for x in lines if "matplotlib" in x]
    assert len(notes) == 1 and "skipped" in notes[0] and "pip install" in notes[0]
    assert not list(tmp_path.glob("*.png")) and (tmp_path / "metrics.json").exists()
