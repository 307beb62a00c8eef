"""The command line: help, version, one-line errors with exit status 2."""

import subprocess
import sys

from npddpm import __version__
from npddpm.cli import main


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "npddpm.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "demo" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and __version__ in r.stdout


def test_usage_error_is_one_line_exit_2():
    r = run("frobnicate")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage" in capsys.readouterr().out


def test_train_sample_eval_round_trip(tmp_path):
    out = tmp_path / "run"
    r = run(
        "train",
        "--dataset",
        "8gaussians",
        "--steps",
        "20",
        "--timesteps",
        "40",
        "--hidden",
        "16",
        "--out",
        str(out),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "sample",
        str(out / "checkpoint.npz"),
        "--n",
        "50",
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--out",
        str(tmp_path / "s.npz"),
        "--quiet",
        "--backend",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "eval",
        str(tmp_path / "s.npz"),
        "--dataset",
        "8gaussians",
        "--json",
        str(tmp_path / "m.json"),
    )
    assert r.returncode == 0 and "c2st" in r.stdout, r.stderr
    # resume continues from the checkpoint's step
    r = run(
        "train",
        "--dataset",
        "8gaussians",
        "--steps",
        "30",
        "--timesteps",
        "40",
        "--hidden",
        "16",
        "--out",
        str(out),
        "--resume",
        str(out / "checkpoint.npz"),
        "--quiet",
    )
    assert r.returncode == 0 and "trained 30 steps" in r.stdout, r.stderr


def test_command_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    for args in (
        ("train", "--dataset", "nope", "--out", str(tmp_path)),
        ("sample", str(bad), "--out", str(tmp_path / "x.npz")),
        ("sample", str(bad), "--out", str(tmp_path / "x.npz"), "--n", "0"),
        ("eval", str(bad), "--dataset", "8gaussians"),
    ):
        r = run(*args)
        assert r.returncode != 0 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
