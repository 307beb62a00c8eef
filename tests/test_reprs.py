"""Useful reprs: the models, the optimisers and the conformance report (str = its table)."""

from __future__ import annotations

import numpy as np

from npddpm.conformance.report import Report, Row
from npddpm.nn import MLP, Adam, AdamW, UNet


def test_mlp_repr():
    m = MLP(2, hidden=16, num_blocks=1, dtype=np.float32)
    n = sum(p.size for p in m.params.values())
    r = repr(m)
    assert r.startswith("MLP(dim=2, hidden=16, num_blocks=1")
    assert "dtype=float32" in r and f"params={n:,}" in r


def test_unet_repr():
    u = UNet(channels=1, base_channels=8, channel_mult=(1,), num_res_blocks=1, groups=4)
    r = repr(u)
    assert r.startswith("UNet(channels=1, base_channels=8, channel_mult=(1,)")
    assert "dtype=" in r and "params=" in r


def test_adam_reprs():
    params = {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}
    r = repr(Adam(params, lr=2e-4))
    assert r.startswith("Adam(lr=0.0002, betas=(0.9, 0.999)")
    assert "params=16 in 2 arrays" in r and "dtype=float32" in r and "step=0" in r
    assert repr(AdamW(params)).startswith("AdamW(lr=0.001")
    assert "weight_decay=0.01" in repr(AdamW(params))


def test_report_repr_and_str():
    rows = [
        Row("mean", "[0, 9]", 1e-9, 1e-9, 0.1, "ok"),
        Row("variance", "[0, 9]", 1.0, 1.0, 9.0, "FAIL", diagnosis="a fault"),
    ]
    rep = Report("toy", rows)
    assert repr(rep) == "Report('toy', 2 rows, 0 known, 1 failures)"
    assert str(rep) == rep.table()
    assert "DOES NOT CONFORM" in str(rep) and "variance" in str(rep)
    assert "conforms" in repr(Report("ok", rows[:1]))
