"""The result of :func:`npddpm.kernels.bench.bench_kernel`: the checks, the timings, and the
report rendered as a terminal table, Markdown, JSON (schema ``bench_schema.json`` beside this
module) and a PNG plot, each file written atomically (temporary file, fsync, rename) and never
over an existing file unless asked.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write, write_json

__all__ = [
    "SCHEMA_VERSION",
    "BenchReport",
    "Check",
    "Timing",
    "check_outputs",
    "environment",
    "measure",
]

SCHEMA_VERSION = 1  #: of :meth:`BenchReport.to_dict` (``npddpm/kernels/bench_schema.json``)
SCHEMA_FILE = Path(__file__).with_name("bench_schema.json")


@dataclasses.dataclass
class Check:
    """The user's output against the NumPy spec on one set of inputs.

    ``max_error`` is max |yours − spec| / magnitude (relative to the sum of the absolute
    terms), ``max_ulps`` the same in ulps of the dtype, ``tolerance`` the relative bound.
    ``worst`` locates the worst element: row, column, its timestep, yours and the spec's.
    """

    dtype: str
    shape: tuple[int, int]
    inputs: str
    max_error: float
    max_ulps: float
    tolerance: float
    worst: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.max_error <= self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["passed"] = self.passed
        d["tolerance_ulps"] = self.tolerance / float(np.finfo(self.dtype).eps)
        for k in ("max_error", "max_ulps"):  # JSON has no inf or nan
            d[k] = None if not math.isfinite(d[k]) else d[k]
        d["worst"] = dict(self.worst)
        if not math.isfinite(d["worst"]["yours"]):
            d["worst"]["yours"] = None
        return d


@dataclasses.dataclass
class Timing:
    """One side of one (dtype, size) cell: per-call seconds, one sample per round.

    ``side``: ``"yours"``, a backend name, ``"stream_triad"`` or ``"device_copy"``; ``kind``:
    ``"user"``, ``"npddpm"`` or ``"probe"``; ``of_probe``: GB/s ÷ the GB/s of the probe of the
    same device; ``vs``: ``{backend: backend median ÷ this median}``; ``correct``: the user's
    verdict on this cell (None for the other sides).
    """

    dtype: str
    size: int
    shape: tuple[int, int]
    side: str
    kind: str
    device: str
    nbytes: int
    inner: int = 1
    samples: list[float] = dataclasses.field(default_factory=list)
    of_probe: float | None = None
    vs: dict[str, float] = dataclasses.field(default_factory=dict)
    correct: bool | None = None

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def quartiles(self) -> tuple[float, float]:
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)

    @property
    def gbps(self) -> float:
        return self.nbytes / self.median / 1e9

    def to_dict(self) -> dict[str, Any]:
        q1, q3 = self.quartiles
        return {
            "dtype": self.dtype, "size": self.size, "shape": list(self.shape),
            "side": self.side, "kind": self.kind, "device": self.device, "bytes": self.nbytes,
            "inner": self.inner, "samples_s": list(self.samples), "median_s": self.median,
            "q1_s": q1, "q3_s": q3, "min_s": min(self.samples), "max_s": max(self.samples),
            "gbps": self.gbps, "of_probe": self.of_probe, "vs": dict(self.vs),
            "correct": self.correct,
        }  # fmt: skip


def measure(sides: list[tuple[Timing, Callable[[], Any]]], rounds: int, min_time: float) -> None:
    """Warm every side up, size its inner loop, then ``rounds`` rounds, the order rotated."""
    for timing, fn in sides:
        fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-9)
        timing.inner = max(1, min(10_000, math.ceil(min_time / once)))
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(sides)
            for timing, fn in sides[k:] + sides[:k]:
                t0 = time.perf_counter()
                for _ in range(timing.inner):
                    fn()
                timing.samples.append((time.perf_counter() - t0) / timing.inner)
    finally:
        if enabled:
            gc.enable()


def _size(n: int) -> str:
    """``1000000`` → ``"1e6"``, ``2500000`` → ``"2.5e6"``, ``3000`` → ``"3e3"``."""
    mant, exp = f"{n:.3e}".split("e")
    return f"{float(mant):g}e{int(exp)}"


@dataclasses.dataclass
class BenchReport:
    """What :func:`~npddpm.kernels.bench.bench_kernel` measured. ``correct`` is the verdict;
    :meth:`table`, :meth:`markdown`, :meth:`to_dict` and :meth:`write` present it."""

    op: str
    kernel: str
    framework: str
    signature: tuple[str, ...]
    rounds: int
    row: int
    num_timesteps: int
    backends: tuple[str, ...]
    arrays_moved: int
    checks: list[Check]
    timings: list[Timing]
    environment: dict[str, Any]

    @property
    def correct(self) -> bool:
        """Whether the kernel matched the spec on every check."""
        return all(c.passed for c in self.checks)

    def timing(self, side: str, dtype: str, size: int) -> Timing:
        """The :class:`Timing` of ``side`` in the (dtype, size) cell."""
        for t in self.timings:
            if (t.side, t.dtype, t.size) == (side, dtype, size):
                return t
        raise KeyError(f"no timing of {side!r} at {dtype} size {size}")

    def verdict(self) -> list[str]:
        """The verdict lines printed first: ``correct: …`` or ``WRONG: …`` per failed check."""
        tol = min(c.tolerance / float(np.finfo(c.dtype).eps) for c in self.checks)
        if self.correct:
            worst = max(c.max_ulps for c in self.checks)
            return [
                f"correct: {self.kernel} matches the NumPy spec on all {len(self.checks)} "
                f"checks (worst {worst:.2g} ulp of the magnitudes; tolerance {tol:.0f})"
            ]
        lines = []
        for c in self.checks:
            if not c.passed:
                w = c.worst
                lines.append(
                    f"WRONG: {self.kernel} differs from the NumPy spec ({self.op}, {c.dtype} "
                    f"{c.shape[0]}x{c.shape[1]}, {c.inputs}): {c.max_ulps:.3g} ulps of the "
                    f"magnitude (tolerance {c.tolerance / np.finfo(c.dtype).eps:.3g}); worst at "
                    f"row {w['row']} (t={w['t']}): yours {w['yours']:.9g}, spec {w['spec']:.9g}"
                )
        return lines

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        vs = [b for b in ("numpy", "cpu", "cuda") if b in self.backends]
        head = ["dtype", "size", "side", "median ms", "q1-q3 ms", "GB/s", "% probe"]
        head += [f"vs {b}" for b in vs]
        rows = []
        for t in self.timings:
            q1, q3 = t.quartiles
            side = t.side + ("*" if t.correct is False else "")
            rows.append(
                [t.dtype, _size(t.size), side, f"{t.median * 1e3:.4g}",
                 f"{q1 * 1e3:.4g}-{q3 * 1e3:.4g}", f"{t.gbps:.3g}",
                 f"{100 * (t.of_probe or 0):.0f}%"]
                + [f"{t.vs[b]:.2f}" if b in t.vs else "" for b in vs]
            )  # fmt: skip
        return head, rows

    def _preamble(self) -> str:
        env = self.environment
        return (
            f"npddpm bench {self.op}: {self.kernel} ({self.framework}), {self.rounds} rounds, "
            f"rows of {self.row}, {env.get('numba_threads')} Numba threads, {env.get('time_utc')}"
        )

    def legend(self) -> str:
        """What the columns mean."""
        return (
            f"GB/s: the {self.arrays_moved} arrays {self.op} must move (inputs read + output "
            "written) / median time; % probe: of the STREAM triad (CPU sides) or device copy (GPU) "
            "timed in the same rounds; vs B: B's median / this side's (> 1: faster than B); "
            "q1-q3: quartiles over the rounds; *: output WRONG in this cell."
        )

    def table(self) -> str:
        """The verdict, then an aligned text table, then the legend."""
        head, rows = self._rows()
        width = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in
                         enumerate(zip(r, width, strict=True))) for r in [head, *rows]]  # fmt: skip
        rule = "-" * len(fmt[0])
        return "\n".join([*self.verdict(), self._preamble(), fmt[0], rule, *fmt[1:], self.legend()])

    def markdown(self) -> str:
        """The verdict and a Markdown table."""
        head, rows = self._rows()
        lines = [f"**{v}**" if v.startswith("WRONG") else v for v in self.verdict()]
        lines += ["", self._preamble(), "", "| " + " | ".join(head) + " |"]
        lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([*lines, "", self.legend(), ""])

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form (``bench_schema.json``)."""
        return {
            "format": "npddpm-bench", "version": SCHEMA_VERSION, "op": self.op,
            "kernel": self.kernel, "framework": self.framework,
            "signature": list(self.signature), "rounds": self.rounds, "row": self.row,
            "num_timesteps": self.num_timesteps, "backends": list(self.backends),
            "arrays_moved": self.arrays_moved, "correct": self.correct,
            "checks": [c.to_dict() for c in self.checks],
            "results": [t.to_dict() for t in self.timings], "environment": self.environment,
        }  # fmt: skip

    def plot(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """A PNG of GB/s against size, one panel per dtype, the probes as dashed ceilings."""
        plt = _pyplot()
        path = check_outputs([path], force=force)[0]
        dtypes = list(dict.fromkeys(t.dtype for t in self.timings))
        fig, axes = plt.subplots(1, len(dtypes), figsize=(5.5 * len(dtypes), 4), squeeze=False)
        for ax, dt in zip(axes[0], dtypes, strict=True):
            sides = dict.fromkeys(t.side for t in self.timings if t.dtype == dt)
            for side in sides:
                ts = [t for t in self.timings if t.dtype == dt and t.side == side]
                style = "--" if ts[0].kind == "probe" else "-o"
                wrong = " (WRONG)" if any(t.correct is False for t in ts) else ""
                label = side + (" (ceiling)" if ts[0].kind == "probe" else wrong)
                ax.plot([t.size for t in ts], [t.gbps for t in ts], style, label=label)
            ax.set(xscale="log", xlabel="elements per array", ylabel="GB/s")
            ax.set_title(f"{self.op} {dt}")
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        try:
            atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
        finally:
            plt.close(fig)
        return path

    def write(
        self, *, json: str | os.PathLike | None = None, markdown: str | os.PathLike | None = None,
        plot: str | os.PathLike | None = None, force: bool = False,
    ) -> list[Path]:  # fmt: skip
        """Write the JSON, Markdown and PNG files asked for (all checked before any is
        written: an existing file is an error unless ``force``)."""
        check_outputs([json, markdown, plot], force=force, plot=plot is not None)
        out = []
        if json is not None:
            out.append(write_json(json, self.to_dict()))
        if markdown is not None:
            blob = self.markdown().encode()
            atomic_write(markdown, lambda f: f.write(blob))
            out.append(Path(markdown))
        if plot is not None:
            out.append(self.plot(plot, force=True))
        return out


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'npddpm[plot]'") from None
    return plt


def check_outputs(
    paths: list[str | os.PathLike | None], *, force: bool = False, plot: bool = False
) -> list[Path]:
    """The output paths, checked before a run: ``FileExistsError`` for an existing file
    (unless ``force``), ``FileNotFoundError`` for a missing directory, ``RuntimeError`` when
    ``plot`` and matplotlib is not installed."""
    out = []
    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass --force (force=True) to overwrite it")
        if not path.resolve().parent.is_dir():
            raise FileNotFoundError(f"the directory of {path} does not exist; create it first")
        out.append(path)
    if plot:
        _pyplot()
    return out


def environment() -> dict[str, Any]:
    """Versions, machine, threads, time and load: the context of the numbers."""
    import numba

    return {
        "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "numba_threads": int(numba.get_num_threads()),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }  # fmt: skip
