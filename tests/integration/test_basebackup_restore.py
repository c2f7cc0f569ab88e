"""pg_basebackup + WAL archive restored and recovered into scratch (drills/physical/), real servers.

One source cluster per module: a base backup (tar.gz, `-X none`), committed batches around it, a
WAL archive fed by its archive_command; a second store holds a hostile backup of the same cluster
(`-R`: standby.signal + primary_conninfo, and ALTER SYSTEM lines that would run commands). The same
archive is also uploaded to moto's S3 (every other segment gzipped) for ``wal = "s3://…"``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from checks.errors import BackupRefused, NoBackupFound, RestoreFailed
from checks.pitr import first_missing
from drills.physical import PhysicalRestore, source_for
from drills.physical.basebackup import BaseBackupSource
from drills.pitr_sample import find_gap, list_wal, recoverable_window
from drills.processes import PostgresServer, S3Server, hand_to_server_user, server_user_kwargs
from drills.stores import make_client
from drills.targets import StoreSpec
from steps.physical import with_gap_range
from tests.support.archiving import (
    archiving_source,
    batch_then_moment,
    copy_into,
    markers_dir,
    query,
    server_bindir,
    set_hostile_settings,
    temp_root,
    wait_archived,
    wal_dir,
)

PATTERN = "base_%Y%m%d_%H%M%S"
SECRET = "s3cret-in-auto-conf"  # a fake password the evidence must never show
EVIL_LIB = "drillbook_evil_lib"


@dataclass
class Source:
    root: Path
    wal: Path
    store: Path
    hostile: Path
    between: datetime  # after batch 2 committed, before batch 3
    markers: Path
    foreign_lib: Path  # a backup declaring a C function with the library './drillbook_evil_lib'
    evil_until: datetime  # the function is dropped after this
    hostile_until: datetime  # the hostile per-database setting is reset after this


def _basebackup(server: PostgresServer, dest: Path, *extra: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    hand_to_server_user(dest.parent, mode=0o755)
    subprocess.run([str(server.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(server.port),
                    "-U", "postgres", "-D", str(dest), "-Ft", "-z", "-X", "none", "-c", "fast", *extra],
                   check=True, capture_output=True, **server_user_kwargs())


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    """A small cluster with a base backup, three committed batches and its WAL archive (stopped)."""
    bindir = server_bindir()
    root = temp_root("drillbook-test-bb-")
    wal = wal_dir(root)
    markers = markers_dir(root)
    # Production sizes above PostgreSQL's defaults: a hot standby must match them or it pauses.
    server = archiving_source(root, "bb-source", bindir=bindir, archive_command=copy_into(wal),
                              max_connections="150", max_locks_per_transaction="128")
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE ticks (id serial PRIMARY KEY, batch int, "
                         "t timestamptz DEFAULT clock_timestamp())")
            conn.execute("INSERT INTO ticks (batch) SELECT 1 FROM generate_series(1, 50)")
            # The hostile copies come first: no moment after the store's own backup ever holds their
            # objects (sampled moments of that store must not land on them).
            # A hostile copy: its auto.conf would run commands and load a missing library.
            set_hostile_settings(conn, markers, ("external_pid_file", f"{markers}/pid"),
                                 ("primary_conninfo", f"host=192.0.2.1 password={SECRET}"))
            # Per-database settings beat the server's command line: the first connection would load
            # a library from the data directory (the server's working directory).
            conn.execute(f"ALTER DATABASE postgres SET session_preload_libraries = './{EVIL_LIB}'")
            # A view over a SECURITY DEFINER function that runs a program: a step reading the view as
            # a superuser (or lent the owner's rights) would leave the marker.
            conn.execute("CREATE FUNCTION public.drillbook_definer() RETURNS int SECURITY DEFINER "
                         f"LANGUAGE plpgsql AS $$BEGIN COPY (SELECT 1) TO PROGRAM 'touch {markers}/definer'; "
                         "RETURN 1; END$$")
            conn.execute("CREATE VIEW public.ticks_report AS SELECT public.drillbook_definer() AS n")
            _basebackup(server, root / "hostile" / time.strftime(PATTERN, time.gmtime()), "-R")
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            hostile_until = row[0]  # recovered to here, the per-database setting is still there
            time.sleep(0.2)
            conn.execute("ALTER SYSTEM RESET ALL")
            conn.execute("ALTER DATABASE postgres RESET ALL")
            conn.execute("DROP VIEW public.ticks_report")
            conn.execute("DROP FUNCTION public.drillbook_definer()")
            # A C function whose library path points into the backup's own files (CREATE loads the
            # library to check it, so the hostile path goes straight into the catalog, as a superuser can).
            conn.execute(f"CREATE FUNCTION public.{EVIL_LIB}() RETURNS int "
                         "AS '$libdir/plpgsql', 'plpgsql_validator' LANGUAGE c")
            conn.execute(f"UPDATE pg_catalog.pg_proc SET probin = './{EVIL_LIB}' "
                         f"WHERE proname = '{EVIL_LIB}'")
            _basebackup(server, root / "foreign-lib" / time.strftime(PATTERN, time.gmtime()))
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            evil_until = row[0]  # recovered to here, the function is still there
            time.sleep(0.2)
            conn.execute(f"DROP FUNCTION public.{EVIL_LIB}()")
            _basebackup(server, root / "store" / time.strftime(PATTERN, time.gmtime()))
            time.sleep(1.1)  # whole seconds in the key pattern: later batches are after the backup
            between = batch_then_moment(conn, 2)
            for _ in range(3):  # several segments after the target: a gap can sit mid-range
                conn.execute("INSERT INTO ticks (batch) SELECT 3 FROM generate_series(1, 50)")
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            conn.execute("SELECT pg_switch_wal()")
            wait_archived(conn)
    finally:
        server.stop()
    yield Source(root=root, wal=wal, store=root / "store", hostile=root / "hostile", between=between,
                 markers=markers, foreign_lib=root / "foreign-lib", evil_until=evil_until,
                 hostile_until=hostile_until)
    shutil.rmtree(root, ignore_errors=True)


def _spec(src: Source, *, store: Path | None = None, wal: Path | None = None) -> StoreSpec:
    return StoreSpec(name="bb", url=str(store or src.store), key_pattern=PATTERN, kind="basebackup",
                     wal=str(wal or src.wal))


S3_SECRET = "bb-wal-s3-secret-7a1c"  # the WAL bucket's fake secret key: never in any output
BUCKET = "bbwal"


def _s3_spec(src: Source, s3: S3Server, prefix: str = "wal/") -> StoreSpec:
    return StoreSpec(name="bbs3", url=str(src.store), key_pattern=PATTERN, kind="basebackup",
                     wal=f"s3://{BUCKET}/{prefix}", endpoint_url=s3.endpoint_url,
                     access_key_id="drillbook-test", secret_access_key=S3_SECRET)


@pytest.fixture(scope="module")
def s3_wal(source: Source, s3_server: S3Server) -> Iterator[tuple[S3Server, list[str]]]:
    """The archive uploaded under ``wal/`` (every other segment as ``.gz``); its segment names."""
    client = make_client(_s3_spec(source, s3_server))
    client.create_bucket(Bucket=BUCKET)
    segments = []
    for i, path in enumerate(sorted(source.wal.iterdir())):
        body, name = path.read_bytes(), path.name
        if len(name) == 24:
            segments.append(name)
            if i % 2:
                body, name = gzip.compress(body, compresslevel=1), f"{name}.gz"
        client.put_object(Bucket=BUCKET, Key=f"wal/{name}", Body=body)
    yield s3_server, segments


def _gone(drill: PhysicalRestore, pid: int | None, workdir: Path) -> None:
    """Nothing left: the postmaster is dead and scratch removed."""
    assert not workdir.exists()
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert drill.server is None


def test_recover_to_end_of_archive(source: Source) -> None:
    drill = PhysicalRestore(_spec(source))
    workdir = drill._workdir
    with drill:
        result = drill.run()
        assert result.target is not None
        assert query(result.target.dsn, "SELECT count(*), max(batch) FROM ticks") == (250, 3)
        assert result.recovery["state"] == "promoted"
        assert result.recovery["first_missing_segment"] is None
        assert result.rto_s > 0 and {"restore", "recovery", "first_query"} <= set(result.timings)
        assert [e["phase"] for e in result.journal.entries][:3] == ["discover", "restore", "quarantine"]
        pid = drill.server.pid if drill.server else None
    _gone(drill, pid, workdir)
    assert result.journal.entries[-1]["phase"] == "cleanup: remove scratch"


def test_recover_to_a_time_between_batches(source: Source) -> None:
    with PhysicalRestore(_spec(source), target=source.between) as drill:
        result = drill.run()
        assert result.target is not None
        batch, newest = query(result.target.dsn, "SELECT max(batch), max(t) FROM ticks")
        assert batch == 2
        assert isinstance(newest, datetime) and newest <= source.between
        assert result.recovery["state"] == "paused at target"
        assert datetime.fromisoformat(result.recovery["replayed_to"]) <= source.between


def test_a_missing_segment_mid_range_fails_naming_it(source: Source, tmp_path: Path) -> None:
    gappy = Path(tempfile.mkdtemp(prefix="drillbook-test-gap-"))
    try:
        shutil.copytree(source.wal, gappy / "wal")
        segments = sorted(p.name for p in (gappy / "wal").iterdir() if len(p.name) == 24)
        removed = segments[-2]
        (gappy / "wal" / removed).unlink()
        drill = PhysicalRestore(_spec(source, wal=gappy / "wal"))
        workdir = drill._workdir
        with drill, pytest.raises(RestoreFailed, match=removed) as caught:
            drill.run()
        assert caught.value.context["segment"] == removed
        # Aborted by drillbook's restore_command (exit 126), not a promote at the gap.
        # (Not the name inside the redacted tail: test_config's hypothesis registers secrets such as
        # "00000000" in the same process, which mask digits of segment names there.)
        assert "is missing inside the archive" in caught.value.context["log_tail"]
        assert drill.result is not None and drill.result.recovery["first_missing_segment"] == removed
        _gone(drill, None, workdir)
    finally:
        shutil.rmtree(gappy, ignore_errors=True)


def test_wal_on_s3_recovers_and_a_missing_object_is_named_by_its_key(
        source: Source, s3_wal: tuple[S3Server, list[str]]) -> None:
    """drillbook lists and downloads the prefix itself (plain and .gz); a gap names its S3 key and range."""
    s3, segments = s3_wal
    with PhysicalRestore(_s3_spec(source, s3)) as drill:
        result = drill.run()
        assert result.target is not None
        assert query(result.target.dsn, "SELECT count(*), max(batch) FROM ticks") == (250, 3)
        shown = json.dumps(result.evidence(), default=str) + json.dumps(drill.journal.entries, default=str)
    assert f"s3://{BUCKET}/wal/" in shown and S3_SECRET not in shown
    client = make_client(_s3_spec(source, s3))
    removed = segments[-2]
    for key in [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="wal/")["Contents"]]:
        if not key.startswith(f"wal/{removed}"):
            client.copy_object(Bucket=BUCKET, Key=key.replace("wal/", "gap/", 1),
                               CopySource={"Bucket": BUCKET, "Key": key})
    gappy = _s3_spec(source, s3, "gap/")
    drill = PhysicalRestore(gappy)
    with drill, pytest.raises(RestoreFailed, match=removed) as caught:
        drill.run()
    assert f"(expected at s3://{BUCKET}/gap/{removed}" in caught.value.message
    extended = with_gap_range(caught.value, gappy)  # as the restore step says it: the range it costs
    assert "no later base backup" in extended.message and extended.context["unrecoverable_from"]
    gap = find_gap(source_for(gappy).archive_listing())  # the continuity step: no restore
    assert gap.missing == removed and gap.last_commit_before is not None
    assert S3_SECRET not in str(extended) + json.dumps(drill.journal.entries, default=str)
    # All compressed: the segment size is learnt from the newest segment, downloaded (not assumed 16 MB).
    for name in segments[-2:]:
        client.put_object(Bucket=BUCKET, Key=f"allgz/{name}.gz",
                          Body=gzip.compress((source.wal / name).read_bytes(), compresslevel=1))
    listing = source_for(_s3_spec(source, s3, "allgz/")).archive_listing()
    assert listing.segment_bytes == (source.wal / segments[-1]).stat().st_size
    from drillbook.doctor.targets import store

    doctor = store("bbs3", gappy)  # doctor lists the prefix with the store's endpoint and keys
    assert doctor.outcome.value == "passed" and f"WAL segments in s3://{BUCKET}/gap/" in doctor.message
    assert S3_SECRET not in doctor.message


def test_a_target_outside_the_archive_fails_naming_it(source: Source) -> None:
    late = source.between + timedelta(hours=1)
    with PhysicalRestore(_spec(source), target=late) as drill, \
            pytest.raises(RestoreFailed, match="beyond the WAL archive") as caught:
        drill.run()
    assert late.isoformat() in caught.value.message
    # After the backup started (its key) but before it ended: PostgreSQL would land later, refused.
    ended = BaseBackupSource(_spec(source)).choose(None).end  # backup_label + the .backup's STOP TIME
    assert ended is not None
    mid = ended - timedelta(microseconds=1)
    with PhysicalRestore(_spec(source), target=mid) as drill, \
            pytest.raises(NoBackupFound, match="ended at or before " + re.escape(mid.isoformat())):
        drill.run()
    early = source.between - timedelta(days=1)
    with PhysicalRestore(_spec(source), target=early) as drill, \
            pytest.raises(NoBackupFound, match=re.escape(early.isoformat())):
        drill.run()


def test_a_hostile_auto_conf_is_inert(source: Source) -> None:
    with PhysicalRestore(_spec(source, store=source.hostile), target=source.hostile_until) as drill:
        result = drill.run()
        assert result.target is not None and drill.server is not None
        # Steps read as drillbook's reader: no superuser, and the backup's definer rights are gone.
        with psycopg.connect(result.target.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() \
                == (False,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pg_execute_server_program"):
                conn.execute("SELECT n FROM public.ticks_report")
        assert result.recovery["defused"]["security_definer_functions_made_invoker"] >= 1
        with psycopg.connect(drill.server.dsn(), autocommit=True) as conn:  # superuser: pg_switch_wal
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            sources: dict[str, str] = dict(conn.execute(
                "SELECT name, source FROM pg_settings WHERE name IN "
                "('archive_command', 'shared_preload_libraries', 'recovery_end_command')").fetchall())
        assert set(sources.values()) == {"command line"}
        quarantined = result.recovery["quarantined"]
        moved = drill._workdir / "quarantined-postgresql.auto.conf"
        import hashlib

        assert quarantined["auto_conf_sha256"] == hashlib.sha256(moved.read_bytes()).hexdigest()
        assert {"archive_command", "primary_conninfo"} <= set(quarantined["auto_conf_settings"])
        assert "standby.signal" in quarantined["removed"]
        assert SECRET.encode() in moved.read_bytes()
        assert SECRET not in json.dumps(result.evidence(), default=str)
        assert result.recovery["state"] == "paused at target"
        assert result.recovery["defused"]["promoted_for_reading"] is True
        # The per-database setting was removed before any step connected, and is named.
        with psycopg.connect(drill.server.dsn("postgres"), autocommit=True) as conn:
            assert conn.execute("SHOW session_preload_libraries").fetchone() == ("",)
        assert "postgres/*: session_preload_libraries" in json.dumps(result.evidence(), default=str)
    assert list(source.markers.iterdir()) == []


def test_a_c_function_loading_a_library_from_the_backup_is_refused(source: Source) -> None:
    """`AS './lib'` would load a file shipped in the backup's data directory: refused, naming it."""
    drill = PhysicalRestore(_spec(source, store=source.foreign_lib), target=source.evil_until)
    workdir = drill._workdir
    with drill, pytest.raises(BackupRefused, match=rf"{EVIL_LIB}\(\) loads '\./{EVIL_LIB}'") as raised:
        drill.run()
    pid = drill.server.pid if drill.server is not None else None
    _gone(drill, pid, workdir)
    assert "outside PostgreSQL's library directory" in str(raised.value)


def test_a_tar_escaping_its_directory_is_refused(source: Source) -> None:
    evil = f"drillbook-evil-{uuid.uuid4().hex[:8]}"
    store = Path(tempfile.mkdtemp(prefix="drillbook-test-evil-"))
    try:
        backup = store / time.strftime(PATTERN, time.gmtime())
        backup.mkdir()
        with tarfile.open(backup / "base.tar.gz", "w:gz") as tar:
            for name in ("PG_VERSION", f"../../{evil}"):
                info = tarfile.TarInfo(name)
                info.size = 3
                tar.addfile(info, io.BytesIO(b"15\n"))
        drill = PhysicalRestore(_spec(source, store=store))
        workdir = drill._workdir
        with drill, pytest.raises(BackupRefused, match=evil):
            drill.run()
        _gone(drill, None, workdir)
        assert not (Path(tempfile.gettempdir()) / evil).exists()
        assert not (workdir.parent / evil).exists()
    finally:
        shutil.rmtree(store, ignore_errors=True)


def test_first_missing_counts_across_log_files() -> None:
    seg = 1 << 20  # 4096 segments per log file
    assert first_missing(["000000010000000000000FFE", "000000010000000100000000"],
                         "000000010000000000000FFE", "000000010000000100000000", seg) == \
        "000000010000000000000FFF"


def test_drillbook_run_restores_and_recovers_a_basebackup_store(
        source: Source, s3_wal: tuple[S3Server, list[str]], tmp_path: Path) -> None:
    """A real ``drillbook run``: the store from the config, the shared restore sentence, PITR, checks;
    a second store reads the same WAL from S3 with its keys from ${ENV}, sampled once, never shown."""
    config = tmp_path / "drillbook.toml"
    config.write_text(f'[targets.bb]\nkind = "basebackup"\npath = "{source.store}"\nwal = "{source.wal}"\n'
                      f'key_pattern = "{PATTERN}"\n'
                      f'[targets.bbs3]\nkind = "basebackup"\npath = "{source.store}"\n'
                      f'wal = "s3://{BUCKET}/wal"\nendpoint_url = "{s3_wal[0].endpoint_url}"\n'
                      'access_key_id = "${BB_KEY}"\nsecret_access_key = "${BB_SECRET}"\n'
                      f'key_pattern = "{PATTERN}"\nrpo = "1h"\n', encoding="utf-8")
    features = tmp_path / "features"
    features.mkdir()
    (features / "pitr.feature").write_text(
        "Feature: physical backups\n\n"
        "  @id:BB-01\n  Scenario: the newest base backup recovers to the end of its archive\n"
        '    Given the backups in "bb"\n'
        "    When the newest backup is restored into a scratch database\n"
        "    Then the restored tables hold at least these rows:\n"
        "      | table | rows |\n      | ticks | 250  |\n"
        '    And the query "SELECT max(batch) FROM ticks" returns exactly 3\n\n'
        "  @id:BB-02\n  Scenario: point in time\n"
        '    Given the backups in "bb"\n'
        f'    When the database is recovered to "{source.between.isoformat()}"\n'
        '    Then the query "SELECT max(batch) FROM ticks" returns exactly 2\n\n'
        "  @id:BB-03\n  Scenario: the WAL archive on S3\n"
        '    Given the backups in "bbs3"\n'
        '    Then the WAL archive of "bbs3" has no gap since the oldest backup\n'
        "    And the database can be recovered to 1 random moments of the last 1 day\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features", str(features),
         "--out", str(out)], capture_output=True, text=True, timeout=300, check=False,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "BB_KEY": "drillbook-test", "BB_SECRET": S3_SECRET})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run / "results.json").read_text())
    scenarios = {s["id"]: s for s in results["scenarios"]}
    assert {k: s["outcome"] for k, s in scenarios.items()} == \
        {"BB-01": "passed", "BB-02": "passed", "BB-03": "passed"}, json.dumps(scenarios["BB-03"])[:2000]
    ids = [v["id"] for v in scenarios["BB-03"]["verdicts"]]
    assert ids.count("pitr.wal_continuity") == 1 and ids.count("pitr.recovered_point") == 1
    shown = proc.stdout + proc.stderr + "".join(p.read_text(errors="replace") for p in out.rglob("*")
                                                 if p.is_file())
    assert S3_SECRET not in shown and f"s3://{BUCKET}/wal/" in shown
    restored = next(v for v in scenarios["BB-02"]["verdicts"] if v["id"] == "restore.completed")
    assert restored["evidence"]["recovery"]["state"] == "paused at target"
    assert restored["evidence"]["journal"][-1]["phase"] == "cleanup: remove scratch"


def test_a_plain_backup_recovers_and_a_link_in_one_is_refused(source: Source) -> None:
    plain = Path(tempfile.mkdtemp(prefix="drillbook-test-plain-"))
    try:
        [tar_backup] = list(source.store.iterdir())
        backup = plain / tar_backup.name
        backup.mkdir()
        with tarfile.open(tar_backup / "base.tar.gz") as tar:
            tar.extractall(backup, filter="data")
        with PhysicalRestore(_spec(source, store=plain)) as drill:
            result = drill.run()
            assert result.target is not None
            assert query(result.target.dsn, "SELECT count(*) FROM ticks") == (250,)
        (backup / "global" / "escape").symlink_to("/etc/passwd")
        with PhysicalRestore(_spec(source, store=plain)) as drill, \
                pytest.raises(BackupRefused, match="global/escape"):
            drill.run()
    finally:
        shutil.rmtree(plain, ignore_errors=True)


def test_doctor_lists_a_basebackup_store(source: Source) -> None:
    from drillbook.doctor.targets import store

    verdict = store("bb", _spec(source))
    assert verdict.outcome.value == "passed", verdict.message
    assert "1 keys match" in verdict.message and "WAL segments" in verdict.message
    empty = Path(tempfile.mkdtemp(prefix="drillbook-test-nowal-"))
    try:
        assert store("bb", _spec(source, wal=empty)).outcome.value == "failed"
    finally:
        empty.rmdir()


def test_only_the_stores_own_backups_bound_the_window(source: Source) -> None:
    """The archive's `.backup` files also name the hostile copies' backups (taken earlier, kept
    elsewhere): the sampling window starts at the end of the store's own backup, not theirs."""
    listing = BaseBackupSource(_spec(source)).archive_listing()
    everything = list_wal(source.wal).backups
    assert len(everything) >= 3 and len(listing.recoverable_backups()) == 1
    store_backup = listing.recoverable_backups()[0]
    assert store_backup.stop_time == max(b.stop_time for b in everything)
    window = recoverable_window(listing, now=datetime.now(UTC), window=timedelta(days=1))
    assert window.low == store_backup.stop_time + timedelta(seconds=1)  # STOP TIME has whole seconds
