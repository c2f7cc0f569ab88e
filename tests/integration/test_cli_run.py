"""`drillbook run` end to end, as a user runs it: a real subprocess, real servers, real reports."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def drillbook(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drillbook.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env={**os.environ, **(env or {})}, check=False,
    )


def _run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if text in cmdline and proc.pid != os.getpid():
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory,
                sandbox_cache_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """One full `drillbook run` on the embedded sandbox, shared by the assertions below."""
    out = tmp_path_factory.mktemp("run-out")
    # A TMPDIR of its own, so what this run leaves behind can be told from other tests' servers.
    # World-traversable: as root the servers run as `postgres`, which must reach their data dirs.
    tmpdir = Path(tempfile.mkdtemp(prefix="drillbook-e2e-tmp-", dir="/tmp"))
    tmpdir.chmod(0o711)
    started = time.monotonic()
    proc = drillbook("run", "--out", str(out), env={**sandbox_cache_env, "TMPDIR": str(tmpdir)})
    yield {"proc": proc, "out": out, "run": _run_dir(out), "seconds": time.monotonic() - started,
           "tmpdir": tmpdir}
    shutil.rmtree(tmpdir, ignore_errors=True)


class TestRunOnTheSandbox:
    def test_exits_zero_with_progress_and_report_path(self, sandbox_run: dict[str, Any]) -> None:
        """No config: the sandbox starts, every scenario passes, progress and report path printed."""
        proc = sandbox_run["proc"]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for ident in ("BKP-01", "BKP-02", "BKP-03", "BKP-04", "BKP-10", "BKP-11"):
            assert ident in proc.stdout
        assert "report:" in proc.stdout and "report.html" in proc.stdout

    def test_reports_written(self, sandbox_run: dict[str, Any]) -> None:
        """results.json, report.html and junit.xml exist; JUnit names are Gherkin names with RTO."""
        run = sandbox_run["run"]
        results = json.loads((run / "results.json").read_text())
        assert results["passed"] is True
        assert {s["outcome"] for s in results["scenarios"]} == {"passed"}
        assert (run / "report.html").read_text().count("BKP-01") >= 1
        tree = ET.parse(run / "junit.xml")  # noqa: S314 - our own run's junit.xml, not outside input
        names = [tc.get("name") for tc in tree.iter("testcase")]
        assert any(n and "Scrydon monthly backup verification" in n for n in names)
        props = {p.get("name") for p in tree.iter("property")}
        assert "restore.rto.measured" in props

    def test_fingerprint_names_the_server_versions_drilled(self, sandbox_run: dict[str, Any]) -> None:
        """environment.json says which PostgreSQL and Redis versions the run talked to."""
        fingerprint = json.loads((sandbox_run["run"] / "environment.json").read_text())
        details = fingerprint["environment_details"]
        assert details["server.postgres.production"].startswith("PostgreSQL 1")
        assert all(not v.startswith("unknown") for k, v in details.items() if k.startswith("server."))

    def test_nothing_left_running_or_on_disk(self, sandbox_run: dict[str, Any]) -> None:
        """After the run no server it started is alive and no temp dir of it remains."""
        tmpdir = sandbox_run["tmpdir"]
        assert not _processes_mentioning(str(tmpdir))
        assert list(tmpdir.iterdir()) == []


class TestSelection:
    def test_cadence_selects_only_its_scenarios(
        self, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """--cadence weekly runs the weekly scenarios only."""
        proc = drillbook("run", "--cadence", "weekly", "--out", str(tmp_path), env=sandbox_cache_env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results = json.loads((_run_dir(tmp_path) / "results.json").read_text())
        ids = {s["id"] for s in results["scenarios"]}
        assert ids == {"BKP-03", "BKP-11", "BKP-12"}

    def test_tags_select_one_drill_by_its_id(self, tmp_path: Path, sandbox_cache_env: dict[str, str]) -> None:
        """--tags id:BKP-10 (the hint a missed cadence gives) runs that scenario alone."""
        proc = drillbook("run", "--tags", "id:BKP-10", "--out", str(tmp_path), env=sandbox_cache_env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results = json.loads((_run_dir(tmp_path) / "results.json").read_text())
        # BKP-10 is a scenario outline over three stores: three examples, no other scenario.
        assert [s["id"] for s in results["scenarios"]] == ["BKP-10"] * 3

    def test_unknown_cadence_is_usage_error(self, tmp_path: Path) -> None:
        """A cadence that does not exist is exit 2, naming the valid ones."""
        proc = drillbook("run", "--cadence", "fortnightly", "--out", str(tmp_path))
        assert proc.returncode == 2
        assert "monthly" in proc.stderr


class TestBadConfigAndFeatures:
    def test_scenario_that_checks_nothing_is_an_error(self, tmp_path: Path) -> None:
        """A scenario that records no verdict proved nothing: it errors, never passes."""
        features = tmp_path / "features"
        features.mkdir()
        (features / "empty.feature").write_text("Feature: x\n  Scenario: nothing checked\n")
        proc = drillbook("run", "--features", str(features), "--out", str(tmp_path / "out"))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "recorded no verdict" in proc.stdout

    def test_unknown_key_stops_before_anything_runs(self, tmp_path: Path) -> None:
        """Exit 2 within seconds, naming the key and the file; no server started."""
        config = tmp_path / "drillbook.toml"
        config.write_text('[targets.p]\nkind = "postgres"\ndsn = "x"\ncolour = "blue"\n')
        started = time.monotonic()
        proc = drillbook("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2
        assert "targets.p.colour" in proc.stderr and str(config) in proc.stderr
        assert time.monotonic() - started < 20

    def test_malformed_feature_names_file(self, tmp_path: Path) -> None:
        """A feature pytest-bdd cannot parse is exit 2 naming the file."""
        features = tmp_path / "features"
        features.mkdir()
        (features / "broken.feature").write_text(
            "Feature: x\n  Scenario: y\n    Given a step\nFeature: again\n"
        )
        proc = drillbook("run", "--features", str(features), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "broken.feature" in proc.stderr


class TestLiveConfig:
    def test_secrets_never_reach_any_output_and_failures_do_not_stop_the_run(
        self, local_env: Any, tmp_path: Path
    ) -> None:
        """With ${ENV} secrets, a failing scenario and a passing one: exit 1, no secret anywhere."""
        password = "pw" + secrets.token_hex(12)
        s3_secret = "sk" + secrets.token_hex(16)
        subject = local_env.postgres("production")
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(subject.dsn)
        dsn = f"postgresql://postgres:{password}@{info['host']}:{info['port']}/{info['dbname']}"
        store = local_env.store("nightly-custom")
        config = tmp_path / "drillbook.toml"
        config.write_text(
            '[targets.production]\nkind = "postgres"\ndsn = "${PROD_DSN}"\n'
            '[targets.nightly-custom]\nkind = "s3"\n'
            f'url = "{store.url}"\nkey_pattern = "{store.key_pattern}"\n'
            f'endpoint_url = "{store.endpoint_url}"\n'
            'access_key_id = "${KEY_ID}"\nsecret_access_key = "${SECRET_KEY}"\n'
            # The same bucket, a prefix with nothing in it: "no backup" must fail, naming it.
            '[targets.nightly-plain]\nkind = "s3"\nurl = "s3://sandbox-backups/nothing-here/"\n'
            f'endpoint_url = "{store.endpoint_url}"\n'
            'access_key_id = "${KEY_ID}"\nsecret_access_key = "${SECRET_KEY}"\n'
        )
        features = tmp_path / "features"
        features.mkdir()
        (features / "live.feature").write_text(
            "Feature: live\n\n"
            "  @id:LIVE-01 @daily\n  Scenario: the custom backups restore and match\n"
            '    Given the backups in "nightly-custom"\n    And the subject database "production"\n'
            "    When the newest backup is restored into a scratch database\n"
            "    Then every row older than the backup matches the subject\n\n"
            "  @id:LIVE-02 @daily\n  Scenario: an empty prefix has no fresh backup\n"
            '    Given the backups in "nightly-plain"\n    Then the newest backup is at most 26h old\n'
        )
        out = tmp_path / "out"
        proc = drillbook("run", "--config", str(config), "--features", str(features), "--out", str(out),
                         env={"PROD_DSN": dsn, "KEY_ID": "testing", "SECRET_KEY": s3_secret})
        assert proc.returncode == 1, proc.stdout + proc.stderr
        run = _run_dir(out)
        results = json.loads((run / "results.json").read_text())
        outcomes = {s["id"]: s["outcome"] for s in results["scenarios"]}
        assert outcomes == {"LIVE-01": "passed", "LIVE-02": "failed"}
        failed = next(s for s in results["scenarios"] if s["id"] == "LIVE-02")
        assert "nothing-here" in json.dumps(failed["verdicts"])
        texts = [proc.stdout, proc.stderr]
        texts += [p.read_text(errors="replace") for p in run.rglob("*") if p.is_file()]
        for text in texts:
            assert password not in text
            assert s3_secret not in text
