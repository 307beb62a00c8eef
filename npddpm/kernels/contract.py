r"""The backend contract: what :mod:`npddpm.kernels.dispatch` hands a backend, and what it
gets back.

A backend is a module (:mod:`~npddpm.kernels.reference`, :mod:`~npddpm.kernels.cpu`,
:mod:`~npddpm.kernels.cuda`) that satisfies :class:`Backend`: a ``run`` taking one
:class:`KernelCall` and a ``standard_normal``. Everything is validated before a backend
sees it: the arrays are 2-D ``(B, D)``, C-contiguous, of one float dtype; the coefficients
are ``(B,)`` arrays of that dtype, one value per row (built by the ``*_coefs`` functions of
:mod:`npddpm.kernels.dispatch`, the one place they are computed); exactly one of ``noise``
and ``seed`` is given.

Each kernel has its own coefficient tuple, a :class:`typing.NamedTuple` whose fields are
named after the quantities they hold (in the order the element-wise formulas use them):

===================  ====================  =================================================
kernel               inputs                coefficients
===================  ====================  =================================================
``q_sample``         ``(x0,)``             :class:`QSampleCoefs`
``langevin_step``    ``(x, score)``        :class:`LangevinCoefs`
``ddpm_step``        ``(x_t, eps)``        :class:`DDPMCoefs`
``ddim_step``        ``(x_t, eps)``        :class:`DDIMCoefs`
===================  ====================  =================================================
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "BACKENDS",
    "KERNELS",
    "Backend",
    "Coefs",
    "DDIMCoefs",
    "DDPMCoefs",
    "KernelCall",
    "KernelName",
    "LangevinCoefs",
    "QSampleCoefs",
]

#: The backend names, in order: the NumPy reference, Numba CPU, Numba CUDA.
BACKENDS: tuple[str, ...] = ("numpy", "cpu", "cuda")

KernelName = Literal["q_sample", "langevin_step", "ddpm_step", "ddim_step"]

#: The fused element-wise kernels every backend implements.
KERNELS: tuple[KernelName, ...] = ("q_sample", "langevin_step", "ddpm_step", "ddim_step")


class QSampleCoefs(NamedTuple):
    r"""Per-row coefficients of ``q_sample``: :math:`x_t = a\,x_0 + b\,\epsilon`."""

    #: :math:`a = \sqrt{\bar\alpha_t}`
    sqrt_alphas_cumprod: Any
    #: :math:`b = \sqrt{1 - \bar\alpha_t}`
    sqrt_one_minus_alphas_cumprod: Any


class LangevinCoefs(NamedTuple):
    r"""Per-row coefficients of ``langevin_step``: :math:`x + a\,g + b\,z`."""

    #: :math:`a = \delta / 2`
    half_step: Any
    #: :math:`b = \sqrt\delta`
    sqrt_step: Any


class DDPMCoefs(NamedTuple):
    r"""Per-row coefficients of ``ddpm_step``:
    :math:`\hat x_0 = r\,x_t - r_1\,\epsilon`, :math:`x_{t-1} = c_1 \hat x_0 + c_2 x_t + s\,z`."""

    #: :math:`r = \sqrt{1/\bar\alpha_t}`
    sqrt_recip_alphas_cumprod: Any
    #: :math:`r_1 = \sqrt{1/\bar\alpha_t - 1}`
    sqrt_recipm1_alphas_cumprod: Any
    #: :math:`c_1`, ``posterior_mean_coef1``
    posterior_mean_coef1: Any
    #: :math:`c_2`, ``posterior_mean_coef2``
    posterior_mean_coef2: Any
    #: :math:`s = [t \ne 0]\,e^{\frac12 \log\sigma_t^2}`
    noise_scale: Any


class DDIMCoefs(NamedTuple):
    r"""Per-row coefficients of ``ddim_step``: :math:`\hat x_0 = r\,x_t - r_1\,\epsilon`,
    :math:`\hat\epsilon = (r\,x_t - \hat x_0)/r_1`,
    :math:`x_{t-1} = p\,\hat x_0 + d\,\hat\epsilon + s\,z`."""

    #: :math:`r = \sqrt{1/\bar\alpha_t}`
    sqrt_recip_alphas_cumprod: Any
    #: :math:`r_1 = \sqrt{1/\bar\alpha_t - 1}`
    sqrt_recipm1_alphas_cumprod: Any
    #: :math:`p = \sqrt{\bar\alpha_{prev}}`
    sqrt_alphas_cumprod_prev: Any
    #: :math:`d = \sqrt{1 - \bar\alpha_{prev} - \sigma^2}`
    direction_scale: Any
    #: :math:`s = [t \ne 0]\,\sigma`
    noise_scale: Any


Coefs = QSampleCoefs | LangevinCoefs | DDPMCoefs | DDIMCoefs


class KernelCall(NamedTuple):
    """One validated kernel call, as a backend receives it.

    Attributes
    ----------
    kernel : {"q_sample", "langevin_step", "ddpm_step", "ddim_step"}
    inputs : tuple of arrays, each (B, D)
        The kernel's input arrays (see the table in the module docstring).
    coefs : QSampleCoefs, LangevinCoefs, DDPMCoefs or DDIMCoefs
        ``(B,)`` arrays in the input dtype (NumPy arrays, also for ``cuda``).
    clip : bool
        Clip x̂₀ to [−1, 1] (``ddpm_step``, ``ddim_step``; False for the others).
    noise : array (B, D) or None
        The noise; None means the counter-based normals of ``(seed, stream)``.
    seed : int or None
    stream : int
    out : array (B, D) or None
        Where to write (may be ``inputs[0]``); None: the backend allocates.
    """

    kernel: KernelName
    inputs: tuple[Any, ...]
    coefs: Coefs
    clip: bool
    noise: Any
    seed: int | None
    stream: int
    out: Any


@runtime_checkable
class Backend(Protocol):
    """What every backend module provides (checked for the three in ``tests/kernels``)."""

    def run(self, call: KernelCall) -> Any:
        """Compute ``call`` and return the result: ``call.out`` when given, else a new
        array like ``call.inputs[0]``."""
        ...

    def standard_normal(
        self, seed: int, stream: int, shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        """The counter-based normals of :func:`npddpm.rng.standard_normal`, as a NumPy array."""
        ...
