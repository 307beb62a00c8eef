"""Every figure npddpm draws: the demo's three PNGs, ``npddpm eval --plot`` and
``npddpm verify --plot``.

matplotlib is imported on the first call of a figure function, with the non-interactive
``Agg`` backend; importing this module (or the package) does not import it. Figure functions
take arrays and rows, never a model or a generator: drawing a picture consumes no random
numbers and changes no computation. Each PNG is written atomically (a temporary file in the
same directory, fsync, rename), so a killed run leaves the old file or the new one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write

__all__ = [
    "INSTALL_HINT",
    "MatplotlibMissing",
    "check_output",
    "demo_loss",
    "demo_samples",
    "demo_trajectory",
    "eval_figure",
    "have_matplotlib",
    "moment_errors",
    "read_loss_log",
    "verify_figure",
]

#: How to get the figures when matplotlib is missing.
INSTALL_HINT = "pip install 'matplotlib>=3.5' (a requirement of npddpm, missing here)"

_DPI = 110


class MatplotlibMissing(RuntimeError):
    """Raised by a figure function when matplotlib cannot be imported."""


def have_matplotlib() -> bool:
    """Whether the figure functions can run (imports matplotlib if it is there)."""
    try:
        _pyplot()
    except MatplotlibMissing:
        return False
    return True


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MatplotlibMissing(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    return plt


def check_output(path: str | os.PathLike, *, force: bool = False) -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked before any work is done:
    ``FileExistsError`` if it exists (unless ``force``), ``FileNotFoundError`` if its
    directory does not, :class:`MatplotlibMissing` without matplotlib."""
    p = Path(path)
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists; pass --force to overwrite it")
    if not p.resolve().parent.is_dir():
        raise FileNotFoundError(f"the directory of {p} does not exist; create it first")
    _pyplot()
    return p


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically and close it."""
    plt = _pyplot()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=_DPI))
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------ the demo


def _square_limits(x: np.ndarray, pad: float = 0.08) -> tuple[tuple[float, float], ...]:
    """Axis limits of equal span for both coordinates, covering 99.8 % of the points."""
    lo, hi = np.quantile(x, [0.001, 0.999], axis=0)
    half = (1 + 2 * pad) * float(np.max(hi - lo)) / 2
    mid = (lo + hi) / 2
    return tuple((float(m) - half, float(m) + half) for m in mid)


def demo_samples(
    path: str | os.PathLike,
    panels: Mapping[str, np.ndarray],
    *,
    scores: Mapping[str, float] | None = None,
    score_name: str = "C2ST",
) -> Path:
    """One scatter panel per sample set (title → (n, 2) array), shared axes x₁, x₂;
    ``scores`` (title → value) are added to the titles."""
    plt = _pyplot()
    k = len(panels)
    fig, axes = plt.subplots(
        1, k, figsize=(3.5 * k, 4.3), sharex=True, sharey=True, layout="constrained"
    )
    axes = np.atleast_1d(axes)
    lim = _square_limits(np.concatenate([np.asarray(x)[:, :2] for x in panels.values()]))
    for i, (ax, (title, x)) in enumerate(zip(axes, panels.items(), strict=True)):
        x = np.asarray(x)
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color=f"C{i}", rasterized=True)
        label = f"{title}\nn = {len(x)}"
        if scores and title in scores:
            label += f", {score_name} {scores[title]:.3f}"
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x₁")
        ax.set_box_aspect(1)  # square boxes on equal spans: equal aspect
        ax.grid(alpha=0.25)
    axes[0].set_ylabel("x₂")
    axes[0].set_xlim(*lim[0])
    axes[0].set_ylim(*lim[1])
    return _save(fig, path)


def read_loss_log(path: str | os.PathLike, key: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` from a ``log.jsonl``, sorted by step, each step once (the
    latest record of a step wins, so a log appended by a rerun or a resume draws one line)."""
    import json

    by_step: dict[int, float] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if key in rec:
                    by_step[int(rec["step"])] = float(rec[key])
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    """Bias-corrected exponential moving average with smoothing factor 2 / (span + 1)."""
    a = 2.0 / (span + 1)
    out = np.empty_like(values)
    m, w = 0.0, 0.0
    for i, v in enumerate(values):
        m = (1 - a) * m + a * v
        w = (1 - a) * w + a
        out[i] = m / w
    return out


def demo_loss(
    path: str | os.PathLike,
    steps: np.ndarray,
    losses: np.ndarray,
    *,
    title: str = "training loss",
    span: int = 10,
) -> Path:
    """The logged loss against the step: raw (faint) and an exponential moving average
    (stated in the legend), on a log y-axis labelled at 1, 2, 5 × 10ᵏ, or at evenly spaced
    round values when the curve spans about a decade or less."""
    plt = _pyplot()
    from matplotlib.ticker import (
        FixedLocator,
        LogLocator,
        MaxNLocator,
        NullFormatter,
        StrMethodFormatter,
    )

    steps = np.asarray(steps)
    losses = np.asarray(losses, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    every = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    ax.plot(steps, losses, color="C0", alpha=0.3, lw=1, label=f"logged loss (every {every} steps)")
    ax.plot(
        steps,
        _ema(losses, span),
        color="C0",
        lw=2,
        label=f"EMA, span {span} log points (≈ {span * every} steps)",
    )
    ax.set_yscale("log")
    pos = losses[losses > 0]
    if pos.size and np.log10(pos.max() / pos.min()) < 1.2:  # under ~a decade: linear nice ticks
        ticks = MaxNLocator(nbins=7).tick_values(pos.min(), pos.max())
        ax.yaxis.set_major_locator(FixedLocator([t for t in ticks if t > 0]))
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.3g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("loss (log scale)")
    ax.set_title(f"{title}, {int(steps[-1]) if len(steps) else 0} steps", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def demo_trajectory(
    path: str | os.PathLike,
    trajectory: np.ndarray,
    *,
    fractions: Sequence[float] = (0.0, 0.5, 0.8, 0.95, 1.0),
    title: str = "DDPM reverse trajectory",
) -> Path:
    """Scatter panels of a reverse trajectory of shape (T + 1, n, 2) as the samplers return
    it (``trajectory[i]`` = the state at index T − 1 − i, ``trajectory[T]`` = x₀, the output
    of the step at t = 0), titled in the code's 0-based convention: t = T − 1 … 0."""
    plt = _pyplot()
    traj = np.asarray(trajectory)
    T = traj.shape[0] - 1
    k = len(fractions)
    fig, axes = plt.subplots(
        1, k, figsize=(3.2 * k, 3.9), sharex=True, sharey=True, layout="constrained"
    )
    axes = np.atleast_1d(axes)
    for ax, frac in zip(axes, fractions, strict=True):
        i = round(frac * T)
        x = traj[i]
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, rasterized=True)
        if i < T:
            ax.set_title(f"x at t = {T - 1 - i}" + (" (x_T, noise)" if i == 0 else ""), fontsize=10)
        else:
            ax.set_title("x₀ (output of t = 0)", fontsize=10)
        ax.set_xlabel("x₁")
        ax.set_box_aspect(1)  # square boxes on equal spans: equal aspect
        ax.grid(alpha=0.25)
    axes[0].set_ylabel("x₂")
    lim = _square_limits(traj[[round(f * T) for f in fractions]].reshape(-1, traj.shape[-1]))
    axes[0].set_xlim(*lim[0])
    axes[0].set_ylim(*lim[1])
    fig.suptitle(f"{title}: n = {traj.shape[1]}, {T} steps", fontsize=11)
    return _save(fig, path)


# ------------------------------------------------------------------------------ npddpm eval


def _image_grid(x: np.ndarray, cols: int) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) in [−1, 1] → one (rows·(H+1)−1, cols·(W+1)−1) mosaic in
    [0, 1] (channel-mean for C > 1), NaN gaps drawn as the background."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 4:
        x = x.mean(axis=1)
    n, h, w = x.shape
    rows = -(-n // cols)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = x[k]
    return np.clip((grid + 1.0) / 2.0, 0.0, 1.0)


def eval_figure(
    path: str | os.PathLike,
    samples: np.ndarray,
    real: np.ndarray,
    *,
    sample_title: str = "samples",
    real_title: str = "real",
    suptitle: str | None = None,
    count: int = 64,
) -> Path:
    """Image data (N, C, H, W): a grid of the first ``count`` samples beside ``count`` real
    images; 2-D data (N, 2): the two scatters side by side on shared axes."""
    plt = _pyplot()
    samples, real = np.asarray(samples), np.asarray(real)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return demo_samples(path, {sample_title: samples, real_title: real})
    if samples.ndim not in (3, 4):
        raise ValueError(f"eval_figure needs images or 2-D points, got shape {samples.shape}")
    cols = int(np.ceil(np.sqrt(count)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6), layout="constrained")
    cmap = plt.get_cmap("gray").with_extremes(bad="#d8d8e8")
    for ax, x, title in zip(axes, (samples, real), (sample_title, real_title), strict=True):
        shown = x[:count]
        ax.imshow(_image_grid(shown, cols), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n(first {len(shown)} of {len(x)})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------- npddpm verify

_NOTE = re.compile(
    r"\|Δmean\| ([-+.0-9eE]+), \|ΔΣ\| ([-+.0-9eE]+)(?:; from q\(x_T\): ([-+.0-9eE]+))?"
)


def moment_errors(note: str) -> tuple[float, float, float | None]:
    """``(|Δmean|, |ΔΣ|, error from q(x_T) or None)`` from a ``moments`` row's note."""
    m = _NOTE.search(note)
    if m is None:
        raise ValueError(f"not a moments note: {note!r}")
    return float(m[1]), float(m[2]), None if m[3] is None else float(m[3])


def verify_figure(path: str | os.PathLike, rows: Sequence[Any], *, floor: float = 1e-18) -> Path:
    """The ``moments`` rows of ``npddpm verify``, one line per schedule/spacing/sampler/
    variance: left, max |sampler − affine recursion| with identical noise against its limit;
    right, the exact output moments' error against the data (|Δmean|, |ΔΣ|, and for the exact
    reverse variance the error when started from q(x_T)). Log x-axes; zeros drawn at
    ``floor``. Other rows are ignored."""
    plt = _pyplot()
    mom = [r for r in rows if r.check == "moments"]
    if not mom:
        raise ValueError("verify_figure needs at least one 'moments' row")
    labels = [f"{r.schedule} · {r.sampler} · {r.variance}" for r in mom]
    errs = [moment_errors(r.note) for r in mom]
    y = np.arange(len(mom))[::-1]
    h = 0.24 * len(mom) + 1.6
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12.5, h), sharey=True, layout="constrained")
    vals = np.maximum([r.value for r in mom], floor)
    colors = ["C2" if r.passed else "C3" for r in mom]
    a1.barh(y, vals, color=colors, left=floor, height=0.7)
    limits = sorted({r.limit for r in mom})
    for lim in limits:
        a1.axvline(lim, color="k", ls="--", lw=1, label=f"limit {lim:g}")
    a1.set_xscale("log")
    a1.set_xlim(floor, 1e-3)
    a1.set_xlabel("max |sampler − affine recursion| (same x_T and noise)")
    a1.set_title(
        f"deterministic check: {sum(r.passed for r in mom)}/{len(mom)} within the limit",
        fontsize=10,
    )
    a1.legend(fontsize=8, loc="lower right")
    a1.set_yticks(y, labels, fontsize=7.5)
    mean, cov = np.array([e[0] for e in errs]), np.array([e[1] for e in errs])
    a2.scatter(np.maximum(mean, floor), y + 0.15, marker="o", s=18, label="|Δmean| vs data")
    a2.scatter(np.maximum(cov, floor), y - 0.15, marker="s", s=18, label="|ΔΣ| vs data")
    qx = [(yy, e[2]) for yy, e in zip(y, errs, strict=True) if e[2] is not None]
    if qx:
        a2.scatter(
            [max(v, floor) for _, v in qx],
            [yy for yy, _ in qx],
            marker="x",
            s=24,
            color="C3",
            label="exact variance from q(x_T): max error",
        )
    a2.set_xscale("log")
    a2.set_xlabel("error of the exact output moments against the data (from N(0, I))")
    a2.set_title("sampler moments vs the data distribution", fontsize=10)
    a2.legend(fontsize=8, loc="lower left")
    for ax in (a1, a2):
        ax.grid(alpha=0.3, axis="x", which="major")
        for k in range(1, len(mom)):  # a rule between schedule/spacing groups
            if mom[k].schedule != mom[k - 1].schedule:
                ax.axhline(y[k] + 0.5, color="0.6", lw=0.8)
    a1.set_ylim(-0.7, len(mom) - 0.3)
    data = ", ".join(sorted({r.data for r in mom}))
    fig.suptitle(f"npddpm verify: {len(mom)} sampler-moment rows (data: {data})", fontsize=11)
    return _save(fig, path)
