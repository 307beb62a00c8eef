"""Tests of npddpm.metrics.evaluate: real-vs-real floors and every metric beside its floor.

Every statistical test uses fixed seeds. The standard deviations quoted were measured over
20 independent replicates at the same sizes; a tolerance of 4.5 sd has a false-failure
probability of about 7e-6 under a normal approximation.
"""

import numpy as np
import pytest

from npddpm import data
from npddpm import metrics as M


def test_real_vs_real_repeats_and_validation():
    ds = data.get("8gaussians")
    fl = M.real_vs_real(M.energy_distance, ds, 500, rng=0, repeats=3)
    assert len(fl.values) == 3 and fl.std > 0 and abs(fl.mean) < 0.02
    with pytest.raises(ValueError, match="n must be >= 2"):
        M.real_vs_real(M.energy_distance, ds, 1, rng=0)
    with pytest.raises(ValueError, match="same number of features"):
        M.energy_distance(np.zeros((3, 2)), np.zeros((3, 3)))


# --- evaluate: every metric beside its floor --------------------------------------------------


def test_evaluate_points_flags_a_dropped_mode():
    ds = data.get("8gaussians")
    good = M.evaluate(ds, ds.sample(1000, rng=1), rng=2)
    assert set(good) >= {"energy", "sliced_w1", "mmd2", "c2st", "precision", "recall", "nll"}
    assert all(set(v) == {"value", "floor"} for v in good.values())
    # A sample with one of the 8 modes missing: recall and coverage fall by ≈ 1/8, SW1 and
    # the energy distance rise well above their floors; E[−log p] does not (it rewards
    # dropping modes), which is why it is reported beside recall.
    x = ds.sample(1200, rng=3)
    bad = M.evaluate(ds, x[x[:, 0] < 2.0][:1000], rng=2)
    assert bad["recall"]["value"] < bad["recall"]["floor"] - 0.08
    assert bad["energy"]["value"] > 10 * abs(bad["energy"]["floor"]) + 0.01
    assert bad["nll"]["value"] < bad["nll"]["floor"] + 0.1
    cb = M.evaluate(data.get("checkerboard"), np.zeros((50, 2)) + 0.5, rng=0)
    assert cb["inside_support"] == {"value": 1.0, "floor": 1.0}


def test_evaluate_images(digits, classifier):
    train = digits.images("train")
    pca = M.digits_pca(20)
    r = M.evaluate(digits, train[:719], rng=0, pca=pca, classifier=classifier)
    # Copies of training images: C2ST against train far below its ≈ 0.5 floor, zero
    # distance to the nearest training image.
    assert r["c2st_vs_train"]["value"] < 0.3 < 0.45 < r["c2st_vs_train"]["floor"]
    assert r["median_nn_train"]["value"] == 0.0 < r["median_nn_train"]["floor"]
    assert r["classes"] == {"value": 10.0, "floor": 10.0}
    bs = data.get("bars_and_stripes")
    x = bs.sample(60, rng=0)
    x[:30, 0, 0, 0] *= -1  # one flipped pixel makes an image invalid
    r = M.evaluate(bs, x, rng=0)
    assert r["valid"] == {"value": 0.5, "floor": 1.0}
    assert r["patterns"]["value"] <= 30
