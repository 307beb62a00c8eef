"""The training loop: it learns, it resumes bitwise, and it fails safely."""

import json
import os
import warnings

import numpy as np
import pytest

from npddpm.demo import DEMO_CONFIG
from npddpm.io import CheckpointError
from npddpm.nn import EMA
from npddpm.training import (
    EMAWarning,
    RunExistsError,
    TrainConfig,
    Trainer,
    TrainingError,
    load_for_sampling,
    train,
)


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
        ({"ema_decay": "0.9"}, "ema_decay"),
        ({"ema_warmup": 1}, "ema_warmup"),
        ({"var_type": "big"}, "var_type"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
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


# ---------------------------------------------------------------------- EMA warm-up


def test_ema_warmup_ramps_the_decay():
    p = {"w": np.zeros(3, dtype=np.float32)}
    ema = EMA(p, decay=0.999, warmup=True)
    seen = []
    for _ in range(9000):
        seen.append(ema.current_decay())
        ema.num_updates += 1
    assert seen[:3] == [1 / 10, 2 / 11, 3 / 12]
    assert seen[8990] == pytest.approx(8991 / 9000) and seen[8991] == 0.999 == seen[-1]
    assert EMA(p, decay=0.999).current_decay() == 0.999  # the class's default: no ramp
    assert EMA(p, decay=0.999).time_constant == pytest.approx(1000)
    # one update is δ_n p̄ + (1 − δ_n) p with δ_0 = 0.1
    ema = EMA(p, decay=0.999, warmup=True)
    ema.update({"w": np.ones(3, dtype=np.float32)})
    assert np.array_equal(ema.params["w"], np.full(3, np.float32(0.9)))
    assert "warmup=True" in repr(ema) and "num_updates=1" in repr(ema)


def test_ema_warmup_forgets_the_initialisation():
    # after 20 steps the plain EMA (δ = 0.999) is still ~98 % the initial weights; the
    # ramped one follows the trained weights
    def distances(warmup):
        tr = Trainer(cfg(ema_warmup=warmup, ema_decay=0.999), dataset=Gaussian2D())
        init = {k: v.copy() for k, v in tr.model.params.items()}
        tr.run(progress=False)

        def dist(a):
            return sum(float(np.sum((a[k] - tr.model.params[k]) ** 2)) for k in a) ** 0.5

        return dist(tr.ema.params) / dist(init)

    assert distances(False) > 0.95
    assert distances(True) < 0.5


def test_resume_is_bitwise_with_and_without_warmup(tmp_path):
    for warmup in (True, False):
        a, b, c = (tmp_path / f"{x}{warmup}" for x in "abc")
        straight = train(cfg(ema_warmup=warmup), a, progress=False, dataset=Gaussian2D())
        train(cfg(steps=10, ema_warmup=warmup), b, progress=False, dataset=Gaussian2D())
        resumed = train(
            cfg(ema_warmup=warmup),
            c,
            resume=b / "checkpoint.npz",
            progress=False,
            dataset=Gaussian2D(),
        )
        assert resumed.ema.num_updates == straight.ema.num_updates == 20
        for k, p in straight.ema.params.items():
            assert np.array_equal(p, resumed.ema.params[k]), k


def test_sampling_warns_while_the_ema_is_young(tmp_path):
    train(
        cfg(ema_warmup=False, ema_decay=0.99),
        tmp_path / "plain",
        progress=False,
        dataset=Gaussian2D(),
    )
    ck = tmp_path / "plain" / "checkpoint.npz"
    with pytest.warns(EMAWarning, match=r"seen 20 updates, fewer than its time constant"):
        load_for_sampling(ck)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_for_sampling(ck, ema=False)  # the raw weights: nothing to warn about
        train(cfg(), tmp_path / "ramped", progress=False, dataset=Gaussian2D())
        load_for_sampling(tmp_path / "ramped" / "checkpoint.npz")  # warmed up: no warning
        train(
            cfg(ema_warmup=False, ema_decay=0.9),
            tmp_path / "old",
            progress=False,
            dataset=Gaussian2D(),
        )
        load_for_sampling(tmp_path / "old" / "checkpoint.npz")  # 20 updates > 1/(1-0.9)


def test_demo_keeps_the_plain_ema():
    # the README's demo figures were made without the warm-up
    assert DEMO_CONFIG["ema_warmup"] is False
    assert TrainConfig().ema_warmup is True


# ---------------------------------------------------------------------- nothing is lost


def steps_logged(run_dir):
    return [json.loads(x)["step"] for x in (run_dir / "log.jsonl").read_text().splitlines()]


def test_an_earlier_run_is_not_overwritten(tmp_path):
    train(cfg(), tmp_path, progress=False, dataset=Gaussian2D())
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(RunExistsError, match=r"already holds a training run .*force=True"):
        train(cfg(steps=5), tmp_path, progress=False, dataset=Gaussian2D())
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert steps_logged(tmp_path) == [5, 10, 15, 20]
    (tmp_path / "checkpoint.npz").unlink()  # a log alone is a run too
    with pytest.raises(RunExistsError, match=r"\(log\.jsonl\)"):
        train(cfg(steps=5), tmp_path, progress=False, dataset=Gaussian2D())
    # force: a new run, a new log
    tr = train(cfg(steps=10), tmp_path, force=True, progress=False, dataset=Gaussian2D())
    assert tr.step == 10 and steps_logged(tmp_path) == [5, 10]


def test_force_drops_the_old_checkpoint_at_the_start(tmp_path):
    train(cfg(steps=20), tmp_path, progress=False, dataset=Gaussian2D())

    class Stop(Exception):
        pass

    def stop(step, terms):
        if step == 3:
            raise Stop  # "killed" before the new run's first checkpoint

    tr = Trainer(cfg(steps=20), dataset=Gaussian2D())
    with pytest.raises(Stop):
        tr.run(tmp_path, progress=False, callback=stop)
    assert not (tmp_path / "checkpoint.npz").exists()  # not the old run's step-20 one
    assert (tmp_path / "log.jsonl").read_text() == ""


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    train(cfg(steps=10), tmp_path, progress=False, dataset=Gaussian2D())
    # as after a kill at step 13: records past the checkpoint and a line cut short
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 15, "loss": 1.0}) + "\n" + '{"step": 1')
    train(cfg(), tmp_path, resume=tmp_path / "checkpoint.npz", progress=False, dataset=Gaussian2D())
    assert steps_logged(tmp_path) == [5, 10, 15, 20]
    straight = tmp_path / "straight"
    train(cfg(), straight, progress=False, dataset=Gaussian2D())
    losses = [json.loads(x)["loss"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses == [
        json.loads(x)["loss"] for x in (straight / "log.jsonl").read_text().splitlines()
    ]


def test_resume_at_or_past_the_requested_steps_is_an_error(tmp_path):
    train(cfg(steps=20), tmp_path, progress=False, dataset=Gaussian2D())
    ck = tmp_path / "checkpoint.npz"
    for steps in (20, 10):
        with pytest.raises(TrainingError, match=r"already at step 20, at or past the requested"):
            train(cfg(steps=steps), tmp_path, resume=ck, progress=False, dataset=Gaussian2D())
    assert steps_logged(tmp_path) == [5, 10, 15, 20]


def test_stale_temp_files_are_removed_on_start(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / ".checkpoint.npz.a1b2c3d4.tmp", tmp_path / ".log.jsonl.x_y_z_w1.tmp"]
    for p in stale:
        p.write_bytes(b"partial save")
    (tmp_path / "mine.tmp").write_text("not ours")
    tr = train(cfg(), tmp_path, progress=False, dataset=Gaussian2D())
    assert sorted(tr.removed_temp_files) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "log.jsonl", "mine.tmp"]
