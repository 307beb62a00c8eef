"""The training loop: it learns, it resumes bitwise, and it fails safely."""

import json

import numpy as np
import pytest

from npddpm.io import CheckpointError
from npddpm.training import TrainConfig, Trainer, TrainingError, train


class Gaussian2D:
    """N(μ, s²I) in 2-D: a dataset whose optimal denoiser is known (stub for the tests)."""

    def __init__(self, mu=(0.5, -0.5), s=0.3):
        self.mu, self.s = np.array(mu), s

    def sample(self, n, rng):
        return self.mu + self.s * rng.standard_normal((n, 2))


def cfg(**kw):
    base = dict(
        dataset="stub",
        model_options={"hidden": 32, "num_blocks": 1, "threads": 1},
        num_timesteps=50,
        batch_size=64,
        steps=20,
        checkpoint_every=10,
        log_every=5,
        lr=2e-3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases():
    # 300 steps on a 2-D Gaussian: the ε-MSE starts near 1 (an untrained net predicts ~0)
    # and must fall well below it. The mean of 5 batch losses at B=64 has a standard error
    # of about 0.08 (per-example ε-MSE has sd ≈ 1 for D=2), so the bands below are > 4 s.e.
    losses = []
    tr = Trainer(cfg(steps=300, log_every=50), dataset=Gaussian2D())
    tr.run(progress=False, callback=lambda step, terms: losses.append(terms["loss"]))
    assert np.mean(losses[:5]) > 0.6 and np.mean(losses[-50:]) < 0.4


def test_resume_is_bitwise(tmp_path):
    straight = train(cfg(), tmp_path / "a", progress=False, dataset=Gaussian2D())
    first = Trainer(cfg(steps=10), dataset=Gaussian2D())
    first.run(tmp_path / "b", progress=False)
    resumed = train(
        cfg(),
        tmp_path / "c",
        resume=tmp_path / "b" / "checkpoint.npz",
        progress=False,
        dataset=Gaussian2D(),
    )
    for k, p in straight.model.params.items():
        assert np.array_equal(p, resumed.model.params[k]), k
        assert np.array_equal(straight.ema.params[k], resumed.ema.params[k]), k
    assert resumed.step == 20
    lines = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [5, 10, 15, 20]


def test_non_finite_loss_stops_and_keeps_the_checkpoint(tmp_path):
    class Exploding(Gaussian2D):
        calls = 0

        def sample(self, n, rng):
            self.calls += 1
            x = super().sample(n, rng)
            return x * (np.inf if self.calls > 13 else 1.0)

    tr = Trainer(cfg(), dataset=Exploding())
    with pytest.raises(TrainingError, match=r"non-finite loss .* step 13"):
        tr.run(tmp_path, progress=False)
    ck = Trainer(cfg(), dataset=Gaussian2D())
    ck.load(tmp_path / "checkpoint.npz")
    assert ck.step == 10


def test_checkpoint_for_another_model(tmp_path):
    train(cfg(), tmp_path, progress=False, dataset=Gaussian2D())
    other = Trainer(
        cfg(model_options={"hidden": 16, "num_blocks": 1, "threads": 1}), dataset=Gaussian2D()
    )
    with pytest.raises(ValueError, match="another model; differs in model_options"):
        other.load(tmp_path / "checkpoint.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"bad\.npz"):
        other.load(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"model": "rnn"}, "model"),
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"var_type": "big"}, "var_type"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        cfg(**kw)


def test_learned_variance_hybrid_loss_trains():
    tr = Trainer(
        cfg(var_type="learned_range", loss_type="rescaled_mse", steps=30), dataset=Gaussian2D()
    )
    hist = tr.run(progress=False)
    assert all(np.isfinite(h["loss"]) and "vb" in h for h in hist)


def test_cpu_backend_trains_like_numpy():
    # q_sample on the fused kernel: float32 arithmetic with float32 coefficients, against
    # the NumPy path's float64 arithmetic rounded once — x_t differs by ≤ 1 ulp, so 10 steps
    # of Adam give nearly the same parameters (relative difference ≪ 1e-3).
    a = Trainer(cfg(steps=10), dataset=Gaussian2D())
    a.run(progress=False)
    b = Trainer(cfg(steps=10, backend="cpu"), dataset=Gaussian2D())
    b.run(progress=False)
    for k, p in a.model.params.items():
        assert np.allclose(p, b.model.params[k], rtol=1e-3, atol=1e-5), k
