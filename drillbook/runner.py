"""``drillbook run``: feed the features to pytest-bdd with the plugin, in a run directory."""

from __future__ import annotations

import re
import secrets
import shlex
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from checks.errors import ConfigError
from checks.files import DISK_ERRNOS, disk_error, write_atomic
from reports.results import CADENCES, RunResult

from . import interrupts

if TYPE_CHECKING:
    from drills.config import Config

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FEATURES = REPO / "features"

# ARCHITECTURE.md exit codes.
EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_OVERDUE = 0, 1, 2, 3

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TAG_EXPR = re.compile(r"^[A-Za-z0-9_:\-.\s()]+$")


@dataclass
class RunOptions:
    config: Path | None = None
    cadence: str | None = None
    tags: str | None = None
    out: Path | None = None  # None: [run] out of the config, else ./out
    features: list[Path] | None = None
    env: str = "auto"
    strict: bool | None = None  # None: [run] strict of the config, else False
    verbose: bool = False
    waivers: Path | None = None
    pytest_args: list[str] = field(default_factory=list)  # extra plugin options (e.g. a gate's version)
    run_id: str | None = None  # a caller that reads the run directory afterwards chooses the id
    pack: str | None = None  # features/packs/<pack> only (a plain run leaves the packs out)
    sign: bool = False  # sign the run's ledger head keyless (the CI job's ambient identity)
    sign_sandbox: bool = False  # ... or with the runs directory's sandbox authority (offline)
    # One fleet member's run (drillbook/fleet/execute.py): its targets bound, scenarios named
    # BKP-01[member], and no ledger append (the fleet's merge is the only ledger writer).
    member: str | None = None
    seed: str | None = None  # random choices (steps/physical.py's sampled moments); default: the run id


def new_run_id(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def marker_expression(cadence: str | None, tags: str | None) -> str | None:
    """``--cadence monthly`` and ``--tags "postgres and not weekly"`` as a pytest ``-m`` expression."""
    parts = []
    if cadence:
        if cadence not in CADENCES:
            raise ConfigError(f"unknown cadence {cadence!r} (use one of: {', '.join(CADENCES)})")
        parts.append(cadence)
    if tags:
        cleaned = tags.replace("@", "")
        if not _TAG_EXPR.match(cleaned):
            raise ConfigError(f"--tags {tags!r}: use tag names with and/or/not and parentheses")
        parts.append(f"({_KEYED_TAG.sub(_keyed_marker, cleaned)})")
    return " and ".join(parts) if parts else None


# `id:BKP-01` in --tags: pytest's -m matches a marker's keyword values, never its positional ones.
_KEYED_TAG = re.compile(r"\b([A-Za-z_]+):([A-Za-z0-9_\-.]+)")


def _keyed_marker(match: re.Match[str]) -> str:
    return f'{match.group(1)}(value="{match.group(2)}")'


DEFAULT_OUT = Path("out")


@dataclass(frozen=True)
class RunSettings:
    """What a run uses for ``out`` and ``strict``: the CLI flag, else ``[run]`` of the config, else
    the default. Computed once, so the runner and the callers that read the run back agree."""

    out: Path
    strict: bool


def run_settings(options: RunOptions, config: Config | None) -> RunSettings:
    """CLI flags override ``[run] out`` / ``[run] strict``; without either, ``out/`` and not strict."""
    out = options.out if options.out is not None else (config.out if config is not None else DEFAULT_OUT)
    config_strict = config.strict if config is not None else False
    strict = options.strict if options.strict is not None else config_strict
    return RunSettings(out=out, strict=strict)


def load_run_config(options: RunOptions) -> Config | None:
    """The validated config of a run (``ConfigError``, exit 2, on a bad key), or None without one."""
    if options.config is None:
        return None
    from drills.config import load_config

    return load_config(options.config.resolve())


def run(options: RunOptions, *, argv: list[str] | None = None) -> int:
    """Run the drills; write reports to ``<out>/<run-id>``; return the exit code."""
    features = [p.resolve() for p in _features_of(options)]
    for path in features:
        if not path.exists():
            raise ConfigError(f"features path {path} does not exist",
                              hint="pass --features DIR with .feature files in it")
    config_path = options.config.resolve() if options.config else None
    if options.member is not None:
        if config_path is None:
            raise ConfigError("--member needs --config: the fleet's members are defined there",
                              key="--member", hint="add --config drillbook.toml (with a [fleet] table)")
        import os

        from drills.config import MEMBER_ENV

        # Every load of the config in this process (the steps' too) binds the member's targets.
        os.environ[MEMBER_ENV] = options.member
    # Validate before anything runs: a bad key stops us in the first second.
    config = load_run_config(options)
    if config is not None and options.env in ("auto", "live"):
        _preflight_scratch(config)
    settings = run_settings(options, config)
    expression = marker_expression(options.cadence, options.tags)
    # The environment is chosen here, not inside pytest: a missing package (testcontainers) is
    # then a usage error naming it, before any server starts, never pytest's INTERNALERROR.
    from .environments import resolve_environment

    env_choice = resolve_environment(options.env, config_given=config_path is not None)
    # Waivers are validated (format, approver, known ids) before anything runs: exit 2 otherwise.
    from .audit import prepare_run

    audit = prepare_run(features=features, config_path=config_path, waivers=options.waivers,
                        out=settings.out, sign=options.sign, sign_sandbox=options.sign_sandbox)
    if options.member is not None:
        audit.ledger = None

    from drills.reaper import reap_stale

    # A killed run's servers and temp dirs are reaped before this run starts its own.
    reap_stale(progress=lambda line: print(f"drillbook: {line}", file=sys.stderr, flush=True))
    run_id = options.run_id or new_run_id()
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"--run-id {run_id!r}: a run id is one folder name (letters, digits, `_`, "
                          "`.`, `-`; not starting with `.`)", key="--run-id")
    run_dir = (settings.out / run_id).resolve()
    module = run_dir / "test_drillbook_features.py"
    # A full or unwritable --out stops here, naming the path (DiskError), before any server starts.
    write_atomic(
        module,
        "# Generated by drillbook run: collect these features as pytest-bdd scenarios.\n"
        "from pytest_bdd import scenarios\n\n"
        + "".join(f"scenarios({str(p)!r})\n" for p in features),
        phase="preparing the run directory",
    )
    ini = run_dir / "pytest.ini"
    write_atomic(ini, "[pytest]\njunit_family = xunit1\njunit_suite_name = drillbook\n",
                 phase="preparing the run directory")

    args = [
        str(module), "-c", str(ini), "--rootdir", str(run_dir),
        "-p", "drillbook.plugin", "-p", "no:cacheprovider",
        "--strict-markers", "-q", "--no-header", "--tb=no", "-p", "no:warnings",
        f"--junitxml={run_dir / 'junit.xml'}",
        f"--drillbook-out={run_dir}", f"--drillbook-env={env_choice}",
        "--drillbook-progress",
        "--drillbook-command=" + shlex.join(["drillbook", *(argv or sys.argv[1:])]),
    ]
    if options.verbose:
        args += ["--tb=short", "-rA"]
    if config_path is not None:
        args.append(f"--drillbook-config={config_path}")
    if options.member is not None:
        args.append(f"--drillbook-member={options.member}")
    if options.seed is not None:
        args.append(f"--drillbook-seed={options.seed}")
    if settings.strict:
        args.append("--drillbook-strict")
    if expression:
        args += ["-m", expression]
    args += audit.pytest_args()
    args += options.pytest_args

    print(f"drillbook run {run_id}: features {', '.join(str(_rel(p)) for p in features)}", flush=True)
    watcher = _CollectionWatcher()
    code = pytest.main(args, plugins=[watcher, _JunitGuard(run_dir / "junit.xml")])
    _point_latest(settings.out, run_dir)
    if watcher.errors:
        for where, text in watcher.errors:
            print(f"drillbook: cannot collect {where}:\n{text}", file=sys.stderr)
        print("drillbook: nothing ran: fix the feature files above", file=sys.stderr)
        return EXIT_USAGE

    results = run_dir / "results.json"
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print(f"drillbook: no scenario matches (cadence={options.cadence}, tags={options.tags})",
              file=sys.stderr)
        return EXIT_USAGE
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR) or not results.exists():
        print("drillbook: the run could not start; see the messages above", file=sys.stderr)
        return EXIT_USAGE
    if code == pytest.ExitCode.INTERRUPTED or interrupts.received() is not None:
        # Also when pytest finished normally: a Ctrl-C it never saw still means the user stopped the run.
        print("drillbook: interrupted; servers and scratch databases were cleaned up", file=sys.stderr)
        return EXIT_FAILED
    audit_problems = audit.finish(run_dir)
    outcome = RunResult.read(results)
    counts = {k: v for k, v in outcome.counts().items() if v}
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    verdict = "PASS" if outcome.passed else "FAIL"
    print(f"drillbook: {verdict} — {len(outcome.scenarios)} scenarios: {summary}")
    print(f"report:   {_rel(run_dir / 'report.html')}")
    print(f"junit:    {_rel(run_dir / 'junit.xml')}")
    print(f"evidence: {_rel(results)}")
    if audit.ledger is not None and not audit_problems:
        print(f"ledger:   {_rel(audit.ledger.path)}")
    if audit.signed_head is not None and audit.signing is not None:
        print(f"signed:   {audit.signed_head} ({audit.signing.description})")
    for problem in audit_problems:
        # The drills ran, but the audit trail is incomplete: that run cannot count as a pass.
        print(f"drillbook: {problem}", file=sys.stderr)
    if audit_problems:
        return EXIT_FAILED
    return EXIT_PASSED if outcome.passed else EXIT_FAILED


def _preflight_scratch(config: Config) -> None:
    """A configured scratch on a subject's server, reached by a powerful role, or not empty: exit 2.

    Checked here, before anything runs, for every ``scratch = true`` target; what cannot be
    checked yet (a server that does not answer) is checked again before the first write.
    """
    from checks.errors import SafetyError
    from drills.scratch_guard import preflight
    from drills.targets import Role

    scratches = [t for t in config.postgres.values() if t.role is Role.SCRATCH]
    if not scratches:
        return
    try:
        notes = preflight(scratches, list(config.postgres.values()), where=str(config.path))
    except SafetyError as exc:
        # A configuration error: the config names a scratch that may not be used (exit 2).
        raise ConfigError(exc.message, hint=exc.hint, **{"file": str(config.path), **exc.context}) from exc
    for note in notes:
        print(f"drillbook: {note}", file=sys.stderr)


class _CollectionWatcher:
    """Collects feature parse errors so they end the run as a usage error (exit 2)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longrepr)
            lines = [line for line in text.splitlines() if line.strip()]
            # pytest-bdd's FeatureError names the file and line at the end of the traceback.
            self.errors.append((report.nodeid or "features", "\n".join(lines[-6:])))


class _JunitGuard:
    """pytest writes junit.xml itself, in place: on a full or unwritable ``--out`` it raises a bare
    OSError after truncating the file. This turns that into a :class:`DiskError` naming the file,
    and removes the half-written file rather than leave it as evidence."""

    def __init__(self, junit: Path) -> None:
        self.junit = junit

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self) -> Generator[None, None, None]:
        try:
            return (yield)
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            if not _complete_xml(self.junit):
                self.junit.unlink(missing_ok=True)
            raise disk_error(exc, path=self.junit, phase="writing the JUnit report", what="--out") from exc


def _complete_xml(path: Path) -> bool:
    import xml.etree.ElementTree as ET

    try:
        ET.parse(path)  # noqa: S314 - pytest's own file of this run, not outside input
    except (OSError, ET.ParseError):
        return False
    return True


def _features_of(options: RunOptions) -> list[Path]:
    """``--features``, or one pack (``--pack``), or the default features without the packs."""
    from .packs import pack_path, without_packs

    if options.pack is not None:
        if options.features:
            raise ConfigError("--pack and --features both choose what runs: give one of them",
                              key="--pack", hint="drop --features, or name the pack's folder with --features")
        return [pack_path(_default_features(), options.pack)]
    return options.features or without_packs(_default_features())


def _default_features() -> Path:
    local = Path.cwd() / "features"
    return local if local.is_dir() else DEFAULT_FEATURES


def _rel(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _point_latest(out: Path, run_dir: Path) -> None:
    latest = out / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(run_dir.name)
    except OSError:
        pass  # a convenience only (e.g. filesystems without symlinks)
