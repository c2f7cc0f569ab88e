"""What a recovered cluster's own catalog could make drillbook's connections run, defused.

``postgresql.auto.conf`` is not the only place a backup keeps settings: ``ALTER ROLE … SET`` and
``ALTER DATABASE … SET`` live in ``pg_db_role_setting`` and beat the server's command line. A
backup can ship ``session_preload_libraries = './x'`` there together with ``x.so`` in its own
data directory (the server's working directory): the first connection would load it, native code
as the server's OS user. And a C function whose library path leads out of PostgreSQL's library
directory loads such a file whenever anything calls it (a view, a column type's output).

So every connection drillbook opens on a recovered cluster overrides the loading settings as a
client option (they beat per-role settings), and before any step reads the cluster drillbook

- promotes it when it is paused at its target (a standby's catalog is read-only),
- removes every per-role and per-database setting (their names go to the evidence),
- refuses the restore when a C function loads a library from outside ``$libdir``,
- creates a reader role of its own (LOGIN, not a superuser, ``pg_read_all_data``, BYPASSRLS so
  the backup's row-level policies neither filter counts nor run), which steps connect as: SQL
  the backup defined then runs without superuser rights (no ``COPY … TO PROGRAM``) —
- and, so that role cannot be lent them, turns every SECURITY DEFINER function into an invoker's
  one, withdraws EXECUTE on functions in untrusted languages (plpython3u & co.), and removes
  whatever roles the backup made ``pg_read_all_data`` a member of.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from checks.errors import BackupRefused

# Client options beat ALTER ROLE/DATABASE SET; libraries then load only from PostgreSQL's own
# directory, and nothing is preloaded into drillbook's sessions.
SAFE_OPTIONS = ("-c session_preload_libraries= -c local_preload_libraries= "
                "-c dynamic_library_path=$libdir -c search_path=pg_catalog")
PROMOTE_WAIT_S = 60
# A C function's library: a bare name (searched in dynamic_library_path, which is $libdir) or
# $libdir/name. Anything with another slash can point into the backup's own files.
_OUTSIDE_LIBDIR = (r"NOT (p.probin ~ '^[A-Za-z0-9_.+-]+$' OR p.probin ~ '^\$libdir/[A-Za-z0-9_.+-]+$') "
                   r"OR p.probin ~ '\.\.'")


def reader_name() -> str:
    """A role name no backup holds (random), for one recovered cluster."""
    return f"drillbook_reader_{secrets.token_hex(6)}"


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection to a recovered cluster that no per-role or per-database setting can subvert."""
    return psycopg.connect(dsn, options=SAFE_OPTIONS, **kwargs)


def defuse(dsn_of: Callable[[str], str], databases: list[str], *, reader: str) -> dict[str, Any]:
    """Promote, drop per-role/per-database settings, refuse foreign C libraries, create ``reader``.

    ``dsn_of(dbname)`` gives the superuser DSN of one database; ``databases`` are those that
    accept connections. Returns journal notes; raises BackupRefused naming what was found.
    """
    notes: dict[str, Any] = {}
    with connect(dsn_of("postgres"), connect_timeout=10, autocommit=True) as conn:
        row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
        if row and row[0]:
            done = conn.execute("SELECT pg_catalog.pg_promote(true, %s)", (PROMOTE_WAIT_S,)).fetchone()
            if not done or not done[0]:
                raise BackupRefused(f"the recovered cluster did not leave recovery within {PROMOTE_WAIT_S} s "
                                    "when promoted for reading", hint="read the server log in the evidence")
            notes["promoted_for_reading"] = True
        settings = conn.execute(
            "SELECT coalesce(d.datname, '*'), coalesce(r.rolname, '*'), s.setconfig "
            "FROM pg_catalog.pg_db_role_setting s "
            "LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase "
            "LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole").fetchall()
        # Names only: a value can be anything, a secret included.
        notes["removed_role_settings"] = sorted(f"{db}/{role}: {entry.split('=', 1)[0]}"
                                                for db, role, config in settings for entry in config or [])
        conn.execute("DELETE FROM pg_catalog.pg_db_role_setting")
        lent = conn.execute("DELETE FROM pg_catalog.pg_auth_members "
                            "WHERE member = 'pg_read_all_data'::pg_catalog.regrole "
                            "RETURNING roleid::pg_catalog.regrole::text")
        notes["roles_removed_from_pg_read_all_data"] = sorted(r[0] for r in lent.fetchall())
        role = sql.Identifier(reader)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                             "BYPASSRLS").format(role))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(role))
    foreign: list[str] = []
    definers = untrusted = 0
    for database in databases:
        with connect(dsn_of(database), connect_timeout=10, autocommit=True) as conn:
            foreign += [f"{database}: {name} loads {path!r}" for name, path in conn.execute(
                "SELECT p.oid::pg_catalog.regprocedure::text, p.probin FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
                f"WHERE l.lanname = 'c' AND p.probin IS NOT NULL AND ({_OUTSIDE_LIBDIR})").fetchall()]
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role))
            definers += conn.execute(
                "UPDATE pg_catalog.pg_proc SET prosecdef = false WHERE prosecdef").rowcount
            untrusted += conn.execute(
                "UPDATE pg_catalog.pg_proc p SET proacl = '{}' FROM pg_catalog.pg_language l "
                "WHERE l.oid = p.prolang AND NOT l.lanpltrusted AND l.lanname NOT IN ('c', 'internal') "
                "AND p.proacl IS DISTINCT FROM '{}'").rowcount
    if foreign:
        raise BackupRefused(
            f"the backup declares C functions that load libraries from outside PostgreSQL's library "
            f"directory: {'; '.join(foreign[:5])}{' …' if len(foreign) > 5 else ''}",
            functions=foreign[:20],
            hint="a library path with a slash can point at a file shipped inside the backup; drillbook "
                 "does not load it. Recover this backup by hand on an isolated host")
    notes.update(databases_checked=len(databases), security_definer_functions_made_invoker=definers,
                 untrusted_language_functions_withdrawn=untrusted, reader=reader)
    return notes
