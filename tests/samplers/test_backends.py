"""The samplers on the fused kernels: backend='cpu' equals the NumPy path given the same seed
(the noise of step i is the counter-based stream (seed, i) on every backend)."""

import numpy as np
import pytest

from npddpm import GaussianDiffusion, Schedule, rng, samplers

S = Schedule.from_name("linear", 60)


def den(x, t):
    return (0.3 * x + 0.01 * t[:, None]).astype(x.dtype)


@pytest.mark.parametrize("var_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_cpu_equals_numpy_bitwise_float64(var_type, clip):
    # Same float64 operations in the same order (x̂₀, clip, c1·x̂₀ + c2·x_t, + s·z), fastmath
    # off: bit-for-bit equality is the specification.
    d = GaussianDiffusion(S, var_type=var_type)
    xT = np.random.default_rng(0).standard_normal((40, 3))
    a = samplers.ddpm(d, den, xT, seed=3, clip_denoised=clip)
    b = samplers.ddpm(d, den, xT, seed=3, clip_denoised=clip, backend="cpu")
    assert np.array_equal(a, b)


def test_ddpm_cpu_equals_numpy_float32_in_input_dtype_arithmetic():
    d = GaussianDiffusion(S, arithmetic="input_dtype")
    xT = np.random.default_rng(1).standard_normal((40, 3)).astype(np.float32)
    a = samplers.ddpm(d, den, xT, seed=5)
    b = samplers.ddpm(d, den, xT, seed=5, backend="cpu")
    assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_cpu_matches_numpy(eta):
    d = GaussianDiffusion(S.respace(range(0, 60, 6)))
    xT = np.random.default_rng(2).standard_normal((40, 3))
    a = samplers.ddim(d, den, xT, seed=7, eta=eta)
    b = samplers.ddim(d, den, xT, seed=7, eta=eta, backend="cpu")
    # float64; the kernel folds √(1 − ᾱ_prev − σ²) into one per-row coefficient while the
    # NumPy path evaluates it per element: a few ulp per step over 10 steps
    assert np.allclose(a, b, rtol=0, atol=1e-13)


def test_sampler_noise_is_the_counter_based_stream():
    d = GaussianDiffusion(S)
    xT = np.zeros((4, 2))
    seen = []
    samplers.ddpm(
        d,
        lambda x, t: np.zeros_like(x),
        xT,
        seed=9,
        clip_denoised=False,
        callback=lambda info: seen.append(info["x"].copy()),
    )
    # first step from index T−1 with ε̂ = 0 and x_T = 0: x = σ_{T−1}·z with z = stream 1
    z = rng.standard_normal(9, 1, (4, 2))
    sd = np.exp(0.5 * S.posterior_log_variance_clipped[-1])
    assert np.allclose(seen[0], sd * z, rtol=1e-14, atol=0)


def test_unsupported_kernel_configuration_is_refused():
    d = GaussianDiffusion(S, mean_type="v")
    with pytest.raises(ValueError, match="backend='cpu' runs the fused kernels"):
        samplers.ddpm(d, den, (4, 2), backend="cpu")
    with pytest.raises(ValueError, match="available backends"):
        samplers.ddpm(GaussianDiffusion(S), den, (4, 2), backend="gpu")
