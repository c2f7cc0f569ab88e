"""The source cluster bench/physical_restore.py restores: built once per bench run in a temp dir.

A pgbench cluster run as the ``postgres`` OS user (16 MB WAL segments, as operators run them) with
``archive_mode=on``; its ``archive_command`` is a generated ``sh`` script that copies each segment
into a WAL directory and pushes it to a pgBackRest posix repo (``repo1-bundle=y``). Then one base
backup of each kind (``pg_basebackup -Ft -z -X none`` into a basebackup store, ``pgbackrest backup
--type=full --start-fast``) and ``pgbench -T`` load, so recovery replays a real amount of WAL.

The source's settings are given with ``-c`` (never written into its data dir), so the backups carry
initdb's configuration only: a restored copy does not archive into the bench's repo.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from drills.processes import PostgresServer, hand_to_server_user, server_user_kwargs

STANZA = "bench"
KEY_PATTERN = "base_%Y%m%d_%H%M%S"
# What a child run as the server user gets: no secret, nothing of the caller's environment.
SERVER_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


def as_server(argv: list[str], *, timeout: float | None = None, **kwargs: Any) -> str:
    """Run ``argv`` as the server user with a bare environment; its stdout, or raise with stderr."""
    result = subprocess.run(argv, capture_output=True, text=True, env=SERVER_ENV, timeout=timeout,
                            check=False, **server_user_kwargs(), **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}… exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-800:]}")
    return str(result.stdout)


def server_dir(path: Path, mode: int = 0o700) -> Path:
    """A directory owned by the server user."""
    path.mkdir(parents=True, exist_ok=True)
    hand_to_server_user(path, mode=mode)
    return path


@dataclass
class Built:
    """What the bench restores: the stores, the archive and the facts measured while building."""

    root: Path
    bindir: Path
    wal: Path                # the WAL directory (every segment, plain)
    store: Path              # the basebackup store: one base_<time>/ directory
    repo: Path               # the pgBackRest posix repo
    config: Path             # pgbackrest.conf for the by-hand way (the operator's file)
    restores: Path           # where the by-hand ways put their data dirs (server user's)
    scale: int
    db_bytes: int
    base_tar_bytes: int
    repo_bytes: int
    wal_segments: int
    wal_bytes: int
    replay_segments: int     # the archive's segments from the base backup's start segment on
    backup_start_lsn: str    # pg_basebackup's START WAL LOCATION (both backups start close by)
    load_started: datetime   # the source's clock when pgbench -T began / ended
    load_ended: datetime
    tps: float
    history_rows: int        # pgbench_history at the end: a recovery to the archive's end has them all
    timings: dict[str, float]

    @property
    def start_segment(self) -> str:
        return _segment_of(self.backup_start_lsn)

    @property
    def base_tar(self) -> Path:
        return next(self.store.glob("base_*/base.tar.gz"))


def _archive_script(root: Path, wal: Path, config: Path) -> Path:
    """cp into the WAL dir (``.part`` + ``mv``, idempotent with ``cmp``: a retry after a failed push),
    then ``pgbackrest archive-push`` (its name contains "pgbackrest": pgbackrest check wants it, A2)."""
    script = root / "archive-pgbackrest.sh"
    script.write_text(f"""#!/bin/sh
set -e
if [ -f '{wal}'/"$2" ]; then cmp -s "$1" '{wal}'/"$2"; else
  cp "$1" '{wal}'/"$2".part && mv '{wal}'/"$2".part '{wal}'/"$2"; fi
exec pgbackrest --config='{config}' --stanza={STANZA} archive-push "$1"
""", encoding="utf-8")
    script.chmod(0o755)
    return script


def _pgbackrest_conf(root: Path, repo: Path, src: Path, sock: Path, port: int) -> Path:
    """The operator's pgbackrest.conf: posix repo, bundling on, logs and locks inside the bench dir."""
    for name in ("pgbr-log", "pgbr-lock", "pgbr-spool"):
        server_dir(root / name)
    config = root / "pgbackrest.conf"
    config.write_text(f"""[global]
repo1-path={repo}
repo1-bundle=y
repo1-retention-full=2
log-path={root / "pgbr-log"}
lock-path={root / "pgbr-lock"}
spool-path={root / "pgbr-spool"}
log-level-console=warn
log-level-file=off

[{STANZA}]
pg1-path={src}
pg1-port={port}
pg1-socket-path={sock}
""", encoding="utf-8")
    config.chmod(0o644)
    return config


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _wait_archived(conn: psycopg.Connection[Any], timeout_s: float = 900.0) -> None:
    """Switch WAL and wait until the segment before the current one is archived."""
    conn.execute("SELECT pg_switch_wal()")
    row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None
    current = row[0]
    previous = f"{current[:16]}{int(current[16:], 16) - 1:08X}"
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        done = conn.execute("SELECT last_archived_wal, failed_count, last_failed_wal "
                            "FROM pg_stat_archiver").fetchone()
        if done and done[0] and done[0] >= previous:
            return
        time.sleep(0.2)
    raise RuntimeError(f"WAL up to {previous} was not archived within {timeout_s:.0f} s "
                       f"(pg_stat_archiver: {done})")


def build(root: Path, bindir: Path, *, scale: int, load_s: int, say: Any = print) -> Built:
    """Initialise, load, archive and back up the source; stop it; return what was built."""
    timings: dict[str, float] = {}
    src, wal, store, repo = root / "src", server_dir(root / "wal", 0o755), root / "store", root / "pgbr-repo"
    server_dir(store, 0o755)
    server_dir(repo)
    sock = server_dir(root / "sock-src")
    restores = server_dir(root / "restores", 0o711)
    server_dir(src)

    t = time.perf_counter()
    as_server([str(bindir / "initdb"), "--no-sync", "-U", "postgres", "-A", "trust", "-E", "UTF8",
               "--locale=C.UTF-8", "-D", str(src)])
    server = PostgresServer("bench-source", src, bindir=bindir, sockdir=sock, log_path=root / "source.log",
                            timeout_s=120, settings={})
    config = _pgbackrest_conf(root, repo, src, sock, server.port)
    server.settings.update({
        "wal_level": "replica", "archive_mode": "on", "archive_timeout": "0",
        "archive_command": f"{_archive_script(root, wal, config)} %p %f",
        # PostgresServer turns these off for sandboxes; the source must write WAL as production does.
        "full_page_writes": "on", "max_wal_size": "1GB",
    })
    server.start()
    timings["initdb + start"] = time.perf_counter() - t
    pgbackrest = ["pgbackrest", f"--config={config}", f"--stanza={STANZA}"]
    try:
        t = time.perf_counter()
        subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-I", "dtGvp", "-s", str(scale),
                        "-d", server.dsn()], check=True, capture_output=True)
        timings["pgbench -i"] = time.perf_counter() - t
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_database_size('postgres')").fetchone()
            db_bytes = int(row[0]) if row else 0
            t = time.perf_counter()
            as_server([*pgbackrest, "stanza-create"], timeout=600)
            timings["stanza-create"] = time.perf_counter() - t

            t = time.perf_counter()
            dest = store / time.strftime(KEY_PATTERN, time.gmtime())
            as_server([str(bindir / "pg_basebackup"), "-h", str(sock), "-p", str(server.port),
                       "-U", "postgres", "-D", str(dest), "-Ft", "-z", "-X", "none", "-c", "fast"],
                      timeout=3600)
            timings["pg_basebackup -Ft -z"] = time.perf_counter() - t
            t = time.perf_counter()
            as_server([*pgbackrest, "--type=full", "--start-fast", "backup"], timeout=3600)
            timings["pgbackrest backup full"] = time.perf_counter() - t

            say(f"source: pgbench -T {load_s} …", flush=True)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            load_started = row[0]
            t = time.perf_counter()
            out = subprocess.run([str(bindir / "pgbench"), "-n", "-c", "4", "-j", "2", "-T", str(load_s),
                                  "-d", server.dsn()], check=True, capture_output=True, text=True).stdout
            timings[f"pgbench -T {load_s}"] = time.perf_counter() - t
            tps = re.search(r"tps = ([0-9.]+)", out)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            load_ended = row[0]
            row = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()
            history_rows = int(row[0]) if row else -1
            t = time.perf_counter()
            _wait_archived(conn)
            timings["archive catch-up"] = time.perf_counter() - t
    finally:
        server.stop()
    start = _backup_start(wal)
    segments = [p for p in wal.iterdir() if re.fullmatch(r"[0-9A-F]{24}", p.name)]
    return Built(root=root, bindir=bindir, wal=wal, store=store, repo=repo, config=config, restores=restores,
                 scale=scale, db_bytes=db_bytes, base_tar_bytes=_du(store), repo_bytes=_du(repo),
                 wal_segments=len(segments), wal_bytes=sum(p.stat().st_size for p in segments),
                 replay_segments=sum(p.name >= _segment_of(start) for p in segments),
                 backup_start_lsn=start, load_started=load_started, load_ended=load_ended,
                 tps=float(tps.group(1)) if tps else 0.0, history_rows=history_rows, timings=timings)


def _backup_start(wal: Path) -> str:
    """pg_basebackup's START WAL LOCATION, from the archive's ``.backup`` history file."""
    for entry in sorted(wal.glob("*.backup")):
        text = entry.read_text(encoding="utf-8", errors="replace")
        if "pg_basebackup" in text:
            found = re.search(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)", text)
            if found:
                return found.group(1)
    raise RuntimeError(f"no pg_basebackup .backup history file in {wal}")


def _segment_of(lsn: str, timeline: int = 1, segment_bytes: int = 16 << 20) -> str:
    """The WAL file name holding ``lsn`` (16 MB segments, as initdb made them here)."""
    high, low = (int(part, 16) for part in lsn.split("/"))
    number = ((high << 32) + low) // segment_bytes
    per_log = 0x100000000 // segment_bytes
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def remove(root: Path) -> None:
    """Remove the bench dir (the server user's files too: the bench runs as root or as their owner)."""
    shutil.rmtree(root, ignore_errors=True)
