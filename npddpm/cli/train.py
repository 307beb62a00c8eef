"""``npddpm train``: train a denoiser on a dataset."""

from __future__ import annotations

import argparse

from .common import (
    check_backend,
    clip_norm,
    ema_decay,
    fail,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    timesteps_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand to ``sub``."""
    from ..diffusion import LOSS_TYPES, MEAN_TYPES, VAR_TYPES
    from ..kernels import BACKENDS
    from ..profiles import PROFILES
    from ..schedules import schedule_names
    from ..training import TrainConfig

    defaults = TrainConfig()

    tr = sub.add_parser("train", help="train a denoiser on a dataset")
    tr.add_argument("--dataset", default=defaults.dataset, help="a name from npddpm.data.NAMES")
    tr.add_argument(
        "--model",
        default=None,
        choices=["mlp", "unet"],
        help="default: mlp for vectors, unet for images",
    )
    tr.add_argument("--out", required=True, help="output directory (checkpoint, log)")
    tr.add_argument("--steps", type=positive_int, default=defaults.steps, help="training steps")
    tr.add_argument(
        "--batch-size", type=positive_int, default=defaults.batch_size, help="examples per step"
    )
    tr.add_argument("--lr", type=positive_float, default=defaults.lr, help="Adam learning rate")
    tr.add_argument(
        "--lr-warmup",
        type=nonneg_int,
        default=defaults.warmup_steps,
        help="steps of linear learning-rate warm-up from 0 to --lr",
    )
    tr.add_argument(
        "--grad-clip",
        type=clip_norm,
        default=defaults.grad_clip,
        help="clip the global gradient norm to this value ('none': no clipping)",
    )
    tr.add_argument(
        "--schedule",
        default=defaults.schedule,
        choices=schedule_names(),
        help="named beta schedule",
    )
    tr.add_argument(
        "--timesteps",
        type=timesteps_int,
        default=defaults.num_timesteps,
        help="diffusion steps T (<= 100000)",
    )
    tr.add_argument(
        "--mean-type",
        default=defaults.mean_type,
        choices=MEAN_TYPES,
        help="what the model predicts",
    )
    tr.add_argument(
        "--var-type", default=defaults.var_type, choices=VAR_TYPES, help="reverse variance"
    )
    tr.add_argument(
        "--loss-type", default=defaults.loss_type, choices=LOSS_TYPES, help="training loss"
    )
    tr.add_argument(
        "--profile",
        default=defaults.profile,
        choices=list(PROFILES),
        help="the reference whose conventions the diffusion follows (npddpm.profiles)",
    )
    tr.add_argument("--hidden", type=positive_int, default=None, help="MLP width")
    tr.add_argument("--channels", type=positive_int, default=None, help="U-Net base channels")
    tr.add_argument(
        "--seed", type=seed_int, default=defaults.seed, help="seed of init, batches, noise"
    )
    tr.add_argument(
        "--backend", default=defaults.backend, choices=BACKENDS, help="where q_sample runs"
    )
    tr.add_argument(
        "--ema-decay",
        type=ema_decay,
        default=defaults.ema_decay,
        help="decay δ of the EMA of the weights that `sample` uses (default %(default)s)",
    )
    tr.add_argument(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=defaults.ema_warmup,
        help="ramp the EMA decay as the run starts, min(δ, (1+n)/(10+n)) at update n, so "
        "short runs sample trained weights (default: on)",
    )
    tr.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=defaults.checkpoint_every,
        help="write a checkpoint every this many steps (and at the end)",
    )
    tr.add_argument(
        "--log-every",
        type=positive_int,
        default=defaults.log_every,
        help="append the loss to log.jsonl every this many steps",
    )
    tr.add_argument("--resume", default=None, help="continue from this checkpoint")
    tr.add_argument(
        "--force",
        action="store_true",
        help="start a new run in --out even if it holds one (replaces its checkpoint and log)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``npddpm train`` (:func:`npddpm.training.train`): 0, or 1 with a one-line error."""
    from .. import data
    from ..io import CheckpointError
    from ..training import RunExistsError, TrainConfig, TrainingError, train

    try:
        check_backend(args.backend)
        ds = data.get(args.dataset)
        model = args.model or ("mlp" if len(ds.shape) == 1 else "unet")
        opts = {}
        if args.hidden is not None:
            opts["hidden"] = args.hidden
        if args.channels is not None:
            opts["base_channels"] = args.channels
        cfg = TrainConfig(
            dataset=args.dataset,
            model=model,
            model_options=opts,
            schedule=args.schedule,
            num_timesteps=args.timesteps,
            mean_type=args.mean_type,
            var_type=args.var_type,
            loss_type=args.loss_type,
            profile=args.profile,
            batch_size=args.batch_size,
            steps=args.steps,
            lr=args.lr,
            warmup_steps=args.lr_warmup,
            grad_clip=args.grad_clip,
            ema_decay=args.ema_decay,
            ema_warmup=args.ema_warmup,
            seed=args.seed,
            backend=args.backend,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
        )
        trainer = train(
            cfg,
            args.out,
            resume=args.resume,
            force=args.force,
            progress=not args.quiet,
            dataset=ds,
        )
    except RunExistsError as exc:
        ck = exc.out_dir / "checkpoint.npz"
        return fail(
            f"{exc.out_dir} already holds a training run ({', '.join(exc.found)}); add "
            f"--resume {ck} to continue it, or --force to replace it with a new run"
        )
    except (ValueError, TypeError, TrainingError, CheckpointError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write to {args.out}: {exc.strerror or exc}")
    print(f"trained {trainer.step} steps; checkpoint {trainer.last_checkpoint}")
    return 0
