"""Upgrade plans (read from a feature's table or a TOML plan file) and the upgrade rehearsal.

**Plans.** :func:`load_plan_file` reads a plan file; :func:`steps_from_table`
and :func:`rules_from_table` read a feature's data tables. Both validate
strictly: an unknown key or column, a bad flag, estimate or version is a
:class:`~checks.upgrades.PlanError` naming the file and the step. The checks of
a plan live in :mod:`checks.upgrades`. A plan file::

    name = "sandbox upgrade"
    installed = "1.4.0"               # the version running now (--from overrides it)
    target = "2.0.0"                  # the release this plan prepares (--to overrides it)
    window = "15m"                    # the declared downtime window
    components = ["postgres", "app"]  # a step naming another component is an error

    [versions]
    max_major_jump = 1                # no skipped major version
    allow_prerelease = false
    minimum_installed = { "2" = "1.4.0" }   # to reach 2.x, run at least 1.4.0 first

    [[steps]]
    name = "migrate database"
    component = "postgres"
    destructive = true
    rollback = "restore the verified backup"
    downtime = true
    estimate = "5m"
    rehearse = "migrate"              # restore | migrate | health: what the rehearsal runs

    [[rules]]
    before = "verify backup"
    after = "migrate database"
    because = "a backup must be completed and verified before maintenance"

**Rehearsal** (:class:`UpgradeRehearsal`): on scratch only, the plan's
database part for real, in plan order — ``restore`` restores the newest backup
(:class:`drills.restore.RestoreDrill`), ``migrate`` applies the migrations
the restored copy's history lacks (:class:`drills.migrations.MigrationReplay`),
``health`` runs the health queries. Each step is journaled and timed; a
failing step stops the rehearsal and is named. Cleanup (the scratch database,
temp files) runs in ``close()``.
"""

from __future__ import annotations

import hashlib
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from checks.durations import parse_duration
from checks.errors import BackupUnreadable, DrillbookError, NoBackupFound, RestoreFailed
from checks.migration_history import compare_history, read_history
from checks.postgres import COMPARATORS, query_value
from checks.redact import redact
from checks.upgrades import (
    OrderRule,
    PlanError,
    PlanStep,
    RehearsedStep,
    UpgradePlan,
    Version,
    VersionError,
    VersionPolicy,
)

from .migrations import MigrationError, MigrationReplay, MigrationSet
from .restore import RestoreDrill, RestoreResult
from .targets import Journal, PostgresTarget, ScratchPostgres, StoreSpec

REHEARSAL_ACTIONS = ("restore", "migrate", "health")
_TOP_KEYS = {"name", "installed", "target", "window", "components", "steps", "rules", "versions"}
_STEP_KEYS = {"name", "component", "destructive", "rollback", "downtime", "estimate", "rehearse"}
_RULE_KEYS = {"before", "after", "because"}
_VERSION_KEYS = {"max_major_jump", "minimum_installed", "allow_prerelease"}
_TRUE = {"yes", "y", "true", "x", "✓"}
_FALSE = {"no", "n", "false", "", "-"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpgradeRequest:
    """The versions a run was given (``drillbook gate pre-upgrade --to X [--from Y]``)."""

    target: Version | None = None
    installed: Version | None = None


# -------------------------------------------------------------------------- reading plans


def parse_flag(text: str, *, where: str) -> bool:
    """``yes``/``no`` (also true/false, x, -, empty) as a feature table writes them."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise PlanError(f"{where}: {text!r} is not yes or no")


def parse_estimate(text: str, *, where: str) -> timedelta | None:
    """``5m``, ``1h30m``; ``-`` or empty for none."""
    if text.strip() in ("", "-"):
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise PlanError(f"{where}: {exc}") from exc


def parse_version(text: str, *, where: str) -> Version:
    try:
        return Version.parse(text)
    except VersionError as exc:
        raise VersionError(f"{where}: {exc.message}", version=text) from exc


def _rehearse(value: str | None, where: str) -> str | None:
    if value is None or value.strip() in ("", "-"):
        return None
    action = value.strip().lower()
    if action not in REHEARSAL_ACTIONS:
        raise PlanError(f"{where}: rehearse {value!r} is not one of {', '.join(REHEARSAL_ACTIONS)}")
    return action


_COLUMNS = ("step", "component", "destructive", "rollback", "downtime", "estimate", "rehearse")


def steps_from_table(rows: Sequence[Sequence[str]], *, source: str = "the feature") -> tuple[PlanStep, ...]:
    """A feature's plan table: ``| step | component | destructive | rollback | downtime | estimate |``.

    ``step`` and ``component`` are required columns; the others default to no / none.
    """
    if not rows:
        raise PlanError(f"{source}: the plan table is empty")
    header = [h.strip().lower() for h in rows[0]]
    unknown = [h for h in header if h not in _COLUMNS]
    if unknown:
        raise PlanError(f"{source}: unknown plan column(s) {', '.join(unknown)} "
                        f"(known: {', '.join(_COLUMNS)})")
    for required in ("step", "component"):
        if required not in header:
            raise PlanError(f"{source}: the plan table needs a `{required}` column")
    steps = []
    for position, row in enumerate(rows[1:], start=1):
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        name = cells["step"]
        where = f"{source}, step {position} `{name}`"
        if not name:
            raise PlanError(f"{source}, step {position}: the step has no name")
        if not cells["component"]:
            raise PlanError(f"{where}: no component")
        steps.append(PlanStep(
            position=position, name=name, component=cells["component"],
            destructive=parse_flag(cells.get("destructive", ""), where=f"{where}, destructive"),
            rollback=cells.get("rollback") or None,
            downtime=parse_flag(cells.get("downtime", ""), where=f"{where}, downtime"),
            estimate=parse_estimate(cells.get("estimate", ""), where=f"{where}, estimate"),
            rehearse=_rehearse(cells.get("rehearse"), where),
        ))
    return tuple(steps)


def rules_from_table(rows: Sequence[Sequence[str]], *, source: str = "the feature") -> tuple[OrderRule, ...]:
    """``| before | after | because |`` (``because`` optional)."""
    if not rows:
        return ()
    header = [h.strip().lower() for h in rows[0]]
    if not {"before", "after"} <= set(header) or not set(header) <= _RULE_KEYS:
        raise PlanError(f"{source}: the rules table has columns {' | '.join(header)}; "
                        "use | before | after | because |")
    rules = []
    for number, row in enumerate(rows[1:], start=1):
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        if not cells["before"] or not cells["after"]:
            raise PlanError(f"{source}, rule {number}: both `before` and `after` are needed")
        rules.append(OrderRule(cells["before"], cells["after"], cells.get("because", "")))
    return tuple(rules)


def load_plan_file(path: Path) -> UpgradePlan:
    """Read and validate a TOML plan file; errors name the file and the step."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror}", file=str(path)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{path}: not UTF-8 text (byte {exc.start})", file=str(path)) from exc
    plan = parse_plan(text, source=str(path))
    return replace(plan, source_sha256=hashlib.sha256(raw).hexdigest())


def parse_plan(text: str, *, source: str) -> UpgradePlan:
    """Validate plan TOML text (see the module docstring for the keys)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source}: not valid TOML: {exc}", file=source) from exc
    _reject_unknown(data, _TOP_KEYS, source)
    name = _str(data.get("name", Path(source).stem), f"{source}: `name`")
    components = None
    if "components" in data:
        raw = data["components"]
        if not isinstance(raw, list) or not all(isinstance(c, str) and c for c in raw):
            raise PlanError(f"{source}: `components` must be a list of names")
        components = frozenset(raw)
    window = None
    if "window" in data:
        window = parse_estimate(_str(data["window"], f"{source}: `window`"), where=f"{source}: `window`")
    installed = None
    if "installed" in data:
        installed = parse_version(_str(data["installed"], f"{source}: `installed`"),
                                  where=f"{source}: `installed`")
    target = None
    if "target" in data:
        target = parse_version(_str(data["target"], f"{source}: `target`"), where=f"{source}: `target`")
    policy = _policy(data.get("versions", {}), source)
    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PlanError(f"{source}: the plan needs at least one [[steps]] entry")
    steps = []
    for position, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict):
            raise PlanError(f"{source}: step {position} must be a table")
        named = f" `{raw['name']}`" if isinstance(raw.get("name"), str) else ""
        label = f"{source}, step {position}{named}"
        _reject_unknown(raw, _STEP_KEYS, label)
        step_name = _str(raw.get("name"), f"{label}: `name`")
        component = _str(raw.get("component"), f"{label}: `component`")
        rollback = raw.get("rollback")
        steps.append(PlanStep(
            position=position, name=step_name, component=component,
            destructive=_bool(raw.get("destructive", False), f"{label}: `destructive`"),
            rollback=_str(rollback, f"{label}: `rollback`") if rollback is not None else None,
            downtime=_bool(raw.get("downtime", False), f"{label}: `downtime`"),
            estimate=(parse_estimate(_str(raw["estimate"], f"{label}: `estimate`"),
                                     where=f"{label}: `estimate`") if "estimate" in raw else None),
            rehearse=_rehearse(_str(raw["rehearse"], f"{label}: `rehearse`") if "rehearse" in raw else None,
                               label),
        ))
    rules = []
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise PlanError(f"{source}: `rules` must be [[rules]] entries")
    for number, raw in enumerate(raw_rules, start=1):
        where = f"{source}, rule {number}"
        if not isinstance(raw, dict):
            raise PlanError(f"{where} must be a table")
        _reject_unknown(raw, _RULE_KEYS, where)
        rules.append(OrderRule(_str(raw.get("before"), f"{where}: `before`"),
                               _str(raw.get("after"), f"{where}: `after`"),
                               _str(raw.get("because", ""), f"{where}: `because`", empty=True)))
    return UpgradePlan(name=name, steps=tuple(steps), rules=tuple(rules), components=components,
                       window=window, installed=installed, policy=policy, source=source, target=target)


def _policy(raw: Any, source: str) -> VersionPolicy:
    where = f"{source}: [versions]"
    if not isinstance(raw, dict):
        raise PlanError(f"{where} must be a table")
    _reject_unknown(raw, _VERSION_KEYS, where)
    jump = raw.get("max_major_jump", 1)
    if not isinstance(jump, int) or isinstance(jump, bool) or jump < 1:
        raise PlanError(f"{where}: `max_major_jump` must be a whole number >= 1, got {jump!r}")
    minimums: dict[int, Version] = {}
    table = raw.get("minimum_installed", {})
    if not isinstance(table, dict):
        raise PlanError(f"{where}: `minimum_installed` must map a major version to a version")
    for major, version in table.items():
        if not str(major).isdigit():
            raise PlanError(f"{where}: `minimum_installed` key {major!r} is not a major version number")
        minimums[int(major)] = parse_version(_str(version, f"{where}: `minimum_installed.{major}`"),
                                             where=f"{where}: `minimum_installed.{major}`")
    allow_pre = _bool(raw.get("allow_prerelease", False), f"{where}: `allow_prerelease`")
    return VersionPolicy(max_major_jump=jump, minimum_installed=minimums, allow_prerelease=allow_pre)


def _reject_unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise PlanError(f"{where}: unknown key `{key}` (allowed here: {', '.join(sorted(allowed))})")


def _str(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise PlanError(f"{where} must be a non-empty string, got {value!r}")
    return value.strip()


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PlanError(f"{where} must be true or false, got {value!r}")
    return value


# -------------------------------------------------------------------------- rehearsal


@dataclass(frozen=True)
class HealthQuery:
    """A documented query and what it must return (``SELECT count(*) FROM signatures`` > 0)."""

    sql: str
    comparison: str
    value: float

    @classmethod
    def parse(cls, query: str, expect: str) -> HealthQuery:
        """``expect`` reads ``> 0``, ``= 1``, ``>= 10``, ``more than 0`` or ``exactly 1``."""
        symbols = {">": "more than", ">=": "at least", "=": "exactly", "==": "exactly", "<=": "at most",
                   "<": "less than"}
        text = expect.strip()
        for word in sorted([*symbols, *COMPARATORS], key=len, reverse=True):
            if text.startswith(word):
                number = text[len(word):].strip()
                try:
                    value = float(number)
                except ValueError:
                    break
                return cls(query.strip(), symbols.get(word, word), value)
        raise PlanError(f"health check {query!r}: expected value {expect!r} must read like `> 0` or `= 1`")


@dataclass
class RehearsalResult:
    """What the rehearsal executed, in plan order, and what it could not."""

    steps: list[RehearsedStep] = field(default_factory=list)
    not_rehearsed: list[PlanStep] = field(default_factory=list)
    restore: RestoreResult | None = None
    pending: list[str] = field(default_factory=list)
    journal: Journal = field(default_factory=Journal)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def estimated_downtime_not_rehearsed(self) -> dict[str, timedelta]:
        """Downtime steps the rehearsal cannot execute (the application's), at their estimates."""
        return {s.name: s.estimate or timedelta(0) for s in self.not_rehearsed if s.downtime}

    def evidence(self) -> dict[str, Any]:
        return {"steps": [s.to_evidence() for s in self.steps],
                "not_rehearsed": [s.name for s in self.not_rehearsed],
                "pending_migrations": self.pending,
                "restore": self.restore.evidence() if self.restore else None,
                "journal": self.journal.entries}


class UpgradeRehearsal:
    """Execute the database part of a plan on scratch: restore, migrate, health. A context manager."""

    def __init__(self, plan: UpgradePlan, *, store: StoreSpec, scratch: ScratchPostgres,
                 migrations: MigrationSet | None, health: Sequence[HealthQuery] = (),
                 database: str | None = None, settings: Mapping[str, str] | None = None,
                 history_table: str | None = None, progress: Progress | None = None) -> None:
        self.plan = plan
        self.store = store
        self.scratch = scratch
        self.migrations = migrations
        self.health = list(health)
        self.database = database
        self.settings = dict(settings or {})
        self.history_table = history_table
        self.progress = progress or (lambda _m: None)
        self.result = RehearsalResult()
        self._restore: RestoreDrill | None = None
        self._target: PostgresTarget | None = None

    def __enter__(self) -> UpgradeRehearsal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> RehearsalResult:
        """Each rehearsable step in plan order; stops at the first failing step."""
        for step in self.plan.steps:
            if step.rehearse is None:
                self.result.not_rehearsed.append(step)
                continue
            if not self.result.ok:
                self.result.not_rehearsed.append(step)
                continue
            self.progress(f"rehearsing {step.label()} ({step.rehearse})")
            started = datetime.now(UTC).isoformat()
            t0 = time.perf_counter()
            try:
                detail = self._action(step)
                ok = True
            except (MigrationError, RestoreFailed, BackupUnreadable, NoBackupFound, _StepFailed) as exc:
                ok, detail = False, redact(str(exc))
            duration = time.perf_counter() - t0
            self.result.journal.add(f"{step.rehearse}: {step.name}", "ok" if ok else "failed", started,
                                    duration, detail=detail)
            self.result.steps.append(RehearsedStep(step.name, step.rehearse, step.downtime, duration, ok,
                                                   detail))
        return self.result

    def _action(self, step: PlanStep) -> str:
        if step.rehearse == "restore":
            return self._do_restore()
        target = self._target
        if target is None:
            raise _StepFailed(f"{step.label()} needs a restored database: put a step with "
                              "`rehearse = restore` before it")
        if step.rehearse == "migrate":
            return self._do_migrate(target)
        return self._do_health(target)

    def _do_restore(self) -> str:
        if self._restore is not None:
            # A second restore step starts over from the backup: the first copy is dropped now.
            previous, self._restore, self._target = self._restore, None, None
            previous.close()
        drill = RestoreDrill(self.store, self.scratch, database=self.database, progress=self.progress)
        self._restore = drill
        restored = drill.run()
        self.result.restore = restored
        self._target = restored.target
        return f"{restored.backup.key} ({restored.dump_format}) restored in {restored.rto_s:.2f}s"

    def _do_migrate(self, target: PostgresTarget) -> str:
        if self.migrations is None:
            raise _StepFailed('no migrations named: add `Given the migrations in "DIR"`')
        migrations = self.migrations
        with psycopg.connect(target.dsn, connect_timeout=10, autocommit=True) as conn:
            history = read_history(conn, table=self.history_table)
        report = compare_history(history, migrations.for_history())
        if report.missing or report.edited or report.out_of_order:
            raise _StepFailed("the restored copy's migration history disagrees with the files: "
                              + "; ".join(report.details or [f"missing {report.missing}, edited "
                                                             f"{report.edited}, out of order "
                                                             f"{report.out_of_order}"]))
        pending = [m for m in migrations.versioned() if ".".join(str(p) for p in m.key) in report.pending]
        self.result.pending = [m.version for m in pending]
        with MigrationReplay(migrations, target, settings=self.settings, progress=self.progress) as replay:
            runs = replay.up(pending)
        return (f"{len(runs)} pending migration(s) applied"
                + (f" ({', '.join(r.version for r in runs)})" if runs else " (none pending)"))

    def _do_health(self, target: PostgresTarget) -> str:
        if not self.health:
            raise _StepFailed("no health checks listed for the rehearsal")
        shown = []
        with psycopg.connect(target.dsn, connect_timeout=10, autocommit=True) as conn:
            for query in self.health:
                verdict = query_value(conn, query.sql, comparison=query.comparison, value=query.value)
                if verdict.counts_as_fail():
                    raise _StepFailed(verdict.message)
                shown.append(verdict.message)
        return "; ".join(shown)

    def close(self) -> None:
        """Drop the scratch database and temp files (journaled by the restore drill; never raises)."""
        if self._restore is not None:
            drill, self._restore = self._restore, None
            drill.close()
            self.result.journal.entries.extend(
                e for e in drill.journal.entries if str(e.get("phase", "")).startswith("cleanup"))
        self._target = None


class _StepFailed(DrillbookError):
    """A rehearsal step that ran and did not hold (named in the verdict, never raised out of run())."""
