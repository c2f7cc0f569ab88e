"""The fleet sandbox's member databases: their rows, their nightly backups, and the canary's faults.

A *member* (issue 14) is one database with its backups. The fleet sandbox
(:mod:`drillbook.fleet.sandbox`) runs one local PostgreSQL and seeds ``n`` of
them here, each one a small database of the same shape (``accounts``,
``orders``, ``events``; every row dated by ``created_at``) with a size of its
own, so that a plan has something to balance.

Each member's backup history is real: rows are inserted in time order, and
after the rows of each night are in, ``pg_dump -Fc`` writes that night's backup
(``member-07-20261202-0202.dump``, a ``sha256sum`` sidecar beside it, the
file's mtime when it was "taken"). The backup therefore holds exactly the rows
created before the time in its key, so the content comparison ("every row
older than the backup matches the subject") holds for a healthy member, and
the rows created since the last backup are in the subject only, as in
production.

The key carries the time as well as the date: the freshness check dates a
backup by its key, and a date alone reads as midnight, which would make last
night's 02:02 backup look 2 h older than it is.

Under ``canary`` a few members are broken, each in one way (:class:`Fault`),
so their verdicts fail for a reason the progress output names.
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
import random
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from checks.errors import EnvironmentError_

TEMPLATE_DB = "fleet_member_template"
READER_ROLE = "drillbook_reader"
HOSTS = ("pg-a", "pg-b", "pg-c")
# The nightly backup job: fires at 02:00 UTC and its dump is written (and named) 2 minutes later.
FIRE_HOUR = 2
TAKEN_AFTER = timedelta(minutes=2)
BACKUP_DAYS = 3
KEY_PATTERN = "{name}-%Y%m%d-%H%M.dump"
CHECKSUM_SUFFIX = ".sha256"
# Rows are spread evenly over this window before now; every backup cuts it at its own time.
HISTORY = timedelta(days=30)
_MIN_ORDERS, _MAX_ORDERS = 300, 30_000
_STEP_US_MIN = 1
# Where the canary breaks members (1-based positions), one fault each, in this order.
_CANARY_POSITIONS = (2, 3, 5, 6, 8)

_SCHEMA = """
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    amount_cents bigint NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE events (
    id bigint PRIMARY KEY,
    kind text NOT NULL,
    payload text NOT NULL,
    created_at timestamptz NOT NULL
);
"""


class Fault(enum.Enum):
    """How the canary breaks a member; ``value`` is what the progress output and the docs say."""

    STALE = "stale: the last two nightly backups are missing, the newest is over 2 days old"
    CORRUPT = "corrupt: the newest dump is truncated (its checksum file is of the whole dump)"
    MISSING = "missing: the member's backup store is empty"
    DRIFT = "drift: a row older than the newest backup was changed in the subject afterwards"
    UNREACHABLE = "unreachable: the member's production DSN points at a port that refuses connections"

    @property
    def label(self) -> str:
        return self.name.lower()


_CANARY_FAULTS = (Fault.STALE, Fault.CORRUPT, Fault.MISSING, Fault.DRIFT, Fault.UNREACHABLE)


@dataclass(frozen=True)
class MemberPlan:
    """One member to seed: its name, labels, row counts and the fault the canary gives it."""

    index: int  # 1-based
    name: str
    host: str
    tier: str
    accounts: int
    orders: int
    events: int
    fault: Fault | None = None

    @property
    def key_pattern(self) -> str:
        return KEY_PATTERN.format(name=self.name)


def member_name(index: int) -> str:
    """``member-01`` … ``member-99``, ``member-100`` …: zero-padded so names sort by index."""
    return f"member-{index:02d}"


def plan_members(n: int, *, canary: bool) -> list[MemberPlan]:
    """The ``n`` members: deterministic sizes (a log-uniform spread), hosts round-robin, tiers by third.

    Under ``canary`` the members at positions 2, 3, 5, 6 and 8 get one fault each
    (those that exist); a fleet of one member gets the first fault.
    """
    if n < 1:
        raise ValueError(f"a fleet sandbox needs at least one member, got {n}")
    faults: dict[int, Fault] = {}
    if canary:
        faults = {p: f for p, f in zip(_CANARY_POSITIONS, _CANARY_FAULTS, strict=True) if p <= n}
        if not faults:
            faults = {1: _CANARY_FAULTS[0]}
    members = []
    for index in range(1, n + 1):
        # Seeded by the name: the same member has the same size in every sandbox.
        rng = random.Random(f"drillbook-fleet-{index}")  # noqa: S311 - sizes, not secrets
        orders = round(math.exp(rng.uniform(math.log(_MIN_ORDERS), math.log(_MAX_ORDERS))))
        members.append(MemberPlan(
            index=index, name=member_name(index), host=HOSTS[(index - 1) % len(HOSTS)],
            tier="1" if (index - 1) * 3 < n else "2",
            accounts=10 + index % 40, orders=orders, events=max(1, orders // 2),
            fault=faults.get(index)))
    return members


def backup_times(now: datetime, days: int = BACKUP_DAYS) -> list[datetime]:
    """When each of the last ``days`` nightly backups was taken, oldest first (newest: last night's).

    A backup counts once its dump is written (02:02 UTC): before that, the newest is the night before.
    """
    newest = now.replace(hour=FIRE_HOUR, minute=0, second=0, microsecond=0) + TAKEN_AFTER
    if newest > now:
        newest -= timedelta(days=1)
    return [newest - timedelta(days=day) for day in reversed(range(days))]


@dataclass(frozen=True)
class SeededMember:
    """What seeding one member made: its backup files (oldest first) and its row counts."""

    plan: MemberPlan
    store: Path
    backups: tuple[Path, ...]
    rows: dict[str, int]


class _Timeline:
    """Row ``g`` of a table is created at ``start + g·step`` (exact microseconds, so cuts are exact)."""

    def __init__(self, start: datetime, end: datetime, rows: int) -> None:
        self.start = start
        span_us = (end - start) // timedelta(microseconds=1)
        self.step_us = max(_STEP_US_MIN, span_us // (rows + 1))
        self.rows = rows

    def before(self, moment: datetime) -> int:
        """How many rows (ids 1…k) were created strictly before ``moment``."""
        elapsed_us = (moment - self.start) // timedelta(microseconds=1)
        return max(0, min(self.rows, math.ceil(elapsed_us / self.step_us) - 1))

    @property
    def step(self) -> timedelta:
        return timedelta(microseconds=self.step_us)


def create_template(admin_dsn: str) -> None:
    """The member schema once, in a template database; and the read-only role the subjects are read as."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        # Read-only twice over: no write privilege anywhere, and read-only transactions by default.
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
            sql.Identifier(READER_ROLE)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(READER_ROLE)))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
            sql.Identifier(READER_ROLE)))
    with psycopg.connect(_with_db(admin_dsn, TEMPLATE_DB), autocommit=True, connect_timeout=10) as conn:
        conn.execute(_SCHEMA)


def seed_member(plan: MemberPlan, *, admin_dsn: str, bindir: Path, store: Path,
                now: datetime) -> SeededMember:
    """Create the member's database from the template, write its backup history, apply its fault."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(plan.name), sql.Identifier(TEMPLATE_DB)))
    dsn = _with_db(admin_dsn, plan.name)
    store.mkdir(parents=True, exist_ok=True)
    start = now - HISTORY
    orders = _Timeline(start, now, plan.orders)
    events = _Timeline(start, now, plan.events)
    times = backup_times(now)
    written: list[Path] = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "INSERT INTO accounts SELECT g, 'account ' || g, %s FROM generate_series(1, %s::bigint) g",
            (start - timedelta(days=1), plan.accounts))
        done = (0, 0)
        for number, taken in enumerate(times):
            done = _insert_until(conn, plan, orders, events, taken, done)
            skipped = plan.fault is Fault.STALE and number >= len(times) - 2
            if plan.fault is Fault.MISSING or skipped:
                continue
            written.append(_dump(bindir, dsn, store, plan, taken))
        _insert_until(conn, plan, orders, events, now, done)
        if plan.fault is Fault.DRIFT:
            # An old row's amount changes after the backup: the backup no longer matches the subject.
            conn.execute("UPDATE orders SET amount_cents = amount_cents + 1 WHERE id = 1")
        rows = {table: int(_one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))
                for table in ("accounts", "orders", "events")}
    if plan.fault is Fault.CORRUPT and written:
        _truncate(written[-1])
    return SeededMember(plan=plan, store=store, backups=tuple(written), rows=rows)


def _insert_until(conn: psycopg.Connection[Any], plan: MemberPlan, orders: _Timeline, events: _Timeline,
                  moment: datetime, done: tuple[int, int]) -> tuple[int, int]:
    """Insert the rows created before ``moment`` not inserted yet; return how many of each exist now."""
    upto = (orders.before(moment), events.before(moment))
    if upto[0] > done[0]:
        conn.execute(
            "INSERT INTO orders SELECT g, 1 + (g * 7919) %% %s::bigint, (g * 104729) %% 100000, %s + g * %s "
            "FROM generate_series(%s::bigint, %s::bigint) g",
            (plan.accounts, orders.start, orders.step, done[0] + 1, upto[0]))
    if upto[1] > done[1]:
        conn.execute(
            "INSERT INTO events SELECT g, (ARRAY['login', 'export', 'payment', 'refund'])[1 + g %% 4], "
            "repeat(md5(g::text), 3), %s + g * %s FROM generate_series(%s::bigint, %s::bigint) g",
            (events.start, events.step, done[1] + 1, upto[1]))
    return upto


def _dump(bindir: Path, dsn: str, store: Path, plan: MemberPlan, taken: datetime) -> Path:
    """``pg_dump -Fc -Z1`` now, named and dated as the nightly job at ``taken``, with its sha256 sidecar."""
    path = store / taken.strftime(plan.key_pattern)
    # -Z1: within 10 % of the default level's size at half its CPU (measured: 1.03 vs 0.95 MB, 0.5 vs
    # 1.1 s on the largest member), and seeding is mostly pg_dump.
    result = subprocess.run([str(bindir / "pg_dump"), "-Fc", "-Z1", "-f", str(path), "-d", dsn],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EnvironmentError_(f"pg_dump of fleet member {plan.name} failed: {result.stderr.strip()}",
                                hint="the fleet sandbox's PostgreSQL misbehaved; see its log")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
    sidecar.write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    stamp = taken.timestamp()
    for written in (path, sidecar):
        os.utime(written, (stamp, stamp))
    return path


def _truncate(path: Path) -> None:
    """Keep the first half of a dump (and its mtime): what an interrupted upload leaves."""
    stat = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    os.utime(path, (stat.st_atime, stat.st_mtime))


def _one(conn: psycopg.Connection[Any], query: sql.Composed) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None  # an aggregate always returns a row
    return row[0]


def _with_db(dsn: str, dbname: str) -> str:
    """The same server's URL for another database (the sandbox's DSNs are ``postgresql://…/db``)."""
    return f"{dsn.rsplit('/', 1)[0]}/{dbname}"


def reader_dsn(admin_dsn: str, dbname: str) -> str:
    """The read-only role's URL for a member database (trust on loopback: no password)."""
    base = admin_dsn.rsplit("/", 1)[0]
    scheme, _, rest = base.partition("://")
    hostport = rest.rpartition("@")[2]
    return f"{scheme}://{READER_ROLE}@{hostport}/{dbname}"

