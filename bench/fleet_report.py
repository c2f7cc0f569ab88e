"""The HTML report at fleet size: seconds to render and bytes written.

    .venv/bin/python bench/fleet_report.py [--members 500] [--drills 6] [--history 11]

Builds a merged fleet run of MEMBERS x DRILLS scenarios (tests/support/fleet_runs.py: restore,
backup-age, warning and error verdicts) and HISTORY earlier merged runs, then measures, best of 3:

1. rendering the report with the fleet overview (matrix + 2 charts per member over HISTORY + 1 runs);
2. the same run rendered without members (no overview): what the overview adds;
3. reading the HISTORY earlier results.json files back from disk the way the plugin does
   (drillbook.history.recent_runs), which a report of a fleet run pays once;
4. when Debian's chromium is installed, how long headless Chromium takes to open the file and
   draw its first screen (``--screenshot``, once; includes Chromium's own start, measured alone
   on a blank page too).

Target (issue 14, item 9): 500 members x 6 drills renders in a few seconds; the file stays a size
a browser opens at once. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drillbook.history import recent_runs
from reports.html import render_html_report
from reports.results import RunResult
from tests.support.browser import chromium_available, screenshot
from tests.support.fleet_runs import DRILL_NAMES, fleet_history, fleet_run

CPU: list[float] = []  # the CPU seconds of the last best() call: far less sensitive to a loaded machine


def best(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeat`` calls (the CPU seconds of that call go to CPU[-1])."""
    times, result = [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(times)
    CPU.append(cpu)
    return wall, result


def without_members(run: RunResult) -> RunResult:
    scenarios = [dataclasses.replace(s, member=None, tags=[t for t in s.tags if not t.startswith("member:")])
                 for s in run.scenarios]
    return dataclasses.replace(run, scenarios=scenarios)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--drills", type=int, default=6)
    parser.add_argument("--history", type=int, default=11)
    args = parser.parse_args()
    drills = list(DRILL_NAMES)[: args.drills]
    run = fleet_run(args.members, drills, run=args.history)
    history = fleet_history(args.members, drills, runs=args.history)
    print(f"fleet: {args.members} members x {len(drills)} drills = {len(run.scenarios)} scenarios, "
          f"{args.history} earlier runs; load average {os.getloadavg()[0]:.2f}")

    seconds, html = best(lambda: render_html_report(run, history=history))
    fleet_cpu = CPU[-1]
    assert isinstance(html, str)
    size = len(html.encode("utf-8"))
    print(f"render with fleet overview:    {seconds:6.2f} s (CPU {CPU[-1]:.2f} s)  {size:>11,} bytes "
          f"({size / 2**20:.1f} MiB)")
    plain_run = without_members(run)
    plain_s, plain = best(lambda: render_html_report(plain_run))
    assert isinstance(plain, str)
    plain_size = len(plain.encode("utf-8"))
    print(f"render without members:        {plain_s:6.2f} s (CPU {CPU[-1]:.2f} s)  {plain_size:>11,} bytes "
          f"(overview adds {fleet_cpu - CPU[-1]:.2f} s CPU, {(size - plain_size) / 2**10:,.0f} KiB)")
    start = html.index('<section id="fleet">')
    section = html[start:html.index("</section>", start)]
    print(f"fleet overview section alone:            {len(section.encode()):>11,} bytes")

    with tempfile.TemporaryDirectory(prefix="drillbook-bench-") as tmp:
        root = Path(tmp)
        for earlier in history:
            (root / earlier.run_id).mkdir()
            earlier.write(root / earlier.run_id / "results.json")
        one = (root / history[-1].run_id / "results.json").stat().st_size
        here = root / "this-run"
        here.mkdir()
        read_s, found = best(lambda: recent_runs(here, limit=args.history), repeat=2)
        print(f"read {args.history} earlier results.json:    {read_s:6.2f} s (CPU {CPU[-1]:.2f} s)  "
              f"({one:,} bytes each)")
        assert len(getattr(found, "runs", ())) == args.history

        if chromium_available():
            page = root / "report.html"
            page.write_text(html, encoding="utf-8")
            blank = root / "blank.html"
            blank.write_text("<!DOCTYPE html><title>-</title>", encoding="utf-8")
            png = root / "report.png"
            start_s, _ = best(lambda: screenshot(blank, png), repeat=1)
            load_s, _ = best(lambda: screenshot(page, png, timeout=600), repeat=1)
            print(f"chromium opens and draws it:   {load_s:6.2f} s  (a blank page: {start_s:.2f} s)")
        else:
            print("chromium not installed: load time not measured")


if __name__ == "__main__":
    main()
