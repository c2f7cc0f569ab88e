"""The sandbox products' data: deterministic, fresh relative to the start, and broken only under --canary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks.schedules import schedule_followed
from checks.verdict import Outcome
from drills.sandbox import products
from drills.sandbox.services import Counter, exposition

NOW = datetime(2026, 11, 26, 9, 17, 42, tzinfo=UTC)
ANCHOR = datetime(2026, 11, 26, tzinfo=UTC)


def _rows(canary: bool = False, now: datetime = NOW) -> dict[str, list[tuple[object, ...]]]:
    generated = products._generate(anchor=ANCHOR, now=now, canary=canary)
    return {f"{schema}.{table}": records for schema, tables in generated.items()
            for table, (_, records) in tables.items()}


def _column(table: str, name: str, canary: bool = False) -> list[object]:
    generated = products._generate(anchor=ANCHOR, now=NOW, canary=canary)
    schema, _, short = table.partition(".")
    columns, records = generated[schema][short]
    index = columns.index(name)
    return [record[index] for record in records]


class TestDeterminism:
    def test_same_anchor_and_start_give_the_same_rows(self) -> None:
        assert _rows() == _rows()

    def test_another_day_gives_other_values(self) -> None:
        other = products._generate(anchor=ANCHOR + timedelta(days=1), now=NOW, canary=False)
        assert other["sentrascan"]["scans"] != products._generate(anchor=ANCHOR, now=NOW,
                                                                   canary=False)["sentrascan"]["scans"]

    def test_every_row_lies_in_the_past(self) -> None:
        """Seeded times never run ahead of the start (certificates' not_after aside)."""
        for table, column in (("sentrascan.scans", "updated_at"), ("scrydon.audit_log", "created_at"),
                              ("scrydon.license_heartbeats", "heartbeat_at"),
                              ("sovra.audit_events", "created_at"),
                              ("sovra.edge_nodes", "last_heartbeat_at")):
            assert max(_column(table, column)) <= NOW, table


class TestGreenShapes:
    def test_scan_ids_are_unique_and_no_scan_is_stuck(self) -> None:
        ids = _column("sentrascan.scans", "scan_id")
        assert len(ids) == len(set(ids))
        statuses = _column("sentrascan.scans", "scan_status")
        updated = _column("sentrascan.scans", "updated_at")
        running = [u for s, u in zip(statuses, updated, strict=True) if s == "running"]
        assert running and all(NOW - u < timedelta(hours=1) for u in running)

    def test_license_heartbeat_is_at_most_an_hour_old(self) -> None:
        assert NOW - max(_column("scrydon.license_heartbeats", "heartbeat_at")) <= timedelta(hours=1)

    def test_focus_events_stay_under_the_packs_weekly_limit(self) -> None:
        kinds = _column("scrydon.audit_log", "event_type")
        times = _column("scrydon.audit_log", "created_at")
        week = [k for k, t in zip(kinds, times, strict=True) if NOW - t <= timedelta(days=7)]
        assert len(week) >= 100
        assert sum(1 for k in week if str(k).endswith("_FAILED")) <= 30

    @pytest.mark.parametrize(("kind", "cron"), [
        ("cert.rotate", "0 2 * * *"), ("backup.completed", "0 3 * * *"),
        ("audit.export", "0 4 * * *"), ("health.check", "*/5 * * * *"),
    ])
    def test_sovra_cron_jobs_have_an_event_at_every_fire_time(self, kind: str, cron: str) -> None:
        kinds = _column("sovra.audit_events", "event_type")
        created = _column("sovra.audit_events", "created_at")
        times = [t for k, t in zip(kinds, created, strict=True) if k == kind]
        window = timedelta(hours=24) if kind == "health.check" else timedelta(days=7)
        verdict = schedule_followed(cron, times, now=NOW, window=window, tolerance=timedelta(minutes=2),
                                    what=kind)
        assert verdict.outcome is Outcome.PASSED, verdict.message


class TestCanary:
    def test_canary_adds_a_stuck_scan_and_a_duplicate_scan_id(self) -> None:
        ids = _column("sentrascan.scans", "scan_id", canary=True)
        assert len(ids) - len(set(ids)) == 1
        statuses = _column("sentrascan.scans", "scan_status", canary=True)
        updated = _column("sentrascan.scans", "updated_at", canary=True)
        assert any(s == "running" and NOW - u > timedelta(hours=5)
                   for s, u in zip(statuses, updated, strict=True))

    def test_canary_skips_last_nights_rotation_only(self) -> None:
        kinds = _column("sovra.audit_events", "event_type", canary=True)
        created = _column("sovra.audit_events", "created_at", canary=True)
        times = [t for k, t in zip(kinds, created, strict=True) if k == "cert.rotate"]
        verdict = schedule_followed("0 2 * * *", times, now=NOW, window=timedelta(days=7),
                                    tolerance=timedelta(minutes=30), what="rotation")
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["missing"] == ["2026-11-26T02:00:00+00:00"]

    def test_canary_stops_the_license_heartbeat_three_days_ago(self) -> None:
        newest = max(_column("scrydon.license_heartbeats", "heartbeat_at", canary=True))
        assert NOW - newest >= timedelta(days=3)


class TestClockEvents:
    def test_jobs_due_between_two_ticks_are_written_once(self) -> None:
        """The clock's windows (since, until] tile time: no event twice, none lost."""
        start = NOW - timedelta(hours=3)
        whole = products.sovra_job_events(start, NOW)
        pieces = []
        moment = start
        while moment < NOW:
            following = min(NOW, moment + timedelta(seconds=5))
            pieces += products.sovra_job_events(moment, following)
            moment = following
        assert sorted(pieces, key=lambda r: (r[3], r[0])) == sorted(whole, key=lambda r: (r[3], r[0]))


class TestExposition:
    def test_counters_grow_with_time_and_histogram_buckets_are_cumulative(self) -> None:
        text = exposition(counters=[Counter("x_total", {"code": "200"}, 2.0)], gauges=[("g", {}, 1.5)],
                          histogram=("h_seconds", 10.0, {0.1: 0.5, 1.0: 1.0}), elapsed_s=10.0)
        lines = text.splitlines()
        assert "# TYPE x_total counter" in lines
        assert 'x_total{code="200"} 172820.000' in lines
        assert "g 1.5" in lines
        buckets = [float(line.split()[-1]) for line in lines if line.startswith("h_seconds_bucket")]
        assert buckets == sorted(buckets) and buckets[-1] == 864_100.0


class TestPrometheusBinary:
    def test_a_missing_prometheus_binary_names_the_package(self, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """Without Debian's `prometheus`, the packs' Prometheus targets error with the remedy."""
        from checks.errors import EnvironmentError_
        from drills.sandbox.services import PrometheusServer

        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(EnvironmentError_) as caught:
            PrometheusServer(tmp_path / "prometheus", [], ca_file=None)
        assert "`prometheus` binary" in caught.value.message
        assert "Debian's `prometheus` package" in caught.value.hint
