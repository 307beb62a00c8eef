"""Every subcommand driven with bad values: a non-zero exit, one line on stderr starting
``npddpm: ``, never a traceback. In-process through :func:`npddpm.cli.main` (a handful of
cases through a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from npddpm import cli
from npddpm.conformance.vectors import VECTORS_VERSION

# (argv with {tmp}, {file} (a regular file), {text}, {npy}, {trunc}, {ok} placeholders,
#  a fragment the one-line message must contain)
CASES = {
    "demo": [
        (["demo", "--n", "abc"], "argument --n"),
        (["demo", "--n", "5"], "--n must be >= 10"),
        (["demo", "--steps", "0"], "--steps must be >= 1"),
        (["demo", "--out", "{file}/sub"], "cannot write"),
    ],
    "train": [
        (["train"], "--out"),
        (["train", "--out", "{tmp}/r", "--steps", "x"], "argument --steps"),
        (["train", "--out", "{tmp}/r", "--steps", "0"], "argument --steps: must be >= 1"),
        (["train", "--out", "{tmp}/r", "--batch-size", "-1"], "argument --batch-size"),
        (["train", "--out", "{tmp}/r", "--lr", "-1"], "argument --lr"),
        (["train", "--out", "{tmp}/r", "--lr", "nan"], "argument --lr"),
        (["train", "--out", "{tmp}/r", "--schedule", "nope"], "argument --schedule"),
        (["train", "--out", "{tmp}/r", "--timesteps", "1000000000"], "GiB"),
        (["train", "--out", "{tmp}/r", "--timesteps", "0"], "argument --timesteps"),
        (["train", "--out", "{tmp}/r", "--mean-type", "nope"], "argument --mean-type"),
        (["train", "--out", "{tmp}/r", "--var-type", "nope"], "argument --var-type"),
        (["train", "--out", "{tmp}/r", "--loss-type", "nope"], "argument --loss-type"),
        (["train", "--out", "{tmp}/r", "--hidden", "0"], "argument --hidden"),
        (["train", "--out", "{tmp}/r", "--channels", "-2"], "argument --channels"),
        (["train", "--out", "{tmp}/r", "--seed", "-1"], "argument --seed"),
        (["train", "--out", "{tmp}/r", "--backend", "tpu"], "argument --backend"),
        (["train", "--out", "{tmp}/r", "--model", "gpt"], "argument --model"),
        (["train", "--out", "{tmp}/r", "--dataset", "nope"], "nope"),
        (["train", "--out", "{tmp}/r", "--resume", "{tmp}/missing.npz"], "missing.npz"),
        (["train", "--out", "{file}/sub", "--steps", "1"], "sub"),
        (["train", "--out", "{tmp}/r", "--lr-warmup", "-1"], "argument --lr-warmup"),
        (["train", "--out", "{tmp}/r", "--grad-clip", "0"], "argument --grad-clip"),
        (["train", "--out", "{tmp}/r", "--grad-clip", "inf"], "argument --grad-clip"),
        (["train", "--out", "{tmp}/r", "--ema-decay", "1"], "argument --ema-decay"),
        (["train", "--out", "{tmp}/r", "--ema-decay", "nan"], "argument --ema-decay"),
        (["train", "--out", "{tmp}/r", "--profile", "nope"], "argument --profile"),
        (["train", "--out", "{tmp}/r", "--checkpoint-every", "0"], "argument --checkpoint-every"),
        (["train", "--out", "{tmp}/r", "--log-every", "x"], "argument --log-every"),
    ],
    "sample": [
        (["sample", "{ok}"], "--out"),
        (["sample", "{tmp}/missing.npz", "--out", "{tmp}/s.npz"], "missing.npz"),
        (["sample", "{text}", "--out", "{tmp}/s.npz"], ""),
        (["sample", "{trunc}", "--out", "{tmp}/s.npz"], ""),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--n", "0"], "argument --n"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--n", "x"], "argument --n"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--sampler", "euler"], "argument --sampler"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--steps", "0"], "argument --steps"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--eta", "-1"], "argument --eta"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--eta", "x"], "argument --eta"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--eta", "0.5"], "--eta only applies"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--seed", "-1"], "argument --seed"),
        (["sample", "{ok}", "--out", "{tmp}/s.npz", "--backend", "tpu"], "argument --backend"),
    ],
    "nll": [
        (["nll"], "checkpoint"),
        (["nll", "{tmp}/missing.npz"], "missing.npz"),
        (["nll", "{trunc}"], ""),
        (["nll", "{ok}", "--n", "1"], "--n must be >= 2"),
        (["nll", "{ok}", "--n", "x"], "argument --n"),
        (["nll", "{ok}", "--seed", "-1"], "argument --seed"),
    ],
    "eval": [
        (["eval", "{ok}"], "--dataset"),
        (["eval", "{tmp}/missing.npz", "--dataset", "8gaussians"], "no such file"),
        (["eval", "{tmp}", "--dataset", "8gaussians"], "is a directory"),
        (["eval", "{npy}", "--dataset", "8gaussians"], "a .npy file"),
        (["eval", "{text}", "--dataset", "8gaussians"], "with array 'samples'"),
        (["eval", "{trunc}", "--dataset", "8gaussians"], "with array 'samples'"),
        (["eval", "{ok}", "--dataset", "8gaussians", "--key", "x"], "no array 'x'"),
        (["eval", "{ok}", "--dataset", "nope"], "nope"),
    ],
    "vectors": [
        (["vectors"], "vectors needs an action"),
        (["vectors", "export"], "dir"),
        (["vectors", "export", "{tmp}/v", "--seed", "-1"], "argument --seed"),
        (["vectors", "export", "{file}/sub"], "cannot write vectors"),
    ],
    "conform": [
        (["conform"], "give an implementation"),
        (["conform", "pytorch"], "argument target"),
        (["conform", "diffusers", "--steps", "0"], "argument --steps"),
        (["conform", "diffusers", "--steps", "5000"], "--steps must be 1 to 1000"),
        (["conform", "diffusers", "--steps", "x"], "argument --steps"),
        (["conform", "--vectors", "{tmp}/missing"], "not a vectors directory"),
        (["conform", "--vectors", "{nocases}"], "no list of 'cases'"),
        (["conform", "--vectors", "{truncvec}", "--expected", "{truncvec}"], "truncated"),
        (["conform", "--vectors", "{truncvec}", "--expected", "{tmp}/nope"], "--expected"),
    ],
    "verify": [
        (["verify", "--frobnicate"], "unrecognized"),
        (["verify", "extra"], "unrecognized"),
    ],
    "bench": [
        (["bench"], "op"),
        (["bench", "q_sample"], "--kernel"),
        (["bench", "nope", "--kernel", "m:f"], "argument op"),
        (["bench", "q_sample", "--kernel", "no_such_module_xyz:f"], "no_such_module_xyz"),
        (["bench", "q_sample", "--kernel", "m:f", "--rounds", "x"], "argument --rounds"),
        (["bench", "q_sample", "--kernel", "m:f", "--framework", "tf"], "argument --framework"),
    ],
    "": [
        (["frobnicate"], "invalid choice"),
        (["--frobnicate"], "unrecognized"),
    ],
}
PARAMS = [
    pytest.param(argv, fragment, id=" ".join(argv))
    for cmd in CASES
    for argv, fragment in CASES[cmd]
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "file").write_text("a regular file\n")
    (tmp / "text.txt").write_text("1 2\n3 4\n")
    np.save(tmp / "x.npy", np.zeros((10, 2)))
    np.savez(tmp / "ok.npz", samples=np.zeros((10, 2)))
    (tmp / "trunc.npz").write_bytes((tmp / "ok.npz").read_bytes()[:100])
    nocases = tmp / "nocases"
    nocases.mkdir()
    (nocases / "index.json").write_text(
        json.dumps({"format": "npddpm-vectors", "version": VECTORS_VERSION})
    )
    truncvec = tmp / "truncvec"
    truncvec.mkdir()
    index = {"format": "npddpm-vectors", "version": VECTORS_VERSION, "cases": [{"file": "a.npz"}]}
    (truncvec / "index.json").write_text(json.dumps(index))
    (truncvec / "a.npz").write_bytes((tmp / "ok.npz").read_bytes()[:100])
    return {
        "tmp": str(tmp),
        "file": str(tmp / "file"),
        "text": str(tmp / "text.txt"),
        "npy": str(tmp / "x.npy"),
        "ok": str(tmp / "ok.npz"),
        "trunc": str(tmp / "trunc.npz"),
        "nocases": str(nocases),
        "truncvec": str(truncvec),
    }


def run_main(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.err


def assert_one_line_error(status, err, fragment, argv):
    assert status not in (0, None), (argv, err)
    assert "Traceback" not in err, (argv, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("npddpm: "), (argv, err)
    assert fragment in lines[0], (argv, fragment, err)


@pytest.mark.parametrize(("argv", "fragment"), PARAMS)
def test_bad_value_is_one_line_error(argv, fragment, files, capsys, monkeypatch):
    monkeypatch.delenv("NPDDPM_DEBUG", raising=False)
    argv = [a.format(**files) for a in argv]
    status, err = run_main(argv, capsys)
    assert_one_line_error(status, err, fragment, argv)


@pytest.mark.parametrize("command", ["train", "sample"])
def test_cuda_backend_without_a_gpu(command, files, capsys, monkeypatch):
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    if command == "train":
        argv = ["train", "--out", f"{files['tmp']}/cuda", "--backend", "cuda", "--quiet"]
    else:
        argv = ["sample", files["ok"], "--out", f"{files['tmp']}/s.npz", "--backend", "cuda"]
    status, err = run_main(argv, capsys)
    assert_one_line_error(status, err, "--backend cuda needs an NVIDIA GPU", argv)


def test_no_command_is_usage_exit_2(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: npddpm") and "npddpm: error: give a command" in err


def test_every_help_shows_defaults_and_choices(capsys):
    def help_of(*argv):
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        return " ".join(capsys.readouterr().out.split())

    from npddpm.diffusion import LOSS_TYPES, MEAN_TYPES, VAR_TYPES
    from npddpm.kernels import BACKENDS
    from npddpm.schedules import schedule_names

    train = help_of("train")
    for names in (schedule_names(), MEAN_TYPES, VAR_TYPES, LOSS_TYPES, BACKENDS):
        assert "{" + ",".join(names) + "}" in train
    for default in ("(default: 3000)", "(default: 256)", "(default: linear)", "(default: 0)"):
        assert default in train
    sample = help_of("sample")
    assert "{ddpm,ddim}" in sample and "(default: ddpm)" in sample and "(default: 1000)" in sample
    assert "(default 50;" in help_of("conform") and "(default: 2000)" in help_of("demo")
    assert "(default: samples)" in help_of("eval") and "(default: 0)" in help_of("nll")


def test_safety_net_turns_library_errors_into_one_line(capsys, monkeypatch):
    from npddpm.cli import verify as verify_cmd

    def boom(args):
        raise ValueError("something the library\nsays is wrong")

    monkeypatch.setattr(verify_cmd, "run", boom)
    monkeypatch.delenv("NPDDPM_DEBUG", raising=False)
    status, err = run_main(["verify"], capsys)
    assert status == 1 and err.startswith("npddpm: error: something the library says is wrong")
    assert err.count("\n") == 1
    monkeypatch.setenv("NPDDPM_DEBUG", "1")  # the traceback for a developer
    with pytest.raises(ValueError, match="something"):
        cli.main(["verify"])


def test_safety_net_does_not_hide_bugs(monkeypatch):
    from npddpm.cli import verify as verify_cmd

    monkeypatch.setattr(verify_cmd, "run", lambda args: 1 // 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["verify"])


@pytest.mark.parametrize(
    "argv",
    [[], ["train", "--out", "x", "--timesteps", "1000000000"], ["nll", "x.npz", "--seed", "-1"]],
)
def test_subprocess_exit_status(argv):
    r = subprocess.run(
        [sys.executable, "-m", "npddpm.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("npddpm: error: ")
