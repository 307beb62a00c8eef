"""Sharded runs on a real Dask cluster: a LocalCluster of 2 worker processes (one thread each).

Every check is bitwise equality with the single-process call — for several shard sizes
(single rows, sizes that do not divide n, one shard), float32 and float64, and after a
worker is killed mid-run. Deterministic: fixed seeds, no statistical test. Skipped without
``dask.distributed`` (extra ``npddpm[dask]``)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from npddpm import samplers
from npddpm.distributed import (
    CheckpointModel,
    concat,
    connect,
    map_items,
    map_shards,
    workers,
)

from .helpers import KillOnce, flag_exists
from .test_sharding import GM, SAMPLERS, D

pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with connect("local:2") as c:
        c.wait_for_workers(2, timeout=60)
        yield c


N = 101

#: the samplers that draw noise at every step, and two deterministic ones (test_sharding's)
CASES = {
    k: SAMPLERS[k]
    for k in ("ddpm", "ddpm cpu", "ddim η=0.5", "euler_ancestral", "dpm_solver sde", "unipc",
              "flow_euler")
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_with_client_is_bitwise_single_process(client, name):
    run = CASES[name]
    ref = run((N, 2), seed=11)
    for size in (None, 1, 7, 50, N + 3):  # default, rows, non-dividing, two shards, one shard
        got = run((N, 2), seed=11, client=client, shard_size=size)
        np.testing.assert_array_equal(got, ref, err_msg=f"shard_size={size}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_given_x_T_dtype_and_trajectory(client, dtype):
    x_T = np.random.default_rng(0).standard_normal((N, 2)).astype(dtype)
    ref, ref_traj = samplers.ddpm(D, GM.denoiser(D), x_T, seed=2, return_trajectory=True)
    got, traj = samplers.ddpm(
        D, GM.denoiser(D), x_T, seed=2, return_trajectory=True, client=client, shard_size=30
    )
    assert got.dtype == ref.dtype == dtype
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(traj, ref_traj)
    # a global row_offset is kept: the shards start at row 1000 + a
    off = samplers.ddpm(D, GM.denoiser(D), (N, 2), seed=2, row_offset=1000)
    np.testing.assert_array_equal(
        samplers.ddpm(D, GM.denoiser(D), (N, 2), seed=2, row_offset=1000, client=client), off
    )


def test_trained_model_travels_as_checkpoint_bytes(client, checkpoint):
    model = CheckpointModel(checkpoint)
    d = model.diffusion
    ref = samplers.ddpm(d, model, (300, 2), seed=4)  # float32 MLP, 50 steps
    for size in (1 * 64, 97):
        got = samplers.ddpm(d, model, (300, 2), seed=4, client=client, shard_size=size)
        np.testing.assert_array_equal(got, ref)


def test_worker_killed_mid_run_is_retried_bitwise(tmp_path):
    # The first model call on a worker kills that worker process (os._exit, mid-task); the
    # nanny restarts it, the scheduler reschedules its shards, and the merged result is still
    # the single-process one.
    flag = tmp_path / "killed"
    den = KillOnce(GM.denoiser(D), flag, os.getpid())
    ref = samplers.ddpm(D, den, (200, 2), seed=9, clip_denoised=False)
    with connect("local:2") as c:
        c.wait_for_workers(2, timeout=60)
        got = samplers.ddpm(D, den, (200, 2), seed=9, clip_denoised=False, client=c, shard_size=20)
        assert flag_exists(flag)
        c.wait_for_workers(2, timeout=60)  # the killed worker came back
        assert workers(c) == 2
    np.testing.assert_array_equal(got, ref)


def _rows(payload, a, b):
    return payload[a:b] * 2.0, {"idx": np.arange(a, b)}


def _square(payload, item):
    return payload + item * item


def test_map_shards_and_items_keep_order(client):
    data = np.arange(17.0)
    out = map_shards(client, _rows, 17, payload=data, shard_size=4)
    assert len(out) == 5
    merged = concat(out)
    np.testing.assert_array_equal(merged[0], 2 * data)
    np.testing.assert_array_equal(merged[1]["idx"], np.arange(17))
    assert map_items(client, _square, list(range(10)), payload=1) == [1 + i * i for i in range(10)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"callback": print}, "callback= cannot be used with client="),
        ({"noise": np.zeros((20, N, 2))}, "noise= cannot be used with client="),
        ({"backend": "cuda"}, "backend='cuda'"),
        ({"shard_size": 0}, "shard_size must be a positive int"),
    ],
)
def test_client_refusals(client, kwargs, match):
    with pytest.raises(ValueError, match=match):
        samplers.ddpm(D, GM.denoiser(D), (N, 2), client=client, **kwargs)


def test_unsendable_denoiser_is_refused(client):
    with pytest.raises(TypeError, match="cannot be sent to the workers"):
        samplers.ddpm(D, lambda x, t: x, (N, 2), client=client)


def test_connect_rejects_bad_specs():
    for spec in ("local:x", "local:0", "", "local"):
        with pytest.raises(ValueError, match="dask:"):
            with connect(spec):
                pass
    with pytest.raises(ValueError, match="cannot reach the scheduler"):
        with connect("tcp://127.0.0.1:9", timeout=2):
            pass


def test_verify_chain_rows_with_client(client):
    from npddpm.verify import chain_rows, mixture_2d

    kw = {
        "n": 300,
        "spacing": "50",
        "checkpoints": (0.5, 0.0),
        "samplers": (("ddpm", 0.0), ("ddim", 0.5)),
        "datasets": {"mixture 2-D": mixture_2d()},
    }
    local = chain_rows(**kw)
    sharded = chain_rows(**kw, client=client, shard_size=77)
    assert len(local) == 4 and sharded == local  # the same p-values, to the bit


def test_conformance_sweep_with_client(client):
    pytest.importorskip("diffusers")
    from npddpm.conformance import sweep

    configs = [
        ("step", "DDPMScheduler", {"variance_type": "fixed_large"}, 20),
        ("solver", "EulerDiscreteScheduler", {}, None),
        ("step", "DDIMScheduler", {"timestep_spacing": "trailing"}, 10),
    ]
    local = sweep(configs)
    remote = sweep(configs, client=client)
    assert [r.adapter for r in remote] == [r.adapter for r in local]
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_equal([vars(r) for r in b.rows], [vars(r) for r in a.rows])
    with pytest.raises(ValueError, match="diffusers refused the configuration"):
        sweep([("step", "DDIMScheduler", {"no_such_option": 1}, 10)], client=client)


def test_cli_sample_with_dask_is_bitwise(checkpoint, tmp_path, capsys):
    from npddpm.cli import main

    base = [str(checkpoint), "--n", "500", "--steps", "20", "--quiet"]
    assert main(["sample", *base, "--out", str(tmp_path / "a.npz")]) == 0
    assert main(
        ["sample", *base, "--out", str(tmp_path / "b.npz"), "--dask", "local:2",
         "--shard-size", "123"]
    ) == 0  # fmt: skip
    a, b = (np.load(tmp_path / f"{k}.npz")["samples"] for k in "ab")
    np.testing.assert_array_equal(a, b)
    assert "batch size" not in capsys.readouterr().err  # the MLP is batch-invariant


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_workers_raise_the_mmap_threshold(client):
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which freezes glibc's mmap threshold at
    # 128 KiB (every large temporary a fresh mmap: 3.3x slower oracle steps, measured); the
    # first npddpm task on a worker raises it (benchmarks/bench_dask.py shows the speed).
    from npddpm.distributed import payload

    map_items(client, _square, [1, 2], payload=0)
    assert all(v == [True] for v in client.run(lambda: payload._TUNED).values())


def test_grid_denoiser_travels_and_shards_bitwise(client, checkpoint):
    # sample --grid: the grid-aware wrapper is a module-level class (GridDenoiser), so it pickles
    # with the CheckpointModel inside it and shards like any denoiser
    import pickle

    from npddpm.discrete import GridDenoiser, grid_denoiser

    model = CheckpointModel(checkpoint)
    d = model.diffusion
    den = grid_denoiser(d, model, levels=17)
    assert isinstance(den, GridDenoiser) and pickle.loads(pickle.dumps(den)).levels == 17
    ref = samplers.ddpm(d, den, (90, 2), seed=6)
    got = samplers.ddpm(d, den, (90, 2), seed=6, client=client, shard_size=25)
    np.testing.assert_array_equal(got, ref)
