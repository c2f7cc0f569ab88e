"""Content comparison of two databases, chunked by primary-key range.

Each side computes ``count(*)`` and the sum of ``hashtextextended(row::text)``
on the server, both sides at once: first for the whole table (one scan, the
common "identical" case), then, for a table that differs, per primary-key
range in one grouped scan. The client holds two numbers per range (at most
``max_ranges``), so memory does not depend on table size. The first differing
range is then bisected down to the first differing key.
Rows newer than a cutoff (the backup time) are excluded on both sides, so a
subject that kept growing after the backup still compares clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .postgres import pin_session
from .verdict import Verdict

ConnectionFactory = Callable[[], psycopg.Connection[Any]]

# At most this many key ranges per table: the client's memory bound, and the first-pass
# resolution at which a difference is located (bisection then finds the key).
DEFAULT_MAX_RANGES = 1024
_INTEGER_TYPES = {"int2", "int4", "int8"}

_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
ORDER BY 1, 2
"""

_PK_SQL = """
SELECT a.attname, t.typname
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
JOIN pg_type t ON t.oid = a.atttypid
WHERE i.indrelid = %s::regclass AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""

_COLUMN_SQL = """
SELECT 1 FROM pg_attribute
WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped AND attnum > 0
"""


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    digest: int

    def __str__(self) -> str:
        return f"{self.rows} rows, hash {self.digest & 0xFFFFFFFFFFFFFFFF:016x}"


@dataclass
class TableComparison:
    table: str
    key: str | None
    cutoff_column: str | None
    ranges: int = 0
    rows: int = 0
    differs: bool = False
    first_difference: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class _Side:
    """One database, one pinned connection."""

    def __init__(self, factory: ConnectionFactory) -> None:
        self.conn = factory()
        self.conn.autocommit = True
        pin_session(self.conn)

    def close(self) -> None:
        self.conn.close()

    def tables(self) -> list[str]:
        return [f"{s}.{t}" for s, t in self.conn.execute(_TABLES_SQL).fetchall()]

    def primary_key(self, table: str) -> tuple[str, str] | None:
        # Ranges of the leading key column partition the rows even for a composite key.
        rows = self.conn.execute(_PK_SQL, (_regclass(table),)).fetchall()
        if rows and rows[0][1] in _INTEGER_TYPES:
            return str(rows[0][0]), str(rows[0][1])
        return None

    def has_column(self, table: str, column: str) -> bool:
        return self.conn.execute(_COLUMN_SQL, (_regclass(table), column)).fetchone() is not None

    def bounds(self, table: str, key: str, where: sql.Composable) -> tuple[int, int] | None:
        query = sql.SQL("SELECT min({k}), max({k}) FROM {t} AS r WHERE {w}").format(
            k=sql.Identifier(key), t=_ident(table), w=where
        )
        row = self.conn.execute(query).fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def range_fingerprints(
        self, table: str, key: str, where: sql.Composable, low: int, width: int
    ) -> dict[int, Fingerprint]:
        """Count and hash per key range ``[low + i*width, low + (i+1)*width)``, in one scan."""
        query = sql.SQL(
            "SELECT ({k} - {lo}) / {w} AS bucket, count(*),"
            " coalesce(sum(hashtextextended(r::text, 0)), 0)::text"
            " FROM {t} AS r WHERE {where} GROUP BY 1"
        ).format(k=sql.Identifier(key), lo=sql.Literal(low), w=sql.Literal(width),
                 t=_ident(table), where=where)
        return {int(b): Fingerprint(int(n), int(h)) for b, n, h in self.conn.execute(query).fetchall()}

    def fingerprint(self, table: str, where: sql.Composable) -> Fingerprint:
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended(r::text, 0)), 0)::text"
            " FROM {t} AS r WHERE {w}"
        ).format(t=_ident(table), w=where)
        row = self.conn.execute(query).fetchone()
        assert row is not None  # an aggregate always returns a row
        return Fingerprint(int(row[0]), int(row[1]))


def _regclass(table: str) -> str:
    schema, name = table.split(".", 1)
    return sql.Identifier(schema, name).as_string(None)


def _ident(table: str) -> sql.Composable:
    schema, name = table.split(".", 1)
    return sql.Identifier(schema, name)


def compare_databases(
    subject: ConnectionFactory,
    restored: ConnectionFactory,
    *,
    cutoff: datetime | None,
    cutoff_columns: Sequence[str] = ("created_at",),
    tables: Sequence[str] | None = None,
    max_ranges: int = DEFAULT_MAX_RANGES,
) -> Verdict:
    """Rows that existed at ``cutoff`` are identical on both sides, table by table.

    ``cutoff_columns`` names the timestamp columns that date a row; the first
    one a table has is used. A table without any is compared whole.
    """
    started = time.perf_counter()
    sides: list[_Side] = []
    for label, factory in (("subject", subject), ("restored", restored)):
        try:
            sides.append(_Side(factory))
        except psycopg.Error as exc:
            for side in sides:
                side.close()
            return Verdict.error(
                "restore.content",
                f"cannot connect to the {label} database for the comparison: {str(exc).strip()}",
            )
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="compare")
    try:
        restored_tables = set(sides[1].tables())
        subject_tables = set(sides[0].tables())
        wanted = [_normalise(t) for t in tables] if tables else sorted(restored_tables)
        missing = sorted(t for t in wanted if t not in restored_tables)
        absent_in_subject = sorted(t for t in wanted if t not in subject_tables)
        results: list[TableComparison] = []
        for table in wanted:
            if table in missing or table in absent_in_subject:
                continue
            results.append(
                _compare_table(sides, pool, table, cutoff, cutoff_columns, max_ranges)
            )
    except psycopg.Error as exc:
        return Verdict.error("restore.content", f"content comparison could not run: {exc}".strip())
    finally:
        pool.shutdown(wait=True)
        for side in sides:
            side.close()

    elapsed = time.perf_counter() - started
    differing = [r for r in results if r.differs]
    evidence: dict[str, Any] = {
        "cutoff": cutoff.isoformat() if cutoff else None,
        "tables": {
            r.table: {"rows": r.rows, "key": r.key, "cutoff_column": r.cutoff_column,
                      "ranges": r.ranges, "seconds": round(r.seconds, 3),
                      **({"first_difference": r.first_difference} if r.differs else {})}
            for r in results
        },
        "missing_in_restore": missing,
        "missing_in_subject": absent_in_subject,
        "seconds": round(elapsed, 3),
    }
    rows = sum(r.rows for r in results)
    problems: list[str] = []
    if missing:
        problems.append(f"missing from the restore: {', '.join(missing)}")
    if absent_in_subject:
        problems.append(f"missing from the subject: {', '.join(absent_in_subject)}")
    for r in differing:
        problems.append(f"{r.table}: {_describe_difference(r)}")
    if not results and not problems:
        return Verdict.error("restore.content", "no tables to compare: an empty comparison proves nothing")
    if problems:
        return Verdict.failed(
            "restore.content",
            "restored data differs from the subject — " + "; ".join(problems),
            measured=f"{len(differing) + len(missing) + len(absent_in_subject)} tables differ",
            expected="identical rows older than the backup",
            evidence=evidence,
        )
    return Verdict.passed(
        "restore.content",
        f"{len(results)} tables, {rows} rows identical to the subject"
        + (f" (rows older than {cutoff.isoformat()})" if cutoff else ""),
        measured=f"{rows} rows identical",
        expected="identical rows older than the backup",
        evidence=evidence,
    )


def _normalise(table: str) -> str:
    return table if "." in table else f"public.{table}"


def _describe_difference(result: TableComparison) -> str:
    diff = result.first_difference
    if "first_key" in diff:
        return (f"first difference at {result.key} = {diff['first_key']} "
                f"(range {diff['range']}: subject {diff['subject']}, restored {diff['restored']})")
    return f"whole table differs (subject {diff['subject']}, restored {diff['restored']})"


def _compare_table(
    sides: list[_Side],
    pool: ThreadPoolExecutor,
    table: str,
    cutoff: datetime | None,
    cutoff_columns: Sequence[str],
    max_ranges: int,
) -> TableComparison:
    t0 = time.perf_counter()
    column = next((c for c in cutoff_columns if sides[1].has_column(table, c)), None)
    base: sql.Composable = sql.SQL("true")
    if cutoff is not None and column is not None:
        base = sql.SQL("{} < {}").format(sql.Identifier(column), sql.Literal(cutoff))
    pk = sides[1].primary_key(table)
    result = TableComparison(table=table, key=pk[0] if pk else None, cutoff_column=column)

    def both(where: sql.Composable) -> tuple[Fingerprint, Fingerprint]:
        futures = [pool.submit(side.fingerprint, table, where) for side in sides]
        return futures[0].result(), futures[1].result()

    if pk is None:
        subject_fp, restored_fp = both(base)
        result.ranges, result.rows = 1, restored_fp.rows
        if subject_fp != restored_fp:
            result.differs = True
            result.first_difference = {"subject": str(subject_fp), "restored": str(restored_fp)}
        result.seconds = time.perf_counter() - t0
        return result

    # The common case is "identical": one whole-table aggregate per side settles it at the
    # cost of a single scan. Only a table that differs pays for the per-range pass.
    subject_fp, restored_fp = both(base)
    result.rows = restored_fp.rows
    result.ranges = 1
    if subject_fp == restored_fp:
        result.seconds = time.perf_counter() - t0
        return result

    key = pk[0]
    bounds = [sides[0].bounds(table, key, base), sides[1].bounds(table, key, base)]
    present = [b for b in bounds if b is not None]
    if not present:
        result.seconds = time.perf_counter() - t0
        return result
    low = min(b[0] for b in present)
    high = max(b[1] for b in present)
    width = max(1, -(-(high - low + 1) // max_ranges))

    # One scan per side: the server groups rows into key ranges of `width` and returns
    # a count and a hash per range. The client holds at most `max_ranges` pairs, however
    # large the table; both sides run at once.
    futures = [pool.submit(side.range_fingerprints, table, key, base, low, width) for side in sides]
    subject_ranges, restored_ranges = futures[0].result(), futures[1].result()
    result.ranges = len(set(subject_ranges) | set(restored_ranges))
    empty = Fingerprint(0, 0)
    for bucket in sorted(set(subject_ranges) | set(restored_ranges)):
        sub_fp = subject_ranges.get(bucket, empty)
        res_fp = restored_ranges.get(bucket, empty)
        if sub_fp != res_fp:
            start = low + bucket * width
            stop = start + width
            result.differs = True
            result.first_difference = {
                "range": f"[{start}, {stop})",
                "first_key": _bisect(both, base, key, start, stop),
                "subject": str(sub_fp),
                "restored": str(res_fp),
            }
            break
    result.seconds = time.perf_counter() - t0
    return result


def _range(base: sql.Composable, key: str, start: int, stop: int) -> sql.Composable:
    return sql.SQL("{} AND {k} >= {lo} AND {k} < {hi}").format(
        base, k=sql.Identifier(key), lo=sql.Literal(start), hi=sql.Literal(stop)
    )


def _bisect(
    both: Callable[[sql.Composable], tuple[Fingerprint, Fingerprint]],
    base: sql.Composable,
    key: str,
    start: int,
    stop: int,
) -> int:
    """Narrow a differing range ``[start, stop)`` to its first differing key."""
    while stop - start > 1:
        middle = start + (stop - start) // 2
        left = both(_range(base, key, start, middle))
        if left[0] != left[1]:
            stop = middle
        else:
            start = middle
    return start
