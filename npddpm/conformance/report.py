"""The result of a conformance check: one :class:`Row` per quantity and t-range, gathered in a
:class:`Report`, and the :class:`ConformanceError` that :func:`npddpm.conformance.assert_conforms`
raises."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHECK_VERDICTS",
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "ConformanceError",
    "Report",
    "Row",
    "write_reports",
]

REPORT_FORMAT = "npddpm-conformance-report"
REPORT_VERSION = 3  #: of :meth:`Report.to_dict` (schema: ``report_schema.json`` beside this module)

#: The verdict of each row in the ``checks`` list: ``ok``; ``divergence`` (a documented one);
#: ``fault`` (differs: a named fault or unexplained); ``error`` (the implementation raised);
#: ``refused`` (not checked: the adapter does not offer it).
CHECK_VERDICTS = {"ok": "ok", "known": "divergence", "FAIL": "fault", "skipped": "refused"}
SCHEMA_FILE = Path(__file__).with_name("report_schema.json")


def _jsonable(v: Any) -> Any:
    """``v`` as JSON can hold it: numbers (non-finite as strings), strings, lists, dicts."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) or hasattr(v, "item"):
        try:
            x = v.item() if hasattr(v, "item") else v
        except (ValueError, TypeError):  # an array: a list
            return [_jsonable(e) for e in v.tolist()]
        return x if isinstance(x, (bool, int)) else _number(x)
    if isinstance(v, dict):
        return {str(k): _jsonable(e) for k, e in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    return str(v)


def _number(x: float) -> float | str:
    """A JSON number, or the string "inf", "-inf" or "nan" (JSON has no non-finite numbers)."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


class ConformanceError(AssertionError):
    """Raised by :func:`assert_conforms`; the message is the report's table."""


@dataclass
class Row:
    """One compared quantity over one t-range, and its verdict.

    Attributes
    ----------
    quantity : str
        What was compared (e.g. ``"alphas_cumprod"``).
    t_range : str
        The timesteps (or schedule) it covers.
    max_abs, max_rel : float
        max |got − expected| and max |got − expected|/|expected| (inf when non-finite values
        differ in place, NaN when skipped).
    worst_ratio : float
        max |error| / tolerance; ≤ 1 conforms.
    verdict : str
        ``"ok"``, ``"known"``, ``"FAIL"`` or ``"skipped"``.
    diagnosis, source : str
        The diagnosed cause and where it is documented (empty when none).
    where : str
        Where the largest discrepancy is (e.g. ``"t=3, row 5, value 2"``; empty when none).
    expected, got, tolerance : float
        At that worst element: npddpm's value, the implementation's and the tolerance (NaN
        when there is none, e.g. a skipped row).
    """

    quantity: str
    t_range: str
    max_abs: float
    max_rel: float
    worst_ratio: float  # max |error| / tolerance
    verdict: str  # "ok", "known", "FAIL", "skipped"
    diagnosis: str = ""
    source: str = ""
    where: str = ""
    expected: float = math.nan
    got: float = math.nan
    tolerance: float = math.nan


@dataclass
class Report:
    """Every :class:`Row` of one adapter's conformance check.

    Attributes
    ----------
    adapter : str
        The adapter's name.
    rows : list of Row
    notes : list of str
        What was checked (sample sizes, the timesteps, the tolerance multiplier).
    config : dict
        The configuration the implementation claimed (for the JSON report).
    """

    adapter: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        verdict = "conforms" if self.conforms else f"{len(self.failures)} failures"
        return (
            f"Report({self.adapter!r}, {len(self.rows)} rows, {len(self.known)} known, {verdict})"
        )

    def __str__(self) -> str:
        """The table (:meth:`table`)."""
        return self.table()

    @property
    def conforms(self) -> bool:
        """True when every row is ``"ok"``, ``"known"`` or ``"skipped"``."""
        return all(r.verdict in ("ok", "known", "skipped") for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        """The rows whose verdict is ``"FAIL"``."""
        return [r for r in self.rows if r.verdict == "FAIL"]

    @property
    def known(self) -> list[Row]:
        """The rows whose verdict is ``"known"`` (documented divergences, not failures)."""
        return [r for r in self.rows if r.verdict == "known"]

    def check_id(self, row: Row) -> str:
        """The row's id: ``<adapter>::<quantity>::<t>`` (the plugin's test ids, too)."""
        return f"{self.adapter}::{row.quantity}::{row.t_range}"

    def faults(self) -> set[str]:
        """Names of the faults diagnosed in failing rows."""
        return {r.diagnosis for r in self.failures if r.diagnosis}

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form: ``format``, ``version``, ``npddpm`` (its version),
        ``adapter``, ``conforms``, ``config`` (what the implementation claimed), ``notes`` and
        one object per row (every :class:`Row` field; non-finite numbers as the strings
        "inf", "-inf", "nan"), and ``checks``: per row its id, quantity, t-range, verdict
        (:data:`CHECK_VERDICTS`, ``error`` where the implementation raised), the diagnosis and
        its source, the observed error, the tolerance and their ratio, and the configuration
        (the adapter's name); ``order`` (the claimed and the measured order of a solver, or
        None) and ``contract_violations`` (per violated schedule-contract check: its name, the
        N where it fails, the problem and a one-line reproduction) (version 3)."""
        from .. import __version__

        rows = []
        for r in self.rows:
            d = asdict(r)
            for k in ("max_abs", "max_rel", "worst_ratio", "expected", "got", "tolerance"):
                d[k] = _number(d[k])
            rows.append(d)
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "npddpm": __version__,
            "adapter": self.adapter,
            "conforms": self.conforms,
            "config": {k: _jsonable(v) for k, v in self.config.items()},
            "notes": list(self.notes),
            "rows": rows,
            "checks": [self._check(r) for r in self.rows],
            "order": self._order(),
            "contract_violations": [
                {
                    "check": r.quantity.removeprefix("contract: "),
                    "N": r.t_range.removeprefix("N="),
                    "problem": r.diagnosis,
                    "reproduction": r.where.removeprefix("repro: "),
                }
                for r in self.rows
                if r.quantity.startswith("contract: ") and r.verdict == "FAIL"
            ],
        }

    def _order(self) -> dict[str, Any] | None:
        row = next((r for r in self.rows if r.quantity == "order"), None)
        if row is None:
            return None
        return {
            "claimed": _number(row.expected),
            "measured": _number(row.got),
            "margin": _number(row.tolerance),
            "steps": row.t_range.removeprefix("N="),
            "verdict": CHECK_VERDICTS[row.verdict],
        }

    def _check(self, r: Row) -> dict[str, Any]:
        verdict = CHECK_VERDICTS[r.verdict]
        if r.verdict == "FAIL" and r.diagnosis.startswith("raised "):
            verdict = "error"
        return {
            "id": self.check_id(r),
            "configuration": self.adapter,
            "quantity": r.quantity,
            "t_range": r.t_range,
            "verdict": verdict,
            "diagnosis": r.diagnosis,
            "source": r.source,
            "error": _number(r.max_abs),
            "tolerance": _number(r.tolerance),
            "ratio": _number(r.worst_ratio),
        }

    def table(self) -> str:
        """The report as text: a header, one line per row that is not ``"known"``, the known
        divergences grouped by diagnosis and source, then ``CONFORMS`` or
        ``DOES NOT CONFORM (n rows)``."""
        head = f"{'quantity':<24} {'t':<14} {'max abs':>10} {'max rel':>10} {'err/tol':>8}  verdict"
        lines = [f"conformance of {self.adapter}", *(f"  ({n})" for n in self.notes)]
        lines += [head, "-" * len(head)]
        for r in self.rows:
            if r.verdict == "known":
                continue
            verdict = r.verdict + (f" — {r.diagnosis}" if r.diagnosis else "")
            if r.verdict == "FAIL" and r.where:
                verdict += f" [worst at {r.where}]"
            lines.append(
                f"{r.quantity:<24} {r.t_range:<14} {r.max_abs:>10.3g} "
                f"{r.max_rel:>10.3g} {r.worst_ratio:>8.3g}  {verdict}"
            )
        if self.known:
            lines += ["", "known divergences (documented; not failures):"]
            groups: dict[tuple[str, str], list[str]] = {}
            for r in self.known:
                groups.setdefault((r.diagnosis, r.source), []).append(f"{r.quantity} {r.t_range}")
            for (diag, source), where in groups.items():
                lines.append(f"  - {diag}")
                lines.append(f"      where: {', '.join(where)}")
                lines.append(f"      source: {source}")
        ok = "CONFORMS" if self.conforms else f"DOES NOT CONFORM ({len(self.failures)} rows)"
        lines += ["", ok]
        return "\n".join(lines)


def write_reports(
    path: str | os.PathLike,
    reports: list[Report],
    *,
    overwrite: bool = False,
    implementation: tuple[str, str | None] | None = None,
) -> Path:
    """Write ``reports`` to ``path`` as one JSON document, atomically; a FileExistsError when
    ``path`` exists, unless ``overwrite``.

    The document (``report_schema.json``): ``format``, ``version``, ``npddpm`` (its version),
    ``implementation`` (``{"name", "version"}``: ``implementation`` as given, else the first
    word its reports' adapter names share, e.g. ``diffusers``, with its installed version or
    null), ``conforms``, ``checks`` (every report's checks in one list, each naming its
    configuration) and ``reports`` (:meth:`Report.to_dict` each)."""
    from .. import __version__
    from ..io import atomic_write

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; choose another file, or pass overwrite=True (--force) to replace it"
        )
    dicts = [r.to_dict() for r in reports]
    name, version = implementation if implementation is not None else _implementation(reports)
    doc = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "npddpm": __version__,
        "implementation": {"name": name, "version": version},
        "conforms": all(r.conforms for r in reports),
        "checks": [c for d in dicts for c in d["checks"]],
        "reports": dicts,
    }
    data = (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


def _implementation(reports: list[Report]) -> tuple[str, str | None]:
    """The first word the adapter names share and its installed version (or None)."""
    from importlib import metadata

    words = {r.adapter.split(" ", 1)[0] for r in reports if r.adapter}
    if len(words) != 1:
        return ("several" if words else "unknown"), None
    name = words.pop()
    try:
        return name, metadata.version(name)
    except (metadata.PackageNotFoundError, ValueError):
        return name, None
