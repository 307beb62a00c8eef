"""The tests the npddpm pytest plugin adds to a user's session (``--npddpm-impl``): one per row
of each conformance report. Collected only through the plugin."""

from __future__ import annotations

from typing import Any

import pytest

from npddpm.testing import pytest_plugin as plugin


def pytest_generate_tests(metafunc: Any) -> None:
    if "npddpm_drawn" in metafunc.fixturenames:
        found = plugin.adapters(metafunc.config)
        metafunc.parametrize("npddpm_drawn", found, ids=[a.name for a in found])
        return
    if "npddpm_row" not in metafunc.fixturenames:
        return
    cases, ids = [], []
    for report in plugin.reports(metafunc.config):
        for row in report.rows:
            cases.append((report, row))
            ids.append(plugin.check_id(report, row))
    metafunc.parametrize("npddpm_row", cases, ids=ids)


def test_conformance(npddpm_row: Any, request: Any) -> None:
    """One check of the implementation: passes when it conforms (a documented divergence
    included), skips what the implementation does not offer, fails otherwise — unless the
    user declared the divergence, which makes it an xfail with their reason."""
    report, row = npddpm_row
    test_id = plugin.check_id(report, row)
    if row.verdict == "skipped":
        pytest.skip(row.diagnosis or "not checked")
    if row.verdict in ("ok", "known"):
        return
    reason = plugin.divergence(request.config, test_id)
    message = (
        f"{test_id}: {row.diagnosis or 'does not conform'} (worst error/tolerance "
        f"{row.worst_ratio:.3g}, max |error| {row.max_abs:.3g}"
        + (f", at {row.where}" if row.where else "")
        + ")"
        + (f"; documented as {row.source}" if row.source else "")
    )
    if reason is not None:
        pytest.xfail(f"{reason} — {message}")
    pytest.fail(message, pytrace=False)


def test_drawn(npddpm_drawn: Any, request: Any) -> None:
    """Single-step checks drawn by hypothesis (``--npddpm-max-examples``); a failure shrinks
    to the smallest case and prints the call that reproduces it. Declared divergences are
    not failures."""
    from npddpm.testing.base import drawn_conformance

    divergences = plugin.declared(request.config)
    try:
        drawn_conformance(
            npddpm_drawn, max_examples=plugin.max_examples(request.config), divergences=divergences
        )
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
