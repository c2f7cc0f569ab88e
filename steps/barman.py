"""Barman cloud archive continuity from the ``wals/`` listing (issue 16 item 4): drillbook's own count.

``barman-cloud-check-wal-archive`` answers another question (is the prefix empty enough for a new
server, design study A3), so the sentence counts the segments itself: from the oldest ``DONE``
backup's start to the newest segment, the first missing one named.
"""

from __future__ import annotations

from pytest_bdd import then

from checks.barman_info import CONTINUITY
from checks.verdict import Verdict
from drills.physical.barman_cloud import continuity

from .context import ScenarioState
from .guard import guarded


@then("the WAL archive has no gap since the oldest backup")
def wal_archive_continuous(drill_state: ScenarioState) -> None:
    """Every WAL segment from the oldest backup's start to the newest archived one is there."""
    def check() -> Verdict:
        spec = drill_state.store
        if spec is None or spec.kind != "barman-cloud":
            return Verdict.error(CONTINUITY, "the WAL archive continuity sentence needs a "
                                 '`kind = "barman-cloud"` store: `Given the backups in "NAME"` first')
        return continuity(spec)

    guarded(CONTINUITY, check)
