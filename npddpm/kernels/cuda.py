"""Numba CUDA kernels: grid-stride loops over the flat element (or Philox block) index.

Twin of :mod:`npddpm.kernels.cpu` (same expressions, same order as
:mod:`npddpm.kernels.reference`). Results do not depend on the launch shape: every element
is a pure function of its index, and the grid-stride loops cover every index once whatever
the number of blocks and threads (:func:`npddpm._numba.cuda_launch_shape`).

The kernels are built per dtype (float32, float64) on first use, with the dtype's normal
transform (:func:`npddpm.rng.box_muller_f32` / ``_f64``, the reference's own source) closed
over. A real GPU may contract multiply-adds into FMAs, so compare GPU results with a
tolerance; under the simulator (NumPy scalars) everything is bitwise equal to the reference.

Accepts NumPy arrays (copied to the device and back) or CUDA device arrays (no copies).
Nothing here validates (see :mod:`npddpm.kernels.dispatch`).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import rng
from .._numba import cuda_jit, cuda_launch_shape

_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)

philox4x32_10 = cuda_jit(device=True)(rng.philox4x32_10_words)

_BUILT: dict = {}


_box_muller_f32 = cuda_jit(device=True)(rng.box_muller_f32)
_box_muller_f64 = cuda_jit(device=True)(rng.box_muller_f64)


def _build(ftype):
    ONE = ftype(1.0)
    box_muller = _box_muller_f32 if ftype == np.float32 else _box_muller_f64

    @cuda_jit(device=True)
    def normal4(q, k0, k1, s0, s1):
        uq = np.uint64(q)
        w0, w1, w2, w3 = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
        z0, z1 = box_muller(w0, w1)
        z2, z3 = box_muller(w2, w3)
        return z0, z1, z2, z3

    @cuda_jit(device=True)
    def x0_hat(x, e, c_recip, c_recipm1, clip):
        v = c_recip * x - c_recipm1 * e
        if clip:
            if v < -ONE:
                v = -ONE
            elif v > ONE:
                v = ONE
        return v

    @cuda_jit(device=True)
    def ddpm(x, e, z, c_recip, c_recipm1, c1, c2, s, clip):
        x0 = x0_hat(x, e, c_recip, c_recipm1, clip)
        return (c1 * x0 + c2 * x) + s * z

    @cuda_jit(device=True)
    def ddim(x, e, z, c_recip, c_recipm1, c_prev, c_dir, s, clip):
        x0 = x0_hat(x, e, c_recip, c_recipm1, clip)
        eps_hat = (c_recip * x - x0) / c_recipm1
        return (x0 * c_prev + c_dir * eps_hat) + s * z

    # ---- noise given: one element per grid-stride iteration --------------------------

    @cuda_jit()
    def q_sample(x0, z, a, b, out):
        B, D = out.shape
        for i in range(cuda.grid(1), B * D, cuda.gridsize(1)):
            r = i // D
            j = i - r * D
            out[r, j] = a[r] * x0[r, j] + b[r] * z[r, j]

    @cuda_jit()
    def langevin_step(x, g, z, a, b, out):
        B, D = out.shape
        for i in range(cuda.grid(1), B * D, cuda.gridsize(1)):
            r = i // D
            j = i - r * D
            out[r, j] = (x[r, j] + a[r] * g[r, j]) + b[r] * z[r, j]

    @cuda_jit()
    def ddpm_step(x, eps, z, c_recip, c_recipm1, c1, c2, s, clip, out):
        B, D = out.shape
        for i in range(cuda.grid(1), B * D, cuda.gridsize(1)):
            r = i // D
            j = i - r * D
            out[r, j] = ddpm(
                x[r, j], eps[r, j], z[r, j], c_recip[r], c_recipm1[r], c1[r], c2[r], s[r], clip
            )

    @cuda_jit()
    def ddim_step(x, eps, z, c_recip, c_recipm1, c_prev, c_dir, s, clip, out):
        B, D = out.shape
        for i in range(cuda.grid(1), B * D, cuda.gridsize(1)):
            r = i // D
            j = i - r * D
            out[r, j] = ddim(
                x[r, j], eps[r, j], z[r, j], c_recip[r], c_recipm1[r], c_prev[r], c_dir[r],
                s[r], clip,
            )  # fmt: skip

    # ---- in-kernel noise: one Philox block (four elements) per iteration --------------

    @cuda_jit(device=True)
    def q_one(i, z, x0, a, b, out):
        B, D = out.shape
        if i < B * D:
            r = i // D
            j = i - r * D
            out[r, j] = a[r] * x0[r, j] + b[r] * z

    @cuda_jit()
    def q_sample_rng(x0, a, b, k0, k1, s0, s1, out):
        B, D = out.shape
        for q in range(cuda.grid(1), (B * D + 3) // 4, cuda.gridsize(1)):
            z0, z1, z2, z3 = normal4(q, k0, k1, s0, s1)
            q_one(4 * q, z0, x0, a, b, out)
            q_one(4 * q + 1, z1, x0, a, b, out)
            q_one(4 * q + 2, z2, x0, a, b, out)
            q_one(4 * q + 3, z3, x0, a, b, out)

    @cuda_jit(device=True)
    def ddpm_one(i, z, x, eps, c_recip, c_recipm1, c1, c2, s, clip, out):
        B, D = out.shape
        if i < B * D:
            r = i // D
            j = i - r * D
            out[r, j] = ddpm(
                x[r, j], eps[r, j], z, c_recip[r], c_recipm1[r], c1[r], c2[r], s[r], clip
            )

    @cuda_jit()
    def ddpm_step_rng(x, eps, c_recip, c_recipm1, c1, c2, s, clip, k0, k1, s0, s1, out):
        B, D = out.shape
        for q in range(cuda.grid(1), (B * D + 3) // 4, cuda.gridsize(1)):
            z0, z1, z2, z3 = normal4(q, k0, k1, s0, s1)
            ddpm_one(4 * q, z0, x, eps, c_recip, c_recipm1, c1, c2, s, clip, out)
            ddpm_one(4 * q + 1, z1, x, eps, c_recip, c_recipm1, c1, c2, s, clip, out)
            ddpm_one(4 * q + 2, z2, x, eps, c_recip, c_recipm1, c1, c2, s, clip, out)
            ddpm_one(4 * q + 3, z3, x, eps, c_recip, c_recipm1, c1, c2, s, clip, out)

    @cuda_jit(device=True)
    def ddim_one(i, z, x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, out):
        B, D = out.shape
        if i < B * D:
            r = i // D
            j = i - r * D
            out[r, j] = ddim(
                x[r, j], eps[r, j], z, c_recip[r], c_recipm1[r], c_prev[r], c_dir[r], s[r], clip
            )

    @cuda_jit()
    def ddim_step_rng(x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, k0, k1, s0, s1, out):
        B, D = out.shape
        for q in range(cuda.grid(1), (B * D + 3) // 4, cuda.gridsize(1)):
            z0, z1, z2, z3 = normal4(q, k0, k1, s0, s1)
            ddim_one(4 * q, z0, x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, out)
            ddim_one(4 * q + 1, z1, x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, out)
            ddim_one(4 * q + 2, z2, x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, out)
            ddim_one(4 * q + 3, z3, x, eps, c_recip, c_recipm1, c_prev, c_dir, s, clip, out)

    @cuda_jit(device=True)
    def langevin_one(i, z, x, g, a, b, out):
        B, D = out.shape
        if i < B * D:
            r = i // D
            j = i - r * D
            out[r, j] = (x[r, j] + a[r] * g[r, j]) + b[r] * z

    @cuda_jit()
    def langevin_step_rng(x, g, a, b, k0, k1, s0, s1, out):
        B, D = out.shape
        for q in range(cuda.grid(1), (B * D + 3) // 4, cuda.gridsize(1)):
            z0, z1, z2, z3 = normal4(q, k0, k1, s0, s1)
            langevin_one(4 * q, z0, x, g, a, b, out)
            langevin_one(4 * q + 1, z1, x, g, a, b, out)
            langevin_one(4 * q + 2, z2, x, g, a, b, out)
            langevin_one(4 * q + 3, z3, x, g, a, b, out)

    @cuda_jit()
    def standard_normal_flat(k0, k1, s0, s1, out):
        n = out.size
        for q in range(cuda.grid(1), (n + 3) // 4, cuda.gridsize(1)):
            z0, z1, z2, z3 = normal4(q, k0, k1, s0, s1)
            i = 4 * q
            out[i] = z0
            if i + 1 < n:
                out[i + 1] = z1
            if i + 2 < n:
                out[i + 2] = z2
            if i + 3 < n:
                out[i + 3] = z3

    @cuda_jit()
    def random_words(k0, k1, s0, s1, out):
        n = out.size
        for q in range(cuda.grid(1), (n + 3) // 4, cuda.gridsize(1)):
            uq = np.uint64(q)
            w0, w1, w2, w3 = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
            i = 4 * q
            out[i] = np.uint32(w0)
            if i + 1 < n:
                out[i + 1] = np.uint32(w1)
            if i + 2 < n:
                out[i + 2] = np.uint32(w2)
            if i + 3 < n:
                out[i + 3] = np.uint32(w3)

    return {
        "q_sample": q_sample,
        "ddpm_step": ddpm_step,
        "ddim_step": ddim_step,
        "q_sample_rng": q_sample_rng,
        "ddpm_step_rng": ddpm_step_rng,
        "ddim_step_rng": ddim_step_rng,
        "langevin_step": langevin_step,
        "langevin_step_rng": langevin_step_rng,
        "standard_normal_flat": standard_normal_flat,
        "random_words": random_words,
    }


def kernels(dtype) -> dict:
    """The CUDA kernels for ``dtype`` (float32 or float64), built on first use."""
    key = np.dtype(dtype).type
    if key not in _BUILT:
        _BUILT[key] = _build(key)
    return _BUILT[key]


def _device(a):
    return cuda.to_device(a) if isinstance(a, np.ndarray) else a


def run(name, arrays, coefs, extra, noise, seed, stream, out):
    """Backend entry point (see :mod:`.dispatch`). Returns a NumPy array when the inputs are
    NumPy arrays, else a device array."""
    x = arrays[0]
    on_host = isinstance(x, np.ndarray)
    ks = kernels(x.dtype)
    d_arrays = [_device(a) for a in arrays]
    d_coefs = [cuda.to_device(np.ascontiguousarray(c)) for c in coefs]
    if out is None:
        d_out = cuda.device_array(x.shape, x.dtype)
    else:
        d_out = _device(out)
    n = x.shape[0] * x.shape[1]
    if noise is not None:
        blocks, tpb = cuda_launch_shape(n)
        ks[name][blocks, tpb](*d_arrays, _device(noise), *d_coefs, *extra, d_out)
    else:
        blocks, tpb = cuda_launch_shape((n + 3) // 4)
        words = rng.kernel_words(seed, stream)
        ks[name + "_rng"][blocks, tpb](*d_arrays, *d_coefs, *extra, *words, d_out)
    if not on_host:
        return d_out
    if out is None:
        return d_out.copy_to_host()
    d_out.copy_to_host(out)
    return out


def standard_normal(seed: int, stream: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Backend entry point: :func:`npddpm.rng.standard_normal` on the device (host result)."""
    out = np.empty(shape, dtype)
    if out.size:
        d = cuda.device_array(out.size, out.dtype)
        blocks, tpb = cuda_launch_shape((out.size + 3) // 4)
        kernels(dtype)["standard_normal_flat"][blocks, tpb](*rng.kernel_words(seed, stream), d)
        d.copy_to_host(out.reshape(-1))
    return out


def random_words(seed: int, stream: int, n: int) -> np.ndarray:
    """The first ``n`` uint32 words of ``(seed, stream)``, computed on the device."""
    d = cuda.device_array(n, np.uint32)
    blocks, tpb = cuda_launch_shape((n + 3) // 4)
    kernels(np.float64)["random_words"][blocks, tpb](*rng.kernel_words(seed, stream), d)
    return d.copy_to_host()
