"""Adam/AdamW, clipping, warm-up and EMA against closed forms, exact state round trips, and
against torch.optim over many steps (torch-marked)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npddpm.nn import EMA, Adam, AdamW, clip_grad_norm, warmup_lr
from npddpm.nn.optim import global_norm

seeds = st.integers(0, 2**32 - 1)


def make(rng, dtype=np.float64):
    return {
        "w": rng.standard_normal((3, 4)).astype(dtype),
        "b": rng.standard_normal(4).astype(dtype),
    }


@given(seed=seeds, lr=st.floats(1e-5, 1e-1), eps=st.sampled_from([1e-8, 1e-3]))
def test_adam_first_step_closed_form(seed, lr, eps):
    # Step 1 from m = v = 0: m̂ = g and v̂ = g² exactly, so p₁ = p₀ − lr·g / (|g| + ε)
    # (Kingma & Ba 2015, §2). Float64 rounding of a handful of operations: rtol 1e-13.
    rng = np.random.default_rng(seed)
    p = make(rng)
    p0 = {k: v.copy() for k, v in p.items()}
    g = make(rng)
    Adam(p, lr=lr, eps=eps).step(g)
    for k in p:
        expected = p0[k] - lr * g[k] / (np.abs(g[k]) + eps)
        np.testing.assert_allclose(p[k], expected, rtol=1e-13, atol=1e-15)


def test_adam_constant_gradient_and_warmup_closed_form():
    # With a constant gradient, m̂_k = g and v̂_k = g² at every step (the bias corrections
    # cancel the geometric sums exactly), so each step moves lr_k·g/(|g| + ε); with linear
    # warm-up lr_k = lr·min(1, k/W). 50 steps of float64 rounding: rtol 1e-11.
    rng = np.random.default_rng(0)
    p = make(rng)
    p0 = {k: v.copy() for k, v in p.items()}
    g = make(rng)
    opt = Adam(p, lr=1e-2, warmup_steps=10)
    for _ in range(50):
        opt.step(g)
    total_lr = sum(1e-2 * min(1.0, k / 10) for k in range(1, 51))
    for k in p:
        expected = p0[k] - total_lr * g[k] / (np.abs(g[k]) + 1e-8)
        np.testing.assert_allclose(p[k], expected, rtol=1e-11)
    assert warmup_lr(5, 1.0, 10) == 0.5 and warmup_lr(50, 1.0, 10) == 1.0
    assert warmup_lr(1, 0.3, 0) == 0.3


def test_adamw_decay_closed_form():
    # Zero gradient: Adam's update is 0/(0 + ε) = 0 and AdamW only decays, p_k = p₀(1 − lr·λ)^k.
    rng = np.random.default_rng(1)
    p = make(rng)
    p0 = {k: v.copy() for k, v in p.items()}
    opt = AdamW(p, lr=0.1, weight_decay=0.5)
    for _ in range(7):
        opt.step({k: np.zeros_like(v) for k, v in p.items()})
    for k in p:
        # 7 multiplications by (1 − lr·λ) against one power: ≤ 8 roundings ≈ 2e-15.
        np.testing.assert_allclose(p[k], p0[k] * 0.95**7, rtol=1e-14)


def test_coupled_weight_decay_first_step():
    # Adam with L2 decay: the first step uses g + λp, so p₁ = p₀ − lr·sign(g + λp₀) for ε → 0.
    rng = np.random.default_rng(2)
    p = make(rng)
    p0 = {k: v.copy() for k, v in p.items()}
    g = make(rng)
    Adam(p, lr=1e-3, weight_decay=0.1, eps=1e-300).step(g)
    for k in p:
        np.testing.assert_allclose(p[k], p0[k] - 1e-3 * np.sign(g[k] + 0.1 * p0[k]), rtol=1e-13)


def test_clip_grad_norm_closed_form():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}  # global norm 5
    assert global_norm(g) == 5.0
    norm = clip_grad_norm(g, 1.0)
    assert norm == 5.0
    # One multiplication by the same coefficient: exact to 1 ulp.
    np.testing.assert_allclose(g["a"], [3 / (5 + 1e-6), 0], rtol=1e-15)
    np.testing.assert_allclose(g["b"], [[0, 4 / (5 + 1e-6)]], rtol=1e-15)
    small = {"a": np.array([0.1])}
    clip_grad_norm(small, 1.0)
    assert small["a"][0] == 0.1  # below the bound: untouched
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, 0.0)


def test_state_round_trip_is_exact():
    rng = np.random.default_rng(3)
    grads = [make(rng, np.float32) for _ in range(20)]
    p = make(rng, np.float32)
    opt = AdamW(p, lr=1e-2, clip_norm=0.5, warmup_steps=5)
    ema = EMA(p, decay=0.9)
    for g in grads[:10]:
        opt.step(g)
        ema.update(p)
    saved_p = {k: v.copy() for k, v in p.items()}
    saved_opt, saved_ema = opt.state_dict(), ema.state_dict()
    assert saved_opt["step"] == 10 and saved_ema["num_updates"] == 10
    for g in grads[10:]:
        opt.step(g)
        ema.update(p)
    q = {k: v.copy() for k, v in saved_p.items()}
    opt2 = AdamW(q, lr=1e-2, clip_norm=0.5, warmup_steps=5)
    opt2.load_state_dict(saved_opt)
    ema2 = EMA(q, decay=0.9)
    ema2.load_state_dict(saved_ema)
    for g in grads[10:]:
        opt2.step(g)
        ema2.update(q)
    for k in p:
        np.testing.assert_array_equal(q[k], p[k])
        np.testing.assert_array_equal(ema2.params[k], ema.params[k])


def test_ema_closed_form():
    # Tracking a constant p from p̄₀: p̄_k = p + (p̄₀ − p)·δ^k.
    start = {"w": np.array([1.0, -2.0])}
    target = {"w": np.array([3.0, 5.0])}
    ema = EMA(start, decay=0.8)
    for _ in range(6):
        ema.update(target)
    # 6 updates of two roundings each against the closed form: ~12 ulp, below 1e-14.
    np.testing.assert_allclose(ema.params["w"], [3 - 2 * 0.8**6, 5 - 7 * 0.8**6], rtol=1e-14)
    start["w"][0] = 99.0  # the average holds its own copy
    assert ema.params["w"][0] != 99.0


def test_optimizer_errors():
    p = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match=r"missing \['w'\], unexpected \['v'\]"):
        Adam(p).step({"v": np.zeros(3)})
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(2,\)"):
        Adam(p).step({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="lr must be > 0"):
        Adam(p, lr=0)
    with pytest.raises(ValueError, match="betas"):
        Adam(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="decay"):
        EMA(p, decay=1.0)
    with pytest.raises(ValueError, match="missing"):
        Adam(p).load_state_dict({"step": 1})


# --------------------------------------------------------------------------------------
# Against PyTorch
# --------------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize(
    "kind, kw",
    [
        ("adam", {}),
        ("adam", {"weight_decay": 0.05}),
        ("adamw", {"weight_decay": 0.05}),
        ("adam", {"clip": 0.3}),
        ("adam", {"eps": 1e-3, "betas": (0.5, 0.9)}),
    ],
)
def test_adam_matches_torch_over_many_steps(kind, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    p = make(rng)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    clip = kw.pop("clip", None)
    ours = (AdamW if kind == "adamw" else Adam)(p, lr=1e-2, clip_norm=clip, **kw)
    theirs = (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(
        list(tp.values()), lr=1e-2, **kw
    )
    for _ in range(200):
        g = make(rng)
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(tp.values()), clip)
        theirs.step()
        ours.step(g)
    # Same formulas in float64, different operation order (torch uses lerp for m): the
    # difference stays at a few ulp per step and does not grow, well inside 1e-10.
    for k in p:
        np.testing.assert_allclose(p[k], tp[k].detach().numpy(), rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    seed=seeds,
    dtype=st.sampled_from([np.float32, np.float64]),
    wd=st.sampled_from([0.0, 0.05]),
    decoupled=st.booleans(),
    clip=st.sampled_from([None, 0.1, 1e6]),
    warmup=st.sampled_from([0, 3]),
)
def test_fused_adam_is_bitwise_the_numpy_path(seed, dtype, wd, decoupled, clip, warmup):
    # The one-pass kernel evaluates the NumPy path's expressions in the same order and dtype
    # (fastmath off), so after several steps the parameters and moments are identical bits.
    # Any reordering (e.g. m/den·step vs m·step/den) shows up as ulp differences within a
    # step or two; clip=0.1 clips every step, 1e6 never does.
    rng = np.random.default_rng(seed)
    shapes = {"w": (7, 5), "b": (5,), "s": (1,)}
    p0 = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    runs = []
    for fused in (True, False):
        params = {k: v.copy() for k, v in p0.items()}
        opt = Adam(
            params, lr=3e-3, weight_decay=wd, decoupled=decoupled, clip_norm=clip,
            warmup_steps=warmup, fused=fused,
        )  # fmt: skip
        grng = np.random.default_rng(seed + 1)
        for _ in range(6):
            g = {k: grng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
            if seed % 2:  # a strided gradient: the kernel runs per parameter, not all at once
                g["b"] = np.repeat(g["b"], 2)[::2]
            opt.step(g)
        runs.append((params, opt.exp_avg, opt.exp_avg_sq))
    for a, b in zip(*runs, strict=True):
        for k in shapes:
            np.testing.assert_array_equal(a[k], b[k])
