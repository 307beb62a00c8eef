"""A tiny trained checkpoint (an MLP of width 32, 10 steps) for the sharding tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    from npddpm.training import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt")
    cfg = TrainConfig(
        model_options={"hidden": 32, "num_blocks": 1, "threads": 1},
        num_timesteps=50,
        batch_size=32,
        steps=10,
        checkpoint_every=10,
        log_every=5,
        ema_warmup=False,
    )
    train(cfg, out, progress=False)
    return out / "checkpoint.npz"
