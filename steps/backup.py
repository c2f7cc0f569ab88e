"""Backup steps: discover, restore into scratch, verify. Thin glue: parse, call, record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pytest_bdd import given, parsers, then, when

from checks.backups import backup_freshness, backup_retention, compile_key_pattern
from checks.compare import compare_databases
from checks.postgres import query_value, row_counts, unique_values
from checks.verdict import Verdict, format_duration, record
from drills import deadlines
from drills.deadlines import Deadline, Limit
from drills.physical import is_physical
from drills.restore import RestoreDrill, newest_in_store

from .context import PARSE_TYPES, ScenarioState, configured_timeout, step_texts
from .guard import guarded


def _table_rows(datatable: list[list[str]]) -> list[dict[str, str]]:
    header, *rows = datatable
    keys = [h.strip().lower() for h in header]
    return [dict(zip(keys, (c.strip() for c in row), strict=True)) for row in rows]


# The RTO sentence, parsed here only: by its step, and by the restore looking ahead for its deadline.
RTO_STEP = parsers.parse("the restore completes within {limit:Duration}", extra_types=PARSE_TYPES)


def restore_limit(request: pytest.FixtureRequest) -> Limit:
    """The restore's deadline: the scenario's RTO plus a margin, else ``[run] restore_timeout``.

    The RTO step comes after the restore, so the scenario's later sentences are read here.
    """
    for text in step_texts(request):
        if RTO_STEP.is_matching(text):
            return Limit.from_rto(RTO_STEP.parse_arguments(text)["limit"])
    return Limit.configured(configured_timeout(request, "restore_timeout"), key="restore_timeout",
                            default_s=deadlines.DEFAULT_RESTORE_TIMEOUT_S)


@given(parsers.parse('the backups in "{store}"'))
def backups_in(store: str, drillbook_env: Any, drill_state: ScenarioState) -> None:
    """Name the backup store (a target in the config or the sandbox) the scenario verifies."""
    drill_state.store = drillbook_env.store(store)


@given(parsers.parse('the backups in "{store}" of database "{database}"'))
def backups_of_database(store: str, database: str, drillbook_env: Any, drill_state: ScenarioState) -> None:
    """Name the store, and which database of a pg_dumpall backup to restore."""
    drill_state.store = drillbook_env.store(store)
    drill_state.database = database


@given(parsers.parse('the subject database "{name}"'))
def subject_database(name: str, drillbook_env: Any, drill_state: ScenarioState) -> None:
    """Name the live database the restored copy is compared with (read-only)."""
    drill_state.subject = drillbook_env.postgres(name)


@when("the newest backup is restored into a scratch database")
def restore_newest(drillbook_env: Any, drill_state: ScenarioState, request: pytest.FixtureRequest) -> None:
    """Discover, download (hashing), detect the format, restore into fresh scratch, first query."""
    store = _store(drill_state)
    limit = restore_limit(request)
    if is_physical(store.kind):
        from .physical import recover

        recover(drill_state, limit)
        return

    def restore() -> Verdict:
        drill = RestoreDrill(store, drillbook_env.scratch_postgres(), database=drill_state.database,
                             limit=limit)
        drill_state.drill = drill
        result = drill.run()
        drill_state.restored = result
        drill_state.backup_time = result.backup_time
        return Verdict.passed(
            "restore.completed",
            f"{result.backup.key} ({result.dump_format}) restored into a scratch database "
            f"in {format_duration(timedelta(seconds=result.rto_s))}",
            measured=round(result.rto_s, 3), expected="restores without error",
            evidence=result.evidence(),
        )

    guarded("restore.completed", restore)


@then(parsers.parse("the newest backup is at most {max_age:Duration} old", extra_types=PARSE_TYPES))
def newest_backup_age(max_age: timedelta, drill_state: ScenarioState) -> None:
    """RPO: the newest backup's age (from its key date or LastModified) is within the limit."""
    store = _store(drill_state)

    def check() -> Verdict:
        if store.kind == "pgbackrest":  # the newest set's stop time, from the tool's own metadata
            from .pgbackrest import pgbackrest_freshness

            return pgbackrest_freshness(store, max_age)
        taken = drill_state.backup_time
        if taken is None:
            _, taken, _ = newest_in_store(store)
            drill_state.backup_time = taken
        return backup_freshness(taken, now=datetime.now(UTC), max_age=max_age)

    guarded("backup.freshness", check)


@then("the backup matches its checksum file")
def backup_checksum(drill_state: ScenarioState) -> None:
    """The SHA-256 computed while downloading equals the sidecar the backup job wrote."""
    restored = drill_state.require_restore()
    if restored.checksum is None:
        record(Verdict.failed(
            "backup.checksum",
            f"no checksum file {restored.backup.key}{_store(drill_state).checksum_suffix} "
            f"next to the backup in {_store(drill_state).url}",
            evidence={"sha256": restored.sha256},
        ))
        return
    record(restored.checksum)


@then(RTO_STEP)
def restore_within(limit: timedelta, drill_state: ScenarioState) -> None:
    """RTO: download + restore + first successful query within the runbook's limit."""
    restored = drill_state.require_restore()
    rto = timedelta(seconds=restored.rto_s)
    record(Verdict.compare(
        "restore.rto", measured=rto, expected=f"<= {format_duration(limit)}", ok=rto <= limit,
        message=f"restore took {format_duration(rto)} (download + restore + first query), "
                f"limit {format_duration(limit)}",
        # limit_s: the limit as a number, for the fleet report's charts (reports/html/trends.py).
        evidence={"timings_s": {k: round(v, 3) for k, v in restored.timings.items()},
                  "limit_s": limit.total_seconds()},
    ))


def _within_query_timeout(check_id: str, request: pytest.FixtureRequest,
                          check: Callable[[Deadline], Verdict]) -> None:
    """Run a check whose connections carry the query deadline as ``statement_timeout``.

    A restored database is untrusted (a view or function in it may sleep) and a subject may be
    locked: the server itself cancels a statement past ``[run] query_timeout``, and the verdict is
    failed naming the limit and the time taken.
    """
    limit = Limit.configured(configured_timeout(request, "query_timeout"), key="query_timeout",
                             default_s=deadlines.DEFAULT_QUERY_TIMEOUT_S)
    deadline = limit.start()

    def action() -> Verdict:
        try:
            return check(deadline)
        except psycopg.errors.QueryCanceled:
            return Verdict.failed(
                check_id, deadline.expiry_message("query", check_id) + " (the server's statement_timeout)",
                measured=round(deadline.elapsed(), 3), expected=f"<= {limit.describe()}",
            )

    guarded(check_id, action)


def _connect(dsn: str, deadline: Deadline) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, connect_timeout=10, options=deadline.libpq_options())


@then("the restored tables hold at least these rows:")
def restored_row_counts(datatable: list[list[str]], drill_state: ScenarioState,
                        request: pytest.FixtureRequest) -> None:
    """Per-table minimum row counts, from the feature's table (| table | rows |)."""
    restored = drill_state.require_restore()
    assert restored.target is not None
    dsn = restored.target.dsn
    minimums = {row["table"]: int(row["rows"].replace(",", "")) for row in _table_rows(datatable)}

    def check(deadline: Deadline) -> Verdict:
        with _connect(dsn, deadline) as conn:
            return row_counts(conn, minimums)

    _within_query_timeout("postgres.row_counts", request, check)


@then(parsers.re(
    r'the query "(?P<query>.+)" returns '
    r"(?P<comparison>more than|at least|exactly|at most|less than) (?P<value>-?\d+(?:\.\d+)?)"
))
def restored_query(query: str, comparison: str, value: str, drill_state: ScenarioState,
                   request: pytest.FixtureRequest) -> None:
    """The runbook's documented query, run on the restored copy."""
    restored = drill_state.require_restore()

    def check(deadline: Deadline) -> Verdict:
        with _connect(restored.target.dsn, deadline) as conn:  # type: ignore[union-attr]
            return query_value(conn, query, comparison=comparison, value=float(value))

    _within_query_timeout("postgres.query", request, check)


@then(parsers.parse('"{table}" has no duplicate "{column}"'))
def restored_unique(table: str, column: str, drill_state: ScenarioState,
                    request: pytest.FixtureRequest) -> None:
    """Integrity: COUNT(*) equals COUNT(DISTINCT column) in the restored copy."""
    restored = drill_state.require_restore()

    def check(deadline: Deadline) -> Verdict:
        with _connect(restored.target.dsn, deadline) as conn:  # type: ignore[union-attr]
            return unique_values(conn, table, column)

    _within_query_timeout("postgres.unique", request, check)


@then("every row older than the backup matches the subject")
def restored_matches_subject(drill_state: ScenarioState, request: pytest.FixtureRequest) -> None:
    """Content comparison: rows dated before the backup are identical in subject and restore."""
    _compare(drill_state, request, tables=None)


@then("these tables match the subject for rows older than the backup:")
def restored_tables_match(datatable: list[list[str]], drill_state: ScenarioState,
                          request: pytest.FixtureRequest) -> None:
    """Content comparison of the listed tables (| table |), dated by `created_at` when present."""
    _compare(drill_state, request, tables=[row["table"] for row in _table_rows(datatable)])


def _compare(drill_state: ScenarioState, request: pytest.FixtureRequest, *, tables: list[str] | None) -> None:
    restored = drill_state.require_restore()
    subject = drill_state.subject
    if subject is None:
        raise LookupError('name the subject first: `Given the subject database "NAME"`')
    target = restored.target
    assert target is not None

    def check(deadline: Deadline) -> Verdict:
        return compare_databases(
            lambda: _connect(subject.dsn, deadline),
            lambda: _connect(target.dsn, deadline),
            cutoff=restored.backup_time,
            tables=tables,
        )

    _within_query_timeout("restore.content", request, check)


@then(parsers.parse("there is one backup per day for the last {days:d} days"))
def one_per_day(days: int, drill_state: ScenarioState) -> None:
    """Retention, first half: no calendar day without a backup."""
    _retention(drill_state, days=days, max_age=None)


@then(parsers.parse("no backup is older than {max_age:Duration}", extra_types=PARSE_TYPES))
def none_older_than(max_age: timedelta, drill_state: ScenarioState) -> None:
    """Retention, second half: what the retention policy should have deleted is gone."""
    _retention(drill_state, days=0, max_age=max_age)


def _retention(drill_state: ScenarioState, *, days: int, max_age: timedelta | None) -> None:
    store = _store(drill_state)

    def check() -> Verdict:
        _, _, objects = newest_in_store(store)
        pattern = compile_key_pattern(store.key_pattern) if store.key_pattern else None
        times = []
        for obj in objects:
            taken = pattern.parse(obj.key) if pattern else obj.last_modified
            if taken is not None:
                times.append(taken)
        return backup_retention(times, now=datetime.now(UTC), days=days, max_age=max_age)

    guarded("backup.retention", check)


def _store(drill_state: ScenarioState) -> Any:
    if drill_state.store is None:
        raise LookupError('name the store first: `Given the backups in "NAME"`')
    return drill_state.store
