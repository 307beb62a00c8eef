"""The asv suite in ``benchmarks/benchmarks`` imports without asv, and each benchmark class's
``setup`` and benchmark methods run once at the smallest size (speed is not checked here)."""

from __future__ import annotations

import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "benchmarks"
MODULES = ["common", "kernels", "generator", "sampling", "jit"]


def _suite():
    """The suite's modules, imported as asv imports them: package ``benchmarks`` from
    ``benchmarks/`` (the name matters: Numba's on-disk cache of the triad records it)."""
    pkg = sys.modules.get("benchmarks")
    if pkg is not None and Path(getattr(pkg, "__file__", None) or "").parent != SUITE:
        del sys.modules["benchmarks"]  # e.g. the namespace package of the repository's folder
    if str(SUITE.parent) not in sys.path:
        sys.path.insert(0, str(SUITE.parent))
    mods = {m: importlib.import_module(f"benchmarks.{m}") for m in MODULES}
    assert Path(mods["common"].__file__).parent == SUITE
    return mods


@pytest.fixture(autouse=True)
def _short_tracks(monkeypatch):
    """The ``track_`` benchmarks time 5 calls only (their minimum)."""
    monkeypatch.setattr(_suite()["common"], "TRACK_BUDGET", 1e-6)


def _classes(mod):
    return [
        c
        for name, c in inspect.getmembers(mod, inspect.isclass)
        if not name.startswith("_") and c.__module__ == mod.__name__
    ]


def _methods(cls):
    return [m for m in dir(cls) if m.startswith(("time_", "track_"))]


def test_modules_import_without_asv():
    code = (
        "import sys; sys.modules['asv'] = None; sys.modules['asv_runner'] = None\n"
        f"sys.path.insert(0, {str(SUITE.parent)!r})\n"
        + "".join(f"import benchmarks.{m}\n" for m in MODULES)
        + "assert 'numba' not in sys.modules, 'the suite imports numba at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SUITE.parent)


def test_every_class_has_a_grid_and_benchmarks():
    mods = _suite()
    classes = [c for m in MODULES[1:] for c in _classes(mods[m])]
    assert {c.__name__ for c in classes} >= {
        "QSample", "DDPMStep", "DDIMStep", "LangevinStep", "StandardNormal", "Compile",
    }  # fmt: skip
    for cls in classes:
        assert len(cls.params) == len(cls.param_names), cls
        assert _methods(cls), cls


@pytest.mark.parametrize("module", ["kernels", "generator", "sampling"])
def test_setup_and_one_call_at_the_smallest_size(module):
    mods = _suite()
    for cls in _classes(mods[module]):
        args = [values[0] for values in cls.params]  # smallest size, first dtype, numpy
        bench = cls()
        bench.setup(*args)
        for name in _methods(cls):
            value = getattr(bench, name)(*args)
            if name.startswith("track_"):
                assert value > 0, (cls, name, value)


def test_cpu_kernel_and_triad_at_the_smallest_size():
    k = _suite()["kernels"]
    args = (k.common.SIZES[0], "float32", "cpu", "in-kernel")
    bench = k.QSample()
    bench.setup(*args)
    bench.time_kernel(*args)
    assert 0 < bench.track_vs_triad(*args) < 100


def test_cuda_without_a_gpu_is_skipped_in_setup():
    mods = _suite()
    if mods["common"].cuda_usable():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(NotImplementedError):
        mods["kernels"].DDPMStep().setup(100_000, "float32", "cuda", "given")
    with pytest.raises(NotImplementedError):
        mods["jit"].Compile().setup("q_sample[given]", "cuda")


def test_cached_first_call_in_a_child():
    jit = _suite()["jit"]
    bench = jit.CacheLoad()
    bench.setup("q_sample[given]")
    assert bench.track_cached_first_call_seconds("q_sample[given]") < 60


def test_asv_check():
    pytest.importorskip("asv")
    asv = shutil.which("asv")
    if asv is None:
        pytest.skip("asv is installed but its command is not on PATH")
    res = subprocess.run(
        [asv, "check", "--python=same"], cwd=ROOT / "benchmarks", capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No problems found" in res.stdout, res.stdout
