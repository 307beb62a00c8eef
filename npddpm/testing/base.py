"""Base test classes a user subclasses in their own suite, with their own fixtures, and the
hypothesis-driven conformance check that shrinks a failure to a minimal, printable case.

::

    import numpy as np
import pytest
    from npddpm.testing.base import ConformanceTests

    class TestMyScheduler(ConformanceTests):
        divergences = {"*::ddim.mean(eta=*)::*": "we keep the model's ε after clipping"}

        @pytest.fixture(scope="class")
        @classmethod
        def npddpm_adapter(cls):
            return CallablesAdapter(name="mine", alphas_cumprod=..., ddpm_step_fn=...)

Each ``test_*`` method checks one family of rows of :func:`npddpm.conformance.check`'s report
(the ᾱ table, q_sample, the DDPM step, the DDIM step, what the adapter found at construction)
and fails with every non-conforming row of that family; a row matching a ``divergences``
pattern (fnmatch on ``<adapter>::<quantity>::<t>``) is an expected failure. ``test_drawn``
lets hypothesis draw the timestep, batch, width, seed and η of single-step checks; a
failure is shrunk to the smallest such case and printed as a call that reproduces it.
The ``npddpm_adapter`` fixture must be class-scoped (or wider; as a class method, which
pytest asks of class-scoped fixtures in a class): the report is computed once per class.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from .pytest_plugin import check_id, declared_reason

__all__ = ["ConformanceTests", "drawn_conformance"]


def _failures(report: Any, prefixes: tuple[str, ...], divergences: dict[str, str]) -> None:
    """Fail (or xfail, when every failure is declared) on the report's rows of ``prefixes``."""
    bad: list[str] = []
    declared: list[str] = []
    for row in report.rows:
        if not row.quantity.startswith(prefixes) or row.verdict != "FAIL":
            continue
        test_id = check_id(report, row)
        reason = declared_reason(divergences, test_id)
        line = (
            f"{test_id}: {row.diagnosis or 'does not conform'} (worst error/tolerance "
            f"{row.worst_ratio:.3g}" + (f", at {row.where}" if row.where else "") + ")"
        )
        (declared if reason is not None else bad).append(line + (f" — {reason}" if reason else ""))
    if bad:
        pytest.fail("\n".join(bad), pytrace=False)
    if declared:
        pytest.xfail("; ".join(declared))


def drawn_conformance(
    adapter: Any, *, max_examples: int | None = None, divergences: dict[str, str] | None = None
) -> None:
    """Let hypothesis draw single-step checks of ``adapter`` and raise AssertionError with a
    reproducing call for the smallest failing case.

    ``adapter`` is an :class:`~npddpm.conformance.Adapter` (the draws are the timestep, from
    its chain, the batch, the width of a sample when it takes (B, D), the input seed and η),
    or a callable ``make(betas=, dtype=) -> Adapter`` building the implementation for a
    schedule and precision: then the schedule (:func:`npddpm.testing.strategies.schedules`,
    T ≤ 100, named or random β) and the dtype (float64, float32) are drawn too. Each case is
    ``check(adapter, steps=[t], q_steps=[t], batch=B, dim=D, seed=S, etas=(η,))``;
    hypothesis shrinks every draw towards the simplest failing case. Rows matching a
    ``divergences`` pattern are not failures. The active hypothesis profile applies (its
    seed policy and example count; ``max_examples`` overrides the count).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from npddpm.conformance import Adapter, check

    from .strategies import schedules

    make = None if isinstance(adapter, Adapter) else adapter
    if make is not None and not callable(make):
        raise TypeError(
            "adapter must be an npddpm.conformance.Adapter or a callable make(betas=, dtype=) "
            f"returning one; got {type(adapter).__name__}"
        )
    found: list[str] = []

    overrides: dict[str, Any] = {} if max_examples is None else {"max_examples": max_examples}

    @settings(
        settings.default,  # the active profile: its seed policy and example count
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **overrides,
    )
    @given(data=st.data())
    def case(data: Any) -> None:
        setup = ""
        ad = adapter
        if make is not None:
            sched = data.draw(schedules(min_T=2, max_T=100), label="schedule")
            dt = data.draw(st.sampled_from(["float64", "float32"]), label="dtype")
            b = np.asarray(sched.betas, dtype=np.float64)
            ad = make(betas=b, dtype=np.dtype(dt))
            setup = f"    adapter = make(betas=np.array({b.tolist()!r}), dtype=np.dtype({dt!r}))\n"
        chain = list(ad.timesteps)
        t = chain[-1 - data.draw(st.integers(0, len(chain) - 1), label="step from the end")]
        batch = data.draw(st.integers(2, 8), label="batch")
        dim = None if ad.sample_shape is not None else data.draw(st.integers(1, 6), label="dim")
        seed = data.draw(st.integers(0, 2**16), label="seed")
        eta = data.draw(st.sampled_from([0.0, 1.0, 0.5]), label="eta")
        report = check(ad, steps=[t], q_steps=[t], batch=batch, dim=dim, seed=seed, etas=(eta,))
        rows = [
            r
            for r in report.failures
            if r.quantity != "alphas_cumprod"
            and declared_reason(divergences or {}, check_id(report, r)) is None
        ]
        if rows:
            call = (
                f"check(adapter, steps=[{t}], q_steps=[{t}], batch={batch}, dim={dim}, "
                f"seed={seed}, etas=({eta},))"
            )
            found[:] = [
                f"{ad.name}: the smallest failing case hypothesis found, reproduced by\n"
                f"    import numpy as np\n    from npddpm.conformance import check\n{setup}"
                f"    print({call}.table())\n"
                + "\n".join(f"  {r.quantity} {r.t_range}: {r.diagnosis}" for r in rows)
            ]
            raise AssertionError(found[0])

    try:
        case()
    except AssertionError:
        if not found:
            raise
        raise AssertionError(found[0]) from None


class ConformanceTests:
    """Subclass (as ``Test…``) and give a class-scoped ``npddpm_adapter`` fixture."""

    #: fnmatch pattern on ``<adapter>::<quantity>::<t>`` → reason: expected failures
    divergences: ClassVar[dict[str, str]] = {}
    #: keyword arguments of :func:`npddpm.conformance.check`
    check_kwargs: ClassVar[dict[str, Any]] = {}
    #: hypothesis examples of :meth:`test_drawn` (None: the active profile's)
    max_examples: ClassVar[int | None] = None

    @pytest.fixture(scope="class")
    @classmethod
    def npddpm_report(cls, npddpm_adapter: Any) -> Any:
        from npddpm.conformance import check

        return check(npddpm_adapter, **cls.check_kwargs)

    def test_alphas_cumprod(self, npddpm_report: Any) -> None:
        """The ᾱ table against the schedule the implementation claims."""
        _failures(npddpm_report, ("alphas_cumprod",), self.divergences)

    def test_q_sample(self, npddpm_report: Any) -> None:
        """q(x_t | x_0) at every t."""
        _failures(npddpm_report, ("q_sample",), self.divergences)

    def test_ddpm_step(self, npddpm_report: Any) -> None:
        """The DDPM step: mean, noise term and x̂₀, at every checked t."""
        _failures(npddpm_report, ("ddpm.",), self.divergences)

    def test_ddim_step(self, npddpm_report: Any) -> None:
        """The DDIM step, at every η checked."""
        _failures(npddpm_report, ("ddim.",), self.divergences)

    def test_construction_findings(self, npddpm_report: Any) -> None:
        """What the adapter found wrong when it was built (e.g. a chain with t = −1)."""
        _failures(npddpm_report, ("chain",), self.divergences)

    def test_drawn(self, npddpm_adapter: Any) -> None:
        """Single-step checks drawn by hypothesis; a failure shrinks to a minimal case."""
        drawn_conformance(
            npddpm_adapter, max_examples=self.max_examples, divergences=self.divergences
        )
