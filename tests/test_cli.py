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
