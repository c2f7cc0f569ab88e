"""Per-scenario state shared between steps, and the sentence parameter types."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from checks.durations import parse_duration
from drills.restore import RestoreDrill, RestoreResult
from drills.targets import PostgresTarget, StoreSpec

# Converters for parsers.parse: {age:Duration} reads "26h", "30 minutes", "1h30m".
PARSE_TYPES: dict[str, Any] = {"Duration": parse_duration}


@dataclass
class ScenarioState:
    """What earlier steps of one scenario found, for the later ones."""

    store: StoreSpec | None = None
    subject: PostgresTarget | None = None
    drill: RestoreDrill | None = None
    restored: RestoreResult | None = None
    backup_time: datetime | None = None
    backup_times: list[datetime] = field(default_factory=list)
    database: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def require_restore(self) -> RestoreResult:
        if self.restored is None or self.restored.target is None:
            raise LookupError(
                "no restored database in this scenario: add "
                "`When the newest backup is restored into a scratch database` before this step"
            )
        return self.restored


@pytest.fixture
def drill_state() -> Iterator[ScenarioState]:
    """Fresh per scenario; a restore drill it holds is cleaned up when the scenario ends."""
    state = ScenarioState()
    try:
        yield state
    finally:
        if state.drill is not None:
            state.drill.close()
