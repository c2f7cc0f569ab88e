"""Barman cloud backups on moto's S3 restored and recovered into scratch (drills/physical/barman_cloud.py).

One source cluster per module, archiving through a generated ``sh`` script that calls
``barman-cloud-wal-archive`` (as production would: the keys live in that script), one real
``barman-cloud-backup`` whose ``postgresql.auto.conf`` is hostile (restored by drillbook's own
download and extraction), committed batches around it, and a
FAILED backup listed after it. Other servers in the bucket are copies of it with one thing broken.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks.errors import BackupRefused, NoBackupFound, RestoreFailed, StoreUnreachable
from checks.verdict import Outcome
from drills.deadlines import Limit
from drills.physical import Chosen, PhysicalRestore
from drills.physical.barman_cloud import BarmanCloudSource, continuity
from drills.pitr_sample import find_gap
from drills.processes import S3Server, server_user_kwargs
from drills.stores import make_client
from drills.targets import StoreSpec
from steps.physical import sample_verdicts, with_gap_range
from tests.support.archiving import (
    archiving_source,
    batch_then_moment,
    markers_dir,
    query,
    server_bindir,
    set_hostile_settings,
    temp_root,
    wait_archived,
)

SECRET = "barman-s3-secret-5f0c"  # the store's fake secret key: never in any output
BUCKET = "barman"
URL = f"s3://{BUCKET}/pg"
FAILED_ID = "29991231T235959"  # listed after the real backup, never chosen


@dataclass
class Source:
    spec: StoreSpec
    backup_id: str
    between: datetime  # after batch 2 committed, before batch 3
    markers: Path


def _spec(s3: S3Server, server: str = "src") -> StoreSpec:
    return StoreSpec(name="barman", url=URL, kind="barman-cloud", server=server, endpoint_url=s3.endpoint_url,
                     access_key_id="drillbook-test", secret_access_key=SECRET)


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "drillbook-test", "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1"}


def _copy_server(client: Any, source: str, dest: str, *, skip: str | None = None, only: str = "") -> None:
    """Copy the objects of one barman server's prefix to another: those whose key contains ``only``,
    but not those ending with ``skip``."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"pg/{source}/"):
        for item in page.get("Contents", []):
            if only in item["Key"] and (skip is None or not item["Key"].endswith(skip)):
                client.copy_object(Bucket=BUCKET, Key=item["Key"].replace(f"pg/{source}/", f"pg/{dest}/", 1),
                                   CopySource={"Bucket": BUCKET, "Key": item["Key"]})


@pytest.fixture(scope="module")
def source(s3_server: S3Server) -> Iterator[Source]:
    """A cluster archiving to barman cloud, one hostile backup, three batches; stopped before tests."""
    bindir = server_bindir()
    wal_archive = shutil.which("barman-cloud-wal-archive")
    if wal_archive is None:
        pytest.skip(reason="barman-cloud-* are not installed (Debian package barman-cli-cloud)")
    client = make_client(_spec(s3_server))
    client.create_bucket(Bucket=BUCKET)
    root = temp_root("drillbook-test-barman-")
    markers = markers_dir(root)
    script = root / "archive.sh"  # production's archive_command: it holds production's keys
    script.write_text("#!/bin/sh\n" + "".join(f"export {k}='{v}'\n" for k, v in _env().items()) +
                      f'exec {wal_archive} --endpoint-url {s3_server.endpoint_url} {URL} src "$1"\n',
                      encoding="utf-8")
    script.chmod(0o755)
    server = archiving_source(root, "barman-source", bindir=bindir, archive_command=f"{script} %p")
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE ticks (id serial PRIMARY KEY, batch int, "
                         "t timestamptz DEFAULT clock_timestamp())")
            conn.execute("INSERT INTO ticks (batch) SELECT 1 FROM generate_series(1, 50)")
            set_hostile_settings(conn, markers)
            subprocess.run([shutil.which("barman-cloud-backup") or "barman-cloud-backup", "--endpoint-url",
                            s3_server.endpoint_url, "-h", "127.0.0.1", "-p", str(server.port),
                            "-U", "postgres", "-z", "--immediate-checkpoint", URL, "src"],
                           env=_env(), check=True, capture_output=True, timeout=120, **server_user_kwargs())
            conn.execute("ALTER SYSTEM RESET ALL")
            between = batch_then_moment(conn, 2)
            # One more segment after the target (barman-cloud-wal-archive: ~1.5 s each, A3): the
            # backup's start, the target's and this one — so a gap can sit mid-range.
            conn.execute("INSERT INTO ticks (batch) SELECT 3 FROM generate_series(1, 50)")
            conn.execute("SELECT pg_switch_wal()")
            wait_archived(conn, timeout_s=60)
    finally:
        server.stop()
    spec = _spec(s3_server)
    [backup] = BarmanCloudSource(spec).list_backups()
    # A backup that never finished, listed after the real one.
    info = client.get_object(Bucket=BUCKET, Key=f"pg/src/base/{backup.backup_id}/backup.info")["Body"].read()
    client.put_object(Bucket=BUCKET, Key=f"pg/src/base/{FAILED_ID}/backup.info",
                      Body=info.decode().replace("status=DONE", "status=FAILED").encode())
    yield Source(spec=spec, backup_id=backup.backup_id, between=between, markers=markers)
    shutil.rmtree(root, ignore_errors=True)


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _objects(spec: StoreSpec, server: str) -> dict[str, str]:
    client = make_client(spec)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"pg/{server}/")
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def test_the_newest_done_backup_recovers_to_the_end_without_a_secret(source: Source) -> None:
    before = _objects(source.spec, "src")
    drill = PhysicalRestore(source.spec)
    workdir = drill.workdir
    with drill:
        result = drill.run()
        assert result.target is not None
        assert query(result.target.dsn, "SELECT count(*), max(batch) FROM ticks") == (150, 3)
        assert result.recovery["state"] == "promoted" and result.recovery["first_missing_segment"] is None
        assert result.backup.key == source.backup_id  # the FAILED one after it was not chosen
        discover = result.journal.entries[0]
        assert discover["phase"] == "discover"
        assert discover["not_done"] == [f"{FAILED_ID} (FAILED)"]
        assert drill.server is not None and drill.server.pid is not None
        # The recovered server and its restore_command: no key, no endpoint, no barman.
        server_env = _environ(drill.server.pid)
        assert SECRET.encode() not in server_env and b"AWS_" not in server_env
        script = (workdir / "conf" / "restore_wal.sh").read_text()
        assert "barman" not in script and "http" not in script
        # The hostile auto.conf: quarantined, and none of its commands ran.
        assert "archive_command" in result.recovery["quarantined"]["auto_conf_settings"]
        with psycopg.connect(drill.server.dsn(), autocommit=True) as conn:  # superuser: pg_switch_wal
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
        evidence = json.dumps(result.evidence(), default=str)
    assert SECRET not in evidence
    assert list(source.markers.iterdir()) == []
    assert not workdir.exists()
    assert _objects(source.spec, "src") == before  # the store is read, never written


def test_recovers_to_a_time_between_batches(source: Source) -> None:
    with PhysicalRestore(source.spec, target=source.between) as drill:
        result = drill.run()
        assert result.target is not None
        batch, newest = query(result.target.dsn, "SELECT max(batch), max(t) FROM ticks")
        assert batch == 2 and isinstance(newest, datetime) and newest <= source.between
        assert result.recovery["state"] == "paused at target"


def test_a_target_before_the_oldest_end_is_refused_before_restoring(source: Source) -> None:
    early = source.between - timedelta(hours=1)
    drill = PhysicalRestore(source.spec, target=early)
    with drill, pytest.raises(NoBackupFound, match=re.escape(early.isoformat())) as caught:
        drill.run()
    assert source.backup_id in caught.value.message
    assert [e["phase"] for e in drill.journal.entries] == ["discover", "cleanup: remove scratch"]


def test_without_a_history_file_the_end_is_when_backup_info_was_uploaded(source: Source) -> None:
    """Barman 3.4 gives no end with an offset; copied after the target, the backup cannot be picked."""
    _copy_server(make_client(source.spec), "src", "nohist", only="/backup.info")
    barman = BarmanCloudSource(replace(source.spec, server="nohist"))
    [done] = [b for b in barman.list_backups() if b.status == "DONE"]
    end, how = barman.ended(done)
    assert how == "backup.info uploaded (an upper bound)"
    assert end is not None and end > source.between  # so a target at `between` never picks it


def test_the_listing_is_reused_only_while_the_backup_info_objects_are_unchanged(source: Source) -> None:
    client = make_client(source.spec)
    _copy_server(client, "src", "relist", only="/backup.info")
    spec = replace(source.spec, server="relist")
    first = BarmanCloudSource(spec).list_backups()
    again = BarmanCloudSource(spec).list_backups()
    assert again[0] is first[0]  # the same parsed answer: barman-cloud-backup-list did not run again
    key = f"pg/relist/base/{source.backup_id}/backup.info"
    info = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=info.replace(b"status=DONE", b"status=FAILED"))
    [changed] = [b for b in BarmanCloudSource(spec).list_backups() if b.backup_id == source.backup_id]
    assert changed.status == "FAILED"


def test_a_wal_object_deleted_mid_range_fails_naming_it(source: Source) -> None:
    client = make_client(source.spec)
    listing = BarmanCloudSource(source.spec).wal_listing()
    segments = listing.timeline_segments(min(listing.segments))
    removed = segments[-2]
    _copy_server(client, "src", "gap", skip=removed)
    drill = PhysicalRestore(replace(source.spec, server="gap"))
    with drill, pytest.raises(RestoreFailed, match=removed) as caught:
        drill.run()
    assert caught.value.context["segment"] == removed
    # Aborted by drillbook's restore_command (exit 126), not a promote at the gap. (The tail is redacted:
    # a secret another test registered, such as "0000", could mask digits of the name, so not compared.)
    assert "is missing inside the archive" in caught.value.context["log_tail"]
    assert drill.result is not None and drill.result.recovery["first_missing_segment"] == removed
    assert SECRET not in str(caught.value) + json.dumps(drill.journal.entries, default=str)
    # Without restoring: drillbook's own count over the listing names the same segment.
    verdict = continuity(replace(source.spec, server="gap"))
    assert verdict.outcome is Outcome.FAILED and verdict.evidence["first_missing"] == removed
    assert continuity(source.spec).outcome is Outcome.PASSED
    # The range it costs (the restore step's message; pg_waldump on a downloaded copy) and the step's gap.
    gappy = replace(source.spec, server="gap")
    extended = with_gap_range(caught.value, gappy)
    assert "no later base backup" in extended.message and extended.context["unrecoverable_from"]
    gap = find_gap(BarmanCloudSource(gappy).archive_listing())  # the continuity step's count and range
    assert gap.missing == removed and gap.last_commit_before is not None


def test_a_sampled_moment_recovers_from_the_wals_listing(source: Source) -> None:
    """Sampling on a barman server: the window from the DONE backup's end to the newest commit."""
    verdicts = list(sample_verdicts(source.spec, n=1, window=timedelta(days=1), rpo=timedelta(hours=1),
                                    seed="s", draw="barman", limit=lambda: Limit(120, "test")))
    assert [v.outcome for v in verdicts] == [Outcome.PASSED], [v.message for v in verdicts]
    assert source.backup_id in verdicts[0].evidence["window_start_from"]
    assert SECRET not in json.dumps([v.evidence for v in verdicts], default=str)


def test_a_tool_failure_is_could_not_check_and_names_the_url(source: Source) -> None:
    spec = replace(source.spec, url="s3://no-such-bucket/pg")
    with PhysicalRestore(spec) as drill, pytest.raises(StoreUnreachable) as caught:
        drill.run()
    assert "s3://no-such-bucket/pg" in str(caught.value) and "does not exist" in str(caught.value)
    assert SECRET not in str(caught.value)



def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 3 if kind == tarfile.REGTYPE else 0
    return info


def _put_backup(source: Source, server: str, tar_name: str, body: bytes) -> StoreSpec:
    """A copy of the real backup's backup.info under ``server`` with ``body`` as its one tar."""
    client = make_client(source.spec)
    _copy_server(client, "src", server, only="/backup.info")  # refused before any WAL is needed
    client.put_object(Bucket=BUCKET, Key=f"pg/{server}/base/{source.backup_id}/{tar_name}", Body=body)
    return replace(source.spec, server=server)


# Each hostile tar: its members (after a harmless PG_VERSION) and the member the refusal must name.
# {out} is a directory outside scratch the attack aims at.
HOSTILE = {
    "absolute name": ([("{out}/evil", tarfile.REGTYPE, "")], "{out}/evil"),
    "dot-dot name": ([("../../{name}/evil", tarfile.REGTYPE, "")], "../../{name}/evil"),
    "symlink out, then a file through it": ([("pg_out", tarfile.SYMTYPE, "{out}"),
                                             ("pg_out/evil", tarfile.REGTYPE, "")], "pg_out"),
    "device": ([("pg_dev", tarfile.CHRTYPE, "")], "pg_dev"),
    "hard link out": ([("pg_hard", tarfile.LNKTYPE, "{out}/canary")], "pg_hard"),
}


def _hostile_tar(case: str, out: Path) -> bytes:
    members, _ = HOSTILE[case]
    fill = {"out": str(out), "name": out.name}
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz") as tar:
        tar.addfile(_member("PG_VERSION"), io.BytesIO(b"15\n"))
        for name, kind, link in members:
            tar.addfile(_member(name.format(**fill), kind, link.format(**fill)), io.BytesIO(b"bad"))
    return body.getvalue()


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside scratch that the hostile tars aim at, holding a canary file."""
    out = Path(tempfile.mkdtemp(prefix="drillbook-evil-"))
    (out / "canary").write_text("canary", encoding="utf-8")
    yield out
    assert sorted(p.name for p in out.iterdir()) == ["canary"]  # nothing written, nothing replaced
    assert (out / "canary").read_text(encoding="utf-8") == "canary"
    assert not (out.parent / "evil").exists()
    shutil.rmtree(out)


def test_a_hostile_tar_fails_the_restore_naming_the_member(source: Source, outside: Path) -> None:
    """drillbook, not barman-cloud-restore (no filter on Debian's Python), extracts the tar it downloaded."""
    server = f"evil-{uuid.uuid4().hex[:8]}"
    drill = PhysicalRestore(_put_backup(source, server, "data.tar.gz", _hostile_tar("dot-dot name", outside)))
    workdir = drill.workdir
    with drill, pytest.raises(BackupRefused) as caught:
        drill.run()
    assert f"pg/{server}/base/{source.backup_id}/data.tar.gz: refusing member " \
           f"'../../{outside.name}/evil'" in caught.value.message
    assert not workdir.exists()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_each_hostile_member_is_refused_before_anything_is_written(source: Source, outside: Path, case: str,
                                                                   tmp_path: Path) -> None:
    """The source's own materialize (the listing call is the driver's, tested above): every kind of escape."""
    server = f"evil-{uuid.uuid4().hex[:8]}"
    barman = BarmanCloudSource(_put_backup(source, server, "data.tar.gz", _hostile_tar(case, outside)))
    datadir = tmp_path / "data"
    datadir.mkdir()
    chosen = Chosen(key=source.backup_id, taken=source.between)
    with pytest.raises(BackupRefused) as caught:
        barman.materialize(chosen, datadir, Limit(60, "test").start())
    member = HOSTILE[case][1].format(out=outside, name=outside.name)
    assert f"refusing member {member!r}" in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and list(datadir.iterdir()) == []


def _tar(*names: str, mode: str = "w") -> bytes:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode=mode) as tar:  # type: ignore[call-overload]
        for name in names:
            tar.addfile(_member(name), io.BytesIO(b"15\n"))
    return body.getvalue()


def test_a_backup_in_parts_is_extracted_whole_and_a_tablespace_tar_is_refused(source: Source,
                                                                               tmp_path: Path) -> None:
    """barman-cloud-backup splits data.tar past -S (data_0001.tar …); a tablespace is <oid>.tar."""
    spec = _put_backup(source, "parts", "data.tar.bz2", _tar("PG_VERSION", mode="w:bz2"))
    client = make_client(spec)
    client.put_object(Bucket=BUCKET, Key=f"pg/parts/base/{source.backup_id}/data_0001.tar",
                      Body=_tar("global/pg_control"))
    chosen = Chosen(key=source.backup_id, taken=source.between)
    notes = BarmanCloudSource(spec).materialize(chosen, tmp_path / "data", Limit(60, "test").start())
    assert notes["members"] == 2 and (tmp_path / "data" / "global" / "pg_control").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the downloads are gone
    client.put_object(Bucket=BUCKET, Key=f"pg/parts/base/{source.backup_id}/16385.tar", Body=_tar("x"))
    with pytest.raises(RestoreFailed, match=r"16385\.tar: .*tablespace"):
        BarmanCloudSource(spec).materialize(chosen, tmp_path / "again", Limit(60, "test").start())


def test_a_tar_in_a_codec_drillbook_cannot_read_is_named(source: Source, tmp_path: Path) -> None:
    barman = BarmanCloudSource(_put_backup(source, "snappy", "data.tar.snappy", b"\xff\x06\x00\x00sNaPpY"))
    with pytest.raises(RestoreFailed) as caught:
        barman.materialize(Chosen(key=source.backup_id, taken=source.between), tmp_path / "data",
                           Limit(60, "test").start())
    assert "data.tar.snappy" in caught.value.message and "python-snappy" in caught.value.message


def test_doctor_lists_a_barman_cloud_store(source: Source) -> None:
    from drillbook.doctor.targets import store

    verdict = store("barman", source.spec)
    assert verdict.outcome.value == "passed", verdict.message
    assert "1 DONE backups of `src`" in verdict.message and source.backup_id in verdict.message


def test_drillbook_run_on_barman_cloud_stores(source: Source, tmp_path: Path) -> None:
    """A real ``drillbook run``: stores from the config (keys from ${ENV}); freshness passes; an unknown
    server name fails naming it (no backup: checked, and none); the key is in no output."""
    config = tmp_path / "drillbook.toml"
    store = (f'kind = "barman-cloud"\nurl = "{URL}"\nendpoint_url = "{source.spec.endpoint_url}"\n'
             'access_key_id = "${BARMAN_KEY}"\nsecret_access_key = "${BARMAN_SECRET}"\n')
    config.write_text(f'[targets.barman]\nserver = "src"\n{store}\n'
                      f'[targets.other]\nserver = "no-such-server"\n{store}', encoding="utf-8")
    features = tmp_path / "features"
    features.mkdir()
    (features / "barman.feature").write_text(
        "Feature: barman cloud\n\n"
        "  @id:BAR-01\n  Scenario: fresh\n"
        '    Given the backups in "barman"\n'
        "    Then the newest backup is at most 1 hour old\n"
        "    And the WAL archive of \"barman\" has no gap since the oldest backup\n\n"
        "  @id:BAR-02\n  Scenario: another server name\n"
        '    Given the backups in "other"\n'
        "    When the newest backup is restored into a scratch database\n", encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "BARMAN_KEY": "drillbook-test", "BARMAN_SECRET": SECRET}
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features", str(features),
         "--out", str(out)], capture_output=True, text=True, timeout=300, check=False, env=env,
        cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    [run] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    scenarios = {s["id"]: s for s in json.loads((run / "results.json").read_text())["scenarios"]}
    assert {k: s["outcome"] for k, s in scenarios.items()} == {"BAR-01": "passed", "BAR-02": "failed"}
    verdicts = {v["id"]: v for v in scenarios["BAR-01"]["verdicts"]}
    assert verdicts["pitr.wal_continuity"]["outcome"] == "passed", verdicts["pitr.wal_continuity"]
    ended = datetime.fromisoformat(verdicts["backup.freshness"]["evidence"]["backup_time"])
    assert source.between - timedelta(minutes=5) < ended < source.between  # the DONE backup's end
    [restore] = scenarios["BAR-02"]["verdicts"]
    assert "no-such-server" in restore["message"] and URL in restore["message"]
