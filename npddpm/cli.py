"""The ``npddpm`` command: parses arguments, calls library functions, prints.

Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from . import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"npddpm: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="npddpm", description="DDPM reference implementation in NumPy.")
    parser.add_argument("--version", action="version", version=f"npddpm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = sub.add_parser("demo", help="train, sample and evaluate on the embedded default")
    demo.add_argument("--out", default="npddpm-demo", help="output directory")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--steps", type=int, default=None, help="training steps (default 6000)")
    demo.add_argument("--n", type=int, default=2000, help="samples to draw and score")

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

    sm = sub.add_parser("sample", help="sample from a training checkpoint")
    sm.add_argument("checkpoint")
    sm.add_argument("--out", required=True, help="output .npz (array 'samples')")
    sm.add_argument("--n", type=int, default=1000)
    sm.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim"])
    sm.add_argument("--steps", type=int, default=None, help="respaced steps (default: all)")
    sm.add_argument("--eta", type=float, default=0.0)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--backend", default="numpy", choices=["numpy", "cpu", "cuda"])
    sm.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    sm.add_argument("--clip", action="store_true", help="clip x̂₀ to [−1, 1] (image data)")
    sm.add_argument(
        "--grid",
        action="store_true",
        help="re-derive x̂₀ from the per-pixel posterior over the data's grey levels "
        "(digits; see npddpm.discrete)",
    )
    sm.add_argument("--quiet", action="store_true")

    nl = sub.add_parser("nll", help="the model's variational bound on held-out data")
    nl.add_argument("checkpoint")
    nl.add_argument(
        "--n", type=int, default=None, help="examples (default: the digits test split, 500 else)"
    )
    nl.add_argument("--grid", action="store_true", help="as `sample --grid`")
    nl.add_argument("--seed", type=int, default=0, help="seed of the noise of the bound")
    nl.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    nl.add_argument("--json", default=None, help="also write the result here")
    ev = sub.add_parser("eval", help="score samples against a dataset (metrics with floors)")
    ev.add_argument("samples", help=".npz file with the samples")
    ev.add_argument("--dataset", required=True)
    ev.add_argument("--key", default="samples", help="array name in the .npz")
    ev.add_argument("--json", default=None, help="also write the metrics here")

    vec = sub.add_parser("vectors", help="test vectors for other implementations")
    vsub = vec.add_subparsers(dest="vectors_command", metavar="ACTION", parser_class=_Parser)
    exp = vsub.add_parser("export", help="write the versioned vector set into DIR")
    exp.add_argument("dir", help="output directory (created)")
    exp.add_argument("--seed", type=int, default=0)

    conf = sub.add_parser("conform", help="check another implementation against npddpm")
    conf.add_argument(
        "target",
        nargs="?",
        choices=["diffusers"],
        help="an installed implementation to check (needs torch + diffusers)",
    )
    conf.add_argument(
        "--vectors",
        metavar="DIR",
        help="results another implementation computed from exported vectors",
    )
    conf.add_argument(
        "--expected",
        metavar="DIR",
        help="npddpm's vectors to compare with (default: exported afresh)",
    )
    conf.add_argument("--steps", type=int, default=50, help="inference steps (diffusers)")
    verify = sub.add_parser(
        "verify",
        help="check the samplers against the analytic oracle (exact moments, q(x_t))",
        description="Run the verification suite: every sampler against the exact moment "
        "recursion for Gaussian data, and the oracle-driven chain against q(x_t) for "
        "Gaussian mixtures in 2-D and 16-D. Exits 1 if any check fails.",
    )
    verify.add_argument(
        "--quiet", action="store_true", help="print only the summary and failed checks"
    )
    _add_bench(sub)
    return parser


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bn = sub.add_parser(
        "bench",
        help="time your kernel beside npddpm's backends and a bandwidth probe, checked first",
        description="Check a kernel against the NumPy spec, then time it beside npddpm's "
        "numpy, cpu (and cuda) backends and a bandwidth probe, in one run. The kernel "
        "contracts are in npddpm.kernels.bench. Exits 1 if the kernel is wrong.",
    )
    bn.add_argument("op", choices=["q_sample", "ddpm_step", "ddim_step", "langevin_step"])
    bn.add_argument(
        "--kernel", required=True, metavar="MODULE:FUNCTION", help="or path/to/file.py:function"
    )
    bn.add_argument(
        "--sizes", default="1e5,1e6,1e7", help="elements per array (default %(default)s)"
    )
    bn.add_argument("--dtypes", default="float32,float64", help="(default %(default)s)")
    bn.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    bn.add_argument("--backends", default=None, help="default numpy,cpu (+cuda with a GPU)")
    bn.add_argument(
        "--framework",
        default=None,
        choices=["numpy", "torch", "torch-cuda", "cupy", "jax", "numba-cuda"],
        help="the kernel's framework (default: detected from its code)",
    )
    bn.add_argument("--row", type=int, default=1000, help="row length (default 1000)")
    bn.add_argument("--json", default=None, metavar="FILE", help="write the versioned JSON report")
    bn.add_argument("--markdown", default=None, metavar="FILE", help="write a Markdown table")
    bn.add_argument("--plot", default=None, metavar="FILE", help="write a PNG (needs matplotlib)")
    bn.add_argument("--force", action="store_true", help="overwrite existing output files")


def _bench(args: argparse.Namespace) -> int:
    from .kernels import bench as kb

    def csv(text: str | None) -> list[str] | None:
        return None if text is None else [x.strip() for x in text.split(",") if x.strip()]

    outputs = {"json": args.json, "markdown": args.markdown, "plot": args.plot}
    try:
        kb.check_outputs(list(outputs.values()), force=args.force, plot=args.plot is not None)
        report = kb.bench_kernel(
            args.op, args.kernel, sizes=csv(args.sizes) or [], dtypes=csv(args.dtypes) or [],
            rounds=args.rounds, backends=csv(args.backends), framework=args.framework,
            row=args.row,
        )  # fmt: skip
        print(report.table())
        written = report.write(**outputs, force=args.force)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"npddpm: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0 if report.correct else 1


def _verify(quiet: bool) -> int:
    import time

    from . import verify

    t0 = time.perf_counter()
    rows = verify.run_verification()
    lines = verify.format_table(rows, time.perf_counter() - t0).splitlines()
    failed = not all(r.passed for r in rows)
    if not quiet:
        lines.append(verify.LEGEND)
    elif failed:  # the header, the failed rows, the summary
        lines = [*lines[:2], *(x for x in lines[2:-1] if "FAIL" in x), lines[-1]]
    else:
        lines = lines[-1:]
    print("\n".join(lines))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command == "train":
        return _train(args)
    if args.command == "sample":
        return _sample(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "nll":
        return _nll(args)
    if args.command == "vectors":
        return _vectors(parser, args)
    if args.command == "conform":
        return _conform(parser, args)
    if args.command == "verify":
        return _verify(args.quiet)
    if args.command == "bench":
        return _bench(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .demo import run_demo

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".npddpm-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return _fail(f"cannot write to output directory {out}: {exc.strerror or exc}")
    if args.steps is not None and args.steps < 1:
        return _fail(f"--steps must be >= 1, got {args.steps}")
    if args.n < 10:
        return _fail(f"--n must be >= 10, got {args.n}")
    run_demo(out, progress=not args.quiet, steps=args.steps, n=args.n)
    print(f"wrote {out / 'metrics.json'} and {out / 'samples.npz'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from . import data
    from .io import CheckpointError
    from .training import TrainConfig, TrainingError, train

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
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write to {args.out}: {exc.strerror or exc}")
    print(f"trained {trainer.step} steps; checkpoint {trainer.last_checkpoint}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from . import samplers
    from .io import CheckpointError
    from .schedules import inference_timesteps
    from .training import load_for_sampling

    if args.n < 1:
        return _fail(f"--n must be >= 1, got {args.n}")
    try:
        cfg, d, den = load_for_sampling(args.checkpoint, ema=not args.no_ema)
        if args.steps is not None:
            d = d.respace(inference_timesteps(d.num_timesteps, args.steps))
        from . import data

        ds = data.get(cfg.dataset)
        shape = (args.n, *ds.shape)
        if args.grid:
            den = _grid(d, den, ds)
        fn = samplers.ddpm if args.sampler == "ddpm" else samplers.ddim
        kw = {"eta": args.eta} if args.sampler == "ddim" else {}
        x = fn(
            d,
            den,
            shape,
            seed=args.seed,
            backend=args.backend,
            clip_denoised=args.clip,
            progress=not args.quiet,
            **kw,
        )
        tmp = args.out + ".tmp.npz"
        np.savez(tmp, samples=x)
        os.replace(tmp, args.out)
    except (ValueError, TypeError, CheckpointError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:

    import numpy as np

    from . import data, metrics

    try:
        ds = data.get(args.dataset)
        with np.load(args.samples, allow_pickle=False) as z:
            if args.key not in z.files:
                return _fail(f"{args.samples} has no array {args.key!r} (has {z.files})")
            x = z[args.key]
        res = metrics.evaluate(ds, x, rng=0)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(str(exc))
    print(f"{'metric':<18}{'value':>12}{'real floor':>12}")
    for k, v in res.items():
        print(f"{k:<18}{v['value']:>12.4f}{v['floor']:>12.4f}")
    if args.json:
        payload = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in res.items()}
        return _write_json_or_fail(args.json, payload)
    return 0


def _grid(d, den, ds):
    from .discrete import grid_denoiser

    levels = getattr(ds, "levels", None)
    if levels is None:
        raise ValueError(f"--grid needs data on known grey levels; {ds.name} has none")
    return grid_denoiser(d, den, levels=levels)


def _nll(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from . import data
    from .io import CheckpointError
    from .training import load_for_sampling

    if args.n is not None and args.n < 2:
        return _fail(f"--n must be >= 2, got {args.n}")
    try:
        cfg, d, den = load_for_sampling(args.checkpoint, ema=not args.no_ema)
        ds = data.get(cfg.dataset)
        if args.grid:
            den = _grid(d, den, ds)
        if getattr(ds, "levels", None):  # images on a grid: discretised decoder, bits/dim
            x = ds.images(split="test")[: args.n]
            res = d.calc_bpd_loop(
                den, x, clip_denoised=True, bin_width=2.0 / (ds.levels - 1), seed=args.seed
            )
            per, unit = res["total_bpd"], "bits/dim"
        elif ds.kind == "images":
            raise ValueError(f"nll needs a dataset with known grey levels; {ds.name} has none")
        else:  # continuous 2-D data: Gaussian decoder, nats per example (as the demo)
            x = ds.sample(args.n or 500, np.random.default_rng(12))
            res = d.calc_bpd_loop(den, x, clip_denoised=False, decoder="gaussian", seed=args.seed)
            per, unit = res["total_bpd"] * x.shape[1] * math.log(2), "nats"
    except (ValueError, TypeError, CheckpointError) as exc:
        return _fail(str(exc))
    mean, se = float(per.mean()), float(per.std() / math.sqrt(per.size))
    print(f"variational bound on {per.size} held-out examples: {mean:.4f} ± {se:.4f} {unit}")
    if args.json:
        payload = {"nll": mean, "se": se, "unit": unit, "n": int(per.size), "grid": args.grid}
        return _write_json_or_fail(args.json, payload)
    return 0


def _write_json_or_fail(path: str, payload: dict) -> int:
    from .io import write_json

    try:
        write_json(path, payload)
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}")
    return 0


def _fail(message: str) -> int:
    print(f"npddpm: error: {message}", file=sys.stderr)
    return 1


def _vectors(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .conformance.vectors import export_vectors

    if args.vectors_command != "export":
        parser.error("vectors needs an action: export DIR")
    try:
        path = export_vectors(args.dir, seed=args.seed)
    except OSError as exc:
        return _fail(f"cannot write vectors to {args.dir}: {exc.strerror or exc}")
    print(f"wrote {path}")
    return 0


def _conform(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.vectors:
        import tempfile

        from .conformance.vectors import compare_vectors, export_vectors

        try:
            if args.expected:
                expected = args.expected
            else:
                expected = tempfile.mkdtemp(prefix="npddpm-vectors-")
                export_vectors(expected)
            rows = compare_vectors(expected, args.vectors)
        except (OSError, ValueError) as exc:
            return _fail(str(exc))
        bad = [r for r in rows if r["verdict"] != "ok"]
        for r in bad[:50]:
            print(f"{r['verdict']:<8} {r['file']:<48} {r['output']:<16} {r['max_abs']:.3g}")
        print(f"{len(rows) - len(bad)} of {len(rows)} outputs agree")
        return 0 if not bad else 1
    if args.target != "diffusers":
        parser.error("give an implementation (diffusers) or --vectors DIR")
    try:
        import diffusers
    except ImportError:
        return _fail("diffusers is not installed: pip install 'npddpm[conform]'")
    from .conformance import DiffusersAdapter, check

    configs = [
        ("DDPMScheduler", {}, None),
        (
            "DDPMScheduler",
            {"variance_type": "fixed_large", "timestep_spacing": "trailing"},
            args.steps,
        ),
        (
            "DDPMScheduler",
            {"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2"},
            None,
        ),
        ("DDIMScheduler", {}, args.steps),
        ("DDIMScheduler", {"timestep_spacing": "linspace"}, args.steps),
        ("DDIMScheduler", {"timestep_spacing": "trailing"}, args.steps),
    ]
    status = 0
    for cls, kw, steps in configs:
        sched = getattr(diffusers, cls)(num_train_timesteps=1000, **kw)
        name = f"diffusers {cls}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
        if steps:
            name += f", {steps} steps"
        report = check(DiffusersAdapter(sched, num_inference_steps=steps, name=name))
        print(report.table(), end="\n\n")
        status |= 0 if report.conforms else 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
