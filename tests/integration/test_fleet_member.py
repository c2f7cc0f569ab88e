"""One fleet member's run: its targets bound, its scenarios named ID[member], no ledger append.

A real PostgreSQL (the module's subject cluster) is member alpha's production; member beta's
production is a closed port: its scenario is an error naming it, alpha's passes.
"""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from drillbook.fleet.execute import run_member, tail
from drillbook.fleet.scenarios import list_scenarios
from reports.results import RunResult
from tests.integration.conftest import Fresh

FEATURE = """@monthly
Feature: Fleet health
  Each member's database answers.

  @id:FLT-T1
  Scenario: The member's database answers
    Given the subject database "production"
    Then the database answers "SELECT 1" within 20 seconds

  @id:FLT-T2 @weekly
  Scenario: Not selected
    Given the subject database "production"
    Then the database answers "SELECT 1" within 20 seconds
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _setup(tmp_path: Path, dsn: str) -> tuple[Path, Path]:
    features = tmp_path / "features" / "fleet"
    features.mkdir(parents=True)
    (features / "health.feature").write_text(FEATURE, encoding="utf-8")
    config = tmp_path / "drillbook.toml"
    config.write_text(f"""
[targets.production]
kind = "postgres"
dsn = "postgresql://nobody@127.0.0.1:{_closed_port()}/shared"

[fleet]
[[fleet.members]]
name = "alpha"
labels = {{ host = "a" }}
[fleet.members.targets.production]
kind = "postgres"
dsn = "{dsn}"

[[fleet.members]]
name = "beta"
[fleet.members.targets.production]
kind = "postgres"
dsn = "postgresql://postgres@127.0.0.1:{_closed_port()}/beta"
""", encoding="utf-8")
    return config, features


def test_a_member_run_binds_names_and_leaves_the_ledger_alone(tmp_path: Path, subject: Fresh) -> None:
    target = subject("fleet-alpha")
    config, features = _setup(tmp_path, target.dsn)
    refs = list_scenarios([features], "monthly", "not weekly")
    assert [r.id for r in refs] == ["FLT-T1"]
    out = tmp_path / "out"
    runs = {}
    for member in ("alpha", "beta"):
        runs[member] = run_member(config=config, member=member, scenario_ids=[r.id for r in refs],
                                  features=[features], out=out, run_id=f"m-{member}")
        assert (runs[member] / "results.json").exists(), tail(runs[member])
    alpha = RunResult.read(runs["alpha"] / "results.json")
    assert [(s.display_id, s.outcome.value, s.member) for s in alpha.scenarios] == [
        ("FLT-T1[alpha]", "passed", "alpha")]
    assert alpha.scenarios[0].nodeid.endswith("[alpha]")
    assert "member:alpha" in alpha.scenarios[0].tags
    beta = RunResult.read(runs["beta"] / "results.json")
    assert [(s.display_id, s.outcome.value) for s in beta.scenarios] == [("FLT-T1[beta]", "error")]
    message = " ".join(v.message for v in beta.scenarios[0].verdicts)
    assert "127.0.0.1" in message
    cases = ET.parse(runs["alpha"] / "junit.xml").getroot().iter("testcase")  # noqa: S314 - our own run's file
    assert [c.get("name") for c in cases] == ["FLT-T1[alpha] The member's database answers"]
    assert not (out / "ledger.jsonl").exists(), "a member's run must not append: the merge does"
    raw = json.loads((runs["alpha"] / "results.json").read_text(encoding="utf-8"))
    assert raw["scenarios"][0]["member"] == "alpha"


def test_an_unknown_member_is_a_usage_error(tmp_path: Path, subject: Fresh) -> None:
    config, features = _setup(tmp_path, subject("fleet-x").dsn)
    run_dir = run_member(config=config, member="gamma", scenario_ids=["FLT-T1"], features=[features],
                         out=tmp_path / "out", run_id="m-gamma")
    assert not (run_dir / "results.json").exists()
    assert "no fleet member named 'gamma'" in tail(run_dir)
