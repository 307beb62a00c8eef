"""Checkpoints: exact round trip, atomic writes, and a clear error for every broken file."""

import json
import os
import zipfile

import numpy as np
import pytest

from npddpm.io import CheckpointError, arrays_digest, load_checkpoint, save_checkpoint


def arrays():
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b": np.arange(5),
        "adam/exp_avg/w": np.zeros((3, 4)),
    }


def test_round_trip_is_exact(tmp_path):
    p = save_checkpoint(tmp_path / "c.npz", arrays(), {"step": 7, "config": {"lr": 1e-3}})
    got, header = load_checkpoint(p)
    for k, v in arrays().items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    assert header["step"] == 7 and header["config"] == {"lr": 1e-3}
    assert header["sha256"] == arrays_digest(arrays())
    # no temporary files left behind
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_digest_depends_on_names_dtypes_shapes_values():
    a = arrays()
    base = arrays_digest(a)
    assert arrays_digest({**a, "b": a["b"].astype(np.int32)}) != base
    assert arrays_digest({**a, "b": a["b"].reshape(5, 1)}) != base
    assert arrays_digest({**a, "b": a["b"] + 1}) != base
    assert arrays_digest({"c" if k == "b" else k: v for k, v in a.items()}) != base


def test_truncated_file(tmp_path):
    p = save_checkpoint(tmp_path / "c.npz", arrays(), {})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.npz: truncated or corrupted"):
        load_checkpoint(p)


def test_altered_array_is_detected(tmp_path):
    p = save_checkpoint(tmp_path / "c.npz", arrays(), {})
    # rewrite the zip with one array changed but the old header kept
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with np.load(p) as z:
        w = z["w"].copy()
    w[0, 0] += 1
    import io as _io

    buf = _io.BytesIO()
    np.save(buf, w)
    members["w.npy"] = buf.getvalue()
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(p)


def test_newer_format_and_foreign_files(tmp_path):
    p = tmp_path / "new.npz"
    header = {"format": "npddpm-checkpoint", "format_version": 99, "sha256": arrays_digest({})}
    np.savez(p, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    with pytest.raises(CheckpointError, match="newer than this npddpm"):
        load_checkpoint(p)
    q = tmp_path / "plain.npz"
    np.savez(q, x=np.ones(3))
    with pytest.raises(CheckpointError, match="no header"):
        load_checkpoint(q)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")
    r = tmp_path / "text.npz"
    r.write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.npz"):
        load_checkpoint(r)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    p = save_checkpoint(tmp_path / "c.npz", arrays(), {"step": 1})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(p, arrays(), {"step": object()})
    with pytest.raises(ValueError, match="dtype object"):
        save_checkpoint(p, {"x": np.array([None])}, {})
    assert load_checkpoint(p)[1]["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_unwritable_directory(tmp_path):
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "missing-dir" / "c.npz", arrays(), {})
