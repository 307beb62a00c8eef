r"""Samplers: one free function per sampler, all with the same signature.

``sampler(diffusion, denoiser, x_T_or_shape, *, seed=0, row_offset=0, client=None,
shard_size=None, noise=None, backend="numpy", clip_denoised=True, denoised_fn=None,
variance="model", progress=False, callback=None, return_trajectory=False)`` (``ddim`` adds
``eta``).

* ``progress``: a tqdm bar on stderr (``True``), none (``False``), or one only when stderr
  is a terminal (``None``); it only counts steps, the result is the same.
* ``denoiser(x_t, t) -> model_output`` is called with the **original** timesteps
  ``diffusion.model_timesteps(index)``, also when the diffusion is respaced.
* ``x_T_or_shape``: an array x_T (used as given) or a shape, in which case x_T ~ N(0, I) is
  drawn from ``seed``.
* Noise: the step from index t uses ``noise[t]`` when ``noise`` (shape ``(T, *shape)``) is
  given, otherwise ``_step_noise(seed, step, shape, dtype)``, a pure function of
  ``(seed, step)`` with step 0 for x_T and step i for the i-th reverse step. The same seed
  therefore gives the same samples, whatever happens in between.
* ``row_offset``: the global index of the batch's first row; row ``b`` gets the noise of row
  ``row_offset + b`` of a larger batch, so a batch of rows ``[a, b)`` with ``row_offset=a``
  is rows ``a:b`` of the whole run, bitwise, for a batch-invariant denoiser.
* ``client``: a :class:`dask.distributed.Client`; the rows then run as shards of
  ``shard_size`` rows on its workers (:func:`npddpm.distributed.sample`), with the same result
  bit for bit. The denoiser must travel by standard pickle (an oracle denoiser,
  :class:`npddpm.distributed.CheckpointModel`); ``callback``/``noise`` and
  ``backend="cuda"`` are refused with a client.
* ``variance="exact"``: the exact reverse covariance
  ``S·I + P²·Cov[x₀ | x_t]`` with S = β̃_t, P = coef1 (DDPM) or S = σ_t², P = √ᾱ_prev −
  √(1 − ᾱ_prev − σ²)·√ᾱ/√(1 − ᾱ) (DDIM), noise kept at t = 0. It needs a denoiser with an
  ``x0_covariance(x_t, t)`` method such as :meth:`npddpm.analytic.GaussianMixture.denoiser`;
  with it the oracle sampler reproduces Gaussian data exactly (see
  :func:`npddpm.analytic.sampler_moments`). It makes DDIM stochastic even at η = 0 (P ≠ 0).
  The covariance is formed per row, (B, D, D), so it is meant for low-dimensional data.
* The ODE/SDE solvers (:mod:`.solvers`: ``euler``, ``heun``, ``euler_ancestral``, ``lms``,
  ``flow_euler``; :mod:`.exponential`: ``dpm_solver``, ``unipc``; :mod:`.deis`: ``deis``)
  take a diffusion or a :mod:`npddpm.paths` path and ``steps``/``spacing``; see
  :mod:`.solvers`.
* ``clip_denoised=True`` (improved-diffusion's default) clips x̂₀ to [−1, 1]; pass False for
  data outside [−1, 1] and for any comparison with the exact moments (clipping is not affine).
"""

from ..kernels import BACKENDS
from ._common import step_noise
from .ancestral import ddim, ddpm
from .deis import deis
from .exponential import dpm_solver, unipc
from .langevin import (
    annealed_langevin,
    eps_from_score_fn,
    langevin,
    predictor_corrector,
    score_from_denoiser,
)
from .solvers import euler, euler_ancestral, flow_euler, heun, lms

__all__ = [
    "BACKENDS",
    "annealed_langevin",
    "ddim",
    "ddpm",
    "deis",
    "dpm_solver",
    "eps_from_score_fn",
    "euler",
    "euler_ancestral",
    "flow_euler",
    "heun",
    "langevin",
    "lms",
    "predictor_corrector",
    "score_from_denoiser",
    "step_noise",
    "unipc",
]
