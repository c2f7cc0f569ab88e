"""What a run recorded: the data every report writer reads.

The runner's pytest plugin builds these while scenarios run and writes
``results.json`` into the run directory; reports read it back. Reports never
run checks.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.files import write_atomic
from checks.strict_json import loads_strict
from checks.verdict import NOT_CHECKED, Outcome, Verdict, worst

CADENCES = ("continuous", "daily", "weekly", "monthly", "quarterly", "annually")


@dataclass
class StepResult:
    keyword: str
    text: str
    # "passed" | "failed" | "error" | "undefined" (from the verdicts the step recorded; "error" also
    # for a step never reached because an earlier one stopped the scenario: never "skipped").
    status: str
    duration_s: float = 0.0


@dataclass
class ScenarioResult:
    """One executed scenario with every verdict its steps recorded."""

    nodeid: str
    feature: str
    feature_path: str
    scenario: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    failure: str | None = None  # an exception that was not a verdict (a bug, a bad step)
    started_at: str = ""
    duration_s: float = 0.0
    member: str | None = None  # the fleet member this scenario ran for (None outside fleet runs)

    @property
    def scenario_id(self) -> str | None:
        return _tag_value(self.tags, "id")

    @property
    def display_id(self) -> str | None:
        """``BKP-01[orders-eu]`` for a fleet member's scenario, ``BKP-01`` otherwise."""
        base = self.scenario_id
        if base is None or self.member is None:
            return base
        return f"{base}[{self.member}]"

    @property
    def cadences(self) -> list[str]:
        return [t for t in self.tags if t in CADENCES]

    @property
    def pack(self) -> str | None:
        """The product pack (``features/packs/<product>/``) or the area folder."""
        parts = Path(self.feature_path).parts
        if "packs" in parts:
            index = parts.index("packs")
            if index + 1 < len(parts):
                return parts[index + 1]
        return None

    @property
    def area(self) -> str:
        parts = Path(self.feature_path).parts
        if "features" in parts:
            index = parts.index("features")
            if index + 1 < len(parts) - 1:
                return parts[index + 1]
        return Path(self.feature_path).parent.name or "features"

    @property
    def outcome(self) -> Outcome:
        """The worst verdict; an error when a step raised something that is not a verdict.

        The ``not checked`` verdicts of the steps a stop left are listed but do not decide the
        outcome: the step that stopped the scenario does. A restore that failed is a failed
        drill, not one that "could not be checked" because the checks after it never ran.
        """
        checked = [v for v in self.verdicts if v.id != NOT_CHECKED]
        if self.failure is not None and not any(v.counts_as_fail() for v in checked):
            return Outcome.ERROR
        found = worst([v.outcome for v in checked])
        if found is None or (found is Outcome.PASSED and len(checked) < len(self.verdicts)):
            # A scenario that recorded nothing proved nothing, and one that left steps
            # unchecked with nothing to show why proved too little: never a pass.
            return Outcome.ERROR
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "feature": self.feature,
            "feature_path": self.feature_path,
            "scenario": self.scenario,
            "description": self.description,
            "tags": list(self.tags),
            "id": self.scenario_id,
            "cadences": self.cadences,
            "pack": self.pack,
            "outcome": self.outcome.value,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "steps": [s.__dict__ for s in self.steps],
            "failure": self.failure,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 6),
            "member": self.member,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        member = data.get("member")
        if member is not None and not isinstance(member, str):
            # Read back from files other runs wrote: a member becomes part of ids and keys.
            raise ValueError(f"scenario {data.get('nodeid')!r}: `member` must be a string or null, "
                             f"got {type(member).__name__}")
        return cls(
            nodeid=data["nodeid"],
            feature=data["feature"],
            feature_path=data["feature_path"],
            scenario=data["scenario"],
            description=data.get("description", ""),
            tags=list(data.get("tags", [])),
            verdicts=[Verdict.from_dict(v) for v in data.get("verdicts", [])],
            steps=[StepResult(**s) for s in data.get("steps", [])],
            failure=data.get("failure"),
            started_at=data.get("started_at", ""),
            duration_s=float(data.get("duration_s", 0.0)),
            member=member,
        )


@dataclass
class RunResult:
    """A whole run: who, when, where, what version, and every scenario."""

    run_id: str
    started_at: str
    finished_at: str = ""
    drillbook_version: str = ""
    user: str = ""
    host: str = ""
    environment: str = ""
    environment_details: dict[str, str] = field(default_factory=dict)
    config_path: str | None = None
    command: str = ""
    strict: bool = False
    scenarios: list[ScenarioResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counter = Counter(s.outcome.value for s in self.scenarios)
        return {o.value: counter.get(o.value, 0) for o in Outcome}

    @property
    def passed(self) -> bool:
        return bool(self.scenarios) and not any(
            s.outcome.counts_as_fail(strict=self.strict) for s in self.scenarios
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "drillbook_version": self.drillbook_version,
            "user": self.user,
            "host": self.host,
            "environment": self.environment,
            "environment_details": dict(self.environment_details),
            "config_path": self.config_path,
            "command": self.command,
            "strict": self.strict,
            "counts": self.counts(),
            "passed": self.passed,
            "scenarios": [s.to_dict() for s in self.scenarios],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            run_id=data["run_id"],
            started_at=data["started_at"],
            finished_at=data.get("finished_at", ""),
            drillbook_version=data.get("drillbook_version", ""),
            user=data.get("user", ""),
            host=data.get("host", ""),
            environment=data.get("environment", ""),
            environment_details=dict(data.get("environment_details", {})),
            config_path=data.get("config_path"),
            command=data.get("command", ""),
            strict=bool(data.get("strict", False)),
            scenarios=[ScenarioResult.from_dict(s) for s in data.get("scenarios", [])],
        )

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                     phase="writing the run's results")

    @classmethod
    def read(cls, path: Path) -> RunResult:
        # Read back by history, the ledger and evidence export: a repeated key is refused
        # (DuplicateKeyError, a ValueError naming it), never resolved to whichever came last.
        text = path.read_text(encoding="utf-8")
        with collector_paused():
            return cls.from_dict(loads_strict(text))


def _tag_value(tags: list[str], key: str) -> str | None:
    prefix = f"{key}:"
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return None


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a block that allocates a lot and keeps little.

    Reading a fleet run's results (3,000 scenarios) or building its report allocates millions
    of objects while millions more stay alive: every generation-2 pass walks all of them.
    Measured at 500 members x 6 drills: reading 11 earlier runs took 3.6 s of CPU with the
    collector and 1.8 s without; rendering the report with them, 3.6 s and 2.1 s. What is
    allocated here is acyclic and freed by reference counting; any cycle waits for the next pass.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
