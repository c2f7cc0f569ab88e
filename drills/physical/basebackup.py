"""The ``kind = "basebackup"`` source: ``pg_basebackup`` output (tar, tar.gz or plain) and a WAL directory.

**choose** lists the store's directory (a key pattern dates a backup by its name, else its
mtime); for a target, the newest backup that *ended* by it (``backup_label`` from the tar's head +
the archive's ``.backup`` STOP TIME). **materialize** extracts through tarfile's ``data`` filter
(absolute names, ``..``, links out and devices refused before anything is written) or copies a
plain directory refusing links. **fetch_wal** copies the segments from the backup's start on
(and the ``.history`` files) into scratch.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile  # reading backup_label from a tar's head only: extraction is tars.extract_tar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from checks.backups import BackupObject, compile_key_pattern
from checks.errors import BackupRefused, NoBackupFound, RestoreFailed
from checks.pitr import SEGMENT, first_missing
from drills.deadlines import Deadline
from drills.targets import StoreSpec

from .source import Chosen, WalCopy
from .tars import extract_tar

HISTORY = re.compile(r"[0-9A-F]{8}\.history")
_BACKUP_HISTORY = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")


def list_base_backups(spec: StoreSpec) -> list[tuple[BackupObject, datetime]]:
    """Every base backup directly in the store's directory and when it was taken, oldest first.

    A backup is a ``*.tar``/``*.tar.gz`` file, a directory holding ``base.tar[.gz]``, or a plain
    data directory (``PG_VERSION``). With a key pattern its date comes from the name (names that
    do not match are ignored), else from the modification time.
    """
    pattern = compile_key_pattern(spec.key_pattern) if spec.key_pattern else None
    found: list[tuple[BackupObject, datetime]] = []
    try:
        entries = sorted(spec.path.iterdir())
    except OSError as exc:
        raise NoBackupFound(f"cannot list base backups in {spec.path}: {exc.strerror or exc}",
                            store=spec.name) from exc
    for entry in entries:
        if entry.is_symlink() or not (_tar_of(entry) or (entry / "PG_VERSION").is_file()):
            continue
        info = entry.stat()
        modified = datetime.fromtimestamp(info.st_mtime, UTC)
        taken = pattern.parse(entry.name) if pattern else modified
        if taken is not None:
            found.append((BackupObject(key=entry.name, size=info.st_size, last_modified=modified), taken))
    return sorted(found, key=lambda item: item[1])


def _tar_of(entry: Path) -> Path | None:
    """The base tar a store entry is or holds, else None (plain directory or no backup)."""
    if entry.is_file() and entry.name.endswith((".tar", ".tar.gz", ".tgz")):
        return entry
    for name in ("base.tar.gz", "base.tar"):
        if (entry / name).is_file():
            return entry / name
    return None


def copy_plain(source: Path, dest: Path) -> int:
    """Copy a plain-format backup, refusing any symlink (tablespaces are not supported)."""
    count = 0
    for root, dirs, files in os.walk(source):
        for name in dirs + files:
            if (Path(root) / name).is_symlink():
                raise BackupRefused(f"{source.name}: refusing link {Path(root, name).relative_to(source)}",
                                    key=source.name)
        count += len(files)
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    return count


def _ended(entry: Path, wal_dir: Path) -> datetime | None:
    """When a backup ended, from its ``backup_label`` (the first tar member) and the archive."""
    text = ""
    try:
        tar_path = _tar_of(entry)
        if tar_path is None:
            text = (entry / "backup_label").read_text(encoding="utf-8", errors="replace")
        else:
            with tarfile.open(tar_path, "r:*") as tar:
                for _, member in zip(range(5), tar, strict=False):  # pg_basebackup writes it first
                    if member.name == "backup_label" and member.isfile() and member.size < 65536:
                        stream = tar.extractfile(member)
                        text = stream.read().decode("utf-8", "replace") if stream else ""
                        break
    except (OSError, tarfile.TarError, EOFError):
        return None  # judged again, loudly, when this backup is extracted
    start = re.search(r"START WAL LOCATION: .*\(file ([0-9A-F]{24})\)", text)
    return _stop_time(wal_dir, start.group(1)) if start else None


def _stop_time(wal_dir: Path, start_segment: str) -> datetime | None:
    """The backup's end (STOP TIME) from the archive's ``.backup`` history file, when present."""
    for entry in sorted(wal_dir.glob(f"{start_segment}.*.backup")):
        if not _BACKUP_HISTORY.fullmatch(entry.name):
            continue
        with entry.open("rb") as file:  # a history file is a few lines: never read a huge one whole
            text = file.read(65536).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("STOP TIME:"):
                return _pg_time(line.partition(":")[2].strip())
    return None


def _pg_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.replace(" UTC", " +0000"), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return None


class BaseBackupSource:
    """pg_basebackup backups in ``spec.url`` and their WAL archive directory ``spec.wal``."""

    kind = "basebackup"
    format = "pg_basebackup"

    def __init__(self, spec: StoreSpec) -> None:
        if spec.wal is None:
            raise RestoreFailed(f"store `{spec.name}` has no WAL archive", store=spec.name)
        self.spec = spec
        self.wal_dir = Path(spec.wal)
        self.archive = str(self.wal_dir)

    def choose(self, target: datetime | None) -> Chosen:
        """The newest backup; for a target, the newest that *ended* by it (its ``.backup`` file's STOP
        TIME, read before extracting; the key's time when the archive has no such file)."""
        backups = [(b, t, _ended(self.spec.path / b.key, self.wal_dir) if target else None)
                   for b, t in list_base_backups(self.spec)]
        if target is not None:
            # STOP TIME has whole seconds: a backup surely ended by the target only if it stopped a
            # second before it (one ending in the target's second may end after it: PostgreSQL lands late).
            backups = [(b, t, e) for b, t, e in backups if t <= target
                       and (e + timedelta(seconds=1) if e else t) <= target]
        if not backups:
            when = f" that ended at or before {target.isoformat()}" if target else ""
            raise NoBackupFound(f"no base backup{when} in {self.spec.path} (store `{self.spec.name}`)",
                                store=self.spec.name)
        backup, taken, end = backups[-1]
        if end is None:
            end = _ended(self.spec.path / backup.key, self.wal_dir)
        return Chosen(key=backup.key, taken=taken, end=end, size=backup.size,
                      details={"last_modified": backup.last_modified.isoformat()})

    def materialize(self, chosen: Chosen, datadir: Path, deadline: Deadline) -> dict[str, Any]:
        """Extract (or copy) the backup into ``datadir``; tablespace archives are refused."""
        entry = self.spec.path / chosen.key
        tar = _tar_of(entry)
        if tar is None:
            return {"members": copy_plain(entry, datadir)}
        if entry.is_dir():
            extra = sorted(p.name for p in entry.iterdir() if p.name.endswith((".tar", ".tar.gz"))
                           and not p.name.startswith(("base.", "pg_wal.")))
            if extra:
                raise RestoreFailed(f"{entry.name}: tablespace archives are not supported yet: {extra}",
                                    key=entry.name)
        count = extract_tar(tar, datadir)
        for name in ("pg_wal.tar.gz", "pg_wal.tar"):
            if tar.parent == entry and (entry / name).is_file():
                (datadir / "pg_wal").mkdir(exist_ok=True)
                count += extract_tar(entry / name, datadir / "pg_wal")
        (datadir / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
        return {"members": count}

    def fetch_wal(self, first_segment: str, dest: Path) -> WalCopy:
        """Copy the archive's segments from ``first_segment`` on (and ``.history`` files) into ``dest``."""
        try:
            names = sorted(p.name for p in self.wal_dir.iterdir() if p.is_file() and not p.is_symlink())
        except OSError as exc:
            raise RestoreFailed(f"cannot list the WAL archive {self.wal_dir}: {exc.strerror or exc}",
                                store=self.spec.name) from exc
        segments = [n for n in names if SEGMENT.fullmatch(n) and n[:8] == first_segment[:8]
                    and n >= first_segment]
        if not segments:
            raise RestoreFailed(f"the WAL archive {self.wal_dir} holds no segment from {first_segment} on "
                                f"(the base backup's start)", segment=first_segment, store=self.spec.name)
        copied = 0
        for name in names:
            if (name in segments) or HISTORY.fullmatch(name):
                shutil.copyfile(self.wal_dir / name, dest / name)
                copied += (self.wal_dir / name).stat().st_size
        last = segments[-1]
        missing = first_missing(segments, first_segment, last, (self.wal_dir / last).stat().st_size)
        return WalCopy(last=last, first_missing=missing, count=len(segments), bytes=copied)
