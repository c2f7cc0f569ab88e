"""Runs in, drill histories out: what a run puts in the cadence ledger and what the gate reads back.

- :func:`entries_for_run`: one entry per scenario, with its evidence digest and, in a fleet run,
  the member it ran against (ledger entry v2);
- :func:`append_run_once`: a run's batch, appended only if the ledger holds no entry of that run
  yet. ``drillbook report merge`` is the only ledger writer of a fleet run group and may run more
  than once (a retried merge, a sweeper after a crash); this makes every re-run a no-op;
- :func:`histories`: per drill *and member* (``FLT-01[db-042]``), the last run, its outcome and
  the last pass, which ``drillbook status`` and ``gate cadence`` hold against the cadence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from checks.cadence import DrillHistory, drill_key, shortest_cadence
from checks.verdict import Outcome, worst
from reports.ledger import Ledger, LedgerEntry, NewEntry, _canonical
from reports.results import RunResult, ScenarioResult


def entries_for_run(run: RunResult) -> list[NewEntry]:
    """One ledger entry per scenario of a finished run, in the run's scenario order."""
    found = []
    for scenario in run.scenarios:
        found.append(NewEntry(
            id=scenario.scenario_id, scenario=scenario.scenario,
            cadence=shortest_cadence(scenario.tags), pack=scenario.pack or scenario.area,
            outcome=scenario.outcome, run_id=run.run_id,
            time=scenario.started_at or run.started_at, duration_s=scenario.duration_s,
            evidence_sha256=scenario_digest(scenario), waiver=_waiver_of(scenario),
            member=scenario.member,
        ))
    return found


def append_run_once(ledger: Ledger, run: RunResult) -> list[LedgerEntry]:
    """Append ``run``'s batch unless the ledger already has an entry with its ``run_id``.

    Returns the appended entries, or [] when the run was in the ledger already (or had no
    scenario). The check and the append are one step on both stores: under the file lock
    locally; on S3 by reading every object between the listing and the object this batch
    creates, so a second merge racing the first finds its entries and appends nothing.
    """
    return ledger.append(entries_for_run(run), unless_run=run.run_id)


def scenario_digest(scenario: ScenarioResult) -> str:
    """SHA-256 of the scenario's canonical JSON (sorted keys, no spaces): its evidence digest."""
    return hashlib.sha256(_canonical(scenario.to_dict()).encode("utf-8")).hexdigest()


def _waiver_of(scenario: ScenarioResult) -> str | None:
    for verdict in scenario.verdicts:
        if verdict.outcome is Outcome.WAIVED:
            waiver = verdict.evidence.get("waiver")
            if isinstance(waiver, Mapping):
                return f"{waiver.get('id')} approved by {waiver.get('approver')} until {waiver.get('expiry')}"
    return None


def histories(entries: Iterable[LedgerEntry], cadences: Mapping[str, str | None] | None = None
              ) -> dict[str, DrillHistory]:
    """Per drill id and member, keyed ``FLT-01[db-042]`` (``BKP-01`` outside fleets): cadence,
    last run, its outcome, last pass.

    Rows of one run (outline examples) count as one run of the drill, with the worst outcome.
    ``cadences`` (from the features, by drill id) wins over the cadence the ledger recorded.
    """
    runs: dict[tuple[str, str | None], dict[str, list[LedgerEntry]]] = {}
    for entry in entries:
        if entry.id is None:
            continue
        runs.setdefault((entry.id, entry.member), {}).setdefault(entry.run_id, []).append(entry)
    found: dict[str, DrillHistory] = {}
    for (drill_id, member), by_run in runs.items():
        summary = []
        for run_id, rows in by_run.items():
            outcome = worst([r.outcome for r in rows])
            assert outcome is not None  # every run group holds at least one row
            summary.append((max(r.moment for r in rows), run_id, outcome, rows[-1].cadence))
        summary.sort(key=lambda s: (s[0], s[1]))
        last_time, last_run_id, last_outcome, recorded_cadence = summary[-1]
        passes = [s for s in summary if not s[2].counts_as_fail()]
        cadence = (cadences or {}).get(drill_id, recorded_cadence)
        found[drill_key(drill_id, member)] = DrillHistory(
            drill_id=drill_id, cadence=cadence, last_run=last_time, last_outcome=last_outcome,
            last_pass=passes[-1][0] if passes else None, last_run_id=last_run_id, member=member,
        )
    return found
