"""Checkpoints: exact round trip, atomic writes, and a clear error for every broken file."""

import json
import os
import zipfile

import numpy as np
import pytest

from npddpm.io import (
    CheckpointError,
    arrays_digest,
    checkpoint_digest,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    write_json,
    write_text,
)


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
    assert header["format_version"] == 2
    assert header["sha256"] == checkpoint_digest(arrays(), header)
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


def _rewrite_header(p, edit):
    """Rewrite checkpoint ``p`` with ``edit(header)`` applied and the arrays kept."""
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with np.load(p) as z:
        header = json.loads(z["__header__"].tobytes().decode())
    edit(header)
    import io as _io

    buf = _io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    members["__header__.npy"] = buf.getvalue()
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.update(step=8),
        lambda h: h["config"].update(lr=1e-2),
        lambda h: h["rng"]["state"].update(state=h["rng"]["state"]["state"] + 1),
        lambda h: h.update(extra=1),
        lambda h: h.update(format_version=1),  # a v2 file cannot pass for v1
    ],
    ids=["step", "config", "rng", "added-key", "version-1"],
)
def test_edited_header_is_detected(tmp_path, edit):
    rng = {"bit_generator": "PCG64", "state": {"state": 2**100 + 7, "inc": 5}}
    p = save_checkpoint(
        tmp_path / "c.npz", arrays(), {"step": 7, "config": {"lr": 1e-3}, "rng": rng}
    )
    load_checkpoint(p)
    _rewrite_header(p, lambda h: None)  # a rewrite alone changes nothing
    load_checkpoint(p)
    _rewrite_header(p, edit)
    with pytest.raises(CheckpointError, match=r"c\.npz: corrupted or edited|c\.npz: corrupted"):
        load_checkpoint(p)


def test_version_1_checkpoints_still_load(tmp_path):
    # format 1 (npddpm before the header digest): sha256 over the arrays only
    p = tmp_path / "old.npz"
    header = {"format": "npddpm-checkpoint", "format_version": 1, "step": 3}
    header["sha256"] = arrays_digest(arrays())
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(p, __header__=blob, **arrays())
    got, h = load_checkpoint(p)
    assert h["step"] == 3 and np.array_equal(got["w"], arrays()["w"])
    np.savez(p, __header__=blob, **{**arrays(), "b": np.arange(5) + 1})
    with pytest.raises(CheckpointError, match=r"old\.npz: corrupted checkpoint \(SHA-256"):
        load_checkpoint(p)


@pytest.mark.parametrize("header", [[1, 2], "step=1", None, 3])
def test_header_must_be_a_dict(tmp_path, header):
    with pytest.raises(TypeError, match=r"header must be a dict"):
        save_checkpoint(tmp_path / "c.npz", arrays(), header)
    with pytest.raises(TypeError, match=r"arrays must be a dict"):
        save_checkpoint(tmp_path / "c.npz", [np.ones(2)], {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"header keys must be strings"):
        save_checkpoint(tmp_path / "c.npz", arrays(), {1: 2})
    assert os.listdir(tmp_path) == []


def test_files_are_written_with_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.npz", arrays(), {})
        write_json(tmp_path / "m.json", {"a": 1})
        write_text(tmp_path / "t.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["c.npz", "m.json", "t.txt", "plain.txt"], 0o644)


def test_stale_temp_files_are_removed(tmp_path):
    save_checkpoint(tmp_path / "c.npz", arrays(), {})
    stale = [".c.npz.abcd1234.tmp", ".c.npz.k_9zq0xw.tmp", ".log.jsonl.0123abcd.tmp"]
    keep = [".c.npz.tmp", "c.npz.abcd1234.tmp", ".other.abcd1234.tmpx", "notes.txt"]
    for name in stale + keep:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".d.npz.abcd1234.tmp").mkdir()  # not a file: kept
    removed = remove_stale_temp_files(tmp_path, ["c.npz"])
    assert sorted(p.name for p in removed) == sorted(stale[:2])
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [stale[2]]
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(["c.npz", ".d.npz.abcd1234.tmp", *keep])
    assert remove_stale_temp_files(tmp_path / "missing") == []
