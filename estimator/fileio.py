"""Safe file access: inputs checked before they are opened, and atomic writes (nothing is lost half-way)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from estimator.errors import InputFileError

#: Largest file read whole as an input: a protobuf (an ONNX model without its external data) cannot exceed
#: 2 GiB, and a larger table is not a measurement table of this project (bytes).
MAX_INPUT_BYTES = 2 << 30


def check_input_file(
    path: str | os.PathLike[str], *, what: str, hint: str, max_bytes: int = MAX_INPUT_BYTES
) -> Path:
    """Check that ``path`` names a regular, readable file of at most ``max_bytes`` bytes, without opening it.

    Only ``stat`` is called, so a FIFO, a device (``/dev/zero``) or a socket is refused before anything could
    block on it or read it without end. ``what`` names the file in the message ("model", "measurement
    table"); ``hint`` says what to give instead. Returns the path; raises InputFileError in one line.
    """
    path = Path(path)
    shown = repr(str(path)) if any(c in str(path) for c in "\n\r\t") else str(path)
    if any(c in str(path) for c in "\n\r\0"):
        raise InputFileError(f"the {what} path {shown} contains a line break or NUL; {hint}")
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputFileError(f"{shown}: no such file; {hint}") from None
    except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES on a folder, ENOTDIR ...
        raise InputFileError(f"{_short(shown)}: cannot be read ({exc.strerror}); {hint}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputFileError(f"{shown}: is a directory; {hint}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise InputFileError(f"{shown}: is {kind}, not a regular file; {hint}")
    if info.st_size > max_bytes:
        raise InputFileError(
            f"{shown}: is {info.st_size / 2**30:.1f} GiB, larger than any {what} can be "
            f"({max_bytes / 2**30:.0f} GiB); {hint}"
        )
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{shown}: cannot be read (permission denied); check its permissions")
    return path


def _short(text: str, limit: int = 120) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (a path too long for the file system)."""
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


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
    """``path`` as a Path when it names a readable model file; else InputFileError with one line saying what to do.

    Light on purpose (no onnx, no numpy): the command line calls it before any heavy import, so that a wrong
    path is reported at once. Same checks as :func:`check_input_file` (a FIFO or device is never opened).
    """
    return check_input_file(path, what="model", hint="give the path of an .onnx model file")
