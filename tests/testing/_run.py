"""A pytest session in a subprocess, for the plugin's own tests: a fresh directory, its own
working directory and --basetemp, so the outer session's cwd and temporary directories are
never touched (in-process pytester sessions broke later tests of the full suite)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _pytest.pytester import RunResult


class Sandbox:
    """``makepyfile(name=text)`` then ``runpytest(*args)`` → a pytester ``RunResult``."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="npddpm-plugin-"))

    def makepyfile(self, **files: str) -> None:
        for name, text in files.items():
            (self.path / f"{name}.py").write_text(text)

    def runpytest(self, *args: str) -> RunResult:
        env = {**os.environ, "PYTHONPATH": str(self.path)}
        t0 = time.time()
        basetemp = f"--basetemp={self.path / 'basetemp'}"
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", basetemp, *map(str, args)],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out, err = r.stdout.splitlines(), r.stderr.splitlines()
        return RunResult(r.returncode, out, err, time.time() - t0)
