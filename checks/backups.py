"""Backup facts: which backup is newest, how old it is, whether every day has one, what a file is.

Pure functions of explicit inputs (object listings, the first bytes of a
file, the time ``now``); the I/O lives in :mod:`drills.stores`. Nothing here
imports boto3 or pytest.

Key date patterns
-----------------
A key pattern is a strftime-like template, e.g. ``sark-backup-%Y%m%d-%H%M.dump``.
It supports ``%Y %m %d %H %M %S`` (fixed width, zero-padded), ``%%`` for a
literal percent sign and ``*`` for any run of characters except ``/``;
everything else is literal. ``%Y``, ``%m`` and ``%d`` are required.

A pattern is matched against the **trailing path components of the key, as
many as the pattern has**: a pattern without ``/`` is matched against the
key's basename, ``%Y/%m/%d/db.dump`` against the last four components. So the
same pattern works whatever the store's prefix is (``s3://b/a/`` or
``s3://b/a/b/``) and for a directory store, whose keys are relative paths.
Dates are UTC.
"""

from __future__ import annotations

import enum
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .errors import BackupUnreadable, ConfigError, NoBackupFound
from .verdict import Verdict

# Checksum files stored next to backups: never a backup themselves.
SIDECAR_SUFFIXES = (".sha256", ".md5")

# A backup dated this far in the future is treated as a clock or key-pattern error, not as fresh.
FUTURE_TOLERANCE = timedelta(minutes=5)

# How many non-matching keys a NoBackupFound message quotes as examples.
_EXAMPLE_KEYS = 3

# -- objects and key patterns ------------------------------------------------------------------


@dataclass(frozen=True)
class BackupObject:
    """One object in a backup store: its key (relative to the store root), size and mtime."""

    key: str
    size: int
    last_modified: datetime


# Directive → (regex group name, digits). All supported directives are fixed width,
# which keeps parsing unambiguous next to digits in literal text.
_DIRECTIVES: dict[str, tuple[str, int]] = {
    "Y": ("year", 4),
    "m": ("month", 2),
    "d": ("day", 2),
    "H": ("hour", 2),
    "M": ("minute", 2),
    "S": ("second", 2),
}
_REQUIRED = ("Y", "m", "d")


@dataclass(frozen=True)
class KeyPattern:
    """A compiled key date pattern (see the module docstring). Build with :func:`compile_key_pattern`."""

    pattern: str
    regex: re.Pattern[str]
    components: int
    directives: frozenset[str]

    def parse(self, key: str) -> datetime | None:
        """The UTC date the key carries, or None when it does not match or names an impossible date."""
        parts = key.split("/")
        if len(parts) < self.components:
            return None
        match = self.regex.fullmatch("/".join(parts[-self.components:]))
        if match is None:
            return None
        fields = {name: int(value) for name, value in match.groupdict().items()}
        try:
            return datetime(
                fields["year"], fields["month"], fields["day"],
                fields.get("hour", 0), fields.get("minute", 0), fields.get("second", 0),
                tzinfo=UTC,
            )
        except ValueError:  # Feb 30, month 13, hour 24, year 0000: a match, but not a date
            return None

    @property
    def resolution(self) -> timedelta:
        """The finest unit the pattern carries (a day for ``%Y%m%d``, a minute with ``%H%M``)."""
        if "S" in self.directives:
            return timedelta(seconds=1)
        if "M" in self.directives:
            return timedelta(minutes=1)
        if "H" in self.directives:
            return timedelta(hours=1)
        return timedelta(days=1)


def compile_key_pattern(pattern: str) -> KeyPattern:
    """Compile a key date pattern; raise :class:`ConfigError` naming the pattern when it is bad."""

    def bad(reason: str) -> ConfigError:
        return ConfigError(
            f"key pattern {pattern!r} {reason}",
            pattern=pattern,
            hint="use %Y %m %d (required), %H %M %S, %% and * (any characters except /); "
            "e.g. backup-%Y%m%d-%H%M.dump",
        )

    if pattern.startswith("/"):
        raise bad("must not start with `/`: it matches the end of each key")
    regex: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            if i + 1 >= len(pattern):
                raise bad("ends with a lone `%`")
            directive = pattern[i + 1]
            if directive == "%":
                regex.append(re.escape("%"))
            elif directive in _DIRECTIVES:
                if directive in seen:
                    raise bad(f"uses %{directive} twice")
                seen.add(directive)
                name, width = _DIRECTIVES[directive]
                regex.append(f"(?P<{name}>[0-9]{{{width}}})")
            else:
                raise bad(f"uses %{directive}, which is not supported")
            i += 2
            continue
        # Non-greedy, so with several candidates the leftmost date wins.
        regex.append("[^/]*?" if char == "*" else re.escape(char))
        i += 1
    missing = [f"%{d}" for d in _REQUIRED if d not in seen]
    if missing:
        raise bad(f"lacks {' '.join(missing)}: a backup date needs year, month and day")
    return KeyPattern(
        pattern=pattern,
        regex=re.compile("".join(regex)),
        components=pattern.count("/") + 1,
        directives=frozenset(seen),
    )


def is_sidecar(key: str) -> bool:
    """Checksum files (``.sha256``, ``.md5``) are stored beside backups and are never backups."""
    return key.lower().endswith(SIDECAR_SUFFIXES)


def newest_backup(
    objects: Iterable[BackupObject], *, pattern: KeyPattern | None
) -> tuple[BackupObject, datetime]:
    """The newest backup and when it was taken.

    With a pattern, by the date in the key (keys that do not match are
    ignored); without one, by LastModified. Checksum sidecars and
    "directory" placeholder keys ending in ``/`` are never backups. Ties go to
    the later LastModified, then the greater key, so the choice is stable.
    Raises :class:`NoBackupFound` naming how many objects were seen.
    """
    seen = 0
    sidecars = 0
    unmatched: list[str] = []
    best: tuple[datetime, datetime, str, BackupObject] | None = None
    for obj in objects:
        seen += 1
        if is_sidecar(obj.key):
            sidecars += 1
            continue
        if obj.key.endswith("/"):
            continue
        taken = pattern.parse(obj.key) if pattern is not None else _utc(obj.last_modified)
        if taken is None:
            unmatched.append(obj.key)
            continue
        candidate = (taken, _utc(obj.last_modified), obj.key, obj)
        if best is None or candidate[:3] > best[:3]:
            best = candidate
    if best is None:
        if pattern is None:
            detail = f"{seen} objects seen ({sidecars} checksum sidecars), none is a backup"
        else:
            examples = ", ".join(repr(k) for k in unmatched[:_EXAMPLE_KEYS])
            detail = (f"{seen} objects seen ({sidecars} checksum sidecars), none matches key pattern "
                      f"{pattern.pattern!r}" + (f" (e.g. {examples})" if examples else ""))
        raise NoBackupFound(f"no backup found: {detail}", objects=seen,
                            pattern=pattern.pattern if pattern else "")
    return best[3], best[0]


# -- freshness and retention -------------------------------------------------------------------


def backup_freshness(backup_time: datetime, *, now: datetime, max_age: timedelta) -> Verdict:
    """RPO: the newest backup is at most ``max_age`` old at ``now``.

    A backup dated more than :data:`FUTURE_TOLERANCE` after ``now`` fails: it
    means a wrong clock or a key pattern that reads the wrong digits, and
    counting it as fresh would hide a stale backup.
    """
    taken = _utc(backup_time)
    age = _utc(now) - taken
    expected = f"<= {short_duration(max_age)}"
    evidence = {"backup_time": taken.isoformat(), "now": _utc(now).isoformat(),
                "max_age_s": max_age.total_seconds()}
    if age < -FUTURE_TOLERANCE:
        return Verdict.compare(
            "backup.freshness", measured=age, expected=expected, ok=False, evidence=evidence,
            message=f"newest backup is dated {short_duration(-age)} in the future "
                    f"(taken {_stamp(taken)}): check the clock or the key pattern",
        )
    return Verdict.compare(
        "backup.freshness", measured=age, expected=expected, ok=age <= max_age, evidence=evidence,
        message=f"newest backup is {short_duration(max(age, timedelta(0)))} old "
                f"(taken {_stamp(taken)}), limit {short_duration(max_age)}",
    )


def backup_retention(
    times: Sequence[datetime], *, now: datetime, days: int, max_age: timedelta | None
) -> Verdict:
    """Retention: a backup on each of the last ``days`` UTC calendar days, none older than ``max_age``.

    The days checked are yesterday back to ``days`` days ago; today's backup
    may not have run yet, so it is optional. ``days=0`` checks only
    ``max_age``. An empty list fails: no backups is not a retention policy.
    """
    if days < 0 or (days == 0 and max_age is None):
        raise ConfigError(f"backup retention needs days > 0 or a max age (got days={days}, no max age)")
    current = _utc(now)
    stamps = sorted(_utc(t) for t in times)
    expected_parts = []
    if days:
        expected_parts.append(f"a backup on each of the last {days} days")
    if max_age is not None:
        expected_parts.append(f"none older than {short_duration(max_age)}")
    expected = ", ".join(expected_parts)
    if not stamps:
        return Verdict.compare("backup.retention", measured="no backups", expected=expected, ok=False,
                               message="no backups at all: retention cannot hold",
                               evidence={"backups": 0})
    present = {t.date() for t in stamps}
    today = current.date()
    wanted = [today - timedelta(days=n) for n in range(days, 0, -1)]
    missing: list[date] = [d for d in wanted if d not in present]
    too_old = [t for t in stamps if current - t > max_age] if max_age is not None else []

    problems = []
    if missing:
        verb = "has" if len(missing) == 1 else "have"
        problems.append(f"{len(missing)} of the last {days} days {verb} no backup: "
                        f"{_list_dates(missing)}")
    if too_old and max_age is not None:
        noun = "backup is" if len(too_old) == 1 else "backups are"
        problems.append(f"{len(too_old)} {noun} older than {short_duration(max_age)}: "
                        f"{', '.join(_stamp(t) for t in too_old[:10])}"
                        + (" …" if len(too_old) > 10 else ""))
    if problems:
        message = "; ".join(problems)
    else:
        parts = []
        if days:
            parts.append(f"a backup on each of the last {days} days")
        if max_age is not None:
            parts.append(f"oldest {short_duration(current - stamps[0])} old, "
                         f"limit {short_duration(max_age)}")
        message = "; ".join(parts)
    return Verdict.compare(
        "backup.retention",
        measured={"days_with_backup": days - len(missing), "days_checked": days,
                  "older_than_max_age": len(too_old)},
        expected=expected,
        ok=not problems,
        message=message,
        evidence={"backups": len(stamps), "oldest": stamps[0].isoformat(),
                  "newest": stamps[-1].isoformat(),
                  "missing_days": [d.isoformat() for d in missing],
                  "older_than_max_age": [t.isoformat() for t in too_old]},
    )


# -- dump formats ------------------------------------------------------------------------------


class DumpFormat(enum.StrEnum):
    """What a backup file is, which decides how it is restored."""

    CUSTOM = "custom"                # pg_dump -Fc
    DIRECTORY_TAR = "directory_tar"  # pg_dump -Ft, or a tar of a pg_dump -Fd directory
    PLAIN = "plain"                  # pg_dump (SQL)
    DUMPALL = "dumpall"              # pg_dumpall (SQL)
    GZIP_PLAIN = "gzip_plain"
    GZIP_DUMPALL = "gzip_dumpall"


_GZIP_MAGIC = b"\x1f\x8b"
_PGDMP_MAGIC = b"PGDMP"
_TAR_MAGIC_OFFSET = 257
_TAR_BLOCK = 512
# How much decompressed text is enough to see a dump's header.
_SQL_HEAD = 64 * 1024
_CLUSTER_HEADER = re.compile(rb"^-- PostgreSQL database cluster dump\s*$", re.MULTILINE)
_DUMP_HEADER = re.compile(rb"^-- PostgreSQL database dump\s*$", re.MULTILINE)
# Statements pg_dump writes near the top of every plain dump (\restrict since 15.14 / 17.6).
_DUMP_STATEMENTS = re.compile(rb"^(SET statement_timeout = |\\restrict )", re.MULTILINE)
# Files a pg_dump -Fd directory holds: toc.dat, <oid>.dat[.gz|.lz4|.zst], blobs_<n>.toc.
_DIRECTORY_MEMBER = re.compile(r"(^|/)(toc\.dat|\d+\.dat(\.gz|\.lz4|\.zst)?|blobs?(_\d+)?\.toc)$")
# Other formats people store by mistake, named in the error message.
_KNOWN_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"BZh", "a bzip2 stream"),
    (b"\xfd7zXZ\x00", "an xz stream"),
    (b"\x28\xb5\x2f\xfd", "a zstd stream"),
    (b"\x04\x22\x4d\x18", "an LZ4 frame"),
    (b"%PDF", "a PDF document"),
    (b"REDIS", "a Redis RDB file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def gunzip_head(data: bytes, limit: int) -> bytes:
    """Up to ``limit`` decompressed bytes from the start of a gzip stream.

    ``data`` may be only the first part of the file: a stream cut short yields
    what it holds. Concatenated gzip members are followed. Raises
    :class:`BackupUnreadable` when the bytes are not valid gzip data.
    """
    out = bytearray()
    rest = data
    while rest and len(out) < limit:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # max_length bounds memory: a small head of a gzip bomb stays small.
            out += decompressor.decompress(rest, limit - len(out))
        except zlib.error as exc:
            raise BackupUnreadable(f"gzip data cannot be decompressed: {exc}") from exc
        if not decompressor.eof:
            break  # the head ends mid-stream, or the limit was reached
        rest = decompressor.unused_data
    return bytes(out)


def detect_format(head: bytes, *, name: str) -> DumpFormat:
    """The dump format of a file from its first bytes (64 KiB is plenty).

    Raises :class:`BackupUnreadable` naming the file for zero bytes, content
    that is no PostgreSQL dump (saying what the first bytes look like), or a
    gzip stream whose head cannot be decompressed.
    """
    if not head:
        raise BackupUnreadable(f"{name}: the file is empty (0 bytes)", key=name)
    if head.startswith(_PGDMP_MAGIC):
        return DumpFormat.CUSTOM
    if head.startswith(_GZIP_MAGIC):
        try:
            text = gunzip_head(head, _SQL_HEAD)
        except BackupUnreadable as exc:
            raise BackupUnreadable(f"{name}: {exc.message}", key=name) from exc
        if not text:
            raise BackupUnreadable(
                f"{name}: gzip stream yields no data from its first {len(head):,} bytes "
                "(truncated or damaged)", key=name)
        kind = _sql_kind(text)
        if kind is DumpFormat.DUMPALL:
            return DumpFormat.GZIP_DUMPALL
        if kind is DumpFormat.PLAIN:
            return DumpFormat.GZIP_PLAIN
        raise BackupUnreadable(
            f"{name}: gzip-compressed, but the content is not a pg_dump or pg_dumpall SQL script: "
            f"it looks like {_describe(text)}", key=name,
            hint="only plain SQL dumps are restored from gzip; store -Fc dumps uncompressed",
        )
    if _is_tar(head):
        return _tar_format(head, name)
    kind = _sql_kind(head)
    if kind is not None:
        return kind
    raise BackupUnreadable(
        f"{name}: not a PostgreSQL dump: its first bytes look like {_describe(head)}", key=name,
    )


def _sql_kind(text: bytes) -> DumpFormat | None:
    head = text[:_SQL_HEAD].removeprefix(b"\xef\xbb\xbf")
    # The cluster header first: pg_dumpall's per-database sections contain plain-dump headers too.
    if _CLUSTER_HEADER.search(head):
        return DumpFormat.DUMPALL
    if _DUMP_HEADER.search(head) or _DUMP_STATEMENTS.search(head):
        return DumpFormat.PLAIN
    return None


def _is_tar(head: bytes) -> bool:
    magic = head[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5]
    return magic == b"ustar"


def _tar_format(head: bytes, name: str) -> DumpFormat:
    """A tar is a dump when it holds ``toc.dat`` (pg_dump -Ft, or a tarred -Fd directory).

    Only the head is here: when it ends before ``toc.dat`` shows up but every
    member seen so far is a file a dump directory holds, it is accepted; the
    restore looks for ``toc.dat`` in the whole archive.
    """
    members: list[str] = []
    offset = 0
    while offset + _TAR_BLOCK <= len(head):
        block = head[offset:offset + _TAR_BLOCK]
        if block == b"\0" * _TAR_BLOCK:
            break  # end-of-archive marker: every member has been seen
        member = _tar_member_name(block)
        try:
            size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            raise BackupUnreadable(f"{name}: damaged tar header at byte {offset:,}", key=name) from None
        if member is not None and block[156:157] not in (b"x", b"g", b"L"):  # skip pax/GNU metadata
            members.append(member)
            if member == "toc.dat" or member.endswith("/toc.dat"):
                return DumpFormat.DIRECTORY_TAR
        offset += _TAR_BLOCK + -(-size // _TAR_BLOCK) * _TAR_BLOCK
    else:
        files = [m for m in members if not m.endswith("/")]
        if files and all(_DIRECTORY_MEMBER.search(m) for m in files):
            return DumpFormat.DIRECTORY_TAR
    shown = ", ".join(members[:5]) + (" …" if len(members) > 5 else "")
    raise BackupUnreadable(
        f"{name}: a tar archive without toc.dat, so not a pg_dump archive "
        f"(members: {shown or 'none'})", key=name,
    )


def _tar_member_name(block: bytes) -> str | None:
    raw = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0]
    if not raw:
        return None
    full = (prefix + b"/" + raw) if prefix else raw
    return full.decode("utf-8", "replace").removeprefix("./")


def _describe(head: bytes) -> str:
    """A short human description of bytes that are not a dump."""
    for magic, label in _KNOWN_MAGIC:
        if head.startswith(magic):
            return label
    if head.startswith(_PGDMP_MAGIC):
        return "a custom-format dump (pg_dump -Fc)"
    if _is_tar(head):
        return "a tar archive"
    sample = head[:48]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's edge is still text.
        cut = len(head) > len(sample) and exc.start >= len(sample) - 3
        text = sample[: exc.start].decode("utf-8") if cut else ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f"text: {lines[0][:40]!r}" if lines else "blank text"
    return f"binary data ({sample[:16].hex(' ')})"


# -- checksum sidecars -------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]{32,128}")
_SUM_LINE = re.compile(r"^\\?(?P<hex>[0-9a-fA-F]{32,128})\s+\*?(?P<name>.+)$")
_BSD_LINE = re.compile(r"^(?:SHA256|SHA512|MD5|SHA1) \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]{32,128})$")


def parse_checksum_sidecar(text: str, *, filename: str) -> str:
    """The hex digest a sidecar records for ``filename``, lower-case.

    Accepts ``sha256sum`` output (``<hex>  name`` or ``<hex> *name``; with
    several lines, the line for ``filename``), BSD-style ``SHA256 (name) = <hex>``
    and a bare hex digest. Raises :class:`BackupUnreadable` for anything else.
    """
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    entries: list[tuple[str, str]] = []
    for line in lines:
        match = _SUM_LINE.match(line) or _BSD_LINE.match(line)
        if match:
            entries.append((match.group("name").strip().removeprefix("./"), match.group("hex").lower()))
        elif len(lines) == 1 and _HEX.fullmatch(line) and len(line) % 2 == 0:
            return line.lower()
        else:
            raise BackupUnreadable(
                f"checksum file for {filename} is not sha256sum output or a hex digest: "
                f"line {line[:60]!r}", key=filename,
            )
    if not entries:
        raise BackupUnreadable(f"checksum file for {filename} is empty", key=filename)
    if len(entries) == 1:
        return entries[0][1]
    base = filename.rsplit("/", 1)[-1]
    for name, digest in entries:
        if name == filename or name.rsplit("/", 1)[-1] == base:
            return digest
    raise BackupUnreadable(
        f"checksum file lists {len(entries)} files but not {filename} "
        f"({', '.join(n for n, _ in entries[:5])})", key=filename,
    )


def checksum_matches(actual_hex: str, sidecar_hex: str, *, key: str) -> Verdict:
    """The digest computed while downloading equals the one its sidecar records."""
    actual, recorded = actual_hex.lower(), sidecar_hex.lower()
    evidence = {"key": key, "sha256": actual, "sidecar": recorded}
    if len(actual) != len(recorded):
        return Verdict.compare(
            "backup.checksum", measured=actual, expected=recorded, ok=False, evidence=evidence,
            message=f"checksum of {key}: the sidecar holds a {len(recorded) * 4}-bit digest, "
                    f"the drill computes SHA-256 ({len(actual) * 4}-bit): wrong algorithm?",
        )
    ok = actual == recorded
    message = (f"SHA-256 of {key} matches its checksum file ({actual[:16]}…)" if ok else
               f"SHA-256 of {key} is {actual}, its checksum file says {recorded}")
    return Verdict.compare("backup.checksum", measured=actual, expected=recorded, ok=ok,
                           evidence=evidence, message=message)


# -- helpers -----------------------------------------------------------------------------------


def short_duration(value: timedelta) -> str:
    """``26h``, ``23h 10m``, ``26h 1s``, ``3d 4h``: zero units left out, for messages."""
    seconds = round(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days < 2:  # up to 47h reads better in hours: RPO limits are written as 26h, 36h
        days, hours = 0, hours + days * 24
    units = zip((days, hours, minutes, secs), "dhms", strict=True)
    # Seconds are kept: "26h 1s old, limit 26h" must not read as "26h old, limit 26h".
    return sign + (" ".join(f"{n}{unit}" for n, unit in units if n) or "0s")


def _utc(value: datetime) -> datetime:
    """Aware datetimes in UTC; naive ones are taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: datetime) -> str:
    """``2026-11-21T02:00Z`` (seconds only when there are some)."""
    value = _utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ" if value.second else "%Y-%m-%dT%H:%MZ")


def _list_dates(days: list[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:14])
    return shown + (f" and {len(days) - 14} more" if len(days) > 14 else "")
