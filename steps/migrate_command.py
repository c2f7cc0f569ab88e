"""Migration steps for migrations written as code: the team's own migrate command.

``Given the migrations are applied by the command "alembic upgrade head" in "app"``
takes the place of ``Given the migrations in "DIR"``; the usual sentences follow
(``When the migrations are replayed …``, the round trip, drift, history), which
:mod:`steps.migrations` hands to the functions here when a command was named.
The command's limit and the variables it may see come from drillbook.toml
(``[migrations] command_timeout``, ``command_env``; else ``[run] migration_timeout``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pytest_bdd import given, parsers

from checks.command_history import history_against
from checks.errors import ConfigError, DrillbookError
from checks.verdict import Verdict, record, verdict_from_error
from drills import deadlines
from drills.deadlines import Limit
from drills.migrations import Direction, StepRun, prelude_verdict
from drills.migrations.command import MigrateCommand, split_command
from drills.migrations.command_replay import (
    CommandReplay,
    CommandResult,
    command_replay_verdict,
    command_round_trip_verdict,
)
from drills.migrations.prelude_roles import role_creator

from .context import configured_timeout
from .migrations import MigrationState, configured_prelude, resolve_folder

if TYPE_CHECKING:
    from drills.config import MigrationCommandConfig


def _configured(request: pytest.FixtureRequest) -> MigrationCommandConfig | None:
    config_path = request.config.getoption("--drillbook-config", None)
    if not config_path:
        return None
    from drills.config import load_config  # validated at start-up: this re-read cannot fail late

    return load_config(Path(config_path)).migration_command


def _limit(request: pytest.FixtureRequest, configured: MigrationCommandConfig | None) -> Limit:
    if configured is not None and configured.timeout is not None:
        return Limit(configured.timeout.total_seconds(), "[migrations] command_timeout")
    return Limit.configured(configured_timeout(request, "migration_timeout"), key="migration_timeout",
                            default_s=deadlines.DEFAULT_MIGRATION_TIMEOUT_S)


@given(parsers.parse('the migrations are applied by the command "{command}" in "{directory}"'))
def applied_by_command(command: str, directory: str, request: pytest.FixtureRequest,
                       migration_state: MigrationState) -> None:
    """The team's own migrate command (split like a shell line, never run by one) and its folder."""
    configured = _configured(request)
    if migration_state.prelude is None:
        migration_state.prelude = configured_prelude(request)
    try:
        migration_state.command = MigrateCommand.parse(
            command, workdir=resolve_folder(directory, request),
            env_names=configured.env if configured else (), limit=_limit(request, configured))
    except DrillbookError as exc:
        record(verdict_from_error("migrations.command", exc))


@given("the migrations are applied by the configured command")
def applied_by_configured_command(request: pytest.FixtureRequest, migration_state: MigrationState) -> None:
    """``[migrations] command`` (and ``down_command``, ``workdir``, …) of drillbook.toml."""
    configured = _configured(request)
    if configured is None:
        record(verdict_from_error("migrations.command", ConfigError(
            "no migrate command configured", hint="set `[migrations] command` in drillbook.toml and run "
                                                  "with --config, or name the command in the step")))
        return
    if migration_state.prelude is None:
        migration_state.prelude = configured_prelude(request)
    try:
        migration_state.command = MigrateCommand.parse(
            configured.command, workdir=configured.workdir, down=configured.down_command,
            env_names=configured.env, limit=_limit(request, configured))
    except DrillbookError as exc:
        record(verdict_from_error("migrations.command", exc))


@given(parsers.parse('the migrations are rolled back by the command "{command}"'))
def rolled_back_by_command(command: str, migration_state: MigrationState) -> None:
    """The round trip's way back to empty (e.g. ``alembic downgrade base``)."""
    if migration_state.command is None:
        raise LookupError('name the up command first: `Given the migrations are applied by the command "…" '
                          'in "DIR"`')
    try:
        migration_state.command = dataclasses.replace(
            migration_state.command, down=split_command(command, what="the down command"))
    except DrillbookError as exc:
        record(verdict_from_error("migrations.command", exc))


def _replay(env: Any, state: MigrationState) -> CommandReplay:
    assert state.command is not None
    scratch = env.scratch_postgres()
    state.scratch = scratch
    state.target = scratch.fresh_database("migrations")
    command = dataclasses.replace(state.command, history_table=state.history_table)
    return CommandReplay(command, state.target, prelude=state.prelude, roles=role_creator(scratch))


def _record_prelude(state: MigrationState, result: CommandResult) -> None:
    """The prelude's own verdict, as for SQL folders (a failed one stops the step here)."""
    if state.prelude is not None:
        record(prelude_verdict(state.prelude, result.prelude_run,
                               failure=result.failure if result.prelude_run is None else None))


def replay(env: Any, state: MigrationState) -> Verdict:
    """``When the migrations are replayed into a scratch database``, by the command."""
    result = _replay(env, state).up()
    _record_prelude(state, result)
    state.command_result = result
    state.head = result.head
    _timed(state, result)
    return command_replay_verdict(result)


def _timed(state: MigrationState, result: CommandResult) -> None:
    """The command's runs as timed steps, for `Then the replay completes within …` and the like."""
    state.runs = [StepRun("head" if run.phase != "down" else "base", Direction.DOWN if run.phase == "down"
                          else Direction.UP, run.command, 0, run.duration_s)
                  for run in result.runs if run.exit_code == 0]


def round_trip(env: Any, state: MigrationState) -> Verdict:
    """``When the migrations are replayed up, down and up again``, by the up and down commands."""
    result = _replay(env, state).round_trip()
    _record_prelude(state, result)
    state.command_result = result
    state.head = result.head
    _timed(state, result)
    if result.head is None:
        return command_replay_verdict(result)  # the first up failed: nothing to roll back
    return Verdict.passed("migrations.round_trip.ran",
                          f"{len(result.runs)} command runs (up, down, up again)",
                          evidence={"runs": [r.to_evidence() for r in result.runs]})


def round_trip_verdict(state: MigrationState) -> Verdict:
    """``Then the round trip leaves an identical schema at every version``, for the command."""
    if state.command_result is None:
        raise LookupError("add `When the migrations are replayed up, down and up again` first")
    return command_round_trip_verdict(state.command_result)


def history(state: MigrationState, dsn: str, subject_name: str, *, allow_pending: bool) -> Verdict:
    """The tool's table the command wrote in scratch against the subject's (checks.command_history)."""
    result = state.command_result
    if result is None:
        raise LookupError("replay the migrations first: `When the migrations are replayed …`")
    return history_against(dsn, subject_name, result.tool_table, result.tool_rows,
                           command=result.command.shown(), allow_pending=allow_pending)
