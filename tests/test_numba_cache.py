"""npddpm's on-disk Numba cache (npddpm._numba): a second process loads the kernels instead
of compiling them, and any edit to npddpm's sources, in any file, invalidates the cache.

Asserts on Numba's cache hit/miss counters, not on timings. Each case runs in a fresh
process on a temporary copy of the package with its own cache directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import npddpm
from npddpm import _numba

pytest.importorskip("numba")

_SCRIPT = """
import json, sys
import numpy as np
import npddpm
from npddpm import _numba
from npddpm.nn._fused import kernels
k = kernels().bias_silu
h = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
b = np.arange(4, dtype=np.float32)
a = np.empty_like(h)
k(h, b, a)
print(json.dumps({
    "file": npddpm.__file__,
    "hits": sum(k.stats.cache_hits.values()),
    "misses": sum(k.stats.cache_misses.values()),
    "cache": type(k._cache).__name__,
    "dir": str(_numba.cache_dir()),
    "out": a.tolist(),
}))
"""


def _run(root: Path, cache: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NPDDPM_", "NUMBA_"))}
    environ.update(PYTHONPATH=str(root), NPDDPM_NUMBA_CACHE_DIR=str(cache), **env)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=environ, capture_output=True, text=True, cwd=root,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(root.resolve())
    return result


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(
        Path(npddpm.__file__).parent, root / "npddpm", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


def test_second_process_hits_and_any_source_edit_invalidates(package_copy: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    first = _run(package_copy, cache)
    assert first["cache"] == "_Cache"
    assert first["misses"] >= 1 and first["hits"] == 0
    second = _run(package_copy, cache)
    assert second["hits"] >= 1 and second["misses"] == 0  # loaded, not compiled
    assert second["out"] == first["out"] and second["dir"] == first["dir"]
    # an edit in a file the kernel does not even live in starts a fresh cache directory
    rng = package_copy / "npddpm" / "rng.py"
    rng.write_text(rng.read_text() + "\n# edited\n")
    third = _run(package_copy, cache)
    assert third["dir"] != first["dir"]
    assert third["hits"] == 0 and third["misses"] >= 1
    assert third["out"] == first["out"]
    # the switch: NPDDPM_NUMBA_CACHE=0 compiles in memory, reads and writes nothing
    off = _run(package_copy, cache, NPDDPM_NUMBA_CACHE="0")
    assert off["cache"] == "NullCache" and off["hits"] == 0


def _closure(value):
    def f(x):
        return x * value

    return f


def test_key_follows_closure_values_and_globals():
    key = _numba._function_key
    assert key(_closure(2.0)) == key(_closure(2.0))  # rebuilt: same key (deterministic)
    assert key(_closure(2.0)) != key(_closure(3.0))  # a frozen-in value differs
    assert key(_closure(2)) != key(_closure(2.0))  # so does its type

    def g(x):
        return _closure(x)

    def h(x):
        return _closure(x) + 1

    assert key(g) != key(h)  # constants and bytecode


def test_source_hash_and_cache_dir():
    digest = _numba.source_hash()
    assert len(digest) == 64 and digest == _numba.source_hash()
    assert _numba.cache_dir().name.endswith(digest[:16])
    assert _numba.cache_dir().name.startswith(npddpm.__version__)
