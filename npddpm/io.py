"""Checkpoints: NumPy arrays plus a JSON header in one ``.npz`` file, no pickle, atomic,
checksummed.

Layout: every array is stored under its own name; the header is stored as the UTF-8 bytes of a
JSON document in the uint8 array ``__header__``. The header holds ``format`` (the format
name), ``format_version``, the caller's metadata, and ``sha256``: a digest over every array's
name, dtype, shape and bytes, in sorted name order, and (format version 2) over the canonical
JSON of the rest of the header (config, step, RNG state, …), so that a file whose arrays or
header were altered after writing is detected. Version 1 files (whose digest covers only the
arrays) are still read, with that weaker check: refusing them would lose the runs they hold,
and a version 2 file cannot pass as version 1 by editing its version (its digest differs from
the arrays-only one).

Files are written to a temporary file ``.<name>.<8 characters>.tmp`` in the target directory,
flushed, fsynced and renamed into place, so a crash never leaves a partial checkpoint under the
final name; :func:`remove_stale_temp_files` deletes the temporary files a kill during a write
leaves behind. Files are created with mode ``0o666`` less the umask, as ``open`` creates them
(0644 under the usual umask 022).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "arrays_digest",
    "checkpoint_digest",
    "load_checkpoint",
    "remove_stale_temp_files",
    "save_checkpoint",
    "write_json",
    "write_text",
]

FORMAT = "npddpm-checkpoint"
FORMAT_VERSION = 2
#: format versions whose ``sha256`` covers the arrays only (read with that weaker check)
_ARRAYS_ONLY_DIGEST_VERSIONS = (1,)
_HEADER = "__header__"
# Names an array cannot have: the header's, and np.savez's own parameters (an array passed as
# ``allow_pickle=`` would be taken for the flag and silently not written; ``file=`` clashes).
_RESERVED = (_HEADER, "file", "allow_pickle")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, truncated, corrupted, or a newer format."""


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over (name, dtype, shape, C-order bytes) of every array, sorted by name."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(a.dtype.str.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def checkpoint_digest(arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> str:
    """SHA-256 over the arrays (as :func:`arrays_digest`) and the canonical JSON (sorted keys,
    no NaN) of ``header`` without its ``sha256`` entry: the digest of format version 2."""
    h = hashlib.sha256(arrays_digest(arrays).encode())
    meta = {k: v for k, v in header.items() if k != "sha256"}
    h.update(json.dumps(meta, sort_keys=True, allow_nan=False).encode())
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` and a JSON ``header`` atomically to ``path`` (a ``.npz`` file).

    Raises
    ------
    TypeError
        If ``arrays`` or ``header`` is not a dict (a mapping with string keys).
    ValueError
        For an array name that is reserved or not a string, an object-dtype array, or a
        header that is not JSON-serialisable.
    OSError
        If the directory cannot be written (the final path is then untouched).
    """
    path = Path(path)
    for arg, value in (("arrays", arrays), ("header", header)):
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{arg} must be a dict with string keys, got {type(value).__name__} "
                f"{value!r:.60}; e.g. header={{'step': 100}}"
            )
    bad_keys = [k for k in header if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(f"header keys must be strings, got {bad_keys[0]!r}")
    clean: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or name in _RESERVED:
            raise ValueError(f"array name {name!r} is not allowed in a checkpoint")
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; checkpoints hold numeric arrays")
        clean[name] = arr
    meta = dict(header)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION)
    try:
        meta["sha256"] = checkpoint_digest(clean, meta)
        blob = json.dumps(meta, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint header is not JSON-serialisable: {exc}") from None
    payload = {_HEADER: np.frombuffer(blob, dtype=np.uint8), **clean}
    # ignore: the stubs type savez's keywords as arrays or the bool allow_pickle, and
    # ``payload`` cannot hold "allow_pickle" (a reserved name, rejected above)
    atomic_write(path, lambda f: np.savez(f, **payload))  # type: ignore[arg-type]
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it and rename it into place;
    on any failure the temporary file is removed and ``path`` is left as it was.

    The temporary file is created by ``os.open`` with mode 0o666 (less the umask), not by
    ``tempfile.mkstemp`` (always 0600), so the result has the permissions ``open`` gives.
    Every file npddpm writes (checkpoints, JSON, PNGs, reports, samples) goes through here.
    Returns ``path`` as a :class:`~pathlib.Path`."""
    path = Path(path)
    parent = path.parent
    while True:
        tmp = str(parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 2**32 names
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temp_files(
    directory: str | os.PathLike, targets: Sequence[str] | None = None
) -> list[Path]:
    """Delete the temporary files that a write to ``directory/<target>`` interrupted by a
    kill left behind (``.<target>.<8 characters>.tmp``; the names of npddpm 0.x's
    ``tempfile.mkstemp`` and of today's writes), for the given target file names (default:
    any). Returns the paths removed. Only call it while no other process writes there."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        m = _TEMP_NAME.match(entry.name)
        if m is None or (targets is not None and m.group("target") not in targets):
            continue
        if entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
            except FileNotFoundError:  # pragma: no cover - removed meanwhile
                continue
            removed.append(entry)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically (as :func:`save_checkpoint`)."""
    path = Path(path)
    blob = text.encode()
    atomic_write(path, lambda f: f.write(blob))
    return path


def write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> Path:
    """Write ``payload`` as indented JSON, atomically (as :func:`save_checkpoint`)."""
    path = Path(path)
    blob = json.dumps(payload, indent=1, sort_keys=sort_keys).encode()
    atomic_write(path, lambda f: f.write(blob))
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(arrays, header)``.

    Raises
    ------
    CheckpointError
        Naming the file, if it is missing, not a checkpoint, truncated or corrupted (bad zip,
        bad header, digest mismatch), or written by a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _HEADER not in z.files:
                raise CheckpointError(f"{path}: not an npddpm checkpoint (no header)")
            header = json.loads(z[_HEADER].tobytes().decode())
            arrays = {name: z[name] for name in z.files if name != _HEADER}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an npddpm checkpoint (format {header!r:.60})")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this npddpm reads "
            f"({FORMAT_VERSION}); upgrade npddpm"
        )
    if version in _ARRAYS_ONLY_DIGEST_VERSIONS:
        if arrays_digest(arrays) != header.get("sha256"):
            raise CheckpointError(f"{path}: corrupted checkpoint (SHA-256 of the arrays differs)")
        return arrays, header
    try:
        expected = checkpoint_digest(arrays, header)
    except (TypeError, ValueError):  # a header JSON cannot re-serialise (e.g. NaN): edited
        expected = ""
    if expected != header.get("sha256"):
        raise CheckpointError(
            f"{path}: corrupted or edited checkpoint (the SHA-256 of its arrays and header "
            "differs from the one it was written with)"
        )
    return arrays, header
