r"""The training loop: data → q_sample → model → loss and d(loss)/d(output) → backward →
Adam → EMA, with JSON-lines logging and atomic checkpoints that resume bitwise.

One step (Ho et al. 2020, Algorithm 1; the hybrid loss of Nichol & Dhariwal 2021 when the
variance is learned): draw x₀ from the data, t uniformly from {0, …, T−1} and ε ~ N(0, I);
form x_t; evaluate the model; take the per-example loss and its gradient with respect to the
model output from :meth:`GaussianDiffusion.training_losses`; back-propagate the batch mean;
update with Adam; update the EMA of the parameters.

Every random draw comes from one ``numpy.random.Generator`` (PCG64) seeded from the config,
whose state is stored in each checkpoint with the Adam and EMA state (the EMA's update count
included, so its warm-up ramp continues where it stopped), so stopping and resuming gives
bitwise the same parameters as never stopping.

A run in ``out_dir`` owns ``checkpoint.npz`` and ``log.jsonl`` there: a fresh run starts a new
log, a resumed run first cuts the log back to the checkpoint's step (every step is logged
once however often the run is killed), and temporary files left by a kill during a save are
removed when a run starts. :func:`train` refuses to start over an earlier run unless asked
to resume it or to replace it (``force=True``).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._checks import as_int, choose
from .diffusion import LOSS_TYPES, MEAN_TYPES, VAR_TYPES, GaussianDiffusion
from .io import load_checkpoint, remove_stale_temp_files, save_checkpoint, write_text
from .kernels import BACKENDS
from .schedules import Schedule

if TYPE_CHECKING:
    from .nn import MLP, UNet
    from .typing import Denoiser

__all__ = [
    "EMAWarning",
    "RunExistsError",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "build_diffusion",
    "build_model",
    "ema_warning",
    "load_for_sampling",
    "model_denoiser",
    "train",
]

MODELS = ("mlp", "unet")
#: the files a run owns in its output directory
CHECKPOINT_NAME, LOG_NAME = "checkpoint.npz", "log.jsonl"


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss, or a checkpoint already at the requested
    steps); the last good checkpoint is intact."""


class RunExistsError(TrainingError):
    """The output directory holds an earlier run; resume it or pass ``force=True``.

    Attributes
    ----------
    out_dir : Path
    found : list of str
        The run's files found there (``checkpoint.npz``, ``log.jsonl``).
    """

    def __init__(self, out_dir: Path, found: list[str]) -> None:
        self.out_dir, self.found = out_dir, found
        super().__init__(
            f"{out_dir} already holds a training run ({', '.join(found)}); resume it "
            f"(resume={str(out_dir / CHECKPOINT_NAME)!r}) or replace it (force=True)"
        )


class EMAWarning(UserWarning):
    """A checkpoint's EMA has seen fewer updates than its time constant: its weights are still
    mostly the initialisation."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable; stored in checkpoints).

    Attributes
    ----------
    dataset : str
        A name for :func:`npddpm.data.get`.
    model : {"mlp", "unet"}
    model_options : dict
        Keyword options of :class:`npddpm.nn.MLP` / :class:`npddpm.nn.UNet`
        (``learn_sigma`` and ``dtype`` are set from the diffusion options).
    schedule, num_timesteps : str, int
        A named beta schedule and T.
    mean_type, var_type, loss_type, profile : str
        :class:`npddpm.GaussianDiffusion` options; ``var_type="learned_range"`` with
        ``loss_type="rescaled_mse"`` is the hybrid loss.
    batch_size, steps : int
    lr, warmup_steps, grad_clip : float, int, float or None
        Adam learning rate, linear warm-up and global-norm clipping.
    ema_decay, ema_warmup : float, bool
        The EMA of the parameters (the weights sampled by default): its decay δ and whether
        the decay is ramped as the run starts, δ_n = min(δ, (1 + n)/(10 + n)) at update n
        (TensorFlow's ``ExponentialMovingAverage(num_updates=…)``; :class:`npddpm.nn.EMA`).
        Without the ramp the average spans about 1/(1 − δ) steps (1000 for 0.999) and a run
        shorter than a few of those samples weights still close to the initialisation
        (measured: C2ST 0.99 after 500 moons steps against 0.72 for the raw weights).
    seed : int
        Seeds the data/timestep/noise generator and the model initialisation.
    backend : {"numpy", "cpu", "cuda"}
        Where ``q_sample`` runs (:mod:`npddpm.kernels`); the noise is still drawn from the
        run's generator, so the backends see the same x_t up to float rounding.
    checkpoint_every, log_every : int
        Checkpoint and log periods in steps (a checkpoint is also written at the end).
    """

    dataset: str = "8gaussians"
    model: str = "mlp"
    model_options: dict = field(default_factory=dict)
    schedule: str = "linear"
    num_timesteps: int = 1000
    mean_type: str = "eps"
    var_type: str = "fixed_small"
    loss_type: str = "mse"
    profile: str = "improved_diffusion"
    batch_size: int = 256
    steps: int = 3000
    lr: float = 1e-3
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    seed: int = 0
    backend: str = "numpy"
    checkpoint_every: int = 1000
    log_every: int = 50

    def __post_init__(self) -> None:
        choose(self.model, "model", MODELS)
        choose(self.backend, "backend", BACKENDS)
        choose(self.mean_type, "mean_type", MEAN_TYPES)
        choose(self.var_type, "var_type", VAR_TYPES)
        choose(self.loss_type, "loss_type", LOSS_TYPES)
        for name in ("num_timesteps", "batch_size", "steps", "checkpoint_every", "log_every"):
            as_int(getattr(self, name), name, minimum=1)
        as_int(self.seed, "seed", minimum=0)
        as_int(self.warmup_steps, "warmup_steps", minimum=0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (
            isinstance(self.ema_decay, (int, float))
            and not isinstance(self.ema_decay, bool)
            and 0 <= self.ema_decay < 1
        ):
            raise ValueError(f"ema_decay must be a number in [0, 1), got {self.ema_decay!r}")
        if not isinstance(self.ema_warmup, bool):
            raise TypeError(f"ema_warmup must be True or False, got {self.ema_warmup!r}")
        if not isinstance(self.model_options, dict):
            raise TypeError("model_options must be a dict of model keyword options")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (:func:`dataclasses.asdict`), as stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config from :meth:`to_dict`'s dict; ValueError on unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def model_signature(self) -> dict[str, Any]:
        """The part of the config a checkpoint's parameters depend on."""
        keys = (
            "dataset",
            "model",
            "model_options",
            "schedule",
            "num_timesteps",
            "mean_type",
            "var_type",
            "loss_type",
            "profile",
        )
        return {k: getattr(self, k) for k in keys}


def build_diffusion(config: TrainConfig) -> GaussianDiffusion:
    """The :class:`GaussianDiffusion` of ``config``: its named schedule of ``num_timesteps``
    steps, with its mean, variance and loss types and profile.
    """
    schedule = Schedule.from_name(config.schedule, config.num_timesteps)
    return GaussianDiffusion(
        schedule,
        mean_type=config.mean_type,
        var_type=config.var_type,
        loss_type=config.loss_type,
        profile=config.profile,
    )


def build_model(
    config: TrainConfig, shape: tuple[int, ...], dtype: npt.DTypeLike = np.float32
) -> MLP | UNet:
    """The denoiser for data of per-example ``shape`` ((D,) or (C, H, W))."""
    from . import nn

    opts = dict(config.model_options)
    opts.setdefault("seed", config.seed)
    learn_sigma = config.var_type in ("learned", "learned_range")
    if config.model == "mlp":
        if len(shape) != 1:
            raise ValueError(
                f"model 'mlp' needs vector data, got examples of shape {shape}; "
                "use model 'unet' for images"
            )
        return nn.MLP(shape[0], learn_sigma=learn_sigma, dtype=dtype, **opts)
    if len(shape) != 3:
        raise ValueError(f"model 'unet' needs image data (C, H, W), got {shape}")
    return nn.UNet(shape[0], learn_sigma=learn_sigma, dtype=dtype, **opts)


def _get_dataset(name_or_obj):
    if isinstance(name_or_obj, str):
        from . import data

        return data.get(name_or_obj)
    return name_or_obj


class Trainer:
    """A training run that can be stepped, checkpointed and resumed.

    Parameters
    ----------
    config : TrainConfig
    dataset : object, optional
        Anything with ``sample(n, rng) -> ndarray (n, ...)``; default
        ``npddpm.data.get(config.dataset)``.
    """

    def __init__(self, config: TrainConfig, dataset: Any = None) -> None:
        from .nn import EMA, Adam

        self.config = config
        self.dataset = _get_dataset(dataset if dataset is not None else config.dataset)
        self.diffusion = build_diffusion(config)
        self.rng = np.random.default_rng(config.seed)
        probe = np.asarray(self.dataset.sample(1, np.random.default_rng(0)))
        self.example_shape = tuple(probe.shape[1:])
        # Any: forward's cache type pairs with its own model's backward, which a union loses
        self.model: Any = build_model(config, self.example_shape)
        self.optimizer = Adam(
            self.model.params,
            lr=config.lr,
            clip_norm=config.grad_clip,
            warmup_steps=config.warmup_steps,
        )
        self.ema = EMA(self.model.params, decay=config.ema_decay, warmup=config.ema_warmup)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.removed_temp_files: list[Path] = []

    # ------------------------------------------------------------------ one step

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns the batch-mean loss terms."""
        cfg, d = self.config, self.diffusion
        B = cfg.batch_size
        dtype = self.model.dtype
        x0 = np.asarray(self.dataset.sample(B, self.rng), dtype=dtype)
        t = self.rng.integers(0, d.num_timesteps, size=B)
        noise = self.rng.standard_normal(x0.shape).astype(dtype)
        # a diverging run produces inf/NaN here; it is caught by the finiteness check below
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if cfg.backend == "numpy":
                x_t = d.q_sample(x0, t, noise)
            else:
                from . import kernels

                x_t = np.asarray(kernels.q_sample(d.schedule, x0, t, noise, backend=cfg.backend))
            out, cache = self.model.forward(x_t, d.model_timesteps(t))
            terms, grad = d.training_losses(out, x0, t, noise, x_t=x_t)
            loss = float(np.mean(terms["loss"]))
        if not math.isfinite(loss):
            raise TrainingError(
                f"non-finite loss ({loss}) at step {self.step + 1}; parameters were not "
                f"updated; last good checkpoint: {self.last_checkpoint or 'none written yet'}"
            )
        grads = self.model.backward((grad / B).astype(dtype, copy=False), cache)
        self.optimizer.step(grads)
        self.ema.update(self.model.params)
        self.step += 1
        return {k: float(np.mean(v)) for k, v in terms.items()}

    # ------------------------------------------------------------------ checkpoints

    def state_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The run's state as ``(arrays, ints)`` for a checkpoint.

        ``arrays``: the model parameters (``params/<name>``) and the Adam and EMA array state
        (``adam/<key>``, ``ema/<key>``); ``ints``: the Adam and EMA scalars (step counts) as int.
        """
        arrays: dict[str, np.ndarray] = {f"params/{k}": v for k, v in self.model.params.items()}
        ints: dict[str, int] = {}
        for prefix, state in (
            ("adam", self.optimizer.state_dict()),
            ("ema", self.ema.state_dict()),
        ):
            for k, v in state.items():
                if isinstance(v, np.ndarray):
                    arrays[f"{prefix}/{k}"] = v
                else:
                    ints[f"{prefix}/{k}"] = int(v)
        return arrays, ints

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (config, step, params, Adam, EMA, RNG state)."""
        arrays, ints = self.state_arrays()
        header = {
            "kind": "npddpm-train",
            "config": self.config.to_dict(),
            "step": self.step,
            "counters": ints,
            "rng": self.rng.bit_generator.state,
            "example_shape": list(self.example_shape),
        }
        self.last_checkpoint = save_checkpoint(path, arrays, header)
        return self.last_checkpoint

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save` for the same model configuration."""
        arrays, header = load_checkpoint(path)
        if header.get("kind") != "npddpm-train":
            raise ValueError(f"{path}: not a training checkpoint")
        theirs = TrainConfig.from_dict(header["config"]).model_signature()
        ours = self.config.model_signature()
        if theirs != ours:
            diff = ", ".join(
                f"{k} (checkpoint {theirs[k]!r}, config {ours[k]!r})"
                for k in ours
                if theirs[k] != ours[k]
            )
            raise ValueError(f"{path}: checkpoint is for another model; differs in {diff}")
        for k, p in self.model.params.items():
            src = arrays.get(f"params/{k}")
            if src is None or src.shape != p.shape or src.dtype != p.dtype:
                raise ValueError(f"{path}: parameter {k!r} is missing or has the wrong shape")
            p[...] = src
        counters = header["counters"]
        opt = {k[len("adam/") :]: v for k, v in arrays.items() if k.startswith("adam/")}
        opt.update({k[len("adam/") :]: v for k, v in counters.items() if k.startswith("adam/")})
        self.optimizer.load_state_dict(opt)
        ema = {k[len("ema/") :]: v for k, v in arrays.items() if k.startswith("ema/")}
        ema.update({k[len("ema/") :]: v for k, v in counters.items() if k.startswith("ema/")})
        self.ema.load_state_dict(ema)
        self.rng.bit_generator.state = header["rng"]
        self.step = int(header["step"])
        self.last_checkpoint = Path(path)

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        out_dir: str | os.PathLike | None = None,
        *,
        progress: bool = True,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> list[dict]:
        """Train until ``config.steps``; log to ``out_dir/log.jsonl`` and checkpoint to
        ``out_dir/checkpoint.npz`` every ``checkpoint_every`` steps and at the end.

        On start, temporary files of interrupted saves in ``out_dir`` are removed (listed in
        :attr:`removed_temp_files`) and the log is cut back to the current step: a fresh
        run (step 0) starts a new log and drops an earlier run's checkpoint there, a resumed
        one keeps the records up to its checkpoint's step and appends after them."""
        cfg = self.config
        out = Path(out_dir) if out_dir is not None else None
        log_f = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            self.removed_temp_files = remove_stale_temp_files(out, (CHECKPOINT_NAME, LOG_NAME))
            if self.step == 0:
                (out / CHECKPOINT_NAME).unlink(missing_ok=True)
            _cut_log(out / LOG_NAME, self.step)
            log_f = open(out / LOG_NAME, "a")
        bar = _progress(total=cfg.steps, initial=self.step, enabled=progress)
        history: list[dict] = []
        t_last, s_last = time.perf_counter(), self.step
        try:
            while self.step < cfg.steps:
                terms = self.train_step()
                if callback is not None:
                    callback(self.step, terms)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    rate = (self.step - s_last) / max(now - t_last, 1e-9)
                    t_last, s_last = now, self.step
                    rec = {
                        "step": self.step,
                        **terms,
                        "steps_per_s": round(rate, 2),
                        "grad_norm": self.optimizer.last_grad_norm,
                    }
                    history.append(rec)
                    if log_f is not None:
                        log_f.write(json.dumps(rec) + "\n")
                        log_f.flush()
                    bar.set_postfix(loss=f"{terms['loss']:.4f}", it_s=f"{rate:.0f}")
                bar.update(1)
                if out is not None and (
                    self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
                ):
                    if log_f is not None:  # the log reaches the checkpoint's step first
                        os.fsync(log_f.fileno())
                    self.save(out / CHECKPOINT_NAME)
        finally:
            bar.close()
            if log_f is not None:
                log_f.close()
        return history


def _cut_log(path: Path, step: int) -> None:
    """Keep the records of ``path`` (JSON lines) with ``"step" <= step``, dropping later ones
    and any line a kill cut short; rewritten atomically, and only if something changes."""
    if not path.exists():
        return
    text = path.read_text(errors="replace")
    kept = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
            kept.append(line + "\n")
    new = "".join(kept)
    if new != text:
        write_text(path, new)


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    dataset: Any = None,
) -> Trainer:
    """Build a :class:`Trainer`, optionally resume from a checkpoint, and run it.

    Raises
    ------
    RunExistsError
        If ``out_dir`` already holds a run (``checkpoint.npz`` or ``log.jsonl``) and neither
        ``resume`` nor ``force=True`` is given: nothing is overwritten.
    TrainingError
        If the resumed checkpoint is already at or past ``config.steps`` (nothing to do).
    """
    if out_dir is not None and resume is None and not force:
        out = Path(out_dir)
        found = [name for name in (CHECKPOINT_NAME, LOG_NAME) if (out / name).exists()]
        if found:
            raise RunExistsError(out, found)
    trainer = Trainer(config, dataset=dataset)
    if resume is not None:
        trainer.load(resume)
        if trainer.step >= config.steps:
            raise TrainingError(
                f"{resume}: the checkpoint is already at step {trainer.step}, at or past the "
                f"requested {config.steps} steps; nothing to train (ask for more than "
                f"{trainer.step} steps to continue it)"
            )
    trainer.run(out_dir, progress=progress)
    return trainer


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(total: int, initial: int = 0, enabled: bool = True):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, leave=False
    )


def ema_warning(header: dict[str, Any]) -> str | None:
    """The warning for a training checkpoint's header whose EMA has seen fewer updates than
    its time constant 1/(1 − δ) (δ: the decay of its last update, the ramped one under
    ``ema_warmup``, so a warmed-up EMA warns only before its second update); else None."""
    cfg = header.get("config", {})
    decay = float(cfg.get("ema_decay", 0.999))
    warmup = bool(cfg.get("ema_warmup", False))  # absent: written before the warm-up existed
    n = int(header.get("counters", {}).get("ema/num_updates", 0))
    last = decay if not warmup else min(decay, n / (9.0 + n))  # δ_{n-1} = min(δ, n/(9+n))
    tau = round(1.0 / (1.0 - last), 6)  # 1/(1-0.999) is 1000.0000000000009
    if n >= tau:
        return None
    ramp = "" if warmup else " and no warm-up"
    return (
        f"the checkpoint's EMA has seen {n} updates, fewer than its time constant "
        f"1/(1-{last:.4g}) = {tau:.0f}{ramp}, so its weights are still mostly the "
        "initialisation; sample the raw weights (--no-ema, ema=False) or train longer "
        "(or with the EMA warm-up, --ema-warmup)"
    )


def load_for_sampling(
    path: str | os.PathLike[str], *, ema: bool = True
) -> tuple[TrainConfig, GaussianDiffusion, Denoiser]:
    """Rebuild ``(config, diffusion, denoiser)`` from a training checkpoint.

    ``denoiser(x_t, t)`` runs the model (EMA parameters unless ``ema=False``) in its own
    dtype and returns the output in x_t's dtype. With ``ema=True`` an :class:`EMAWarning`
    is issued (on stderr by default) when the EMA has seen fewer updates than its time
    constant (:func:`ema_warning`).
    """
    arrays, header = load_checkpoint(path)
    if header.get("kind") != "npddpm-train":
        raise ValueError(f"{path}: not a training checkpoint")
    if ema and (message := ema_warning(header)) is not None:
        warnings.warn(f"{path}: {message}", EMAWarning, stacklevel=2)
    config = TrainConfig.from_dict(header["config"])
    model = build_model(config, tuple(header["example_shape"]))
    prefix = "ema/ema/" if ema else "params/"
    for k, p in model.params.items():
        src = arrays.get(prefix + k)
        if src is None or src.shape != p.shape:
            raise ValueError(f"{path}: parameter {k!r} is missing or has the wrong shape")
        p[...] = src
    return config, build_diffusion(config), model_denoiser(model)


def model_denoiser(model):
    """``denoiser(x_t, t)``: the model's inference pass (``model(x, t)``, no cache kept) in
    the model's dtype, output in x_t's dtype (the samplers' denoiser contract)."""

    def denoiser(x_t, t):
        out = model(np.asarray(x_t, dtype=model.dtype), t)
        return out.astype(np.asarray(x_t).dtype, copy=False)

    return denoiser
