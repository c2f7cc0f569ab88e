"""`drillbook doctor --config`: every check against real servers, and what it leaves behind (nothing).

Two PostgreSQL clusters of the module's own (tests/integration/conftest.py): the **subject
cluster** holds the subject database (a table ``orders`` with one row, owned by ``postgres``) and
the roles it is reached as — ``reader`` (``pg_read_all_data``), ``writer`` (INSERT on
``orders``), ``filer`` (``pg_write_server_files``), the superuser ``postgres``; the **scratch
cluster** holds the scratch databases, each owned by a contained role of its own. Most tests
call the command in-process; the exit codes and the secrets are checked on a real subprocess
(whose redactor knows only what the config told it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql

from checks.verdict import Outcome
from drills.local import LocalScratch
from drills.processes import S3_ACCESS_KEY_ID, S3Server
from drills.scratch_catalog import read_catalog
from drills.targets import PostgresTarget
from tests.support.cli import drillbook
from tests.support.pg import admin_dsn

pytestmark = pytest.mark.integration

SUBJECT_PASSWORD = "subj-Pa55word-9f3c"  # trust auth ignores it: a value that must never be printed
S3_SECRET = "s3-Secret-Key-5b7e1d"  # moto accepts any key: never to be printed


@pytest.fixture(scope="module")
def subject_db(subject_cluster: LocalScratch) -> Iterator[PostgresTarget]:
    """The subject database, its table and the roles it may be reached as."""
    target = subject_cluster.fresh_database("doctor subject")
    with psycopg.connect(admin_dsn(target), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO public.orders VALUES (1, 'precious')")
        for role in ("reader", "writer", "filer"):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute("GRANT pg_read_all_data TO reader, filer")
        conn.execute("GRANT pg_write_server_files TO filer")
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO reader, writer, filer").format(
            sql.Identifier(conn.info.dbname)))
        conn.execute("GRANT SELECT, INSERT ON public.orders TO writer")
    try:
        yield target
    finally:
        subject_cluster.drop(target)  # the database and its grants first: then the roles can go
        with psycopg.connect(admin_dsn(target, dbname="postgres"), autocommit=True) as conn:
            conn.execute("DROP ROLE reader, writer, filer")


def as_role(target: PostgresTarget, user: str) -> str:
    """The subject's DSN as ``user``, with a password (ignored by trust auth, never to be printed)."""
    info = psycopg.conninfo.conninfo_to_dict(target.dsn)
    info.update(user=user, password=SUBJECT_PASSWORD)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


@pytest.fixture
def scratch_db(scratch_cluster: LocalScratch) -> Iterator[PostgresTarget]:
    """An empty database on the scratch cluster, owned by a contained role."""
    target = scratch_cluster.fresh_database("doctor scratch")
    yield target
    scratch_cluster.drop(target)


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    """A directory store with one backup its key pattern matches."""
    store = tmp_path / "backups"
    store.mkdir()
    (store / f"app_{datetime.now(UTC):%Y%m%d}.sql").write_text("SELECT 1;\n", encoding="utf-8")
    return store


def write_config(tmp_path: Path, *, scratch: bool = False, extra: str = "",
                 ledger: Path | None = None) -> Path:
    """A drillbook.toml whose DSNs come from ${SUBJECT_DSN} and ${SCRATCH_DSN}, as a real one's do."""
    text = (f'[run]\nout = "{tmp_path / "out"}"\n\n'
            '[targets.production]\nkind = "postgres"\ndsn = "${SUBJECT_DSN}"\n\n'
            f'[targets.backups]\nkind = "directory"\npath = "{tmp_path / "backups"}"\n'
            'key_pattern = "app_%Y%m%d.sql"\n\n')
    if scratch:
        text += '[targets.scratch]\nkind = "postgres"\ndsn = "${SCRATCH_DSN}"\nscratch = true\n\n'
    if ledger is not None:
        text += f'[ledger]\nurl = "{ledger}"\n\n'
    path = tmp_path / "drillbook.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@dataclass
class Doctor:
    """``drillbook doctor --config drillbook.toml --json`` in-process, the DSNs in the environment."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, subject: str, *, scratch: str | None = None,
                 ledger: Path | None = None) -> tuple[int, dict[str, dict[str, str]]]:
        """The exit code and the checks by name."""
        from drillbook.cli import main

        self.monkeypatch.setenv("SUBJECT_DSN", subject)
        if scratch is not None:
            self.monkeypatch.setenv("SCRATCH_DSN", scratch)
        config = write_config(self.tmp_path, scratch=scratch is not None, ledger=ledger)
        code = main(["doctor", "--config", str(config), "--json"])
        printed = json.loads(self.capsys.readouterr().out)
        return code, {c["name"]: c for c in printed["checks"]}


@pytest.fixture
def doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           backups: Path) -> Doctor:
    return Doctor(tmp_path, monkeypatch, capsys)


class TestSubjectRole:
    def test_a_read_only_role_passes(self, subject_db: PostgresTarget, doctor: Doctor) -> None:
        """A role granted only pg_read_all_data: reachable and read-only."""
        _, checks = doctor(as_role(subject_db, "reader"))
        assert checks["targets.production reachable"]["outcome"] == "pass", checks
        assert "as role `reader`" in checks["targets.production reachable"]["message"]
        check = checks["targets.production read-only role"]
        assert check["outcome"] == "pass", check
        assert check["message"].startswith("role `reader` can only read")

    def test_a_superuser_warns_naming_why(self, subject_db: PostgresTarget, doctor: Doctor) -> None:
        """The same subject as `postgres`: WARN (a warning, not a failure), a superuser, with the recipe."""
        _, checks = doctor(as_role(subject_db, "postgres"))
        check = checks["targets.production read-only role"]
        assert check["outcome"] == "warn", check
        assert "role `postgres`, which can write: it is a superuser" in check["message"]
        assert "GRANT pg_read_all_data" in check["fix"]

    def test_insert_on_a_table_warns_naming_it(self, subject_db: PostgresTarget, doctor: Doctor) -> None:
        """`writer` has INSERT on public.orders: WARN naming the privilege and the table."""
        _, checks = doctor(as_role(subject_db, "writer"))
        check = checks["targets.production read-only role"]
        assert check["outcome"] == "warn", check
        assert "it has INSERT on 1 relation (public.orders)" in check["message"]
        assert "UPDATE" not in check["message"]

    def test_a_role_that_writes_the_servers_files_warns_naming_it(self, subject_db: PostgresTarget,
                                                                   doctor: Doctor) -> None:
        """`filer` reads every table but is in pg_write_server_files: WARN naming that role, not the other."""
        _, checks = doctor(as_role(subject_db, "filer"))
        check = checks["targets.production read-only role"]
        assert check["outcome"] == "warn", check
        assert "role `filer`, which can write: it is a member of `pg_write_server_files`" in check["message"]
        assert "pg_read_all_data`" not in check["message"]

    def test_doctor_writes_nothing_to_the_subject(self, subject_db: PostgresTarget, doctor: Doctor) -> None:
        """As a superuser: catalog, rows and the database's tuple-write counters unchanged."""
        before = subject_state(subject_db)
        doctor(as_role(subject_db, "postgres"))
        assert subject_state(subject_db) == before

    def test_the_doctors_session_refuses_a_write(self, subject_db: PostgresTarget) -> None:
        """Even as a superuser, a statement that writes fails in the doctor's session."""
        from drillbook.doctor.postgres import connect_read_only

        superuser = PostgresTarget("production", as_role(subject_db, "postgres"))
        with connect_read_only(superuser) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO public.orders VALUES (2, 'written by doctor')")


def subject_state(target: PostgresTarget) -> tuple[Any, ...]:
    """The subject's catalog fingerprint, rows and tuple-write counters, once its other sessions ended."""
    with psycopg.connect(admin_dsn(target), autocommit=True) as conn:
        wait_alone(conn)
        counters = conn.execute("SELECT tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                                "WHERE datname = current_database()").fetchone()
        rows = conn.execute("SELECT id, note FROM public.orders ORDER BY id").fetchall()
        return read_catalog(conn).fingerprint(), rows, counters


def subject_sessions(target: PostgresTarget) -> int:
    """How many sessions the subject database has had, once its other sessions ended (PostgreSQL 14+)."""
    with psycopg.connect(admin_dsn(target), autocommit=True) as conn:
        wait_alone(conn)
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                           ).fetchone()
    assert row is not None
    return int(row[0])


def wait_alone(conn: psycopg.Connection[Any]) -> None:
    """Until no other session is connected to ``conn``'s database (with a deadline); then fresh stats.

    A backend flushes its statistics when it exits.
    """
    deadline = time.monotonic() + 10
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()").fetchone() != (0,):
        assert time.monotonic() < deadline, "doctor's sessions did not end"
        time.sleep(0.05)
    conn.execute("SELECT pg_stat_clear_snapshot()")


class TestScratch:
    def test_an_empty_contained_scratch_on_its_own_server_passes(
            self, subject_db: PostgresTarget, scratch_db: PostgresTarget, doctor: Doctor) -> None:
        """The whole setup as it should be: every check passes, exit 0."""
        code, checks = doctor(as_role(subject_db, "reader"), scratch=scratch_db.dsn)
        assert {name: c["outcome"] for name, c in checks.items() if c["outcome"] != "pass"} == {}
        assert code == 0
        assert {"targets.scratch empty", "targets.scratch on a server of its own",
                "targets.scratch role contained", "pg_restore version", "psql version", "clock",
                "targets.backups reachable", "ledger writable"} <= set(checks)
        assert "1 keys match key_pattern 'app_%Y%m%d.sql'" in checks["targets.backups reachable"]["message"]

    def test_each_server_is_asked_once_per_purpose(
            self, subject_db: PostgresTarget, scratch_db: PostgresTarget, doctor: Doctor) -> None:
        """Four sessions on the subject: its version (shared by reachability and both client tools),
        its role's privileges, its clock, its identity for the scratch check."""
        before = subject_sessions(subject_db)
        idle = subject_sessions(subject_db) - before  # the counting session itself, counted as it ends
        doctor(as_role(subject_db, "reader"), scratch=scratch_db.dsn)
        assert subject_sessions(subject_db) - before - 2 * idle == 4

    def test_a_non_empty_scratch_fails_naming_what_it_holds(
            self, subject_db: PostgresTarget, scratch_db: PostgresTarget, doctor: Doctor) -> None:
        """A table left in the scratch: FAIL naming it; the table is still there afterwards."""
        with psycopg.connect(scratch_db.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE leftover (id int)")
        code, checks = doctor(as_role(subject_db, "reader"), scratch=scratch_db.dsn)
        check = checks["targets.scratch empty"]
        assert check["outcome"] == "fail", check
        assert "is not empty: table: 1 (public.leftover)" in check["message"]
        assert code == 1
        with psycopg.connect(scratch_db.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('public.leftover') IS NOT NULL").fetchone() == (True,)

    def test_a_scratch_on_the_subjects_server_fails(
            self, subject_db: PostgresTarget, subject_cluster: LocalScratch, doctor: Doctor) -> None:
        """An empty, contained database beside the subject: FAIL naming the shared server."""
        beside = subject_cluster.fresh_database("doctor beside")
        try:
            code, checks = doctor(as_role(subject_db, "reader"), scratch=beside.dsn)
        finally:
            subject_cluster.drop(beside)
        check = checks["targets.scratch on a server of its own"]
        assert check["outcome"] == "fail", check
        assert "is on the server of subject `production`" in check["message"]
        assert "on a server that holds no subject" in check["fix"]
        assert checks["targets.scratch empty"]["outcome"] == "pass"
        assert code == 1


@pytest.fixture
def unwritable() -> Path:
    """A directory nobody can create files in, root included: procfs takes no new file.

    (A 0555 directory does not stop root, and a read-only tmpfs needs a mount CI containers refuse.)
    """
    place = Path("/proc")
    assert not (place / "runs").exists()
    return place


class TestLedger:
    def test_a_ledger_in_an_unwritable_place_fails(self, subject_db: PostgresTarget, unwritable: Path,
                                                   doctor: Doctor) -> None:
        """`[ledger] url` under a read-only directory: FAIL naming it, with the fix."""
        code, checks = doctor(as_role(subject_db, "reader"), ledger=unwritable / "runs" / "ledger.jsonl")
        check = checks["ledger writable"]
        assert check["outcome"] == "fail", check
        assert f"cannot create a file in {unwritable}" in check["message"]
        assert "[ledger] url" in check["fix"]
        assert code == 1

    def test_the_ledger_and_its_directory_are_unchanged(self, subject_db: PostgresTarget, doctor: Doctor,
                                                        tmp_path: Path) -> None:
        """An existing ledger: PASS, its bytes, mtime and its directory's listing as they were."""
        ledger = tmp_path / "evidence" / "ledger.jsonl"
        ledger.parent.mkdir()
        ledger.write_bytes(b'{"seq": 1, "not": "parsed by doctor"}\n')

        def state() -> tuple[bytes, int, list[Path]]:
            return ledger.read_bytes(), ledger.stat().st_mtime_ns, sorted(ledger.parent.iterdir())

        before = state()
        _, checks = doctor(as_role(subject_db, "reader"), ledger=ledger)
        assert checks["ledger writable"]["outcome"] == "pass", checks["ledger writable"]
        assert checks["ledger writable"]["message"] == f"ledger {ledger} exists and is writable"
        assert state() == before



def test_no_marker_when_put_and_delete_might_outlast_the_deadline(s3_server: S3Server) -> None:
    """A deadline the put and the delete cannot both fit in: FAIL saying so, and nothing put."""
    from drillbook.doctor.environment import s3_ledger

    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=S3_SECRET)
    client.create_bucket(Bucket="doctor-deadline")
    options = {"endpoint_url": s3_server.endpoint_url, "access_key_id": S3_ACCESS_KEY_ID,
               "secret_access_key": S3_SECRET}
    verdict = s3_ledger("ledger writable", "s3://doctor-deadline/ledger/", options, deadline_s=10)
    assert verdict.outcome is Outcome.FAILED, verdict
    assert "lists, but only after" in verdict.message and "no marker was tried" in verdict.message
    assert client.list_objects_v2(Bucket="doctor-deadline").get("Contents", []) == []


class TestTheCommand:
    def test_unreachable_port_fails_and_the_others_still_report(self, doctor: Doctor) -> None:
        """A refused port: FAIL naming it; the store and the ledger are still checked."""
        code, checks = doctor("postgresql://reader@127.0.0.1:1/product")
        check = checks["targets.production reachable"]
        assert check["outcome"] == "fail", check
        assert "does not answer" in check["message"] and "Connection refused" in check["message"]
        assert checks["targets.backups reachable"]["outcome"] == "pass"
        assert checks["ledger writable"]["outcome"] == "pass"
        local = checks["scratch created locally"]  # could not be compared with the subject: said so
        assert local["outcome"] == "warn", local
        assert local["message"].endswith("not compared with `production` (no answer)")
        assert code == 1

    def test_exit_codes_and_no_secret_in_any_output(
            self, subject_db: PostgresTarget, scratch_db: PostgresTarget, s3_server: S3Server, tmp_path: Path,
            backups: Path) -> None:
        """Subprocess: 0 on a sound setup (S3 store and S3 ledger with a secret), 1 with a dead target,
        2 for an unknown key; neither the DSN's password nor the S3 secret is ever printed."""
        client = boto3.session.Session().client(
            "s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=S3_SECRET)
        client.create_bucket(Bucket="doctor-backups")
        client.put_object(Bucket="doctor-backups", Key=f"db/app_{datetime.now(UTC):%Y%m%d}.sql", Body=b"x")
        s3 = (f'endpoint_url = "{s3_server.endpoint_url}"\naccess_key_id = "{S3_ACCESS_KEY_ID}"\n'
              'secret_access_key = "${S3_SECRET}"\n')
        extra = (f'[targets.nightly]\nkind = "s3"\nurl = "s3://doctor-backups/db/"\n'
                 f'key_pattern = "app_%Y%m%d.sql"\n{s3}\n[ledger]\nurl = "s3://doctor-backups/ledger/"\n{s3}')
        config = write_config(tmp_path, scratch=True, extra=extra)
        env = {"SUBJECT_DSN": as_role(subject_db, "reader"), "SCRATCH_DSN": scratch_db.dsn,
               "S3_SECRET": S3_SECRET}
        scratch_password = str(psycopg.conninfo.conninfo_to_dict(scratch_db.dsn)["password"])

        sound = drillbook("doctor", "--config", str(config), env=env)
        assert sound.returncode == 0, sound.stdout + sound.stderr
        assert "PASS  ledger writable: S3 ledger s3://doctor-backups/ledger/" in sound.stdout
        assert "PASS  targets.nightly reachable" in sound.stdout
        left = client.list_objects_v2(Bucket="doctor-backups", Prefix="ledger").get("Contents", [])
        assert left == [], "the marker was not deleted"

        dead = drillbook("doctor", "--config", str(config), "--json",
                         env={**env, "SUBJECT_DSN": f"postgresql://reader:{SUBJECT_PASSWORD}@127.0.0.1:1/x"})
        assert dead.returncode == 1, dead.stdout + dead.stderr
        assert json.loads(dead.stdout)["outcome"] == "fail"

        config.write_text(config.read_text(encoding="utf-8") + '\n[targets.bogus]\nkind = "postgres"\n'
                          'dsn = "${SUBJECT_DSN}"\ncolour = "blue"\n', encoding="utf-8")
        bad = drillbook("doctor", "--config", str(config), env=env)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "unknown key `targets.bogus.colour`" in bad.stderr

        for proc in (sound, dead, bad):
            for secret in (SUBJECT_PASSWORD, S3_SECRET, scratch_password):
                assert secret not in proc.stdout + proc.stderr


def test_without_config_the_machine_is_checked(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`drillbook doctor`: the sandbox's prerequisites on this (bootstrapped) machine, exit 0."""
    from drillbook.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # not the real ~/.cache
    code = main(["doctor"])
    out = capsys.readouterr().out
    for name in ("postgresql server binaries", "redis-server", "postgres OS user", "cache dir writable",
                 "pg_restore version", "psql version", "ledger writable"):
        assert f"PASS  {name}: " in out, out
    assert code == 0, out
    assert f"cache dir {tmp_path / 'cache' / 'drillbook'} does not exist yet" in out
    assert f"ledger {tmp_path.resolve() / 'out' / 'ledger.jsonl'} will be created" in out
    assert sorted(tmp_path.iterdir()) == [], "doctor created the ledger's or the cache's directory"


def test_doctor_ledger_still_needs_its_config(capsys: pytest.CaptureFixture[str]) -> None:
    """`doctor ledger` without --config (before or after `ledger`) is a usage error (exit 2)."""
    from drillbook.cli import main

    assert main(["doctor", "ledger"]) == 2
    assert "doctor ledger needs --config" in capsys.readouterr().err

