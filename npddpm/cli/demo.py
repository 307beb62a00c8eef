"""``npddpm demo``: train, sample and evaluate on the embedded default."""

from __future__ import annotations

import argparse
import sys

from .common import fail


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand to ``sub``."""
    demo = sub.add_parser("demo", help="train, sample and evaluate on the embedded default")
    demo.add_argument("--out", default="npddpm-demo", help="output directory")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--steps", type=int, default=None, help="training steps (default 6000)")
    demo.add_argument("--n", type=int, default=2000, help="samples to draw and score")


def run(args: argparse.Namespace) -> int:
    """Run ``npddpm demo`` (:func:`npddpm.demo.run_demo`): 0, or 1 on a bad argument or an
    unwritable output directory."""
    from pathlib import Path

    from ..demo import run_demo

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".npddpm-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return fail(f"cannot write to output directory {out}: {exc.strerror or exc}")
    if args.steps is not None and args.steps < 1:
        return fail(f"--steps must be >= 1, got {args.steps}")
    if args.n < 10:
        return fail(f"--n must be >= 10, got {args.n}")
    # bars only on a terminal: a redirected stderr gets none (not thousands of updates)
    progress = not args.quiet and sys.stderr.isatty()
    run_demo(out, progress=progress, steps=args.steps, n=args.n)
    print(f"wrote {out / 'metrics.json'} and {out / 'samples.npz'}")
    return 0
