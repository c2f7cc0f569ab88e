"""The README's fleet command on one machine: ``drillbook run --fleet --sandbox-members N --workers 2``.

The whole path a newcomer runs: the fleet sandbox seeded for the run, the plan, two shard
processes, the merge, one ledger batch; under ``--canary`` the broken members fail each in its
own way and the healthy ones pass; afterwards nothing of the sandbox is left.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import drillbook, private_tmpdir, processes_mentioning

pytestmark = pytest.mark.integration


def test_fleet_sandbox_with_two_workers_and_a_canary(tmp_path: Path) -> None:
    tmpdir = private_tmpdir("drillbook-test-fleet-")
    out = tmp_path / "out"
    done = drillbook("run", "--fleet", "--sandbox-members", "3", "--workers", "2", "--canary",
                     "--out", str(out), env={"TMPDIR": str(tmpdir)}, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr  # the canary's members fail the run
    assert "bins done 2/2" in done.stderr + done.stdout
    results = json.loads((out / "latest" / "results.json").read_text(encoding="utf-8"))
    outcomes = {(s["member"], s["id"]): s["outcome"] for s in results["scenarios"]}
    assert len(results["scenarios"]) == len(outcomes) == 9, "every work item exactly once"
    assert {m for m, _ in outcomes} == {"member-01", "member-02", "member-03"}
    assert all(outcomes[("member-01", i)] == "passed" for i in ("FLT-01", "FLT-02", "FLT-03"))
    # member-02: stale backups (freshness fails); member-03: a truncated dump (restore fails).
    assert outcomes[("member-02", "FLT-03")] == "failed"
    assert outcomes[("member-03", "FLT-01")] == "failed"
    names = [s["nodeid"] for s in results["scenarios"]]
    assert all(n.endswith(("[member-01]", "[member-02]", "[member-03]")) for n in names)
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(ledger) == 9 and {e["run_id"] for e in ledger} == {results["run_id"]}
    assert "member-02" in (out / "latest" / "report.html").read_text(encoding="utf-8")
    assert processes_mentioning(str(tmpdir)) == [], "a server of the fleet sandbox is still running"
    assert [p.name for p in tmpdir.iterdir()] == [], "the fleet sandbox left files behind"
