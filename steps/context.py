"""Per-scenario state shared between steps, the sentence parameter types, and what a step may
know of the scenario around it: the sentences of its later steps (a restore must know the RTO a
later ``Then`` states before it starts) and the configured ``[run]`` timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.durations import parse_duration
from drills.physical import PhysicalRestore
from drills.restore import RestoreDrill, RestoreResult
from drills.targets import PostgresTarget, StoreSpec

_STEP_TEXTS = pytest.StashKey[list[str]]()

# Converters for parsers.parse: {age:Duration} reads "26h", "30 minutes", "1h30m".
PARSE_TYPES: dict[str, Any] = {"Duration": parse_duration}


@dataclass
class ScenarioState:
    """What earlier steps of one scenario found, for the later ones."""

    store: StoreSpec | None = None
    subject: PostgresTarget | None = None
    drill: RestoreDrill | PhysicalRestore | None = None
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


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    """Keep the scenario's step sentences, for steps that must look ahead (see :func:`step_texts`)."""
    request.node.stash[_STEP_TEXTS] = [step.name for step in scenario.steps]


def step_texts(request: pytest.FixtureRequest) -> list[str]:
    """Every step sentence of the running scenario (without its keyword), in order."""
    texts: list[str] = request.node.stash.get(_STEP_TEXTS, [])
    return texts


def configured_timeout(request: pytest.FixtureRequest, key: str) -> timedelta | None:
    """``[run] <key>`` of the run's drillbook.toml, or None (no config, or the key is unset)."""
    config_path = request.config.getoption("--drillbook-config", None)
    if not config_path:
        return None
    from drills.config import load_config  # validated at start-up already: this re-read cannot fail late

    return load_config(Path(config_path)).timeouts.get(key)
