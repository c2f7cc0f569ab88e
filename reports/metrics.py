"""Prometheus textfile for node_exporter's textfile collector, built from the ledger.

Per drill id, labelled ``id``, ``cadence`` and ``pack`` (and ``member`` for a fleet member's drill:
each member is its own series, so one overdue member shows):

- ``drillbook_scenario_outcome{...,outcome="passed"}`` 1 for the last run's outcome, 0 for the others
- ``drillbook_drill_duration_seconds`` how long the last run of the drill took
- ``drillbook_last_success_timestamp_seconds`` Unix time of the last pass (0: never passed)
- ``drillbook_cadence_period_seconds`` how long a pass keeps the drill in cadence

so an overdue drill is one rule:
``time() - drillbook_last_success_timestamp_seconds > drillbook_cadence_period_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from checks.cadence import PERIODS
from checks.files import write_atomic
from checks.verdict import Outcome, worst
from reports.ledger import LedgerEntry
from reports.ledger_runs import histories


@dataclass(frozen=True)
class DrillMetrics:
    id: str
    cadence: str
    pack: str
    outcome: Outcome
    duration_s: float
    last_success: float
    period_s: float | None
    member: str | None = None


def drill_metrics(entries: Iterable[LedgerEntry],
                  cadences: Mapping[str, str | None] | None = None) -> list[DrillMetrics]:
    """One row per drill id that the ledger knows, sorted by id."""
    entries = list(entries)
    found = histories(entries, cadences)
    rows = []
    for _key, history in sorted(found.items()):
        last_rows = [e for e in entries if e.id == history.drill_id and e.member == history.member
                     and e.run_id == history.last_run_id]
        outcome = worst([e.outcome for e in last_rows]) or Outcome.ERROR
        cadence = history.cadence or ""
        rows.append(DrillMetrics(
            id=history.drill_id, member=history.member, cadence=cadence,
            pack=last_rows[-1].pack or "" if last_rows else "",
            outcome=outcome, duration_s=sum(e.duration_s for e in last_rows),
            last_success=history.last_pass.timestamp() if history.last_pass else 0.0,
            period_s=PERIODS[cadence].total_seconds() if cadence in PERIODS else None,
        ))
    return rows


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(row: DrillMetrics, **extra: str) -> str:
    member = {"member": row.member} if row.member is not None else {}
    pairs = {"id": row.id, **member, "cadence": row.cadence, "pack": row.pack, **extra}
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def render(rows: Iterable[DrillMetrics]) -> str:
    """The Prometheus text exposition format (0.0.4)."""
    rows = list(rows)
    lines = [
        "# HELP drillbook_scenario_outcome Outcome of the drill's last run (1 for that outcome).",
        "# TYPE drillbook_scenario_outcome gauge",
    ]
    for row in rows:
        for outcome in Outcome:
            value = 1 if outcome is row.outcome else 0
            lines.append(f"drillbook_scenario_outcome{_labels(row, outcome=outcome.value)} {value}")
    lines += ["# HELP drillbook_drill_duration_seconds Duration of the drill's last run.",
              "# TYPE drillbook_drill_duration_seconds gauge"]
    lines += [f"drillbook_drill_duration_seconds{_labels(r)} {_number(round(r.duration_s, 3))}"
              for r in rows]
    lines += ["# HELP drillbook_last_success_timestamp_seconds Unix time of the drill's last pass "
              "(0: never passed).",
              "# TYPE drillbook_last_success_timestamp_seconds gauge"]
    lines += [f"drillbook_last_success_timestamp_seconds{_labels(r)} {_number(r.last_success)}"
              for r in rows]
    lines += ["# HELP drillbook_cadence_period_seconds How long a pass keeps the drill in cadence.",
              "# TYPE drillbook_cadence_period_seconds gauge"]
    lines += [f"drillbook_cadence_period_seconds{_labels(r)} {_number(r.period_s)}"
              for r in rows if r.period_s is not None]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, entries: Iterable[LedgerEntry],
                   cadences: Mapping[str, str | None] | None = None) -> None:
    """Write atomically (temp file + rename) so the collector never reads half a file."""
    write_atomic(path, render(drill_metrics(entries, cadences)), phase="writing the metrics textfile")
