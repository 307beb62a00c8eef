"""``npddpm conform`` and ``npddpm vectors``: other implementations against npddpm."""

from __future__ import annotations

import argparse

from .common import fail, usage_error


def register(sub: argparse._SubParsersAction) -> None:
    vec = sub.add_parser("vectors", help="test vectors for other implementations")
    vsub = vec.add_subparsers(dest="vectors_command", metavar="ACTION", parser_class=type(vec))
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


def run(args: argparse.Namespace) -> int:
    if args.command == "vectors":
        return _vectors(args)
    return _conform(args)


def _vectors(args: argparse.Namespace) -> int:
    from ..conformance.vectors import export_vectors

    if args.vectors_command != "export":
        usage_error("vectors needs an action: export DIR")
    try:
        path = export_vectors(args.dir, seed=args.seed)
    except OSError as exc:
        return fail(f"cannot write vectors to {args.dir}: {exc.strerror or exc}")
    print(f"wrote {path}")
    return 0


def _conform(args: argparse.Namespace) -> int:
    if args.vectors:
        import tempfile

        from ..conformance.vectors import compare_vectors, export_vectors

        try:
            if args.expected:
                expected = args.expected
            else:
                expected = tempfile.mkdtemp(prefix="npddpm-vectors-")
                export_vectors(expected)
            rows = compare_vectors(expected, args.vectors)
        except (OSError, ValueError) as exc:
            return fail(str(exc))
        bad = [r for r in rows if r["verdict"] != "ok"]
        for r in bad[:50]:
            print(f"{r['verdict']:<8} {r['file']:<48} {r['output']:<16} {r['max_abs']:.3g}")
        print(f"{len(rows) - len(bad)} of {len(rows)} outputs agree")
        return 0 if not bad else 1
    if args.target != "diffusers":
        usage_error("give an implementation (diffusers) or --vectors DIR")
    try:
        import diffusers
    except ImportError:
        return fail("diffusers is not installed: pip install 'npddpm[conform]'")
    from ..conformance import DiffusersAdapter, check

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
