"""The main job on the embedded default: train an MLP on ``8gaussians``, sample it with DDPM
and DDIM, and score the samples against the exact mixture and against the oracle sampler.

Outputs in ``out_dir``: ``metrics.json``, ``samples.npz`` (``samples`` = the DDPM samples of the
EMA model; also ``ddim``, ``oracle``, ``data``), ``checkpoint.npz``, ``log.jsonl``, and PNG
figures when matplotlib is installed (data vs samples, the loss curve, a reverse trajectory).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import data as _data
from . import metrics as _metrics
from . import samplers
from .diffusion import GaussianDiffusion
from .io import write_json
from .schedules import inference_timesteps
from .training import TrainConfig, Trainer, model_denoiser

__all__ = ["DEMO_CONFIG", "run_demo"]

#: The embedded default: the hybrid loss (learned variance) so that the variational bound is
#: close to tight, on a small residual MLP.
DEMO_CONFIG: dict[str, Any] = dict(
    dataset="8gaussians",
    model="mlp",
    model_options={"hidden": 128, "num_blocks": 2},
    schedule="linear",
    num_timesteps=1000,
    mean_type="eps",
    var_type="learned_range",
    loss_type="rescaled_mse",
    batch_size=512,
    steps=6000,
    lr=2e-3,
    warmup_steps=100,
    grad_clip=1.0,
    ema_decay=0.995,
    # the plain EMA the README's figures were made with (TrainConfig's default ramps it)
    ema_warmup=False,
    seed=0,
    checkpoint_every=1000,
    log_every=50,
)


def _denoiser(model, params: dict[str, np.ndarray]):
    """The model as a denoiser, with the given (EMA) parameters copied in."""
    for k, p in model.params.items():
        p[...] = params[k]
    return model_denoiser(model)


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _write_json(path: Path, payload: dict) -> None:
    write_json(path, _to_jsonable(payload), sort_keys=True)


def run_demo(
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    n: int = 2000,
    steps: int | None = None,
    backend: str = "cpu",
    vlb_n: int = 500,
    num_timesteps: int | None = None,
    figures: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run the demo and return the metrics dict (also written to ``metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"steps": steps, "num_timesteps": num_timesteps}
    cfg = TrainConfig(**{**DEMO_CONFIG, **{k: v for k, v in overrides.items() if v}})
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.run(out, progress=progress)
    t_train = time.perf_counter() - t0
    ds = _data.get(cfg.dataset)
    d: GaussianDiffusion = trainer.diffusion
    den = _denoiser(trainer.model, trainer.ema.params)
    if not isinstance(ds, _data.GaussianMixtureData):  # DEMO_CONFIG's dataset is one
        raise TypeError(f"the demo needs a Gaussian-mixture dataset, got {cfg.dataset!r}")
    gm = ds.distribution

    t1 = time.perf_counter()
    # learned variances: the NumPy path (the fused kernels implement fixed variances)
    x_ddpm = samplers.ddpm(d, den, (n, 2), seed=1, clip_denoised=False, progress=progress)
    d100 = d.respace(inference_timesteps(d.num_timesteps, min(100, d.num_timesteps)))
    x_ddim = samplers.ddim(d100, den, (n, 2), seed=2, eta=0.0, clip_denoised=False)
    fixed = GaussianDiffusion(d.schedule)
    x_oracle = samplers.ddpm(
        fixed, gm.denoiser(fixed), (n, 2), seed=3, clip_denoised=False, backend=backend
    )
    t_sample = time.perf_counter() - t1

    rng = np.random.default_rng(11)
    real = ds.sample(n, rng)
    t2 = time.perf_counter()
    results = {
        "ddpm": _metrics.evaluate(ds, x_ddpm, rng=21),
        "ddim100": _metrics.evaluate(ds, x_ddim, rng=21),
        "oracle_ddpm": _metrics.evaluate(ds, x_oracle, rng=21),
    }
    # the model's variational bound on held-out data (continuous decoder), in nats
    x_test = ds.sample(vlb_n, np.random.default_rng(12))
    vlb = d.calc_bpd_loop(den, x_test, clip_denoised=False, decoder="gaussian", seed=13)
    nats = vlb["total_bpd"] * x_test.shape[1] * math.log(2)
    ent = -ds.log_prob(ds.sample(200_000, np.random.default_rng(14)))
    t_eval = time.perf_counter() - t2
    summary = {
        "dataset": cfg.dataset,
        "n": n,
        "true_entropy_nats": float(ent.mean()),
        "true_entropy_se": float(ent.std() / math.sqrt(ent.size)),
        "vlb_nll_nats": float(nats.mean()),
        "vlb_nll_se": float(nats.std() / math.sqrt(nats.size)),
        "samplers": results,
        "seconds": {"train": t_train, "sample": t_sample, "evaluate": t_eval},
        "train_steps": trainer.step,
        "config": cfg.to_dict(),
    }
    np.savez(out / "samples.npz", samples=x_ddpm, ddim=x_ddim, oracle=x_oracle, data=real)
    _write_json(out / "metrics.json", summary)
    if figures:
        _figures(
            out,
            cfg,
            {"data": real, "ddpm": x_ddpm, "ddim100": x_ddim, "oracle_ddpm": x_oracle},
            results,
            den,
            d,
            log,
        )
    log(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """The demo's summary as a text table: one metric per row, one column per sampler.

    Rows in the order c2st, precision, recall, coverage, energy, sliced_w1, mmd2, nll (those
    the first sampler has), each with its ``value`` per sampler and the first sampler's
    ``floor`` as "real floor"; a header line with dataset, n, steps and times, and a last line
    with the true entropy and the model's VLB NLL ± its standard error (nats).
    """
    keys = ("c2st", "precision", "recall", "coverage", "energy", "sliced_w1", "mmd2", "nll")
    lines = [
        f"npddpm demo — {s['dataset']}, n = {s['n']}, {s['train_steps']} training steps "
        f"({s['seconds']['train']:.0f} s train, {s['seconds']['sample']:.0f} s sample)",
        f"{'metric':<12}" + "".join(f"{k:>14}" for k in s["samplers"]) + f"{'real floor':>14}",
    ]
    first = next(iter(s["samplers"].values()))
    for k in keys:
        if k not in first:
            continue
        row = f"{k:<12}" + "".join(f"{v[k]['value']:>14.4f}" for v in s["samplers"].values())
        lines.append(row + f"{first[k]['floor']:>14.4f}")
    lines.append(
        f"true entropy {s['true_entropy_nats']:.4f} nats;  model VLB NLL "
        f"{s['vlb_nll_nats']:.4f} ± {s['vlb_nll_se']:.4f} nats"
    )
    return "\n".join(lines)


def _figures(out: Path, cfg: TrainConfig, sets, results, den, d, log) -> None:
    """samples.png, loss.png, trajectory.png (see :mod:`npddpm.plotting`), or one line saying
    why not. Uses no random numbers but its own seeded trajectory, after every metric."""
    from . import plotting

    if not plotting.have_matplotlib():
        log(
            "npddpm demo: matplotlib is not installed, so samples.png, loss.png and "
            f"trajectory.png were skipped; to get them: {plotting.INSTALL_HINT}"
        )
        return
    T = d.num_timesteps
    names = {
        "data": f"data ({cfg.dataset})",
        "ddpm": f"DDPM, {T} steps (MLP, EMA)",
        "ddim100": f"DDIM η=0, {min(100, T)} steps (MLP, EMA)",
        "oracle_ddpm": f"DDPM, {T} steps (exact oracle)",
    }
    panels = {names[k]: x for k, x in sets.items()}
    c2st = {names[k]: r["c2st"]["value"] for k, r in results.items() if "c2st" in r}
    plotting.demo_samples(out / "samples.png", panels, scores=c2st, score_name="C2ST")
    steps, losses = plotting.read_loss_log(out / "log.jsonl")
    plotting.demo_loss(
        out / "loss.png",
        steps,
        losses,
        title=f"{cfg.loss_type} loss ({cfg.var_type}), {cfg.dataset}, batch {cfg.batch_size}",
    )
    _, traj = samplers.ddpm(d, den, (500, 2), seed=4, clip_denoised=False, return_trajectory=True)
    plotting.demo_trajectory(
        out / "trajectory.png", traj, title="DDPM reverse trajectory (MLP, EMA, seed 4)"
    )
