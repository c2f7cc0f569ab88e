"""The sandbox product's backup history, built once a day and cached.

One nightly backup per day at 02:00 UTC for the last :data:`BACKUP_DAYS` days,
the newest from yesterday. The history is made by growing the database in
time order: insert the rows created before backup time T, take T's dumps,
move on to the next T. Because the data is append-only and a pure function
of the anchor (see :mod:`drills.sandbox.seed`), backup T holds exactly the
subject's rows with ``created_at < T``. Each day produces:

- ``pg_dumpall | gzip``            → ``s3/aureus/backup-YYYYMMDD.sql.gz``
- ``pg_dump -Fc product``           → ``s3/sark/postgres/sark-backup-YYYYMMDD-0200.dump``
  plus a ``.sha256`` sidecar in sha256sum format
- ``pg_dump product | gzip`` (last :data:`DIRECTORY_DAYS` days only)
                                    → ``directory/sentrascan_YYYYMMDD_020000.sql.gz``

The build cluster also archives its WAL, and after each of the last :data:`BASE_BACKUPS` nightly
dumps a ``pg_basebackup -Ft -z -X none`` is taken into ``basebackup/base_YYYYMMDD_HHMMSS/``
(named by the wall clock: WAL commit times are real, so a point-in-time target is one too); the
archive from the oldest base backup's start on is kept in ``wal/``. That is the ``base-backups``
store (``kind = "basebackup"``), recoverable to any moment of the build. On the same nights a
pgBackRest set is taken into ``pgbackrest/`` (a full, then an incr, with its own archive:
drills/sandbox/pgbackrest_repo.py), served from S3 at run time as the ``pgbackrest`` store.
After the newest base backup a ``barman-cloud-backup`` is taken too, and its WAL archived with
barman's own archiver, into ``s3/barman/`` (the ``barman-cloud`` store:
:mod:`drills.sandbox.barman_location`).

After the last backup the rows up to ``now`` are inserted, the server is
shut down cleanly and its data directory is cached beside the dumps. The
cache entry is keyed by the anchor date and a hash of the migrations, this
module's :data:`SANDBOX_VERSION` and the PostgreSQL version; entries for
other keys are pruned. The sandbox uses trust authentication on loopback, so
nothing in the cache is a secret.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from checks.errors import EnvironmentError_
from checks.pitr import SEGMENT

from ..processes import (
    MAX_SOCKET_PATH,
    PostgresServer,
    copy_tree,
    hand_to_server_user,
    postgres_version,
    template_datadir,
)
from . import barman_location, pgbackrest_repo, seed

# Bump when the seeding or the history layout changes: it invalidates every cache entry.
SANDBOX_VERSION = "8"  # bump when the product or its history changes shape
PRODUCT_DB = "product"
BACKUP_DAYS = 35
# SentraScan deletes with `find -mtime +30`: tonight's dump plus the 30 nights before it remain.
DIRECTORY_DAYS = 31
BACKUP_HOUR_UTC = 2

BUCKET = "sandbox-backups"
AUREUS_PREFIX = "aureus/"
AUREUS_PATTERN = "backup-%Y%m%d.sql.gz"
SARK_PREFIX = "sark/postgres/"
SARK_PATTERN = "sark-backup-%Y%m%d-%H%M.dump"
DIRECTORY_PATTERN = "sentrascan_%Y%m%d_%H%M%S.sql.gz"
CHECKSUM_SUFFIX = ".sha256"
BASE_PATTERN = "base_%Y%m%d_%H%M%S"
BASE_BACKUPS = 2
_ARCHIVED_WAIT_S = 30.0

_MANIFEST = "manifest.json"
_ENTRY_PREFIX = "sandbox-"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/drillbook``, else ``~/.cache/drillbook``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "drillbook"


def backup_times(anchor: datetime) -> list[datetime]:
    """The nightly backup instants, oldest first; the newest is ``anchor``'s day at 02:00 (last night's)."""
    return [anchor - timedelta(days=days) + timedelta(hours=BACKUP_HOUR_UTC)
            for days in range(BACKUP_DAYS - 1, -1, -1)]


def cache_key(anchor: datetime, pg_version: str) -> str:
    """Name of the cache entry for one day's product: ``sandbox-YYYYMMDD-<hash>``."""
    digest = hashlib.sha256(
        f"{SANDBOX_VERSION}\0{pg_version}\0{seed.migrations_digest()}".encode()
    ).hexdigest()[:12]
    return f"{_ENTRY_PREFIX}{anchor:%Y%m%d}-{digest}"


@dataclass(frozen=True)
class SandboxProduct:
    """A finished, cached sandbox product: a stopped data dir and its backup files."""

    root: Path
    anchor: datetime
    built_at: datetime
    build_seconds: float
    cache_hit: bool

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def s3_dir(self) -> Path:
        """Files to upload to the bucket; their path below this dir is the object key."""
        return self.root / "s3"

    @property
    def directory(self) -> Path:
        return self.root / "directory"

    @property
    def base_backups(self) -> Path:
        """``pg_basebackup -Ft -z`` output, one directory per backup (:data:`BASE_PATTERN`)."""
        return self.root / "basebackup"

    @property
    def wal(self) -> Path:
        """The WAL archive from the oldest base backup's start on."""
        return self.root / "wal"

    @property
    def pgbackrest_repo(self) -> Path:
        """A posix pgBackRest repo: stanza ``product``, a full and an incr set (pgbackrest_repo.py)."""
        return self.root / "pgbackrest"

    def s3_files(self) -> list[tuple[str, Path]]:
        """(object key, file) for every file of the bucket, sorted by key."""
        return sorted((path.relative_to(self.s3_dir).as_posix(), path)
                      for path in self.s3_dir.rglob("*") if path.is_file())


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Serialise builders of the same cache (parallel test workers, two CLIs)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_product(
    cache_dir: Path,
    *,
    now: datetime,
    bindir: Path,
    workdir: Path,
    progress: Progress,
) -> SandboxProduct:
    """The cached product for ``now``'s anchor, building (and caching) it when missing.

    ``workdir`` is a directory the PostgreSQL server user can reach (a cache
    under ``/root`` is not), where the build cluster runs.
    """
    anchor = seed.anchor_for(now)
    pg_version = postgres_version(bindir)
    entry = cache_dir / cache_key(anchor, pg_version)
    with _locked(cache_dir):
        if (entry / _MANIFEST).exists():
            manifest = json.loads((entry / _MANIFEST).read_text(encoding="utf-8"))
            return SandboxProduct(root=entry, anchor=anchor,
                                  built_at=datetime.fromisoformat(manifest["built_at"]),
                                  build_seconds=float(manifest["build_seconds"]), cache_hit=True)
        _prune(cache_dir, keep=entry.name)
        started = time.monotonic()
        staging = cache_dir / f".{entry.name}.{uuid.uuid4().hex[:8]}"
        try:
            _build(staging, anchor=anchor, now=now, bindir=bindir, workdir=workdir, cache_dir=cache_dir,
                   progress=progress)
            build_seconds = time.monotonic() - started
            (staging / _MANIFEST).write_text(json.dumps({
                "anchor": anchor.isoformat(), "built_at": now.isoformat(),
                "build_seconds": round(build_seconds, 3), "pg_version": pg_version,
                "sandbox_version": SANDBOX_VERSION,
            }, indent=2), encoding="utf-8")
            staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return SandboxProduct(root=entry, anchor=anchor, built_at=now, build_seconds=build_seconds,
                          cache_hit=False)


def _prune(cache_dir: Path, *, keep: str) -> None:
    """Remove other days' (or other versions') entries and half-built leftovers."""
    for path in cache_dir.iterdir():
        name = path.name.lstrip(".")
        if name.startswith(_ENTRY_PREFIX) and path.name != keep and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _build(staging: Path, *, anchor: datetime, now: datetime, bindir: Path, workdir: Path,
           cache_dir: Path, progress: Progress) -> None:
    template = template_datadir(cache_dir, bindir=bindir, workdir=workdir)
    build_dir = workdir / f"sandbox-build-{uuid.uuid4().hex[:8]}"
    build_dir.mkdir(mode=0o711)
    archive = build_dir / "wal"
    archive.mkdir()
    hand_to_server_user(archive)
    # Keep little WAL around (the template uses 1 MB segments): the data dir is copied on every start.
    # Every segment is archived (`.part` then `mv`: a half-copied segment is never taken as whole).
    # pgBackRest reaches the build cluster only through its Unix socket, which PostgreSQL does not
    # create when the path passes 107 bytes (a long TMPDIR): then the socket gets a short directory.
    sockdir = build_dir / "pgdata-sock"
    if len(os.fsencode(f"{sockdir}/.s.PGSQL.65535")) > MAX_SOCKET_PATH:
        sockdir = Path(tempfile.mkdtemp(prefix="drillbook-sock-", dir="/tmp"))
    server = PostgresServer("sandbox build", build_dir / "pgdata", bindir=bindir, sockdir=sockdir)
    pgbackrest = pgbackrest_repo.BuildRepo(build_dir, server)
    # pgBackRest's archive-push follows the copy (a no-op until its stanza exists).
    server.settings = {
        "min_wal_size": "2MB", "max_wal_size": "4MB", "archive_mode": "on",
        "archive_command": f"cp %p {archive}/%f.part && mv {archive}/%f.part {archive}/%f && "
                           f"{pgbackrest.archive_hook}"}
    barman = barman_location.BarmanBuild(staging / "s3")
    try:
        server.init(template=template)
        server.start()
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PRODUCT_DB}")
        dsn = server.dsn(PRODUCT_DB)
        seed.apply_migrations(dsn, anchor=anchor)
        progress(f"building the sandbox backup history ({BACKUP_DAYS} nightly backups; once a day)")
        since: datetime | None = None
        directory_from = backup_times(anchor)[-DIRECTORY_DAYS]
        base_from = backup_times(anchor)[-BASE_BACKUPS]
        first_segment: str | None = None
        for taken_at in backup_times(anchor):
            seed.seed(dsn, anchor=anchor, since=since, until=taken_at)
            since = taken_at
            _dump_all(server, staging, taken_at=taken_at, directory=taken_at >= directory_from)
            if taken_at >= base_from:
                first_segment = first_segment or _current_segment(server)
                _base_backup(server, staging / "basebackup")
                pgbackrest.backup()  # a full set on the older base backup's night, then incrs
        barman.backup(server)
        seed.seed(dsn, anchor=anchor, since=since, until=now)
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            # Switch segments and checkpoint so the old WAL is removed, not cached and copied (and
            # the archive runs a few segments past the newest base backup).
            for _ in range(3):
                conn.execute("CHECKPOINT")
                conn.execute("SELECT pg_switch_wal()")
            _wait_archived(conn)
        server.stop()
        copy_tree(server.datadir, staging / "pgdata")
        _keep_wal(archive, staging / "wal", since_segment=first_segment or "")
        pgbackrest.keep(staging / "pgbackrest")
        barman.archive(archive)
    finally:
        barman.close()
        server.stop()
        shutil.rmtree(build_dir, ignore_errors=True)
        shutil.rmtree(sockdir, ignore_errors=True)


def _current_segment(server: PostgresServer) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    return str(row[0]) if row else ""


def _base_backup(server: PostgresServer, into: Path) -> None:
    """One ``pg_basebackup -Ft -z -X none`` (the archive holds its WAL), named by the wall clock."""
    into.mkdir(parents=True, exist_ok=True)
    name = datetime.now(UTC).strftime(BASE_PATTERN)
    while (into / name).exists():  # two backups within a second: the key must still name one
        time.sleep(0.2)
        name = datetime.now(UTC).strftime(BASE_PATTERN)
    _run([str(server.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres",
          "-D", str(into / name), "-Ft", "-z", "-X", "none", "-c", "fast"], into / name)


def _wait_archived(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Until the archiver has taken every finished segment (the archive must be continuous)."""
    deadline = time.monotonic() + _ARCHIVED_WAIT_S
    while time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) FROM pg_catalog.pg_ls_archive_statusdir() "
                           "WHERE name LIKE '%.ready'").fetchone()
        if row and row[0] == 0:
            return
        time.sleep(0.05)
    raise EnvironmentError_(f"the sandbox build cluster did not archive its WAL within "
                            f"{_ARCHIVED_WAIT_S:.0f} s",
                            hint="the sandbox build cluster misbehaved; remove the cache directory and retry")


def _keep_wal(archive: Path, into: Path, *, since_segment: str) -> None:
    """The archive from ``since_segment`` on (and the backups' ``.backup`` history files) into the cache."""
    into.mkdir()
    for path in sorted(archive.iterdir()):
        name = path.name
        if name.endswith(".part"):
            continue
        segment = name[:24]
        if SEGMENT.fullmatch(segment) and segment >= since_segment:
            shutil.copyfile(path, into / name)


def _dump_all(server: PostgresServer, out: Path, *, taken_at: datetime, directory: bool) -> None:
    """Take one night's dumps concurrently (the database does not change while they run)."""
    aureus = out / "s3" / AUREUS_PREFIX / taken_at.strftime(AUREUS_PATTERN)
    sark = out / "s3" / SARK_PREFIX / taken_at.strftime(SARK_PATTERN)
    plain = out / "directory" / taken_at.strftime(DIRECTORY_PATTERN)
    conn = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    jobs: list[Callable[[], None]] = [
        lambda: _run_gzipped([str(server.bindir / "pg_dumpall"), *conn], aureus),
        lambda: _run([str(server.bindir / "pg_dump"), "-Fc", *conn, "-d", PRODUCT_DB, "-f", str(sark)],
                     sark),
    ]
    if directory:
        jobs.append(lambda: _run_gzipped([str(server.bindir / "pg_dump"), *conn, "-d", PRODUCT_DB], plain))
    for path in (aureus, sark, plain):
        path.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    digest = hashlib.sha256(sark.read_bytes()).hexdigest()
    sidecar = sark.parent / (sark.name + CHECKSUM_SUFFIX)
    sidecar.write_text(f"{digest}  {sark.name}\n", encoding="utf-8")
    # mtime = backup time: the directory store shows it, and S3 uploads use it as LastModified.
    stamp = taken_at.timestamp()
    for path in (aureus, sark, sidecar, plain):
        if path.exists():
            os.utime(path, (stamp, stamp))


def _run(command: list[str], target: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EnvironmentError_(
            f"building the sandbox backup {target.name} failed: {Path(command[0]).name} exited with "
            f"status {result.returncode}: {result.stderr.strip()[-2000:]}",
            hint="the sandbox build cluster misbehaved; remove the cache directory and retry",
        )


def _run_gzipped(command: list[str], target: Path) -> None:
    """``command | gzip -n > target`` without a shell."""
    with target.open("wb") as out:
        dump = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        gzip = subprocess.Popen(["gzip", "-n", "-c"], stdin=dump.stdout, stdout=out)
        if dump.stdout is not None:
            dump.stdout.close()  # gzip owns the pipe now; dump gets SIGPIPE if gzip dies
        _, errors = dump.communicate()
        gzip_code = gzip.wait()
    if dump.returncode != 0 or gzip_code != 0:
        raise EnvironmentError_(
            f"building the sandbox backup {target.name} failed: {Path(command[0]).name} exited with "
            f"status {dump.returncode}, gzip with {gzip_code}: {errors.decode(errors='replace')[-2000:]}",
            hint="the sandbox build cluster misbehaved; remove the cache directory and retry",
        )


def newest_backup(anchor: datetime) -> datetime:
    """When the newest nightly backup of the history was taken (yesterday 02:00 UTC)."""
    return backup_times(anchor)[-1]

