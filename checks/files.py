"""Writing what leaves a run so that a failed write leaves nothing half-written, and says so.

Every report, evidence file and metrics file goes through :func:`write_atomic`: the bytes go to a
temp file in the same directory, are fsynced, and replace the target with ``os.replace`` (then
the directory is fsynced), so a reader sees the old file or the new one, never a truncated one —
a half ``results.json`` would otherwise pass as evidence. A disk that is full, read-only or not
ours is a :class:`~checks.errors.DiskError` naming the path and the phase (:func:`disk_error`),
never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from checks.errors import DiskError

# What each errno means to the person who has to fix it, and what to do about it.
_REASONS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space on that filesystem, or point {what} elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "raise the quota, or point {what} elsewhere"),
    errno.EROFS: ("read-only file system", "point {what} at a writable directory"),
    errno.EACCES: ("permission denied", "make it writable for this user, or point {what} elsewhere"),
    errno.EPERM: ("operation not permitted", "make it writable for this user, or point {what} elsewhere"),
}


# The errnos that mean "this place cannot take the bytes", as opposed to a read or network fault.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def disk_error(exc: OSError, *, path: Path | str, phase: str, what: str = "the output") -> DiskError:
    """``exc`` as a :class:`DiskError`: "<phase>: cannot write <path>: <reason>", with a hint.

    ``what`` names the setting that chooses the place (``--out``, ``TMPDIR``) for the hint.
    """
    reason, hint = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc), "check {what}"))
    where = exc.filename if exc.filename and str(exc.filename) != str(path) else None
    detail = f" ({where})" if where else ""
    return DiskError(f"{phase}: cannot write {path}{detail}: {reason}", path=str(path), phase=phase,
                     errno=exc.errno, hint=hint.format(what=what))


def write_atomic(
    path: Path, data: str | bytes, *, phase: str, what: str = "--out", mode: int = 0o644
) -> Path:
    """Replace ``path`` with ``data`` (str as UTF-8) all at once; :class:`DiskError` on failure.

    The parent directory is created when missing. On any failure the temp file is removed and
    ``path`` is left as it was (absent, or its previous content).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
        tmp = None
        _fsync_directory(path.parent)
    except OSError as exc:
        raise disk_error(exc, path=path, phase=phase, what=what) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; filesystems that cannot fsync a directory are fine as is."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
