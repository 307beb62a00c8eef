"""``npddpm sample``, ``npddpm nll`` and ``npddpm eval``: using a checkpoint and scoring."""

from __future__ import annotations

import argparse

from .. import plotting
from .common import (
    add_dask_options,
    check_backend,
    dask_client,
    fail,
    grid,
    load_npz_array,
    nonneg_float,
    positive_int,
    seed_int,
    write_json_or_fail,
)


def _load_for_sampling(args: argparse.Namespace):
    """``load_for_sampling``, its EMA warning printed as one line on stderr."""
    import sys
    import warnings

    from ..training import EMAWarning, load_for_sampling

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EMAWarning)
        loaded = load_for_sampling(args.checkpoint, ema=not args.no_ema)
    for w in caught:
        if issubclass(w.category, EMAWarning):
            print(f"npddpm: warning: {w.message}", file=sys.stderr)
        else:  # pragma: no cover - another warning: as Python would show it
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loaded


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sample``, ``nll`` and ``eval`` subcommands to ``sub``."""
    from ..kernels import BACKENDS

    sm = sub.add_parser("sample", help="sample from a training checkpoint")
    sm.add_argument("checkpoint", help="checkpoint.npz written by `npddpm train`")
    sm.add_argument("--out", required=True, help="output .npz (array 'samples')")
    sm.add_argument("--n", type=positive_int, default=1000, help="samples to draw")
    sm.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim"], help="reverse process")
    sm.add_argument(
        "--steps", type=positive_int, default=None, help="respaced steps (default: all)"
    )
    sm.add_argument(
        "--eta",
        type=nonneg_float,
        default=None,
        help="DDIM stochasticity η, 0 deterministic, 1 DDPM-like (only with --sampler ddim; "
        "default 0)",
    )
    sm.add_argument("--seed", type=seed_int, default=0, help="seed of x_T and the noise")
    sm.add_argument(
        "--backend", default="numpy", choices=BACKENDS, help="where the reverse steps run"
    )
    sm.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    sm.add_argument("--clip", action="store_true", help="clip x̂₀ to [−1, 1] (image data)")
    sm.add_argument(
        "--grid",
        action="store_true",
        help="re-derive x̂₀ from the per-pixel posterior over the data's grey levels "
        "(digits; see npddpm.discrete)",
    )
    sm.add_argument("--quiet", action="store_true", help="no progress output")
    add_dask_options(sm, "the samples in shards of rows")

    nl = sub.add_parser("nll", help="the model's variational bound on held-out data")
    nl.add_argument("checkpoint", help="checkpoint.npz written by `npddpm train`")
    nl.add_argument(
        "--n", type=int, default=None, help="examples (default: the digits test split, 500 else)"
    )
    nl.add_argument("--grid", action="store_true", help="as `sample --grid`")
    nl.add_argument("--seed", type=seed_int, default=0, help="seed of the noise of the bound")
    nl.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    nl.add_argument("--json", default=None, help="also write the result here")
    nl.add_argument("--quiet", action="store_true", help="no progress bar")
    ev = sub.add_parser("eval", help="score samples against a dataset (metrics with floors)")
    ev.add_argument("samples", help=".npz file with the samples")
    ev.add_argument("--dataset", required=True, help="a name from npddpm.data.NAMES")
    ev.add_argument("--key", default="samples", help="array name in the .npz")
    ev.add_argument("--json", default=None, help="also write the metrics here")
    ev.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="also write a PNG: samples beside real ones (image grids for image data, "
        "scatters for 2-D data)",
    )
    ev.add_argument("--force", action="store_true", help="overwrite an existing --plot FILE")
    ev.add_argument(
        "--quiet", action="store_true", help="print the metrics table only (no 'wrote' lines)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``npddpm sample``, ``npddpm nll`` or ``npddpm eval`` (by ``args.command``); the exit
    status."""
    if args.command == "sample":
        return _sample(args)
    if args.command == "nll":
        return _nll(args)
    return _eval(args)


def _sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import samplers
    from ..io import CheckpointError, atomic_write
    from ..schedules import inference_timesteps

    if args.n < 1:
        return fail(f"--n must be >= 1, got {args.n}")
    if args.eta is not None and args.sampler != "ddim":
        return fail(f"--eta only applies to --sampler ddim (got --sampler {args.sampler})")
    try:
        check_backend(args.backend)
        cfg, d, den = _load_for_sampling(args)
        if args.steps is not None:
            d = d.respace(inference_timesteps(d.num_timesteps, args.steps))
        from .. import data

        ds = data.get(cfg.dataset)
        shape = (args.n, *ds.shape)
        fn = samplers.ddpm if args.sampler == "ddpm" else samplers.ddim
        kw: dict = {"eta": args.eta or 0.0} if args.sampler == "ddim" else {}
        if args.dask is not None:
            den = _shippable(args, d, den, shape)
            kw["shard_size"] = args.shard_size
        if args.grid:
            den = grid(d, den, ds)
        with dask_client(args) as client:
            if client is not None:
                kw["client"] = client
            x = fn(
                d,
                den,
                shape,
                seed=args.seed,
                backend=args.backend,
                clip_denoised=args.clip,
                progress=False if args.quiet else None,
                **kw,
            )
        atomic_write(args.out, lambda f: np.savez(f, samples=x))
    except (ValueError, TypeError, CheckpointError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _shippable(args: argparse.Namespace, d, den, shape):
    """``sample --dask``: the model as checkpoint bytes for the workers, with a warning when
    it is not batch-invariant (then the shards match one process only to rounding)."""
    import sys

    import numpy as np

    from ..distributed import CheckpointModel, batch_invariant
    from ..samplers import step_noise

    probe = step_noise(args.seed, 0, (4, *shape[1:]), np.dtype(np.float64))
    t = d.model_timesteps(np.full(4, d.num_timesteps - 1))
    if not batch_invariant(den, probe, t):
        print(
            "npddpm: warning: this model's rows depend on the batch size in the last bits "
            "(the conv U-Net's products do); the sharded samples equal a single-process run "
            "to rounding, not bit for bit",
            file=sys.stderr,
        )
    return CheckpointModel(args.checkpoint, ema=not args.no_ema)


def _eval(args: argparse.Namespace) -> int:
    from .. import data, metrics

    try:
        if args.plot is not None:
            plotting.check_output(args.plot, force=args.force)
        ds = data.get(args.dataset)
        x = load_npz_array(args.samples, args.key)
        res = metrics.evaluate(ds, x, rng=0)
    except (ValueError, TypeError, OSError, plotting.MatplotlibMissing) as exc:
        return fail(str(exc))
    print(f"{'metric':<18}{'value':>12}{'real floor':>12}")
    for k, v in res.items():
        print(f"{k:<18}{v['value']:>12.4f}{v['floor']:>12.4f}")
    if args.plot is not None:
        try:
            _eval_plot(args, ds, x, res)
        except (ValueError, OSError) as exc:
            return fail(f"cannot write {args.plot}: {exc}")
        if not args.quiet:
            print(f"wrote {args.plot}")
    if args.json:
        payload = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in res.items()}
        return write_json_or_fail(args.json, payload)
    return 0


def _eval_plot(args: argparse.Namespace, ds, x, res) -> None:
    """``eval --plot``: the samples beside real data (the test split where there is one)."""
    import os

    import numpy as np

    if ds.kind == "images":
        x = np.asarray(x).reshape(len(x), *ds.shape)
        real = ds.images(split="test") if hasattr(ds, "images") else ds.sample(64, 0)
        real_title = f"real {ds.name}" + (" (test split)" if hasattr(ds, "images") else "")
    else:
        real, real_title = ds.sample(len(x), np.random.default_rng(0)), f"real {ds.name}"
    shown = [k for k in ("fid_pca20", "c2st", "classes", "valid", "precision") if k in res][:3]
    scores = ", ".join(f"{k} {res[k]['value']:.3g} (floor {res[k]['floor']:.3g})" for k in shown)
    plotting.eval_figure(
        args.plot,
        x,
        real,
        sample_title=f"{os.path.basename(args.samples)} [{args.key!r}]",
        real_title=real_title,
        suptitle=f"npddpm eval --dataset {ds.name}: {scores}" if scores else None,
    )


def _nll(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from .. import data
    from ..io import CheckpointError
    from ..losses import calc_bpd_loop

    progress = False if args.quiet else None  # auto: a bar when stderr is a terminal
    if args.n is not None and args.n < 2:
        return fail(f"--n must be >= 2, got {args.n}")
    try:
        cfg, d, den = _load_for_sampling(args)
        ds = data.get(cfg.dataset)
        if args.grid:
            den = grid(d, den, ds)
        if getattr(ds, "levels", None):  # images on a grid: discretised decoder, bits/dim
            x = ds.images(split="test")[: args.n]
            res = calc_bpd_loop(
                d, den, x, clip_denoised=True, bin_width=2.0 / (ds.levels - 1), seed=args.seed,
                progress=progress,
            )  # fmt: skip
            per, unit = res["total_bpd"], "bits/dim"
        elif ds.kind == "images":
            raise ValueError(f"nll needs a dataset with known grey levels; {ds.name} has none")
        else:  # continuous 2-D data: Gaussian decoder, nats per example (as the demo)
            x = ds.sample(args.n or 500, np.random.default_rng(12))
            res = calc_bpd_loop(
                d, den, x, clip_denoised=False, decoder="gaussian", seed=args.seed,
                progress=progress,
            )  # fmt: skip
            per, unit = res["total_bpd"] * x.shape[1] * math.log(2), "nats"
    except (ValueError, TypeError, CheckpointError) as exc:
        return fail(str(exc))
    mean, se = float(per.mean()), float(per.std() / math.sqrt(per.size))
    print(f"variational bound on {per.size} held-out examples: {mean:.4f} ± {se:.4f} {unit}")
    if args.json:
        payload = {"nll": mean, "se": se, "unit": unit, "n": int(per.size), "grid": args.grid}
        return write_json_or_fail(args.json, payload)
    return 0
