"""The pytest plugin: npddpm's conformance checks run as tests of the user's own suite.

Registered as the ``pytest11`` entry point ``npddpm`` and inert unless asked::

    pytest --npddpm-impl=mypackage.mymodule:factory        # or NPDDPM_IMPL=…
    pytest --npddpm-impl=… --npddpm-divergences known.toml --npddpm-report report.json

``factory()`` returns a :class:`npddpm.conformance.Adapter`, a
:class:`npddpm.conformance.SolverAdapter` (an ODE/SDE solver scheduler: its schedule contract,
agreement and measured order, :func:`npddpm.conformance.check_solver`), or a callable returning
a :class:`~npddpm.conformance.Report` (``lambda: check_loop(my_sampler, diffusion)`` for a loop
that owns its RNG), or a list or dict of them. :func:`npddpm.conformance.check` (or
``check_solver``) runs once per adapter (each callable once) when the tests are
collected, and every row of its report becomes one test, named
``test_conformance[<adapter>::<quantity>::<t>]``, so ``-k`` selects checks, and a CI run
shows each one. A row that conforms passes (a documented divergence
passes too), a skipped row skips, a failing row fails with the diagnosis, the
worst error/tolerance and where it is.

``--npddpm-divergences FILE`` (TOML or JSON; a table ``[divergences]`` or a top-level
mapping of check-id pattern → reason, patterns in fnmatch syntax matched against the test
id, e.g. ``"*::ddim.mean(eta=0)::*" = "we do not re-derive ε"``) turns the failures it names
into xfails with that reason; anything else that differs fails. ``--npddpm-report FILE``
writes the versioned JSON report (the schema of ``npddpm conform --json``).
``--npddpm-max-examples N`` (default: the active hypothesis profile's) sets the examples of
``test_drawn[<adapter>]``, single-step checks at drawn t, batch, width, seed and η whose
failure shrinks to a minimal case printed as a reproducing call
(:func:`npddpm.testing.base.drawn_conformance`).

pytest loads this module in every session of an environment where npddpm is installed;
without ``--npddpm-impl`` (or ``NPDDPM_IMPL``) it only registers its options. Loading it
imports the ``npddpm`` package (about half a second); the conformance machinery is imported
only when an implementation is named.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
from pathlib import Path
from typing import Any

_SUITE = Path(__file__).with_name("conformance_suite.py")
_KEY = "_npddpm_state"


def pytest_addoption(parser: Any) -> None:
    """The ``--npddpm-*`` options (group "npddpm")."""
    group = parser.getgroup("npddpm", "npddpm conformance of your implementation")
    group.addoption(
        "--npddpm-impl",
        default=None,
        metavar="MODULE:FACTORY",
        help="check the implementation FACTORY() returns (an npddpm.conformance.Adapter, a "
        "list or a dict of them); also NPDDPM_IMPL",
    )
    group.addoption(
        "--npddpm-divergences",
        default=None,
        metavar="FILE",
        help="TOML/JSON: check-id pattern → reason; matching failures become xfails",
    )
    group.addoption(
        "--npddpm-report", default=None, metavar="FILE", help="write the JSON report here"
    )
    group.addoption(
        "--npddpm-max-examples",
        default=None,
        type=int,
        metavar="N",
        help="hypothesis examples per drawn check",
    )


def pytest_configure(config: Any) -> None:
    """When an implementation is named, add the conformance suite to the collection."""
    spec = config.getoption("--npddpm-impl") or os.environ.get("NPDDPM_IMPL")
    if not spec:
        return
    import pytest

    state = {
        "spec": spec,
        "items": _factory(spec, pytest),  # a bad factory is a usage error, before collection
        "reports": None,
        "divergences": _divergences(config, pytest),
    }
    setattr(config, _KEY, state)
    config.args.append(str(_SUITE))


def _divergences(config: Any, pytest: Any) -> dict[str, str]:
    path = config.getoption("--npddpm-divergences")
    if not path:
        return {}
    p = Path(path)
    try:
        text = p.read_text()
        if p.suffix == ".json":
            doc = json.loads(text)
        else:
            import tomllib

            doc = tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(
            f"--npddpm-divergences {path}: cannot read it ({exc}); give a TOML or JSON file "
            "mapping check-id patterns to reasons"
        ) from None
    table = doc.get("divergences", doc) if isinstance(doc, dict) else None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise pytest.UsageError(
            f"--npddpm-divergences {path}: expected a mapping of check-id pattern → reason "
            '(e.g. "*::ddim.mean(eta=0)::*" = "we keep the model\'s ε")'
        )
    return dict(table)


def _factory(spec: str, pytest: Any) -> list[Any]:
    """``module:factory`` → the checks it names: adapters, or callables returning a Report
    (e.g. ``lambda: check_loop(my_sampler, diffusion)``)."""
    from npddpm.conformance import Adapter, SolverAdapter

    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise pytest.UsageError(f"--npddpm-impl {spec!r}: expected MODULE:FACTORY")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"--npddpm-impl {spec!r}: cannot import it ({exc})") from None
    made = fn() if callable(fn) and not isinstance(fn, (Adapter, SolverAdapter)) else fn
    items = list(made.values()) if isinstance(made, dict) else made
    if not isinstance(items, (list, tuple)):
        items = [items]
    if not items or not all(
        isinstance(a, (Adapter, SolverAdapter)) or callable(a) for a in items
    ):
        raise pytest.UsageError(
            f"--npddpm-impl {spec!r}: the factory must return an npddpm.conformance.Adapter, "
            "a SolverAdapter or a callable returning a Report (e.g. lambda: check_loop(...)), "
            f"or a list or dict of them; got {type(made).__name__}"
        )
    return list(items)


def reports(config: Any) -> list:
    """The reports of the named implementation (checked once, at first use)."""
    import pytest

    state = getattr(config, _KEY)
    if state["reports"] is None:
        from npddpm.conformance import Adapter, Report, SolverAdapter, check, check_solver

        out = []
        for item in state["items"]:
            if isinstance(item, Adapter):
                report = check(item)
            elif isinstance(item, SolverAdapter):
                report = check_solver(item)
            else:
                report = item()
            if not isinstance(report, Report):
                raise pytest.UsageError(
                    f"--npddpm-impl {state['spec']!r}: a check returned "
                    f"{type(report).__name__}, not an npddpm.conformance.Report"
                )
            out.append(report)
        state["reports"] = out
    return state["reports"]


def adapters(config: Any) -> list:
    """The adapters among the named checks (what the drawn checks run on)."""
    from npddpm.conformance import Adapter

    return [a for a in getattr(config, _KEY)["items"] if isinstance(a, Adapter)]


def max_examples(config: Any) -> int | None:
    """``--npddpm-max-examples`` (None: the active hypothesis profile's count)."""
    n = config.getoption("--npddpm-max-examples")
    return None if n is None else int(n)


def check_id(report: Any, row: Any) -> str:
    """The test id of ``row``: ``<adapter>::<quantity>::<t>`` (:meth:`Report.check_id`)."""
    return str(report.check_id(row))


def declared(config: Any) -> dict[str, str]:
    """The declared divergences (pattern → reason)."""
    return dict(getattr(config, _KEY)["divergences"])


def declared_reason(divergences: dict[str, str], test_id: str) -> str | None:
    """The reason of the first pattern in ``divergences`` that ``test_id`` matches (fnmatch),
    or None."""
    for pattern, reason in divergences.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


def divergence(config: Any, test_id: str) -> str | None:
    """The declared reason for ``test_id``, or None."""
    return declared_reason(getattr(config, _KEY)["divergences"], test_id)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Write ``--npddpm-report`` when asked and the checks ran."""
    state = getattr(session.config, _KEY, None)
    path = session.config.getoption("--npddpm-report")
    if state is None or not path or state["reports"] is None:
        return
    from npddpm.conformance import write_reports

    write_reports(path, state["reports"], overwrite=True)
