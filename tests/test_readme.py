"""The README's tour and the docstring examples are executed, so they cannot rot."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tour():
    result = doctest.testfile(
        str(ROOT / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert result.attempted > 0, "the README tour has no examples"
    assert result.failed == 0


@pytest.mark.parametrize(
    "module", ["npddpm.schedules", "npddpm.testing.strategies", "npddpm._numba"]
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
