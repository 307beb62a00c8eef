"""The score-based rows of the verification suite (:mod:`npddpm.verify.score`): the quick rows
pass and are the rows the module docstring promises, and a broken Langevin step fails its row.

All seeds are fixed (the rows seed their own generators), so these tests are deterministic;
the probabilities below are those of a failure under fresh seeds.

* ``test_quick_score_rows_pass``: a correct implementation fails a row with probability at
  most 5.7e-7 per ULA |z| row (|z| < 5), ≈ 1e-14 for the δ-bias row (its expected z is 12.7
  at n = 8000, so z < 5 is a 7.7 sd event) and ALPHA_SCORE / 2 = 5e-5 for the MALA row
  (Bonferroni over 4 projections at ALPHA_SCORE / 8 each): about 5.1e-5 in all.
* ``test_a_biased_langevin_step_fails_its_row``: under the broken steps the expected |z| of
  the failing row is ≈ 20 (drift bias; observed 21.0) and ≈ 21 (missing ½ on the drift;
  observed 20.1), so the row misses them with probability below 1e-40 (a 15 sd event); the
  MALA row, which must still pass, does so with probability 1 − 5e-5.
"""

import math

import numpy as np
import pytest

import npddpm.verify.score
from npddpm import verify

ULA_METRICS = ["|z| mean vs AR(1)", "|z| var vs AR(1)", "δ-bias z (var − s²)"]


@pytest.fixture(scope="module")
def quick_rows():
    return verify.score_rows(quick=True)


def test_quick_score_rows_pass(quick_rows):
    rows = quick_rows
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    # the docstring's rows: 3 ULA (law after k steps: mean, variance; the δ-bias is visible),
    # 1 MALA (invariance from exact samples), 2 PC vs ancestral (reported, not asserted)
    assert [(r.check, r.sampler, r.metric) for r in rows] == [
        *(("langevin", "ULA δ=0.8s²", m) for m in ULA_METRICS),
        ("langevin", "MALA δ=0.2", "min KS p"),
        ("pc-vs-ddpm", "PC (1 corrector)", "min KS p (reported)"),
        ("pc-vs-ddpm", "ancestral", "min KS p (reported)"),
    ]
    mean_row, var_row, bias_row, mala, pc, anc = rows
    assert mean_row.limit == var_row.limit == bias_row.limit == 5.0
    assert mean_row.value < 5.0 and var_row.value < 5.0 and bias_row.value > 5.0
    assert "k=60, n=8000" in mean_row.note
    # the variance row's note states the AR(1) and the stationary variance s²/(1 − δ/4s²)
    s2, delta = 0.25, 0.8 * 0.25
    assert f"{s2 / (1 - delta / (4 * s2)):.4f}" in var_row.note
    assert mala.limit == pytest.approx(verify.ALPHA_SCORE / 8) and mala.value > mala.limit
    assert "acceptance" in mala.note
    # reported rows: equal model calls (PC: 25 predictor + 25 corrector steps; ancestral: 50)
    assert pc.limit == anc.limit == 0.0 and math.isfinite(pc.value) and math.isfinite(anc.value)
    assert pc.note == anc.note == "50 model calls"


def biased_langevin(real, change):
    """``langevin`` with a broken step: the drift uses ``change(score)`` for the score."""

    def broken(score_fn, x0, **kw):
        return real(lambda y: change(np.asarray(score_fn(y)), y), x0, **kw)

    return broken


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        # a constant drift bias b: the AR(1) mean moves by b·s² = 0.125 (se of the mean 0.006)
        (lambda g, y: g + 0.5, "|z| mean vs AR(1)"),
        # the ½ forgotten in x + (δ/2)·∇log p: ρ = 0.2, variance 0.208 instead of 0.3125
        (lambda g, y: 2.0 * g, "|z| var vs AR(1)"),
    ],
    ids=["drift-bias", "missing-half"],
)
def test_a_biased_langevin_step_fails_its_row(monkeypatch, change, failing):
    monkeypatch.setattr(
        npddpm.verify.score, "langevin", biased_langevin(npddpm.verify.score.langevin, change)
    )
    rows = {r.metric: r for r in verify.score_rows(quick=True)}
    assert not rows[failing].passed and rows[failing].value > 3 * rows[failing].limit
    # MALA's Metropolis correction uses the same (wrong) drift in its proposal density, so the
    # chain still leaves the exact mixture invariant: that row must keep passing.
    assert rows["min KS p"].passed
