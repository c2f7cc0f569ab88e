"""Replication lag that really is lag: a pg_basebackup standby whose WAL replay is paused.

The standby keeps receiving WAL (so it still shows as streaming) but applies
none of it: ``pg_stat_replication.replay_lag`` on the primary grows, and so
does the standby's own replay delay. The check, and the step in a
`drillbook run`, fail naming the lag and the limit; after replay resumes the
same check passes again. Every wait has a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks import pg_health
from checks.verdict import Outcome, format_duration
from drills.processes import PostgresServer
from tests.support.cli import drillbook

pytestmark = pytest.mark.integration

LIMIT = timedelta(seconds=1)
# Replay is paused until the primary sees at least this much lag: clearly above the limit.
PAUSED_LAG = 2 * LIMIT
DEADLINE_S = 30.0


def _replay_lag(conn: psycopg.Connection[Any]) -> timedelta | None:
    row = conn.execute("SELECT max(replay_lag) FROM pg_stat_replication").fetchone()
    return row[0] if row else None


def _caught_up(primary: psycopg.Connection[Any], standby: psycopg.Connection[Any]) -> bool:
    """The standby has replayed everything the primary has written so far."""
    row = primary.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None
    replayed = standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
    return bool(replayed and replayed[0])


def _resume_and_catch_up(writer: psycopg.Connection[Any], replica: psycopg.Connection[Any]) -> None:
    replica.execute("SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + DEADLINE_S
    while not _caught_up(writer, replica):
        assert time.monotonic() < deadline, f"the standby did not catch up within {DEADLINE_S:.0f}s"
        time.sleep(0.1)


@pytest.fixture
def paused_standby(primary: PostgresServer, standby: PostgresServer) -> Iterator[timedelta]:
    """Replay paused on the standby while the primary writes, until replay_lag exceeds PAUSED_LAG.

    Each write ships WAL; the standby's reply (received and flushed, not
    replayed) lets the walsender report the stuck replay position as growing
    lag. Yields the lag the primary reported; replay is resumed, and caught up,
    afterwards, whatever happened.
    """
    with psycopg.connect(primary.dsn(), autocommit=True) as writer, \
            psycopg.connect(standby.dsn(), autocommit=True) as replica:
        writer.execute("CREATE TABLE IF NOT EXISTS lag_probe "
                       "(id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            deadline = time.monotonic() + DEADLINE_S
            lag = _replay_lag(writer)
            while lag is None or lag <= PAUSED_LAG:
                assert time.monotonic() < deadline, (
                    f"replay_lag never exceeded {format_duration(PAUSED_LAG)} with replay paused "
                    f"within {DEADLINE_S:.0f}s (last seen: {lag})")
                writer.execute("INSERT INTO lag_probe DEFAULT VALUES")
                time.sleep(0.1)
                lag = _replay_lag(writer)
            yield lag
        finally:
            _resume_and_catch_up(writer, replica)


class TestReplicationLagOnARealStandby:
    def test_the_primary_fails_naming_the_replica_lag_and_limit(
            self, primary: PostgresServer, paused_standby: timedelta) -> None:
        """pg_stat_replication's replay_lag above the limit: failed, the replica and both durations named."""
        with pg_health.connect_read_only(primary.dsn(), label="`orders-primary`") as conn:
            verdict = pg_health.replication_lag(conn, max_lag=LIMIT, label="`orders-primary`")
        assert verdict.outcome is Outcome.FAILED, verdict.message
        assert verdict.message.startswith("`orders-primary`: replication lag above 1.0s")
        (replica,) = verdict.evidence["replicas"]
        assert replica["state"] == "streaming"  # still receiving: only the replay is behind
        assert replica["replay_lag_s"] > LIMIT.total_seconds()
        assert verdict.measured > LIMIT and verdict.expected == "<= 1.0s"
        # The lag shown is the one measured, as a person reads it ("2.3s").
        assert format_duration(verdict.measured) in verdict.message

    def test_the_standby_fails_with_its_own_replay_delay(
            self, standby: PostgresServer, paused_standby: timedelta) -> None:
        """On the standby itself: received but not replayed, its replay delay is above the limit."""
        with pg_health.connect_read_only(standby.dsn(), label="`orders-standby`") as conn:
            verdict = pg_health.replication_lag(conn, max_lag=LIMIT, label="`orders-standby`")
        assert verdict.outcome is Outcome.FAILED, verdict.message
        assert verdict.evidence["role"] == "standby" and verdict.evidence["lag_s"] > LIMIT.total_seconds()
        assert "(standby) replays" in verdict.message and "behind its primary, limit 1.0s" in verdict.message

    def test_the_step_fails_in_a_run(self, tmp_path: Path, primary: PostgresServer,
                                     paused_standby: timedelta) -> None:
        """`Then replication lag is at most 1s` in a `drillbook run` fails with the lag and the limit."""
        config = tmp_path / "drillbook.toml"
        config.write_text(f'[targets.orders]\nkind = "postgres"\ndsn = {json.dumps(primary.dsn())}\n')
        features = tmp_path / "features"
        features.mkdir()
        (features / "lag.feature").write_text(
            "Feature: Replication\n\n  @id:L-01 @daily @postgres\n  Scenario: the replica keeps up\n"
            '    Given the subject database "orders"\n    Then replication lag is at most 1s\n')
        proc = drillbook("run", "--config", str(config), "--features", str(features),
                         "--out", str(tmp_path / "out"), timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "postgres.replication_lag: `orders`" in proc.stdout
        assert "replication lag above 1.0s or not streaming" in proc.stdout

    def test_after_replay_resumes_the_lag_passes_again(
            self, primary: PostgresServer, standby: PostgresServer) -> None:
        """Once the standby has caught up, the same limit holds again (within the deadline)."""
        with pg_health.connect_read_only(primary.dsn(), label="p") as conn:
            deadline = time.monotonic() + DEADLINE_S
            verdict = pg_health.replication_lag(conn, max_lag=LIMIT, label="p")
            while verdict.outcome is not Outcome.PASSED:
                assert time.monotonic() < deadline, (
                    f"still lagging after {DEADLINE_S:.0f}s: {verdict.message}")
                time.sleep(0.2)
                verdict = pg_health.replication_lag(conn, max_lag=LIMIT, label="p")
        assert verdict.evidence["replicas"][0]["state"] == "streaming"
