"""The public wrapper: validation with actionable errors, lazy imports, the cuda stub."""

import subprocess
import sys

import numpy as np
import pytest

import npddpm.kernels as K
from npddpm import Schedule

S = Schedule.from_name("linear", 100)
LV = K.fixed_log_variance(S)


def _xs(shape=(4, 6), dtype=np.float32):
    g = np.random.default_rng(0)
    return g.standard_normal(shape).astype(dtype), g.standard_normal(shape).astype(dtype)


def test_import_compiles_nothing():
    code = (
        "import sys, npddpm, npddpm.kernels, npddpm.rng, npddpm.samplers, npddpm.nn, "
        "npddpm.metrics, npddpm.data, npddpm._numba; "
        "print(any(m == 'numba' or m.startswith('numba.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_backend_module_satisfies_the_contract():
    from npddpm.kernels import contract, cpu, cuda, reference

    for mod in (reference, cpu, cuda):
        assert isinstance(mod, contract.Backend), mod.__name__
    assert K.BACKENDS is contract.BACKENDS


def test_one_backends_tuple():
    import npddpm.samplers
    import npddpm.training

    assert npddpm.samplers.BACKENDS is K.BACKENDS
    assert npddpm.training.BACKENDS is K.BACKENDS


def test_unknown_backend():
    x, e = _xs()
    with pytest.raises(ValueError, match=r"backend.*numpy, cpu, cuda"):
        K.q_sample(S, x, 0, e, backend="gpu")


def test_wrong_dtype():
    x, e = _xs(dtype=np.float64)
    with pytest.raises(TypeError, match=r"x_start must be float32 or float64.*astype"):
        K.q_sample(S, x.astype(np.int64), 0, e)
    with pytest.raises(ValueError, match="noise must have the shape and dtype"):
        K.q_sample(S, x, 0, e.astype(np.float32))
    with pytest.raises(TypeError, match="NumPy array"):
        K.q_sample(S, x.tolist(), 0, e)


def test_non_contiguous():
    x, e = _xs((4, 6))
    with pytest.raises(ValueError, match=r"C-contiguous.*ascontiguousarray"):
        K.ddpm_step(S, x[:, ::2], 1, e[:, ::2], LV, seed=0)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.ddpm_step(S, x.T, 1, e.T, LV, seed=0)


def test_mismatched_shapes():
    x, e = _xs((4, 6))
    with pytest.raises(ValueError, match="eps must have the shape"):
        K.ddim_step(S, x, 1, e[:, :5].copy())
    with pytest.raises(ValueError, match="out must have the shape"):
        K.ddim_step(S, x, 1, e, out=np.empty((4, 5), np.float32))


@pytest.mark.parametrize("t", [-1, 100, [0, 1, 2, 100]])
def test_t_out_of_range(t):
    x, e = _xs((4, 6))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 99\]"):
        K.q_sample(S, x, t, e)


def test_t_shape_and_dtype():
    x, e = _xs((4, 6))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        K.q_sample(S, x, [1, 2], e)
    with pytest.raises(TypeError, match="t must be an integer array"):
        K.q_sample(S, x, np.ones(4), e)


def test_noise_source():
    x, e = _xs()
    with pytest.raises(ValueError, match="no noise source"):
        K.q_sample(S, x, 0)
    with pytest.raises(ValueError, match="either noise= or seed="):
        K.q_sample(S, x, 0, e, seed=1)
    with pytest.raises(ValueError, match="seed must lie"):
        K.q_sample(S, x, 0, seed=-1)
    with pytest.raises(TypeError, match="stream must be an integer"):
        K.q_sample(S, x, 0, seed=1, stream=1.0)


def test_log_variance_and_eta():
    x, e = _xs()
    with pytest.raises(ValueError, match=r"log_variance must be a real array of shape \(100,\)"):
        K.ddpm_step(S, x, 1, e, LV[:10], seed=0)
    with pytest.raises(ValueError, match="eta must be a finite real number >= 0"):
        K.ddim_step(S, x, 1, e, eta=-0.1, seed=0)
    with pytest.raises(ValueError, match=r"eta=10\.0 is too large"):
        K.ddim_step(S, x, 50, e, eta=10.0, seed=0)
    with pytest.raises(ValueError, match="var_type"):
        K.fixed_log_variance(S, "learned")


def test_out_overlap_and_read_only():
    x, e = _xs((4, 6))
    big = np.zeros((5, 6), np.float32)
    big[:4] = x
    with pytest.raises(ValueError, match="partly overlaps"):
        K.q_sample(S, big[:4], 1, e, out=big[1:])
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.q_sample(S, x, 1, e, out=ro)


def test_schedule_type():
    x, e = _xs()
    with pytest.raises(TypeError, match=r"npddpm\.Schedule"):
        K.q_sample(S.betas, x, 0, e)


def test_cuda_without_gpu_names_the_extra():
    from numba import config, cuda

    if config.ENABLE_CUDASIM or cuda.is_available():
        pytest.skip("a CUDA target is available (GPU or simulator); the stub is not reached")
    x, e = _xs()
    with pytest.raises(RuntimeError, match=r"pip install 'npddpm\[cuda\]'"):
        K.q_sample(S, x, 0, e, backend="cuda")
