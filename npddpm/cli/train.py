"""``npddpm train``: train a denoiser on a dataset."""

from __future__ import annotations

import argparse

from .common import fail


def register(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train a denoiser on a dataset")
    tr.add_argument("--dataset", default="8gaussians", help="a name from npddpm.data.NAMES")
    tr.add_argument(
        "--model",
        default=None,
        choices=["mlp", "unet"],
        help="default: mlp for vectors, unet for images",
    )
    tr.add_argument("--out", required=True, help="output directory (checkpoint, log)")
    tr.add_argument("--steps", type=int, default=3000)
    tr.add_argument("--batch-size", type=int, default=256)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--schedule", default="linear")
    tr.add_argument("--timesteps", type=int, default=1000)
    tr.add_argument("--mean-type", default="eps")
    tr.add_argument("--var-type", default="fixed_small")
    tr.add_argument("--loss-type", default="mse")
    tr.add_argument("--hidden", type=int, default=None, help="MLP width")
    tr.add_argument("--channels", type=int, default=None, help="U-Net base channels")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--backend", default="numpy", choices=["numpy", "cpu", "cuda"])
    tr.add_argument("--resume", default=None, help="continue from this checkpoint")
    tr.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .. import data
    from ..io import CheckpointError
    from ..training import TrainConfig, TrainingError, train

    try:
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
            batch_size=args.batch_size,
            steps=args.steps,
            lr=args.lr,
            seed=args.seed,
            backend=args.backend,
        )
        trainer = train(cfg, args.out, resume=args.resume, progress=not args.quiet, dataset=ds)
    except (ValueError, TypeError, TrainingError, CheckpointError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write to {args.out}: {exc.strerror or exc}")
    print(f"trained {trainer.step} steps; checkpoint {trainer.last_checkpoint}")
    return 0
