"""The kill test: SIGKILL a small training run again and again, resume it after each kill, and
check that nothing is lost.

Each round starts a training process (``npddpm.training.train`` on moons, a checkpoint every
few steps, a log record every step) that resumes ``DIR/checkpoint.npz`` if there is one and
otherwise starts afresh (``force=True``, as a user would after a kill before the first
checkpoint), and kills it with SIGKILL: every other round at a random moment once it has made
progress, the others as soon as a temporary checkpoint file appears (during a save). After
each kill the checkpoint must load (no corrupt checkpoint); temporary files a kill left are
counted as saves hit (the next start removes them). After the last round the run is finished
uninterrupted and checked:

* 0 corrupt checkpoints, 0 temporary files left in DIR;
* ``log.jsonl`` holds every step exactly once, with the same losses as an uninterrupted run;
* every array of the final checkpoint (parameters, Adam, EMA) and its step and RNG state are
  bitwise those of an uninterrupted run.

Usage: ``python benchmarks/kill_test.py [--kills 30] [--steps 4000] [--dir DIR]``; exits 1 if
a check fails. Not a pytest test: 30 rounds of process start-up take minutes on a 2-core
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from npddpm.io import CheckpointError, load_checkpoint

CONFIG = dict(
    dataset="moons",
    model_options={"hidden": 128, "num_blocks": 2, "threads": 1, "fused": False},
    num_timesteps=100,
    batch_size=64,
    checkpoint_every=3,
    log_every=1,
)

CHILD = """
import sys
from pathlib import Path
from npddpm.training import TrainConfig, train
out, steps = Path(sys.argv[1]), int(sys.argv[2])
cfg = TrainConfig(**{config!r}, steps=steps)
ck = out / "checkpoint.npz"
train(cfg, out, resume=ck if ck.exists() else None, force=not ck.exists(), progress=False)
"""


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def log_size(d: Path) -> int:
    try:
        return (d / "log.jsonl").stat().st_size
    except FileNotFoundError:
        return 0


def checkpoint_step(d: Path) -> int | None:
    """The step of ``d/checkpoint.npz`` (None if absent); CheckpointError if corrupt."""
    if not (d / "checkpoint.npz").exists():
        return None
    return int(load_checkpoint(d / "checkpoint.npz")[1]["step"])


def run_child(d: Path, steps: int) -> subprocess.Popen:
    code = CHILD.format(config=CONFIG)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(d), str(steps)], env=env, stderr=subprocess.PIPE
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--steps", type=int, default=4000)  # 1000 ends before 30 kills here
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    root = Path(args.dir or tempfile.mkdtemp(prefix="npddpm-kill-"))
    if root.exists():
        shutil.rmtree(root)
    run_dir, ref_dir = root / "killed", root / "reference"
    run_dir.mkdir(parents=True)
    kills = saves_hit = corrupt = rounds = 0
    save_mode_kills = 0
    t0 = time.perf_counter()
    while kills < args.kills:
        rounds += 1
        during_save = kills % 2 == 1
        before = log_size(run_dir)
        p = run_child(run_dir, args.steps)
        deadline = time.perf_counter() + 60
        killed = False
        if during_save:
            while p.poll() is None and time.perf_counter() < deadline:
                saving = any(n.startswith(".checkpoint.npz.") for n in temp_files(run_dir))
                if saving and log_size(run_dir) > before:
                    p.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.0005)
        else:
            while p.poll() is None and log_size(run_dir) <= before:
                time.sleep(0.005)
            if p.poll() is None:
                time.sleep(rnd.uniform(0.0, 0.4))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    killed = True
        rc = p.wait()
        err = p.stderr.read().decode() if p.stderr else ""
        if not killed:
            print(f"round {rounds}: the run ended (rc {rc}) before the kill: {err[-300:]}")
            return 1
        kills += 1
        save_mode_kills += during_save
        left = temp_files(run_dir)
        saves_hit += bool(left)
        try:
            step = checkpoint_step(run_dir)
        except CheckpointError as exc:
            corrupt += 1
            step = None
            print(f"kill {kills}: CORRUPT {exc}")
        mode = "in a save" if during_save else "random"
        print(f"kill {kills:2d} ({mode:9s}): checkpoint at step {step}, temp files {left}")
    # finish the run uninterrupted
    p = run_child(run_dir, args.steps)
    rc = p.wait()
    if rc != 0:
        print(f"the final resume failed (rc {rc}): {p.stderr.read().decode() if p.stderr else ''}")
        return 1
    t_killed = time.perf_counter() - t0
    # the uninterrupted reference
    ref_dir.mkdir()
    p = run_child(ref_dir, args.steps)
    if p.wait() != 0:
        print("the reference run failed")
        return 1

    orphans = temp_files(run_dir)
    a, ha = load_checkpoint(run_dir / "checkpoint.npz")
    b, hb = load_checkpoint(ref_dir / "checkpoint.npz")
    bitwise = (
        sorted(a) == sorted(b)
        and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
        and ha["rng"] == hb["rng"]
        and ha["step"] == hb["step"] == args.steps
        and ha["counters"] == hb["counters"]
    )

    def records(d: Path) -> list[dict]:
        lines = (d / "log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "steps_per_s"} for x in lines]

    got, ref = records(run_dir), records(ref_dir)
    steps = [r["step"] for r in got]
    logged_once = steps == list(range(1, args.steps + 1))
    same_log = got == ref
    print(
        f"\n{kills} SIGKILLs over {rounds} rounds ({save_mode_kills} aimed at a save), "
        f"{saves_hit} kills left a temporary checkpoint file (hit a save), "
        f"{corrupt} corrupt checkpoints, {len(orphans)} temporary files left at the end, "
        f"every step logged once: {logged_once} ({len(steps)} records, "
        f"{len(set(steps))} distinct), log equal to the uninterrupted run's: {same_log}, "
        f"final checkpoint bitwise equal to the uninterrupted run's: {bitwise} "
        f"({t_killed:.0f} s for the killed run)"
    )
    ok = corrupt == 0 and not orphans and logged_once and same_log and bitwise
    if args.dir is None:
        shutil.rmtree(root)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
