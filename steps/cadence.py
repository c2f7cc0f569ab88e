"""Cadence steps: has a drill passed recently enough? Reads the cadence ledger through the plugin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pytest_bdd import parsers, then

from checks.cadence import within_cadence
from checks.verdict import Verdict

from .guard import guarded


@then(parsers.parse("the drill `{drill_id}` passed within its cadence"))
def drill_within_cadence(drill_id: str, drillbook_ledger: Any) -> None:
    """The ledger holds a pass of that drill no older than its cadence (monthly: 31 days)."""

    def check() -> Verdict:
        return within_cadence(drillbook_ledger.history(drill_id), now=datetime.now(UTC))

    guarded("cadence.within", check)
