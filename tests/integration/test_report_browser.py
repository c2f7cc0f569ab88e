"""The HTML compliance report as a browser shows it: rendered by headless Chromium.

These tests render a realistic run (ten scenarios, every outcome, long evidence),
take a screenshot and a DOM dump, and check what an auditor would see: a page that
is not blank, the failed badge in its colour, and every scenario by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks import redact
from checks.verdict import Outcome, Verdict
from reports.html import render_html_report, write_html_report
from reports.results import RunResult, ScenarioResult, StepResult
from tests.support.browser import chromium_available, dump_dom, png_size, read_png, screenshot
from tests.support.fleet_runs import fleet_history, fleet_run

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="/usr/bin/chromium is not installed"),
]

WIDTH, HEIGHT = 1280, 2000
BACKGROUND = (255, 255, 255)
FAILED_BADGE = (0xB9, 0x1C, 0x1C)  # --fail in report.html.j2
SECRET = "hunter2-Sup3rS3cret"
T0 = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)


def _scenario(index: int, name: str, path: str, tags: list[str], verdicts: list[Verdict], *,
              description: str = "", failure: str | None = None) -> ScenarioResult:
    steps = [
        StepResult("Given", f"the environment for {name.lower()}", "passed", 0.1),
        StepResult("When", "the drill runs", "passed", 2.0),
        StepResult("Then", "the result holds",
                   "failed" if any(v.counts_as_fail() for v in verdicts) or failure else "passed", 0.2),
    ]
    return ScenarioResult(
        nodeid=f"test_drillbook_features.py::test_scenario_{index}",
        feature=path.rsplit("/", 1)[-1].removesuffix(".feature").replace("_", " ").capitalize(),
        feature_path=path, scenario=name, description=description, tags=tags, verdicts=verdicts,
        steps=steps, failure=failure, started_at=(T0 + timedelta(minutes=index)).isoformat(),
        duration_s=3.0 + index,
    )


def _verdict(id: str, outcome: Outcome, message: str, **kw: object) -> Verdict:
    return Verdict(id, outcome, message, started_at=T0, duration_s=0.5, **kw)  # type: ignore[arg-type]


def realistic_run() -> RunResult:
    """Ten scenarios across areas and packs, every outcome, long evidence, a secret."""
    long_listing = {f"s3://nightly/pg/2025-03-{day:02d}.dump": {"size": 1_048_576 * day, "sha256": "ab" * 32}
                    for day in range(1, 15)}
    scenarios = [
        _scenario(1, "Yesterday's backup restores into a scratch database",
                  "features/backup/restore_from_yesterday.feature",
                  ["id:BKP-01", "monthly", "postgres", "impact:high", "ref:ISO27001-A.8.13"],
                  [_verdict("restore.rto", Outcome.FAILED, "restore took 41m 10s, expected <= 30m",
                            measured=timedelta(minutes=41, seconds=10), expected="<= 30m",
                            evidence={"backup": "s3://nightly/pg/2025-03-13.dump",
                                      "dsn": f"postgresql://drill:{SECRET}@10.0.0.5/scratch",
                                      "tables": 212}),
                   _verdict("restore.rows", Outcome.PASSED, "row counts match on 212 tables",
                            measured=212, expected=212)],
                  description="An unrestorable backup is no backup; "
                              "a pass proves RPO <= 26h and RTO <= 30m."),
        _scenario(2, "Nightly backups are fresh", "features/backup/freshness_and_retention.feature",
                  ["id:BKP-02", "daily", "s3", "ref:ISO27001-A.8.13", "ref:SOC2-A1.2"],
                  [_verdict("backup.freshness", Outcome.PASSED, "newest backup is 7h 12m old",
                            measured=timedelta(hours=7, minutes=12), expected="<= 26h",
                            evidence={"objects": long_listing})],
                  description="A backup older than a day means the nightly job silently stopped."),
        _scenario(3, "Backups are kept for 35 days", "features/backup/freshness_and_retention.feature",
                  ["id:BKP-03", "weekly", "s3", "ref:ISO27001-A.8.13"],
                  [_verdict("backup.retention", Outcome.WAIVED,
                            "oldest backup is 21 days old, expected >= 35 days",
                            measured=21, expected=">= 35",
                            evidence={"waiver": "WVR-2025-004", "approved_by": "CISO Zoë Ångström",
                                      "expires": "2025-06-30", "reason": "bucket migrated on 2025-02-21"})],
                  description="Retention covers the longest time a corruption may go unnoticed."),
        _scenario(4, "Replication lag stays within the warning band", "features/health/replication.feature",
                  ["id:HLT-01", "continuous", "postgres"],
                  [_verdict("postgres.replication_lag", Outcome.WARNING,
                            "lag 4.2s is in the 1s–10s warning band",
                            measured=4.2, expected="<= 1s (warn <= 10s)")],
                  description="Lag is data a failover would lose."),
        _scenario(5, "Redis snapshot loads into a scratch server", "features/backup/redis_snapshot.feature",
                  ["id:BKP-04", "monthly", "redis"],
                  [_verdict("redis.rdb_load", Outcome.ERROR, "could not reach redis-scratch:6379 within 10s",
                            evidence={"error": "StoreUnreachable", "hint": "start the scratch Redis"})],
                  description="Sessions and queues live in Redis; a snapshot that does not load loses them."),
        _scenario(6, "Release artifacts are signed", "features/supply_chain/signatures.feature",
                  ["id:SUP-01", "weekly", "pre-upgrade", "ref:SLSA-L2"],
                  [_verdict("signatures.release", Outcome.PASSED, "12 of 12 artifacts verify",
                            measured=12, expected=12)],
                  description="An unsigned artifact could have been swapped after the build."),
        _scenario(7, "SBOM lists no component with a known critical CVE",
                  "features/supply_chain/sbom.feature", ["id:SUP-02", "quarterly", "ref:NIST-SSDF-PW.4"],
                  [_verdict("sbom.critical_cves", Outcome.NOT_APPLICABLE,
                            "no SBOM is published for this release line (3.x predates SBOMs)")],
                  description="Critical CVEs in shipped components are the auditor's first question."),
        _scenario(8, "Schema migrations replay cleanly", "features/migrations/replay.feature",
                  ["id:MIG-01", "annually", "postgres"], [],
                  description="A migration that only works once cannot be rolled forward after a restore.",
                  failure="KeyError: 'schema_version'\n  File \"steps/migrations.py\", line 31, in replay"),
        _scenario(9, "Acme billing exports reconcile with the ledger",
                  "features/packs/acme_billing/export.feature",
                  ["id:ACME-01", "monthly", "ref:SOX-ITGC-04"],
                  [_verdict("acme.export_rows", Outcome.PASSED, "48 213 rows reconcile",
                            measured=48213, expected=48213)],
                  description="Billing exports feed the financial close."),
        _scenario(10, "Acme health endpoint answers within 300 ms",
                  "features/packs/acme_billing/health.feature",
                  ["id:ACME-02", "continuous", "daily", "http"],
                  [_verdict("http.latency", Outcome.FAILED, "p95 latency 812 ms, expected <= 300 ms",
                            measured=0.812, expected="<= 0.3",
                            evidence={"url": "https://billing.acme.internal/healthz", "samples": 20,
                                      "<script>": "<script>alert(1)</script>"})],
                  description="The load balancer drops nodes slower than 1 s; 300 ms leaves headroom."),
    ]
    return RunResult(
        run_id="20250314T020000Z-7f3a", started_at=T0.isoformat(),
        finished_at=(T0 + timedelta(minutes=14, seconds=3)).isoformat(), drillbook_version="0.1.0",
        user="ops-bot", host="drill-runner-02", environment="live",
        environment_details={"postgres": "pg-prod-replica.internal:5432", "redis": "redis-scratch:6379",
                             "s3": "s3://nightly"},
        config_path="/etc/drillbook/drillbook.toml", command="drillbook run --cadence monthly",
        strict=False, scenarios=scenarios,
    )


@pytest.fixture
def secret() -> Iterator[str]:
    redact.register(SECRET)
    yield SECRET
    redact.clear()


@pytest.fixture
def report(tmp_path: Path, secret: str) -> Path:
    return write_html_report(realistic_run(), tmp_path / "report.html")


class TestReportInChromium:
    def test_screenshot_has_the_requested_size(self, report: Path, tmp_path: Path) -> None:
        """Chromium renders the file to a PNG of exactly the window size."""
        png = screenshot(report, tmp_path / "report.png", width=WIDTH, height=HEIGHT)
        assert png.is_file()
        assert png_size(png) == (WIDTH, HEIGHT)

    def test_screenshot_is_not_blank_and_shows_the_failed_colour(self, report: Path, tmp_path: Path) -> None:
        """A real page was drawn, and the red FAILED colour appears on it."""
        image = read_png(screenshot(report, tmp_path / "report.png", width=WIDTH, height=HEIGHT))
        assert (image.width, image.height) == (WIDTH, HEIGHT)
        pixels = [pixel for row in image.rows for pixel in row]
        drawn = sum(1 for pixel in pixels if pixel != BACKGROUND)
        assert drawn / len(pixels) > 0.05, f"only {drawn} of {len(pixels)} pixels differ from white"
        red_rows = [y for y, row in enumerate(image.rows) if FAILED_BADGE in row]
        # The FAIL banner at the top and the failed badges further down.
        assert red_rows, "the failed colour appears nowhere"
        assert red_rows[0] < 200, "the overall FAIL banner is not at the top"
        assert max(red_rows) > 400, "no failed badge below the banner"

    def test_dom_names_every_scenario(self, report: Path) -> None:
        """The page Chromium built names every scenario, and the secret is not in it."""
        dom = dump_dom(report)
        for scenario in realistic_run().scenarios:
            assert scenario.scenario.replace("'", "&#39;") in dom or scenario.scenario in dom
        assert "FAIL" in dom
        assert SECRET not in dom
        assert "<script>alert(1)" not in dom


FLEET_DRILLS = ["BKP-01", "BKP-02", "HLT-01"]
LIMIT_LINE = (0xE8, 0x59, 0x0C)  # svg.spark line.lim in report.html.j2 (crisp edges: exact pixels)
SERIES_LINE = (0x18, 0x64, 0xAB)  # svg.spark polyline and its points
PASS_CELL = (0xDA, 0xFB, 0xE1)  # --pass-bg: a passed matrix cell


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


@pytest.fixture
def fleet_report(tmp_path: Path) -> Path:
    """12 members x 3 drills, with 11 earlier merged runs: the charts have 12 points each."""
    return write_html_report(fleet_run(12, FLEET_DRILLS), tmp_path / "fleet" / "report.html",
                             history=fleet_history(12, FLEET_DRILLS))


class TestFleetReportInChromium:
    def test_matrix_cells_and_charts_are_in_the_page_chromium_built(self, fleet_report: Path) -> None:
        """Chromium's DOM has the overview first: 12 member rows of 3 outcome cells, and the charts."""
        dom = dump_dom(fleet_report)
        assert dom.index('id="fleet"') < dom.index('id="summary"')
        start = dom.index('<table class="matrix">')
        matrix = dom[start:dom.index("</table>", start)]
        assert matrix.count('<th scope="row" class="member">') == 12
        # One cell per member for its worst outcome, then one per drill.
        assert matrix.count('<td class="cell ') == 12 * (1 + len(FLEET_DRILLS))
        # db-000 restores in more than its RTO by now, and says so in words, not only in red.
        assert "over: 30m 9s of 30m (101%)" in matrix
        # BKP-01 charts the restore and BKP-02 the backup age: one chart each per member that measured.
        assert matrix.count('<svg class="spark"') >= 2 * 11
        assert matrix.count('<line class="lim"') == matrix.count('<svg class="spark"')

    def test_matrix_and_charts_are_drawn(self, fleet_report: Path, tmp_path: Path) -> None:
        """On screen: the limit lines, the series lines and the outcome colours of the matrix show."""
        image = read_png(screenshot(fleet_report, tmp_path / "fleet.png", width=WIDTH, height=HEIGHT))
        limit_rows = [y for y, row in enumerate(image.rows) if LIMIT_LINE in row]
        series_rows = [y for y, row in enumerate(image.rows) if any(_near(p, SERIES_LINE) for p in row)]
        pass_rows = [y for y, row in enumerate(image.rows) if PASS_CELL in row]
        failed_rows = [y for y, row in enumerate(image.rows) if FAILED_BADGE in row]
        assert len(limit_rows) >= 12, "the charts' limit lines are not drawn"
        assert len(series_rows) >= 12 * 5, "the charts' series lines are not drawn"
        # The matrix lies under the counts table, after the banner: passed and failed cells there.
        top = min(limit_rows) - 40
        assert sum(1 for y in pass_rows if y > top) > 100, "passed matrix cells are not drawn"
        assert any(y > top for y in failed_rows), "failed matrix cells are not drawn"
        assert max(limit_rows) - min(limit_rows) > 11 * 25, "charts do not follow the 12 member rows"

    def test_a_report_without_members_is_unchanged(self, report: Path) -> None:
        """An ordinary run's page has no fleet overview, no link to one, and renders as before."""
        dom = dump_dom(report)
        assert 'id="fleet"' not in dom and 'href="#fleet"' not in dom and "svg" not in dom
        history = fleet_history(2, FLEET_DRILLS, runs=2)
        assert report.read_text(encoding="utf-8") == render_html_report(realistic_run(), history=history)
