"""Database growth end to end: two `drillbook run`s into one out directory against a real PostgreSQL.

The first run has nothing to compare with (not applicable, its size kept as
evidence); rows are inserted; the second run measures growth per day against
the first run's size: within a generous limit it passes, beyond a tight one it
fails naming the database, the growth and the limit. A corrupt results.json
between the two runs is skipped and named, never fatal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drills.processes import PostgresServer
from tests.support.cli import drillbook

pytestmark = pytest.mark.integration

DATABASE = "orders"
FEATURE = """\
Feature: Database growth

  @id:G-01 @daily @postgres
  Scenario: growth within the capacity plan
    Given the subject database "orders-db"
    Then the database is smaller than 1 GB
    And the database grew by at most 10 TB per day since the last run

  @id:G-02 @daily @postgres
  Scenario: growth beyond a tight limit
    Given the subject database "orders-db"
    Then the database grew by at most 1 MB per day since the last run
"""


def _run(config: Path, features: Path, out: Path) -> tuple[Any, Path, dict[str, Any]]:
    before = {p.name for p in out.iterdir()} if out.exists() else set()
    proc = drillbook("run", "--config", str(config), "--features", str(features), "--out", str(out),
                     timeout=180)
    (run_dir,) = [p for p in out.iterdir()
                  if p.name not in before and p.is_dir() and not p.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())
    return proc, run_dir, {s["id"]: s for s in results["scenarios"]}


def _growth(scenario: dict[str, Any]) -> dict[str, Any]:
    (verdict,) = [v for v in scenario["verdicts"] if v["id"] == "postgres.growth"]
    return verdict  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, primary: PostgresServer) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("growth-runs")
    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    config = base / "drillbook.toml"
    config.write_text(f'[targets.orders-db]\nkind = "postgres"\ndsn = {json.dumps(primary.dsn(DATABASE))}\n')
    features = base / "features"
    features.mkdir()
    (features / "growth.feature").write_text(FEATURE)
    out = base / "out"

    first = _run(config, features, out)
    with psycopg.connect(primary.dsn(DATABASE), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, payload text NOT NULL)")
        # ~8 MB of heap (storage plain: no compression, no TOAST) that the second run must see.
        conn.execute("ALTER TABLE orders ALTER COLUMN payload SET STORAGE PLAIN")
        conn.execute("INSERT INTO orders (payload) SELECT repeat(md5(g::text), 30) "
                     "FROM generate_series(1, 8000) AS g")
        conn.execute("CHECKPOINT")
    broken = out / "20000101T000000Z-broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"run_id": "truncated", "scenar')
    second = _run(config, features, out)
    return {"first": first, "second": second, "broken": broken / "results.json"}


class TestDatabaseGrowthAcrossRuns:
    def test_the_first_run_records_the_size_and_is_not_applicable(self, two_runs: dict[str, Any]) -> None:
        """Nothing to compare with: not applicable with the reason; the run passes (exit 0)."""
        proc, _, scenarios = two_runs["first"]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for ident in ("G-01", "G-02"):
            verdict = _growth(scenarios[ident])
            assert verdict["outcome"] == "not_applicable"
            assert "first measurement: recorded" in verdict["message"]
            assert "growth is checked from the next run" in verdict["message"]
            assert verdict["evidence"]["bytes"] > 0 and verdict["evidence"]["database"] == DATABASE

    def test_the_second_run_measures_growth_against_the_first(self, two_runs: dict[str, Any]) -> None:
        """Growth per day = (size now - size then) / elapsed days, then = the first run's size."""
        _, first_dir, first = two_runs["first"]
        _, _, second = two_runs["second"]
        verdict = _growth(second["G-01"])
        assert second["G-01"]["outcome"] == "passed", verdict["message"]
        evidence = verdict["evidence"]
        before = _growth(first["G-01"])["evidence"]["bytes"]
        assert evidence["previous"]["run_id"] == first_dir.name
        assert evidence["previous"]["bytes"] == before
        assert evidence["bytes"] - before > 4 * 1024**2  # the inserted rows
        days = evidence["elapsed_s"] / 86_400
        assert evidence["growth_bytes_per_day"] == round((evidence["bytes"] - before) / days)
        assert "grew by" in verdict["message"] and "limit 10 TB per day" in verdict["message"]

    def test_growth_beyond_the_limit_fails_naming_database_growth_and_limit(
            self, two_runs: dict[str, Any]) -> None:
        proc, _, second = two_runs["second"]
        assert proc.returncode == 1, proc.stdout + proc.stderr
        verdict = _growth(second["G-02"])
        assert second["G-02"]["outcome"] == "failed"
        assert f"database {DATABASE} grew by" in verdict["message"]
        assert "per day" in verdict["message"] and "limit 1.0 MB per day" in verdict["message"]
        assert "`orders-db`" in verdict["message"]
        assert "G-02" in proc.stdout and f"database {DATABASE} grew by" in proc.stdout

    def test_a_corrupt_earlier_results_file_is_skipped_and_named(self, two_runs: dict[str, Any]) -> None:
        _, _, second = two_runs["second"]
        evidence = _growth(second["G-01"])["evidence"]
        (named,) = evidence["unreadable_results"]
        assert str(two_runs["broken"]) in named
        assert "2 earlier run(s)" not in evidence["searched"]  # the broken one is not a run
        assert "1 earlier run(s)" in evidence["searched"]
