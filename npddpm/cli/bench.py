"""``npddpm bench``: a user's kernel checked, then timed beside npddpm's backends."""

from __future__ import annotations

import argparse
import sys

from .common import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand to ``sub``."""
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
    bn.add_argument("--rounds", type=positive_int, default=5, help="timed rounds (default 5)")
    bn.add_argument("--backends", default=None, help="default numpy,cpu (+cuda with a GPU)")
    bn.add_argument(
        "--framework",
        default=None,
        choices=["numpy", "torch", "torch-cuda", "cupy", "jax", "numba-cuda"],
        help="the kernel's framework (default: detected from its code)",
    )
    bn.add_argument("--row", type=positive_int, default=1000, help="row length (default 1000)")
    bn.add_argument("--json", default=None, metavar="FILE", help="write the versioned JSON report")
    bn.add_argument("--markdown", default=None, metavar="FILE", help="write a Markdown table")
    bn.add_argument("--plot", default=None, metavar="FILE", help="write a PNG (needs matplotlib)")
    bn.add_argument("--force", action="store_true", help="overwrite existing output files")
    bn.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``npddpm bench``: 0 when the kernel under test is correct, 1 when it is not, 2 when
    checking, timing or writing raises (the error printed as one line)."""
    from ..kernels import bench as kb

    def csv(text: str | None) -> list[str] | None:
        return None if text is None else [x.strip() for x in text.split(",") if x.strip()]

    outputs = {"json": args.json, "markdown": args.markdown, "plot": args.plot}
    try:
        kb.check_outputs(list(outputs.values()), force=args.force, plot=args.plot is not None)
        report = kb.bench_kernel(
            args.op, args.kernel, sizes=csv(args.sizes) or [], dtypes=csv(args.dtypes) or [],
            rounds=args.rounds, backends=csv(args.backends), framework=args.framework,
            row=args.row, progress=False if args.quiet else None,
        )  # fmt: skip
        print(report.table())
        written = report.write(**outputs, force=args.force)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"npddpm: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0 if report.correct else 1
