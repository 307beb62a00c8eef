r"""Adam / AdamW with bias correction, gradient clipping by global norm, learning-rate
warm-up, and an exponential moving average of the parameters.

All updates are in place on the arrays of the ``params`` dict the optimiser was built with
(the model's own :attr:`params`), in their dtype. State is plain arrays and ints, so
``load_state_dict(state_dict())`` restores it exactly (bit for bit).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np

from .._checks import as_int
from ._validate import check_keys

__all__ = ["EMA", "Adam", "AdamW", "clip_grad_norm", "global_norm", "warmup_lr"]

Arrays = Mapping[str, np.ndarray]


def global_norm(grads: Arrays) -> float:
    r"""The global L2 norm :math:`\sqrt{\sum_k \lVert g_k \rVert_2^2}`, accumulated in float64."""
    total = 0.0
    for g in grads.values():
        g64 = np.asarray(g, dtype=np.float64).ravel()
        # a NumPy reduction, not a BLAS dot: between Numba-parallel kernels and threaded
        # chunks an OpenBLAS call here spun up its thread pool and cost ~90 ms per step
        total += float(np.sum(g64 * g64))
    return math.sqrt(total)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    r"""Scale ``grads`` in place so that their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with :math:`n` the global norm, every gradient is
    multiplied by :math:`\min(1,\ \mathrm{max\_norm} / (n + 10^{-6}))`. Returns :math:`n`
    (before clipping).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norm = global_norm(grads)
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= g.dtype.type(coef)
    return norm


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    r"""Linear warm-up: :math:`\mathrm{lr}_k = \mathrm{lr}\cdot\min(1,\ k / W)` at step ``k >= 1``
    (``W = warmup_steps``; no warm-up when ``W = 0``)."""
    if warmup_steps <= 0:
        return lr
    return lr * min(1.0, step / warmup_steps)


@functools.cache
def _adam_kernel():
    """The one-pass Adam update (the expressions of the NumPy path of :meth:`Adam.step`,
    each rounded to the array dtype in the same order; fastmath off, so no contraction)."""
    from .._numba import cpu_jit

    @cpu_jit()
    def adam_update(
        p, g, m, v, coef, clip, wd, coupled, decay, decoupled, b1, omb1, b2, omb2, bc2, eps, step
    ):
        for i in range(p.size):
            gi = g[i]
            if clip:
                gi = gi * coef
            if coupled:
                gi = gi + wd * p[i]
            pi = p[i]
            if decoupled:
                pi = pi * decay
            mi = m[i] * b1 + gi * omb1
            vi = v[i] * b2 + (gi * gi) * omb2
            m[i] = mi
            v[i] = vi
            p[i] = pi - (mi / (np.sqrt(vi) / bc2 + eps)) * step

    @cpu_jit()
    def adam_update_all(
        ps, gs, ms, vs, coef, clip, wd, coupled, decay, decoupled, b1, omb1, b2, omb2, bc2, eps,
        step,
    ):  # fmt: skip
        """:func:`adam_update` over tuples of flat arrays: one call for every parameter."""
        for j in range(len(ps)):
            adam_update(
                ps[j], gs[j], ms[j], vs[j], coef, clip, wd, coupled, decay, decoupled, b1, omb1,
                b2, omb2, bc2, eps, step,
            )  # fmt: skip

    adam_update.update_all = adam_update_all
    return adam_update


class Adam:
    r"""Adam (Kingma & Ba 2015, Algorithm 1) with PyTorch's arithmetic.

    At step :math:`k` (1-based), with gradient :math:`g` (after clipping and, for coupled
    weight decay, :math:`g \leftarrow g + \lambda p`):

    .. math::
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \frac{\mathrm{lr}_k}{1 - \beta_1^k}\;
             \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^k} + \epsilon}

    With ``decoupled=True`` (AdamW, Loshchilov & Hutter 2019) the decay is applied to the
    parameters instead: :math:`p \leftarrow p\,(1 - \mathrm{lr}_k \lambda)` before the step.

    Parameters
    ----------
    params : dict of str → ndarray
        Updated in place (pass ``model.params``).
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled : bool, default False
        AdamW-style decay (see :class:`AdamW`).
    clip_norm : float or None, default None
        Clip the gradients' global norm to this value (as :func:`clip_grad_norm`) before the
        update; the caller's ``grads`` are not modified.
    warmup_steps : int, default 0
        Linear learning-rate warm-up (:func:`warmup_lr`).
    fused : bool, default True
        Update each array in one pass of a Numba kernel (compiled on first use) instead of
        twelve NumPy passes. The kernel evaluates the same expressions in the same order and
        precision, so both paths give bitwise the same parameters (tested).
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        clip_norm: float | None = None,
        warmup_steps: int = 0,
        fused: bool = True,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not eps > 0 or weight_decay < 0:
            raise ValueError(f"eps must be > 0 and weight_decay >= 0, got {eps}, {weight_decay}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm}")
        self.params = params
        self.lr, self.betas, self.eps = float(lr), (float(b1), float(b2)), float(eps)
        self.weight_decay, self.decoupled = float(weight_decay), bool(decoupled)
        self.clip_norm = clip_norm
        self.warmup_steps = as_int(warmup_steps, "warmup_steps", minimum=0)
        self.fused = bool(fused)
        self.step_count = 0
        self.exp_avg = {k: np.zeros_like(p) for k, p in params.items()}
        self.exp_avg_sq = {k: np.zeros_like(p) for k, p in params.items()}
        self._tmp = {k: np.empty_like(p) for k, p in params.items()}
        self.last_grad_norm: float | None = None

    def step(self, grads: Arrays) -> None:
        """Apply one update with ``grads`` (exactly the keys and shapes of ``params``)."""
        check_keys(grads, self.params, "grads")
        for k, p in self.params.items():
            if grads[k].shape != p.shape:
                raise ValueError(f"grads[{k!r}] has shape {grads[k].shape}, expected {p.shape}")
        coef = 1.0
        if self.clip_norm is not None:
            norm = global_norm(grads)
            self.last_grad_norm = norm
            coef = min(1.0, self.clip_norm / (norm + 1e-6))
        self.step_count += 1
        k_step = self.step_count
        lr = warmup_lr(k_step, self.lr, self.warmup_steps)
        b1, b2 = self.betas
        step_size = lr / (1 - b1**k_step)
        bc2_sqrt = math.sqrt(1 - b2**k_step)
        wd, eps = self.weight_decay, self.eps

        def scalars(t):
            return (
                t(coef), coef != 1.0, t(wd), bool(wd) and not self.decoupled,
                t(1 - lr * wd), bool(wd) and self.decoupled,
                t(b1), t(1 - b1), t(b2), t(1 - b2), t(bc2_sqrt), t(eps), t(step_size),
            )  # fmt: skip

        def fusable(k: str, p: np.ndarray) -> bool:
            # the kernel computes in p's dtype; other gradients take the NumPy path, whose
            # mixed-dtype arithmetic it does not reproduce
            g = grads[k]
            return g.dtype == p.dtype and p.flags.c_contiguous and g.flags.c_contiguous

        if self.fused and self.params and all(fusable(k, p) for k, p in self.params.items()):
            dtypes = {p.dtype for p in self.params.values()}
            if len(dtypes) == 1:  # one call for every parameter (tuples of flat views)
                flat = [
                    tuple(d[k].reshape(-1) for k in self.params)
                    for d in (self.params, grads, self.exp_avg, self.exp_avg_sq)
                ]
                _adam_kernel().update_all(*flat, *scalars(dtypes.pop().type))
                return
        for k, p in self.params.items():
            g = grads[k]
            m, v = self.exp_avg[k], self.exp_avg_sq[k]
            if self.fused and fusable(k, p):
                _adam_kernel()(
                    p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                    *scalars(p.dtype.type),
                )  # fmt: skip
                continue
            if coef != 1.0:
                g = g * g.dtype.type(coef)
            if wd and not self.decoupled:
                g = g + wd * p
            tmp = self._tmp[k]
            if wd and self.decoupled:
                p *= 1 - lr * wd
            m *= b1
            np.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= bc2_sqrt
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """``{"step": int, "exp_avg/<key>": array, "exp_avg_sq/<key>": array}`` (copies)."""
        state: dict[str, np.ndarray | int] = {"step": self.step_count}
        for k in self.params:
            state[f"exp_avg/{k}"] = self.exp_avg[k].copy()
            state[f"exp_avg_sq/{k}"] = self.exp_avg_sq[k].copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray | int]) -> None:
        """Restore a :meth:`state_dict` exactly (arrays are copied into the optimiser)."""
        expected = {"step": 0} | {
            f"{s}/{k}": 0 for s in ("exp_avg", "exp_avg_sq") for k in self.params
        }
        check_keys(state, expected, "state")
        for k, p in self.params.items():
            for name, store in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
                arr = np.asarray(state[f"{name}/{k}"])
                if arr.shape != p.shape:
                    raise ValueError(f"state[{name}/{k}] has shape {arr.shape}, expected {p.shape}")
                store[k][...] = arr
        self.step_count = as_int(state["step"], "state['step']", minimum=0)

    def __repr__(self) -> str:
        n = sum(int(p.size) for p in self.params.values())
        dtypes = "/".join(sorted({p.dtype.name for p in self.params.values()})) or "none"
        wd = f"weight_decay={self.weight_decay}"
        if type(self) is Adam:
            wd += f", decoupled={self.decoupled}"
        return (
            f"{type(self).__name__}(lr={self.lr}, betas={self.betas}, eps={self.eps}, {wd}, "
            f"clip_norm={self.clip_norm}, warmup_steps={self.warmup_steps}, "
            f"step={self.step_count}, params={n:,} in {len(self.params)} arrays, dtype={dtypes})"
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019); ``weight_decay=0.01``
    by default, as ``torch.optim.AdamW``. Same parameters as :class:`Adam`."""

    def __init__(self, params: dict[str, np.ndarray], *, weight_decay: float = 0.01, **kw) -> None:
        super().__init__(params, weight_decay=weight_decay, decoupled=True, **kw)


class EMA:
    r"""Exponential moving average of parameters (Polyak averaging; improved-diffusion's
    ``update_ema``): :math:`\bar p \leftarrow \delta_n\,\bar p + (1 - \delta_n)\,p`.

    Without warm-up :math:`\delta_n = \delta` at every update. With ``warmup=True`` the decay
    is ramped as the run starts, :math:`\delta_n = \min\bigl(\delta,\ (1 + n)/(10 + n)\bigr)`
    at the update with ``n`` = :attr:`num_updates` before it (0, 1, 2, …) — the rule of
    TensorFlow's ``tf.train.ExponentialMovingAverage(decay, num_updates=…)``. The first
    updates then average over the last few steps only, so the average forgets the random
    initialisation after tens of steps instead of :math:`1/(1-\delta)` (1000 steps for
    0.999); once :math:`(1+n)/(10+n) \ge \delta` (n ≥ 8991 for 0.999) it is the plain EMA.

    Parameters
    ----------
    params : dict of str → ndarray
        The parameters to track; the average starts as a copy of them.
    decay : float, default 0.9999
        :math:`\delta \in [0, 1)`.
    warmup : bool, default False
        Ramp the decay as above (:class:`npddpm.training.TrainConfig` turns it on).

    Attributes
    ----------
    params : dict of str → ndarray
        The averaged parameters (use them for sampling).
    num_updates : int
        Updates so far (stored by :meth:`state_dict`, so a resumed ramp continues exactly).
    """

    def __init__(self, params: Arrays, decay: float = 0.9999, *, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        if not isinstance(warmup, bool):
            raise TypeError(f"warmup must be True or False, got {warmup!r}")
        self.decay = float(decay)
        self.warmup = warmup
        self.params = {k: np.array(p, copy=True) for k, p in params.items()}
        self.num_updates = 0

    def __repr__(self) -> str:
        return (
            f"EMA(decay={self.decay}, warmup={self.warmup}, num_updates={self.num_updates}, "
            f"{len(self.params)} arrays)"
        )

    @property
    def time_constant(self) -> float:
        r""":math:`1/(1-\delta)`: roughly how many updates the (un-ramped) average spans."""
        return 1.0 / (1.0 - self.decay)

    def current_decay(self) -> float:
        r"""The decay :math:`\delta_n` the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def update(self, params: Arrays) -> None:
        """One averaging step towards ``params`` (same keys as the average)."""
        check_keys(params, self.params, "params")
        d = self.current_decay()
        for k, avg in self.params.items():
            avg *= d
            avg += (1 - d) * params[k]
        self.num_updates += 1

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """``{"num_updates": int, "ema/<key>": array}`` (copies)."""
        state: dict[str, np.ndarray | int] = {"num_updates": self.num_updates}
        state.update({f"ema/{k}": v.copy() for k, v in self.params.items()})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray | int]) -> None:
        """Restore a :meth:`state_dict` exactly."""
        expected = {"num_updates": 0} | {f"ema/{k}": 0 for k in self.params}
        check_keys(state, expected, "state")
        for k, avg in self.params.items():
            avg[...] = state[f"ema/{k}"]
        self.num_updates = as_int(state["num_updates"], "state['num_updates']", minimum=0)
