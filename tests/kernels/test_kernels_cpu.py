"""The kernels: the NumPy spec against closed forms, and the Numba CPU backend against the
spec (bitwise with the noise given; bitwise against the spec fed with the CPU's own normals
when the noise is generated in the kernel)."""

import numba
import numpy as np
import pytest

import npddpm.kernels as K
from npddpm import Schedule, rng
from npddpm.kernels import cpu, dispatch

T = 50
SCHEDULE = Schedule.from_name("cosine", T)
DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (3, 7), (5, 2, 3), (16, 33)]  # row lengths not multiples of 4 on purpose


@pytest.fixture(params=["parallel", "serial"])
def path(request, monkeypatch):
    """Both code paths of ``cpu.run``: the test arrays are small, so by default they take the
    serial path (below ``SERIAL_BELOW`` elements); "parallel" lowers the threshold to 0."""
    from npddpm.kernels import cpu

    if request.param == "parallel":
        monkeypatch.setattr(cpu, "SERIAL_BELOW", 0)
    return request.param


def _inputs(shape, dtype, seed=0):
    g = np.random.default_rng(seed)
    x = g.standard_normal(shape).astype(dtype) * 1.5
    e = g.standard_normal(shape).astype(dtype)
    z = g.standard_normal(shape).astype(dtype)
    t = g.integers(0, T, shape[0])
    t[0] = 0  # always exercise the t = 0 row (no noise)
    return x, e, z, t


def _call(kernel, x, e, t, **kw):
    if kernel == "q_sample":
        return K.q_sample(SCHEDULE, x, t, **kw)
    if kernel == "ddpm_step":
        lv = K.fixed_log_variance(SCHEDULE, kw.pop("var_type", "fixed_small"))
        return K.ddpm_step(SCHEDULE, x, t, e, lv, clip_denoised=kw.pop("clip", False), **kw)
    return K.ddim_step(
        SCHEDULE, x, t, e, eta=kw.pop("eta", 0.5), clip_denoised=kw.pop("clip", False), **kw
    )


KERNELS = ["q_sample", "ddpm_step", "ddim_step"]


# --------------------------------------------------------------------------------------
# The spec against closed forms (float64)
# --------------------------------------------------------------------------------------


def test_q_sample_closed_form():
    x, _, z, t = _inputs((6, 5), np.float64)
    ab = np.cumprod(1 - SCHEDULE.betas)[t][:, None]
    expected = np.sqrt(ab) * x + np.sqrt(1 - ab) * z
    np.testing.assert_allclose(K.q_sample(SCHEDULE, x, t, z), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("var_type", ["fixed_small", "fixed_large"])
def test_ddpm_step_closed_form(var_type):
    """Ho et al. (2020) Eq. 7 written from β directly; variances from their definitions."""
    x, e, z, t = _inputs((6, 5), np.float64)
    b = SCHEDULE.betas
    ab = np.cumprod(1 - b)
    ab_prev = np.append(1.0, ab[:-1])
    x0 = (x - np.sqrt(1 - ab[t])[:, None] * e) / np.sqrt(ab[t])[:, None]
    mean = (np.sqrt(ab_prev[t]) * b[t] / (1 - ab[t]))[:, None] * x0 + (
        np.sqrt(1 - b[t]) * (1 - ab_prev[t]) / (1 - ab[t])
    )[:, None] * x
    post = b * (1 - ab_prev) / (1 - ab)
    var = np.append(post[1], post[1:]) if var_type == "fixed_small" else np.append(post[1], b[1:])
    expected = mean + ((t != 0) * np.sqrt(var[t]))[:, None] * z
    got = _call("ddpm_step", x, e, t, noise=z, var_type=var_type)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_ddim_step_closed_form():
    """η = 0: x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev) ε; η = 1: σ² is the DDPM posterior
    variance (Song et al. 2021, §4.1)."""
    x, e, _, t = _inputs((6, 5), np.float64)
    ab = SCHEDULE.alphas_cumprod[t][:, None]
    abp = SCHEDULE.alphas_cumprod_prev[t][:, None]
    x0 = (x - np.sqrt(1 - ab) * e) / np.sqrt(ab)
    expected = np.sqrt(abp) * x0 + np.sqrt(1 - abp) * e
    np.testing.assert_allclose(
        _call("ddim_step", x, e, t, eta=0.0), expected, rtol=1e-9, atol=1e-12
    )
    coefs = dispatch.ddim_coefs(SCHEDULE, t, 1.0, np.float64)
    sigma2 = SCHEDULE.posterior_variance[t] * (t != 0)
    np.testing.assert_allclose(coefs.noise_scale**2, sigma2, rtol=1e-12, atol=1e-300)


def test_clip_limits_x0_hat():
    x, e, z, t = _inputs((6, 5), np.float64)
    x = x * 50  # far outside [-1, 1]
    coefs = dispatch.ddpm_coefs(SCHEDULE, t, SCHEDULE.posterior_log_variance_clipped, np.float64)
    got = K.ddpm_step(
        SCHEDULE, x, t, e, SCHEDULE.posterior_log_variance_clipped, z, clip_denoised=True
    )
    c = {k: v[:, None] for k, v in coefs._asdict().items()}
    x0 = np.clip(c["sqrt_recip_alphas_cumprod"] * x - c["sqrt_recipm1_alphas_cumprod"] * e, -1, 1)
    expected = c["posterior_mean_coef1"] * x0 + c["posterior_mean_coef2"] * x + c["noise_scale"] * z
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_float32_coefficients_are_cast_then_computed():
    """improved-diffusion gathers in float64 and casts each coefficient to the array dtype."""
    t = np.array([0, 7, T - 1])
    a, b = dispatch.q_sample_coefs(SCHEDULE, t, np.float32)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, SCHEDULE.sqrt_alphas_cumprod[t].astype(np.float32))


# --------------------------------------------------------------------------------------
# cpu == numpy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("kernel", "clip"),
    [("q_sample", False), ("ddpm_step", False), ("ddpm_step", True), ("ddim_step", False),
     ("ddim_step", True)],
)  # fmt: skip
def test_cpu_equals_numpy_bitwise_with_noise_given(kernel, dtype, clip, path):
    kw = {} if kernel == "q_sample" else {"clip": clip}
    for shape in SHAPES:
        x, e, z, t = _inputs(shape, dtype)
        ref = _call(kernel, x, e, t, noise=z, backend="numpy", **kw)
        got = _call(kernel, x, e, t, noise=z, backend="cpu", **kw)
        assert got.dtype == dtype and got.shape == shape
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_cpu_in_kernel_noise(kernel, dtype, path):
    """In-kernel noise: bitwise equal to the spec with the same seed (the CPU generator is the
    reference's own source), and to the spec fed with the CPU's normals."""
    kw = {} if kernel == "q_sample" else {"clip": True}
    for shape in [*SHAPES, (3, 1103)]:  # rows longer than one noise chunk (512), unaligned
        x, e, _, t = _inputs(shape, dtype)
        got = _call(kernel, x, e, t, seed=123, stream=9, backend="cpu", **kw)
        np.testing.assert_array_equal(got, _call(kernel, x, e, t, seed=123, stream=9, **kw))
        z_cpu = K.standard_normal(123, 9, shape, dtype, backend="cpu")
        np.testing.assert_array_equal(got, _call(kernel, x, e, t, noise=z_cpu, **kw))


@pytest.mark.parametrize("kernel", KERNELS)
def test_cpu_independent_of_thread_count(kernel, path):
    x, e, z, t = _inputs((37, 29), np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            results.append(_call(kernel, x, e, t, seed=5, stream=1, backend="cpu"))
            results.append(_call(kernel, x, e, t, noise=z, backend="cpu"))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(results[::2], results[2::2], strict=False):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(results[1::2], results[3::2], strict=False):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_out_and_in_place(backend):
    x, e, z, t = _inputs((4, 3, 5), np.float64)
    lv = K.fixed_log_variance(SCHEDULE)
    expected = K.ddpm_step(SCHEDULE, x, t, e, lv, z, backend=backend)
    out = np.empty_like(x)
    assert K.ddpm_step(SCHEDULE, x, t, e, lv, z, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, expected)
    y = x.copy()
    assert K.ddpm_step(SCHEDULE, y, t, e, lv, z, out=y, backend=backend) is y
    np.testing.assert_array_equal(y, expected)
    y = x.copy()
    K.q_sample(SCHEDULE, y, t, seed=1, out=y, backend=backend)
    np.testing.assert_array_equal(y, K.q_sample(SCHEDULE, x, t, seed=1, backend=backend))


def test_trailing_dims_are_flattened():
    x, e, z, t = _inputs((3, 4, 5), np.float32)
    flat = K.ddim_step(SCHEDULE, x.reshape(3, 20), t, e.reshape(3, 20), z.reshape(3, 20), eta=1.0)
    np.testing.assert_array_equal(K.ddim_step(SCHEDULE, x, t, e, z, eta=1.0).reshape(3, 20), flat)
    x1, e1 = np.ascontiguousarray(x[:, 0, 0]), np.ascontiguousarray(e[:, 0, 0])
    assert K.ddim_step(SCHEDULE, x1, t, e1, eta=0.0, backend="cpu").shape == (3,)


def test_scalar_timestep_broadcasts():
    x, _, z, _ = _inputs((3, 4), np.float64)
    np.testing.assert_array_equal(
        K.q_sample(SCHEDULE, x, 7, z), K.q_sample(SCHEDULE, x, np.full(3, 7), z)
    )


def test_cpu_random_words_bitwise():
    words = np.empty(1003, np.uint32)
    cpu.random_words(1003, *rng.kernel_words(8, 2**40 + 1), words)
    np.testing.assert_array_equal(words, rng.random_words(8, 2**40 + 1, np.arange(1003)))


def test_small_arrays_restore_the_thread_count():
    # The serial path sets numba's (thread-local) thread count to 1 around the kernel call
    # and must restore it, also when the call raises.
    x, e, _, t = _inputs((4, 6), np.float32)
    before = numba.get_num_threads()
    _call("ddpm_step", x, e, t, seed=1, backend="cpu")
    assert numba.get_num_threads() == before
    with pytest.raises((ValueError, TypeError)):
        _call("ddpm_step", x, e[:, :3], t, seed=1, backend="cpu")
    assert numba.get_num_threads() == before
