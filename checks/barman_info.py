"""Barman cloud metadata, parsed (pure): ``barman-cloud-backup-list --format json`` and the ``wals/`` listing.

Both are untrusted input (whoever can write the bucket writes them): every field is type-checked,
a backup id or WAL name that does not look like one is refused (a backup id becomes part of the
keys drillbook downloads), and anything unusable raises :class:`UnusableAnswer` naming what — never
another exception. Shapes (design study A3): ``{"backups_list": [{backup.info fields}]}``; barman
≥ 3.5 adds ``end_time_iso`` (offset, microseconds), Debian's 3.4 has only ``end_time`` in
``ctime`` form (no offset, whole seconds: read as UTC and marked imprecise — drills/physical/
barman_cloud.py prefers the STOP TIME of the backup's ``.backup`` history file in the archive).

WAL objects live at ``<prefix><server>/wals/<timeline+log>/<segment>[.gz|.bz2]`` and history files
at ``…/wals/<timeline>.history``. Continuity is drillbook's own arithmetic over that listing
(:func:`checks.pitr.first_missing`): ``barman-cloud-check-wal-archive`` answers another question.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from checks.errors import UnusableAnswer
from checks.pitr import SEGMENT, first_missing
from checks.verdict import Verdict

DONE = "DONE"
# barman's backup ids: a UTC timestamp, e.g. 20261203T172813 (never an option-like string).
BACKUP_ID = re.compile(r"[0-9]{8}T[0-9]{6}")
HISTORY = re.compile(r"[0-9A-F]{8}\.history")
BACKUP_HISTORY = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")
# What drillbook can decompress itself; barman's other codecs (snappy, lz4, zstd, xz) are named.
COMPRESSIONS = {"": None, ".gz": "gzip", ".bz2": "bzip2"}
_OTHER_CODECS = (".snappy", ".lz4", ".zst", ".xz")
_UNSUPPORTED = "unsupported"
_CTIME = "%a %b %d %H:%M:%S %Y"


@dataclass(frozen=True)
class BarmanBackup:
    """One backup of ``barman-cloud-backup-list``: what choosing and restoring it needs."""

    backup_id: str
    status: str
    begin_wal: str | None = None
    end_wal: str | None = None
    begin_offset: int | None = None
    begin_time: datetime | None = None
    end_time: datetime | None = None
    end_time_precise: bool = False  # True: from end_time_iso; False: ctime read as UTC, or none
    timeline: int | None = None
    version: int | None = None  # server_version_num, e.g. 150018
    systemid: str | None = None
    error: str | None = None
    tablespaces: int = 0  # how many: refused (their paths are outside scratch)
    segment_size: int | None = None  # xlog_segment_size: what a gap is counted in

    @property
    def major(self) -> str | None:
        """The PostgreSQL major (``15`` from 150018; barman cloud needs PostgreSQL ≥ 10), else None."""
        return str(self.version // 10000) if self.version is not None else None

    @property
    def history_file(self) -> str | None:
        """The archive's backup history file (``<begin_wal>.<offset>.backup``: STOP TIME), if known."""
        if self.begin_wal is None or self.begin_offset is None:
            return None
        return f"{self.begin_wal}.{self.begin_offset:08X}.backup"

    def evidence(self) -> dict[str, object]:
        return {"backup_id": self.backup_id, "status": self.status, "begin_wal": self.begin_wal,
                "end_wal": self.end_wal, "end_time": self.end_time.isoformat() if self.end_time else None,
                "end_time_precise": self.end_time_precise, "version": self.version, "error": self.error}


def parse_backup_list(text: str | bytes, *, source: str = "barman-cloud-backup-list") -> list[BarmanBackup]:
    """The backups of a ``--format json`` answer, oldest id first; :class:`UnusableAnswer` if unusable."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnusableAnswer(f"{source} did not answer JSON: {str(exc)[:120]}", source=source) from None
    if not isinstance(data, dict) or not isinstance(data.get("backups_list"), list):
        raise UnusableAnswer(f'{source} answered JSON without a "backups_list" array', source=source,
                             hint="is this barman-cloud-backup-list --format json output?")
    backups = [_backup(item, index, source) for index, item in enumerate(data["backups_list"])]
    ids = [b.backup_id for b in backups]
    if len(set(ids)) != len(ids):
        raise UnusableAnswer(f"{source} lists a backup id twice", source=source)
    return sorted(backups, key=lambda b: b.backup_id)


def _backup(item: object, index: int, source: str) -> BarmanBackup:
    if not isinstance(item, dict):
        raise UnusableAnswer(f"{source}: backups_list[{index}] is not an object", source=source)
    backup_id = item.get("backup_id")
    if not isinstance(backup_id, str) or not BACKUP_ID.fullmatch(backup_id):
        raise UnusableAnswer(f"{source}: backups_list[{index}] has no valid backup_id (got "
                             f"{str(backup_id)[:40]!r}; expected like 20261203T172813)", source=source)
    where = f"{source}: backup {backup_id}"

    def text(name: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = item.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise UnusableAnswer(f"{where}: field {name!r} is not usable: {str(value)[:60]!r}",
                                 source=source, backup_id=backup_id)
        return value

    def number(name: str) -> int | None:
        value = item.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
            raise UnusableAnswer(f"{where}: field {name!r} is not a number: {str(value)[:60]!r}",
                                 source=source, backup_id=backup_id)
        return value

    status = text("status")
    if status is None:
        raise UnusableAnswer(f"{where} has no status", source=source, backup_id=backup_id)
    end_time, precise = _time(item, "end_time", where, source)
    begin_time, _ = _time(item, "begin_time", where, source)
    error = item.get("error")
    tablespaces = item.get("tablespaces")
    if tablespaces is not None and not isinstance(tablespaces, list):
        raise UnusableAnswer(f"{where}: tablespaces is not a list", source=source, backup_id=backup_id)
    return BarmanBackup(
        backup_id=backup_id, status=status, begin_wal=text("begin_wal", SEGMENT),
        end_wal=text("end_wal", SEGMENT), begin_offset=number("begin_offset"),
        begin_time=begin_time, end_time=end_time, end_time_precise=precise,
        timeline=number("timeline"), version=number("version"),
        systemid=text("systemid") if not isinstance(item.get("systemid"), int) else str(item["systemid"]),
        error=str(error)[:500] if error is not None else None, tablespaces=len(tablespaces or []),
        segment_size=number("xlog_segment_size"),
    )


def _time(item: dict[str, object], name: str, where: str, source: str) -> tuple[datetime | None, bool]:
    """``<name>_iso`` (precise), else ``<name>`` in ctime form read as UTC (imprecise), else None."""
    iso = item.get(f"{name}_iso")
    if isinstance(iso, str):
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(UTC), True
    raw = item.get(name)
    if raw is None and iso is None:
        return None, False
    if isinstance(raw, str):
        try:
            return datetime.strptime(raw.strip(), _CTIME).replace(tzinfo=UTC), False
        except ValueError:
            pass
    raise UnusableAnswer(f"{where}: {name} is not a time: {str(iso if iso is not None else raw)[:60]!r}",
                         source=source)


@dataclass(frozen=True)
class WalObject:
    """One archived WAL file: its name, the object key and how it is compressed (None = plain)."""

    name: str
    key: str
    size: int
    compression: str | None


@dataclass(frozen=True)
class WalListing:
    """A server's ``wals/`` prefix: segments and history files by name; what could not be used."""

    segments: dict[str, WalObject]
    history: dict[str, WalObject]  # NNNNNNNN.history and …backup files
    unsupported: tuple[str, ...] = ()  # keys drillbook cannot decompress or does not recognise

    def timeline_segments(self, first: str) -> list[str]:
        """The segment names of ``first``'s timeline at or after it, in WAL order."""
        return sorted(n for n in self.segments if n[:8] == first[:8] and n >= first)


def wal_listing(objects: list[tuple[str, int]], wals_prefix: str, *, flat: bool = False) -> WalListing:
    """Sort an S3 listing of ``wals_prefix`` (``(key, size)`` pairs) into WAL files by name.

    A segment must sit in its own ``<timeline+log>`` folder (barman's layout), or with ``flat``
    directly under the prefix (an archive_command copying ``%f`` there); a key elsewhere, or with a
    codec drillbook does not decompress, is listed as unsupported rather than guessed at.
    Two variants of one segment (plain and ``.gz``): the plain one wins.
    """
    segments: dict[str, WalObject] = {}
    history: dict[str, WalObject] = {}
    unsupported: list[str] = []
    for key, size in objects:
        if not key.startswith(wals_prefix):
            unsupported.append(key)
            continue
        rest = key[len(wals_prefix):]
        folder, _, base = rest.rpartition("/")
        name, compression = _split_codec(base)
        if name is None or compression == _UNSUPPORTED:
            unsupported.append(key)
            continue
        found = WalObject(name=name, key=key, size=size, compression=compression)
        if SEGMENT.fullmatch(name) and folder == ("" if flat else name[:16]):
            if name not in segments or segments[name].compression is not None:
                segments[name] = found
        elif (HISTORY.fullmatch(name) and folder == "") or \
                (BACKUP_HISTORY.fullmatch(name) and folder == ("" if flat else name[:16])):
            history[name] = found
        elif not name.endswith(".partial"):
            unsupported.append(key)
    return WalListing(segments=segments, history=history, unsupported=tuple(sorted(unsupported)))


def _split_codec(base: str) -> tuple[str | None, str | None]:
    """``name.gz`` → (name, "gzip"); an unsupported codec → (name, :data:`_UNSUPPORTED`)."""
    for suffix, codec in COMPRESSIONS.items():
        if suffix and base.endswith(suffix):
            return base[: -len(suffix)], codec
    if base.endswith(_OTHER_CODECS):
        return base.rsplit(".", 1)[0], _UNSUPPORTED
    return (base or None), None


def stop_time(history_text: str) -> datetime | None:
    """STOP TIME from a backup history file (``2026-12-03 17:28:26 UTC``), else None (another zone too)."""
    for line in history_text.splitlines():
        if line.startswith("STOP TIME:"):
            value = line.partition(":")[2].strip()
            # PostgreSQL writes it in log_timezone: only UTC/GMT are unambiguous abbreviations.
            for zone in (" UTC", " GMT"):
                if value.endswith(zone):
                    try:
                        return datetime.strptime(value[: -len(zone)], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                    except ValueError:
                        return None
            return None
    return None


CONTINUITY = "pitr.wal_continuity"  # the id of checks/pitr.py's continuity verdicts


def wal_continuity(listing: WalListing, *, since: str, segment_size: int, where: str) -> Verdict:
    """No segment missing in the archive from ``since`` (the oldest backup's start) to its newest one.

    drillbook's own arithmetic over the listing: the first missing segment is named, and the last one
    present before it (recovery from a backup older than the gap stops there; newer backups recover).
    """
    if segment_size <= 0 or segment_size & (segment_size - 1):
        return Verdict.error(CONTINUITY, f"{where}: WAL segment size {segment_size} is not a power of two")
    segments = listing.timeline_segments(since)
    evidence: dict[str, object] = {"archive": where, "since": since, "segments": len(segments),
                                   "unsupported": list(listing.unsupported[:20])}
    if not segments:
        return Verdict.failed(CONTINUITY, f"{where} holds no WAL segment from {since} on (the oldest "
                              "backup's start): no backup can be recovered", evidence=evidence)
    last = segments[-1]
    missing = first_missing(segments, since, last, segment_size)
    evidence.update(last=last, first_missing=missing)
    if missing is None:
        return Verdict.passed(CONTINUITY, f"{where}: {len(segments)} WAL segments from {since} to {last}, "
                              "none missing", measured=0, expected="no missing segment", evidence=evidence)
    before = max((n for n in segments if n < missing), default=None)
    return Verdict.failed(CONTINUITY, f"{where}: WAL segment {missing} is missing (the archive has {since} "
                          f"to {last}; recovery from an older backup stops after {before or since})",
                          measured=missing, expected="no missing segment", evidence=evidence)
