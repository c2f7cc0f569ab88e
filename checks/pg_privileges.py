"""What a subject's role could write: drillbook reads subjects, so any write ability is a warning.

A subject is reached read-only by design (ARCHITECTURE.md, "Safety and trust"), but a read-only
session on a role that *could* write is one bug, one leaked DSN or one ``SET
default_transaction_read_only = off`` away from a write. :func:`write_abilities` lists what the
session's role could write with, read from the catalog in one read-only session:

- superuser, or membership in a role with SUPERUSER, CREATEROLE, CREATEDB or REPLICATION
  (untrusted SQL could ``SET ROLE`` to any role it is a member of);
- membership in a predefined role that writes: ``pg_write_all_data`` (every table),
  ``pg_write_server_files`` or ``pg_execute_server_program`` (the server's files and programs, as
  its OS user); ``pg_read_all_data`` is what a subject's role should have, so it is fine;
- INSERT, UPDATE, DELETE or TRUNCATE on any table, view or foreign table of the connected
  database (column grants count), and ownership of any of them (an owner may drop it).

Only the connected database's relations are read: the catalog of another database is not
visible from this session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from .verdict import Verdict

# Relations named in a finding; the count is always exact.
_NAMES_SHOWN = 3

# Predefined roles whose members can write: every table, or the server's files and programs.
WRITING_ROLES = ("pg_write_all_data", "pg_write_server_files", "pg_execute_server_program")

_SESSION_USER = ("SELECT session_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = "
                 "session_user)")
_MEMBERSHIPS = (
    "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication "
    "FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') "
    "ORDER BY r.rolname"
)
# Relations of the connected database the session's role could change (tables, partitioned tables,
# views, materialized views, foreign tables), outside the system schemas.
_WRITABLE = (
    "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), "
    "  pg_catalog.has_any_column_privilege(session_user, c.oid, 'INSERT'), "
    "  pg_catalog.has_any_column_privilege(session_user, c.oid, 'UPDATE'), "
    "  pg_catalog.has_table_privilege(session_user, c.oid, 'DELETE'), "
    "  pg_catalog.has_table_privilege(session_user, c.oid, 'TRUNCATE'), "
    "  pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER') "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    "  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
    "  AND (pg_catalog.has_any_column_privilege(session_user, c.oid, 'INSERT, UPDATE') "
    "    OR pg_catalog.has_table_privilege(session_user, c.oid, 'DELETE, TRUNCATE') "
    "    OR pg_catalog.pg_has_role(session_user, c.relowner, 'MEMBER')) "
    "ORDER BY 1"
)
_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")

READ_ONLY_RECIPE = (
    "connect as a role that can only read: as a superuser run CREATE ROLE drillbook_ro LOGIN "
    "PASSWORD '...'; GRANT pg_read_all_data TO drillbook_ro; (PostgreSQL 14+; before: GRANT CONNECT, "
    "USAGE on the schemas and SELECT ON ALL TABLES) and point the target's `dsn` at it, password "
    "from ${ENV}"
)


@dataclass(frozen=True)
class RolePowers:
    """The session's role, whether it is a superuser, and else every power it holds beyond reading."""

    role: str
    superuser: bool
    powers: tuple[str, ...]


def role_powers(conn: psycopg.Connection[Any], *, predefined: Sequence[str]) -> RolePowers:
    """The session user's SUPERUSER, CREATEROLE, CREATEDB, REPLICATION and membership in ``predefined``.

    The session user is what counts, and every role it is a member of: untrusted SQL can
    ``RESET ROLE`` or ``SET ROLE`` to any of them. A superuser's ``powers`` are empty (that one
    fact says it all; each caller words it). SELECTs only.
    """
    row = conn.execute(_SESSION_USER).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    user, superuser = str(row[0]), bool(row[1])
    if superuser:
        return RolePowers(user, True, ())
    powers: list[str] = []
    members: set[str] = set()
    for name, rolsuper, createrole, createdb, replication in conn.execute(_MEMBERSHIPS).fetchall():
        members.add(str(name))
        via = "" if name == user else f" (through membership in `{name}`)"
        for flag, what in ((rolsuper, "SUPERUSER"), (createrole, "CREATEROLE"),
                           (createdb, "CREATEDB"), (replication, "REPLICATION")):
            if flag:
                powers.append(f"it has {what}{via}")
    powers += [f"it is a member of `{name}`" for name in predefined if name in members]
    return RolePowers(user, False, tuple(powers))


@dataclass(frozen=True)
class RoleFacts:
    """What the catalog says about the session's role: its name and everything it could write with."""

    role: str
    database: str
    superuser: bool
    problems: tuple[str, ...]


def write_abilities(conn: psycopg.Connection[Any]) -> RoleFacts:
    """Read the session role's write abilities (SELECTs only)."""
    row = conn.execute("SELECT pg_catalog.current_database()").fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    database = str(row[0])
    powers = role_powers(conn, predefined=WRITING_ROLES)
    if powers.superuser:
        return RoleFacts(powers.role, database, True, ("it is a superuser: it can write anything, "
                                                       "anywhere on the server",))
    problems = [*powers.powers, *relation_findings(conn.execute(_WRITABLE).fetchall())]
    return RoleFacts(powers.role, database, False, tuple(problems))


def relation_findings(rows: Sequence[Sequence[Any]]) -> list[str]:
    """``it has INSERT on 2 relations (public.a, public.b)`` per privilege, and what it owns."""
    by_privilege: dict[str, list[str]] = {p: [] for p in _PRIVILEGES}
    owned: list[str] = []
    for name, *flags in rows:
        for privilege, held in zip(_PRIVILEGES, flags[:4], strict=True):
            if held:
                by_privilege[privilege].append(str(name))
        if flags[4]:
            owned.append(str(name))
    found = [f"it has {privilege} on {_some(names)}" for privilege, names in by_privilege.items() if names]
    if owned:
        found.append(f"it owns {_some(owned)}: it could alter or drop them")
    return found


def _some(names: Sequence[str]) -> str:
    noun = "relation" if len(names) == 1 else "relations"
    shown = ", ".join(names[:_NAMES_SHOWN]) + (", …" if len(names) > _NAMES_SHOWN else "")
    return f"{len(names)} {noun} ({shown})"


def read_only_verdict(check_id: str, facts: RoleFacts, *, target: str) -> Verdict:
    """Passed when the role can only read; a warning naming every write ability otherwise."""
    evidence = {"role": facts.role, "database": facts.database, "problems": list(facts.problems),
                "fix": READ_ONLY_RECIPE}
    if not facts.problems:
        return Verdict.passed(check_id, f"role `{facts.role}` can only read database {facts.database}",
                              evidence=evidence)
    return Verdict.warning(
        check_id, f"subject `{target}` is reached as role `{facts.role}`, which can write: "
        f"{'; '.join(facts.problems)}; drillbook needs read only", evidence=evidence)
