"""CUDA kernels against the NumPy spec, under the Numba CUDA simulator or on a GPU.

Run as their own pytest invocation, with the simulator switched on before Numba is imported::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda

Without the simulator and without a GPU every test here is skipped (the default
``python -m pytest`` run) — unless ``NPDDPM_REQUIRE_CUDA_TESTS=1`` is set, which turns the
skip into a failure, so that CI cannot pass a simulator run that silently ran nothing.

Sizes stay below 1e4 elements and blocks are tiny, so that several
blocks and several grid-stride iterations run even in the (slow) simulator.

Under the simulator the arithmetic is NumPy scalar arithmetic, so noise-given kernels are
bitwise equal to the spec; a real GPU may contract multiply-adds into FMAs, so there the
comparison allows a few ulp.
"""

import os

import numpy as np
import pytest
from numba import config as _nbconfig

SIMULATOR = bool(_nbconfig.ENABLE_CUDASIM)
if not SIMULATOR:
    from numba import cuda as _cuda

    if not _cuda.is_available():
        reason = (
            "no CUDA GPU and the CUDA simulator is off: run `NUMBA_ENABLE_CUDASIM=1 python -m "
            "pytest tests/cuda` (the variable must be exported before numba is first imported)"
        )
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            reason = (
                "NUMBA_ENABLE_CUDASIM=1 was set after numba had been imported in this process; "
                "run tests/cuda as a separate pytest invocation"
            )
        if os.environ.get("NPDDPM_REQUIRE_CUDA_TESTS") == "1":
            pytest.fail(f"NPDDPM_REQUIRE_CUDA_TESTS=1 but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)

import npddpm.kernels as K  # noqa: E402
from npddpm import Schedule, _numba, rng  # noqa: E402
from npddpm.kernels import cuda as kcuda  # noqa: E402

T = 40
S = Schedule.from_name("linear_unscaled", T)
DTYPES = [np.float32, np.float64]
KERNELS = ["q_sample", "ddpm_step", "ddim_step"]


@pytest.fixture(autouse=True)
def _tiny_launch(monkeypatch):
    """16 threads x at most 3 blocks: several blocks, several grid-stride iterations."""
    monkeypatch.setattr(_numba, "CUDA_THREADS_PER_BLOCK", 16)
    monkeypatch.setattr(_numba, "CUDA_MAX_BLOCKS", 3)


def _inputs(shape, dtype, seed=0):
    g = np.random.default_rng(seed)
    x = (g.standard_normal(shape) * 1.5).astype(dtype)
    e = g.standard_normal(shape).astype(dtype)
    z = g.standard_normal(shape).astype(dtype)
    t = g.integers(0, T, shape[0])
    t[0] = 0
    return x, e, z, t


def _call(kernel, x, e, t, **kw):
    if kernel == "q_sample":
        kw.pop("clip", None)
        return K.q_sample(S, x, t, **kw)
    clip = kw.pop("clip", False)
    if kernel == "ddpm_step":
        lv = K.fixed_log_variance(S, "fixed_large")
        return K.ddpm_step(S, x, t, e, lv, clip_denoised=clip, **kw)
    return K.ddim_step(S, x, t, e, eta=0.8, clip_denoised=clip, **kw)


def _assert_close(got, ref):
    if SIMULATOR:
        np.testing.assert_array_equal(got, ref)
    else:  # FMA contraction on the device
        tol = 8 * (np.spacing(np.abs(ref)) + np.finfo(ref.dtype).eps)
        assert np.all(np.abs(got - ref) <= tol)


def test_words_bitwise():
    got = kcuda.random_words(2**63 + 3, 2**32 + 7, 203)
    np.testing.assert_array_equal(got, rng.random_words(2**63 + 3, 2**32 + 7, np.arange(203)))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_normals_within_ulp_bound(dtype):
    ref = K.standard_normal(9, 4, 1027, dtype)
    got = K.standard_normal(9, 4, 1027, dtype, backend="cuda")
    spacing = np.spacing(np.maximum(np.abs(got), np.abs(ref))).astype(np.float64)
    ulps = np.abs(got.astype(np.float64) - ref) / spacing
    assert ulps.max() <= rng.NORMAL_ULP_BOUND


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_noise_given_equals_numpy(kernel, dtype):
    for shape, clip in (((5, 37), True), ((3, 2, 5), False)):
        x, e, z, t = _inputs(shape, dtype)
        ref = _call(kernel, x, e, t, noise=z, clip=clip)
        got = _call(kernel, x, e, t, noise=z, clip=clip, backend="cuda")
        assert got.shape == shape and got.dtype == dtype
        _assert_close(got, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_in_kernel_noise(kernel, dtype):
    """Equal to the spec fed with the device's own normals; within the RNG's ulp bound of
    the spec with the reference normals."""
    shape = (6, 31)
    x, e, _, t = _inputs(shape, dtype)
    got = _call(kernel, x, e, t, seed=17, stream=3, clip=True, backend="cuda")
    z_dev = K.standard_normal(17, 3, shape, dtype, backend="cuda")
    _assert_close(got, _call(kernel, x, e, t, noise=z_dev, clip=True))
    ref = _call(kernel, x, e, t, seed=17, stream=3, clip=True)
    z_ref = K.standard_normal(17, 3, shape, dtype)
    tol = (rng.NORMAL_ULP_BOUND + 2) * (np.spacing(np.abs(z_ref)) + np.spacing(np.abs(ref)))
    assert np.all(np.abs(got - ref) <= tol)


@pytest.mark.parametrize("kernel", KERNELS)
def test_independent_of_launch_shape(kernel, monkeypatch):
    x, e, z, t = _inputs((4, 29), np.float32)
    results = []
    for tpb, blocks in ((1, 1), (7, 2), (32, 5), (64, 64)):
        monkeypatch.setattr(_numba, "CUDA_THREADS_PER_BLOCK", tpb)
        monkeypatch.setattr(_numba, "CUDA_MAX_BLOCKS", blocks)
        results.append((_call(kernel, x, e, t, seed=2, stream=8), _call(kernel, x, e, t, noise=z)))
    for rng_res, given in results[1:]:
        np.testing.assert_array_equal(rng_res, results[0][0])
        np.testing.assert_array_equal(given, results[0][1])


def test_device_arrays_in_device_array_out():
    from numba import cuda

    x, e, _, t = _inputs((4, 9), np.float64)
    d_x, d_e = cuda.to_device(x), cuda.to_device(e)
    d_out = cuda.device_array_like(x)
    lv = K.fixed_log_variance(S)
    res = K.ddpm_step(S, d_x, t, d_e, lv, seed=1, out=d_out, backend="cuda")
    assert res is d_out
    np.testing.assert_array_equal(
        d_out.copy_to_host(), K.ddpm_step(S, x, t, e, lv, seed=1, backend="cuda")
    )


def test_out_in_place():
    x, e, z, t = _inputs((3, 10), np.float32)
    expected = K.ddim_step(S, x, t, e, z, eta=0.3, backend="cuda")
    y = x.copy()
    assert K.ddim_step(S, y, t, e, z, eta=0.3, out=y, backend="cuda") is y
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_langevin_step_cuda(dtype):
    r = np.random.default_rng(5)
    x = r.standard_normal((9, 37)).astype(dtype)
    g = r.standard_normal((9, 37)).astype(dtype)
    z = r.standard_normal((9, 37)).astype(dtype)
    ref = K.langevin_step(x, g, 0.2, z)
    got = K.langevin_step(x, g, 0.2, z, backend="cuda")
    ulp = np.finfo(dtype).eps * (np.abs(ref) + 1)
    assert np.all(np.abs(got - ref) <= (0 if SIMULATOR else 4) * ulp)
    ref2 = K.langevin_step(x, g, 0.2, seed=3, stream=1)
    got2 = K.langevin_step(x, g, 0.2, seed=3, stream=1, backend="cuda")
    bound = rng.NORMAL_ULP_BOUND * np.finfo(dtype).eps * (np.abs(ref2) + 1)
    assert np.all(np.abs(got2 - ref2) <= bound)
