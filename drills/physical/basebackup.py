"""The ``kind = "basebackup"`` source: ``pg_basebackup`` output (tar, tar.gz or plain) and its WAL archive.

**choose** lists the store's directory (a key pattern dates a backup by its name, else its
mtime); for a target, the newest backup that *ended* by it (``backup_label`` from the tar's head +
the archive's ``.backup`` STOP TIME). **materialize** extracts through tarfile's ``data`` filter
(absolute names, ``..``, links out and devices refused before anything is written) or copies a
plain directory refusing links. **fetch_wal** copies the segments from the backup's start on
(and the ``.history`` files) into scratch; with ``wal = "s3://bucket/prefix/"`` it lists that
prefix (segments directly under it, plain, ``.gz`` or ``.bz2``) and downloads them with the store's
endpoint and keys in drillbook's own process (drills/physical/s3_wal.py, shared with barman).
**archive_listing** gives the point-in-time steps the segments and the ``.backup`` files' backups.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile  # reading backup_label from a tar's head only: extraction is tars.extract_tar
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from checks import redact
from checks.backups import BackupObject, compile_key_pattern
from checks.barman_info import WalObject, wal_listing
from checks.errors import BackupRefused, DrillbookError, NoBackupFound, RestoreFailed
from checks.pitr import SEGMENT, first_missing, parse_backup_history
from drills.deadlines import Deadline
from drills.pitr_sample import WalListing as ArchiveListing
from drills.pitr_sample import check_segment_size, list_wal
from drills.stores import S3Store
from drills.targets import StoreSpec

from . import s3_wal
from .source import Chosen, WalCopy
from .tars import extract_tar

DEFAULT_SEGMENT_SIZE = 16 << 20

HISTORY = re.compile(r"[0-9A-F]{8}\.history")


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


def _ended(entry: Path, stop_time: Callable[[str], datetime | None]) -> datetime | None:
    """When a backup ended, from its ``backup_label`` (the first tar member) and the archive's
    ``.backup`` file for its start segment (``stop_time``)."""
    start = start_segment(entry)
    return stop_time(start) if start else None


def start_segment(entry: Path) -> str | None:
    """The WAL segment a store entry's backup starts in, from its ``backup_label``; None if unreadable."""
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
    return start.group(1) if start else None


class BaseBackupSource:
    """pg_basebackup backups in ``spec.url`` and their WAL archive ``spec.wal`` (a directory or s3://)."""

    kind = "basebackup"
    format = "pg_basebackup"

    def __init__(self, spec: StoreSpec) -> None:
        if spec.wal is None:
            raise RestoreFailed(f"store `{spec.name}` has no WAL archive", store=spec.name)
        self.spec = spec
        self.wal_dir = Path(spec.wal)
        self.archive = redact.redact(spec.wal)
        self._wal_s3: S3Store | None = None
        if spec.wal.startswith("s3://"):
            redact.register(spec.secret_access_key or "")
            self._wal_s3 = S3Store(replace(spec, url=spec.wal))
        self._listing: ArchiveListing | None = None
        self._objects: dict[str, WalObject] = {}

    def archive_listing(self) -> ArchiveListing:
        """The archive's segments and the backups its ``.backup`` files describe (listed once)."""
        if self._listing is None:
            listing = list_wal(self.wal_dir) if self._wal_s3 is None else self._list_s3(self._wal_s3)
            # The archive's `.backup` files also name backups this store does not hold (deleted ones, a
            # replica's): only the store's own bound the sampling window and the continuity check.
            try:
                held = {start_segment(self.spec.path / obj.key) for obj, _ in list_base_backups(self.spec)}
            except NoBackupFound:
                held = set()
            self._listing = replace(listing, backups=[b for b in listing.backups if b.start_segment in held])
        return self._listing

    def _list_s3(self, store: S3Store) -> ArchiveListing:
        found = wal_listing([(o.key, o.size) for o in store.list()], store.prefix, flat=True)
        self._objects = {**found.segments, **found.history}
        backups = []
        for name, obj in found.history.items():
            if obj.compression is None and obj.size < 65536 and name.endswith(".backup"):
                parsed = parse_backup_history(name, store.read_text(obj.key) or "")
                if parsed is not None:
                    backups.append(parsed)
        plain = [o.size for o in found.segments.values() if o.compression is None]
        size = plain[-1] if plain else DEFAULT_SEGMENT_SIZE
        if found.segments and not plain:  # a compressed archive: the newest segment, fetched, tells the size
            newest = max(found.segments)
            with tempfile.TemporaryDirectory(prefix="drillbook-wal-size-") as probe:
                size = s3_wal.download(store, found.segments[newest].key, found.segments[newest].compression,
                                       Path(probe) / newest, store_name=self.spec.name)
        check_segment_size(size, max(found.segments, default=""), self.archive)
        return ArchiveListing(where=self.archive, segments=sorted(found.segments), backups=backups,
                              segment_bytes=size, fetch=self._fetch_s3)

    def _fetch_s3(self, name: str, dest: Path) -> None:
        assert self._wal_s3 is not None
        obj = self._objects[name]
        s3_wal.download(self._wal_s3, obj.key, obj.compression, dest / name, store_name=self.spec.name)

    def _stop_time(self, start_segment: str) -> datetime | None:
        """STOP TIME of the archive's ``.backup`` file for a backup starting in ``start_segment``."""
        try:
            backups = self.archive_listing().backups
        except (DrillbookError, OSError):
            return None  # judged again, loudly, when the WAL is fetched
        stops = [b.stop_time for b in backups if b.start_segment == start_segment]
        return max(stops) if stops else None

    def choose(self, target: datetime | None) -> Chosen:
        """The newest backup; for a target, the newest that *ended* by it (its ``.backup`` file's STOP
        TIME, read before extracting; the key's time when the archive has no such file)."""
        backups = [(b, t, _ended(self.spec.path / b.key, self._stop_time) if target else None)
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
            end = _ended(self.spec.path / backup.key, self._stop_time)
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
        """Copy (or download) the segments from ``first_segment`` on and ``.history`` files into ``dest``."""
        if self._wal_s3 is not None:
            return self._fetch_wal_s3(first_segment, dest)
        try:
            names = sorted(p.name for p in self.wal_dir.iterdir() if p.is_file() and not p.is_symlink())
        except OSError as exc:
            raise RestoreFailed(f"cannot list the WAL archive {self.wal_dir}: {exc.strerror or exc}",
                                store=self.spec.name) from exc
        segments = self._segments_from(names, first_segment)
        copied = 0
        for name in names:
            if (name in segments) or HISTORY.fullmatch(name):
                shutil.copyfile(self.wal_dir / name, dest / name)
                copied += (self.wal_dir / name).stat().st_size
        last = segments[-1]
        missing = first_missing(segments, first_segment, last, (self.wal_dir / last).stat().st_size)
        return WalCopy(last=last, first_missing=missing, count=len(segments), bytes=copied)

    def _segments_from(self, names: list[str], first_segment: str) -> list[str]:
        segments = [n for n in names if SEGMENT.fullmatch(n) and n[:8] == first_segment[:8]
                    and n >= first_segment]
        if not segments:
            raise RestoreFailed(f"the WAL archive {self.archive} holds no segment from {first_segment} on "
                                f"(the base backup's start)", segment=first_segment, store=self.spec.name)
        return segments

    def _fetch_wal_s3(self, first_segment: str, dest: Path) -> WalCopy:
        """Download the prefix's segments from ``first_segment`` on (decompressed) and ``.history`` files."""
        assert self._wal_s3 is not None
        self._listing = None  # listed afresh: the archive grows between a sampling step's restores
        listing = self.archive_listing()
        segments = self._segments_from(listing.segments, first_segment)
        total, sizes = 0, set()
        for name in segments:
            size = s3_wal.download(self._wal_s3, self._objects[name].key, self._objects[name].compression,
                                   dest / name, store_name=self.spec.name)
            sizes.add(size)
            total += size
        for name, obj in self._objects.items():
            if HISTORY.fullmatch(name):
                total += s3_wal.download(self._wal_s3, obj.key, obj.compression, dest / name,
                                         store_name=self.spec.name)
        size = s3_wal.segment_bytes(sizes, self.archive, store_name=self.spec.name)
        last = segments[-1]
        missing = first_missing(segments, first_segment, last, size)
        return WalCopy(last=last, first_missing=missing, count=len(segments), bytes=total)

    def segment_location(self, segment: str) -> str | None:
        """The S3 key where the archive keeps (or should keep) a segment; None for a directory."""
        if self._wal_s3 is None:
            return None
        before = [o for n, o in sorted(self._objects.items()) if SEGMENT.fullmatch(n) and n < segment]
        suffix = before[-1].key.rsplit("/", 1)[-1][24:] if before else ""  # as its neighbour is stored
        return f"s3://{self._wal_s3.bucket}/{self._wal_s3.prefix}{segment}{suffix}"
