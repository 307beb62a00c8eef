"""Checkpoints: NumPy arrays plus a JSON header in one ``.npz`` file, no pickle, atomic,
checksummed.

Layout: every array is stored under its own name; the header is stored as the UTF-8 bytes of a
JSON document in the uint8 array ``__header__``. The header holds ``format`` (the format
name), ``format_version``, the caller's metadata, and ``sha256``: a digest over every array's
name, dtype, shape and bytes, in sorted name order, so that a file altered after writing is
detected. Files are written to a temporary file in the target directory, flushed, fsynced and
renamed into place, so a crash never leaves a partial checkpoint under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "arrays_digest",
    "load_checkpoint",
    "save_checkpoint",
    "write_json",
]

FORMAT = "npddpm-checkpoint"
FORMAT_VERSION = 1
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


def save_checkpoint(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` and a JSON ``header`` atomically to ``path`` (a ``.npz`` file).

    Raises
    ------
    ValueError
        For an array name that is reserved or not a string, an object-dtype array, or a
        header that is not JSON-serialisable.
    OSError
        If the directory cannot be written (the final path is then untouched).
    """
    path = Path(path)
    clean: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or name in _RESERVED:
            raise ValueError(f"array name {name!r} is not allowed in a checkpoint")
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; checkpoints hold numeric arrays")
        clean[name] = arr
    meta = dict(header)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, sha256=arrays_digest(clean))
    try:
        blob = json.dumps(meta, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint header is not JSON-serialisable: {exc}") from None
    payload = {_HEADER: np.frombuffer(blob, dtype=np.uint8), **clean}
    # ignore: the stubs type savez's keywords as arrays or the bool allow_pickle, and
    # ``payload`` cannot hold "allow_pickle" (a reserved name, rejected above)
    _atomic_write(path, lambda f: np.savez(f, **payload))  # type: ignore[arg-type]
    return path


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it and rename it into place;
    on any failure the temporary file is removed and ``path`` is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
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


def write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> Path:
    """Write ``payload`` as indented JSON, atomically (as :func:`save_checkpoint`)."""
    path = Path(path)
    blob = json.dumps(payload, indent=1, sort_keys=sort_keys).encode()
    _atomic_write(path, lambda f: f.write(blob))
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
    if arrays_digest(arrays) != header.get("sha256"):
        raise CheckpointError(f"{path}: corrupted checkpoint (SHA-256 of the arrays differs)")
    return arrays, header
