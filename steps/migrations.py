"""Migration steps: replay into scratch, round trip, drift, history, lint, pending on yesterday's data.

Thin glue: parse the sentence, call one drill or check, record the verdict.
The subject and the restored backup come from the backup steps' shared state
(``Given the subject database …``, ``When the newest backup is restored …``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_bdd import given, parsers, then, when

from checks.errors import DrillbookError
from checks.migration_history import History, compare_history, read_history, validate_history
from checks.migration_lint import ALL_RULES, check_rule_names, lint_files, lint_verdict
from checks.schema import SchemaSnapshot, schemas_match, snapshot
from checks.verdict import Verdict, format_duration, record, verdict_from_error
from drills import deadlines
from drills.config import MIGRATION_LAYOUTS
from drills.deadlines import Limit
from drills.migrations import (
    IntegrityFailed,
    MigrationError,
    MigrationReplay,
    MigrationSet,
    RoundTripResult,
    StepRun,
    load_folders,
    prelude_verdict,
    replay_verdict,
    round_trip,
    round_trip_verdict,
)
from drills.migrations.command import MigrateCommand
from drills.migrations.command_replay import CommandResult
from drills.migrations.prelude_roles import role_creator
from drills.targets import PostgresTarget, ScratchPostgres

from .context import PARSE_TYPES, ScenarioState, configured_timeout
from .guard import guarded

SUITE_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class MigrationState:
    """What the migration steps of one scenario found, for the later ones."""

    migrations: MigrationSet | None = None
    settings: dict[str, str] = field(default_factory=dict)
    history_table: str | None = None
    ignore_tables: list[str] = field(default_factory=list)
    scratch: ScratchPostgres | None = None
    target: PostgresTarget | None = None
    replay: MigrationReplay | None = None
    runs: list[StepRun] = field(default_factory=list)
    head: SchemaSnapshot | None = None
    round_trip: RoundTripResult | None = None
    pending_runs: list[StepRun] = field(default_factory=list)
    # SQL run in the scratch database before the first step (a feature's, else [migrations] prelude).
    prelude: Path | None = None
    # Migrations written as code: the team's own command instead of files (steps/migrate_command.py).
    command: MigrateCommand | None = None
    command_result: CommandResult | None = None

    def require_migrations(self) -> MigrationSet:
        if self.migrations is None and self.command is not None:
            raise LookupError("this step reads migration files: it is not available when the migrations "
                              "are applied by a command")
        if self.migrations is None:
            raise LookupError('name the migrations first: `Given the migrations in "DIR"`')
        return self.migrations

    def close(self) -> None:
        if self.replay is not None:
            self.replay.close()
            self.replay = None
        if self.target is not None and self.scratch is not None:
            target, self.target = self.target, None
            # On failure, the environment's own teardown drops what is left.
            with contextlib.suppress(DrillbookError):
                self.scratch.drop(target)


@pytest.fixture
def migration_state() -> Iterator[MigrationState]:
    """Fresh per scenario; its scratch database is dropped when the scenario ends."""
    state = MigrationState()
    try:
        yield state
    finally:
        state.close()


def _resolve(text: str, request: pytest.FixtureRequest) -> Path:
    """A folder named in a feature: absolute, else next to the feature, the cwd or the suite root."""
    path = Path(text)
    if path.is_absolute():
        return path
    candidates = []
    feature_dir = _feature_dir(request)
    if feature_dir is not None:
        candidates.append(feature_dir / path)
    candidates += [Path.cwd() / path, SUITE_ROOT / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return SUITE_ROOT / path


resolve_folder = _resolve  # for steps/migrate_command.py


def _feature_dir(request: pytest.FixtureRequest) -> Path | None:
    try:
        from pytest_bdd.scenario import scenario_wrapper_template_registry

        template = scenario_wrapper_template_registry.get(request.node.function)
        return Path(template.feature.filename).parent if template is not None else None
    except (ImportError, AttributeError):
        return None


@given(parsers.parse('the migrations in "{directory}"'))
def migrations_in(directory: str, request: pytest.FixtureRequest, migration_state: MigrationState) -> None:
    """Name the migration folder; its layout is detected from the file names."""
    _load(directory, None, request, migration_state)


@given(parsers.parse('the migrations in "{directory}" in the {layout} layout'))
def migrations_in_layout(directory: str, layout: str, request: pytest.FixtureRequest,
                         migration_state: MigrationState) -> None:
    """Name the folder and its layout (flyway, goose, sqitch, …: see ``[migrations] layout``)."""
    _load(directory, layout, request, migration_state)


@given("the migrations in these folders, in order:")
def migrations_in_folders(datatable: list[list[str]], request: pytest.FixtureRequest,
                          migration_state: MigrationState) -> None:
    """Several folders replayed one after the other into one database (| folder | and | layout |)."""
    header, *rows = datatable
    keys = [h.strip().lower() for h in header]
    if "folder" not in keys or not set(keys) <= {"folder", "layout"} or not rows:
        record(Verdict.error("migrations.layout", "the folder table needs a | folder | column (and "
                                                  "optionally | layout |) and at least one row"))
        return
    folders = [_resolve(row[keys.index("folder")].strip(), request) for row in rows]
    layouts = [(row[keys.index("layout")].strip() or None) if "layout" in keys else None for row in rows]
    _load_folders(folders, layouts, request, migration_state)


@given(parsers.parse('the prelude "{file}" prepares the scratch database'))
def prelude_given(file: str, request: pytest.FixtureRequest, migration_state: MigrationState) -> None:
    """SQL the team's init script runs in production (schemas, extensions, a search_path), first."""
    path = _resolve(file, request)
    if not path.is_file():
        record(Verdict.error("migrations.prelude", f"the prelude {file!r} is not a file ({path})"))
        return
    migration_state.prelude = path


def _load(directory: str, layout: str | None, request: pytest.FixtureRequest,
          state: MigrationState) -> None:
    _load_folders([_resolve(directory, request)], [layout], request, state)


def _load_folders(paths: list[Path], layouts: list[str | None], request: pytest.FixtureRequest,
                  state: MigrationState) -> None:
    chosen = [layout or _configured_layout(path, request)
              for path, layout in zip(paths, layouts, strict=True)]
    if state.prelude is None:
        state.prelude = _configured_prelude(request)
    try:
        state.migrations = load_folders(paths, layouts=chosen)
    except ValueError:
        record(Verdict.error("migrations.layout", f"unknown layout in {chosen!r}: use one of "
                                                  f"{', '.join(MIGRATION_LAYOUTS)}"))
    except IntegrityFailed as exc:
        record(Verdict.failed(exc.check_id, str(exc)))
    except MigrationError as exc:
        record(verdict_from_error("migrations.layout", exc))


def _configured_prelude(request: pytest.FixtureRequest) -> Path | None:
    config_path = request.config.getoption("--drillbook-config", None)
    if not config_path:
        return None
    from drills.config import load_config

    return load_config(Path(config_path)).migration_prelude


configured_prelude = _configured_prelude  # for steps/migrate_command.py


def _replay_limit(request: pytest.FixtureRequest) -> Limit:
    """``[run] migration_timeout`` of the run's config, else the built-in default."""
    return Limit.configured(configured_timeout(request, "migration_timeout"), key="migration_timeout",
                            default_s=deadlines.DEFAULT_MIGRATION_TIMEOUT_S)


def _configured_layout(path: Path, request: pytest.FixtureRequest) -> str | None:
    """``[migrations]`` of drillbook.toml: the folder's own layout, else the default (validated at start)."""
    config_path = request.config.getoption("--drillbook-config", None)
    if not config_path:
        return None
    from drills.config import load_config

    return load_config(Path(config_path)).migration_layout_for(path)


@given(parsers.parse('the migration session setting "{name}" is the environment\'s "{detail}"'))
def session_setting_from_env(name: str, detail: str, drillbook_env: Any,
                             migration_state: MigrationState) -> None:
    """A custom setting the product's own runner hands its migrations, from the environment."""
    details = drillbook_env.details()
    if detail not in details:
        record(Verdict.error("migrations.setting", f"the environment has no detail {detail!r} "
                                                   f"(known: {', '.join(sorted(details))})"))
    migration_state.settings[name] = str(details[detail])


@given(parsers.parse('the migration history table "{table}"'))
def history_table(table: str, migration_state: MigrationState) -> None:
    """Name the subject's history table when it is not one of the known ones."""
    migration_state.history_table = table


@when("the migrations are replayed into a scratch database")
def replay_from_empty(drillbook_env: Any, migration_state: MigrationState,
                      request: pytest.FixtureRequest) -> None:
    """Every step applied in order, from empty, over one connection; each in its own transaction."""
    if migration_state.command is not None:
        from . import migrate_command

        guarded("migrations.replay", lambda: migrate_command.replay(drillbook_env, migration_state))
        return
    migrations = migration_state.require_migrations()

    def replay() -> Verdict:
        replayer = _open_replay(drillbook_env, migration_state, migrations, request)
        try:
            migration_state.runs = replayer.up()
        except MigrationError as exc:
            return replay_verdict(migrations, list(replayer.steps), failure=exc,
                                  target=replayer.target.describe())
        migration_state.head = replayer.snapshot()
        return replay_verdict(migrations, migration_state.runs, target=replayer.target.describe())

    guarded("migrations.replay", replay)


@when("the migrations are replayed up, down and up again")
def replay_round_trip(drillbook_env: Any, migration_state: MigrationState,
                      request: pytest.FixtureRequest) -> None:
    """Up to head, down to zero, up again, with a schema snapshot at every version."""
    if migration_state.command is not None:
        from . import migrate_command

        guarded("migrations.round_trip", lambda: migrate_command.round_trip(drillbook_env, migration_state))
        return
    migrations = migration_state.require_migrations()

    def run() -> Verdict:
        replayer = _open_replay(drillbook_env, migration_state, migrations, request)
        result = round_trip(replayer, ignore_tables=migration_state.ignore_tables)
        migration_state.round_trip = result
        migration_state.runs = result.steps
        migration_state.head = result.head
        if result.failure is not None and not result.steps:
            return round_trip_verdict(result, migrations)
        return Verdict.passed("migrations.round_trip.ran",
                              f"{len(result.steps)} steps applied up, down and up again",
                              evidence={"steps": [s.to_evidence() for s in result.steps]})

    guarded("migrations.round_trip", run)


def _open_replay(env: Any, state: MigrationState, migrations: MigrationSet,
                 request: pytest.FixtureRequest) -> MigrationReplay:
    scratch = env.scratch_postgres()
    state.scratch = scratch
    state.target = scratch.fresh_database("migrations")
    state.replay = MigrationReplay(migrations, state.target, settings=state.settings,
                                   limit=_replay_limit(request))
    state.replay.connect()
    if state.prelude is not None:
        try:
            run = state.replay.prelude(state.prelude, roles=role_creator(scratch))
        except MigrationError as exc:
            record(prelude_verdict(state.prelude, None, failure=exc))
            raise
        record(prelude_verdict(state.prelude, run))
    return state.replay


@then("the round trip leaves an identical schema at every version")
def round_trip_identical(migration_state: MigrationState) -> None:
    """Rolled back and re-applied, every version has the schema it had the first time."""
    if migration_state.command is not None:
        from . import migrate_command

        record(migrate_command.round_trip_verdict(migration_state))
        return
    result = migration_state.round_trip
    if result is None:
        raise LookupError("add `When the migrations are replayed up, down and up again` first")
    record(round_trip_verdict(result, migration_state.require_migrations()))


@then(parsers.parse("every migration step applies within {limit:Duration}", extra_types=PARSE_TYPES))
def each_step_within(limit: timedelta, migration_state: MigrationState) -> None:
    """The slowest step of the replay is within the limit."""
    _within("migrations.step_duration", migration_state.runs, limit, per_step=True)


@then(parsers.parse("the replay completes within {limit:Duration}", extra_types=PARSE_TYPES))
def replay_within(limit: timedelta, migration_state: MigrationState) -> None:
    """All steps of the replay together are within the limit."""
    _within("migrations.replay_duration", migration_state.runs, limit, per_step=False)


@then(parsers.parse("the pending migrations apply within {limit:Duration}", extra_types=PARSE_TYPES))
def pending_within(limit: timedelta, migration_state: MigrationState) -> None:
    """The database part of the upgrade window: pending migrations on yesterday's data."""
    _within("migrations.upgrade_window", migration_state.pending_runs, limit, per_step=False)


def _within(check_id: str, runs: list[StepRun], limit: timedelta, *, per_step: bool) -> None:
    if not runs:
        record(Verdict.failed(check_id, "no migration step ran: nothing was timed"))
        return
    if per_step:
        slowest = max(runs, key=lambda r: r.duration_s)
        measured = timedelta(seconds=slowest.duration_s)
        what = f"slowest step {slowest.version} ({slowest.file}) took {format_duration(measured)}"
    else:
        measured = timedelta(seconds=sum(r.duration_s for r in runs))
        what = f"{len(runs)} steps took {format_duration(measured)}"
    record(Verdict.compare(
        check_id, measured=measured, expected=f"<= {format_duration(limit)}", ok=measured <= limit,
        message=f"{what}, limit {format_duration(limit)}",
        evidence={"steps": [r.to_evidence() for r in runs]}))


@then("the replayed schema matches the subject database")
def matches_subject(drill_state: ScenarioState, migration_state: MigrationState) -> None:
    """Drift: the replayed head schema equals the subject's live schema."""
    _drift(drill_state, migration_state, ignore=[])


@then(parsers.parse('the replayed schema matches the subject database, ignoring table "{table}"'))
def matches_subject_ignoring(table: str, drill_state: ScenarioState,
                             migration_state: MigrationState) -> None:
    """Drift, leaving out a table only the live side has (e.g. the runner's history table)."""
    _drift(drill_state, migration_state, ignore=[table])


def _drift(drill_state: ScenarioState, state: MigrationState, *, ignore: list[str]) -> None:
    subject = _subject(drill_state)
    head = state.head
    if head is None:
        raise LookupError("replay the migrations first: `When the migrations are replayed …`")

    def check() -> Verdict:
        with psycopg.connect(subject.dsn, connect_timeout=10, autocommit=True) as conn:
            live = snapshot(conn)
        return schemas_match(head.without_tables(ignore), live.without_tables(ignore),
                             check_id="migrations.drift", expected_name="replay",
                             actual_name=subject.name,
                             evidence={"ignored_tables": ignore, "subject": subject.describe()})

    guarded("migrations.drift", check)


@then("the migration history of the subject matches the migration files")
def history_matches(drill_state: ScenarioState, migration_state: MigrationState) -> None:
    """Flyway-style validate: no missing, edited, out-of-order or failed migrations."""
    _history(drill_state, migration_state, allow_pending=True)


@then("the subject has no pending migrations")
def no_pending(drill_state: ScenarioState, migration_state: MigrationState) -> None:
    """Validate, and every migration on disk is applied on the subject."""
    _history(drill_state, migration_state, allow_pending=False)


def _history(drill_state: ScenarioState, state: MigrationState, *, allow_pending: bool) -> None:
    subject = _subject(drill_state)
    if state.command is not None:
        from . import migrate_command

        guarded("migrations.history", lambda: migrate_command.history(
            state, subject.dsn, subject.name, allow_pending=allow_pending))
        return
    migrations = state.require_migrations()

    def check() -> Verdict:
        history = _read_history(subject.dsn, state.history_table)
        return validate_history(history, migrations.for_history(), allow_pending=allow_pending)

    guarded("migrations.history", check)


def _read_history(dsn: str, table: str | None) -> History:
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        conn.read_only = True
        return read_history(conn, table=table)


@when("the pending migrations are applied to the restored database")
def apply_pending(drill_state: ScenarioState, migration_state: MigrationState,
                  request: pytest.FixtureRequest) -> None:
    """Pending = on disk and not in the restored copy's own history; applied and timed in scratch."""
    restored = drill_state.require_restore()
    target = restored.target
    assert target is not None
    from drills.physical.recovery import PhysicalResult

    if isinstance(restored, PhysicalResult):
        # A recovered physical cluster is read through drillbook's non-superuser reader: its objects
        # belong to the backup's roles, and untrusted migrations never run as its superuser.
        raise LookupError("pending migrations are applied to a restored logical dump only, not to a "
                          "recovered physical backup: restore a pg_dump of the database for this scenario")
    migrations = migration_state.require_migrations()

    def run() -> Verdict:
        history = _read_history(target.dsn, migration_state.history_table)
        report = compare_history(history, migrations.for_history())
        pending = [m for m in migrations.versioned() if _shown(m) in report.pending]
        if report.missing or report.edited or report.out_of_order:
            return validate_history(history, migrations.for_history(),
                                    check_id="migrations.pending_applied")
        with MigrationReplay(migrations, target, settings=migration_state.settings,
                             limit=_replay_limit(request)) as replayer:
            try:
                migration_state.pending_runs = replayer.up(pending)
            except MigrationError as exc:
                return replay_verdict(migrations, list(replayer.steps), failure=exc,
                                      target=target.describe())
        total = sum(r.duration_s for r in migration_state.pending_runs)
        return Verdict.passed(
            "migrations.pending_applied",
            f"{len(pending)} pending migration(s) ({', '.join(m.version for m in pending) or 'none'}) "
            f"applied to yesterday's data in {format_duration(timedelta(seconds=total))}",
            measured=round(total, 6), expected="every pending migration applies",
            evidence={"backup": restored.backup.key, "history": report.to_evidence(),
                      "steps": [r.to_evidence() for r in migration_state.pending_runs]})

    guarded("migrations.pending_applied", run)


def _shown(migration: Any) -> str:
    return ".".join(str(p) for p in migration.key)


@then("the pending migrations have no lint findings of these rules:")
def lint_rules(datatable: list[list[str]], drill_state: ScenarioState,
               migration_state: MigrationState) -> None:
    """squawk over the pending migrations; the listed rules (| rule |) fail, others are evidence."""
    rules = {row[0].strip() for row in datatable[1:] if row and row[0].strip()}
    _lint(drill_state, migration_state, rules)


@then("the pending migrations have no lint findings")
def lint_all(drill_state: ScenarioState, migration_state: MigrationState) -> None:
    """squawk over the pending migrations; every finding fails."""
    _lint(drill_state, migration_state, ALL_RULES)


def _lint(drill_state: ScenarioState, state: MigrationState, rules: set[str] | str) -> None:
    migrations = state.require_migrations()

    def check() -> Verdict:
        if not isinstance(rules, str):
            check_rule_names(rules)
        chosen = migrations.versioned()
        scope = "all migrations (no subject named)"
        if drill_state.subject is not None:
            history = _read_history(drill_state.subject.dsn, state.history_table)
            report = compare_history(history, migrations.for_history())
            chosen = [m for m in chosen if _shown(m) in report.pending]
            scope = f"pending on {drill_state.subject.name}"
        if not chosen:
            return Verdict.passed("migrations.lint", f"nothing to lint: no {scope}",
                                  evidence={"scope": scope})
        findings = lint_files([m.up.path for m in chosen], base=migrations.directory)
        verdict = lint_verdict(findings, failing_rules=rules, files=len(chosen))
        return Verdict(verdict.id, verdict.outcome, verdict.message, verdict.measured, verdict.expected,
                       {**verdict.evidence, "scope": scope,
                        "linted": [migrations.relative(m.up.path) for m in chosen]})

    guarded("migrations.lint", check)


def _subject(drill_state: ScenarioState) -> PostgresTarget:
    if drill_state.subject is None:
        raise LookupError('name the subject first: `Given the subject database "NAME"`')
    return drill_state.subject
