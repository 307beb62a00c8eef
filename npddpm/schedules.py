r"""The :class:`Schedule`: every derived array of a beta schedule, float64, immutable.

Index convention (as improved-diffusion and the original TF code): code timestep
``t ∈ {0, …, T−1}``; index 0 means "diffused one step", i.e. paper step ``t + 1``.

The beta catalogue lives in :mod:`npddpm.betas` and the step spacings in
:mod:`npddpm.spacing`; their public names are re-exported here, where they have always been
importable from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._checks import as_real_1d, as_timesteps, choose
from .betas import (
    betas_for_alpha_bar,
    check_betas,
    get_named_beta_schedule,
    rescale_zero_terminal_snr,
    schedule_names,
)
from .spacing import diffusers_timesteps, inference_timesteps, space_timesteps

__all__ = [
    "Schedule",
    "betas_for_alpha_bar",
    "diffusers_timesteps",
    "get_named_beta_schedule",
    "inference_timesteps",
    "rescale_zero_terminal_snr",
    "schedule_names",
    "space_timesteps",
]


_ARRAY_NAMES = (
    "betas",
    "alphas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "alphas_cumprod_next",
    "one_minus_alphas_cumprod",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "log_alphas_cumprod",
    "snr",
    "log_snr",
    "timestep_map",
)


class Schedule:
    r"""An immutable diffusion schedule with every derived array, in float64.

    Parameters
    ----------
    betas : array_like, shape (T,)
        Values in (0, 1]; only the last may equal 1 (zero terminal SNR).
    precision : {"default", "high"}
        ``"default"`` reproduces improved-diffusion's arithmetic exactly
        (``1 − cumprod(1 − β)``). ``"high"`` computes ``1 − ᾱ`` as
        ``−expm1(cumsum(log1p(−β)))`` and builds every array that contains ``1 − ᾱ`` from it,
        which removes the cancellation at small t (relative error about 1e-16 instead of
        up to 1e-12 for T = 1000; see ``tests/test_schedules_properties.py``).

    Attributes
    ----------
    num_timesteps : int
        T.
    betas, alphas : ndarray (T,)
        β and α = 1 − β.
    alphas_cumprod : ndarray (T,)
        ᾱ_t = ∏_{s≤t} α_s.
    alphas_cumprod_prev, alphas_cumprod_next : ndarray (T,)
        ``[1, ᾱ_0, …, ᾱ_{T−2}]`` and ``[ᾱ_1, …, ᾱ_{T−1}, 0]``.
    one_minus_alphas_cumprod : ndarray (T,)
        1 − ᾱ_t (an npddpm addition; the precision mode decides how it is computed).
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, log_one_minus_alphas_cumprod : ndarray
        √ᾱ, √(1 − ᾱ), log(1 − ᾱ).
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod : ndarray
        √(1/ᾱ) and √(1/ᾱ − 1) (used by x̂₀ = √(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε).
    posterior_variance : ndarray
        β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (Ho et al. 2020, Eq. 7); β̃_0 = 0.
    posterior_log_variance_clipped : ndarray
        ``log([β̃_1, β̃_1, β̃_2, …])``: log β̃ with the t = 0 entry replaced by β̃_1
        (improved-diffusion / TF2). For T = 1 there is no β̃_1 and the entry is
        ``log(1e-20)`` (the TF1 / diffusers floor).
    posterior_mean_coef1, posterior_mean_coef2 : ndarray
        β_t √ᾱ_{t−1} / (1 − ᾱ_t) and (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t), so that the posterior
        mean is ``coef1·x₀ + coef2·x_t`` (Ho et al. 2020, Eq. 7).
    log_alphas_cumprod : ndarray
        log ᾱ (``cumsum(log1p(−β))`` in both modes).
    snr, log_snr : ndarray
        ᾱ / (1 − ᾱ) and its log (Kingma et al. 2021).
    timestep_map : ndarray of int64 (T,)
        The original timestep of each index: ``arange(T)`` unless respaced.
    precision : str
        The precision mode.

    Notes
    -----
    Arrays are read-only and attributes cannot be reassigned. ``ᾱ`` itself is the plain
    ``cumprod`` in both modes (its relative error is already about t·2⁻⁵³).

    Examples
    --------
    >>> s = Schedule.from_name("linear", 1000)
    >>> s.num_timesteps, round(float(s.alphas_cumprod[-1]), 10)
    (1000, 4.03583e-05)
    >>> r = s.respace(space_timesteps(1000, "ddim10"))
    >>> r.timestep_map[:3].tolist(), bool(np.isclose(r.alphas_cumprod[1], s.alphas_cumprod[100]))
    ([0, 100, 200], True)
    """

    __slots__ = ("__dict__",)

    # Declared for type checkers only (no class-level values, so ``__slots__`` is untouched):
    # ``__init__`` sets each of these once, through ``object.__setattr__``. One name per
    # entry of ``_ARRAY_NAMES`` (``_derive``'s keys plus ``timestep_map``), then the scalars.
    betas: np.ndarray
    alphas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    alphas_cumprod_next: np.ndarray
    one_minus_alphas_cumprod: np.ndarray
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    log_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray
    log_alphas_cumprod: np.ndarray
    snr: np.ndarray
    log_snr: np.ndarray
    timestep_map: np.ndarray
    num_timesteps: int
    precision: str

    def __init__(
        self,
        betas: Iterable[float] | np.ndarray,
        precision: str = "default",
        *,
        timestep_map: Iterable[int] | np.ndarray | None = None,
    ) -> None:
        betas = as_real_1d(betas, "betas")
        check_betas(betas, "betas")
        precision = choose(precision, "precision", ("default", "high"))
        T = betas.size
        if timestep_map is None:
            tmap = np.arange(T, dtype=np.int64)
        else:
            tmap = np.asarray(timestep_map)
            if tmap.shape != (T,) or tmap.dtype.kind not in "iu":
                raise ValueError(
                    f"timestep_map must be {T} integers (one per beta), got {tmap.dtype} "
                    f"array of shape {tmap.shape}"
                )
            tmap = tmap.astype(np.int64)
            if (T > 1 and np.any(np.diff(tmap) <= 0)) or tmap[0] < 0:
                raise ValueError("timestep_map must be non-negative and strictly increasing")
        arrays = _derive(betas, precision)
        arrays["timestep_map"] = tmap
        for key, value in arrays.items():
            value.setflags(write=False)
            object.__setattr__(self, key, value)
        object.__setattr__(self, "num_timesteps", T)
        object.__setattr__(self, "precision", precision)

    # construction helpers -------------------------------------------------------------

    @classmethod
    def from_name(
        cls, name: str, num_timesteps: int, *, precision: str = "default", **kw: Any
    ) -> Schedule:
        """``Schedule(get_named_beta_schedule(name, num_timesteps, **kw), precision)``."""
        return cls(get_named_beta_schedule(name, num_timesteps, **kw), precision=precision)

    def respace(self, timesteps: Iterable[int] | np.ndarray) -> Schedule:
        r"""Keep only ``timesteps`` (improved-diffusion ``SpacedDiffusion`` semantics).

        The new betas are :math:`\beta'_k = 1 - \bar\alpha_{s_k} / \bar\alpha_{s_{k-1}}` with
        :math:`\bar\alpha_{s_{-1}} = 1`, so ᾱ is preserved at the retained steps, and
        ``timestep_map`` maps each new index to the original timestep (composed with this
        schedule's map when it is itself respaced). In ``"high"`` precision the new betas are
        ``−expm1(Δ log ᾱ)``.

        Parameters
        ----------
        timesteps : set or strictly increasing sequence of int
            Indices into this schedule, in ``[0, T)``; e.g. from :func:`space_timesteps`.
        """
        use = as_timesteps(timesteps, "timesteps", self.num_timesteps)
        if self.precision == "high":
            log_ab = self.log_alphas_cumprod[use]
            prev = np.concatenate([[0.0], log_ab[:-1]])
            with np.errstate(invalid="ignore"):
                betas = -np.expm1(log_ab - prev)
            betas[np.isneginf(log_ab)] = 1.0
        else:
            new_betas = []
            last = 1.0
            for i in use:  # the exact float operations of SpacedDiffusion
                ab = float(self.alphas_cumprod[i])
                new_betas.append(1 - ab / last)
                last = ab
            betas = np.array(new_betas, dtype=np.float64)
        return Schedule(betas, precision=self.precision, timestep_map=self.timestep_map[use])

    def index_of(self, timesteps: object) -> np.ndarray:
        """The index of each original timestep: the inverse of ``timestep_map``.

        ``index_of(timestep_map[i]) == i``. A denoiser is called with original timesteps
        (``timestep_map[index]``); this maps them back to indices of this (respaced) schedule.

        Parameters
        ----------
        timesteps : int or integer array, any shape
            Original timesteps, each one of ``timestep_map``.

        Returns
        -------
        ndarray of int64, the shape of ``timesteps``

        Raises
        ------
        TypeError
            If ``timesteps`` is not an integer (or integer array).
        ValueError
            If a timestep is not one of ``timestep_map``; the message names it.
        """
        t = np.asarray(timesteps)
        if t.dtype == bool or t.dtype.kind not in "iu":
            raise TypeError(
                f"timesteps must be an integer array of original timesteps, got dtype {t.dtype}"
            )
        tmap = self.timestep_map
        idx = np.clip(np.searchsorted(tmap, t), 0, tmap.size - 1)
        missing = tmap[idx] != t
        if np.any(missing):
            bad = int(t.ravel()[np.flatnonzero(np.ravel(missing))[0]])
            raise ValueError(
                f"t={bad} is not one of the schedule's original timesteps "
                f"(timestep_map = {tmap[:4].tolist()}…); pass diffusion.model_timesteps(index)"
            )
        return idx.astype(np.int64)

    # behaviour ------------------------------------------------------------------------

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"Schedule is immutable; cannot set {key!r}")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"Schedule is immutable; cannot delete {key!r}")

    def __len__(self) -> int:
        return self.num_timesteps

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (
            self.precision == other.precision
            and np.array_equal(self.betas, other.betas)
            and np.array_equal(self.timestep_map, other.timestep_map)
        )

    def __hash__(self) -> int:
        return hash((self.precision, self.betas.tobytes(), self.timestep_map.tobytes()))

    def __repr__(self) -> str:
        respaced = "" if self.is_identity_map else ", respaced"
        return (
            f"Schedule(T={self.num_timesteps}, precision={self.precision!r}{respaced}, "
            f"betas=[{self.betas[0]:.6g} … {self.betas[-1]:.6g}])"
        )

    @property
    def is_identity_map(self) -> bool:
        """True when ``timestep_map`` is ``arange(T)`` (not respaced)."""
        return bool(np.array_equal(self.timestep_map, np.arange(self.num_timesteps)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description from which :meth:`from_dict` rebuilds it exactly."""
        return {
            "betas": [float(b) for b in self.betas],  # repr round-trips float64 exactly
            "precision": self.precision,
            "timestep_map": [int(t) for t in self.timestep_map],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schedule:
        """Inverse of :meth:`to_dict`."""
        return cls(d["betas"], precision=d["precision"], timestep_map=d["timestep_map"])


def _derive(betas: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    """All derived arrays. The default path is improved-diffusion's arithmetic, verbatim."""
    T = betas.size
    alphas = 1.0 - betas
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ab = np.cumsum(np.log1p(-betas))  # -inf once a beta equals 1
        alphas_cumprod = np.cumprod(alphas, axis=0)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        alphas_cumprod_next = np.append(alphas_cumprod[1:], 0.0)
        if precision == "high":
            omab = -np.expm1(log_ab)  # 1 − ᾱ without cancellation
            omab_prev = np.append(0.0, omab[:-1])
            sqrt_recipm1 = np.sqrt(omab / alphas_cumprod)  # √(1/ᾱ − 1) = √((1−ᾱ)/ᾱ)
        else:
            omab = 1.0 - alphas_cumprod
            omab_prev = 1.0 - alphas_cumprod_prev
            sqrt_recipm1 = np.sqrt(1.0 / alphas_cumprod - 1)
        sqrt_recip = np.sqrt(1.0 / alphas_cumprod)  # no 1 − ᾱ inside: the same in both modes
        posterior_variance = betas * omab_prev / omab
        if T > 1:
            plvc = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
        else:
            plvc = np.array([np.log(1e-20)])
        coef1 = betas * np.sqrt(alphas_cumprod_prev) / omab
        coef2 = omab_prev * np.sqrt(alphas) / omab
        log_omab = np.log(omab)
        snr = alphas_cumprod / omab
        log_snr = log_ab - log_omab
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "alphas_cumprod_next": alphas_cumprod_next,
        "one_minus_alphas_cumprod": omab,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(omab),
        "log_one_minus_alphas_cumprod": log_omab,
        "sqrt_recip_alphas_cumprod": sqrt_recip,
        "sqrt_recipm1_alphas_cumprod": sqrt_recipm1,
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": plvc,
        "posterior_mean_coef1": coef1,
        "posterior_mean_coef2": coef2,
        "log_alphas_cumprod": log_ab,
        "snr": snr,
        "log_snr": log_snr,
    }


# --------------------------------------------------------------------------------------
# Zero terminal SNR
# --------------------------------------------------------------------------------------
