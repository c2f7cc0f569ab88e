"""A backup is untrusted: whatever it carries runs nowhere but in its scratch database.

Every hostile backup here is built by the test itself, from a real ``pg_dump`` of a
small database with a payload added: psql meta-commands in plain and dumpall scripts,
server-side programs and files, roles, server settings and tablespaces, and a CHECK
constraint or an index calling a function that does such a thing while ``pg_restore``
loads a genuine custom or directory archive.

For each: the drill fails with an error naming the file and what was refused; the
marker file the payload would create does not exist; the scratch and subject clusters'
catalogs (databases, roles, tablespaces, settings files) and the subject's data are
unchanged; and the drill leaves no database, role or process behind.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from checks.errors import BackupRefused, ChecksumMismatch, DrillbookError
from drills import pgtools
from drills.local import LocalEnvironment
from drills.restore import RestoreDrill
from drills.targets import PostgresTarget, StoreSpec
from tests.support.cli import run_directory_backups
from tests.support.pg import admin_dsn

pytestmark = pytest.mark.integration

PAYLOAD_TABLE = "pwned"


@pytest.fixture(scope="module")
def source(local_env: LocalEnvironment) -> Iterator[PostgresTarget]:
    """A small database the dumps are made from (as its cluster's administrator)."""
    scratch = local_env.scratch_postgres()
    db = scratch.fresh_database("hostile-source")
    with psycopg.connect(admin_dsn(db), autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 50) g")
    yield db
    scratch.drop(db)


def _dump(source: PostgresTarget, *args: str) -> bytes:
    return subprocess.run([pgtools.tool("pg_dump"), *args, "-d", admin_dsn(source)],
                          check=True, capture_output=True).stdout


def _plain(source: PostgresTarget) -> str:
    return _dump(source, "-Fp").decode()


def _inject(plain: str, payload: str) -> str:
    """The payload after the table is created, before its data: mid-restore, in the transaction."""
    anchor = "ALTER TABLE public.accounts OWNER TO"
    at = plain.index(anchor)
    return plain[:at] + payload + "\n" + plain[at:]


def _restore(tmp_path: Path, name: str, content: bytes, scratch: Any, *,
             database: str | None = None) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir(exist_ok=True)
    (store_dir / name).write_bytes(content)
    spec = StoreSpec(name="hostile", url=str(store_dir))
    with RestoreDrill(spec, scratch, database=database) as drill:
        drill.run()


class TestTheMarkerMeansSomething:
    def test_a_superuser_running_the_payload_does_leave_the_marker(
        self, local_env: LocalEnvironment, marker_dir: Path
    ) -> None:
        """Control: the same COPY TO PROGRAM as the cluster's superuser creates the marker file."""
        marker = marker_dir / "control"
        with psycopg.connect(local_env.scratch_postgres().server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
        assert marker.exists()


PLAIN_PAYLOADS = {
    "shell": ("\\! touch {marker}", r"meta-command `\\! touch"),
    "pipe to a shell": ("\\o | touch {marker}", r"meta-command `\\o"),
    "client file": ("\\copy (SELECT 1) TO '{marker}'", r"meta-command `\\copy"),
    "meta-command mid-line": ("SELECT 1; \\! touch {marker}", r"meta-command"),
    "connect elsewhere": ("\\c postgres\nCREATE TABLE " + PAYLOAD_TABLE + " ();",
                          r"meta-command `\\c postgres"),
    "connect, long form": ("\\connect postgres\nCREATE TABLE " + PAYLOAD_TABLE + " ();",
                           r"meta-command `\\connect postgres"),
    "server program": ("COPY (SELECT 1) TO PROGRAM 'touch {marker}';", "pg_execute_server_program"),
    "program as input": ("CREATE TABLE public.t (x text); COPY public.t FROM PROGRAM 'touch {marker}';",
                         "pg_execute_server_program"),
    "server file": ("COPY (SELECT 1) TO '{marker}';", "pg_write_server_files"),
    "large object export": ("SELECT lo_export(lo_from_bytea(0, 'x'), '{marker}');", "permission denied"),
    "superuser role": ("CREATE ROLE " + PAYLOAD_TABLE + " SUPERUSER LOGIN;", "must be superuser"),
    "role": ("CREATE ROLE " + PAYLOAD_TABLE + " LOGIN;", "permission denied to create role"),
    # The statements PostgreSQL refuses inside psql's single transaction come after a COMMIT of
    # the file's own, so what refuses them is the role's privileges, not the transaction.
    "server setting": ("COMMIT; ALTER SYSTEM SET work_mem = '1MB';", "permission denied to set parameter"),
    "tablespace": ("COMMIT; CREATE TABLESPACE " + PAYLOAD_TABLE + " LOCATION '{marker_dir}';",
                   "permission denied to create tablespace"),
    "drop database": ("COMMIT; DROP DATABASE postgres;", "must be owner of database"),
    "create database": ("COMMIT; CREATE DATABASE " + PAYLOAD_TABLE + ";",
                        "permission denied to create database"),
}


class TestPlainDumps:
    @pytest.mark.parametrize(("payload", "gz"), [
        *((payload, False) for payload in PLAIN_PAYLOADS.values()),
        # gzip changes only where the lines come from: one client-side and one server-side payload.
        *((PLAIN_PAYLOADS[name], True) for name in ("shell", "server program")),
    ], ids=[*(f"plain-{name}" for name in PLAIN_PAYLOADS), "gzip-shell", "gzip-server program"])
    def test_payload_is_refused_and_nothing_changes(
        self, local_env: LocalEnvironment, source: PostgresTarget, unchanged: Path, tmp_path: Path,
        payload: tuple[str, str], gz: bool,
    ) -> None:
        """The restore fails naming the file, the line and what was refused; nothing ran."""
        statement, refused = payload
        payload_text = statement.format(marker=unchanged, marker_dir=unchanged.parent)
        text = _inject(_plain(source), payload_text)
        line = text[:text.index(payload_text)].count("\n") + 1
        name = "backup.sql.gz" if gz else "backup.sql"
        content = gzip.compress(text.encode()) if gz else text.encode()
        with pytest.raises(BackupRefused, match=refused) as caught:
            _restore(tmp_path, name, content, local_env.scratch_postgres())
        assert f"{name}:{line}" in str(caught.value), str(caught.value)

    def test_genuine_plain_dump_with_restrict_lines_still_restores(
        self, local_env: LocalEnvironment, source: PostgresTarget, unchanged: Path, tmp_path: Path
    ) -> None:
        """pg_dump's own \\restrict/\\unrestrict lines and OWNER TO/GRANT statements do not stop a restore."""
        text = _plain(source)
        assert "\\restrict " in text and "OWNER TO" in text  # what this test is about
        _restore(tmp_path, "backup.sql", text.encode(), local_env.scratch_postgres())


class TestDumpall:
    @pytest.mark.parametrize("switch", ["\\c", "\\connect"])
    def test_connect_to_another_database_is_refused(
        self, local_env: LocalEnvironment, source: PostgresTarget, unchanged: Path, tmp_path: Path,
        switch: str,
    ) -> None:
        """A \\c or \\connect inside the restored section, then a write: refused, `postgres` untouched."""
        dbname = psycopg.conninfo.conninfo_to_dict(source.dsn)["dbname"]
        dumpall = subprocess.run(
            [pgtools.tool("pg_dumpall"), "-d", admin_dsn(source, dbname="postgres")],
            check=True, capture_output=True, text=True).stdout
        header = f'-- Database "{dbname}" dump'
        section = dumpall.index(header)
        anchor = dumpall.index("CREATE TABLE public.accounts", section)
        hostile = (dumpall[:anchor] + f"{switch} postgres\nCREATE TABLE public.{PAYLOAD_TABLE} ();\n"
                   + dumpall[anchor:])
        with pytest.raises(BackupRefused, match=rf"meta-command `\{switch} postgres` at all\.sql:\d+"):
            _restore(tmp_path, "all.sql", hostile.encode(), local_env.scratch_postgres(), database=dbname)


class TestGenuineDumpall:
    def test_a_database_whose_name_needs_quoting_restores(
        self, local_env: LocalEnvironment, unchanged: Path, tmp_path: Path
    ) -> None:
        """pg_dumpall reaches it with `\\encoding SQL_ASCII` and `\\connect -reuse-previous=on "dbname=…"`
        (between its own \\unrestrict and \\restrict): those are its own lines, and it still restores."""
        scratch = local_env.scratch_postgres()
        name = "Weird-db"
        with psycopg.connect(scratch.server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(scratch.server.dsn(name), autocommit=True) as conn:
                conn.execute("CREATE TABLE caf\u00e9 (n text); INSERT INTO caf\u00e9 VALUES ('cr\u00e8me')")
            dumpall = subprocess.run([pgtools.tool("pg_dumpall"), "-d", scratch.server.dsn("postgres")],
                                     check=True, capture_output=True).stdout
            # What this test is about:
            assert b"\\encoding SQL_ASCII" in dumpall and b"-reuse-previous=on" in dumpall
            store = tmp_path / "store"
            store.mkdir()
            (store / "all.sql").write_bytes(dumpall)
            with RestoreDrill(StoreSpec(name="all", url=str(store)), scratch, database=name) as drill:
                result = drill.run()
                assert result.target is not None
                with psycopg.connect(result.target.dsn) as conn:
                    assert conn.execute("SELECT n FROM caf\u00e9").fetchall() == [("cr\u00e8me",)]
        finally:
            with psycopg.connect(scratch.server.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}"')


def _armed_source(local_env: LocalEnvironment, marker: Path, how: str) -> Iterator[PostgresTarget]:
    """A database whose genuine dump runs ``COPY TO PROGRAM`` while pg_restore loads it.

    The program fires only in a database other than this one, so building the source is harmless.
    An index expression must be IMMUTABLE, and an immutable function may not run COPY itself:
    it calls a volatile one that does.
    """
    scratch = local_env.scratch_postgres()
    db = scratch.fresh_database("armed-source")
    dbname = psycopg.conninfo.conninfo_to_dict(db.dsn)["dbname"]
    with psycopg.connect(admin_dsn(db), autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION public.fire() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
              IF current_database() <> '{dbname}' THEN
                EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
              END IF;
            END $$""")
        conn.execute("""
            CREATE FUNCTION public.arm(x int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN
              PERFORM public.fire();
              RETURN true;
            END $$""")
        conn.execute("CREATE TABLE public.accounts (id int PRIMARY KEY)")
        conn.execute("INSERT INTO public.accounts SELECT generate_series(1, 10)")
        if how == "check":
            conn.execute("ALTER TABLE public.accounts ADD CONSTRAINT armed CHECK (public.arm(id))")
        else:
            conn.execute("CREATE INDEX armed ON public.accounts ((public.arm(id)))")
    try:
        yield db
    finally:
        scratch.drop(db)


class TestArchives:
    @pytest.mark.parametrize("how", ["check", "index"])
    @pytest.mark.parametrize("fmt", ["custom", "directory"])
    def test_function_running_a_program_during_pg_restore_is_refused(
        self, local_env: LocalEnvironment, unchanged: Path, tmp_path: Path, how: str, fmt: str
    ) -> None:
        """A CHECK constraint or index expression calling COPY TO PROGRAM fails as a permission error."""
        for armed in _armed_source(local_env, unchanged, how):
            if fmt == "custom":
                name, content = "armed.dump", _dump(armed, "-Fc")
            else:
                out = tmp_path / "dir"
                subprocess.run([pgtools.tool("pg_dump"), "-Fd", "-f", str(out), "-d", admin_dsn(armed)],
                               check=True, capture_output=True)
                tar = tmp_path / "armed.tar"
                with tarfile.open(tar, "w") as archive:
                    archive.add(out, arcname="dump")
                name, content = "armed.tar", tar.read_bytes()
            with pytest.raises(BackupRefused, match="pg_execute_server_program") as caught:
                _restore(tmp_path, name, content, local_env.scratch_postgres())
            assert name in str(caught.value)
            assert "not a superuser" in str(caught.value)


class TestNeedsSuperuser:
    def test_untrusted_extension_says_it_needs_a_superuser(
        self, local_env: LocalEnvironment, source: PostgresTarget, unchanged: Path, tmp_path: Path
    ) -> None:
        """CREATE EXTENSION of an untrusted extension: the message says the backup needs a superuser."""
        text = _inject(_plain(source), "CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;")
        with pytest.raises(BackupRefused, match=r"permission denied to create extension \"dblink\".*"
                                                r"needs a right the restore role does not have"):
            _restore(tmp_path, "backup.sql", text.encode(), local_env.scratch_postgres())

    def test_trusted_extension_still_restores(
        self, local_env: LocalEnvironment, source: PostgresTarget, unchanged: Path, tmp_path: Path
    ) -> None:
        """pg_trgm is trusted: a database owner may create it, so the backup restores."""
        text = _inject(_plain(source), "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;")
        _restore(tmp_path, "backup.sql", text.encode(), local_env.scratch_postgres())


class TestIntegrityFirst:
    def test_checksum_mismatch_never_executes_the_backup(
        self, local_env: LocalEnvironment, source: PostgresTarget, unchanged: Path, tmp_path: Path
    ) -> None:
        """A payload in a backup whose sidecar does not match is never fed to psql."""
        good = _plain(source).encode()
        import hashlib

        store_dir = tmp_path / "store"
        store_dir.mkdir()
        (store_dir / "backup.sql").write_bytes(
            _inject(good.decode(), f"COPY (SELECT 1) TO PROGRAM 'touch {unchanged}';").encode())
        (store_dir / "backup.sql.sha256").write_text(f"{hashlib.sha256(good).hexdigest()}  backup.sql\n")
        spec = StoreSpec(name="hostile", url=str(store_dir))
        with RestoreDrill(spec, local_env.scratch_postgres()) as drill, \
                pytest.raises(ChecksumMismatch, match="not restored"):
            drill.run()
        assert not any(e["phase"] == "restore" for e in drill.journal.entries)

    def test_a_huge_sparse_file_is_rejected_from_its_head_without_copying(
        self, local_env: LocalEnvironment, unchanged: Path, tmp_path: Path
    ) -> None:
        """An 8 GiB sparse file of zeros is refused after its head; the temp dir never holds 8 GB."""
        store_dir = tmp_path / "store"
        store_dir.mkdir()
        sparse = store_dir / "backup.dump"
        with sparse.open("wb") as fh:
            fh.truncate(8 << 30)
        spec = StoreSpec(name="sparse", url=str(store_dir))
        drill = RestoreDrill(spec, local_env.scratch_postgres())
        workdir = drill._workdir
        try:
            with pytest.raises(DrillbookError, match=r"backup\.dump"):
                drill.run()
            copied = sum(f.stat().st_blocks * 512 for f in workdir.rglob("*") if f.is_file())
            assert copied <= 1 << 20, f"{copied:,} bytes were written for a rejected backup"
        finally:
            drill.close()


def _sample_children(stop: threading.Event, seen: list[tuple[str, str]]) -> None:
    """Every psql / pg_restore child's argv and environment, sampled from /proc until ``stop``."""
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                if child.name() in ("psql", "pg_restore"):
                    argv = Path(f"/proc/{child.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    environ = Path(f"/proc/{child.pid}/environ").read_bytes().replace(b"\0", b"\n").decode()
                    seen.append((argv, environ))
            except (psutil.Error, OSError):
                continue
        time.sleep(0.002)


class TestChildProcesses:
    @pytest.mark.parametrize("store", ["nightly-custom", "nightly-plain"])
    def test_no_secret_in_argv_or_environment_of_children(
        self, local_env: LocalEnvironment, monkeypatch: pytest.MonkeyPatch, store: str
    ) -> None:
        """pg_restore/psql get the password through a passfile and none of the parent's environment."""
        parent_secret = "prod-" + "S3cr3t-in-the-parent-env"
        monkeypatch.setenv("PROD_PG_DSN", f"postgresql://app:{parent_secret}@db.internal/prod")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", parent_secret)
        seen: list[tuple[str, str]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_children, args=(stop, seen), daemon=True)
        sampler.start()
        try:
            with RestoreDrill(local_env.store(store), local_env.scratch_postgres()) as drill:
                result = drill.run()
                assert result.target is not None
                password = psycopg.conninfo.conninfo_to_dict(result.target.dsn)["password"]
        finally:
            stop.set()
            sampler.join()
        assert seen, "no psql/pg_restore child was sampled: the test proved nothing"
        for argv, environ in seen:
            assert str(password) not in argv, argv
            assert "password" not in argv
            assert parent_secret not in environ and parent_secret not in argv
            assert "PROD_PG_DSN" not in environ
            assert str(password) not in environ  # it is in the passfile, not the environment
        assert any("PGPASSFILE=" in environ for _, environ in seen)


class TestRestoreRole:
    def test_restored_database_is_owned_by_a_role_without_privileges(
        self, local_env: LocalEnvironment, tmp_path: Path
    ) -> None:
        """The restore role: no superuser, CREATEDB, CREATEROLE, replication, or built-in role membership."""
        scratch = local_env.scratch_postgres()
        with RestoreDrill(local_env.store("nightly-custom"), scratch) as drill:
            result = drill.run()
            assert result.target is not None
            with psycopg.connect(result.target.dsn) as conn:
                row = conn.execute(
                    "SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,"
                    " (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid),"
                    " d.datdba = r.oid"
                    " FROM pg_roles r, pg_database d"
                    " WHERE r.rolname = current_user AND d.datname = current_database()").fetchone()
                tables_owned = conn.execute(
                    "SELECT count(*) FROM pg_tables"
                    " WHERE schemaname = 'public' AND tableowner <> current_user").fetchone()
        assert row == (False, False, False, False, False, 0, True)
        assert tables_owned == (0,)


class TestInARun:
    def test_hostile_backup_fails_its_scenario_and_the_run_goes_on(
        self, source: PostgresTarget, unchanged: Path, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`drillbook run --config`: the hostile restore fails naming file, line and command; the next
        scenario still runs and passes."""
        genuine = _plain(source)
        hostile = _inject(genuine, f"\\! touch {unchanged}")
        line = hostile[:hostile.index("\\! touch")].count("\n") + 1
        proc, scenarios = run_directory_backups(
            tmp_path, {"hostile": hostile, "genuine": genuine},
            "Feature: untrusted backups\n\n"
            "  @id:UNT-01 @daily\n  Scenario: a backup someone altered\n"
            '    Given the backups in "hostile"\n'
            "    When the newest backup is restored into a scratch database\n\n"
            "  @id:UNT-02 @daily\n  Scenario: a genuine backup\n"
            '    Given the backups in "genuine"\n'
            "    When the newest backup is restored into a scratch database\n",
            env=sandbox_cache_env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        outcomes = {k: s["outcome"] for k, s in scenarios.items()}
        assert outcomes == {"UNT-01": "failed", "UNT-02": "passed"}, outcomes
        refused = json.dumps(scenarios["UNT-01"]["verdicts"])
        assert "meta-command" in refused and f"backup.sql:{line}" in refused, refused
