"""A prelude's roles (issue 12): created by drillbook in its own scratch cluster, safely, then dropped.

Real PostgreSQL: one throwaway cluster (``LocalScratch``) for the module. ``drillbook verify
migrations`` runs in-process with its default scratch (no ``--scratch``), which is that cluster
kept open (``kept``), so that ``pg_roles`` can be read after each run; ``--scratch DSN`` (a
configured scratch, no admin) is a fresh database of the same cluster. Each hostile prelude is
built by the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from checks.errors import EnvironmentError_
from drillbook.cli import main
from drills.local import LocalScratch
from drills.migrations import MigrationReplay, MigrationSet

pytestmark = pytest.mark.integration

ROLES = ("app_reader", "app_writer")


@pytest.fixture(scope="module")
def cluster(sandbox_xdg_cache: Path) -> Iterator[LocalScratch]:
    try:
        scratch = LocalScratch.start(cache_dir=sandbox_xdg_cache / "drillbook")
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not usable here: {exc}")
    try:
        yield scratch
    finally:
        scratch.close()


class _Kept:
    """The module's cluster as the CLI's default scratch; the CLI's close() leaves it running."""

    def __init__(self, scratch: LocalScratch) -> None:
        self._scratch = scratch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scratch, name)

    def close(self) -> None:
        """Kept for the checks after the run; the module fixture closes it."""


@pytest.fixture
def kept(cluster: LocalScratch, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalScratch]:
    """`verify migrations` without --scratch replays into ``cluster``; nothing is left after."""
    monkeypatch.setattr(LocalScratch, "start", staticmethod(lambda **_kw: _Kept(cluster)))
    yield cluster
    assert cluster.databases() == []
    assert cluster._databases.roles() == []
    assert _roles(cluster, "app_%") == {}, "a prelude's role outlived its database"


def _roles(cluster: LocalScratch, pattern: str) -> dict[str, tuple[Any, ...]]:
    """Roles of the cluster matching ``pattern``: (login, super, createdb, createrole, repl, bypassrls)."""
    with psycopg.connect(cluster.server.dsn("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
            "rolbypassrls FROM pg_roles WHERE rolname LIKE %s", (pattern,)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    code = main(["verify", "migrations", *args, "--json"])
    out = capsys.readouterr().out
    return code, {v["id"]: v for v in json.loads(out)["verdicts"]}, out


GRANTING = {
    "V1__widgets.sql": "CREATE TABLE app.widgets (id bigint PRIMARY KEY);\n"
                       "GRANT SELECT ON app.widgets TO app_reader;\n",
    "V2__writers.sql": "GRANT USAGE ON SCHEMA app TO app_reader;\n"
                       "GRANT INSERT ON widgets TO app_writer;\n",
}
PRELUDE = ("-- the team's init script\n"
           "CREATE SCHEMA app;\n"
           "CREATE ROLE app_reader;\n"
           "CREATE USER app_writer WITH LOGIN PASSWORD 'hunter2-in-the-prelude' IN ROLE app_reader;\n"
           "SET search_path TO app, public;\n"
           "SELECT 'app.widgets'::regclass IS NULL AS missing;\n")


class TestPreludeRoles:
    def test_migrations_granting_to_the_preludes_roles_replay(
            self, tmp_path: Path, kept: LocalScratch, capsys: pytest.CaptureFixture[str]) -> None:
        """Default scratch: the roles are made (no LOGIN, password left out), used, then dropped."""
        folder = _write(tmp_path / "db", GRANTING)
        prelude = _write(tmp_path, {"init.sql": PRELUDE.replace("SELECT 'app.widgets'::regclass "
                                                                "IS NULL AS missing;\n", "")}) / "init.sql"
        code, verdicts, out = _verify(capsys, str(folder), "--prelude", str(prelude))
        assert code == 0, verdicts
        found = verdicts["migrations.prelude"]
        assert found["outcome"] == "passed"
        assert found["evidence"]["roles"] == list(ROLES)
        assert found["evidence"]["statements"] == 2  # CREATE SCHEMA, SET: the roles are drillbook's
        assert "LOGIN, PASSWORD ignored" in found["evidence"]["notes"][0]
        assert "app_reader" in found["message"]
        assert "hunter2" not in out
        assert verdicts["migrations.replay"]["outcome"] == "passed"
        # `kept` then proves the roles and the database are gone.

    def test_other_statements_keep_their_lines(self, tmp_path: Path, kept: LocalScratch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """A statement after the roles fails naming its own line; the roles made are dropped."""
        folder = _write(tmp_path / "db", GRANTING)
        prelude = _write(tmp_path, {"init.sql": PRELUDE.replace("IS NULL", "IS NULL + nonsense")})
        code, verdicts, _ = _verify(capsys, str(folder), "--prelude", str(prelude / "init.sql"))
        assert code == 1
        assert "init.sql:6" in verdicts["migrations.prelude"]["message"]
        assert "migrations.replay" not in verdicts

    @pytest.mark.parametrize(("statement", "named"), [
        ("CREATE ROLE app_x SUPERUSER;", "SUPERUSER"),
        ("CREATE ROLE app_x WITH\n  NOLOGIN\n  CREATEROLE;", "CREATEROLE"),
        ("CREATE USER app_x CREATEDB;", "CREATEDB"),
        ("CREATE ROLE app_x REPLICATION;", "REPLICATION"),
        ("CREATE ROLE app_x BYPASSRLS;", "BYPASSRLS"),
        ("CREATE ROLE app_x IN ROLE pg_execute_server_program;", "pg_execute_server_program"),
        ("CREATE ROLE app_x ROLE CURRENT_USER;", "CURRENT_USER"),
        ("CREATE GROUP app_x WITH USER postgres;", "postgres"),
        ("CREATE ROLE app_x ADMIN app_y;", "app_y"),
        ("CREATE ROLE pg_app;", "pg_app"),
    ])
    def test_a_powerful_role_is_refused_naming_line_and_option(
            self, tmp_path: Path, kept: LocalScratch, capsys: pytest.CaptureFixture[str],
            statement: str, named: str) -> None:
        """Nothing runs: not the role before it, not the migrations; the verdict names file:line."""
        folder = _write(tmp_path / "db", GRANTING)
        prelude = _write(tmp_path, {"init.sql": "CREATE SCHEMA app;\nCREATE ROLE app_reader;\n\n"
                                                + statement + "\n"}) / "init.sql"
        code, verdicts, _ = _verify(capsys, str(folder), "--prelude", str(prelude))
        assert code == 1
        message = verdicts["migrations.prelude"]["message"]
        assert verdicts["migrations.prelude"]["outcome"] == "failed"
        line = 4 + statement.count("\n") if named == "CREATEROLE" else 4
        assert f"init.sql:{line}:" in message and named in message, message
        assert "migrations.replay" not in verdicts

    def test_an_existing_role_is_refused_and_left_alone(
            self, tmp_path: Path, kept: LocalScratch, capsys: pytest.CaptureFixture[str]) -> None:
        """Names are cluster-wide: `CREATE ROLE postgres` (the cluster's superuser) is never run."""
        before = _roles(kept, "postgres")
        assert before, "the cluster's superuser is expected to be named postgres"
        folder = _write(tmp_path / "db", GRANTING)
        prelude = _write(tmp_path, {"init.sql": "CREATE ROLE app_reader;\nCREATE ROLE postgres;\n"})
        code, verdicts, _ = _verify(capsys, str(folder), "--prelude", str(prelude / "init.sql"))
        assert code == 1
        message = verdicts["migrations.prelude"]["message"]
        assert "init.sql:2:" in message and "already exists" in message, message
        assert _roles(kept, "postgres") == before

    def test_a_configured_scratch_refuses_with_a_hint(
            self, tmp_path: Path, cluster: LocalScratch, capsys: pytest.CaptureFixture[str]) -> None:
        """--scratch DSN is a server of the user's: drillbook has no admin there and makes no role."""
        target = cluster.fresh_database("configured")
        try:
            folder = _write(tmp_path / "db", GRANTING)
            prelude = _write(tmp_path, {"init.sql": PRELUDE}) / "init.sql"
            code, verdicts, _ = _verify(capsys, str(folder), "--prelude", str(prelude),
                                        "--scratch", target.dsn)
        finally:
            cluster.drop(target)
        assert code == 1
        message = verdicts["migrations.prelude"]["message"]
        assert "init.sql:3:" in message
        assert "create the roles on that server yourself, or let drillbook create the scratch" in message
        assert _roles(cluster, "app_%") == {}

    def test_a_migration_creating_a_role_is_pointed_to_the_prelude(
            self, tmp_path: Path, kept: LocalScratch, capsys: pytest.CaptureFixture[str]) -> None:
        folder = _write(tmp_path / "db", {"V1__role.sql": "-- readers\nCREATE ROLE app_reader;\n"})
        code, verdicts, _ = _verify(capsys, str(folder))
        assert code == 1
        message = verdicts["migrations.replay"]["message"]
        assert "V1__role.sql:2" in message
        assert "create the role in the prelude (--prelude / [migrations] prelude)" in message


class TestContainment:
    def test_the_replay_role_is_not_a_member_of_the_roles(self, tmp_path: Path,
                                                          cluster: LocalScratch) -> None:
        """The roles are plain NOLOGIN roles; the replay role can neither become nor grant them."""
        prelude = _write(tmp_path, {"init.sql": "CREATE ROLE app_reader;\n"
                                                "CREATE ROLE app_writer IN ROLE app_reader;\n"}) / "init.sql"
        target = cluster.fresh_database("containment")
        try:
            with MigrationReplay(MigrationSet(tmp_path, "prelude", ()), target) as replay:
                run = replay.prelude(prelude, roles=cluster.create_roles)
                assert run.roles == ROLES
                conn = replay.connect()
                for attempt in ("SET ROLE app_reader", "SET ROLE app_writer",
                                "GRANT app_reader TO CURRENT_USER", "ALTER ROLE app_reader LOGIN",
                                "DROP ROLE app_writer"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(attempt)
            assert _roles(cluster, "app_%") == dict.fromkeys(ROLES, (False,) * 6)
        finally:
            cluster.drop(target)
        assert _roles(cluster, "app_%") == {}

    def test_roles_are_dropped_even_when_something_elsewhere_names_them(
            self, tmp_path: Path, cluster: LocalScratch) -> None:
        """A grant in another database (made by an admin) does not keep them: DROP OWNED first."""
        prelude = _write(tmp_path, {"init.sql": "CREATE ROLE app_reader;\n"}) / "init.sql"
        target = cluster.fresh_database("elsewhere")
        try:
            with MigrationReplay(MigrationSet(tmp_path, "prelude", ()), target) as replay:
                replay.prelude(prelude, roles=cluster.create_roles)
            with psycopg.connect(cluster.server.dsn("postgres"), autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE TABLE IF NOT EXISTS elsewhere (id int)"))
                admin.execute("GRANT SELECT ON elsewhere TO app_reader")
                admin.execute("GRANT CONNECT ON DATABASE postgres TO app_reader")
        finally:
            cluster.drop(target)
        assert _roles(cluster, "app_%") == {}

    def test_a_half_created_set_is_dropped_with_the_database(self, cluster: LocalScratch) -> None:
        """The roles are recorded before they exist: a drop after a failed creation finds them all."""
        target = cluster.fresh_database("half")
        make: Callable[..., list[str]] = cluster.create_roles
        from drills.migrations.prelude_roles import RoleSpec

        try:
            with pytest.raises(psycopg.Error):
                # The second names a member that does not exist: the transaction makes neither.
                make(target, [RoleSpec("app_reader", 1), RoleSpec("app_writer", 2, in_roles=("app_nope",))])
            assert _roles(cluster, "app_%") == {}
            assert make(target, [RoleSpec("app_reader", 1)]) == ["app_reader"]
        finally:
            cluster.drop(target)
        assert _roles(cluster, "app_%") == {}
        assert cluster._databases.roles() == []
