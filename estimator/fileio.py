"""Atomic file writes: nothing the user had is lost when a write fails half-way."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from estimator.errors import InputFileError


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically and return ``path``.

    The bytes go to a temporary file in the destination folder, are flushed to disk, then ``os.replace`` puts
    the file in place, so a failure leaves any previous file unchanged. The new file keeps the permission bits
    of the file it replaces, else 0o666 less the umask.
    """
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        os.chmod(temp, _file_mode(path))
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    """Permission bits for the new file: those of the file it replaces, else 0o666 less the umask."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_model_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path when it names a readable file; else InputFileError with one line saying what to do.

    Light on purpose (no onnx, no numpy): the command line calls it before any heavy import, so that a wrong
    path is reported at once.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file; give the path of an .onnx model")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory; give the path of an .onnx model file inside it")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{p}: cannot be read; check its permissions")
    return p
