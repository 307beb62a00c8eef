"""npddpm.plotting: every figure function writes a PNG of the expected size (skipped without
matplotlib), atomically, and importing npddpm does not import matplotlib."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from npddpm import plotting

PNG = b"\x89PNG\r\n\x1a\n"


def _size(path) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header."""
    blob = path.read_bytes()
    assert blob[:8] == PNG and len(blob) > 1000
    return int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")


def _no_temp_left(directory) -> None:
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_importing_npddpm_does_not_import_matplotlib():
    code = (
        "import sys, npddpm, npddpm.plotting, npddpm.demo, npddpm.cli; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_read_loss_log_keeps_each_step_once(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [(50, 1.0), (100, 0.8), (50, 0.9), (100, 0.7), (150, 0.6)]  # a rerun appended
    log.write_text("".join(f'{{"step": {s}, "loss": {v}}}\n' for s, v in recs) + "\n")
    steps, losses = plotting.read_loss_log(log)
    assert steps.tolist() == [50, 100, 150] and losses.tolist() == [0.9, 0.7, 0.6]


def test_moment_errors_parses_the_verify_notes():
    from npddpm.verify import moment_rows

    rows = moment_rows({"linear": ("ddim10",)}, batch=4)
    parsed = [plotting.moment_errors(r.note) for r in rows]
    assert all(m > 0 and c > 0 for m, c, _ in parsed)
    exact = [q for r, (_, _, q) in zip(rows, parsed, strict=True) if r.variance == "exact"]
    assert exact and all(q is not None and q < 1e-9 for q in exact)
    with pytest.raises(ValueError, match="moments note"):
        plotting.moment_errors("no numbers here")


def test_check_output_refuses_an_existing_file(tmp_path):
    pytest.importorskip("matplotlib")
    f = tmp_path / "a.png"
    f.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="--force"):
        plotting.check_output(f)
    assert plotting.check_output(f, force=True) == f
    with pytest.raises(FileNotFoundError, match="directory"):
        plotting.check_output(tmp_path / "missing" / "a.png")
    assert f.read_bytes() == b"old"


def test_without_matplotlib_the_functions_say_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    assert not plotting.have_matplotlib()
    with pytest.raises(plotting.MatplotlibMissing, match="pip install"):
        plotting.demo_loss(tmp_path / "x.png", np.arange(3), np.ones(3))
    assert not list(tmp_path.iterdir())


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


def test_demo_figures(mpl, tmp_path):
    rng = np.random.default_rng(0)
    panels = {f"set {k}": rng.standard_normal((300, 2)) for k in range(4)}
    p = plotting.demo_samples(tmp_path / "samples.png", panels, scores={"set 1": 0.5})
    assert _size(p) == (1540, 473)
    steps = np.arange(50, 6001, 50)
    losses = 0.3 + 0.2 * np.exp(-steps / 500) + 0.02 * rng.random(steps.size)
    assert _size(plotting.demo_loss(tmp_path / "loss.png", steps, losses)) == (704, 440)
    wide = np.exp(-steps / 1000)  # over two decades: the 1-2-5 log ticks
    assert _size(plotting.demo_loss(tmp_path / "loss2.png", steps, wide)) == (704, 440)
    traj = rng.standard_normal((101, 200, 2))
    p = plotting.demo_trajectory(tmp_path / "trajectory.png", traj)
    assert _size(p) == (1760, 429)
    _no_temp_left(tmp_path)


def test_eval_figure_images_and_points(mpl, tmp_path):
    rng = np.random.default_rng(1)
    x, real = rng.uniform(-1, 1, (70, 1, 8, 8)), rng.uniform(-1, 1, (719, 1, 8, 8))
    p = plotting.eval_figure(tmp_path / "digits.png", x, real, suptitle="fid 1.0")
    assert _size(p) == (1100, 616)
    pts = plotting.eval_figure(
        tmp_path / "pts.png", rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    )
    assert _size(pts) == (770, 473)
    with pytest.raises(ValueError, match="images or 2-D"):
        plotting.eval_figure(tmp_path / "bad.png", np.zeros((5, 3)), np.zeros((5, 3)))
    _no_temp_left(tmp_path)


def test_verify_figure(mpl, tmp_path):
    from npddpm.verify import Row

    note = "vs data: |Δmean| 2.8e-05, |ΔΣ| 2.4e-01"
    rows = [
        Row("moments", "N", f"linear {sp}", "ddpm", v, "m", val, 1e-9, val <= 1e-9, n)
        for sp in ("100", "ddim10")
        for v, val, n in (
            ("fixed_small", 2e-15, note),
            ("exact", 0.0, note + "; from q(x_T): 6.1e-16"),
            ("fixed_large", 3e-8, note),  # a failure, drawn red
        )
    ] + [Row("chain", "mix", "linear 50", "ddpm", "fixed_small", "p", 0.3, 1e-4, True)]
    p = plotting.verify_figure(tmp_path / "verify.png", rows)
    assert _size(p) == (1375, round((0.24 * 6 + 1.6) * 110))
    with pytest.raises(ValueError, match="moments"):
        plotting.verify_figure(tmp_path / "none.png", rows[-1:])
    _no_temp_left(tmp_path)


def test_eval_and_verify_plot_refuse_to_overwrite(mpl, tmp_path, capsys):
    from npddpm import data
    from npddpm.cli import main

    x = data.get("8gaussians").sample(100, np.random.default_rng(0))
    np.savez(tmp_path / "s.npz", samples=x)
    png = tmp_path / "eval.png"
    png.write_bytes(b"old")
    for argv in (
        ["eval", str(tmp_path / "s.npz"), "--dataset", "8gaussians", "--plot", str(png)],
        ["verify", "--plot", str(png)],  # refused before the suite runs
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "exists" in err and "--force" in err
        assert png.read_bytes() == b"old"
    argv = ["eval", str(tmp_path / "s.npz"), "--dataset", "8gaussians", "--plot", str(png)]
    assert main([*argv, "--force"]) == 0
    assert _size(png) == (770, 473) and f"wrote {png}" in capsys.readouterr().out
    _no_temp_left(tmp_path)
