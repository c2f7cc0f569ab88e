"""Cadence: is a drill's last accepted run recent enough for its documented cadence?

Pure functions of a drill's history and ``now``. The history comes from the
cadence ledger (``reports/ledger.py``); nothing here reads files.

A run *counts as a pass* for cadence when its outcome counts as a pass in
ARCHITECTURE.md's table: passed, warning, not applicable, or waived (a waiver
is an approved acceptance of the risk, so it keeps the drill in cadence while
it is unexpired).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .verdict import Outcome, Verdict

# How long a pass keeps a drill in cadence. A month is 31 days and a quarter 92 so that a
# drill run on the same calendar day each period never turns overdue by a day's length.
PERIODS: dict[str, timedelta] = {
    "continuous": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=31),
    "quarterly": timedelta(days=92),
    "annually": timedelta(days=366),
}
# "due" starts this long before the deadline: time to schedule the drill.
DUE_WINDOWS: dict[str, timedelta] = {
    "continuous": timedelta(minutes=15),
    "daily": timedelta(hours=6),
    "weekly": timedelta(days=1),
    "monthly": timedelta(days=5),
    "quarterly": timedelta(days=14),
    "annually": timedelta(days=30),
}


class DrillState(enum.StrEnum):
    """Where a drill stands against its cadence."""

    OK = "ok"
    DUE = "due"
    OVERDUE = "overdue"
    NEVER_RUN = "never run"
    FAILING = "failing"


@dataclass(frozen=True)
class DrillHistory:
    """What the ledger knows about one drill id, on one fleet member (``member``) or outside fleets.

    In a fleet every member keeps its own cadence: db-042 can be overdue while the other members
    of the same drill are fine, so a member's history never borrows another member's pass.
    """

    drill_id: str
    cadence: str | None
    last_run: datetime | None = None
    last_outcome: Outcome | None = None
    last_pass: datetime | None = None
    last_run_id: str | None = None
    member: str | None = None

    @property
    def display_id(self) -> str:
        """``FLT-01[db-042]`` for a member, ``FLT-01`` outside fleets (the name every report uses)."""
        return drill_key(self.drill_id, self.member)


def drill_key(drill_id: str, member: str | None) -> str:
    """The name of a drill on a member: ``FLT-01[db-042]``; the bare id without a member."""
    return f"{drill_id}[{member}]" if member is not None else drill_id


def shortest_cadence(tags: Iterable[str]) -> str | None:
    """The most frequent cadence among a scenario's tags (a drill tagged daily and weekly is daily)."""
    found = [t for t in tags if t in PERIODS]
    return min(found, key=lambda c: PERIODS[c]) if found else None


def due_at(history: DrillHistory) -> datetime | None:
    """When the next pass is needed: last pass + period; None without a cadence or a pass."""
    if history.cadence is None or history.last_pass is None:
        return None
    return history.last_pass + PERIODS[history.cadence]


def drill_state(history: DrillHistory, *, now: datetime) -> DrillState:
    """ok / due / overdue / never run / failing. Overdue outranks failing: it is what the gate blocks on."""
    if history.last_run is None:
        return DrillState.NEVER_RUN
    deadline = due_at(history)
    if history.cadence is not None and (deadline is None or now > deadline):
        # Ran, but no pass inside the period (or never passed at all).
        return DrillState.OVERDUE
    if history.last_outcome is not None and history.last_outcome.counts_as_fail():
        return DrillState.FAILING
    window = DUE_WINDOWS.get(history.cadence or "")
    if deadline is not None and window is not None and now >= deadline - window:
        return DrillState.DUE
    return DrillState.OK


def within_cadence(history: DrillHistory, *, now: datetime) -> Verdict:
    """The verdict behind "the drill `BKP-01` passed within its cadence"."""
    check = "cadence.within"
    ident = history.display_id
    evidence = {
        "drill": history.drill_id,
        "cadence": history.cadence,
        "last_run": history.last_run.isoformat() if history.last_run else None,
        "last_run_id": history.last_run_id,
        "last_outcome": history.last_outcome.value if history.last_outcome else None,
        "last_pass": history.last_pass.isoformat() if history.last_pass else None,
        "now": now.isoformat(),
        **({"member": history.member} if history.member is not None else {}),
    }
    if history.last_run is None:
        return Verdict.failed(check, f"drill {ident} has never run: the ledger has no entry for it",
                              measured=None, expected="a pass within its cadence",
                              evidence={**evidence,
                                        "hint": f"run it: drillbook run --tags id:{history.drill_id}"})
    if history.cadence is None:
        return Verdict.error(
            check, f"drill {ident} has no cadence tag (@daily, @weekly, @monthly, ...): "
            "its cadence cannot be checked",
            evidence={**evidence, "hint": "tag the scenario with its cadence"})
    period = PERIODS[history.cadence]
    expected = f"a pass within the last {_days(period)}"
    if history.last_pass is None:
        return Verdict.failed(
            check, f"drill {ident} ({history.cadence}) has never passed; last run "
            f"{history.last_run.isoformat()} was {evidence['last_outcome']}",
            measured=None, expected=expected, evidence=evidence)
    age = now - history.last_pass
    deadline = history.last_pass + period
    ok = now <= deadline
    message = (f"drill {ident} ({history.cadence}) last passed {history.last_pass.isoformat()}, "
               f"{_days(age)} ago; due by {deadline.isoformat()}")
    if not ok:
        message += f" — overdue by {_days(now - deadline)}"
    return Verdict.compare(check, measured=age, expected=expected, ok=ok, message=message,
                           evidence={**evidence, "due_at": deadline.isoformat()})


def _days(value: timedelta) -> str:
    days = value.total_seconds() / 86400
    if days >= 1:
        return f"{days:.1f} days"
    return f"{value.total_seconds() / 3600:.1f} hours"
