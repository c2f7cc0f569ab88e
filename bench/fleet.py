"""Fleet benchmarks (FLEET.md §8): figures and ratios printed, never asserted in the test suite.

    .venv/bin/python bench/fleet.py [--members 500] [--skip-workers] [--delay 2]

1. Plan balance (ΣT/N) / planned makespan for N = 2, 4, 8, 16 on a generated fleet (60 members,
   2-6 scenarios each, lognormal durations, seeded), beside the bound max(ΣT/N, largest unit)/makespan.
   Goal: >= 0.95 whenever the largest member does not bound it.
2. Planning 500 members x 6 scenarios (history for most, backup sizes for the rest). Goal < 2 s.
   Also the plan.json size (goal < 1 MiB).
3. Merging 64 committed shard results of 500 members (3000 scenarios): verify, merge JUnit,
   render the HTML, append the ledger batch. Goal < 10 s.
4. ``drillbook run --fleet --workers N`` efficiency T1/(N·T_N) for N = 1, 2, 4, 8 on latency-bound
   drills: every scenario waits ``--delay`` s for a local HTTP endpoint. Goals >= 0.9 at N = 2, 4 and
   >= 0.85 at N = 8 on an idle machine; with loadavg > 0.5 before a measurement, N > 1 prints
   "busy, not measured" (the load average is printed with every figure).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.verdict import Verdict
from drillbook.fleet import junit_merge
from drillbook.fleet.merge import merge_group, results_bytes
from drillbook.fleet.plan import History, PlanInputs, WorkItem, make_plan, pack, planned_makespan
from drillbook.fleet.runs import PLAN, Commit, DirRuns, attempt_key, commit_key
from reports.ledger import LocalLedger
from reports.results import RunResult, ScenarioResult

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Member:
    name: str
    host: str | None = None


@dataclass(frozen=True)
class Ref:
    id: str
    feature: Path
    name: str
    tags: tuple[str, ...] = ()


def generated_items(seed: int = 14, members: int = 60) -> list[WorkItem]:
    rng = random.Random(seed)
    items = []
    for m in range(members):
        for s in range(rng.randint(2, 6)):
            items.append(WorkItem(f"db-{m:03d}", f"S-{s}", round(rng.lognormvariate(3.0, 0.8), 3), "history"))
    return items


def bench_balance() -> None:
    items = generated_items()
    total = sum(i.estimate_s for i in items)
    members = len({i.member for i in items})
    print(f"1. plan balance: {members} members, {len(items)} items, ΣT = {total:.0f} s")
    for n in (2, 4, 8, 16):
        bins = pack(items, bins=n, hosts={})
        makespan = planned_makespan([b.estimate_s for b in bins], n)
        largest = max(_unit_sizes(items, total / n))
        bound = max(total / n, largest)
        print(f"   N={n:2d}: balance (ΣT/N)/makespan = {total / n / makespan:.3f}; "
              f"bound/makespan = {bound / makespan:.3f} "
              f"(largest unit {largest:.0f} s, makespan {makespan:.0f} s)")


def _unit_sizes(items: list[WorkItem], target: float) -> list[float]:
    per: dict[str, list[float]] = {}
    for item in items:
        per.setdefault(item.member, []).append(item.estimate_s)
    return [sum(v) if sum(v) <= target else max(v) for v in per.values()]


def big_inputs(members: int) -> PlanInputs:
    rng = random.Random(7)
    ids = [f"FLT-{n:02d}" for n in range(1, 7)]
    fleet = [Member(f"db-{m:04d}", f"pg-{m % 25:02d}") for m in range(members)]
    durations = {(m.name, s): tuple(round(rng.lognormvariate(3, 0.7), 3) for _ in range(5))
                 for m in fleet[: members * 4 // 5] for s in ids}
    sizes = {m.name: rng.randint(10, 5000) * 1024 * 1024 for m in fleet}
    return PlanInputs(group="bench", drillbook_version="0.1.0", inventory_digest="sha256:x", members=fleet,
                      scenarios=[Ref(i, Path(f"/s/features/fleet/{i}.feature"), f"scenario {i}", (f"id:{i}",))
                                 for i in ids],
                      feature_bytes={f"fleet/{i}.feature": i.encode() for i in ids},
                      selection={"cadence": "monthly", "tags": None, "members": None}, bins=64, parallel=16,
                      host_cap=2, history=History(durations, ("r1",)), sizes=sizes)


def bench_planning(members: int) -> None:
    inputs = big_inputs(members)
    started = time.perf_counter()
    plan = make_plan(inputs)
    data = plan.to_bytes()
    elapsed = time.perf_counter() - started
    print(f"2. planning {members} members x 6 scenarios into 64 bins (host cap 2 of 25 hosts): "
          f"{elapsed:.2f} s (goal < 2 s); plan.json {len(data) / 1024:.0f} KiB (goal < 1024 KiB); "
          f"balance {sum(b.estimate_s for b in plan.bins) / 16 / plan.makespan_s():.3f} at W=16 "
          "(the host cap, not packing, bounds it: 25 hosts x 2 bins)")


def bench_merge(members: int) -> None:
    inputs = big_inputs(members)
    plan = make_plan(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        runs = DirRuns("bench", Path(tmp) / "bench")
        runs.put_create_only(PLAN, plan.to_bytes())
        for plan_bin in plan.bins:
            scenarios = [_scenario(item.member, item.scenario) for item in plan_bin.items]
            shard = RunResult(run_id=f"bench-{plan_bin.index}", started_at="2026-12-03T10:00:00+00:00",
                              finished_at="2026-12-03T11:00:00+00:00", drillbook_version="0.1.0",
                              environment="live", scenarios=scenarios)
            cases = [_case(s) for s in scenarios]
            files = {"results.json": results_bytes(shard),
                     "junit.xml": junit_merge.merge([junit_merge.Suite("s", cases)])}
            for name, data in files.items():
                runs.put(attempt_key(plan_bin.index, "a1", name), data)
            runs.put_create_only(commit_key(plan_bin.index), Commit(
                plan_bin.index, "a1", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
                {"host": "bench"}).to_bytes())
        ledger = LocalLedger(Path(tmp) / "ledger.jsonl")
        load = os.getloadavg()[0]
        started = time.perf_counter()
        outcome = merge_group(runs, ledger=ledger)
        elapsed = time.perf_counter() - started
        print(f"3. merging 64 shard results of {members} members ({len(outcome.run.scenarios)} scenarios, "
              f"{outcome.appended} ledger entries): {elapsed:.2f} s (goal < 10 s; loadavg before {load:.2f})")
        # Where the time goes, each phase again on its own.
        from drillbook.fleet.merge import build_merged
        from drillbook.fleet.runs import read_commits
        from reports.html import render_html_report
        from reports.ledger_runs import entries_for_run

        phases = {}
        t0 = time.perf_counter()
        run, _ = build_merged(runs, plan, read_commits(runs, len(plan.bins)))
        phases["read+verify+merge+junit"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results_bytes(run)
        phases["results.json"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        render_html_report(run)
        phases["report.html (reports/html.py)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        entries_for_run(run)
        phases["ledger entries (reports/ledger_runs.py)"] = time.perf_counter() - t0
        print("   phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))


def _scenario(member: str, ident: str) -> ScenarioResult:
    verdict = Verdict.passed("postgres.answers", f"{member} answered", measured=0.01, expected="< 20s")
    return ScenarioResult(nodeid=f"test_drillbook_features.py::test_{ident}[{member}]", feature="Fleet",
                          feature_path="features/fleet/fleet.feature", scenario=f"scenario {ident}",
                          tags=[f"id:{ident}", "monthly", f"member:{member}"], verdicts=[verdict],
                          started_at="2026-12-03T10:00:00+00:00", duration_s=12.5, member=member)


def _case(scenario: ScenarioResult) -> junit_merge.Element:
    return junit_merge.Element("testcase", {"classname": scenario.feature,
                                               "name": f"{scenario.display_id} {scenario.scenario}",
                                               "time": "12.5"})


# ---------------------------------------------------------------- --workers N


class _Slow(http.server.BaseHTTPRequestHandler):
    delay = 2.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = b'{"status":"healthy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _latency_fleet(base: Path, url: str, members: int, scenarios: int) -> tuple[Path, Path]:
    features = base / "features"
    features.mkdir(parents=True)
    text = "@monthly\nFeature: Latency-bound drills\n"
    for n in range(1, scenarios + 1):
        text += (f"\n  @id:LAT-{n:02d}\n  Scenario: the slow endpoint answers ({n})\n"
                 f'    Given the HTTP service "api"\n    Then "/slow" answers HTTP 200 within 120s\n')
    (features / "latency.feature").write_text(text, encoding="utf-8")
    config = base / "drillbook.toml"
    config.write_text(f'[targets.api]\nkind = "http"\nurl = "{url}"\n[fleet]\nhost_cap = 64\n' + "".join(
        f'[[fleet.members]]\nname = "lat-{m:02d}"\n'
        f'[fleet.members.targets.api]\nkind = "http"\nurl = "{url}"\n'
        for m in range(members)), encoding="utf-8")
    return config, features


def _settled_load(limit: float = 0.5, wait_s: float = 120.0) -> float:
    """The 1-minute load average, after waiting up to ``wait_s`` for the previous run's to decay."""
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def bench_workers(delay: float, members: int, scenarios: int) -> None:
    _Slow.delay = delay
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"4. --workers N on latency-bound drills: {members} members x {scenarios} scenarios x {delay} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config, features = _latency_fleet(Path(tmp), url, members, scenarios)
            t1 = None
            for n in (1, 2, 4, 8):
                load = _settled_load() if n > 1 else os.getloadavg()[0]
                if n > 1 and load > 0.5:
                    print(f"   N={n}: busy, not measured (loadavg {load:.2f})")
                    continue
                started = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "drillbook", "run", "--fleet", "--config", str(config),
                     "--features", str(features), "--out", str(Path(tmp) / f"out{n}"), "--workers", str(n)],
                    cwd=REPO, capture_output=True, text=True, check=False,
                    env={**os.environ, "PYTHONPATH": str(REPO)})
                elapsed = time.perf_counter() - started
                if proc.returncode != 0:
                    print(f"   N={n}: run failed (exit {proc.returncode}): {proc.stderr[-400:]}")
                    continue
                if n == 1:
                    t1 = elapsed
                    print(f"   N=1: T1 = {elapsed:.1f} s (loadavg before {load:.2f})")
                elif t1 is not None:
                    print(f"   N={n}: T = {elapsed:.1f} s, efficiency T1/(N·T) = {t1 / (n * elapsed):.2f} "
                          f"(loadavg before {load:.2f})")
    finally:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds each latency-bound drill waits")
    parser.add_argument("--lat-members", type=int, default=8)
    parser.add_argument("--lat-scenarios", type=int, default=4)
    args = parser.parse_args()
    print(f"loadavg {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    bench_balance()
    bench_planning(args.members)
    bench_merge(args.members)
    if not args.skip_workers:
        bench_workers(args.delay, args.lat_members, args.lat_scenarios)


if __name__ == "__main__":
    main()
