"""The shard protocol end to end (FLEET.md T4-T6) on the module's real PostgreSQL and moto's S3.

Four members x two scenarios: m1 and m2 healthy, m3's production a closed port (its FLT-01 is an
error, the others go on), m4 without any backup (its FLT-02 fails, never passes). Shards are real
``drillbook run --plan`` processes; faults are real kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drillbook.fleet.runs import CLAIM, Commit, S3Runs, commit_key, open_runs, read_commits
from drills.processes import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3Server
from tests.support.cli import REPO, drillbook
from tests.support.fleet import FleetFixture, make_fleet

pytestmark = pytest.mark.integration

EXPECTED = {
    ("m1", "FLT-01"): "passed", ("m1", "FLT-02"): "passed",
    ("m2", "FLT-01"): "passed", ("m2", "FLT-02"): "passed",
    ("m3", "FLT-01"): "error", ("m3", "FLT-02"): "passed",
    ("m4", "FLT-01"): "passed", ("m4", "FLT-02"): "failed",
}


@pytest.fixture(scope="module")
def fleet(subject_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetFixture]:
    base = tmp_path_factory.mktemp("fleet")
    databases = [subject_cluster.fresh_database(f"fleet-m{n}") for n in range(1, 5)]
    try:
        yield make_fleet(base, databases, unreachable=["m3"], without_backup=["m4"])
    finally:
        for target in databases:
            subject_cluster.drop(target)



def _s3_options(server: S3Server) -> dict[str, str]:
    return {"endpoint_url": server.endpoint_url, "access_key_id": S3_ACCESS_KEY_ID,
            "secret_access_key": S3_SECRET_ACCESS_KEY}


def _outcomes(results: dict[str, Any]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for scenario in results["scenarios"]:
        key = (scenario["member"], scenario["id"])
        assert key not in found, f"{key} reported twice"
        found[key] = scenario["outcome"]
    return found


def _comparable(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A run modulo times, hosts and shard numbers: what each scenario was and what it found."""
    rows = []
    for s in results["scenarios"]:
        rows.append((s["member"], s["id"], s["scenario"], s["outcome"],
                     tuple(t for t in s["tags"] if not t.startswith("shard:")),
                     tuple((v["id"], v["outcome"]) for v in s["verdicts"])))
    return rows


def _shard(plan_url: str, fx: FleetFixture, *extra: str, env: dict[str, str] | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return drillbook("run", "--plan", plan_url, "--config", str(fx.config), "--features", str(fx.features),
                     *extra, env=env, timeout=timeout)


def _plan(fx: FleetFixture, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = drillbook("plan", "--config", str(fx.config), "--features", str(fx.features), "--out", out, *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _bin_items(group: Path, index: int) -> list[str]:
    plan = json.loads((group / "plan.json").read_text(encoding="utf-8"))
    return [item["id"] for item in plan["bins"][index]["items"]]


def _ledger_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class TestWorkers:
    def test_two_workers_equal_one_and_the_ledger_gets_one_batch(self, fleet: FleetFixture,
                                                                 tmp_path: Path) -> None:
        """T4: W=2 merges each item once; the same run as W=1 modulo times and hosts; 8 ledger entries."""
        merged = {}
        for workers in ("1", "2"):
            out = tmp_path / f"w{workers}"
            proc = drillbook("run", "--fleet", "--config", str(fleet.config),
                             "--features", str(fleet.features),
                             "--out", str(out), "--workers", workers, timeout=600)
            assert proc.returncode == 1, proc.stdout + proc.stderr  # m3 errors, m4 fails
            assert f"bins done {workers}/{workers}" in proc.stdout
            group = next(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())
            results = json.loads((group / "results.json").read_text(encoding="utf-8"))
            assert _outcomes(results) == EXPECTED
            assert results["run_id"] == group.name
            merged[workers] = results
            entries = _ledger_lines(out / "ledger.jsonl")
            assert len(entries) == 8 and {e["run_id"] for e in entries} == {group.name}
            junit = (group / "junit.xml").read_text(encoding="utf-8")
            assert junit.count("<testcase") == 8 and f"drillbook shard 00/0{workers}" in junit
            assert "(m3 on 127.0.0.1:" in (group / "report.html").read_text(encoding="utf-8")
        assert _comparable(merged["1"]) == _comparable(merged["2"])
        m3 = next(s for s in merged["2"]["scenarios"] if s["member"] == "m3" and s["id"] == "FLT-01")
        assert "does not answer" in json.dumps(m3["verdicts"])


class TestS3:
    def test_shards_over_s3_commit_and_the_last_merges_once(self, fleet: FleetFixture, s3_server: S3Server,
                                                            tmp_path: Path) -> None:
        """T4 over moto: plan, two shards with JOB_COMPLETION_INDEX, one merge, one S3 ledger batch."""
        runs_client = open_runs("s3://fleet-runs/runs/g-s3/", _s3_options(s3_server))
        assert isinstance(runs_client, S3Runs)
        runs_client.client.create_bucket(Bucket="fleet-runs")
        config = fleet.config.parent / "s3.toml"
        config.write_text(fleet.config.read_text(encoding="utf-8") + "\n".join([
            "[ledger]", 'url = "s3://fleet-runs/ledger/"', f'endpoint_url = "{s3_server.endpoint_url}"',
            f'access_key_id = "{S3_ACCESS_KEY_ID}"', f'secret_access_key = "{S3_SECRET_ACCESS_KEY}"', ""]),
            encoding="utf-8")
        fx = FleetFixture(config, fleet.features, fleet.members)
        url = "s3://fleet-runs/runs/g-s3/"
        proc = _plan(fx, url, "--members", "m[12]", "--bins", "2", "--github-output")
        assert "indexes=[0,1]" in proc.stdout
        shards = [subprocess.Popen(
            [sys.executable, "-m", "drillbook", "run", "--plan", url + "plan.json", "--config", str(config),
             "--features", str(fx.features)], cwd=REPO, env={**os.environ, "JOB_COMPLETION_INDEX": str(i)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outputs = [p.communicate(timeout=300)[0] for p in shards]
        assert [p.returncode for p in shards] == [0, 0], outputs
        assert sum("merged 2/2 bins" in text for text in outputs) == 1, outputs
        results = json.loads(runs_client.get("results.json") or b"{}")
        assert _outcomes(results) == {k: v for k, v in EXPECTED.items() if k[0] in ("m1", "m2")}
        ledger = runs_client.client.list_objects_v2(Bucket="fleet-runs", Prefix="ledger/").get("Contents", [])
        assert len(ledger) == 1, "one batch per run group"
        again = drillbook("report", "merge", url, "--config", str(config))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing appended" in again.stdout
        expected = json.dumps(results, indent=2, ensure_ascii=False).encode() + b"\n"
        assert runs_client.get("results.json") == expected

    def test_64_simultaneous_commits_and_claims_give_exactly_one_merge(self, s3_server: S3Server) -> None:
        """T6: 64 shards commit at once, each lists and claims when it sees all: one claim wins."""
        runs = open_runs("s3://race-runs/runs/g64/", _s3_options(s3_server))
        assert isinstance(runs, S3Runs)
        runs.client.create_bucket(Bucket="race-runs")
        barrier = threading.Barrier(64)
        won: list[int] = []
        saw_all: list[int] = []

        def shard(index: int) -> None:
            mine = open_runs("s3://race-runs/runs/g64/", _s3_options(s3_server))
            barrier.wait()
            assert mine.put_create_only(commit_key(index), Commit(index, f"a{index}", {}, {}).to_bytes())
            if len(read_commits(mine, 64)) == 64:
                saw_all.append(index)
                if mine.put_create_only(CLAIM, str(index).encode()):
                    won.append(index)

        threads = [threading.Thread(target=shard, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(read_commits(runs, 64)) == 64
        assert saw_all, "the last committer must see every commit"
        assert len(won) == 1 and runs.get(CLAIM) == str(won[0]).encode()


class TestFaults:
    @pytest.fixture
    def planned(self, fleet: FleetFixture, tmp_path: Path) -> tuple[FleetFixture, Path]:
        """A plan of m1 alone in 2 bins: longer than half the plan, m1 is split, one scenario a bin."""
        group = tmp_path / "runs" / "g1"
        _plan(fleet, str(group), "--members", "m1", "--bins", "2")
        assert sorted(_bin_items(group, 0) + _bin_items(group, 1)) == ["FLT-01", "FLT-02"]
        return fleet, group

    def test_index_errors_and_foreign_plans_exit_2(self, planned: tuple[FleetFixture, Path]) -> None:
        """No index, index = bin count, another version's plan, edited features: exit 2, nothing runs."""
        fx, group = planned
        plan_url = str(group / "plan.json")
        clean = dict.fromkeys(("JOB_COMPLETION_INDEX", "CI_NODE_INDEX", "DRILLBOOK_SHARD_INDEX"), "")
        none = _shard(plan_url, fx, env=clean)
        assert none.returncode == 2 and "no shard index" in none.stderr
        beyond = _shard(plan_url, fx, env={**clean, "DRILLBOOK_SHARD_INDEX": "2"})
        assert beyond.returncode == 2 and "out of range: the plan has 2 bins" in beyond.stderr
        plan = json.loads((group / "plan.json").read_text(encoding="utf-8"))
        other = group.parent / "g-other"
        other.mkdir()
        # Another version's plan for its own group (a plan of another group is refused before that).
        foreign = {**plan, "drillbook_version": "0.0.1", "group": "g-other"}
        (other / "plan.json").write_text(json.dumps(foreign), encoding="utf-8")
        old = _shard(str(other / "plan.json"), fx, "--shard-index", "1")
        assert old.returncode == 2 and "made by drillbook 0.0.1" in old.stderr
        moved = group.parent / "g-moved"
        moved.mkdir()
        (moved / "plan.json").write_text(json.dumps(plan), encoding="utf-8")  # g1's plan, elsewhere
        misplaced = _shard(str(moved / "plan.json"), fx, "--shard-index", "1")
        assert misplaced.returncode == 2 and "is the plan of group 'g1'" in misplaced.stderr
        feature = fx.features / "fleet" / "fleet.feature"
        original = feature.read_text(encoding="utf-8")
        feature.write_text(original.replace("at most 26h", "at most 25h"), encoding="utf-8")
        try:
            edited = _shard(plan_url, fx, "--shard-index", "1")
        finally:
            feature.write_text(original, encoding="utf-8")
        assert edited.returncode == 2 and "features differ" in edited.stderr
        # The plan records the config it was made from, but a shard never opens a path read back.
        assert json.loads((group / "plan.json").read_text(encoding="utf-8"))["config"]
        unconfigured = drillbook("run", "--plan", plan_url, "--shard-index", "1",
                                 "--features", str(fx.features))
        assert unconfigured.returncode == 2 and "a shard needs --config" in unconfigured.stderr
        assert not list(group.glob("shards/*.commit.json")), "nothing may commit"

    def test_kill_before_commit_then_retry_merges_once(self, planned: tuple[FleetFixture, Path]) -> None:
        """T5: kill -9 of shard 0 mid-run leaves no commit and no merge; its retry commits and merges;
        the same index again is a no-op; a re-merge is byte-identical and appends nothing."""
        fx, group = planned
        plan_url = str(group / "plan.json")
        assert _shard(plan_url, fx, "--shard-index", "1").returncode == 0
        victim = subprocess.Popen(
            [sys.executable, "-m", "drillbook", "run", "--plan", plan_url, "--shard-index", "0", "--config",
             str(fx.config), "--features", str(fx.features)], cwd=REPO, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)  # inside the member's run: long before any commit
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert not (group / commit_key(0)).exists() and not (group / "results.json").exists()
        retry = _shard(plan_url, fx, "--shard-index", "0")
        assert retry.returncode == 0, retry.stderr
        assert "merged 2/2 bins" in retry.stderr
        first = (group / "results.json").read_bytes()
        assert _outcomes(json.loads(first)) == {("m1", "FLT-01"): "passed", ("m1", "FLT-02"): "passed"}
        twice = _shard(plan_url, fx, "--shard-index", "0")
        assert twice.returncode == 0 and "already committed" in twice.stderr
        ledger = group.parent / "ledger.jsonl"
        assert len(_ledger_lines(ledger)) == 2
        again = drillbook("report", "merge", str(group))
        assert again.returncode == 0 and (group / "results.json").read_bytes() == first
        assert len(_ledger_lines(ledger)) == 2, "a second merge appends nothing"

    def test_a_bin_never_committed_is_error_and_a_killed_merge_is_redone(
            self, planned: tuple[FleetFixture, Path]) -> None:
        """T5: shard 0 never commits: its items are errors naming it (exit 1); a stale claim and a
        killed merge do not stop `report merge`, and two merges give the same bytes."""
        fx, group = planned
        assert _shard(plan_url := str(group / "plan.json"), fx, "--shard-index", "1").returncode == 0
        (group / CLAIM).write_text("a merger that died\n", encoding="utf-8")
        killed = subprocess.Popen([sys.executable, "-m", "drillbook", "report", "merge", str(group)],
                                  cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Killed as soon as its first write (results.json) exists: junit, HTML, ledger not yet written
        # (or, on a fast machine, some of them): whatever it left, the next merge completes it.
        deadline = time.monotonic() + 120
        while not (group / "results.json").exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert (group / "results.json").exists()
        merged = drillbook("report", "merge", str(group))
        assert merged.returncode == 1, merged.stdout + merged.stderr
        results = json.loads((group / "results.json").read_text(encoding="utf-8"))
        missing = _bin_items(group, 0)[0]
        ran = _bin_items(group, 1)[0]
        assert _outcomes(results) == {("m1", missing): "error", ("m1", ran): "passed"}
        reasons = {s["id"]: s["failure"] for s in results["scenarios"]}
        assert reasons[missing] == f"shard 0/2 never committed (member m1: {missing})"
        before = {name: (group / name).read_bytes() for name in ("results.json", "junit.xml", "report.html")}
        assert drillbook("report", "merge", str(group)).returncode == 1
        assert {name: (group / name).read_bytes() for name in before} == before
        assert len(_ledger_lines(group.parent / "ledger.jsonl")) == 2
        assert plan_url

    def test_kill_after_commit_leaves_a_group_report_merge_completes(
            self, planned: tuple[FleetFixture, Path]) -> None:
        """T5: shard 0 killed as soon as its commit exists: nothing is lost, one merge, one batch."""
        fx, group = planned
        plan_url = str(group / "plan.json")
        assert _shard(plan_url, fx, "--shard-index", "1").returncode == 0
        victim = subprocess.Popen(
            [sys.executable, "-m", "drillbook", "run", "--plan", plan_url, "--shard-index", "0", "--config",
             str(fx.config), "--features", str(fx.features)], cwd=REPO, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while not (group / commit_key(0)).exists() and time.monotonic() < deadline and victim.poll() is None:
            time.sleep(0.02)
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert (group / commit_key(0)).exists()
        merged = drillbook("report", "merge", str(group))
        assert merged.returncode == 0, merged.stdout + merged.stderr
        assert _outcomes(json.loads((group / "results.json").read_text(encoding="utf-8"))) == {
            ("m1", "FLT-01"): "passed", ("m1", "FLT-02"): "passed"}
        assert len(_ledger_lines(group.parent / "ledger.jsonl")) == 2
