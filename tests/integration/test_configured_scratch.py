"""A configured scratch (``scratch = true``, ``--scratch DSN``) against two real PostgreSQL clusters.

The **subject cluster** holds ``production`` (a table with one precious row)
and, on the same server, a database ``scratch_here`` owned by a contained role:
the scratch someone might point at "another database on the production
server". The **other cluster** is initdb'ed on its own (a system identifier of
its own too) and holds the scratch databases that are allowed. Both trust
loopback connections, so no password is involved.

Every refusal is checked for what it leaves behind: the subject's rows,
databases and roles, and the scratch's whole catalog (:mod:`drills.scratch_catalog`).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from checks.errors import (
    EnvironmentError_,
    ScratchNotEmpty,
    ScratchNotRestored,
    ScratchOnSubjectServer,
    ScratchRoleTooPowerful,
)
from drills import pgtools
from drills.live import ConfiguredScratch
from drills.processes import PostgresServer
from drills.scratch_catalog import CatalogState, read_catalog
from drills.scratch_guard import preflight, probe_identity
from drills.targets import PostgresTarget, Role
from tests.support.cli import drillbook

pytestmark = pytest.mark.integration

SAME_SERVER_HINT = ("point `scratch` at a database on a server that holds no subject, "
                    "or let drillbook create one")
ROLE_HINT = ("CREATE ROLE drill LOGIN PASSWORD", "CREATE DATABASE scratch OWNER drill")


@dataclass
class Cluster:
    server: PostgresServer

    @property
    def port(self) -> int:
        return self.server.port

    def dsn(self, dbname: str = "postgres", *, user: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://{user}@{host}:{self.port}/{dbname}"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10)

    def new_database(self, owner: str = "drill") -> str:
        name = f"scratch_{uuid.uuid4().hex[:8]}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                       sql.Identifier(owner)))
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _start_cluster(name: str) -> Iterator[Cluster]:
    try:
        bindir = pgtools.bindir()
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")
    workdir = Path(tempfile.mkdtemp(prefix=f"drillbook-test-{name}-", dir="/tmp"))
    workdir.chmod(0o711)  # as root the server runs as `postgres`, which must traverse it
    # initdb, not a copy of the cached template: each cluster gets a system identifier of its own.
    server = PostgresServer(name, workdir / "pgdata", bindir=bindir)
    server.init()
    server.start()
    cluster = Cluster(server)
    try:
        with cluster.admin() as conn:
            conn.execute("CREATE ROLE drill LOGIN")
        yield cluster
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


@pytest.fixture(scope="module")
def subject_cluster() -> Iterator[Cluster]:
    """The production server: ``production`` with one precious row, and ``scratch_here`` beside it."""
    for cluster in _start_cluster("subject"):
        with cluster.admin() as conn:
            conn.execute("CREATE DATABASE production")
            conn.execute("CREATE DATABASE scratch_here OWNER drill")
        with cluster.admin("production") as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO orders VALUES (1, 'precious')")
        yield cluster


@pytest.fixture(scope="module")
def other_cluster() -> Iterator[Cluster]:
    """A server that holds no subject: where a configured scratch may live."""
    yield from _start_cluster("other")


@pytest.fixture
def other_db(other_cluster: Cluster) -> Iterator[str]:
    """An empty database on the other cluster owned by the contained role ``drill``."""
    name = other_cluster.new_database()
    yield name
    other_cluster.drop_database(name)


@pytest.fixture(scope="module")
def production_dump(subject_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dumps") / "production.dump"
    subprocess.run([pgtools.tool("pg_dump"), "-Fc", "-f", str(path), "-d", subject_cluster.dsn("production")],
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def migrations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrations")
    (path / "V1__orders.sql").write_text("CREATE TABLE orders (id int PRIMARY KEY);\n", encoding="utf-8")
    (path / "V2__wipe.sql").write_text("DROP DATABASE production;\n", encoding="utf-8")
    return path


def _catalog(dsn: str) -> CatalogState:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return read_catalog(conn)


def _production(cluster: Cluster) -> tuple[Any, ...]:
    """What a breakout would change: the rows, the databases, the roles, the server settings."""
    with cluster.admin("production") as conn:
        rows = conn.execute("SELECT id, note FROM orders ORDER BY id").fetchall()
        databases = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
        roles = conn.execute("SELECT rolname, rolsuper FROM pg_roles ORDER BY 1").fetchall()
        auto_conf = conn.execute("SELECT count(*) FROM pg_file_settings "
                                 "WHERE sourcefile LIKE '%postgresql.auto.conf'").fetchone()
    return rows, databases, roles, auto_conf


def _scratch(dsn: str) -> PostgresTarget:
    return PostgresTarget(name="scratch", dsn=dsn, role=Role.SCRATCH)


def _subject(dsn: str) -> PostgresTarget:
    return PostgresTarget(name="production", dsn=dsn)


def _config(tmp_path: Path, *, production: str, scratch: str) -> Path:
    path = tmp_path / "drillbook.toml"
    path.write_text(
        f'[targets.production]\nkind = "postgres"\ndsn = "{production}"\n\n'
        f'[targets.scratch]\nkind = "postgres"\ndsn = "{scratch}"\nscratch = true\n',
        encoding="utf-8",
    )
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestScratchOnTheSubjectServer:
    def test_localhost_and_127_0_0_1_are_one_server(self, subject_cluster: Cluster) -> None:
        """Two host strings, one postmaster: start time and address say so."""
        via_name = probe_identity(_subject(subject_cluster.dsn("production", host="localhost")))
        via_address = probe_identity(_scratch(subject_cluster.dsn("scratch_here", user="drill")))
        assert via_name.postmaster_start == via_address.postmaster_start
        assert via_name.endpoints & via_address.endpoints

    def test_run_with_config_refuses_before_anything_runs(self, subject_cluster: Cluster,
                                                          tmp_path: Path) -> None:
        """`drillbook run --config`: scratch at 127.0.0.1, subject at localhost, one server: exit 2."""
        before = _production(subject_cluster)
        scratch_dsn = subject_cluster.dsn("scratch_here", user="drill")
        scratch_before = _catalog(scratch_dsn)
        config = _config(tmp_path, production=subject_cluster.dsn("production", host="localhost"),
                         scratch=scratch_dsn)
        proc = drillbook("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "scratch target `scratch` is on the server of subject `production`" in proc.stderr
        assert "the same postmaster start time" in proc.stderr
        assert SAME_SERVER_HINT in proc.stderr
        assert not (tmp_path / "out").exists()  # nothing ran: no run directory
        assert _production(subject_cluster) == before
        assert _catalog(scratch_dsn) == scratch_before

    def test_verify_backup_refuses_a_scratch_on_the_compare_with_server(
        self, subject_cluster: Cluster, production_dump: Path
    ) -> None:
        """`verify backup --scratch` beside the `--compare-with` subject: exit 2, the dump never ran."""
        before = _production(subject_cluster)
        scratch_dsn = subject_cluster.dsn("scratch_here", user="drill")
        scratch_before = _catalog(scratch_dsn)
        proc = drillbook("verify", "backup", str(production_dump), "--scratch", scratch_dsn,
                         "--compare-with", subject_cluster.dsn("production", host="localhost"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "is on the server of subject `--compare-with`" in proc.stdout
        assert SAME_SERVER_HINT in proc.stdout
        assert _catalog(scratch_dsn) == scratch_before
        assert _production(subject_cluster) == before

    def test_verify_migrations_refuses_a_scratch_on_the_against_server(
        self, subject_cluster: Cluster, migrations_dir: Path
    ) -> None:
        """`verify migrations --scratch` beside the `--against` subject: exit 2, no migration ran."""
        before = _production(subject_cluster)
        scratch_dsn = subject_cluster.dsn("scratch_here", user="drill")
        scratch_before = _catalog(scratch_dsn)
        proc = drillbook("verify", "migrations", str(migrations_dir), "--scratch", scratch_dsn,
                         "--against", subject_cluster.dsn("production", host="localhost"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "is on the server of subject `--against`" in proc.stdout
        assert SAME_SERVER_HINT in proc.stdout
        assert _catalog(scratch_dsn) == scratch_before
        assert _production(subject_cluster) == before

    def test_another_database_on_the_subject_server_is_refused(self, subject_cluster: Cluster) -> None:
        """Same host string, another database: still the production server."""
        scratch_dsn = subject_cluster.dsn("scratch_here", user="drill")
        configured = ConfiguredScratch(_scratch(scratch_dsn),
                                       subjects=[_subject(subject_cluster.dsn("production"))])
        with pytest.raises(ScratchOnSubjectServer) as caught:
            configured.fresh_database("restore")
        assert "the same address and port" in caught.value.message
        assert caught.value.hint == SAME_SERVER_HINT

    def test_a_subject_that_does_not_answer_cannot_be_told_apart(self, other_cluster: Cluster,
                                                                  other_db: str) -> None:
        """At start it is only noted; before the first write the scratch is refused."""
        silent = _subject(f"postgresql://postgres@db-{uuid.uuid4().hex[:6]}.invalid:{_closed_port()}/production")
        scratch = _scratch(other_cluster.dsn(other_db, user="drill"))
        notes = preflight([scratch], [silent])
        assert any("does not answer" in note for note in notes)
        before = _catalog(scratch.dsn)
        with pytest.raises(ScratchOnSubjectServer, match="cannot prove"):
            ConfiguredScratch(scratch, subjects=[silent]).fresh_database("restore")
        assert _catalog(scratch.dsn) == before

    def test_verify_backup_with_a_silent_compare_with_is_refused(self, other_cluster: Cluster, other_db: str,
                                                                  production_dump: Path) -> None:
        """--compare-with nobody answers: the --scratch cannot be proven elsewhere (exit 2)."""
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        proc = drillbook("verify", "backup", str(production_dump), "--scratch", scratch_dsn,
                         "--compare-with", f"postgresql://postgres@127.0.0.1:{_closed_port()}/production")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "cannot prove" in proc.stdout
        assert _catalog(scratch_dsn).objects == ()


class TestScratchOnAnotherServer:
    def test_preflight_accepts_a_second_cluster(self, subject_cluster: Cluster, other_cluster: Cluster,
                                                other_db: str) -> None:
        """Another postmaster, another port, another system identifier: nothing to note."""
        notes = preflight([_scratch(other_cluster.dsn(other_db, user="drill"))],
                          [_subject(subject_cluster.dsn("production", host="localhost"))])
        assert notes == []

    def test_restore_then_cleanup_leaves_the_catalog_as_found(
        self, subject_cluster: Cluster, other_cluster: Cluster, other_db: str, production_dump: Path
    ) -> None:
        """verify backup into a second cluster passes; afterwards the catalog fingerprint is unchanged.

        ``public`` keeps its owner (pg_database_owner) and ACL: it is never dropped and recreated.
        """
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        before = _catalog(scratch_dsn)
        public = next(s for s in before.schemas if s.name == "public")
        assert public.owner == "pg_database_owner"
        proc = drillbook("verify", "backup", str(production_dump), "--scratch", scratch_dsn,
                         "--compare-with", subject_cluster.dsn("production", host="localhost"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "PASSED   restore.content" in proc.stdout
        after = _catalog(scratch_dsn)
        assert after == before
        assert after.fingerprint() == before.fingerprint()


class TestScratchRole:
    @pytest.mark.parametrize(("setup", "expected"), [
        ("ALTER ROLE {role} CREATEDB", "it has CREATEDB"),
        ("ALTER ROLE {role} CREATEROLE", "it has CREATEROLE"),
        ("GRANT pg_execute_server_program TO {role}", "member of `pg_execute_server_program`"),
        ("GRANT pg_write_server_files TO {role}", "member of `pg_write_server_files`"),
        ("GRANT pg_read_server_files TO {role}", "member of `pg_read_server_files`"),
        ("GRANT pg_signal_backend TO {role}", "member of `pg_signal_backend`"),
        ("CREATE ROLE {role}_admin SUPERUSER; GRANT {role}_admin TO {role}",
         "it has SUPERUSER (through membership in"),
        ("CREATE DATABASE {role}_other OWNER {role}", "it owns other databases"),
    ])
    def test_a_role_that_reaches_beyond_its_database_is_refused(
        self, other_cluster: Cluster, setup: str, expected: str
    ) -> None:
        """Each power is named, with the SQL for a suitable role in the hint; the scratch is untouched."""
        role = f"r_{uuid.uuid4().hex[:8]}"
        with other_cluster.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            database = other_cluster.new_database(owner=role)
            for statement in setup.format(role=role).split(";"):
                conn.execute(statement)
        try:
            scratch_dsn = other_cluster.dsn(database, user=role)
            before = _catalog(scratch_dsn)
            with pytest.raises(ScratchRoleTooPowerful) as caught:
                ConfiguredScratch(_scratch(scratch_dsn)).fresh_database("restore")
            assert expected in caught.value.message
            assert all(part in caught.value.hint for part in ROLE_HINT)
            assert _catalog(scratch_dsn) == before
        finally:
            other_cluster.drop_database(database)
            other_cluster.drop_database(f"{role}_other")
            with other_cluster.admin() as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{role}_admin")))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

    def test_a_superuser_scratch_is_refused_through_the_cli(self, other_cluster: Cluster, other_db: str,
                                                            production_dump: Path) -> None:
        """`verify backup --scratch` as postgres: exit 2 with the role to create; nothing restored."""
        scratch_dsn = other_cluster.dsn(other_db, user="postgres")
        proc = drillbook("verify", "backup", str(production_dump), "--scratch", scratch_dsn)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "connects as role `postgres`" in proc.stdout
        assert "it is a superuser" in proc.stdout
        assert all(part in proc.stdout for part in ROLE_HINT)
        assert _catalog(scratch_dsn).objects == ()

    def test_run_with_config_refuses_a_superuser_scratch(self, subject_cluster: Cluster,
                                                         other_cluster: Cluster, other_db: str,
                                                         tmp_path: Path) -> None:
        """`drillbook run --config`: a scratch reached as a superuser is exit 2 before anything runs."""
        config = _config(tmp_path, production=subject_cluster.dsn("production"),
                         scratch=other_cluster.dsn(other_db, user="postgres"))
        proc = drillbook("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "it is a superuser" in proc.stderr
        assert all(part in proc.stderr for part in ROLE_HINT)


NON_EMPTY = {
    "functions only": ("CREATE FUNCTION f{n}(int) RETURNS int LANGUAGE sql AS 'SELECT $1'", "function: 3"),
    "an enum only": ("CREATE TYPE mood AS ENUM ('calm', 'stormy')", "type: 1 (public.mood)"),
    "an extension only": ("CREATE EXTENSION pg_trgm", "extension: 1 (pg_trgm)"),
    "a schema only": ("CREATE SCHEMA ledger", "schema: 1 (ledger)"),
}


class TestEmptiness:
    @pytest.mark.parametrize("case", sorted(NON_EMPTY))
    def test_a_scratch_with_anything_in_it_is_refused_and_intact(self, other_cluster: Cluster, other_db: str,
                                                                  case: str) -> None:
        """No table, but somebody's work: refused, named by kind, and the catalog is unchanged."""
        statement, expected = NON_EMPTY[case]
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            for n in range(3 if "{n}" in statement else 1):
                conn.execute(statement.format(n=n))
        before = _catalog(scratch_dsn)
        with pytest.raises(ScratchNotEmpty) as caught:
            ConfiguredScratch(_scratch(scratch_dsn)).fresh_database("restore")
        assert expected in caught.value.message
        assert "left as it is" in caught.value.message
        assert _catalog(scratch_dsn) == before

    def test_run_with_config_refuses_a_scratch_with_functions(self, subject_cluster: Cluster,
                                                              other_cluster: Cluster, other_db: str,
                                                              tmp_path: Path) -> None:
        """`drillbook run --config`: functions only is not empty: exit 2 and the functions remain."""
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            conn.execute("CREATE FUNCTION keep_me() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        before = _catalog(scratch_dsn)
        config = _config(tmp_path, production=subject_cluster.dsn("production"), scratch=scratch_dsn)
        proc = drillbook("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "is not empty: function: 1 (public.keep_me())" in proc.stderr
        assert _catalog(scratch_dsn) == before


class TestCleanup:
    def test_what_a_drill_added_is_dropped_and_public_is_put_back(self, other_cluster: Cluster,
                                                                  other_db: str) -> None:
        """Objects of every kind, a new schema, and public's ACL and comment changed: all back as found."""
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        before = _catalog(scratch_dsn)
        configured = ConfiguredScratch(_scratch(scratch_dsn))
        target = configured.fresh_database("restore")
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("""
                CREATE SCHEMA app;
                CREATE TABLE app.accounts (id int PRIMARY KEY);
                CREATE TYPE mood AS ENUM ('calm');
                CREATE DOMAIN positive AS int CHECK (VALUE > 0);
                CREATE TABLE orders (id serial PRIMARY KEY, m mood, p positive, a int);
                CREATE VIEW recent AS SELECT * FROM orders;
                CREATE MATERIALIZED VIEW counted AS SELECT count(*) FROM orders;
                CREATE FUNCTION f(int) RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN $1; END';
                CREATE AGGREGATE total(int) (SFUNC = int4pl, STYPE = int);
                CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq);
                CREATE COLLATION c_copy (locale = 'C');
                CREATE TEXT SEARCH CONFIGURATION plain (COPY = simple);
                CREATE STATISTICS s ON m, p FROM orders;
                CREATE TABLE parted (a int) PARTITION BY RANGE (a);
                CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
                CREATE EXTENSION pg_trgm;
                SELECT lo_create(0);
                REVOKE ALL ON SCHEMA public FROM PUBLIC;
                COMMENT ON SCHEMA public IS 'changed by a dump';
            """)
        assert _catalog(scratch_dsn) != before
        configured.drop(target)
        after = _catalog(scratch_dsn)
        assert after == before
        public = next(s for s in after.schemas if s.name == "public")
        assert public.owner == "pg_database_owner"
        assert public.acl == "{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}"

    def test_what_cleanup_cannot_put_back_is_named(self, other_cluster: Cluster, other_db: str) -> None:
        """A database setting changed by the drill is not silently kept: ScratchNotRestored names it."""
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        configured = ConfiguredScratch(_scratch(scratch_dsn))
        target = configured.fresh_database("restore")
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '64MB'").format(sql.Identifier(other_db)))
        with pytest.raises(ScratchNotRestored, match="database settings"):
            configured.drop(target)

    def test_verify_backup_reports_a_scratch_it_could_not_put_back(
        self, other_cluster: Cluster, other_db: str, tmp_path: Path
    ) -> None:
        """A backup that changes its scratch database's settings: `verify backup` names it (exit 1)."""
        plain = subprocess.run([pgtools.tool("pg_dump"), "-Fp", "-d", other_cluster.dsn(other_db)],
                               check=True, capture_output=True, text=True).stdout
        backup = tmp_path / "backup.sql"
        backup.write_text(plain + f"ALTER DATABASE \"{other_db}\" SET work_mem = '64MB';\n")
        scratch_dsn = other_cluster.dsn(other_db, user="drill")
        proc = drillbook("verify", "backup", str(backup), "--scratch", scratch_dsn)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "scratch.cleanup" in proc.stdout and "database settings" in proc.stdout, proc.stdout
