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


def test_no_command_prints_usage_exit_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


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


def test_nll_and_grid_sampling(tmp_path, capsys):
    # A few steps of a tiny U-Net on digits (T = 40): the commands run end to end, the bound
    # is finite and positive, --grid changes it, and sampling with --grid gives finite
    # images in [−1, 1] (the last DDPM step returns x̃₀, a mean of grey levels).
    import json

    import numpy as np

    out = tmp_path / "dig"
    args = ["train", "--dataset", "digits", "--steps", "3", "--timesteps", "40"]
    args += ["--channels", "8", "--batch-size", "8", "--out", str(out), "--quiet"]
    assert main(args) == 0
    ck = str(out / "checkpoint.npz")
    res = {}
    for grid in (False, True):
        js = tmp_path / f"nll{grid}.json"
        assert main(["nll", ck, "--n", "4", "--json", str(js)] + ["--grid"] * grid) == 0
        res[grid] = json.loads(js.read_text())
        assert res[grid]["unit"] == "bits/dim" and res[grid]["n"] == 4
        assert 0 < res[grid]["nll"] < 100
    assert res[True]["nll"] != res[False]["nll"]
    s = tmp_path / "s.npz"
    assert main(["sample", ck, "--n", "3", "--grid", "--clip", "--out", str(s), "--quiet"]) == 0
    x = np.load(s)["samples"]
    assert x.shape == (3, 1, 8, 8) and np.all(np.abs(x) <= 1)
    capsys.readouterr()
    # a dataset without grey levels: one line, exit 1
    two = tmp_path / "two"
    args = ["train", "--dataset", "8gaussians", "--steps", "3", "--timesteps", "40"]
    assert main([*args, "--hidden", "8", "--out", str(two), "--quiet"]) == 0
    assert main(["nll", str(two / "checkpoint.npz"), "--n", "5"]) == 0
    assert "nats" in capsys.readouterr().out
    assert main(["nll", str(two / "checkpoint.npz"), "--grid"]) != 0
    assert "grey levels" in capsys.readouterr().err


def test_train_options_reach_the_run(tmp_path):
    """Every training option of the CLI lands in the checkpoint's config, and the log and
    checkpoint periods are the ones asked for."""
    import json

    from npddpm.io import load_checkpoint

    out = tmp_path / "run"
    args = ["train", "--steps", "6", "--timesteps", "20", "--hidden", "8", "--out", str(out)]
    args += ["--lr", "2e-3", "--lr-warmup", "3", "--grad-clip", "none", "--profile", "diffusers"]
    args += ["--ema-decay", "0.9", "--no-ema-warmup", "--checkpoint-every", "4"]
    args += ["--log-every", "2", "--quiet"]
    assert main(args) == 0
    _, header = load_checkpoint(out / "checkpoint.npz")
    cfg = header["config"]
    assert (cfg["lr"], cfg["warmup_steps"], cfg["grad_clip"]) == (2e-3, 3, None)
    assert (cfg["profile"], cfg["ema_decay"], cfg["ema_warmup"]) == ("diffusers", 0.9, False)
    assert (cfg["checkpoint_every"], cfg["log_every"]) == (4, 2)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and all(s % 2 == 0 for s in steps), steps


def test_every_subcommand_takes_quiet(capsys):
    """--quiet is accepted everywhere (progress bars off; status lines dropped where a
    command has no bar)."""
    import pytest

    for argv in (["demo"], ["train"], ["sample", "x"], ["nll", "x"], ["eval", "x"],
                 ["verify"], ["conform"], ["conform", "diffusers"], ["vectors", "export", "d"],
                 ["bench", "q_sample"]):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--help"])
        assert exc.value.code == 0
        assert "--quiet" in capsys.readouterr().out, argv
