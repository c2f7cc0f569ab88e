"""pgBackRest stanzas restored and recovered into scratch (drills/physical/pgbackrest.py), real servers.

One source cluster per module (pgbench scale 1, archive_mode=on, an archive_command that is a
generated sh script calling `pgbackrest archive-push`), a posix repo owned by postgres, one full
set taken while the cluster's auto.conf was hostile and one clean incr, `--start-fast` and
`repo1-bundle=y`. Damaged repos are copies (`cp -a`: the server user must still read them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from checks.errors import EnvironmentError_, NoBackupFound, RestoreFailed
from checks.pgbackrest_verify import verify_verdict
from checks.verdict import Outcome
from drills import pgtools
from drills.deadlines import Limit
from drills.physical import PhysicalRestore, pgbackrest, source_for
from drills.pitr_sample import find_gap
from drills.processes import PostgresServer, hand_to_server_user, initdb, server_user_kwargs
from drills.targets import StoreSpec
from steps.physical import sample_verdicts, with_gap_range
from tests.support.archiving import markers_dir, query, set_hostile_settings, temp_root, wait_archived

STANZA = "demo"
S3_KEY = "AKIAPGBRTESTKEY42"  # fake credentials the output must never show
S3_SECRET = "pgbr-s3-secret-0f9e8d7c"


@dataclass
class Source:
    root: Path
    repo: Path
    markers: Path
    full: str  # the full set's label (taken with the hostile auto.conf)
    incr: str
    between: datetime  # after batch 2 committed, after the full ended, before the incr
    rows: int  # ticks rows at the end of the archive


def _options(repo: Path) -> tuple[tuple[str, str], ...]:
    # job-retry 0: a damaged file fails at once (pgbackrest's default retries after 15 s, A2).
    return (("job-retry", "0"), ("repo1-path", str(repo)))


def _spec(src: Source, *, repo: Path | None = None, stanza: str = STANZA) -> StoreSpec:
    return StoreSpec(name="pgbr", url=f"pgbackrest:{stanza}@repo1", kind="pgbackrest", stanza=stanza, repo=1,
                     options=_options(repo or src.repo))


def _pgbr(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(["pgbackrest", "--config=/dev/null", f"--stanza={STANZA}", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=120, **server_user_kwargs())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _label(env: dict[str, str], kind: str) -> str:
    proc = subprocess.run(["pgbackrest", "--config=/dev/null", f"--stanza={STANZA}", "--output=json", "info"],
                          env=env, capture_output=True, text=True, check=True, **server_user_kwargs())
    return str([b["label"] for b in json.loads(proc.stdout)[0]["backup"] if b["type"] == kind][-1])


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    """The cluster, its repo with a full (hostile auto.conf) and an incr, and WAL after both (stopped)."""
    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")
    if shutil.which("pgbackrest") is None:
        pytest.skip(reason="pgbackrest is not installed (Debian package `pgbackrest`)")
    root = temp_root("drillbook-test-pgbr-")
    repo, aux, markers = root / "repo", root / "aux", markers_dir(root)
    for path in (repo, aux):
        path.mkdir()
        hand_to_server_user(path, mode=0o750)
    initdb(root / "src", bindir=bindir, log_path=root / "initdb.log")
    server = PostgresServer("pgbr-source", root / "src", bindir=bindir)
    env = {"PATH": "/usr/bin:/bin", "PGBACKREST_REPO1_PATH": str(repo), "PGBACKREST_LOCK_PATH": f"{aux}/lock",
           "PGBACKREST_LOG_PATH": f"{aux}/log", "PGBACKREST_LOG_LEVEL_FILE": "off",
           "PGBACKREST_LOG_LEVEL_CONSOLE": "warn", "PGBACKREST_REPO1_RETENTION_FULL": "9",
           "PGBACKREST_PG1_PATH": str(root / "src"), "PGBACKREST_PG1_PORT": str(server.port),
           "PGBACKREST_PG1_SOCKET_PATH": str(server.sockdir), "PGBACKREST_ARCHIVE_TIMEOUT": "30"}
    # The server user cannot run /root's Python (study A1): the archive_command is plain sh.
    script = root / "archive-pgbackrest.sh"
    script.write_text("#!/bin/sh\nexec env -i " + " ".join(f"{k}='{v}'" for k, v in env.items())
                      + f" /usr/bin/pgbackrest --config=/dev/null --stanza={STANZA} archive-push \"$1\"\n",
                      encoding="utf-8")
    script.chmod(0o755)
    server.settings = {"wal_level": "replica", "archive_mode": "on", "archive_command": f"{script} %p"}
    server.start()
    try:
        _pgbr(env, "stanza-create")
        subprocess.run([str(bindir / "pgbench"), "-i", "-s", "1", "-q", "-h", "127.0.0.1",
                        "-p", str(server.port), "-U", "postgres", "postgres"],
                       check=True, capture_output=True)
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE ticks (id serial PRIMARY KEY, batch int, "
                         "t timestamptz DEFAULT clock_timestamp())")
            conn.execute("INSERT INTO ticks (batch) SELECT 1 FROM generate_series(1, 50)")
            set_hostile_settings(conn, markers)  # in the full set's auto.conf
            _pgbr(env, "--type=full", "--start-fast", "--repo1-bundle=y", "backup")
            conn.execute("ALTER SYSTEM RESET ALL")
            time.sleep(1.1)  # set stop times are whole seconds
            conn.execute("INSERT INTO ticks (batch) SELECT 2 FROM generate_series(1, 50)")
            conn.execute("SELECT pg_switch_wal()")
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            between = row[0]
            time.sleep(1.1)
            _pgbr(env, "--type=incr", "--start-fast", "--repo1-bundle=y", "backup")
            for _ in range(3):  # several segments after the incr: a gap can sit mid-range
                conn.execute("INSERT INTO ticks (batch) SELECT 3 FROM generate_series(1, 50)")
                conn.execute("SELECT pg_switch_wal()")
            wait_archived(conn)
    finally:
        server.stop()
    before = _snapshot(repo)
    yield Source(root=root, repo=repo, markers=markers, full=_label(env, "full"), incr=_label(env, "incr"),
                 between=between, rows=250)
    try:  # every drill only read the repository (a recovered server never archives into it)
        assert _snapshot(repo) == before
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _snapshot(repo: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(repo)): (p.stat().st_size, p.stat().st_mtime_ns) for p in repo.rglob("*")}


@pytest.fixture
def damaged(source: Source) -> Iterator[Path]:
    """A copy of the repo (owner kept) for a test to damage."""
    copy = Path(tempfile.mkdtemp(prefix="drillbook-test-pgbr-copy-"))
    copy.chmod(0o711)
    subprocess.run(["cp", "-a", str(source.repo), str(copy / "repo")], check=True)
    yield copy / "repo"
    shutil.rmtree(copy, ignore_errors=True)


def _segments(repo: Path) -> list[Path]:
    found = (repo / "archive" / STANZA).glob("*/*/*.gz")
    return sorted(p for p in found if re.match(r"[0-9A-F]{24}-", p.name))


def test_a_target_time_picks_the_hostile_full_and_its_auto_conf_is_inert(
        source: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGBR_S3_SECRET", S3_SECRET)  # as an operator exports it for ${ENV}
    with PhysicalRestore(_spec(source), target=source.between) as drill:
        result = drill.run()
        assert result.target is not None and result.backup.key == source.full
        assert drill.server is not None and drill.server.pid is not None
        environ = Path(f"/proc/{drill.server.pid}/environ").read_bytes().split(b"\0")
        assert S3_SECRET.encode() not in b"\0".join(environ)  # the untrusted server never sees it
        assert {e.split(b"=")[0] for e in environ if e} <= {b"PATH", b"LANG", b"mirakuru_uuid"}
        batch, newest = query(result.target.dsn, "SELECT max(batch), max(t) FROM ticks")
        assert batch == 2 and isinstance(newest, datetime) and newest <= source.between
        assert result.recovery["state"] == "paused at target"
        assert datetime.fromisoformat(result.recovery["replayed_to"]) <= source.between
        moved = drill.workdir / "quarantined-postgresql.auto.conf"
        assert b"touch" in moved.read_bytes()
        digest = hashlib.sha256(moved.read_bytes()).hexdigest()
        assert result.recovery["quarantined"]["auto_conf_sha256"] == digest
        assert result.recovery["defused"]["promoted_for_reading"] is True
        with psycopg.connect(drill.server.dsn(), autocommit=True) as conn:  # superuser: pg_switch_wal
            # Promoted before any step reads it: force an archive attempt.
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            sources: dict[str, str] = dict(conn.execute("SELECT name, source FROM pg_settings WHERE name IN "
                                        "('archive_command', 'shared_preload_libraries')").fetchall())
        assert set(sources.values()) == {"command line"}
    assert list(source.markers.iterdir()) == []


def test_another_stanza_and_a_target_before_every_set_are_refused_before_restoring(source: Source) -> None:
    with PhysicalRestore(_spec(source, stanza="other")) as drill, \
            pytest.raises(NoBackupFound, match=r"stanza `other` in repo1: missing stanza path"):
        drill.run()
    assert [e["phase"] for e in drill.journal.entries] == ["discover", "cleanup: remove scratch"]
    early = source.between - timedelta(days=1)
    with PhysicalRestore(_spec(source), target=early) as drill, \
            pytest.raises(NoBackupFound, match=re.escape(early.isoformat()) + ".*" + source.full):
        drill.run()
    assert not (drill.workdir / "data").exists()


def test_a_corrupted_file_fails_verify_naming_it_and_the_restore_cleanly(source: Source,
                                                                         damaged: Path) -> None:
    bundle = sorted((damaged / "backup" / STANZA / source.full / "bundle").iterdir())[0]
    with bundle.open("r+b") as file:  # the first files of the full's first bundle: the incr references them
        file.seek(2000)
        file.write(b"drillbook")
    gone = _segments(damaged)[-3]
    gone.unlink()
    spec = _spec(source, repo=damaged)
    verdict = verify_verdict(pgbackrest.verify(spec, timeout_s=120), store="pgbr", repo=1)
    assert verdict.outcome.value == "failed", verdict.message
    for label in (source.full, source.incr):
        assert f"set {label} is invalid" in verdict.message
    assert re.search(rf"invalid checksum {source.full}/pg_data/\S+", verdict.message)
    assert "WAL gap in archive 15-1: nothing between" in verdict.message
    drill = PhysicalRestore(spec)
    workdir = drill.workdir
    failed = rf"restore of set {source.incr} .*failed \(exit 29\).*\[029\]"
    with drill, pytest.raises(RestoreFailed, match=failed):
        drill.run()
    assert drill.server is None and not workdir.exists()


def test_a_segment_missing_mid_range_fails_naming_it(source: Source, damaged: Path) -> None:
    gone = _segments(damaged)[-2]
    gone.unlink()
    segment = gone.name[:24]
    drill = PhysicalRestore(_spec(source, repo=damaged))
    workdir = drill.workdir
    with drill, pytest.raises(RestoreFailed, match=segment) as caught:
        drill.run()
    assert caught.value.context["segment"] == segment
    # Not the name inside the redacted tail: a hypothesis test elsewhere in the worker may have
    # registered a secret such as "00000000".
    assert "is missing inside the archive" in caught.value.context["log_tail"]
    assert drill.result is not None and drill.result.recovery["first_missing_segment"] == segment
    assert not workdir.exists()
    # The range it costs (the restore step's message), and the same gap from repo-ls alone.
    spec = _spec(source, repo=damaged)
    extended = with_gap_range(caught.value, spec)
    assert "no later base backup" in extended.message and extended.context["unrecoverable_from"]
    gap = find_gap(source_for(spec).archive_listing())
    assert gap.missing == segment and gap.last_commit_before is not None


def test_a_sampled_moment_recovers_through_repo_ls_and_repo_get(source: Source) -> None:
    """Sampling on a stanza: the window from the oldest set's end to the newest commit (pg_waldump on a
    segment repo-get fetched into scratch), one moment restored and proven."""
    listing = source_for(_spec(source)).archive_listing()
    assert {b.name for b in listing.backups} == {source.full, source.incr}
    verdicts = list(sample_verdicts(_spec(source), n=1, window=timedelta(days=1), rpo=timedelta(hours=1),
                                    seed="s", draw="pgbr", limit=lambda: Limit(120, "test")))
    assert [v.outcome for v in verdicts] == [Outcome.PASSED], [v.message for v in verdicts]
    assert source.full in verdicts[0].evidence["window_start_from"]
    assert "newest commit in the archive" in verdicts[0].evidence["window_end_from"]


def test_drillbook_run_restores_checks_ages_and_verifies_without_showing_a_secret(source: Source,
                                                                                   tmp_path: Path) -> None:
    """A real ``drillbook run``: the store from drillbook.toml, a second repo's S3 secrets from ${ENV}."""
    config = tmp_path / "drillbook.toml"
    config.write_text(
        '[targets.pgbr]\nkind = "pgbackrest"\nstanza = "demo"\nrepo = 1\n[targets.pgbr.options]\n'
        f'repo1-path = "{source.repo}"\njob-retry = 0\nrepo2-type = "s3"\nrepo2-s3-bucket = "b"\n'
        'repo2-s3-endpoint = "localhost"\nrepo2-s3-region = "us-east-1"\nrepo2-path = "/pgbr"\n'
        'repo2-s3-key = "${PGBR_S3_KEY}"\nrepo2-s3-key-secret = "${PGBR_S3_SECRET}"\n', encoding="utf-8")
    features = tmp_path / "features"
    features.mkdir()
    (features / "pgbr.feature").write_text(
        "Feature: pgBackRest\n\n  @id:PGBR-01\n  Scenario: the newest set recovers to the archive's end\n"
        '    Given the backups in "pgbr"\n'
        "    When the newest backup is restored into a scratch database\n"
        f'    Then the query "SELECT count(*) FROM ticks" returns exactly {source.rows}\n'
        '    And the query "SELECT count(*) FROM pgbench_accounts" returns exactly 100000\n'
        "    And the newest backup is at most 1h old\n"
        "    And the newest full backup is at most 1h old\n"
        "    And the newest diff backup is at most 1h old\n"
        '    And the backups in "pgbr" pass the tool\'s own verification\n', encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "PGBR_S3_KEY": S3_KEY, "PGBR_S3_SECRET": S3_SECRET}
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features", str(features),
         "--out", str(out)], capture_output=True, text=True, timeout=300, check=False, env=env,
        cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run / "results.json").read_text())
    scenarios = {s["id"]: s for s in results["scenarios"]}
    assert {k: s["outcome"] for k, s in scenarios.items()} == {"PGBR-01": "passed"}
    verdicts = {v["id"]: v for v in scenarios["PGBR-01"]["verdicts"]}
    assert verdicts["backup.tool_verify"]["evidence"]["status"] == "ok"
    restored = verdicts["restore.completed"]["evidence"]
    assert (restored["key"], restored["format"]) == (source.incr, "pgbackrest")
    assert restored["recovery"]["state"] == "promoted"
    assert restored["recovery"]["first_missing_segment"] is None
    assert restored["journal"][-1]["phase"] == "cleanup: remove scratch"
    assert source.incr in verdicts["restore.completed"]["message"]
    assert '"repo2-s3-key-secret": "***"' in (run / "config.json").read_text()  # the options, masked
    everything = proc.stdout + proc.stderr + "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    for secret in (S3_KEY, S3_SECRET):
        assert secret not in everything


def test_a_set_of_another_major_is_refused_naming_it_and_the_bindir(source: Source) -> None:
    """The driver's check of ``Chosen.major`` (pgbackrest's db.version, read before restoring)."""
    with PhysicalRestore(_spec(source)) as drill, \
            pytest.raises(RestoreFailed, match=f"{source.full} is a PostgreSQL 99 backup") as caught:
        drill._check_major(source.full, "99")
    assert "DRILLBOOK_PG_BINDIR" in str(caught.value)


def test_doctor_answers_with_pgbackrest_info(source: Source) -> None:
    from drillbook.doctor.targets import store

    verdict = store("pgbr", _spec(source))
    assert verdict.outcome.value == "passed" and f"2 sets, newest {source.incr} (incr)" in verdict.message
    other = store("pgbr", _spec(source, stanza="other"))
    assert other.outcome.value == "failed" and "stanza `other` in repo1: missing stanza path" in other.message
