"""Upgrade steps: the plan (a feature table or a plan file), its checks, and the rehearsal.

Thin glue: parse the sentence, call one check or drill, record the verdict.
The target version comes from ``drillbook gate pre-upgrade --to`` (the
``drillbook_upgrade`` fixture) or the scenario's own ``Given the target
version is "X"``; the installed version from ``--from`` or the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from pytest_bdd import given, parsers, then, when

from checks.upgrades import (
    OrderRule,
    PlanError,
    PlanStep,
    UpgradePlan,
    Version,
    downtime_window,
    ordering,
    plan_structure,
    precise_duration,
    rehearsed_downtime,
    rollbacks,
    version_path,
)
from checks.verdict import Verdict, record, verdict_from_error
from drills.upgrades import (
    HealthQuery,
    RehearsalResult,
    UpgradeRehearsal,
    UpgradeRequest,
    load_plan_file,
    parse_version,
    rules_from_table,
    steps_from_table,
)

from .context import PARSE_TYPES, ScenarioState
from .guard import guarded
from .migrations import MigrationState, _resolve


@dataclass
class UpgradeState:
    """The plan as the scenario's Given steps build it, and the rehearsal's result."""

    plan: UpgradePlan | None = None
    name: str = "upgrade plan"
    steps: tuple[PlanStep, ...] = ()
    rules: list[OrderRule] = field(default_factory=list)
    components: frozenset[str] | None = None
    window: timedelta | None = None
    installed: Version | None = None
    target: Version | None = None
    max_major_jump: int | None = None
    minimum_installed: dict[int, Version] = field(default_factory=dict)
    rehearsal: UpgradeRehearsal | None = None
    rehearsed: RehearsalResult | None = None

    def require_plan(self) -> UpgradePlan:
        """The plan file (if any) with what the scenario's own steps added or overrode."""
        if self.plan is None and not self.steps:
            raise LookupError('name the plan first: `Given the upgrade plan "NAME":` with a table, '
                              'or `Given the upgrade plan in "FILE"`')
        base = self.plan or UpgradePlan(name=self.name, steps=self.steps, source="the feature")
        policy = replace(
            base.policy,
            max_major_jump=self.max_major_jump or base.policy.max_major_jump,
            minimum_installed={**base.policy.minimum_installed, **self.minimum_installed},
        )
        return replace(
            base,
            steps=self.steps or base.steps,
            rules=base.rules + tuple(self.rules),
            components=self.components if self.components is not None else base.components,
            window=self.window if self.window is not None else base.window,
            installed=self.installed if self.installed is not None else base.installed,
            policy=policy,
        )

    def close(self) -> None:
        if self.rehearsal is not None:
            rehearsal, self.rehearsal = self.rehearsal, None
            rehearsal.close()


@pytest.fixture
def upgrade_state() -> Iterator[UpgradeState]:
    """Fresh per scenario; a rehearsal's scratch database is dropped when the scenario ends."""
    state = UpgradeState()
    try:
        yield state
    finally:
        state.close()


def _plan_input(action: Callable[[], None]) -> None:
    """A Given that reads plan input: bad input is an error verdict naming the step, and stops here."""
    try:
        action()
    except PlanError as exc:
        record(verdict_from_error("upgrade.plan", exc))


# ---------------------------------------------------------------- the plan


@given(parsers.parse('the upgrade plan "{name}":'))
def plan_table(name: str, datatable: list[list[str]], upgrade_state: UpgradeState) -> None:
    """The plan in order: | step | component | destructive | rollback | downtime | estimate |."""

    def read() -> None:
        upgrade_state.name = name
        upgrade_state.steps = steps_from_table(datatable, source=f"plan `{name}`")

    _plan_input(read)


@given(parsers.parse('the upgrade plan in "{path}"'))
def plan_file(path: str, request: pytest.FixtureRequest, upgrade_state: UpgradeState) -> None:
    """A TOML plan file: steps, rules, components, window, installed version, version rules."""

    def read() -> None:
        upgrade_state.plan = load_plan_file(_resolve(path, request))

    _plan_input(read)


@given("the ordering rules:")
def ordering_rules(datatable: list[list[str]], upgrade_state: UpgradeState) -> None:
    """The runbook's "must come before" rules: | before | after | because |."""

    def read() -> None:
        upgrade_state.rules.extend(rules_from_table(datatable, source="the ordering rules"))

    _plan_input(read)


@given(parsers.parse('the product\'s components are "{components}"'))
def plan_components(components: str, upgrade_state: UpgradeState) -> None:
    """The components a step may name (comma-separated); any other is an error."""
    upgrade_state.components = frozenset(c.strip() for c in components.split(",") if c.strip())


@given(parsers.parse("the planned downtime window is {window:Duration}", extra_types=PARSE_TYPES))
def plan_window(window: timedelta, upgrade_state: UpgradeState) -> None:
    """The declared maintenance window the downtime steps must fit in."""
    upgrade_state.window = window


@given(parsers.parse('the installed version is "{version}"'))
def installed_version(version: str, upgrade_state: UpgradeState) -> None:
    """The version running now (``--from`` on the command line overrides it)."""
    _plan_input(lambda: setattr(upgrade_state, "installed",
                                parse_version(version, where="installed version")))


@given(parsers.parse('the target version is "{version}"'))
def target_version(version: str, upgrade_state: UpgradeState) -> None:
    """The version to upgrade to, when the scenario pins it (``--to`` overrides it)."""
    _plan_input(lambda: setattr(upgrade_state, "target", parse_version(version, where="target version")))


@given(parsers.re(r"upgrades go at most (?P<jump>\d+) major versions? at a time"), converters={"jump": int})
def max_major_jump(jump: int, upgrade_state: UpgradeState) -> None:
    """The runbook's version rule (default 1: no skipped major version)."""
    if jump < 1:
        record(Verdict.error("upgrade.plan", f"at most {jump} major versions at a time: use 1 or more"))
    upgrade_state.max_major_jump = jump


@given(parsers.parse('an upgrade to {major:d}.x requires at least version "{version}" installed'))
def minimum_installed(major: int, version: str, upgrade_state: UpgradeState) -> None:
    """The runbook's "upgrade to 5.x from 4.8 or later" rule."""
    _plan_input(lambda: upgrade_state.minimum_installed.__setitem__(
        major, parse_version(version, where=f"minimum version for {major}.x")))


@then("the upgrade plan is well formed")
def plan_well_formed(upgrade_state: UpgradeState) -> None:
    """Unique step names, known components, rules naming steps of the plan."""
    guarded("upgrade.plan", lambda: plan_structure(upgrade_state.require_plan()))


@then("the upgrade steps respect every ordering rule")
def plan_order(upgrade_state: UpgradeState) -> None:
    """Each rule's `before` step comes before its `after` step; the rules form no cycle."""
    guarded("upgrade.order", lambda: ordering(upgrade_state.require_plan()))


@then("every destructive upgrade step has a rollback step")
def plan_rollbacks(upgrade_state: UpgradeState) -> None:
    """A destructive step with no rollback cannot be undone on the night."""
    guarded("upgrade.rollback", lambda: rollbacks(upgrade_state.require_plan()))


@then("the planned downtime fits in the window")
def plan_downtime(upgrade_state: UpgradeState) -> None:
    """First to last downtime step, everything in between, at their estimates, within the window."""
    guarded("upgrade.downtime_window", lambda: downtime_window(upgrade_state.require_plan()))


@then("the version path to the target version is allowed")
def plan_version_path(upgrade_state: UpgradeState, drillbook_upgrade: UpgradeRequest) -> None:
    """Not a downgrade, no skipped major version, the runbook's minimum installed version met.

    Target: ``--to``, else the scenario's ``Given the target version``, else the plan's ``target``.
    Installed: ``--from``, else the plan's ``installed`` (or ``Given the installed version``).
    """
    check = "upgrade.version_path"

    def run() -> Verdict:
        plan = upgrade_state.require_plan()
        target = drillbook_upgrade.target or upgrade_state.target or plan.target
        installed = drillbook_upgrade.installed or plan.installed
        if target is None:
            return Verdict.not_applicable(
                check, "no target version given: run `drillbook gate pre-upgrade --to VERSION` "
                       "(or state it: `target` in the plan file, `Given the target version is \"X\"`)")
        if installed is None:
            return Verdict.error(check, f"no installed version for `{plan.name}`: pass --from VERSION, "
                                        "or state `installed` in the plan")
        return version_path(installed, target, plan.policy)

    guarded(check, run)


# ---------------------------------------------------------------- the rehearsal


@when("the database part of the plan is rehearsed with these health checks:")
def rehearse(datatable: list[list[str]], drillbook_env: Any, drill_state: ScenarioState,
             migration_state: MigrationState, upgrade_state: UpgradeState) -> None:
    """Restore the newest backup, apply the pending migrations, run | query | expect |, each timed."""
    check = "upgrade.rehearsal"

    def run() -> Verdict:
        plan = upgrade_state.require_plan()
        if drill_state.store is None:
            raise LookupError('name the backups first: `Given the backups in "STORE"`')
        header, *rows = datatable
        keys = [h.strip().lower() for h in header]
        if keys != ["query", "expect"]:
            raise PlanError(f"the health check table has columns {' | '.join(keys)}; use | query | expect |")
        health = [HealthQuery.parse(q, e) for q, e in rows]
        rehearsal = UpgradeRehearsal(
            plan, store=drill_state.store, scratch=drillbook_env.scratch_postgres(),
            migrations=migration_state.migrations, health=health, database=drill_state.database,
            settings=migration_state.settings, history_table=migration_state.history_table)
        upgrade_state.rehearsal = rehearsal
        result = rehearsal.run()
        upgrade_state.rehearsed = result
        if result.restore is not None:
            # Later steps (`the restored tables hold …`, `the query … returns …`) read the
            # migrated copy; the rehearsal, not drill_state, drops it at the end.
            drill_state.restored = result.restore
            drill_state.backup_time = result.restore.backup_time
        shown = ", ".join(f"{s.step} {precise_duration(s.duration_s)}" + ("" if s.ok else " FAILED")
                          for s in result.steps)
        if not result.ok:
            bad = next(s for s in result.steps if not s.ok)
            return Verdict.failed(check, f"rehearsal of `{plan.name}` failed at step `{bad.step}` "
                                         f"({bad.action}): {bad.detail}", evidence=result.evidence())
        if not result.steps:
            return Verdict.error(check, f"`{plan.name}` has no step to rehearse: mark its database "
                                        "steps with `rehearse = restore | migrate | health`",
                                 evidence=result.evidence())
        return Verdict.passed(check, f"rehearsed {len(result.steps)} step(s) of `{plan.name}` on scratch: "
                                     f"{shown}", measured=round(sum(s.duration_s for s in result.steps), 6),
                              evidence=result.evidence())

    guarded(check, run)


@then("the rehearsed downtime fits in the window")
def rehearsed_within_window(upgrade_state: UpgradeState) -> None:
    """Measured downtime steps, plus estimates of those not rehearsed, within the declared window."""
    check = "upgrade.rehearsal_downtime"

    def run() -> Verdict:
        result = upgrade_state.rehearsed
        if result is None:
            raise LookupError("rehearse first: `When the database part of the plan is rehearsed …`")
        plan = upgrade_state.require_plan()
        if plan.window is None:
            return Verdict.error(check, f"`{plan.name}` declares no downtime window")
        return rehearsed_downtime(result.steps, plan.window,
                                  estimated=result.estimated_downtime_not_rehearsed())

    guarded(check, run)

