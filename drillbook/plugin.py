"""The pytest plugin that runs features as drills.

Options, marker registration, the environment fixture, recording verdicts on
each scenario, progress lines, and the reports at the end. Loaded with
``-p drillbook.plugin`` by ``drillbook run`` (and by the root conftest for the
project's own tests).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from _pytest._code.code import Traceback

from checks import redact
from checks.errors import DrillbookError
from checks.verdict import ChecksFailed, Verdict, VerdictFailed, recording
from reports.results import CADENCES, RunResult, ScenarioResult

from . import __version__, interrupts, scenario_steps

pytest_plugins = ["steps.context", "steps.backup", "steps.cadence", "drillbook.audit", "steps.migrations",
                  "steps.migrate_command",
                  "steps.supply_chain", "drillbook.upgrade_gate", "steps.upgrades", "drillbook.history",
                  "steps.health", "steps.immutability", "steps.physical", "steps.pgbackrest"]

GATES = ("pre-upgrade",)
COMPONENTS = ("postgres", "redis", "s3", "http", "tls", "prometheus", "sigstore", "sbom")
KEYED_TAGS = {
    "id": "scenario identity, e.g. @id:BKP-01",
    "ref": "a control reference, e.g. @ref:ISO27001-A.8.13",
    "control": "an OSCAL control id, e.g. @control:CP-9",
    "impact": "impact if the check fails: low, medium, high",
    "pack": "the product pack a scenario belongs to",
}

_SCENARIO = pytest.StashKey[ScenarioResult]()
_SESSION = pytest.StashKey["DrillSession"]()


@dataclass
class DrillSession:
    """One run's state: options, environment (started lazily), results."""

    config: pytest.Config
    out: Path | None
    strict: bool
    env_choice: str
    config_path: Path | None
    progress: bool
    run: RunResult
    _env: Any = None
    _env_error: DrillbookError | None = None
    _opened: float = 0.0
    scenarios: list[ScenarioResult] = field(default_factory=list)
    # Environments report progress from worker threads (containers start side by side): one
    # line at a time, and one thread at a time suspending pytest's capture.
    _say_lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, line: str) -> None:
        if not self.progress:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        text = redact.redact(line)
        with self._say_lock:
            if reporter is None:
                print(text, file=sys.stderr, flush=True)
                return
            if capture is not None:
                # Progress is for the person watching: it must not vanish into pytest's capture.
                with capture.global_and_fixture_disabled():
                    reporter.write_line(text)
                    reporter.flush()
            else:
                reporter.write_line(text)

    def environment(self) -> Any:
        if self._env_error is not None:
            raise self._env_error
        if self._env is None:
            from .environments import open_environment
            from .server_versions import ObservedEnvironment

            t0 = time.perf_counter()
            self._env = ObservedEnvironment(open_environment(
                choice=self.env_choice, config_path=self.config_path, progress=self.say
            ))
            self._opened = time.perf_counter() - t0
            self.run.environment = self._env.name
            self.run.environment_details = {
                k: redact.redact(str(v)) for k, v in self._env.details().items()
            }
            self.say(f"environment `{self._env.name}` ready in {self._opened:.1f}s")
        return self._env

    def close(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            try:
                self.run.environment_details.update(env.server_versions())
            finally:
                env.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drillbook")
    group.addoption("--drillbook-config", default=None, help="drillbook.toml to use (live environment)")
    group.addoption("--drillbook-out", default=None, help="run directory for reports and evidence")
    group.addoption("--drillbook-env", default="auto", choices=["auto", "local", "live", "containers"],
                    help="where targets come from (default: live with a config, else local)")
    group.addoption("--drillbook-strict", action="store_true", default=False,
                    help="warnings fail the run")
    group.addoption("--drillbook-progress", action="store_true", default=False,
                    help="print one line per scenario instead of pytest's dots")
    group.addoption("--drillbook-command", default="", help=argparse_suppress())
    group.addoption("--drillbook-member", default=None,
                    help="the fleet member this run drills (names scenarios BKP-01[member])")
    group.addoption("--drillbook-seed", default=None,
                    help="seed of the run's random choices (point-in-time moments); default: the run id")


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def pytest_configure(config: pytest.Config) -> None:
    for cadence in CADENCES:
        config.addinivalue_line("markers", f"{cadence}: drill cadence ({cadence})")
    for gate in GATES:
        config.addinivalue_line("markers", f"{gate}: part of the {gate} gate")
    for component in COMPONENTS:
        config.addinivalue_line("markers", f"{component}: touches {component}")
    for key, meaning in KEYED_TAGS.items():
        config.addinivalue_line("markers", f"{key}: {meaning}")
    config.addinivalue_line("markers", "canary: a scenario that must fail, proving its check can fail")
    config.addinivalue_line("markers", "fleet: a fleet scenario (features/fleet), run once per member")
    config.addinivalue_line("markers", f"{scenario_steps.STOP_TAG}: {scenario_steps.STOP_TAG_MEANING}")

    out = config.getoption("--drillbook-out")
    config_path = config.getoption("--drillbook-config")
    run = RunResult(
        run_id=Path(out).name if out else "pytest",
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        drillbook_version=__version__,
        user=_user(),
        host=socket.gethostname(),
        config_path=str(config_path) if config_path else None,
        command=config.getoption("--drillbook-command") or " ".join(sys.argv),
        strict=bool(config.getoption("--drillbook-strict")),
    )
    config.stash[_SESSION] = DrillSession(
        config=config,
        out=Path(out) if out else None,
        strict=run.strict,
        env_choice=config.getoption("--drillbook-env"),
        config_path=Path(config_path) if config_path else None,
        progress=bool(config.getoption("--drillbook-progress")),
        run=run,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@pytest.hookimpl(tryfirst=True)
def pytest_bdd_apply_tag(tag: str, function: Callable[..., Any]) -> bool | None:
    """``@id:BKP-01`` becomes ``pytest.mark.id("BKP-01")``: registered name, value kept."""
    key, sep, value = tag.partition(":")
    if sep and key in KEYED_TAGS:
        # The value twice: positional for readers, keyword so `-m 'id(value="BKP-01")'` selects it.
        getattr(pytest.mark, key)(value, value=value)(function)
        return True
    return None


def session_of(config: pytest.Config) -> DrillSession:
    return config.stash[_SESSION]


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Start the environment before the first scenario, so no scenario's time includes it."""
    drill = session_of(session.config)
    if session.config.option.collectonly or not any(
        "drillbook_env" in getattr(item, "fixturenames", ()) or _is_scenario(item) for item in session.items
    ):
        return
    try:
        drill.environment()
    except DrillbookError as exc:
        # Remembered: every scenario that needs the environment errors with this message.
        drill._env_error = exc
        drill.say(f"environment could not be provided: {exc}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """No scenario starts after a Ctrl-C, even one Python swallowed (see :mod:`drillbook.interrupts`)."""
    if interrupts.received() is not None:
        raise KeyboardInterrupt


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Make the Ctrl-C traceback printable before pytest's terminal reporter renders it."""
    printable_traceback(excinfo)


def printable_traceback(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Give every frame of the exception chain a line number.

    Python 3.11 leaves ``tb_lineno`` at None for a frame interrupted on an
    instruction without a line (a signal landing in a generator's resume).
    pytest then crashes while printing the KeyboardInterrupt and the run dies
    with a TypeError instead of unwinding as "interrupted".
    """
    seen: set[int] = set()
    exc: BaseException | None = excinfo.value
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            exc.__traceback__ = _with_line_numbers(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__
    if excinfo.value.__traceback__ is not None:
        excinfo.traceback = Traceback(excinfo.value.__traceback__)


def _with_line_numbers(tb: TracebackType) -> TracebackType:
    entries: list[TracebackType] = []
    cur: TracebackType | None = tb
    while cur is not None:
        entries.append(cur)
        cur = cur.tb_next
    rebuilt: TracebackType | None = None
    for entry in reversed(entries):
        lineno, lasti = entry.tb_lineno, entry.tb_lasti
        if lineno is None:  # type: ignore[comparison-overlap]  # typeshed says int; 3.11 says otherwise
            # The function's first line, and no instruction (the traceback module then
            # prints no column markers rather than looking the instruction up again).
            lineno, lasti = entry.tb_frame.f_code.co_firstlineno, -1
        rebuilt = TracebackType(rebuilt, entry.tb_frame, lasti, lineno)
    assert rebuilt is not None
    return rebuilt


def _is_scenario(item: pytest.Item) -> bool:
    # Every pytest-bdd scenario function takes this fixture (its Examples row).
    return "_pytest_bdd_example" in getattr(item, "fixturenames", ())


@pytest.fixture(scope="session")
def drillbook_session(request: pytest.FixtureRequest) -> DrillSession:
    """The run: options, results, and the environment started on first use."""
    return session_of(request.config)


@pytest.fixture(scope="session")
def drillbook_env(drillbook_session: DrillSession) -> Iterator[Any]:
    """The environment that resolves target names (local sandbox, live, containers)."""
    try:
        env = drillbook_session.environment()
    except DrillbookError as exc:
        # Every scenario needing the environment errors with this message; none is skipped.
        pytest.fail(f"environment could not be provided: {redact.redact(str(exc))}", pytrace=False)
    yield env


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    item = request.node
    feature_path = _relative_feature_path(feature.filename)
    member = request.config.getoption("--drillbook-member")
    tags = sorted(scenario.tags) if not member else sorted([*scenario.tags, f"member:{member}"])
    result = ScenarioResult(
        # A member's scenario is one work item of a fleet run: its id says which member, in
        # results.json, the ledger, JUnit and the report alike (the features do not change).
        nodeid=f"{item.nodeid}[{member}]" if member else item.nodeid,
        feature=feature.name,
        feature_path=feature_path,
        scenario=scenario.name,
        description=(scenario.description or "").strip(),
        tags=tags,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        member=member or None,
    )
    item.stash[_SCENARIO] = result
    session = session_of(request.config)
    session.scenarios.append(result)


def _relative_feature_path(filename: str) -> str:
    path = Path(filename)
    for parent in path.parents:
        if parent.name == "features":
            return str(Path("features") / path.relative_to(parent))
    return path.name


# Soft checks and the steps a stop left unchecked: drillbook/scenario_steps.py says why.
def pytest_bdd_before_step(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                           step_func: Any) -> None:
    result = request.node.stash.get(_SCENARIO, None)
    if result is not None:
        scenario_steps.begin_step(request.node, result, feature, scenario, step)


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                          step_func: Any, step_func_args: Any) -> None:
    _step(request, step, raised=False)


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                          step_func: Any, step_func_args: Any, exception: Exception) -> None:
    _step(request, step, raised=True)


def pytest_bdd_step_func_lookup_error(request: pytest.FixtureRequest, feature: Any, scenario: Any,
                                      step: Any, exception: Exception) -> None:
    _step(request, step, raised=True, undefined=True)


def _step(request: pytest.FixtureRequest, step: Any, *, raised: bool, undefined: bool = False) -> None:
    result = request.node.stash.get(_SCENARIO, None)
    if result is not None:
        scenario_steps.end_step(request.node, result, step, raised=raised, undefined=undefined,
                                strict=session_of(request.config).strict)


def pytest_bdd_after_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    result = request.node.stash.get(_SCENARIO, None)
    if result is not None:
        scenario_steps.list_unchecked(result, scenario)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    session = session_of(item.config)
    # The scenario result exists only once pytest-bdd's before-scenario hook ran, inside the
    # call; record through a late lookup so verdicts land on the right scenario.
    def recorder(verdict: Verdict) -> Verdict:
        scenario = item.stash.get(_SCENARIO, None)
        # A failed verdict under an unexpired waiver is recorded (and judged by record()) as waived.
        # (Imported here: drillbook.audit is a pytest plugin of its own, registered via pytest_plugins.)
        from .audit import waive

        verdict = waive(item.config, scenario.scenario_id if scenario else None, verdict)
        if scenario is not None:
            scenario.verdicts.append(verdict)
        return verdict

    t0 = time.perf_counter()
    try:
        with recording(recorder, strict=session.strict):
            outcome = yield
        scenario = item.stash.get(_SCENARIO, None)
        # Soft Then checks recorded their failures without raising: the scenario fails here, once.
        owed = scenario_steps.deferred_failure(scenario, strict=session.strict) if scenario else None
        if owed is not None:
            raise owed
        return outcome
    finally:
        scenario = item.stash.get(_SCENARIO, None)
        if scenario is not None:
            scenario.duration_s = time.perf_counter() - t0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    scenario = item.stash.get(_SCENARIO, None)
    if scenario is not None and call.when == "teardown":
        from reports.junit import junit_properties

        item.user_properties.extend(junit_properties(scenario))
    report = yield
    if scenario is None:
        return report
    if call.excinfo is not None and call.when in ("setup", "call"):
        exc = call.excinfo.value
        if not isinstance(exc, VerdictFailed | ChecksFailed):
            text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, pytest.fail.Exception) else str(exc)
            if not isinstance(exc, DrillbookError | pytest.fail.Exception | AssertionError):
                text += "\n" + "".join(traceback.format_tb(call.excinfo.tb)[-3:])
            scenario.failure = redact.redact(text)
    if call.when == "call" and report.failed:
        # One failure message (JUnit's, the terminal's) listing every check that did not pass.
        text = scenario_steps.failure_text(scenario, strict=session_of(item.config).strict,
                                           raised=str(report.longrepr) if scenario.failure else None)
        if text is not None:
            report.longrepr = redact.redact(text)
    if call.when == "call" and not scenario.verdicts and scenario.failure is None:
        # An empty set of checks is never a pass: JUnit must say so too.
        scenario.failure = "the scenario recorded no verdict: it has no step that checks anything"
        report.outcome = "failed"
        report.longrepr = scenario.failure
    if call.when == "teardown":
        _progress_line(session_of(item.config), scenario)
    return report


def _progress_line(session: DrillSession, scenario: ScenarioResult) -> None:
    outcome = scenario.outcome.value.upper().replace("_", " ")
    ident = scenario.display_id or "-"
    line = f"  {outcome:<14} {ident:<10} {scenario.scenario} ({scenario.duration_s:.1f}s)"
    session.say(line)
    if scenario.outcome.counts_as_fail(strict=session.strict):
        checked = [v for v in scenario.verdicts if not scenario_steps.is_not_checked(v)]
        for verdict in checked:
            if verdict.counts_as_fail(strict=session.strict):
                session.say(f"      {verdict.id}: {verdict.message}")
        if scenario.failure and not any(v.counts_as_fail() for v in checked):
            session.say(f"      {scenario.failure.splitlines()[0]}")
        unchecked = len(scenario.verdicts) - len(checked)
        if unchecked:
            session.say(f"      {unchecked} later step(s) not checked")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """With progress lines on, pytest's own dots would only repeat them."""
    if session_of(config).progress and report.when == "call":
        return report.outcome, "", ""
    return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drill = session_of(session.config)
    try:
        drill.close()
    finally:
        drill.run.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        drill.run.scenarios = list(drill.scenarios)
        if drill.out is not None:
            write_reports(drill)


def write_reports(drill: DrillSession) -> None:
    """results.json, the HTML report and the JUnit rename: what leaves the run."""
    from checks.files import write_atomic
    from reports.html import write_html_report
    from reports.junit import rename_testcases

    assert drill.out is not None
    results = drill.out / "results.json"
    data = redact.redact_obj(drill.run.to_dict())
    # Atomic: a full or unwritable --out is a DiskError naming the file, never a truncated
    # results.json left behind as evidence.
    write_atomic(results, json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                 phase="writing the run's results")
    written = RunResult.from_dict(data)
    write_html_report(written, drill.out / "report.html", history=_report_history(written, drill.out))
    junit = drill.config.getoption("xmlpath", None)
    if junit and Path(junit).exists():
        names = {_junit_key(s): (s.feature, _junit_name(s)) for s in drill.run.scenarios}
        rename_testcases(Path(junit), names)


def _report_history(run: RunResult, out: Path) -> tuple[RunResult, ...]:
    """Earlier runs for the fleet overview's charts: read only when a scenario ran for a member."""
    from reports.html.trends import RUNS_SHOWN, member_of

    from .history import recent_runs

    if not any(member_of(s) is not None for s in run.scenarios):
        return ()  # not a fleet run: the report has no charts, and nothing is read
    return recent_runs(out, limit=RUNS_SHOWN - 1).runs


def _junit_key(scenario: ScenarioResult) -> str:
    """pytest's own node id (a member's suffix is drillbook's, not in pytest's JUnit)."""
    suffix = f"[{scenario.member}]"
    if scenario.member and scenario.nodeid.endswith(suffix):
        return scenario.nodeid[: -len(suffix)]
    return scenario.nodeid


def _junit_name(scenario: ScenarioResult) -> str:
    return f"{scenario.display_id} {scenario.scenario}" if scenario.member else scenario.scenario
