"""Training-step benchmark: npddpm's hand-written MLP / U-Net step against the same model in
PyTorch (forward + MSE gradient + backward + Adam, float32).

Each measurement runs in its own subprocess (NumPy's OpenBLAS threads and PyTorch's threads
must never spin against each other in one process), the two implementations alternate, and
both get the same thread count. The parent also runs a float32 matmul probe in a subprocess
with the same threads, so the achieved GFLOP/s of each step can be read against what the BLAS
reaches on this machine in this run.

Usage (wrap timing runs in the shared lock on shared machines)::

    flock /tmp/npddpm-bench.lock python benchmarks/bench_train_step.py --model mlp
    python benchmarks/bench_train_step.py --model unet --rounds 2 --out .benchmarks/unet.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from train_common import environment, print_table, time_steps, write_json  # noqa: E402

# ----------------------------------------------------------------------------- FLOP counts


def mlp_flops(dim: int, width: int, blocks: int, emb: int, batch: int) -> float:
    """Matrix-product FLOPs of one training step (forward 2·B·m·n per linear layer; backward
    2× that, except the input layer, whose input gradient is not needed)."""
    fwd = [(dim + emb, width)] + [(width, width)] * (2 * blocks) + [(width, dim)]
    total = 0.0
    for i, (m, n) in enumerate(fwd):
        total += 2.0 * batch * m * n * (2 if i == 0 else 3)
    return total


def unet_flops(cfg: dict) -> float:
    """Matrix-product FLOPs of one U-Net training step, counting every convolution as the
    direct convolution it computes (2·N·H·W·C·F·k² forward; Winograd does fewer actual
    multiplications, so this is the usual *effective* rate), attention's four products,
    and the linear layers; backward 2× forward, except the first convolution's input
    gradient, which is not computed."""
    from npddpm.nn import UNet

    model = UNet(
        cfg["channels"], base_channels=cfg["width"], channel_mult=tuple(cfg["mult"]),
        attention=cfg["attention"], retain_memory=False,
    )  # fmt: skip
    n, side = cfg["batch"], cfg["side"]
    low = side // model.downsample_factor
    fwd = first = 0.0
    for key, w in model.params.items():
        block = key.split(".")[0]
        if block.startswith(("down", "up")):
            s = side >> int(block.lstrip("downup"))
        else:
            s = low if block == "mid" else side
        if w.ndim == 4:
            f, c, kh, kw = w.shape
            flops = 2.0 * n * s * s * c * f * kh * kw
            if key == "conv_in.w":
                first = flops
        elif w.ndim == 2 and key.endswith("qkv.w"):
            c, tokens = w.shape[0], s * s
            flops = 2.0 * n * tokens * c * 3 * c + 2 * (2.0 * n * tokens * tokens * c)
        elif w.ndim == 2 and block == "mid" and key.endswith("out.w"):
            flops = 2.0 * n * s * s * w.shape[0] * w.shape[1]
        elif w.ndim == 2:  # timestep MLP and per-block embedding projections: one row per image
            flops = 2.0 * n * w.shape[0] * w.shape[1]
        else:
            continue
        fwd += flops
    return 3 * fwd - first


# ----------------------------------------------------------------------------- workers


def _data(cfg: dict):
    import numpy as np

    rng = np.random.default_rng(1)
    if cfg["model"] == "mlp":
        x = rng.standard_normal((cfg["batch"], cfg["dim"])).astype(np.float32)
    else:
        c, s = cfg["channels"], cfg["side"]
        x = rng.standard_normal((cfg["batch"], c, s, s)).astype(np.float32)
    target = rng.standard_normal(x.shape).astype(np.float32)
    t = rng.integers(0, 1000, cfg["batch"])
    return x, target, t


def _npddpm_model(cfg: dict):
    import numpy as np

    from npddpm.nn import MLP, UNet

    if cfg["model"] == "mlp":
        return MLP(
            cfg["dim"],
            hidden=cfg["width"],
            num_blocks=cfg["blocks"],
            time_embed_dim=cfg["emb"],
            dtype=np.float32,
            threads=cfg["threads"],
        )
    return UNet(
        cfg["channels"],
        base_channels=cfg["width"],
        channel_mult=tuple(cfg["mult"]),
        attention=cfg["attention"],
        dtype=np.float32,
        threads=cfg["threads"],
    )


def worker_npddpm(cfg: dict) -> dict:
    from npddpm.nn import Adam

    model = _npddpm_model(cfg)
    opt = Adam(model.params, lr=1e-4)
    x, target, t = _data(cfg)
    scale = 2.0 / x.size

    def step():
        out, cache = model.forward(x, t)
        dout = out - target
        dout *= scale
        opt.step(model.backward(dout, cache))

    return {"sec_per_step": time_steps(step, min_time=cfg["min_time"])}


def worker_torch(cfg: dict) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "nn"))
    from torch_models import torch_mlp, torch_unet  # the same builders the tests check

    torch.set_num_threads(cfg["threads"])
    model = _npddpm_model(cfg)
    tm = (torch_mlp if cfg["model"] == "mlp" else torch_unet)(model, torch.float32)
    opt = torch.optim.Adam(tm.parameters(), lr=1e-4)
    x, target, t = (torch.from_numpy(a) for a in _data(cfg))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(tm(x, t), target)
        loss.backward()
        opt.step()

    return {"sec_per_step": time_steps(step, min_time=cfg["min_time"])}


def worker_probe(cfg: dict) -> dict:
    from train_common import matmul_probe

    return {"gflops": matmul_probe(1024)}


WORKERS = {"npddpm": worker_npddpm, "torch": worker_torch, "probe": worker_probe}


def run_worker(kind: str, cfg: dict, threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--config",
        json.dumps(cfg),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def grid(args) -> list[dict]:
    base = {"model": args.model, "threads": args.threads, "min_time": args.min_time}
    if args.model == "mlp":
        return [
            dict(base, dim=2, width=w, batch=b, blocks=args.blocks, emb=32)
            for w in args.widths
            for b in args.batches
        ]
    return [
        dict(
            base,
            channels=1,
            side=s,
            width=args.unet_width,
            mult=[1, 2],
            attention=True,
            batch=args.unet_batch,
        )
        for s in args.sides
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=sorted(WORKERS))
    ap.add_argument("--config")
    ap.add_argument("--model", choices=["mlp", "unet"], default="mlp")
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument(
        "--blocks",
        type=int,
        default=1,
        help="MLP residual blocks; 1 gives the (D+32) → W → W → W → D products",
    )
    ap.add_argument("--sides", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--unet-width", type=int, default=32)
    ap.add_argument("--unet-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=5, help="alternations per grid point")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--out", default=str(ROOT / ".benchmarks" / "train_step.json"))
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](json.loads(args.config))))
        return

    rows = []
    probe = []
    for cfg in grid(args):
        times = {"npddpm": [], "torch": []}
        for r in range(args.rounds):
            order = ["npddpm", "torch"] if r % 2 == 0 else ["torch", "npddpm"]
            for kind in order:
                times[kind].append(run_worker(kind, cfg, args.threads)["sec_per_step"])
            probe.append(run_worker("probe", cfg, args.threads)["gflops"])
        np_s, th_s = statistics.median(times["npddpm"]), statistics.median(times["torch"])
        row = {k: cfg[k] for k in ("width", "batch") if k in cfg}
        if args.model == "mlp":
            flops = mlp_flops(cfg["dim"], cfg["width"], cfg["blocks"], cfg["emb"], cfg["batch"])
            row["npddpm_GFLOP/s"] = flops / np_s / 1e9
            row["torch_GFLOP/s"] = flops / th_s / 1e9
        else:
            row["side"] = cfg["side"]
            flops = unet_flops(cfg)
            row["npddpm_GFLOP/s"] = flops / np_s / 1e9  # effective: direct-convolution FLOPs
            row["torch_GFLOP/s"] = flops / th_s / 1e9
        row.update({"npddpm_ms": 1e3 * np_s, "torch_ms": 1e3 * th_s, "speedup": th_s / np_s})
        # The median of the per-round ratios: each round's two runs are minutes closer in
        # time than the two medians, so machine drift cancels better.
        row["speedup_paired"] = statistics.median(
            t / n for n, t in zip(times["npddpm"], times["torch"], strict=True)
        )
        row["rounds_ms"] = {k: [round(1e3 * v, 3) for v in vs] for k, vs in times.items()}
        row["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        rows.append(row)
        print(json.dumps(row), flush=True)
    probe_gf = statistics.median(probe)
    shared = ["npddpm_ms", "torch_ms", "speedup", "speedup_paired"]
    shared += ["npddpm_GFLOP/s", "torch_GFLOP/s", "load"]
    cols = (["width", "batch"] if args.model == "mlp" else ["side"]) + shared
    print_table(
        rows,
        cols,
        title=f"{args.model} training step, {args.threads} threads, "
        f"matmul probe 1024³: {probe_gf:.1f} GFLOP/s (median of {len(probe)})",
    )
    out = write_json(
        args.out,
        {
            "benchmark": "train_step",
            "model": args.model,
            "threads": args.threads,
            "probe_gflops": probe_gf,
            "probe_all": probe,
            "rows": rows,
            "environment": environment(),
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
