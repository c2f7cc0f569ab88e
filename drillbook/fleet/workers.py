"""``drillbook run --fleet [--workers N]``: plan + N local shard processes + merge, on one machine.

The same protocol as Kubernetes or a CI matrix, in a local runs directory:
``<out>/<group>/plan.json``, ``shards/…``, then the merged ``results.json``,
``junit.xml`` and ``report.html`` in ``<out>/<group>/`` — which is where a plain
run writes, so ``<out>/latest``, history and the ledger (``<out>/ledger.jsonl``)
work as for any run. It is also the emulator the tests drive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from checks.errors import ConfigError

from ..runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE, new_run_id
from .merge import MergeOutcome, merge_group
from .planner import Selection, build_plan, default_features, earlier_history, ledger_for, store_plan
from .runs import DirRuns, read_commits

_POLL_S = 0.5


@dataclass
class FleetRunOptions:
    config: Path
    out: Path
    workers: int = 1
    selection: Selection = field(default_factory=Selection)
    features: list[Path] | None = None
    env: str = "live"
    group: str | None = None


def run_fleet(options: FleetRunOptions, *, progress: Callable[[str], None] | None = None) -> int:
    """Plan, run ``workers`` shard processes, merge; the exit code of the merged run."""
    say = progress or (lambda line: print(f"drillbook: {line}", file=sys.stderr, flush=True))
    if options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}", key="--workers")
    config = options.config.resolve()
    features = [p.resolve() for p in options.features] if options.features else default_features()
    group = options.group or new_run_id()
    runs = DirRuns(group, options.out.resolve() / group)
    plan, _ = build_plan(config=config, features=features, selection=options.selection, group=group,
                         bins=options.workers, parallel=options.workers, history=earlier_history(runs))
    plan = store_plan(runs, plan, say)
    bins = len(plan.bins)
    print(f"drillbook run --fleet {group}: {len(plan.items())} work items in {bins} bins, "
          f"estimated {plan.makespan_s():.0f} s", flush=True)
    procs = [_start_shard(runs.url("plan.json"), index, config=config, features=features, env=options.env,
                          work=runs.root / "work" / str(index))
             for index in range(bins)]
    done = -1
    while any(p.poll() is None for p in procs):
        done = _report_progress(runs, bins, done)
        time.sleep(_POLL_S)
    _report_progress(runs, bins, done)
    for index, proc in enumerate(procs):
        if proc.returncode != 0:
            say(f"shard {index}/{bins} exited {proc.returncode}: its items are errors in the merge")
    outcome = merge_group(runs, ledger=ledger_for(runs, config), progress=say)
    _point_latest(options.out, runs.root)
    return print_outcome(outcome)


def print_outcome(outcome: MergeOutcome) -> int:
    """The merged run's summary and paths; its exit code (0 pass, 1 fail incl. missing shards)."""
    run = outcome.run
    counts = {k: v for k, v in run.counts().items() if v}
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    print(f"drillbook: {'PASS' if run.passed else 'FAIL'} — {len(run.scenarios)} scenarios "
          f"({outcome.committed}/{outcome.bins} bins committed): {summary}")
    print(f"report:   {outcome.urls['report.html']}")
    print(f"junit:    {outcome.urls['junit.xml']}")
    print(f"evidence: {outcome.urls['results.json']}")
    print(f"ledger:   {outcome.appended} entries appended" if outcome.appended else
          "ledger:   nothing appended (this run id is in the ledger already)" if run.scenarios else "")
    return EXIT_PASSED if run.passed else EXIT_FAILED


def _report_progress(runs: DirRuns, bins: int, shown: int) -> int:
    done = len(read_commits(runs, bins))
    if done != shown:
        print(f"drillbook: bins done {done}/{bins}", flush=True)
    return done


def _start_shard(plan_url: str, index: int, *, config: Path, features: Sequence[Path], env: str,
                 work: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "drillbook", "run", "--plan", plan_url, "--shard-index", str(index),
               "--config", str(config), "--env", env, "--out", str(work)]
    for path in features:
        command += ["--features", str(path)]
    child_env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, child_env.get("PYTHONPATH", "")) if p)
    # The parent merges once every shard is done; a shard that is last would merge too (idempotent).
    child_env["DRILLBOOK_SHARD_MERGE"] = "0"
    return subprocess.Popen(command, env=child_env, stdout=subprocess.DEVNULL)


def _point_latest(out: Path, run_dir: Path) -> None:
    from ..runner import _point_latest as point

    point(out, run_dir)


__all__ = ["EXIT_USAGE", "FleetRunOptions", "run_fleet"]
