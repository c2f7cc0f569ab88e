"""PostgreSQL targets: read-only sessions, a subject's privileges, a configured scratch, the clock.

Every session is opened with ``default_transaction_read_only`` on (in the connection's own
``options``, so it holds from the first statement) and a statement timeout: nothing the doctor
runs can write, and nothing can hang. A configured scratch is judged by the very code that guards
it before a drill's first write (:mod:`drills.scratch_guard`, :mod:`checks.pg_identity`,
:mod:`drills.scratch_catalog`), one refusal per line; that code only reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from checks import pg_health
from checks.errors import DrillbookError, SafetyError, ScratchNotEmpty, TargetUnreachable
from checks.pg_privileges import read_only_verdict, write_abilities
from checks.verdict import Outcome, Verdict
from drills.targets import PostgresTarget

from .base import CONNECT_TIMEOUT_S, concurrently, result
from .environment import ServerVersion

if TYPE_CHECKING:
    from checks.pg_identity import ServerIdentity

STATEMENT_TIMEOUT_MS = 10_000
CLOCK_WARN = timedelta(seconds=60)
CLOCK_FAIL = timedelta(minutes=10)
_IN_STEP = timedelta(seconds=1)  # below the round trip's uncertainty on a slow link: not worth a number
_CLOCK_FIX = ("run an NTP client (chrony, systemd-timesyncd) on this machine and on the database server: "
              "backup ages (RPO) are measured against this clock")


def connect_read_only(target: PostgresTarget) -> psycopg.Connection[Any]:
    """An autocommit session where every statement is read-only (checks.pg_health.connect_read_only).

    :class:`AuthenticationFailed` or :class:`TargetUnreachable` naming the target when none opens.
    """
    return pg_health.connect_read_only(
        target.dsn, label=f"`{target.name}` ({target.describe()})", timeout_s=CONNECT_TIMEOUT_S,
        statement_timeout_ms=STATEMENT_TIMEOUT_MS, application_name="drillbook-doctor")


def unreachable(name: str, exc: DrillbookError) -> Verdict:
    """A target that could not be reached: FAIL, its hint as the fix."""
    return result(name, Outcome.FAILED, exc.message, fix=exc.hint, error=type(exc).__name__)


def privileges(name: str, target: PostgresTarget) -> Verdict:
    """WARN when a subject's role could write (superuser, CREATE*/REPLICATION, write grants, ownership)."""
    with connect_read_only(target) as conn:
        facts = write_abilities(conn)
    return read_only_verdict(name, facts, target=target.name)


# -- a configured scratch: the guard's own checks, one a line -------------------------------------


def scratch_empty(name: str, scratch: PostgresTarget) -> Verdict:
    """The scratch database holds nothing (drills/scratch_catalog.py's definition of empty)."""
    from drills.scratch_catalog import describe_findings, emptiness_findings, read_catalog

    with connect_read_only(scratch) as conn:
        found = emptiness_findings(read_catalog(conn))
    if found:
        hint = ScratchNotEmpty.default_hint
        return result(name, Outcome.FAILED, f"scratch target `{scratch.name}` ({scratch.describe()}) is not "
                      f"empty: {describe_findings(found)}", fix=hint,
                      found={k: len(v) for k, v in found.items()})
    return result(name, Outcome.PASSED, f"scratch target `{scratch.name}` ({scratch.describe()}) is empty")


def scratch_own_server(name: str, scratch: PostgresTarget, subjects: Sequence[PostgresTarget]) -> Verdict:
    """The scratch is proven to be on another server than every subject (drills/scratch_guard.py).

    The scratch and every subject are asked at once, each in a doctor session (read-only, statement
    timeout): silent subjects cost one connect timeout in all.
    """
    from drills.scratch_guard import identity_from_session, refuse_shared_server, resolve_identity

    def scratch_identity() -> ServerIdentity:
        with connect_read_only(scratch) as conn:
            return identity_from_session(conn, resolve_identity(scratch))

    probes: list[Callable[[], ServerIdentity]] = [scratch_identity]
    probes += [partial(subject_identity, s) for s in subjects]
    identities: list[ServerIdentity] = []
    for answer in concurrently(lambda probe: probe(), probes):
        if isinstance(answer, BaseException):
            raise answer  # the scratch does not answer (its reachability line says more), or a bug
        identities.append(answer)
    try:
        refuse_shared_server(identities[0], list(zip(subjects, identities[1:], strict=True)))
    except SafetyError as exc:
        return result(name, Outcome.FAILED, exc.message, fix=exc.hint)
    named = ", ".join(f"`{s.name}`" for s in subjects) or "no subject is configured"
    return result(name, Outcome.PASSED, f"scratch target `{scratch.name}` is on a server of its own "
                  f"(told apart from {named})" if subjects else f"scratch target `{scratch.name}`: {named}")


def subject_identity(subject: PostgresTarget) -> ServerIdentity:
    """A subject's identity from a doctor session, or only its resolved endpoints when it does not answer.

    drills/scratch_guard.identity_or_resolved, but through :func:`connect_read_only`.
    """
    from drills.scratch_guard import identity_from_session, resolve_identity

    resolved = resolve_identity(subject)
    try:
        with connect_read_only(subject) as conn:
            return identity_from_session(conn, resolved)
    except (TargetUnreachable, psycopg.Error):
        return resolved


def scratch_role(name: str, scratch: PostgresTarget) -> Verdict:
    """The scratch's role cannot reach beyond its database (drills/scratch_guard.refuse_powerful_role)."""
    from drills.scratch_guard import refuse_powerful_role

    with connect_read_only(scratch) as conn:
        user_row = conn.execute("SELECT session_user").fetchone()
        try:
            refuse_powerful_role(conn, scratch)
        except SafetyError as exc:
            return result(name, Outcome.FAILED, exc.message, fix=exc.hint)
    role = str(user_row[0]) if user_row else "?"
    return result(name, Outcome.PASSED, f"scratch target `{scratch.name}` is reached as role `{role}`, "
                  "which cannot reach beyond its database")


# -- versions and the clock --------------------------------------------------------------------


@dataclass(frozen=True)
class SessionFacts:
    """What a PostgreSQL target says about itself in a doctor session."""

    role: str
    database: str
    version: ServerVersion


class Sessions:
    """Each PostgreSQL target's :class:`SessionFacts`, read once per doctor run and shared.

    The reachability line and the client-version checks all need a subject's version and run at
    once: the first to ask opens the session, the others wait for its answer (a failure is kept too,
    so a silent server costs one connect timeout, not one per check).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target_locks: dict[str, threading.Lock] = {}
        self._answers: dict[str, SessionFacts | Exception] = {}

    def answer(self, target: PostgresTarget) -> SessionFacts | Exception:
        """The target's facts, or why they could not be read."""
        with self._lock:
            target_lock = self._target_locks.setdefault(target.name, threading.Lock())
        with target_lock:
            if target.name not in self._answers:
                try:
                    self._answers[target.name] = read_facts(target)
                except Exception as exc:  # noqa: BLE001 - kept for every check that asks; each names it
                    self._answers[target.name] = exc
            return self._answers[target.name]

    def versions(self, targets: Sequence[PostgresTarget]) -> tuple[list[ServerVersion], list[str]]:
        """The versions of the servers that answer, and the names of those that do not (asked at once)."""
        found: list[ServerVersion] = []
        unreached: list[str] = []
        for target, answer in zip(targets, concurrently(self.answer, targets), strict=True):
            if isinstance(answer, SessionFacts):
                found.append(answer.version)
            else:
                unreached.append(f"`{target.name}`")
        return found, unreached


def read_facts(target: PostgresTarget) -> SessionFacts:
    """Role, database and server version, in one read-only session."""
    with connect_read_only(target) as conn:
        number = conn.info.server_version
        row = conn.execute("SELECT session_user, pg_catalog.current_database(), "
                           "pg_catalog.current_setting('server_version')").fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    text = str(row[2]).split()[0] if row[2] else str(number)
    return SessionFacts(str(row[0]), str(row[1]), ServerVersion(f"`{target.name}`", major_of(number), text))


def major_of(server_version_num: int) -> int:
    """The major version of ``server_version_num`` (``150018`` → 15; ``90624`` → 9)."""
    return server_version_num // 10000


def clock(name: str, target: PostgresTarget) -> Verdict:
    """This machine's UTC clock against the server's ``clock_timestamp()``."""
    with connect_read_only(target) as conn:
        before = datetime.now(UTC)
        started = time.perf_counter()
        row = conn.execute("SELECT pg_catalog.clock_timestamp()").fetchone()
        round_trip = timedelta(seconds=time.perf_counter() - started)
    assert row is not None
    return clock_verdict(name, local=before + round_trip / 2, server=row[0], target=target.name)


def clock_verdict(name: str, *, local: datetime, server: datetime, target: str) -> Verdict:
    """WARN beyond 60 s of skew, FAIL beyond 10 min: RPO ages depend on this clock."""
    skew = server - local
    size = abs(skew)
    ahead = "ahead of" if skew > timedelta(0) else "behind"
    shown = f"{size.total_seconds():.1f} s" if size < timedelta(minutes=2) else \
        f"{size.total_seconds() / 60:.1f} min"
    message = (f"`{target}`'s clock is {shown} {ahead} this machine's (UTC)" if size >= _IN_STEP else
               f"`{target}`'s clock agrees with this machine's (UTC) within {_IN_STEP.total_seconds():g} s")
    if size > CLOCK_FAIL:
        return result(name, Outcome.FAILED, f"{message}: more than 10 min", fix=_CLOCK_FIX,
                      skew_s=skew.total_seconds(), target=f"`{target}`")
    if size > CLOCK_WARN:
        return result(name, Outcome.WARNING, f"{message}: more than 60 s", fix=_CLOCK_FIX,
                      skew_s=skew.total_seconds(), target=f"`{target}`")
    return result(name, Outcome.PASSED, message, skew_s=skew.total_seconds(), target=f"`{target}`")
