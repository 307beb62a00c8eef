"""Numba CUDA kernels: grid-stride loops over the flat element (or Philox block) index.

Twin of :mod:`npddpm.kernels.cpu` (same expressions, same order as
:mod:`npddpm.kernels.reference`). Results do not depend on the launch shape: every element
is a pure function of its index, and the grid-stride loops cover every index once whatever
the number of blocks and threads (:func:`npddpm._numba.cuda_launch_shape`).

The kernels are built per dtype (float32, float64) on first use, with the dtype's normal
transform (:func:`npddpm.rng.box_muller_f32` / ``_f64``, the reference's own source) closed
over; every kernel is one of two grid-stride drivers (noise given, in-kernel noise) around
the kernel's per-element function from :mod:`npddpm.kernels.elementwise`, the same source as
the CPU kernels'. Arguments as in :mod:`npddpm.kernels.cpu` (without ``scratch``); the
coefficient tuple holds device arrays. A real GPU may contract multiply-adds into FMAs, so
compare GPU results with a tolerance; under the simulator (NumPy scalars) everything is
bitwise equal to the reference.

Accepts NumPy arrays (copied to the device and back) or CUDA device arrays (no copies).
Nothing here validates (see :mod:`npddpm.kernels.dispatch`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from .. import rng
from .._numba import cuda_jit, cuda_launch_shape
from . import elementwise
from .contract import KernelCall

_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)

philox4x32_10 = cuda_jit(device=True)(rng.philox4x32_10_words)

_BUILT: dict = {}

_box_muller_f32 = cuda_jit(device=True)(rng.box_muller_f32)
_box_muller_f64 = cuda_jit(device=True)(rng.box_muller_f64)


_ELEMENTWISE = elementwise.build(cuda_jit(device=True))


def _drivers(row: Any, elem: Any, normal4: Any, one: Any) -> tuple[Any, Any]:
    """The two grid-stride kernels around a ``(row, elem)`` pair
    (:mod:`npddpm.kernels.elementwise`): one element per iteration with the noise given;
    one Philox block (four elements) per iteration with in-kernel noise."""

    @cuda_jit()
    def given(inputs, z, coefs, clip, out):
        B, D = out.shape
        for i in range(cuda.grid(1), B * D, cuda.gridsize(1)):
            r = i // D
            j = i - r * D
            out[r, j] = elem(inputs, r, j, z[r, j], row(coefs, r), clip, one)

    @cuda_jit(device=True)
    def put(i, z, inputs, coefs, clip, out):
        B, D = out.shape
        if i < B * D:
            r = i // D
            j = i - r * D
            out[r, j] = elem(inputs, r, j, z, row(coefs, r), clip, one)

    @cuda_jit()
    def in_kernel(inputs, coefs, clip, k0, k1, s0, s1, out):
        B, D = out.shape
        for q in range(cuda.grid(1), (B * D + 3) // 4, cuda.gridsize(1)):
            z0, z1, z2, z3 = normal4(q, k0, k1, s0, s1)
            put(4 * q, z0, inputs, coefs, clip, out)
            put(4 * q + 1, z1, inputs, coefs, clip, out)
            put(4 * q + 2, z2, inputs, coefs, clip, out)
            put(4 * q + 3, z3, inputs, coefs, clip, out)

    return given, in_kernel


def _build(ftype):
    box_muller = _box_muller_f32 if ftype == np.float32 else _box_muller_f64

    @cuda_jit(device=True)
    def normal4(q, k0, k1, s0, s1):
        uq = np.uint64(q)
        w0, w1, w2, w3 = philox4x32_10(uq & _MASK, uq >> _SHIFT, s0, s1, k0, k1)
        z0, z1 = box_muller(w0, w1)
        z2, z3 = box_muller(w2, w3)
        return z0, z1, z2, z3

    built: dict[str, Any] = {}
    for name, (row, elem) in _ELEMENTWISE.items():
        built[name], built[name + "_rng"] = _drivers(row, elem, normal4, ftype(1.0))

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

    built["standard_normal_flat"] = standard_normal_flat
    built["random_words"] = random_words
    return built


def kernels(dtype) -> dict:
    """The CUDA kernels for ``dtype`` (float32 or float64), built on first use."""
    key = np.dtype(dtype).type
    if key not in _BUILT:
        _BUILT[key] = _build(key)
    return _BUILT[key]


def _device(a):
    return cuda.to_device(a) if isinstance(a, np.ndarray) else a


def run(call: KernelCall) -> Any:
    """Backend entry point (see :class:`npddpm.kernels.contract.Backend`). Returns a NumPy
    array when the inputs are NumPy arrays, else a device array."""
    x = call.inputs[0]
    on_host = isinstance(x, np.ndarray)
    ks = kernels(x.dtype)
    inputs = tuple(_device(a) for a in call.inputs)
    coefs = type(call.coefs)(*(cuda.to_device(np.ascontiguousarray(c)) for c in call.coefs))
    d_out = cuda.device_array(x.shape, x.dtype) if call.out is None else _device(call.out)
    n = x.shape[0] * x.shape[1]
    if call.noise is not None:
        blocks, tpb = cuda_launch_shape(n)
        ks[call.kernel][blocks, tpb](inputs, _device(call.noise), coefs, call.clip, d_out)
    else:
        assert call.seed is not None  # the contract: noise or a seed
        blocks, tpb = cuda_launch_shape((n + 3) // 4)
        words = rng.kernel_words(call.seed, call.stream)
        ks[call.kernel + "_rng"][blocks, tpb](inputs, coefs, call.clip, *words, d_out)
    if not on_host:
        return d_out
    if call.out is None:
        return d_out.copy_to_host()
    d_out.copy_to_host(call.out)
    return call.out


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
