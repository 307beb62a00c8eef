"""Users' kernels for ``tests/kernels/test_bench.py``: correct ones for every op (NumPy, and
q_sample in PyTorch on the CPU), two wrong q_samples (t + 1, a missing square root), one of
the wrong shape, one of the wrong dtype, and a deliberately slow one (a pure-Python loop).

Each follows the contract of :mod:`npddpm.kernels.bench`: schedule arrays in float64,
coefficients computed in float64, gathered at ``t`` and cast to the array dtype.
Importable as ``tests.kernels.bench_kernels:NAME`` from the repository root.
"""

import numpy as np

from npddpm.kernels import adapt


def _col(coef, t, like):
    """``coef[t]`` (float64) as a column of ``like``'s dtype."""
    return np.asarray(coef)[t].astype(like.dtype)[:, None]


def q_sample(alphas_cumprod, x0, t, noise):
    return (
        _col(np.sqrt(alphas_cumprod), t, x0) * x0
        + _col(np.sqrt(1.0 - alphas_cumprod), t, x0) * noise
    )


def q_sample_t_plus_one(alphas_cumprod, x0, t, noise):
    """Wrong: the timestep off by one (a common indexing bug)."""
    return q_sample(alphas_cumprod, x0, np.minimum(t + 1, len(alphas_cumprod) - 1), noise)


def q_sample_no_sqrt(alphas_cumprod, x0, t, noise):
    """Wrong: ᾱ_t where √ᾱ_t belongs."""
    return _col(alphas_cumprod, t, x0) * x0 + _col(np.sqrt(1.0 - alphas_cumprod), t, x0) * noise


def q_sample_wrong_shape(alphas_cumprod, x0, t, noise):
    return q_sample(alphas_cumprod, x0, t, noise).ravel()


def q_sample_wrong_dtype(alphas_cumprod, x0, t, noise):
    return q_sample(alphas_cumprod, x0, t, noise).astype(
        np.float64 if x0.dtype == np.float32 else np.float32
    )


def q_sample_slow(alphas_cumprod, x0, t, noise):
    """Correct and deliberately slow: one Python-level operation per element."""
    out = np.empty_like(x0)
    a, b = np.sqrt(alphas_cumprod), np.sqrt(1.0 - alphas_cumprod)
    for i in range(x0.shape[0]):
        ai, bi = x0.dtype.type(a[t[i]]), x0.dtype.type(b[t[i]])
        for j in range(x0.shape[1]):
            out[i, j] = ai * x0[i, j] + bi * noise[i, j]
    return out


def ddpm_step(betas, x_t, t, eps, noise):
    ab = np.cumprod(1.0 - betas)
    ab_prev = np.append(1.0, ab[:-1])
    c1 = betas * np.sqrt(ab_prev) / (1.0 - ab)
    c2 = (1.0 - ab_prev) * np.sqrt(1.0 - betas) / (1.0 - ab)
    sigma = np.sqrt(betas * (1.0 - ab_prev) / (1.0 - ab)) * (np.arange(len(betas)) != 0)
    x0 = _col(np.sqrt(1.0 / ab), t, x_t) * x_t - _col(np.sqrt(1.0 / ab - 1.0), t, x_t) * eps
    return _col(c1, t, x_t) * x0 + _col(c2, t, x_t) * x_t + _col(sigma, t, x_t) * noise


def ddim_step(alphas_cumprod, x_t, t, eps):
    ab = alphas_cumprod
    ab_prev = np.append(1.0, ab[:-1])
    x0 = _col(np.sqrt(1.0 / ab), t, x_t) * x_t - _col(np.sqrt(1.0 / ab - 1.0), t, x_t) * eps
    return _col(np.sqrt(ab_prev), t, x_t) * x0 + _col(np.sqrt(1.0 - ab_prev), t, x_t) * eps


def langevin_step(x, score, step_size, noise):
    half, root = x.dtype.type(step_size / 2), x.dtype.type(np.sqrt(step_size))
    return x + half * score + root * noise


@adapt(signature="x0, noise, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod")
def q_sample_other_signature(x0, noise, t, a, b):
    """Correct, with the arguments in another order and precomputed square roots."""
    return _col(a, t, x0) * x0 + _col(b, t, x0) * noise


@adapt(framework="torch")
def q_sample_torch(alphas_cumprod, x0, t, noise):
    """Correct, in PyTorch on the CPU (torch imported only when called)."""
    import torch

    a = torch.sqrt(alphas_cumprod)[t].to(x0.dtype)[:, None]
    b = torch.sqrt(1.0 - alphas_cumprod)[t].to(x0.dtype)[:, None]
    return a * x0 + b * noise


NOT_CALLABLE = 42
