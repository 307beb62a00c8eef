"""Sharding without Dask: the global row index keys the noise, and the denoisers that sharded
runs rely on are batch-invariant. Deterministic (fixed seeds); no statistical test.

A sampler that ignored ``row_offset`` would give every shard the noise of rows 0, 1, …: the
shard-by-shard results then differ from the whole batch in every row past the first shard
(the negative control below shows the comparison has that power)."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm import _rowwise, samplers
from npddpm.diffusion import GaussianDiffusion
from npddpm.distributed import CheckpointModel, batch_invariant, pack, shards, unpack
from npddpm.paths import FlowMatching, VPLinear
from npddpm.schedules import Schedule, space_timesteps
from npddpm.verify import mixture_2d

from .helpers import BatchDependent


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    tail=st.sampled_from([(1,), (3,), (2, 3, 5)]),
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    step=st.integers(0, 2**40),
)
def test_step_noise_rows_are_keyed_by_global_index(n, tail, data, dtype, step):
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a + 1, n))
    full = samplers.step_noise(7, step, (n, *tail), dtype)
    part = samplers.step_noise(7, step, (b - a, *tail), dtype, row_offset=a)
    assert part.dtype == dtype
    np.testing.assert_array_equal(part, full[a:b])


def _diffusion(var_type: str = "fixed_small") -> GaussianDiffusion:
    s = Schedule.from_name("linear", 1000).respace(space_timesteps(1000, "20"))
    return GaussianDiffusion(s, var_type=var_type)


D = _diffusion()
GM = mixture_2d()
FLOW = FlowMatching()
VP = VPLinear()

#: (label, call(rows, **kw)) for every sampler with the shared signature; each draws noise at
#: x_T and, where stochastic, at every step.
SAMPLERS = {
    "ddpm": lambda x, **kw: samplers.ddpm(D, GM.denoiser(D), x, clip_denoised=False, **kw),
    "ddpm cpu": lambda x, **kw: samplers.ddpm(
        D, GM.denoiser(D), x, clip_denoised=False, backend="cpu", **kw
    ),
    "ddim η=0.5": lambda x, **kw: samplers.ddim(D, GM.denoiser(D), x, eta=0.5, **kw),
    "ddim cpu": lambda x, **kw: samplers.ddim(
        D, GM.denoiser(D), x, eta=1.0, backend="cpu", clip_denoised=False, **kw
    ),
    "euler": lambda x, **kw: samplers.euler(VP, GM.denoiser(VP), x, steps=8, **kw),
    "heun": lambda x, **kw: samplers.heun(
        VP, GM.denoiser(VP), x, steps=4, s_churn=0.5, s_tmax=10.0, **kw
    ),
    "euler_ancestral": lambda x, **kw: samplers.euler_ancestral(
        VP, GM.denoiser(VP), x, steps=8, **kw
    ),
    "lms": lambda x, **kw: samplers.lms(VP, GM.denoiser(VP), x, steps=8, **kw),
    "dpm_solver sde": lambda x, **kw: samplers.dpm_solver(
        VP, GM.denoiser(VP), x, steps=8, algorithm="sde-dpmsolver++", **kw
    ),
    "unipc": lambda x, **kw: samplers.unipc(VP, GM.denoiser(VP), x, steps=8, **kw),
    "deis": lambda x, **kw: samplers.deis(VP, GM.denoiser(VP), x, steps=8, **kw),
    "flow_euler": lambda x, **kw: samplers.flow_euler(
        FLOW, GM.denoiser(FLOW, "flow"), x, steps=8, **kw
    ),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_shards_equal_the_whole_batch(name):
    run = SAMPLERS[name]
    n = 23
    full = run((n, 2), seed=5)
    for size in (1, 5, 23):  # single rows, a size that does not divide 23, one shard
        parts = [run((b - a, 2), seed=5, row_offset=a) for a, b in shards(n, size)]
        np.testing.assert_array_equal(np.concatenate(parts), full, err_msg=f"shard_size={size}")
    # negative control: without the offset every shard repeats rows 0, 1, … and differs
    unkeyed = np.concatenate([run((b - a, 2), seed=5) for a, b in shards(n, 5)])
    assert not np.array_equal(unkeyed[5:], full[5:])


def test_row_offset_checked():
    with pytest.raises(ValueError, match="row_offset must be ≥ 0"):
        SAMPLERS["ddpm"]((3, 2), row_offset=-1)
    with pytest.raises(TypeError, match="row_offset must be a non-negative int"):
        SAMPLERS["euler"]((3, 2), row_offset=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(600, 2, 16), (300, 256, 3), (40, 7, 7)])
def test_rowwise_matmul_is_batch_invariant(dtype, shape):
    # Every product has TILE rows: rows of a slice equal those of the whole, bitwise, and
    # the values are a @ b to rounding (1e-12 relative in float64, 1e-5 in float32: sums of
    # K ≤ 256 products of O(1) terms).
    n, k, m = shape
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype)
    full = _rowwise.matmul(a, b)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.max(np.abs(full - a @ b)) <= tol * np.max(np.abs(a @ b))
    for lo, hi in ((0, 1), (1, 2), (3, n), (n - 1, n), (0, n // 2 + 1)):
        np.testing.assert_array_equal(_rowwise.matmul(a[lo:hi], b), full[lo:hi])


def test_batch_invariant_detects():
    x = np.random.default_rng(2).standard_normal((9, 2))
    t = D.model_timesteps(np.full(9, 10))
    assert batch_invariant(GM.denoiser(D), x, t)
    assert not batch_invariant(BatchDependent(), x, t)
    with pytest.raises(ValueError, match="B ≥ 3"):
        batch_invariant(GM.denoiser(D), x[:2], t[:2])


def test_pack_refuses_what_a_worker_cannot_rebuild():
    from npddpm.kernels import cpu  # a compiled Numba kernel

    def closure(x, t):
        return x

    for bad in (lambda x, t: x, closure):
        with pytest.raises(TypeError, match="cannot be sent to the workers"):
            pack(bad)
    with pytest.raises(TypeError, match="compiled Numba function"):
        pack({"kernel": cpu.standard_normal_flat})
    den = GM.denoiser(D)
    digest, blob = pack(den)
    x = np.ones((4, 2))
    t = D.model_timesteps(np.full(4, 3))
    np.testing.assert_array_equal(unpack(digest, blob)(x, t), den(x, t))
    assert unpack(digest, blob) is unpack(digest, blob)  # rebuilt once per process


def test_checkpoint_model_travels_as_bytes(checkpoint):
    import warnings

    from npddpm.training import load_for_sampling

    model = CheckpointModel(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, diffusion, local = load_for_sampling(checkpoint)
    x = np.random.default_rng(3).standard_normal((5, 2))
    t = np.full(5, 7)
    np.testing.assert_array_equal(model(x, t), local(x, t))
    blob = pickle.dumps(model)
    data = checkpoint.read_bytes()
    assert len(blob) < len(data) + 200  # the bytes and a flag, never the built model
    clone = pickle.loads(blob)
    assert clone._built is None
    np.testing.assert_array_equal(clone(x, t), local(x, t))
    assert clone.diffusion.num_timesteps == diffusion.num_timesteps == 50
    x300 = np.random.default_rng(4).standard_normal((300, 2))
    assert batch_invariant(model, x300, np.full(300, 7))
    with pytest.raises(TypeError, match="path_or_bytes"):
        CheckpointModel(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "size"), [(10, 3), (10, 10), (10, 11), (1, 1)])
def test_shards_cover_the_rows_in_order(n, size):
    got = shards(n, size)
    assert got[0][0] == 0 and got[-1][1] == n
    assert all(b - a == size for a, b in got[:-1]) and 1 <= got[-1][1] - got[-1][0] <= size
    assert all(x[1] == y[0] for x, y in itertools.pairwise(got))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_shards_reject_bad_sizes(bad):
    with pytest.raises(ValueError, match="shard_size must be a positive int"):
        shards(10, bad)


def test_client_must_be_a_client():
    with pytest.raises(TypeError, match=r"client must be a dask\.distributed\.Client"):
        SAMPLERS["ddpm"]((3, 2), client="tcp://localhost:8786")


def test_no_dask_import_without_a_client():
    code = (
        "import sys, numpy as np, npddpm, npddpm.distributed, npddpm.samplers as s\n"
        "from npddpm.verify import mixture_2d\n"
        "from npddpm.diffusion import GaussianDiffusion\n"
        "from npddpm.schedules import Schedule\n"
        "d = GaussianDiffusion(Schedule.from_name('cosine', 20))\n"
        "s.ddpm(d, mixture_2d().denoiser(d), (4, 2))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
