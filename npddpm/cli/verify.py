"""``npddpm verify``: the samplers against the analytic oracle."""

from __future__ import annotations

import argparse

from .. import plotting
from .common import add_dask_options, dask_client, fail, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand to ``sub``."""
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
    verify.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="also write a PNG of the sampler-moment rows (deterministic error against its "
        "limit; exact moments' error against the data)",
    )
    verify.add_argument("--force", action="store_true", help="overwrite an existing --plot FILE")
    verify.add_argument(
        "--chains",
        type=positive_int,
        default=None,
        metavar="N",
        help="oracle-driven chains per Monte-Carlo (chain) row (default 2000); more chains "
        "give the KS and χ² rows more power at the same false-failure probability",
    )
    add_dask_options(verify, "the Monte-Carlo rows' chains")


def run(args: argparse.Namespace) -> int:
    """Run ``npddpm verify`` (the verification suite): 0 when every row passes, 1 when any fails
    or the ``--plot`` file cannot be written."""
    import time

    from .. import verify

    quiet = args.quiet
    if args.plot is not None:
        try:
            plotting.check_output(args.plot, force=args.force)
        except (OSError, plotting.MatplotlibMissing) as exc:
            return fail(str(exc))
    t0 = time.perf_counter()
    try:
        with dask_client(args) as client:
            rows = verify.run_verification(
                progress=False if quiet else None,
                client=client,
                shard_size=args.shard_size,
                chains=args.chains,
            )
    except (TypeError, ValueError) as exc:
        return fail(str(exc))
    lines = verify.format_table(rows, time.perf_counter() - t0).splitlines()
    failed = not all(r.passed for r in rows)
    if not quiet:
        lines.append(verify.LEGEND)
    elif failed:  # the header, the failed rows, the summary
        lines = [*lines[:2], *(x for x in lines[2:-1] if "FAIL" in x), lines[-1]]
    else:
        lines = lines[-1:]
    print("\n".join(lines))
    if args.plot is not None:
        try:
            plotting.verify_figure(args.plot, rows)
        except (ValueError, OSError) as exc:
            return fail(f"cannot write {args.plot}: {exc}")
        print(f"wrote {args.plot}")
    return 1 if failed else 0
