"""Hypothesis profiles.

``ci`` (default): no deadline (shared 2-core machines have noisy timings), derandomized so
every run draws the same examples (a reproducible seed), 60 examples per test.
``thorough``: 1000 examples, random seed. ``dev``: 20 examples, for quick iteration.
Select with the environment variable ``NPDDPM_HYPOTHESIS_PROFILE``.

Tests marked ``sweep`` (a whole sweep: minutes to hours) are skipped unless
``NPDDPM_SWEEPS=1``; their fast subsets run always.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=60,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("NPDDPM_HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NPDDPM_SWEEPS") == "1":
        return
    skip = pytest.mark.skip(reason="a whole sweep (minutes to hours): set NPDDPM_SWEEPS=1")
    for item in items:
        if "sweep" in item.keywords:
            item.add_marker(skip)
