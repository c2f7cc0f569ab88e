"""The audit side of a run: waivers in, ledger and evidence snapshot out.

Three seams, kept out of the main plugin and runner:

- a pytest plugin part (listed in ``drillbook.plugin.pytest_plugins``): the
  ``--drillbook-waivers`` / ``--drillbook-ledger`` options, the waiver file
  loaded at configure time (a bad file is a usage error before anything runs),
  :func:`waive` called by the plugin's recorder, and the ``drillbook_ledger``
  fixture the cadence step reads;
- :func:`prepare_run`, called by ``drillbook run`` before pytest starts:
  validates the waiver file against the feature catalogue, resolves the ledger;
- :meth:`RunAudit.finish`, called after the run: snapshots what an auditor
  needs into the run directory (features as run, redacted config, environment
  fingerprint, waiver file), appends to the ledger, signs the run's ledger head
  (``--sign`` / ``--sign-sandbox``, reports/ledger_heads.py), writes the metrics textfile.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from checks import redact
from checks.cadence import DrillHistory, drill_key, shortest_cadence
from checks.errors import ConfigError, DiskError
from checks.verdict import Verdict
from checks.waivers import Waiver, WaiverError, apply_waiver, check_known, load_waivers
from reports.ledger import Ledger, LocalLedger
from reports.ledger_runs import entries_for_run, histories
from reports.results import RunResult, ScenarioResult

from . import __version__

if TYPE_CHECKING:
    from reports.ledger import LedgerEntry

    from .ledger_signing import HeadSigning

_WAIVERS = pytest.StashKey[list[Waiver]]()
LEDGER_FILE = "ledger.jsonl"
METRICS_FILE = "drillbook.prom"
_TOOLS = ("pg_dump", "pg_restore", "psql")
_PACKAGES = ("pytest", "pytest-bdd", "psycopg", "boto3", "redis", "moto", "jinja2")


# ---------------------------------------------------------------- feature catalogue


@dataclass(frozen=True)
class Drill:
    """A scenario with an @id, as the features define it."""

    id: str
    scenario: str
    cadence: str | None
    feature_path: str
    line: int


def feature_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``.feature`` file under the given files and folders, sorted."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p.resolve() for p in path.rglob("*.feature"))
        elif path.suffix == ".feature" and path.exists():
            found.add(path.resolve())
    return sorted(found)


def catalogue(paths: Iterable[Path]) -> dict[str, Drill]:
    """Every scenario id the features define, with its (shortest) cadence."""
    from pytest_bdd.exceptions import FeatureError
    from pytest_bdd.parser import FeatureParser

    drills: dict[str, Drill] = {}
    for path in feature_files(paths):
        try:
            feature = FeatureParser(str(path.parent), path.name).parse()
        except FeatureError as exc:
            raise ConfigError(f"{path}: cannot parse the feature: {exc}", file=str(path)) from exc
        for scenario in feature.scenarios.values():
            tags = set(scenario.tags) | set(feature.tags)
            ident = next((t.split(":", 1)[1] for t in sorted(tags) if t.startswith("id:")), None)
            if ident is None:
                continue
            cadence = shortest_cadence(tags)
            previous = drills.get(ident)
            if previous is not None and previous.cadence != cadence:
                cadence = shortest_cadence([c for c in (cadence, previous.cadence) if c])
            drills[ident] = Drill(id=ident, scenario=scenario.name, cadence=cadence,
                                  feature_path=_feature_rel(path), line=scenario.line_number)
    return drills


def _feature_rel(path: Path) -> str:
    for parent in path.parents:
        if parent.name == "features":
            return str(Path("features") / path.relative_to(parent))
    return path.name


# ---------------------------------------------------------------- run integration


def read_waiver_file(path: Path, known_ids: Iterable[str] | None) -> list[Waiver]:
    """Load a waiver file; with ``known_ids``, an unknown scenario id is an error too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WaiverError(f"cannot read waiver file {path}: {exc.strerror}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise WaiverError(f"{path}: not UTF-8 text (byte {exc.start})", file=str(path)) from exc
    waivers = load_waivers(text, source=str(path))
    if known_ids is not None:
        check_known(waivers, known_ids)
    return waivers


@dataclass
class RunAudit:
    """What ``drillbook run`` needs before and after pytest: waivers, ledger, config to snapshot."""

    ledger: Ledger | None
    waivers_path: Path | None
    config_path: Path | None
    features: Sequence[Path]
    out: Path = Path("out")
    ledger_url: str | None = None
    waivers: list[Waiver] = field(default_factory=list)
    signing: HeadSigning | None = None
    signed_head: str | None = None  # where this run's signed head went

    def pytest_args(self) -> list[str]:
        args = []
        if self.waivers_path is not None:
            args.append(f"--drillbook-waivers={self.waivers_path}")
        if self.ledger is not None:
            s3 = self.ledger_url is not None and self.ledger_url.startswith("s3://")
            args.append(f"--drillbook-ledger={self.ledger_url if s3 else self.ledger.path}")
        return args

    def finish(self, run_dir: Path) -> list[str]:
        """Snapshot evidence into ``run_dir``, append to the ledger, write metrics; return problems."""
        problems: list[str] = []
        run = RunResult.read(run_dir / "results.json")
        try:
            snapshot_run(run_dir, run, self.features, self.config_path, self.waivers_path)
        except (OSError, DiskError) as exc:  # DiskError: config.json/environment.json, path named
            problems.append(f"evidence snapshot incomplete in {run_dir}: {exc}")
        if self.ledger is None:
            return problems
        from checks.errors import DrillbookError

        try:
            appended = self.ledger.append(entries_for_run(run))
        except DrillbookError as exc:
            problems.append(f"ledger not updated: {redact.redact(str(exc))}")
            return problems
        if self.signing is not None and appended:
            try:
                self.signed_head = self._sign_head(appended, self.signing)
            except DrillbookError as exc:
                # Unsigned, this run's entries stay unvouched for: a trusted check of the ledger fails.
                problems.append(f"ledger head not signed: {redact.redact(str(exc))}")
        try:
            from reports.metrics import write_textfile

            read = self.ledger.read()
            # Beside a local ledger; in the runs directory for a ledger on S3.
            where = (self.ledger.path.with_name(METRICS_FILE) if isinstance(self.ledger, LocalLedger)
                     else self.out.resolve() / METRICS_FILE)
            write_textfile(where, read.entries, catalogue_cadences(self.features))
        except (OSError, ConfigError, DiskError) as exc:
            problems.append(f"metrics textfile not written: {exc}")
        return problems

    def _sign_head(self, appended: Sequence[LedgerEntry], signing: HeadSigning) -> str:
        from reports.ledger_heads import sign_run_head

        assert self.ledger is not None  # only called after an append
        first = appended[0] if appended[0].seq == 1 else next(
            (e for e in self.ledger.read().entries if e.seq == 1), None)
        if first is None:
            from reports.ledger import LedgerCorrupt

            raise LedgerCorrupt(f"{self.ledger.path}: no entry seq 1 to name the ledger by")
        # Where it was when signed (informational: a verifier checks hashes, not paths).
        location = str(getattr(self.ledger, "location", self.ledger.path))
        return sign_run_head(self.ledger, appended, signing.make(), ledger_id=first.hash,
                             location=location, now=datetime.now(UTC))


def catalogue_cadences(features: Sequence[Path]) -> dict[str, str | None]:
    return {d.id: d.cadence for d in catalogue(features).values()}


def prepare_run(*, features: Sequence[Path], config_path: Path | None, waivers: Path | None,
                out: Path, sign: bool = False, sign_sandbox: bool = False) -> RunAudit:
    """Resolve ledger and waivers for a run; a bad waiver file raises (usage error, nothing ran)."""
    ledger_url: str | None = None
    s3_options: dict[str, str] = {}
    if config_path is not None:
        from drills.config import load_config

        config = load_config(config_path)
        ledger_url = config.ledger_url
        s3_options = dict(config.ledger_s3)
        if waivers is None and config.waivers is not None:
            waivers = config.waivers
    audit = RunAudit(ledger=ledger_at(ledger_url, out, config_path, s3_options), waivers_path=waivers,
                     config_path=config_path, features=list(features), out=out, ledger_url=ledger_url)
    if waivers is not None:
        audit.waivers_path = waivers.resolve()
        # Known ids come from the whole suite, not only the selected folder: one team-wide waiver
        # file must not break a run of `--features features/backup`.
        audit.waivers = read_waiver_file(audit.waivers_path, catalogue(suite_roots(features)).keys())
    from .ledger_signing import head_signing

    # Last: a usage error above leaves nothing behind (not even a sandbox authority).
    audit.signing = head_signing(sign=sign, sign_sandbox=sign_sandbox, out=out)
    return audit


def suite_roots(paths: Iterable[Path]) -> list[Path]:
    """For each features path, the enclosing folder named ``features`` (the suite), else the path."""
    roots = []
    for path in paths:
        resolved = path.resolve()
        root = next((p for p in (resolved, *resolved.parents) if p.name == "features"), resolved)
        roots.append(root)
    return roots


def ledger_at(url: str | None, out: Path, config_path: Path | None = None,
              s3_options: dict[str, str] | None = None) -> Ledger:
    """The ledger a run appends to: ``[ledger] url`` (a path or s3://) or ``<out>/ledger.jsonl``."""
    if url is None:
        return LocalLedger((out / LEDGER_FILE).resolve())
    if url.startswith("s3://"):
        return s3_ledger(url, s3_options or {})
    path = Path(url.removeprefix("file://"))
    if not path.is_absolute() and config_path is not None:
        path = config_path.parent / path
    return LocalLedger(path.resolve())


def s3_ledger(url: str, options: dict[str, str], *, session: Any = None) -> Ledger:
    """An S3 ledger with a client like the backup stores' (timeouts, bounded retries, path style).

    ``session``: a boto3 Session to make the client from (a new one by default). Each new session
    loads the S3 service model again (~0.7 s), which many ledgers in one process can share.
    """
    from reports.ledger_s3 import AppendPolicy, S3Ledger, S3Location

    location = S3Location.parse(url)
    policy = AppendPolicy()
    if "append_timeout" in options:  # validated with the config (drills/config.py)
        from checks.durations import parse_duration

        policy = AppendPolicy(budget_s=parse_duration(options["append_timeout"]).total_seconds())
    client = s3_client(options, session=session)
    return S3Ledger(location, client, endpoint=options.get("endpoint_url"), policy=policy)


def s3_client(options: dict[str, str], *, session: Any = None, connect_timeout_s: float = 5,
              read_timeout_s: float = 30, max_attempts: int = 3) -> Any:
    """A boto3 S3 client from ``[ledger]``-style options (endpoint_url, region, keys); also the
    fleet's runs location's (drillbook/fleet/runs.py), so both reach S3 the same way.

    The timeouts and attempts default to a run's (a batch append may be slow); ``drillbook
    doctor`` passes short ones so that one check stays within its deadline.
    """
    import boto3
    from botocore.config import Config as BotoConfig

    redact.register(options.get("secret_access_key"))
    endpoint = options.get("endpoint_url")
    return (session or boto3.session.Session()).client(
        "s3", endpoint_url=endpoint, region_name=options.get("region", "us-east-1"),
        aws_access_key_id=options.get("access_key_id"),
        aws_secret_access_key=options.get("secret_access_key"),
        config=BotoConfig(connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                          retries={"total_max_attempts": max_attempts, "mode": "standard"},
                          s3={"addressing_style": "path"} if endpoint else None),
    )


def snapshot_run(run_dir: Path, run: RunResult, features: Sequence[Path], config_path: Path | None,
                 waivers_path: Path | None) -> None:
    """Copy into the run directory what the evidence bundle needs and might change later."""
    wanted = {s.feature_path for s in run.scenarios}
    for path in feature_files(features):
        rel = _feature_rel(path)
        if rel in wanted:
            target = run_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    config: dict[str, Any] = {"config_path": str(config_path) if config_path else None,
                              "environment": run.environment}
    if config_path is not None:
        from drills.config import load_config

        config["effective"] = load_config(config_path).redacted()
    else:
        config["effective"] = None
        config["note"] = "no drillbook.toml: the embedded local sandbox supplied every target"
    _write_json(run_dir / "config.json", redact.redact_obj(config))
    _write_json(run_dir / "environment.json", redact.redact_obj(fingerprint(run)))
    if waivers_path is not None:
        shutil.copyfile(waivers_path, run_dir / "waivers.toml")


def fingerprint(run: RunResult) -> dict[str, Any]:
    """drillbook, Python, package and tool versions, the host, and the environment's details."""
    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "drillbook_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": packages,
        "tools": tool_versions(),
        "environment": run.environment,
        "environment_details": dict(run.environment_details),
    }


def tool_versions() -> dict[str, str | None]:
    """``--version`` of the PostgreSQL client tools and redis-server (None when absent)."""
    from checks.errors import EnvironmentError_
    from drills import pgtools

    found: dict[str, str | None] = {}
    for name in _TOOLS:
        try:
            binary = str(pgtools.bindir() / name)
        except EnvironmentError_:
            binary = shutil.which(name) or name
        found[name] = _version_of([binary, "--version"])
    found["redis-server"] = _version_of(["redis-server", "--version"])
    return found


def _version_of(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _write_json(path: Path, data: Any) -> None:
    from checks.files import write_atomic

    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                 phase=f"writing the run's {path.name}")


# ---------------------------------------------------------------- pytest plugin part


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drillbook")
    group.addoption("--drillbook-waivers", default=None, help="waiver file (TOML) to apply")
    group.addoption("--drillbook-ledger", default=None, help="cadence ledger file the cadence step reads")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--drillbook-waivers", None)
    if not path:
        config.stash[_WAIVERS] = []
        return
    try:
        config.stash[_WAIVERS] = read_waiver_file(Path(path), None)
    except WaiverError as exc:
        raise pytest.UsageError(f"drillbook: {exc}") from exc


def waive(config: pytest.Config, scenario_id: str | None, verdict: Verdict) -> Verdict:
    """The plugin's recorder calls this: a failed verdict under an active waiver becomes waived."""
    waivers = config.stash.get(_WAIVERS, [])
    if not waivers:
        return verdict
    return apply_waiver(verdict, scenario_id, waivers, today=datetime.now(UTC).date())


class LedgerView:
    """What the cadence step may ask of the ledger: one drill's history.

    ``this_run`` gives the scenarios this run has finished so far: a drill that passed earlier
    in the same run (BKP-01 before a pre-upgrade check of it) counts, though the ledger only
    receives the run's entries at its end. ``member``: a fleet member's run asks about the drill
    on that member (``FLT-01[db-042]``), never another member's pass.
    """

    def __init__(self, ledger: Ledger | None,
                 this_run: Callable[[], tuple[str, Sequence[ScenarioResult]]] | None = None,
                 member: str | None = None) -> None:
        self.ledger = ledger
        self.this_run = this_run
        self.member = member

    def history(self, drill_id: str) -> DrillHistory:
        """The drill's history; raises LedgerCorrupt (an error verdict) when the chain is damaged."""
        from reports.ledger import LedgerCorrupt

        found = DrillHistory(drill_id=drill_id, cadence=None, member=self.member)
        if self.ledger is not None:
            read = self.ledger.read()
            if not read.ok:
                raise LedgerCorrupt(f"{self.ledger.path}: {read.problems[0]}", path=str(self.ledger.path))
            found = histories(read.entries).get(drill_key(drill_id, self.member)) or found
        if self.this_run is not None:
            found = _with_this_run(found, *self.this_run())
        return found


def _with_this_run(history: DrillHistory, run_id: str, scenarios: Sequence[ScenarioResult]) -> DrillHistory:
    """The ledger's history of a drill, updated with its finished scenarios of the current run."""
    from checks.verdict import worst

    mine = [s for s in scenarios if s.scenario_id == history.drill_id and s.member == history.member
            and s.started_at and s.duration_s]
    outcome = worst([s.outcome for s in mine])
    if outcome is None:
        return history
    moment = max(datetime.fromisoformat(s.started_at) for s in mine)
    passed = not outcome.counts_as_fail()
    cadence = history.cadence or shortest_cadence({t for s in mine for t in s.tags})
    return DrillHistory(drill_id=history.drill_id, cadence=cadence, last_run=moment, last_outcome=outcome,
                        last_pass=moment if passed else history.last_pass, last_run_id=run_id,
                        member=history.member)


@pytest.fixture(scope="session")
def drillbook_ledger(request: pytest.FixtureRequest) -> LedgerView:
    """The run's cadence ledger (``--drillbook-ledger``; else ``out/ledger.jsonl`` beside the run)."""
    from .plugin import session_of

    session = session_of(request.config)

    def this_run() -> tuple[str, Sequence[ScenarioResult]]:
        return session.run.run_id, list(session.scenarios)

    member = request.config.getoption("--drillbook-member", None) or None
    path = request.config.getoption("--drillbook-ledger", None)
    if path and str(path).startswith("s3://"):
        from drills.config import load_config

        config = request.config.getoption("--drillbook-config", None)
        options = dict(load_config(Path(config)).ledger_s3) if config else {}
        return LedgerView(s3_ledger(str(path), options), this_run, member)
    if path:
        return LedgerView(LocalLedger(Path(path)), this_run, member)
    out = request.config.getoption("--drillbook-out", None)
    if out:
        return LedgerView(LocalLedger(Path(out).resolve().parent / LEDGER_FILE), this_run, member)
    return LedgerView(None, this_run, member)
