"""``npddpm bench`` / :func:`npddpm.kernels.bench_kernel`: the correctness gate, the report
and its schema, the ranking of a deliberately slow kernel, bad input, the command line.

Small arrays (2000 elements), one or two rounds: fast. Speed itself is never asserted beyond
"the deliberately slow kernel ranks slower than the cpu backend".
"""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from npddpm.cli import main
from npddpm.kernels import adapt, bench_kernel, load_kernel
from npddpm.kernels.bench import BENCH_OPS, check_outputs

from . import bench_kernels as bk

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "npddpm" / "kernels" / "bench_schema.json"
KERNELS = "tests.kernels.bench_kernels"
SMALL = {"sizes": [2000], "rounds": 1, "min_time": 0.0}


def _run(kernel, op="q_sample", **kw):
    return bench_kernel(op, kernel, **(SMALL | {"backends": ["numpy"]} | kw))


@pytest.mark.parametrize("op", BENCH_OPS)
def test_a_correct_numpy_kernel_of_each_contract_passes(op):
    report = _run(getattr(bk, op), op)
    assert report.correct, report.verdict()
    assert len(report.checks) == 4  # every timestep + the timed cell, per dtype
    assert all(c.max_ulps < 4 for c in report.checks)  # well inside the 16-ulp tolerance
    assert report.verdict()[0].startswith("correct:")


@pytest.mark.parametrize("kernel", [bk.q_sample_t_plus_one, bk.q_sample_no_sqrt])
def test_a_wrong_kernel_is_reported_wrong_with_margin(kernel):
    report = _run(kernel)
    assert not report.correct
    assert all(not c.passed for c in report.checks)
    for c in report.checks:  # not a near miss: far outside the tolerance
        assert c.max_error > 1000 * c.tolerance
    lines = report.verdict()
    assert lines and all(v.startswith("WRONG") for v in lines)
    assert report.table().startswith("WRONG")  # reported first, before the timings
    user = report.timing("yours", "float32", 2000)
    assert user.correct is False and user.median > 0  # timed all the same, and marked
    assert "yours*" in report.table()


def test_adapted_signature_passes_and_unknown_names_are_refused():
    assert _run(bk.q_sample_other_signature).correct
    with pytest.raises(ValueError, match="no quantity 'sqrt_alpha'"):
        _run(adapt(bk.q_sample, signature="x0, t, noise, sqrt_alpha"))


@pytest.mark.torch
def test_a_correct_torch_cpu_kernel_passes():
    pytest.importorskip("torch")
    report = _run(bk.q_sample_torch)
    assert report.framework == "torch"
    assert report.correct, report.verdict()


def test_the_framework_is_detected_from_the_kernel_code():
    from npddpm.kernels import _frameworks as fw

    assert fw.detect(bk.q_sample) == "numpy"
    assert fw.detect(lambda x: x) == "numpy"
    ns = {"torch": types.ModuleType("torch"), "cupy": types.ModuleType("cupy")}
    exec("def k(a, x, t, z):\n    return torch.sqrt(a)\ndef both(a):\n    return cupy, k(a)", ns)
    assert fw.detect(ns["k"]) == "torch"  # from the globals its code uses; imports nothing
    with pytest.raises(ValueError, match="cupy, torch; pass framework="):
        fw.detect(ns["both"])
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="not installed"):
            _run(bk.q_sample, framework="cupy")


def test_the_json_report_validates_against_the_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for kernel in (bk.q_sample, bk.q_sample_t_plus_one):
        report = bench_kernel("q_sample", kernel, **(SMALL | {"rounds": 2}))
        jsonschema.validate(report.to_dict(), schema)
    path = tmp_path / "r.json"
    md = tmp_path / "r.md"
    report.write(json=path, markdown=md)
    payload = json.loads(path.read_text())
    jsonschema.validate(payload, schema)
    assert payload["version"] == 1 and payload["correct"] is False
    assert {r["side"] for r in payload["results"]} >= {"yours", "numpy", "cpu", "stream_triad"}
    assert "**WRONG" in md.read_text()
    with pytest.raises(FileExistsError, match="--force"):
        report.write(json=path)
    report.write(json=path, force=True)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_a_deliberately_slow_kernel_ranks_slower_than_the_cpu_backend():
    report = bench_kernel("q_sample", bk.q_sample_slow, sizes=[2000], dtypes=["float64"], rounds=3)
    assert report.correct
    user = report.timing("yours", "float64", 2000)
    cpu = report.timing("cpu", "float64", 2000)
    assert user.median > cpu.median
    assert user.vs["cpu"] < 1


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown op 'p_sample'"):
        _run(bk.q_sample, op="p_sample")
    with pytest.raises(ValueError, match="cannot import kernel module 'no_such_module'"):
        _run("no_such_module:f")
    with pytest.raises(ValueError, match="module:function"):
        load_kernel("no_colon")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        load_kernel(f"{KERNELS}:nope")
    with pytest.raises(TypeError, match="not a callable"):
        load_kernel(f"{KERNELS}:NOT_CALLABLE")
    with pytest.raises(ValueError, match=r"returned shape \(16000,\)"):
        _run(bk.q_sample_wrong_shape)
    with pytest.raises(TypeError, match="returned float64 for float32 inputs"):
        _run(bk.q_sample_wrong_dtype)
    for sizes in ([0], [1.5], ["abc"], [1500], []):
        with pytest.raises(ValueError, match="size"):
            _run(bk.q_sample, sizes=sizes)
    with pytest.raises(ValueError, match="float32 or float64"):
        _run(bk.q_sample, dtypes=["float16"])
    with pytest.raises(ValueError, match="rounds"):
        _run(bk.q_sample, rounds=0)
    from npddpm.kernels import _frameworks as fw

    if not fw.gpu_usable():
        with pytest.raises(ValueError, match="needs a usable NVIDIA GPU"):
            _run(bk.q_sample, backends=["cuda"])


def test_a_kernel_that_raises_is_named():
    def broken(alphas_cumprod, x0, t, noise):
        raise ZeroDivisionError("oops")

    with pytest.raises(RuntimeError, match="broken raised ZeroDivisionError: oops"):
        _run(broken)


def test_output_files_are_checked_before_the_run(tmp_path):
    (tmp_path / "taken.json").write_text("{}")
    with pytest.raises(FileExistsError):
        check_outputs([tmp_path / "taken.json"])
    with pytest.raises(FileNotFoundError):
        check_outputs([tmp_path / "missing" / "r.md"])
    assert check_outputs([tmp_path / "taken.json", None], force=True) == [tmp_path / "taken.json"]


# --- the command line --------------------------------------------------------------------------


def _cli(*args):
    return main(["bench", "q_sample", "--sizes", "2000", "--rounds", "1", *args])


def test_cli_good_run_exits_0_and_writes(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert _cli("--kernel", f"{KERNELS}:q_sample", "--json", str(out), "--markdown",
                str(tmp_path / "r.md")) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert text.startswith("correct:") and "stream_triad" in text and "vs cpu" in text
    assert json.loads(out.read_text())["correct"] is True
    assert _cli("--kernel", f"{KERNELS}:q_sample", "--json", str(out)) == 2  # exists, no --force
    assert "exists" in capsys.readouterr().err


def test_cli_wrong_kernel_exits_1(capsys):
    assert _cli("--kernel", f"{KERNELS}:q_sample_t_plus_one", "--backends", "numpy") == 1
    assert capsys.readouterr().out.startswith("WRONG")


def test_cli_plot(tmp_path, capsys):
    png = tmp_path / "r.png"
    status = _cli("--kernel", f"{KERNELS}:q_sample", "--backends", "numpy", "--plot", str(png))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert status == 2 and "matplotlib" in capsys.readouterr().err
        assert not png.exists()
    else:
        assert status == 0 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "kernel", ["no_such_module:f", f"{KERNELS}:nope", f"{KERNELS}:NOT_CALLABLE", "no_colon"]
)
def test_cli_bad_kernel_is_one_line_no_traceback(kernel):
    r = subprocess.run(
        [sys.executable, "-m", "npddpm.cli", "bench", "q_sample", "--kernel", kernel,
         "--sizes", "2000", "--rounds", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("npddpm: error:")


def test_cli_unknown_op_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "p_sample", "--kernel", f"{KERNELS}:q_sample"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_results_are_finite_and_ratios_consistent():
    report = bench_kernel("langevin_step", bk.langevin_step, **(SMALL | {"rounds": 2}))
    for t in report.timings:
        assert np.isfinite(t.gbps) and t.of_probe is not None and t.of_probe > 0
    user, numpy_side = (
        report.timing("yours", "float32", 2000),
        report.timing("numpy", "float32", 2000),
    )
    assert user.vs["numpy"] == pytest.approx(numpy_side.median / user.median)
    assert report.timing("stream_triad", "float64", 2000).nbytes == 3 * 2000 * 8
    assert user.nbytes == 4 * 2000 * 4  # x, score, noise read; out written


def test_progress_bar_counts_cells_and_is_off_by_default(capsys):
    """progress=True draws one bar over the (dtype, size) cells on stderr; the default draws
    none (the CLI passes None: a bar only on a terminal, none with --quiet)."""
    _run(bk.q_sample, sizes=[1000, 2000], dtypes=["float64"], progress=True)
    err = capsys.readouterr().err
    # on a non-terminal tqdm draws only the first state (and clears it at the end)
    assert "bench q_sample" in err and "/2 " in err, err
    _run(bk.q_sample, progress=False)
    assert capsys.readouterr().err == ""
