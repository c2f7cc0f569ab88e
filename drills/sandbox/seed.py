"""The sandbox product's schema and its deterministic, append-only data.

Every row is a pure function of (anchor, row number): its ``created_at`` and
its values come from ``hashtextextended(<table>:<row>, <anchor day>)``
computed server-side over ``generate_series``. That makes the data
independent of how it is inserted: seeding up to T in one statement, or in
35 steps with a backup between each, gives the same rows. (``setseed()`` +
``random()`` would tie the values to the order and chunking of the inserts,
which would break "a backup taken at T equals the subject restricted to
``created_at < T``".)

The rows span a fixed horizon: from ``anchor - 56 days`` to ``anchor + 1 day``;
:func:`seed` inserts those with ``since <= created_at < until``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SCHEMA_VERSION_TABLE = "drillbook_schema_version"
HISTORY_BEFORE_ANCHOR = timedelta(days=56)
HISTORY_AFTER_ANCHOR = timedelta(days=1)

# Rows over the whole horizon (order_items: 1 to 3 per order, about 2 on average).
ACCOUNTS = 1_000
PRODUCTS = 200
ORDERS = 6_000
ITEMS_PER_ORDER_MAX = 3
SIGNATURES = 2_500
SCANS = 1_500
AUDIT_EVENTS = 9_000

# Tables of the product, parents first (the order in which they are filled).
TABLES = ("accounts", "products", "orders", "order_items", "signatures", "scans", "audit_events")


# The nightly backup runs at 02:00 UTC (the runbooks' cron); a day's product is built after it.
NIGHTLY_AT = timedelta(hours=2)


def anchor_for(now: datetime) -> datetime:
    """The seeding anchor for ``now``: 00:00 UTC of the day of the last 02:00 backup.

    Before 02:00 the anchor is the previous day, so the newest backup is always
    the last night's one (at most 24 h old), as on a real system.
    """
    day = (now.astimezone(UTC) - NIGHTLY_AT).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def horizon(anchor: datetime) -> tuple[datetime, datetime]:
    """First and last instant (exclusive) that seeded rows can carry."""
    return anchor - HISTORY_BEFORE_ANCHOR, anchor + HISTORY_AFTER_ANCHOR


def migration_files() -> list[Path]:
    """The migrations in the order they are applied (``0001_*.sql``, ``0002_*.sql``...)."""
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def migrations_digest() -> str:
    """SHA-256 over the migration files' names and contents (part of the cache key)."""
    digest = hashlib.sha256()
    for path in migration_files():
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def apply_migrations(dsn: str, *, anchor: datetime) -> list[str]:
    """Apply every pending migration, one psycopg session and transaction each.

    Applied versions are recorded in ``drillbook_schema_version``. The anchor
    is handed to the migrations as the ``drillbook.anchor`` setting (the
    orders partitions are laid out around it). Returns the names applied.
    """
    start, _ = horizon(anchor)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY, name text NOT NULL,"
            " sha256 text NOT NULL, created_at timestamptz NOT NULL)"
        ).format(sql.Identifier(SCHEMA_VERSION_TABLE)))
        done = {int(row[0]) for row in conn.execute(
            sql.SQL("SELECT id FROM {}").format(sql.Identifier(SCHEMA_VERSION_TABLE)))}
    applied = []
    for path in migration_files():
        version = int(path.name.split("_", 1)[0])
        if version in done:
            continue
        text = path.read_text(encoding="utf-8")
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute("SELECT set_config('drillbook.anchor', %s, true)", (anchor.date().isoformat(),))
            # A whole file is one simple-query call: no parameters, several statements.
            conn.execute(text.encode())
            # The recorded time is the horizon start, not the wall clock: the same
            # anchor gives the same table content, and every backup includes these rows.
            conn.execute(
                sql.SQL("INSERT INTO {} (id, name, sha256, created_at) VALUES (%s, %s, %s, %s)")
                .format(sql.Identifier(SCHEMA_VERSION_TABLE)),
                (version, path.name, hashlib.sha256(text.encode()).hexdigest(), start),
            )
        applied.append(path.name)
    return applied


def _h(salt: str, row: str = "s.i") -> str:
    """SQL for a deterministic pseudo-random bigint for one row (seeded by the anchor day)."""
    return f"hashtextextended('{salt}:' || {row}, %(seed)s::bigint)"


def _pick(salt: str, n: int | str, row: str = "s.i") -> str:
    """SQL for a deterministic integer in [0, n)."""
    return f"abs(mod({_h(salt, row)}, {n}))"


def _spread(n: int, *, offset_s: int, span_s: int, salt: str) -> str:
    """SQL subquery numbering ``n`` rows with increasing ``ts`` spread over the horizon.

    Row i falls in its own slot [offset + (i-1)*step, offset + i*step), so
    ``ts`` grows with ``i`` and a parent row always precedes its children.
    """
    step = (span_s - offset_s) // n
    return (
        f"(SELECT g.i, %(start)s::timestamptz + ({offset_s} + (g.i - 1) * {step}"
        f" + abs(mod(hashtextextended('{salt}:ts:' || g.i, %(seed)s::bigint), {step})))"
        f" * interval '1 second' AS ts FROM generate_series(1, {n}) AS g(i)) AS s"
    )


def _account_for(salt: str, account_step_s: int) -> str:
    """SQL for an account id among the accounts already created at ``s.ts``."""
    existing = (f"LEAST({ACCOUNTS}, (extract(epoch FROM s.ts - %(start)s::timestamptz)::bigint"
                f" / {account_step_s}) + 1)")
    return f"1 + {_pick(salt + ':account', existing)}"


_WINDOW = " WHERE s.ts >= %(lo)s AND s.ts < %(hi)s ORDER BY s.i"


def _statements(span_s: int) -> dict[str, str]:
    """The INSERT for each table, parameterised by start, seed and the [lo, hi) window."""
    account_step = span_s // ACCOUNTS
    order_offset = 3_600  # the catalogue exists an hour before the first order
    orders = _spread(ORDERS, offset_s=order_offset, span_s=span_s, salt="orders")
    return {
        "accounts": (
            "INSERT INTO accounts (id, email, name, plan, created_at)"
            " SELECT s.i, 'user' || s.i || '@example.test',"
            " (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Ken','Radia','Linus','Margaret','Donald'])"
            f"[1 + {_pick('accounts:first', 10)}] || ' ' ||"
            " (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Thompson','Perlman','Torvalds',"
            f"'Hamilton','Knuth'])[1 + {_pick('accounts:last', 10)}],"
            f" (ARRAY['free','team','business','enterprise'])[1 + {_pick('accounts:plan', 4)}], s.ts"
            f" FROM (SELECT g.i, %(start)s::timestamptz + (g.i - 1) * {account_step} * interval '1 second'"
            f" AS ts FROM generate_series(1, {ACCOUNTS}) AS g(i)) AS s" + _WINDOW
        ),
        "products": (
            "INSERT INTO products (id, sku, name, price_cents, created_at)"
            " SELECT s.i, 'SKU-' || lpad(s.i::text, 5, '0'),"
            " (ARRAY['Widget','Gadget','Sprocket','Gizmo','Doohickey'])"
            f"[1 + {_pick('products:name', 5)}] || ' ' || s.i,"
            f" 100 + {_pick('products:price', 99_900)}, s.ts"
            f" FROM (SELECT g.i, %(start)s::timestamptz + (g.i - 1) * interval '1 second' AS ts"
            f" FROM generate_series(1, {PRODUCTS}) AS g(i)) AS s" + _WINDOW
        ),
        "orders": (
            "INSERT INTO orders (id, account_id, status, total_cents, created_at)"
            f" SELECT s.i, {_account_for('orders', account_step)},"
            f" (ARRAY['paid','paid','shipped','shipped','shipped','cancelled','refunded'])"
            f"[1 + {_pick('orders:status', 7)}], 500 + {_pick('orders:total', 50_000)}, s.ts"
            f" FROM {orders}" + _WINDOW
        ),
        "order_items": (
            "INSERT INTO order_items (id, order_id, order_created_at, product_id, quantity,"
            " unit_price_cents, created_at)"
            f" SELECT (s.i - 1) * {ITEMS_PER_ORDER_MAX} + k.k, s.i, s.ts,"
            f" 1 + {_pick('items:product', PRODUCTS, row=_item_row())},"
            f" 1 + {_pick('items:qty', 5, row=_item_row())},"
            f" 100 + {_pick('items:price', 20_000, row=_item_row())}, s.ts"
            f" FROM {orders} CROSS JOIN generate_series(1, {ITEMS_PER_ORDER_MAX}) AS k(k)"
            " WHERE s.ts >= %(lo)s AND s.ts < %(hi)s"
            f" AND (k.k = 1 OR {_pick('items:present', 2, row=_item_row())} = 0)"
            " ORDER BY s.i, k.k"
        ),
        "signatures": (
            "INSERT INTO signatures (id, account_id, artifact, digest_sha256, algorithm, key_id, created_at)"
            f" SELECT s.i, {_account_for('signatures', account_step)},"
            f" 'aureus-sentinel-1.' || {_pick('signatures:minor', 40)} || '.' || s.i || '.tar.gz',"
            " encode(sha256(convert_to('signature:' || s.i || ':' || %(seed)s::bigint, 'UTF8')), 'hex'),"
            f" (ARRAY['ecdsa-p256-sha256','ed25519'])[1 + {_pick('signatures:alg', 2)}],"
            f" 'key-' || {_pick('signatures:key', 8)}, s.ts"
            f" FROM {_spread(SIGNATURES, offset_s=1_800, span_s=span_s, salt='signatures')}" + _WINDOW
        ),
        "scans": (
            "INSERT INTO scans (id, scan_id, account_id, target, status, findings, created_at)"
            " SELECT s.i, md5('scan:' || s.i || ':' || %(seed)s::bigint)::uuid,"
            f" {_account_for('scans', account_step)},"
            f" 'registry.example.test/app-' || {_pick('scans:target', 50)} || ':' || s.i,"
            f" (ARRAY['completed','completed','completed','completed','failed','running','queued'])"
            f"[1 + {_pick('scans:status', 7)}], {_pick('scans:findings', 30)}, s.ts"
            f" FROM {_spread(SCANS, offset_s=1_800, span_s=span_s, salt='scans')}" + _WINDOW
        ),
        "audit_events": (
            "INSERT INTO audit_events (id, account_id, action, detail, created_at)"
            f" SELECT s.i, {_account_for('audit', account_step)},"
            " (ARRAY['login','logout','order.create','order.refund','key.rotate','scan.start','export'])"
            f"[1 + {_pick('audit:action', 7)}],"
            f" jsonb_build_object('ip', '10.0.' || {_pick('audit:ip3', 256)} || '.' ||"
            f" {_pick('audit:ip4', 256)}, 'request', 'req-' || s.i), s.ts"
            f" FROM {_spread(AUDIT_EVENTS, offset_s=600, span_s=span_s, salt='audit')}" + _WINDOW
        ),
    }


def _item_row() -> str:
    return "(s.i || ':' || k.k)"


@dataclass(frozen=True)
class SeedWindow:
    """Rows inserted per table for one ``[since, until)`` window."""

    since: datetime
    until: datetime
    rows: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def seed(dsn: str, *, anchor: datetime, until: datetime, since: datetime | None = None) -> SeedWindow:
    """Insert the rows whose ``created_at`` lies in ``[since, until)`` (default since: the start).

    Same anchor and window ⇒ the same rows, whatever was inserted before:
    call it with consecutive windows to grow a database over time.
    """
    start, end = horizon(anchor)
    lo = max(since or start, start)
    hi = min(until, end)
    params = {"start": start, "seed": anchor.date().toordinal(), "lo": lo, "hi": hi}
    rows: dict[str, int] = {}
    statements = _statements(int((end - start).total_seconds()))
    with psycopg.connect(dsn) as conn, conn.transaction():
        for table in TABLES:
            cur = conn.execute(statements[table].encode(), params)
            rows[table] = cur.rowcount
    return SeedWindow(since=lo, until=hi, rows=rows)


def pin_session(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Pin the settings ``row::text`` depends on, so fingerprints compare across servers."""
    for setting, value in (("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("IntervalStyle", "postgres"),
                           ("extra_float_digits", "1"), ("bytea_output", "hex")):
        conn.execute("SELECT set_config(%s, %s, false)", (setting, value))


def fingerprint(dsn: str) -> dict[str, tuple[int, int]]:
    """(row count, order-independent content hash) of every product table."""
    result: dict[str, tuple[int, int]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        pin_session(conn)
        for table in (*TABLES, SCHEMA_VERSION_TABLE):
            row = conn.execute(sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {} AS t"
            ).format(sql.Identifier(table))).fetchone()
            count, content = row if row is not None else (0, 0)  # an aggregate returns one row
            result[table] = (int(count), int(content))
    return result
