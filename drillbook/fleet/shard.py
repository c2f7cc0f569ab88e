"""``drillbook run --plan URL [--shard-index I]``: run one bin, commit it, merge when last.

FLEET.md §4.4–§6. Exit codes in shard mode: **0** = committed (whatever the
verdicts, or an earlier attempt had committed this index); **2** = usage,
config or plan error (the index is missing or out of range, the plan was made
by another drillbook or from other features): retrying cannot help, and
Kubernetes' podFailurePolicy fails the index; anything else = an
infrastructure failure, retried by the engine.

The index comes from ``--shard-index``, else ``JOB_COMPLETION_INDEX``
(Kubernetes Indexed Jobs), ``CI_NODE_INDEX`` − 1 (GitLab's ``parallel:``
counts from 1), ``DRILLBOOK_SHARD_INDEX`` (anything else, e.g. GitHub's
``matrix.index``), in that order.

Members of the bin run one after the other, each in its own child ``drillbook
run`` (:func:`drillbook.fleet.execute.run_member`); a child that leaves no
results (a crash, a kill, a usage error) makes that member's items ``error``
and the others go on.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reports.results import RunResult, ScenarioResult

from .. import __version__
from . import junit_merge
from .merge import merge_group, read_plan, shard_label, stand_in
from .plan import Bin, Plan, PlanError
from .planner import Selection, config_s3_options, default_features, ledger_for, selected_features
from .runs import CLAIM, Commit, Runs, attempt_key, check_key_part, commit_key, open_runs, read_commits

EXIT_COMMITTED, EXIT_PLAN = 0, 2
_INDEX_SOURCES = (("JOB_COMPLETION_INDEX", 0), ("CI_NODE_INDEX", -1), ("DRILLBOOK_SHARD_INDEX", 0))
_DIGITS = re.compile(r"^[0-9]{1,9}$")

Progress = Callable[[str], None]


def shard_index(explicit: str | None, environ: Mapping[str, str]) -> tuple[int, str]:
    """The index and where it came from; a missing or malformed one is a :class:`PlanError`."""
    if explicit is not None:
        return _index(explicit, "--shard-index", 0), "--shard-index"
    for name, offset in _INDEX_SOURCES:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return _index(value, name, offset), name
    raise PlanError("no shard index: give --shard-index I or set JOB_COMPLETION_INDEX, CI_NODE_INDEX "
                    "or DRILLBOOK_SHARD_INDEX", key="--shard-index",
                    hint="Kubernetes sets JOB_COMPLETION_INDEX for completionMode: Indexed; in CI pass "
                         "the matrix index as DRILLBOOK_SHARD_INDEX")


def _index(text: str, source: str, offset: int) -> int:
    cleaned = text.strip()
    if not _DIGITS.match(cleaned):
        raise PlanError(f"{source}={text!r} is not a shard index (a whole number)", key=source)
    value = int(cleaned) + offset
    if value < 0:
        raise PlanError(f"{source}={text!r} gives shard index {value}: GitLab's CI_NODE_INDEX counts from 1",
                        key=source)
    return value


def check_plan(plan: Plan, index: int, *, features_digest: str) -> Bin:
    """The bin to run, once the plan is known to be this drillbook's and these features'."""
    bins = len(plan.bins)
    if index >= bins:
        raise PlanError(f"shard index {index} is out of range: the plan has {bins} bins (0-{bins - 1})",
                        key="--shard-index", hint="completions (or the CI matrix) must equal the plan's bins")
    if plan.drillbook_version != __version__:
        raise PlanError(f"the plan was made by drillbook {plan.drillbook_version}; this is {__version__}",
                        hint="run every shard from the image (or checkout) that made the plan, or plan again")
    if plan.features_digest != features_digest:
        raise PlanError(f"the features differ from the plan's ({features_digest} here, "
                        f"{plan.features_digest} in the plan)",
                        hint="run every shard from the checkout that made the plan, or plan again")
    return plan.bins[index]


@dataclass
class ShardOptions:
    plan_url: str
    shard_index: str | None = None
    config: Path | None = None
    features: list[Path] | None = None
    work: Path | None = None  # where member runs are written before upload (default: a temp dir)
    env: str = "live"
    attempt: str | None = None
    merge: bool = True  # the last finisher merges (a local --workers run merges itself afterwards)


def new_attempt(environ: Mapping[str, str]) -> str:
    """A fresh attempt id: ``DRILLBOOK_ATTEMPT`` (the pod UID or CI run attempt), else time + random."""
    given = environ.get("DRILLBOOK_ATTEMPT")
    if given:
        return check_key_part(given, what="DRILLBOOK_ATTEMPT")
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def run_shard(options: ShardOptions, *, environ: Mapping[str, str] | None = None,
              progress: Progress | None = None) -> int:
    """Run the bin of this index and commit it; merge when every bin is committed."""
    env = os.environ if environ is None else environ
    say = progress or _say
    runs = open_runs(options.plan_url, config_s3_options(options.config))
    plan = read_plan(runs)
    index, source = shard_index(options.shard_index, env)
    # Never the plan's own record of its config: a plan read back from a runs location is
    # outside input, and a config decides which servers the run's credentials go to.
    config = options.config
    if config is None:
        raise PlanError("a shard needs --config: the plan's record of its drillbook.toml is not trusted "
                        "(whoever can write the runs location could point it at another file)",
                        key="--config")
    features = [p.resolve() for p in options.features] if options.features else default_features()
    selection = Selection(**{k: plan.selection.get(k) for k in ("cadence", "tags", "members")})
    _, feature_bytes = selected_features(features, selection)
    from .plan import features_digest

    work_bin = check_plan(plan, index, features_digest=features_digest(feature_bytes))
    label = shard_label(index, len(plan.bins))
    existing = runs.get(commit_key(index))
    if existing is not None:
        committed = Commit.from_bytes(existing, where=runs.url(commit_key(index)))
        say(f"{label} is already committed (attempt {committed.attempt}): this retry does nothing")
        _merge_if_last(runs, plan, options, say, attempt="retry")
        return EXIT_COMMITTED
    attempt = options.attempt or new_attempt(env)
    say(f"{label} (index from {source}), attempt {attempt}: {len(work_bin.items)} work item(s) of "
        f"{len(work_bin.members())} member(s)")
    started = _now()
    with _work_dir(options.work) as work:
        shard_run, junit = run_bin(plan, work_bin, config=config, features=features, work=work,
                                   env=options.env, progress=say)
    shard_run.started_at = min([started, *(s.started_at for s in shard_run.scenarios if s.started_at)])
    shard_run.finished_at = _now()
    files = {"results.json": (shard_run_bytes(shard_run)), "junit.xml": junit}
    from reports.html import render_html_report

    files["report.html"] = render_html_report(shard_run).encode("utf-8")
    for name, data in files.items():
        runs.put(attempt_key(index, attempt, name), data)
    commit = Commit(index=index, attempt=attempt,
                    files={name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
                    details={"host": socket.gethostname(), "started_at": shard_run.started_at,
                             "finished_at": shard_run.finished_at,
                             **({"pod": env["POD_NAME"]} if env.get("POD_NAME") else {}),
                             **({"node": env["NODE_NAME"]} if env.get("NODE_NAME") else {})})
    if not runs.put_create_only(commit_key(index), commit.to_bytes()):
        say(f"{label} was committed by an earlier attempt meanwhile: this attempt's files stay under "
            f"{runs.url(f'shards/{index}/{attempt}/')} and do not count")
        return EXIT_COMMITTED
    counts = {k: v for k, v in shard_run.counts().items() if v}
    say(f"{label} committed: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    _merge_if_last(runs, plan, options, say, attempt=attempt)
    return EXIT_COMMITTED


def _merge_if_last(runs: Runs, plan: Plan, options: ShardOptions, say: Progress, *, attempt: str) -> None:
    """List the commits after ours: when all are there, claim the merge create-only and merge."""
    if not options.merge:
        return
    commits = read_commits(runs, len(plan.bins))
    if len(commits) < len(plan.bins):
        say(f"{len(commits)}/{len(plan.bins)} bins committed: the last shard to finish merges")
        return
    claim = f'{{"attempt":"{attempt}","host":"{socket.gethostname()}"}}\n'.encode()
    if not runs.put_create_only(CLAIM, claim):
        return
    try:
        outcome = merge_group(runs, ledger=ledger_for(runs, options.config), progress=say)
    except Exception as exc:  # noqa: BLE001 - the shard is committed; its exit code must say so
        # A merge that fails here leaves the claim: `drillbook report merge` (idempotent) redoes it.
        say(f"the merge failed ({type(exc).__name__}: {exc}); run `drillbook report merge {runs.url()}`")
        return
    say(f"merged {outcome.committed}/{outcome.bins} bins: {'PASS' if outcome.run.passed else 'FAIL'}; "
        f"results {outcome.urls['results.json']}")


def run_bin(plan: Plan, work_bin: Bin, *, config: Path, features: Sequence[Path], work: Path,
            env: str = "live", progress: Progress | None = None) -> tuple[RunResult, bytes]:
    """Run the bin's members one after the other; their results as one RunResult and one JUnit."""
    from .execute import run_member, tail

    scenarios: list[ScenarioResult] = []
    cases: list[junit_merge.Element] = []
    environment = ""
    details: dict[str, str] = {}
    for member in work_bin.members():
        ids = [i.scenario for i in work_bin.items if i.member == member]
        run_dir = run_member(config=config, member=member, scenario_ids=ids, features=list(features),
                             out=work,
                             run_id=f"{plan.group}-{work_bin.index}-{member}", env=env, progress=progress)
        member_run = _read_member(run_dir)
        junit = (run_dir / "junit.xml")
        if member_run is None or not junit.exists():
            reason = f"member {member}'s drill process left no results: {tail(run_dir, 6)}"
            for ident in ids:
                missing = stand_in(plan, member, ident, reason)
                scenarios.append(missing)
                cases.append(junit_merge.error_case(
                    missing.feature, f"{missing.display_id} {missing.scenario}", reason))
            continue
        environment = environment or member_run.environment
        details.update({f"{member}.{k}": v for k, v in member_run.environment_details.items()})
        scenarios.extend(member_run.scenarios)
        cases.extend(junit_merge.testcases(junit.read_bytes(), where=str(junit)))
    scenarios.sort(key=lambda s: (s.member or "", s.scenario_id or "", s.nodeid))
    shard = RunResult(run_id=f"{plan.group}-shard-{work_bin.index}", started_at="", finished_at="",
                      drillbook_version=__version__, user=_user(), host=socket.gethostname(),
                      environment=environment, environment_details=details, config_path=str(config),
                      command=f"drillbook run --plan {plan.group}/plan.json --shard-index {work_bin.index}",
                      scenarios=scenarios)
    junit_bytes = junit_merge.merge([junit_merge.Suite(junit_merge.suite_name(work_bin.index, len(plan.bins)),
                                                       cases)])
    return shard, junit_bytes


def _read_member(run_dir: Path) -> RunResult | None:
    try:
        return RunResult.read(run_dir / "results.json")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shard_run_bytes(run: RunResult) -> bytes:
    from .merge import results_bytes

    return results_bytes(run)


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _work_dir:
    """``--out`` when given (kept), else a temporary directory (removed)."""

    def __init__(self, given: Path | None) -> None:
        self.given = given
        self._temp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self.given is not None:
            self.given.mkdir(parents=True, exist_ok=True)
            return self.given.resolve()
        self._temp = tempfile.TemporaryDirectory(prefix="drillbook-shard-")
        return Path(self._temp.name)

    def __exit__(self, *exc: object) -> None:
        if self._temp is not None:
            self._temp.cleanup()


def _say(line: str) -> None:
    print(f"drillbook: {line}", file=sys.stderr, flush=True)
