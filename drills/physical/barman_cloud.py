"""The ``kind = "barman-cloud"`` source: backups that ``barman-cloud-backup`` wrote to S3 (design study A3).

**choose** asks ``barman-cloud-backup-list --format json`` (drillbook's own process, the store's keys
in that child's environment only) and picks the newest ``DONE`` backup — for a target, the newest
that *ended* at or before it. The end is ``end_time_iso`` when barman gives it (≥ 3.5); else the
STOP TIME (in UTC) of the backup's ``.backup`` history file in the archive, whole seconds, so a
second is added; else when ``backup.info`` was uploaded (barman writes it last). Each is a bound the
backup certainly ended by: one that may have ended after the target is never picked (PostgreSQL
would silently land later, A4). Debian's barman 3.4 gives the end only as ``ctime`` with no offset:
never trusted for choosing.

**materialize** downloads the backup's tars (``data.tar[.gz|.bz2]`` and its ``data_NNNN`` parts)
with boto3 in drillbook's own process into scratch, then extracts each local copy with
:func:`drills.physical.tars.extract_tar` (the basebackup source's extraction: every member judged
before anything is written). Each object is read from the bucket once, so the tar that is checked
is the tar that is extracted. ``barman-cloud-restore`` is not used: Debian's 3.4 extracts the
untrusted tar with no filter, and it would have needed the keys too. It writes no recovery
settings (A3); the driver quarantines the rest.

**fetch_wal** lists ``<server>/wals/`` and downloads the segments from the backup's ``begin_wal``
on (and the ``.history`` files) with boto3 in drillbook's own process, decompressing ``.gz`` and
``.bz2``: the recovered server's ``restore_command`` is the driver's ``cp`` from scratch — no secret,
no network. Continuity is drillbook's arithmetic over the listing (:func:`checks.pitr.first_missing`).
"""

from __future__ import annotations

import importlib
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from checks import redact
from checks.backups import BackupObject
from checks.barman_info import (
    CONTINUITY,
    DONE,
    BarmanBackup,
    WalListing,
    parse_backup_list,
    stop_time,
    wal_continuity,
    wal_listing,
)
from checks.errors import (
    BackupError,
    EnvironmentError_,
    NoBackupFound,
    RestoreFailed,
    StoreUnreachable,
)
from checks.pitr import BackupHistory, first_missing, parse_backup_history
from checks.verdict import Verdict
from drills.deadlines import Deadline
from drills.pitr_sample import WalListing as ArchiveListing
from drills.stores import S3Store, _without_userinfo
from drills.targets import StoreSpec

from . import s3_wal
from .source import Chosen, WalCopy
from .tars import extract_tar

LIST_TIMEOUT_S = 120.0
# barman-cloud-backup-list's answers in this process: store → (its backup.info objects, the backups).
_LISTED: dict[tuple[str | None, ...], tuple[tuple[tuple[str, int, str], ...], tuple[BarmanBackup, ...]]] = {}
DEFAULT_SEGMENT_SIZE = 16 << 20  # PostgreSQL's default, when backup.info does not say
# A backup's tars: data.tar (+ data_0001.tar … when over --max-archive-size), <oid>.tar per
# tablespace; compressed as barman-cloud-backup was told. tarfile reads plain, gzip, bzip2 and xz.
_TAR = re.compile(r"(?P<base>data|[0-9]+)(?:_(?P<part>[0-9]{4}))?\.tar(?P<ext>(?:\.[a-z0-9]+)?)")
_TARFILE_READS = ("", ".gz", ".bz2", ".xz")
# Codecs barman also writes, decompressed only when their Python library is already installed:
# extension → (module, what to install).
_CODECS = {".snappy": ("snappy", "python-snappy"), ".lz4": ("lz4.frame", "lz4"),
           ".zst": ("zstandard", "zstandard")}
_TOOL_HINT = "install barman's cloud client: apt-get install barman-cli-cloud (./bootstrap does)"


def tool(name: str) -> str:
    """The absolute path of a barman-cloud-* command (found on PATH or in /usr/bin)."""
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/bin")
    if found is None:
        raise EnvironmentError_(f"{name} is not installed", hint=_TOOL_HINT)
    return os.path.realpath(found)


def tool_env(spec: StoreSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a barman-cloud-* child: the store's keys (or ``environ``'s AWS_* when the
    store names none), a region, a plain PATH — nothing else of drillbook's environment."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": spec.region}
    if spec.access_key_id and spec.secret_access_key:
        env.update(AWS_ACCESS_KEY_ID=spec.access_key_id, AWS_SECRET_ACCESS_KEY=spec.secret_access_key)
    else:
        env.update({k: v for k, v in environ.items() if k.startswith("AWS_") and k != "AWS_DEFAULT_REGION"})
    return env


class BarmanCloudSource:
    """Backups of barman server ``spec.server`` under ``spec.url`` (an ``s3://bucket/prefix`` URL)."""

    kind = "barman-cloud"
    format = "barman-cloud"

    def __init__(self, spec: StoreSpec) -> None:
        if not spec.server or not spec.is_s3:
            raise RestoreFailed(f"store `{spec.name}` needs an s3:// url and a server name", store=spec.name)
        self.spec = spec
        redact.register(spec.secret_access_key or "")
        self.archive = f"{spec.url} server {spec.server}"
        base = posixpath.join(spec.prefix, spec.server)
        # barman's layout: <path>/<server>/base/<id>/… and <path>/<server>/wals/….
        self._base = S3Store(replace(spec, url=f"s3://{spec.bucket}/{base}/base/"))
        self._wals = S3Store(replace(spec, url=f"s3://{spec.bucket}/{base}/wals/"))
        self._listing: WalListing | None = None
        self._base_listing: list[BackupObject] | None = None

    # -- metadata ---------------------------------------------------------------------------

    def list_backups(self) -> list[BarmanBackup]:
        """``barman-cloud-backup-list --format json``, parsed; a failure is :class:`StoreUnreachable`.

        The tool answers from the ``backup.info`` objects alone and costs a Python start-up (~1 s):
        while those objects are unchanged (key, size, LastModified, listed here first) the answer
        this process already parsed is reused, so a scenario's restore and its checks list once.
        """
        try:
            self._base_listing = self._base.list()
            seen = tuple(sorted((o.key, o.size, o.last_modified.isoformat()) for o in self._base_listing
                                if o.key.endswith("/backup.info")))
        except BackupError:
            seen = None  # a bucket that cannot be listed: the tool's own failure names it
        where = (self.spec.endpoint_url, self.spec.url, self.spec.server, self.spec.access_key_id)
        cached = _LISTED.get(where)
        if seen is not None and cached is not None and cached[0] == seen:
            return list(cached[1])
        proc = self._run("barman-cloud-backup-list", "--format", "json", timeout_s=LIST_TIMEOUT_S)
        backups = parse_backup_list(proc.stdout, source=f"barman-cloud-backup-list of {self.archive}")
        if seen is not None:
            _LISTED[where] = (seen, tuple(backups))
        return backups

    def wal_listing(self) -> WalListing:
        """The ``wals/`` prefix, listed once per source."""
        if self._listing is None:
            objects = [(o.key, o.size) for o in self._wals.list()]
            self._listing = wal_listing(objects, self._wals.prefix)
        return self._listing

    def ended(self, backup: BarmanBackup) -> tuple[datetime | None, str]:
        """When a backup ended, as a bound it certainly ended by, and where that came from."""
        if backup.end_time is not None and backup.end_time_precise:
            return backup.end_time, "end_time_iso"
        name = backup.history_file
        found = self.wal_listing().history.get(name) if name else None
        if found is not None and found.compression is None and found.size < 65536:
            text = self._wals.read_text(found.key)
            stop = stop_time(text) if text else None
            if stop is not None:
                return stop + timedelta(seconds=1), f"STOP TIME of {name} (whole seconds, +1 s)"
        # barman-cloud-backup uploads backup.info last, after the backup stopped: its LastModified is
        # a UTC bound the end is certainly before (barman 3.4's ctime end has no offset to trust).
        key = f"{self._base.prefix}{backup.backup_id}/backup.info"
        info = next((o for o in self._base_objects() if o.key == key), None)
        if info is not None:
            return info.last_modified, "backup.info uploaded (an upper bound)"
        return None, "unknown"

    def _base_objects(self) -> list[BackupObject]:
        """The ``base/`` prefix, listed once per source."""
        if self._base_listing is None:
            self._base_listing = self._base.list()
        return self._base_listing

    # -- the Source seam --------------------------------------------------------------------

    def choose(self, target: datetime | None) -> Chosen:
        """The newest DONE backup; for a target, the newest DONE one that ended at or before it."""
        backups = self.list_backups()
        where = f"{self.spec.url} (server `{self.spec.server}`, store `{self.spec.name}`)"
        if not backups:
            raise NoBackupFound(f"barman-cloud-backup-list finds no backup of server `{self.spec.server}` "
                                f"in {self.spec.url} (store `{self.spec.name}`)", store=self.spec.name,
                                server=self.spec.server, hint="check `server`: the name barman-cloud-backup "
                                "was given, under that url")
        skipped = [f"{b.backup_id} ({b.status})" for b in backups if b.status != DONE]
        done = [b for b in backups if b.status == DONE]
        if not done:
            raise NoBackupFound(f"no DONE backup in {where}: {', '.join(skipped)}", store=self.spec.name,
                                hint="a backup that is not DONE never finished: it cannot be restored")
        ends = {b.backup_id: self.ended(b) for b in (done if target is not None else done[-1:])}
        if target is not None:
            fit = [b for b in done if (ends[b.backup_id][0] or target + timedelta(days=1)) <= target]
            if not fit:
                oldest = ends[done[0].backup_id][0]
                raise NoBackupFound(
                    f"no DONE backup in {where} that ended at or before {target.isoformat()} (the oldest, "
                    f"{done[0].backup_id}, ended by {oldest.isoformat() if oldest else 'an unknown time'})",
                    store=self.spec.name, target=target.isoformat(),
                    hint="pick a target after the oldest backup's end")
            done = fit
        backup = done[-1]
        if backup.tablespaces:
            raise RestoreFailed(f"{backup.backup_id} has {backup.tablespaces} tablespace(s): they would need "
                                "paths outside scratch (not supported yet)", key=backup.backup_id,
                                store=self.spec.name)
        end, end_source = ends.get(backup.backup_id) or self.ended(backup)
        # barman 3.4's begin_time is ctime with no offset: only an ISO begin is trusted as the start.
        began = backup.begin_time if backup.end_time_precise else None
        return Chosen(key=backup.backup_id, taken=began or end or datetime.now(UTC),
                      end=end, major=backup.major, start_segment=backup.begin_wal,
                      details={"server": self.spec.server, "end_source": end_source,
                               "barman": backup.evidence(), **({"not_done": skipped} if skipped else {})})

    def materialize(self, chosen: Chosen, datadir: Path, deadline: Deadline) -> dict[str, Any]:
        """Download the backup's data tars into scratch and extract each local copy into ``datadir``."""
        tars = self._data_tars(chosen.key)
        download = datadir.parent / "barman-download"
        download.mkdir(mode=0o700)
        members = 0
        try:
            for obj in tars:
                name = obj.key.rsplit("/", 1)[-1]
                if deadline.remaining() <= 0:
                    raise RestoreFailed(f"the drill's deadline passed while downloading {obj.key}",
                                        key=chosen.key, store=self.spec.name)
                local = self._download_tar(obj, download / name)
                members += extract_tar(local, datadir, name=obj.key)
                local.unlink()
        finally:
            shutil.rmtree(download, ignore_errors=True)
        return {"tool": "drillbook (boto3 + tarfile data filter)", "tars": [o.key for o in tars],
                "members": members}

    def _data_tars(self, backup_id: str) -> list[BackupObject]:
        """The backup's ``data`` tars, main part first; any other tar (a tablespace's) is refused."""
        prefix = f"{self._base.prefix}{backup_id}/"
        found: list[tuple[int, BackupObject]] = []
        for obj in self._base_objects():
            name = obj.key[len(prefix):] if obj.key.startswith(prefix) else ""
            match = _TAR.fullmatch(name)
            if not match:
                continue
            if match["base"] != "data":
                raise RestoreFailed(f"{obj.key}: backup {backup_id} holds a tablespace's tar: tablespaces "
                                    "are not supported yet (they would need paths outside scratch)",
                                    key=backup_id, store=self.spec.name)
            found.append((int(match["part"] or 0), obj))
        if not any(part == 0 for part, _ in found):
            raise RestoreFailed(f"backup {backup_id} has no data tar under s3://{self.spec.bucket}/{prefix}",
                                key=backup_id, store=self.spec.name,
                                hint="barman-cloud-backup writes data.tar[.gz|.bz2|.snappy] there")
        return [obj for _, obj in sorted(found, key=lambda item: item[0])]

    def _download_tar(self, obj: BackupObject, dest: Path) -> Path:
        """One tar object into ``dest`` (one read of the bucket); a codec tarfile cannot read is
        decompressed through its library when installed, else named."""
        ext = dest.name[dest.name.index(".tar") + 4:]
        with self._base.open(obj) as raw, dest.open("wb") as out:
            if ext in _TARFILE_READS:
                shutil.copyfileobj(raw, out, 1 << 20)
                return dest
            stream = _codec_reader(ext, raw, obj.key)
            shutil.copyfileobj(stream, out, 1 << 20)
        plain = dest.with_name(dest.name[:-len(ext)])
        dest.rename(plain)
        return plain

    def fetch_wal(self, first_segment: str, dest: Path) -> WalCopy:
        """Download the segments from ``first_segment`` on (and ``.history`` files) into ``dest``."""
        listing = self.wal_listing()
        segments = listing.timeline_segments(first_segment)
        if not segments:
            raise RestoreFailed(f"the WAL archive {self.archive} holds no segment from {first_segment} on "
                                "(the backup's start)", segment=first_segment, store=self.spec.name)
        total = 0
        sizes: set[int] = set()
        for name in segments:
            size = self._download(listing.segments[name].key, listing.segments[name].compression, dest / name)
            sizes.add(size)
            total += size
        for name, found in listing.history.items():
            if name.endswith(".history"):
                total += self._download(found.key, found.compression, dest / name)
        segment_bytes = s3_wal.segment_bytes(sizes, self.archive, store_name=self.spec.name)
        last = segments[-1]
        return WalCopy(last=last, first_missing=first_missing(segments, first_segment, last, segment_bytes),
                       count=len(segments), bytes=total)

    def archive_listing(self) -> ArchiveListing:
        """The ``wals/`` listing and the DONE backups (start segment, end bound): point-in-time steps."""
        listing = self.wal_listing()
        done = [b for b in self.list_backups() if b.status == DONE and b.begin_wal]
        backups = [found for b in done if (found := self._history(b, listing)) is not None]

        def fetch(name: str, dest: Path) -> None:
            self._download(listing.segments[name].key, listing.segments[name].compression, dest / name)

        size = next((b.segment_size for b in done if b.segment_size), DEFAULT_SEGMENT_SIZE)
        return ArchiveListing(where=self.archive, segments=sorted(listing.segments), backups=backups,
                              segment_bytes=size, fetch=fetch)

    def _history(self, backup: BarmanBackup, listing: WalListing) -> BackupHistory | None:
        """A DONE backup's start segment, START and STOP TIME (its ``.backup`` file), else its end bound."""
        found = listing.history.get(backup.history_file or "")
        if backup.begin_wal is None:
            return None
        if found is not None and found.compression is None and found.size < 65536:
            parsed = parse_backup_history(found.name, self._wals.read_text(found.key) or "")
            if parsed is not None:
                return replace(parsed, name=backup.backup_id)
        end = self.ended(backup)[0]
        # ended() is a bound the backup surely ended by; BackupHistory adds STOP TIME's second itself.
        return BackupHistory(backup.backup_id, backup.begin_wal, end - timedelta(seconds=1)) if end else None

    # -- helpers ------------------------------------------------------------------------------

    def argv(self, name: str, *args: str) -> list[str]:
        """A barman-cloud-* command line: endpoint (without user info), URL, server, arguments."""
        argv = [tool(name)]
        if self.spec.endpoint_url:
            argv += ["--endpoint-url", _without_userinfo(self.spec.endpoint_url)]
        return [*argv, self.spec.url, self.spec.server or "", *args]

    def _run(self, name: str, *args: str, timeout_s: float,
             what: str = "list backups") -> subprocess.CompletedProcess[str]:
        """A barman-cloud-* command on this store; its keys only in its environment, never its argv."""
        argv = self.argv(name, *args)
        env = tool_env(self.spec, os.environ)
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise StoreUnreachable(f"{name} did not finish within {timeout_s:.0f} s "
                                   f"({what} of {self.archive})", store=self.spec.name) from None
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            said = redact.redact(" | ".join(lines[-3:]))[:600] or "no message"
            error = StoreUnreachable if name == "barman-cloud-backup-list" else RestoreFailed
            raise error(f"{name} failed (exit {proc.returncode}) to {what} of {self.archive}: {said}",
                        store=self.spec.name, exit_code=proc.returncode)
        return proc

    def _download(self, key: str, compression: str | None, dest: Path) -> int:
        """One archived file into ``dest`` (decompressed; drills/physical/s3_wal.py); its size."""
        return s3_wal.download(self._wals, key, compression, dest, store_name=self.spec.name)

def _codec_reader(ext: str, raw: IO[bytes], key: str) -> IO[bytes]:
    """A decompressing reader for barman's snappy, lz4 or zstd tars, or a clear error naming the gap."""
    module_name, package = _CODECS.get(ext, ("", ""))
    if not module_name:
        raise RestoreFailed(f"{key}: unknown compression `{ext}` (drillbook reads .tar, .tar.gz, .tar.bz2, "
                            ".tar.xz)", key=key)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise RestoreFailed(f"{key}: drillbook cannot decompress `{ext}` tars: the Python package "
                            f"`{package}` is not installed", key=key,
                            hint=f"install `{package}` into drillbook's environment, or back up with "
                            "barman-cloud-backup -z (gzip) or -j (bzip2)") from None
    if ext == ".snappy":  # barman writes snappy's framing format (StreamCompressor)
        return cast("IO[bytes]", _SnappyReader(module, raw))
    if ext == ".lz4":
        return cast("IO[bytes]", module.open(raw, "rb"))
    return cast("IO[bytes]", module.ZstdDecompressor().stream_reader(raw))


class _SnappyReader:
    """A ``read(n)`` over python-snappy's StreamDecompressor."""

    def __init__(self, module: Any, raw: IO[bytes]) -> None:
        self._decompressor = module.StreamDecompressor()
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        while chunk := self._raw.read(1 << 16):
            out: bytes = self._decompressor.decompress(chunk)
            if out:
                return out
        return b""


def continuity(spec: StoreSpec) -> Verdict:
    """The store's WAL archive has no gap from its oldest DONE backup's start to its newest segment."""
    source = BarmanCloudSource(spec)
    done = [b for b in source.list_backups() if b.status == DONE and b.begin_wal]
    where = f"the WAL archive of {source.archive}"
    if not done:
        return Verdict.failed(CONTINUITY, f"no DONE backup in {spec.url} (server `{spec.server}`): no start "
                              "segment to count from", evidence={"store": spec.name})
    oldest = done[0]
    assert oldest.begin_wal is not None
    return wal_continuity(source.wal_listing(), since=oldest.begin_wal, segment_size=oldest.segment_size
                          or DEFAULT_SEGMENT_SIZE, where=where)


def newest_end(spec: StoreSpec) -> datetime:
    """Freshness: when the newest DONE backup of a barman-cloud store ended."""
    source = BarmanCloudSource(spec)
    chosen = source.choose(None)
    if chosen.end is None:
        return chosen.taken
    # A whole-second STOP TIME was rounded up for choosing; for an age, the older bound is the honest one.
    rounded = str(chosen.details["end_source"]).startswith("STOP TIME")
    return chosen.end - timedelta(seconds=1) if rounded else chosen.end
