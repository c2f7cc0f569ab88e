"""Before a configured scratch takes its first write: the right server, the right role, empty.

A configured scratch (``scratch = true`` in the config, or ``--scratch DSN``) is
a database someone else set up. Untrusted content (a backup, a migration
folder) runs in it as the DSN's role, so three things are proven first:

1. **Not on a subject's server** (:func:`refuse_shared_server`): servers are
   compared by identity (:mod:`checks.pg_identity`), never by host strings. A
   subject that cannot be reached cannot be told apart, so it is refused too.
2. **A contained role** (:func:`refuse_powerful_role`): not a superuser, no
   CREATEROLE, CREATEDB or REPLICATION, no membership in a predefined role that
   reaches the server's files, programs, other sessions or every table, and
   owner of no other database.
3. **Empty** (:mod:`drills.scratch_catalog`): checked by :func:`preflight` and
   again by the caller before every drill.

:class:`ScratchGuard` runs 1 and 2 once per run; :func:`preflight` runs them at
start for every configured scratch so a bad config exits 2 before anything ran.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from checks import redact
from checks.errors import ScratchNotEmpty, ScratchOnSubjectServer, ScratchRoleTooPowerful, TargetUnreachable
from checks.pg_identity import (
    Endpoint,
    ServerIdentity,
    libpq_hosts,
    proven_distinct,
    same_server_evidence,
    tcp_endpoint,
    unix_endpoint,
)
from checks.pg_privileges import role_powers

from .scratch_catalog import describe_findings, emptiness_findings, read_catalog
from .targets import PostgresTarget, Role

_CONNECT_TIMEOUT_S = 5
# Predefined roles that reach beyond the role's own database: the server's files and programs (as
# its OS user), other sessions (pg_signal_backend ends any non-superuser's backend on the server),
# and every table of every database on it.
DANGEROUS_ROLES = (
    "pg_execute_server_program", "pg_read_server_files", "pg_write_server_files",
    "pg_signal_backend", "pg_read_all_data", "pg_write_all_data",
)


def resolve_identity(target: PostgresTarget, *, environ: Mapping[str, str] | None = None) -> ServerIdentity:
    """What the DSN alone says: every address its hosts resolve to (nothing from inside a session)."""
    env = os.environ if environ is None else environ
    try:
        params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(target.dsn).items()}
        hosts = libpq_hosts(params, env)
    except (psycopg.ProgrammingError, ValueError):
        return ServerIdentity(target=target.name)
    endpoints: set[Endpoint] = set()
    for host in hosts:
        if host.unix:
            endpoints.add(_unix(host.host, host.port))
            continue
        try:
            infos = socket.getaddrinfo(host.host, host.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            endpoints.add(tcp_endpoint(host.host, host.port))  # unresolvable: compare the name itself
            continue
        endpoints.update(tcp_endpoint(str(info[4][0]), host.port) for info in infos)
    return ServerIdentity(target=target.name, endpoints=frozenset(endpoints))


def probe_identity(target: PostgresTarget, *, environ: Mapping[str, str] | None = None) -> ServerIdentity:
    """The DSN's endpoints plus what the server says from inside a read-only session.

    Raises :class:`TargetUnreachable` when the server does not answer.
    """
    resolved = resolve_identity(target, environ=environ)
    try:
        with psycopg.connect(target.dsn, connect_timeout=_CONNECT_TIMEOUT_S, autocommit=True) as conn:
            conn.read_only = True
            return identity_from_session(conn, resolved)
    except psycopg.Error as exc:
        raise TargetUnreachable(
            f"`{target.name}` ({target.describe()}) does not answer: {redact.redact(str(exc).strip())}",
            target=target.name,
        ) from exc


def identity_from_session(conn: psycopg.Connection[Any], resolved: ServerIdentity) -> ServerIdentity:
    """``resolved`` plus what the server says from inside ``conn``'s session (SELECTs only)."""
    row = conn.execute(
        "SELECT pg_catalog.pg_postmaster_start_time(), pg_catalog.host(pg_catalog.inet_server_addr()), "
        "pg_catalog.inet_server_port()"
    ).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    endpoints = set(resolved.endpoints)
    if row[1] is not None and row[2] is not None:
        endpoints.add(tcp_endpoint(str(row[1]), int(row[2])))
    info = conn.info
    if info.host.startswith("/"):  # connected over a Unix socket: that socket is the server's
        endpoints.add(_unix(info.host, int(info.port)))
    else:
        endpoints.add(tcp_endpoint(info.hostaddr or info.host, int(info.port)))
    try:
        ident_row = conn.execute("SELECT system_identifier FROM pg_catalog.pg_control_system()").fetchone()
        system_identifier = int(ident_row[0]) if ident_row and ident_row[0] is not None else None
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction,
            psycopg.errors.FeatureNotSupported):
        # Revoked from this role (or not offered by this server): the other facts still decide.
        system_identifier = None
    return ServerIdentity(target=resolved.target, endpoints=frozenset(endpoints),
                          postmaster_start=row[0], system_identifier=system_identifier, reached=True)


def _unix(directory: str, port: int) -> Endpoint:
    path = os.path.realpath(directory) if directory.startswith("/") else directory
    return unix_endpoint(path, port)


def refuse_shared_server(scratch: ServerIdentity, subjects: Iterable[tuple[PostgresTarget, ServerIdentity]],
                         *, where: str = "") -> None:
    """Raise :class:`ScratchOnSubjectServer` unless the scratch is proven to be on another server."""
    prefix = f"{where}: " if where else ""
    for subject, identity in subjects:
        evidence = same_server_evidence(scratch, identity)
        if evidence:
            raise ScratchOnSubjectServer(
                f"{prefix}scratch target `{scratch.target}` is on the server of subject `{subject.name}` "
                f"({subject.describe()}): {'; '.join(evidence)}",
                target=scratch.target, subject=subject.name, evidence=evidence,
            )
        if not proven_distinct(scratch, identity):
            raise ScratchOnSubjectServer(
                f"{prefix}cannot prove scratch target `{scratch.target}` is on another server than "
                f"subject `{subject.name}` ({subject.describe()}), which does not answer",
                target=scratch.target, subject=subject.name,
                hint="bring the subject back (or remove it from the config) so the servers can be "
                "compared; or point `scratch` at a database on a server that holds no subject, "
                "or let drillbook create one",
            )


def refuse_powerful_role(conn: psycopg.Connection[Any], target: PostgresTarget) -> None:
    """Raise :class:`ScratchRoleTooPowerful` when the session's role could reach beyond this database.

    The session user is what counts: untrusted SQL can ``RESET ROLE`` or ``SET
    ROLE`` to anything it is a member of, so every role it belongs to counts too.
    """
    powers = role_powers(conn, predefined=DANGEROUS_ROLES)
    user = powers.role
    problems = list(powers.powers)
    if powers.superuser:
        problems.append("it is a superuser (COPY … TO PROGRAM runs commands as the server's OS user)")
    else:
        owned = [str(r[0]) for r in conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE datname <> pg_catalog.current_database() "
            "AND pg_catalog.pg_has_role(session_user, datdba, 'MEMBER') ORDER BY 1").fetchall()]
        if owned:
            problems.append(f"it owns other databases ({', '.join(owned)}): it could drop them")
    if problems:
        raise ScratchRoleTooPowerful(
            f"scratch target `{target.name}` ({target.describe()}) connects as role `{user}`, which "
            f"could reach beyond its database: {'; '.join(problems)}",
            target=target.name, role=user, problems=problems,
        )


class ScratchGuard:
    """Proves once that a configured scratch is on a server of its own, reached by a contained role."""

    def __init__(self, scratch: PostgresTarget, subjects: Sequence[PostgresTarget]) -> None:
        scratch.require_scratch()
        self.scratch = scratch
        self.subjects = [s for s in subjects if s.role is Role.SUBJECT]
        self._cleared = False

    def check(self, conn: psycopg.Connection[Any], *, where: str = "") -> None:
        """Before the first write, on the scratch's own connection: every subject must be told apart."""
        if self._cleared:
            return
        scratch_identity = identity_from_session(conn, resolve_identity(self.scratch))
        refuse_shared_server(scratch_identity, [(s, identity_or_resolved(s)) for s in self.subjects],
                             where=where)
        refuse_powerful_role(conn, self.scratch)
        self._cleared = True


def identity_or_resolved(subject: PostgresTarget) -> ServerIdentity:
    """A subject's full identity, or only its resolved endpoints when it does not answer."""
    try:
        return probe_identity(subject)
    except TargetUnreachable:
        return resolve_identity(subject)


def preflight(scratches: Sequence[PostgresTarget], subjects: Sequence[PostgresTarget], *,
              where: str = "") -> list[str]:
    """At run start: refuse a configured scratch on a subject's server, with a powerful role, or not empty.

    A scratch that does not answer yet, or a subject that does not answer, is
    left to the check before the first write (returned as notes); evidence that
    a scratch shares a server with a subject refuses now, reachable or not.
    """
    notes: list[str] = []
    subject_ids = [(s, identity_or_resolved(s)) for s in subjects if s.role is Role.SUBJECT]
    for scratch in scratches:
        try:
            with psycopg.connect(scratch.dsn, connect_timeout=_CONNECT_TIMEOUT_S, autocommit=True) as conn:
                conn.read_only = True
                identity = identity_from_session(conn, resolve_identity(scratch))
                _refuse_evident_sharing(identity, subject_ids, where)
                refuse_powerful_role(conn, scratch)
                found = emptiness_findings(read_catalog(conn))
        except psycopg.Error as exc:  # not an error yet: the drill that needs it says so
            notes.append(f"scratch target `{scratch.name}` does not answer yet "
                         f"({redact.redact(str(exc).strip())}): checked again before its first write")
            _refuse_evident_sharing(resolve_identity(scratch), subject_ids, where)
            continue
        notes += [f"subject `{subject.name}` does not answer: scratch target `{scratch.name}` is compared "
                  "with it again before its first write"
                  for subject, subject_id in subject_ids if not subject_id.reached]
        if found:
            raise ScratchNotEmpty(
                f"{where + ': ' if where else ''}scratch target `{scratch.name}` ({scratch.describe()}) "
                f"is not empty: {describe_findings(found)}; it was left as it is",
                target=scratch.name, found={k: len(v) for k, v in found.items()},
            )
    return notes


def _refuse_evident_sharing(scratch: ServerIdentity,
                            subjects: Sequence[tuple[PostgresTarget, ServerIdentity]], where: str) -> None:
    """Refuse on any evidence of a shared server; lack of proof is left for before the first write."""
    for subject, identity in subjects:
        if same_server_evidence(scratch, identity):
            refuse_shared_server(scratch, [(subject, identity)], where=where)
