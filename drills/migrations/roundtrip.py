"""The up→down→up round trip, with a schema snapshot (:mod:`checks.schema`) at every version."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from checks.redact import redact
from checks.schema import SchemaDiff, SchemaSnapshot, diff_schemas
from checks.verdict import Verdict

from .model import Direction, LayoutError, MigrationError, MigrationFailed, MigrationSet
from .replay import MigrationReplay, StepRun


@dataclass
class Attribution:
    """A schema difference that first appeared after one step of the round trip."""

    phase: str
    version: str
    file: str | None
    empty_file: bool
    diff: SchemaDiff

    def to_evidence(self) -> dict[str, Any]:
        return {"phase": self.phase, "version": self.version, "file": self.file,
                "empty_file": self.empty_file, "differences": self.diff.lines()}


@dataclass
class RoundTripResult:
    """Fingerprints by version for each pass, and what differed where."""

    first_up: dict[str, str] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)
    second_up: dict[str, str] = field(default_factory=dict)
    attributions: list[Attribution] = field(default_factory=list)
    steps: list[StepRun] = field(default_factory=list)
    failure: MigrationError | None = None
    head: SchemaSnapshot | None = None
    # The first pass's snapshot at each version ("0" = before the first step).
    snapshots: dict[str, SchemaSnapshot] = field(default_factory=dict)

    def to_evidence(self) -> dict[str, Any]:
        return {
            "fingerprints": {"up": self.first_up, "down": self.down, "up_again": self.second_up},
            "differences": [a.to_evidence() for a in self.attributions],
            "steps": [s.to_evidence() for s in self.steps],
            "failure": redact(str(self.failure)) if self.failure else None,
        }


ZERO = "0"
# Tools whose migrations go one way by design: a round trip does not apply to them.
UP_ONLY_LAYOUTS = frozenset({"prisma", "atlas"})
# Where each tool keeps a step's way down, for the "no down migration" hint.
_DOWN_HINTS = {
    "liquibase": "add a `--rollback` to each changeset, or drop --round-trip",
    "sqitch": "add the revert/ script of each change, or drop --round-trip",
    "goose": "add a `-- +goose Down` section to each file, or drop --round-trip",
    "dbmate": "add a `-- migrate:down` section to each file, or drop --round-trip",
    "diesel": "add the down.sql of each step, or drop --round-trip",
}


def _up_only(migrations: MigrationSet) -> bool:
    layouts = str(migrations.layout).split("+")
    return bool(migrations.layout) and all(part in UP_ONLY_LAYOUTS for part in layouts)


def round_trip(replay: MigrationReplay, *, ignore_tables: Iterable[str] = ()) -> RoundTripResult:
    """Up to head, down to zero, up again; snapshot at every version and attribute differences.

    Comparisons: after each down step, the schema must equal the first pass at
    the version below; after each step of the second up, it must equal the first
    pass at that version. A difference is attributed to the step after which it
    first appeared (it is not repeated for every later step it survives).
    """
    ignored = list(ignore_tables)
    result = RoundTripResult()
    versioned = replay.migrations.versioned()
    replay.preflight(versioned, downs=True)
    states = result.snapshots

    def take() -> SchemaSnapshot:
        return replay.snapshot().without_tables(ignored)

    states[ZERO] = take()
    result.first_up[ZERO] = states[ZERO].digest()
    try:
        for migration in versioned:
            result.steps.append(replay.apply(migration, Direction.UP))
            states[migration.version] = take()
            result.first_up[migration.version] = states[migration.version].digest()
        result.head = states[versioned[-1].version] if versioned else states[ZERO]
        missing = [m for m in versioned if m.down is None]
        if missing:
            first = missing[-1]
            raise MigrationFailed(
                f"round trip impossible: {len(missing)} version(s) have no down migration, "
                f"first met going down: {replay.migrations.relative(first.up.path)} "
                f"(versions {', '.join(m.version for m in missing[:10])})",
                version=first.version, up_only=len(missing) == len(versioned) and _up_only(replay.migrations),
                hint=_DOWN_HINTS.get(str(replay.migrations.layout),
                                     "add the missing down files, or drop --round-trip"))
        previous: set[tuple[str, str, str, str]] = set()
        for index in range(len(versioned) - 1, -1, -1):
            migration = versioned[index]
            below = versioned[index - 1].version if index > 0 else ZERO
            result.steps.append(replay.apply(migration, Direction.DOWN))
            now = take()
            result.down[below] = now.digest()
            diff = diff_schemas(states[below], now, left_name=f"up at {below}",
                                right_name=f"after down {migration.version}")
            items = diff.items()
            new = items - previous
            if new:
                result.attributions.append(Attribution(
                    "down", migration.version, replay.migrations.relative(migration.down.path)
                    if migration.down else None, replay.script(migration.down).empty
                    if migration.down else False, _only(diff, new)))
            previous = items
        previous = set()
        for migration in versioned:
            result.steps.append(replay.apply(migration, Direction.UP))
            now = take()
            result.second_up[migration.version] = now.digest()
            diff = diff_schemas(states[migration.version], now, left_name=f"first up at {migration.version}",
                                right_name=f"second up at {migration.version}")
            items = diff.items()
            new = items - previous
            if new:
                result.attributions.append(Attribution(
                    "up again", migration.version, replay.migrations.relative(migration.up.path),
                    replay.script(migration.up).empty, _only(diff, new)))
            previous = items
    except MigrationError as exc:
        result.failure = exc
    return result


def _only(diff: SchemaDiff, wanted: set[tuple[str, str, str, str]]) -> SchemaDiff:
    """The part of a diff whose items are in ``wanted``."""
    def keep_key(kind: str, key: str) -> bool:
        return (kind, key, "", "") in wanted

    return SchemaDiff(
        diff.left_name, diff.right_name,
        tuple(k for k in diff.only_left if keep_key("only_left", k)),
        tuple(k for k in diff.only_right if keep_key("only_right", k)),
        tuple(c for c in diff.changed
              if any(item[0] == "changed" and item[1] == f"{c.key}.{c.attribute}" for item in wanted)),
    )


def round_trip_verdict(result: RoundTripResult, migrations: MigrationSet) -> Verdict:
    """Failed on a step failure or a difference after a non-empty step; warning when only
    empty down files (declared irreversible) leave a difference; passed otherwise."""
    check_id = "migrations.round_trip"
    evidence = {"directory": str(migrations.directory), "layout": migrations.layout,
                **result.to_evidence()}
    versions = len(migrations.versioned())
    if result.failure is not None:
        if result.failure.context.get("up_only"):
            return Verdict.not_applicable(
                check_id, f"no round trip: {migrations.layout} migrations have no way down by design "
                          f"(the replay up was checked; {versions} versions)", evidence=evidence)
        if isinstance(result.failure, LayoutError):
            return Verdict.error(check_id, str(result.failure), evidence=evidence)
        return Verdict.failed(check_id, f"round trip failed: {result.failure}", evidence=evidence)
    hard = [a for a in result.attributions if not a.empty_file]
    soft = [a for a in result.attributions if a.empty_file]

    def describe(items: list[Attribution]) -> str:
        parts = []
        for a in items[:4]:
            lines = a.diff.lines()
            parts.append(f"{a.phase} {a.version} ({a.file}): " + "; ".join(lines[:3])
                         + (f"; +{len(lines) - 3} more" if len(lines) > 3 else ""))
        return " | ".join(parts) + (f" | and {len(items) - 4} more steps" if len(items) > 4 else "")

    if hard:
        return Verdict.failed(
            check_id, f"round trip leaves a different schema: {describe(hard)}",
            measured=len(hard), expected="identical schema at every version", evidence=evidence)
    if soft:
        return Verdict.warning(
            check_id, f"round trip of {versions} versions is identical on the way up again, but "
                      f"{len(soft)} empty down file(s) leave the rolled-back schema different: "
                      f"{describe(soft)}",
            measured=len(soft), expected="identical schema at every version", evidence=evidence)
    head = result.first_up.get(migrations.versioned()[-1].version, "") if versions else ""
    return Verdict.passed(
        check_id, f"up → down → up over {versions} versions: the schema is identical at every version "
                  f"(head fingerprint {head[:12]})",
        measured=versions, expected="identical schema at every version", evidence=evidence)


