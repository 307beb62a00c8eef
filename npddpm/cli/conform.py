"""``npddpm conform`` and ``npddpm vectors``: other implementations against npddpm."""

from __future__ import annotations

import argparse
import math

from .common import add_dask_options, dask_client, fail, positive_int, seed_int, usage_error

_DIFFUSERS_T = 1000  # num_train_timesteps of the schedulers `conform diffusers` checks


def _check_index(directory: str, option: str) -> None:
    """A ValueError unless ``directory/index.json`` lists its cases, each with a file."""
    import json
    from pathlib import Path

    path = Path(directory) / "index.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{option} {directory}: not a vectors directory (index.json unreadable: {exc})"
        ) from None
    cases = index.get("cases") if isinstance(index, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "file" in c for c in cases):
        raise ValueError(
            f"{option} {directory}: {path.name} has no list of 'cases' (each with a 'file'); "
            "expected the index.json of `npddpm vectors export`, copied with the results"
        )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``vectors`` (``export DIR``) and ``conform`` subcommands to ``sub``."""
    vec = sub.add_parser("vectors", help="test vectors for other implementations")
    vsub = vec.add_subparsers(dest="vectors_command", metavar="ACTION", parser_class=type(vec))
    exp = vsub.add_parser("export", help="write the versioned vector set into DIR")
    exp.add_argument("dir", help="output directory (created)")
    exp.add_argument("--seed", type=seed_int, default=0, help="seed of the vectors' inputs")
    exp.add_argument("--quiet", action="store_true", help="print nothing on success")

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
    conf.add_argument(
        "--cases",
        metavar="PATTERN[,PATTERN]",
        help="with --vectors: compare only the cases whose file name or kind matches "
        "(fnmatch, e.g. 'ddpm_step_*,schedule')",
    )
    conf.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"inference steps of the diffusers schedulers, 1 to {_DIFFUSERS_T} (default 50; "
        "with --scheduler DDPMScheduler, the whole chain)",
    )
    conf.add_argument(
        "--scheduler",
        choices=["DDPMScheduler", "DDIMScheduler", *SOLVER_SCHEDULERS],
        help="check one scheduler of your configuration (with --option) instead of the set",
    )
    conf.add_argument(
        "--solvers",
        action="store_true",
        help="check only diffusers' ODE/SDE solver schedulers (contract for N = 1…100, "
        "agreement with npddpm's reference, measured order); without it the set is the DDPM/DDIM "
        "configurations and then the solvers",
    )
    conf.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config option of --scheduler (repeatable; VALUE as JSON, e.g. "
        'timestep_spacing="trailing" or clip_sample=false; bare words are strings)',
    )
    conf.add_argument(
        "--json",
        metavar="FILE",
        help="also write the versioned JSON report (schema: npddpm/conformance/report_schema.json)",
    )
    conf.add_argument("--force", action="store_true", help="with --json: replace an existing FILE")
    conf.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dask_options(conf, "the configurations (one task each)")


def run(args: argparse.Namespace) -> int:
    """Run ``npddpm vectors`` or ``npddpm conform`` (by ``args.command``); the exit status."""
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
    if not args.quiet:
        print(f"wrote {path}")
    return 0


def _conform(args: argparse.Namespace) -> int:
    import os

    if args.json and os.path.exists(args.json) and not args.force:  # before any work is done
        return fail(
            f"--json: {args.json} exists; choose another file, or add --force to replace it"
        )
    if args.vectors and (args.dask or args.shard_size):
        usage_error("--dask applies to the diffusers checks, not to --vectors")
    if args.vectors:
        import tempfile
        import zipfile
        import zlib

        from ..conformance.vectors import compare_vectors, export_vectors

        patterns = [p.strip() for p in (args.cases or "").split(",") if p.strip()] or None
        if args.cases is not None and not patterns:
            usage_error("argument --cases: give one or more patterns, e.g. 'ddpm_step_*'")
        expected = args.expected or "the fresh export"
        try:
            _check_index(args.vectors, "--vectors")
            if args.expected:
                _check_index(args.expected, "--expected")
                expected = args.expected
            else:
                expected = tempfile.mkdtemp(prefix="npddpm-vectors-")
                export_vectors(expected)
            rows = compare_vectors(expected, args.vectors, cases=patterns)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            return fail(
                f"a vector file in {args.vectors} or {expected} is truncated or corrupt ({exc}); "
                "recompute it from a fresh `npddpm vectors export`"
            )
        except (OSError, ValueError) as exc:
            return fail(str(exc))
        failed = sorted(
            (r for r in rows if r["verdict"] == "FAIL"),
            key=lambda r: -r["ratio"] if not math.isnan(r["ratio"]) else 0.0,
        )
        missing = [r for r in rows if r["verdict"] == "missing"]
        for r in failed:  # worst first: the real failures lead
            print(
                f"FAIL     {r['file']:<48} {r['output']:<30} err/tol {r['ratio']:.3g} "
                f"(max err {r['max_abs']:.3g} at {r['where'] or '-'})"
            )
        for r in missing:
            print(f"missing  {r['file']:<48} {r['output']}")
        count = {v: sum(r["verdict"] == v for r in rows) for v in ("ok", "not declared")}
        dtype = rows[0]["dtype"] if rows else "float64"
        print(
            f"{count['ok']} agree, {len(failed)} fail, {len(missing)} missing, "
            f"{count['not declared']} not declared (of {len(rows)} outputs; tolerances for "
            f"{dtype} results)"
        )
        if args.json and (status := _write_json(args, [_vector_report(args.vectors, rows)])):
            return status
        return 1 if failed or missing else 0
    if args.target != "diffusers":
        usage_error("give an implementation (diffusers) or --vectors DIR")
    if args.steps is not None and not 1 <= args.steps <= _DIFFUSERS_T:
        usage_error(
            f"argument --steps: the schedulers have T={_DIFFUSERS_T} training steps, so "
            f"--steps must be 1 to {_DIFFUSERS_T}, got {args.steps}"
        )
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return fail("diffusers is not installed: pip install 'npddpm[conform]'")
    from ..conformance import sweep

    if args.option and not args.scheduler:
        usage_error("--option needs --scheduler (DDPMScheduler, DDIMScheduler or a solver)")
    solvers: list = [("solver", c, kw, None) for c, kw in _solver_configs()]
    configs: list
    if args.solvers or args.scheduler in SOLVER_SCHEDULERS:
        configs = solvers
        if args.scheduler:
            configs = [("solver", args.scheduler, _options(args.option), None)]
    elif args.scheduler:
        # a DDPM scheduler runs its whole chain unless --steps is given; DDIM needs steps
        steps = args.steps or (50 if args.scheduler == "DDIMScheduler" else None)
        configs = [("step", args.scheduler, _options(args.option), steps)]
    else:  # the whole set: the step checks, then the solver schedulers
        configs = [("step", c, kw, st) for c, kw, st in _default_configs(args.steps or 50)]
        configs += solvers
    try:
        with dask_client(args) as client:
            reports = sweep(configs, client=client, progress=False if args.quiet else None)
    except (TypeError, ValueError, NotImplementedError) as exc:
        return fail(str(exc))
    status = 0
    summary = []
    for report in reports:
        print(report.table(), end="\n\n")
        status |= 0 if report.conforms else 1
        known = sorted({r.diagnosis for r in report.known})
        verdict = "conforms" if report.conforms else f"DOES NOT CONFORM ({len(report.failures)})"
        summary.append(
            f"{verdict:<22} {report.adapter}"
            + (f"\n{'':<22}   known: " if known else "")
            + f"\n{'':<22}   known: ".join(known)
        )
    return _finish(args, summary, reports, status)


#: diffusers' solver schedulers that ``--solvers`` / ``--scheduler`` check.
SOLVER_SCHEDULERS = (
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "FlowMatchEulerDiscreteScheduler",
)


def _solver_configs() -> list[tuple[str, dict]]:
    """The solver configurations ``--solvers`` checks: each scheduler's defaults and the options
    people sample with (Karras σ, orders, algorithms, spacings, the final σ)."""
    return [
        ("EulerDiscreteScheduler", {}),
        ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
        ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
        ("EulerDiscreteScheduler", {"interpolation_type": "log_linear"}),
        ("EulerDiscreteScheduler", {"prediction_type": "v_prediction"}),
        ("EulerAncestralDiscreteScheduler", {}),
        ("HeunDiscreteScheduler", {}),
        ("HeunDiscreteScheduler", {"use_karras_sigmas": True}),
        ("LMSDiscreteScheduler", {}),
        ("DPMSolverMultistepScheduler", {}),
        ("DPMSolverMultistepScheduler", {"solver_order": 1}),
        ("DPMSolverMultistepScheduler", {"solver_order": 3}),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver",
                                         "final_sigmas_type": "sigma_min"}),
        ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
        ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing"}),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
        ("DPMSolverSinglestepScheduler", {}),
        ("DPMSolverSinglestepScheduler", {"solver_order": 3}),
        ("UniPCMultistepScheduler", {}),
        ("UniPCMultistepScheduler", {"solver_type": "bh1"}),
        ("UniPCMultistepScheduler", {"solver_order": 3}),
        ("DEISMultistepScheduler", {}),
        ("DEISMultistepScheduler", {"solver_order": 3}),
        ("FlowMatchEulerDiscreteScheduler", {}),
        ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}),
        ("FlowMatchEulerDiscreteScheduler", {"use_dynamic_shifting": True,
                                             "set_timesteps": {"mu": math.log(3.0)}}),
    ]


def _finish(args: argparse.Namespace, summary: list[str], reports: list, status: int) -> int:
    """The summary (for more than one configuration), the JSON report, the exit status."""
    if len(summary) > 1:
        print("summary:")
        print("\n".join(summary))
    if args.json and (written := _write_json(args, reports)):
        return written
    return status


def _write_json(args: argparse.Namespace, reports: list) -> int:
    """Write ``reports`` to ``args.json`` (refusing an existing file without ``--force``);
    0, or 1 with one line."""
    from ..conformance.report import write_reports

    try:
        write_reports(args.json, reports, overwrite=args.force)
    except FileExistsError as exc:
        return fail(f"--json: {exc}")
    except OSError as exc:
        return fail(f"cannot write {args.json}: {exc.strerror or exc}")
    return 0


def _vector_report(results: str, rows: list[dict]):
    """The vector comparison as a :class:`~npddpm.conformance.Report` (one row per case
    output; "missing" is a failure, "not declared" is skipped)."""
    from ..conformance.report import Report, Row

    verdict = {"ok": "ok", "FAIL": "FAIL", "missing": "FAIL", "not declared": "skipped"}
    out = [
        Row(
            f"{r['file']}:{r['output']}",
            r["kind"],
            r["max_abs"],
            float("nan"),
            r["ratio"],
            verdict[r["verdict"]],
            "missing" if r["verdict"] == "missing" else "",
            where=str(r["where"] or ""),
        )
        for r in rows
    ]
    dtype = rows[0]["dtype"] if rows else "float64"
    return Report(f"vectors {results}", out, notes=[f"tolerances for {dtype} results"])


def _options(pairs: list[str]) -> dict:
    """``["key=value", …]`` → ``{key: value}``, each value parsed as JSON (else a string)."""
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            usage_error(f"argument --option: expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _default_configs(steps: int) -> list[tuple[str, dict, int | None]]:
    """The configurations `npddpm conform diffusers` checks: each documented option at least
    once, and each known divergence where it shows (and, in the first, where none does)."""
    return [
        ("DDPMScheduler", {}, None),
        ("DDPMScheduler", {"variance_type": "fixed_large", "timestep_spacing": "trailing"}, steps),
        (
            "DDPMScheduler",
            {"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2"},
            None,
        ),
        ("DDPMScheduler", {"prediction_type": "sample", "variance_type": "learned_range"}, None),
        ("DDPMScheduler", {"variance_type": "learned"}, None),
        ("DDPMScheduler", {"variance_type": "fixed_large_log"}, None),
        ("DDPMScheduler", {"thresholding": True, "sample_max_value": 1.5}, steps),
        ("DDPMScheduler", {"clip_sample_range": 2.0, "steps_offset": 1}, steps),
        ("DDIMScheduler", {}, steps),
        ("DDIMScheduler", {"timestep_spacing": "linspace"}, steps),
        ("DDIMScheduler", {"timestep_spacing": "trailing", "clip_sample": False}, steps),
        ("DDIMScheduler", {"set_alpha_to_one": False, "steps_offset": 1}, steps),
        (
            "DDIMScheduler",
            {
                "rescale_betas_zero_snr": True,
                "prediction_type": "v_prediction",
                "timestep_spacing": "trailing",
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "beta_end": 0.012,
            },
            steps,
        ),
        ("DDIMScheduler", {"thresholding": True, "sample_max_value": 2.0}, steps),
    ]
