"""Soft checks: every step of a scenario is reported, in results.json, JUnit and the HTML report.

Black-box: a real pytest run with the drillbook plugin over a feature whose steps record
verdicts as the suite's own steps do (through ``record``), and a real ``drillbook run`` over the
suite's audit-log steps. No server is needed: an empty config selects the live environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

STEPS = '''
from pytest_bdd import given, parsers, scenarios, then, when

from checks.verdict import Verdict, record

scenarios("soft.feature")


@given("a system")
def a_system():
    record(Verdict.passed("system.ready", "the system answers"))


@when(parsers.parse('the drill fails with "{why}"'))
def drill_fails(why):
    record(Verdict.failed("drill.run", why))


@when("the drill crashes")
def drill_crashes():
    raise RuntimeError("boom in the drill")


@then(parsers.parse('check "{name}" passes'))
def passes(name):
    record(Verdict.passed(name, f"{name} holds"))


@then(parsers.parse('check "{name}" fails'))
def fails(name):
    record(Verdict.failed(name, f"{name} does not hold"))


@then(parsers.parse('check "{name}" cannot be made'))
def cannot(name):
    record(Verdict.error(name, f"{name} could not be reached"))
'''

FEATURE = '''Feature: soft checks

  @id:SOFT-01 @daily
  Scenario: a late backup still shows whether it restores
    Given a system
    Then check "freshness" fails
    And check "checksum" passes
    And check "rows" cannot be made
    And check "rto" passes

  @id:SOFT-02 @daily
  Scenario: a failed restore lists every check it left
    Given a system
    When the drill fails with "restore refused"
    Then check "checksum" passes
    And check "rows" passes

  @id:SOFT-03 @daily @stop-on-failure
  Scenario: a missing precondition stops the scenario
    Given a system
    Then check "exists" fails
    And check "contents" passes

  @id:SOFT-04 @daily
  Scenario: every check passes
    Given a system
    Then check "a" passes
    And check "b" passes

  @id:SOFT-05 @daily
  Scenario: a drill that crashes
    Given a system
    When the drill crashes
    Then check "after" passes
'''


@pytest.fixture(scope="module")
def soft_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One plugin run over the feature above; its results.json, JUnit and report.html."""
    root = tmp_path_factory.mktemp("soft")
    (root / "soft.feature").write_text(FEATURE, encoding="utf-8")
    (root / "test_soft.py").write_text(STEPS, encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "drillbook.toml").write_text("", encoding="utf-8")  # live, and nothing to start
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "drillbook.plugin", "-p", "no:cacheprovider",
         "--strict-markers", "--drillbook-progress", "--drillbook-env", "live",
         "--drillbook-config", str(root / "drillbook.toml"), "--drillbook-out", str(out),
         f"--junitxml={out / 'junit.xml'}", "--rootdir", str(root), "-c", str(root / "pytest.ini"),
         str(root / "test_soft.py")],
        capture_output=True, text=True, timeout=120, cwd=root, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {
        "proc": proc,
        "scenarios": {s["id"]: s for s in results["scenarios"]},
        # pytest wrote this file in this run: trusted input.
        "junit": {case.get("name"): case
                  for case in ET.parse(out / "junit.xml").getroot().iter("testcase")},  # noqa: S314
        "html": (out / "report.html").read_text(encoding="utf-8"),
    }


def _steps(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{s['keyword']} {s['text']}", s["status"]) for s in scenario["steps"]]


def _verdicts(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["id"], v["outcome"]) for v in scenario["verdicts"]]


def _failure(junit: dict[str, ET.Element], name: str) -> str:
    failure = junit[name].find("failure")
    assert failure is not None, ET.tostring(junit[name], encoding="unicode")
    return failure.get("message", "")


class TestAFailedThenHidesNothing:
    def test_later_thens_run_and_record_their_verdicts(self, soft_run: dict[str, Any]) -> None:
        """After a failing Then, every later Then still runs: its verdict is in results.json."""
        scenario = soft_run["scenarios"]["SOFT-01"]
        assert _verdicts(scenario) == [("system.ready", "passed"), ("freshness", "failed"),
                                       ("checksum", "passed"), ("rows", "error"), ("rto", "passed")]

    def test_every_step_is_listed_with_its_status(self, soft_run: dict[str, Any]) -> None:
        assert _steps(soft_run["scenarios"]["SOFT-01"]) == [
            ("Given a system", "passed"), ('Then check "freshness" fails', "failed"),
            ('And check "checksum" passes', "passed"), ('And check "rows" cannot be made', "error"),
            ('And check "rto" passes', "passed"),
        ]

    def test_the_outcome_is_the_worst_verdict(self, soft_run: dict[str, Any]) -> None:
        """failed and error recorded: error is the worse (checks.verdict.worst)."""
        assert soft_run["scenarios"]["SOFT-01"]["outcome"] == "error"

    def test_junit_has_one_failure_naming_every_check_that_did_not_pass(
            self, soft_run: dict[str, Any]) -> None:
        message = _failure(soft_run["junit"], "a late backup still shows whether it restores")
        assert "2 checks did not pass" in message
        assert "[failed] freshness does not hold" in message
        assert "[error] rows could not be reached" in message
        case = soft_run["junit"]["a late backup still shows whether it restores"]
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert properties["rto.outcome"] == "passed" and properties["checksum.outcome"] == "passed"

    def test_html_report_shows_every_step(self, soft_run: dict[str, Any]) -> None:
        html = soft_run["html"]
        for status, keyword, text in (("failed", "Then", "check &#34;freshness&#34; fails"),
                                      ("passed", "And", "check &#34;checksum&#34; passes"),
                                      ("error", "And", "check &#34;rows&#34; cannot be made"),
                                      ("passed", "And", "check &#34;rto&#34; passes")):
            assert f'{status}</span> <span class="kw">{keyword}</span> {text}' in html
        assert "rows could not be reached" in html


class TestAFailedWhenListsWhatItLeft:
    def test_later_steps_are_error_verdicts_naming_the_step_that_failed(
            self, soft_run: dict[str, Any]) -> None:
        scenario = soft_run["scenarios"]["SOFT-02"]
        assert _verdicts(scenario) == [("system.ready", "passed"), ("drill.run", "failed"),
                                       ("step.not_checked", "error"), ("step.not_checked", "error")]
        messages = [v["message"] for v in scenario["verdicts"][2:]]
        assert messages == [
            'not checked: When the drill fails with "restore refused" did not pass, '
            'so Then check "checksum" passes never ran',
            'not checked: When the drill fails with "restore refused" did not pass, '
            'so Then check "rows" passes never ran',
        ]

    def test_the_outcome_is_the_failed_step_not_the_unchecked_ones(self, soft_run: dict[str, Any]) -> None:
        """A drill that failed is a failed drill: the steps it left do not turn it into an error."""
        assert soft_run["scenarios"]["SOFT-02"]["outcome"] == "failed"

    def test_later_steps_are_listed_as_error_never_skipped(self, soft_run: dict[str, Any]) -> None:
        assert _steps(soft_run["scenarios"]["SOFT-02"]) == [
            ("Given a system", "passed"), ('When the drill fails with "restore refused"', "failed"),
            ('Then check "checksum" passes', "error"), ('And check "rows" passes', "error"),
        ]

    def test_junit_failure_lists_the_cause_and_the_unchecked_steps(self, soft_run: dict[str, Any]) -> None:
        message = _failure(soft_run["junit"], "a failed restore lists every check it left")
        assert "3 checks did not pass" in message
        assert "[failed] restore refused" in message
        assert message.count("[error] not checked:") == 2

    def test_html_report_lists_the_unchecked_steps(self, soft_run: dict[str, Any]) -> None:
        assert soft_run["html"].count("never ran") >= 2

    def test_a_crash_keeps_its_traceback_and_lists_what_it_left(self, soft_run: dict[str, Any]) -> None:
        scenario = soft_run["scenarios"]["SOFT-05"]
        assert "RuntimeError: boom in the drill" in scenario["failure"]
        assert _steps(scenario)[-1] == ('Then check "after" passes', "error")
        assert scenario["outcome"] == "error"
        junit = soft_run["junit"]["a drill that crashes"].find("failure")
        assert junit is not None
        assert "not checked: When the drill crashes did not pass" in junit.get("message", "")
        assert "boom in the drill" in (junit.text or "")


class TestStopOnFailure:
    def test_the_tag_stops_at_the_first_failed_then(self, soft_run: dict[str, Any]) -> None:
        """@stop-on-failure: the check after the failed one never runs, and is listed as not checked."""
        scenario = soft_run["scenarios"]["SOFT-03"]
        assert _verdicts(scenario) == [("system.ready", "passed"), ("exists", "failed"),
                                       ("step.not_checked", "error")]
        assert _steps(scenario)[-1] == ('And check "contents" passes', "error")
        assert scenario["outcome"] == "failed"

    def test_the_tag_is_a_registered_marker(self, soft_run: dict[str, Any]) -> None:
        """The run used --strict-markers: an unregistered tag would have failed collection."""
        assert "SOFT-03" in soft_run["scenarios"]


class TestRunOutcome:
    def test_a_passing_scenario_still_passes(self, soft_run: dict[str, Any]) -> None:
        assert soft_run["scenarios"]["SOFT-04"]["outcome"] == "passed"
        assert soft_run["junit"]["every check passes"].find("failure") is None

    def test_exit_code_is_one_when_any_scenario_fails(self, soft_run: dict[str, Any]) -> None:
        proc = soft_run["proc"]
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "4 failed, 1 passed" in proc.stdout

    def test_progress_lines_name_the_failures_and_count_what_was_not_checked(
            self, soft_run: dict[str, Any]) -> None:
        out = soft_run["proc"].stdout
        assert "freshness: freshness does not hold" in out and "rows: rows could not be reached" in out
        assert "2 later step(s) not checked" in out
        assert "RuntimeError: boom in the drill" in out


def test_drillbook_run_reports_every_audit_check(tmp_path: Path) -> None:
    """`drillbook run` with the suite's own steps: a failed first check, the next still judged."""
    now = datetime.now(UTC)
    log = tmp_path / "audit.jsonl"
    event = {"kind": "LOGIN_FAILED", "time": (now - timedelta(minutes=5)).isoformat()}
    log.write_text(json.dumps(event) + "\n", encoding="utf-8")
    features = tmp_path / "features"
    features.mkdir()
    (features / "audit.feature").write_text(
        "Feature: audit\n\n"
        "  @id:AUD-01 @daily\n  Scenario: the audit log is checked in full\n"
        f'    Given the audit log file "{log}"\n'
        '    Then at least 1 "BACKUP_DONE" events were logged in the last 1h\n'
        '    And at most 5 "*_FAILED" events were logged in the last 1h\n',
        encoding="utf-8",
    )
    config = tmp_path / "drillbook.toml"
    config.write_text("", encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features", str(features),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    scenario = json.loads((run / "results.json").read_text(encoding="utf-8"))["scenarios"][0]
    assert [(v["id"], v["outcome"]) for v in scenario["verdicts"]] == [
        ("audit.event_count", "failed"), ("audit.event_count", "passed")]
    assert [s["status"] for s in scenario["steps"]] == ["passed", "failed", "passed"]
    assert scenario["outcome"] == "failed"
