"""``drillbook gate pre-upgrade --to VERSION``: every ``@pre-upgrade`` scenario, and what blocks.

Two seams, like :mod:`drillbook.audit`:

- a pytest plugin part (listed in ``drillbook.plugin.pytest_plugins``): the
  ``--drillbook-upgrade-to`` / ``--drillbook-upgrade-from`` options, validated
  at configure time (a malformed version is a usage error before anything
  runs), and the ``drillbook_upgrade`` fixture the upgrade steps read;
- the command: versions validated first (exit 2), then ``drillbook run`` on
  the ``@pre-upgrade`` scenarios with those options, then a plain list of
  what blocks the upgrade (each failing scenario id and its failing checks).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from checks import redact
from checks.errors import ConfigError
from checks.upgrades import Version, VersionError
from drills.upgrades import UpgradeRequest
from reports.results import RunResult

from .runner import EXIT_FAILED, EXIT_PASSED, RunOptions, load_run_config, new_run_id, run, run_settings

GATE_TAG = "pre-upgrade"
_REQUEST = pytest.StashKey[UpgradeRequest]()


# ---------------------------------------------------------------- pytest plugin part


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drillbook")
    group.addoption("--drillbook-upgrade-to", default=None,
                    help="the version being upgraded to (drillbook gate pre-upgrade --to)")
    group.addoption("--drillbook-upgrade-from", default=None,
                    help="the version installed now (overrides the plan's `installed`)")


def pytest_configure(config: pytest.Config) -> None:
    try:
        request = upgrade_request(config.getoption("--drillbook-upgrade-to"),
                                  config.getoption("--drillbook-upgrade-from"))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[_REQUEST] = request


@pytest.fixture(scope="session")
def drillbook_upgrade(request: pytest.FixtureRequest) -> UpgradeRequest:
    """The target (and installed) version given to this run; both None outside the gate."""
    return request.config.stash.get(_REQUEST, UpgradeRequest())


def upgrade_request(to: str | None, installed: str | None) -> UpgradeRequest:
    """Both versions parsed; a malformed one is a :class:`ConfigError` naming the option."""
    return UpgradeRequest(target=_version(to, "--to"), installed=_version(installed, "--from"))


def _version(text: str | None, option: str) -> Version | None:
    if text is None:
        return None
    try:
        return Version.parse(text)
    except VersionError as exc:
        raise ConfigError(f"{option} {text!r}: {exc.message}", hint=exc.hint) from exc


# ---------------------------------------------------------------- the command


def add_parser(gate_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = gate_sub.add_parser(
        "pre-upgrade",
        help="run every @pre-upgrade scenario for an upgrade to VERSION; exit 0 or say what blocks",
        description="Runs every scenario tagged @pre-upgrade (backup verified within cadence, migrations "
                    "replay/round trip/lint, the release's supply chain, the upgrade plan and its "
                    "rehearsal) with the target version available to the steps. Exit 0: nothing blocks; "
                    "1: a scenario failed or errored (listed at the end); 2: usage or configuration error.")
    p.add_argument("--to", required=True, metavar="VERSION", dest="to_version",
                   help="the version to upgrade to, e.g. 4.2.0")
    p.add_argument("--from", metavar="VERSION", dest="from_version",
                   help="the version installed now (default: the plan's `installed`)")
    p.add_argument("--config", type=Path, help="drillbook.toml with live targets")
    p.add_argument("--out", type=Path, default=None,
                   help="where runs are written (default: [run] out of --config, else out/)")
    p.add_argument("--features", type=Path, action="append",
                   help="feature file or folder (repeatable; default features/)")
    p.add_argument("--env", choices=["auto", "local", "live", "containers"], default="auto",
                   help="where targets come from (default: live with --config, else local)")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                   help="warnings block the upgrade too (default: [run] strict of --config, else no)")
    p.add_argument("--waivers", type=Path, help="waiver file (TOML): approved, time-boxed failures")
    p.add_argument("--canary", action="store_true",
                   help="sandbox: plant the known failures (e.g. a release artifact altered after signing), "
                        "to see the gate block")
    p.add_argument("-v", "--verbose", action="store_true", help="show pytest's tracebacks too")


def gate_pre_upgrade(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the gate; print plainly what blocks. Exit codes per ARCHITECTURE.md."""
    request = upgrade_request(args.to_version, args.from_version)  # exit 2 before anything runs
    assert request.target is not None
    if args.canary:
        os.environ["DRILLBOOK_CANARY"] = "1"  # read by steps/supply_chain.py
    extra = [f"--drillbook-upgrade-to={request.target}"]
    if request.installed is not None:
        extra.append(f"--drillbook-upgrade-from={request.installed}")
    run_id = new_run_id()
    options = RunOptions(config=args.config, tags=GATE_TAG, out=args.out, features=args.features,
                         env=args.env, strict=args.strict, verbose=args.verbose, waivers=args.waivers,
                         pytest_args=extra, run_id=run_id)
    # The same out/strict the run uses ([run] of the config unless a flag overrides it).
    settings = run_settings(options, load_run_config(options))
    code = run(options, argv=argv)
    results = settings.out / run_id / "results.json"
    if code not in (EXIT_PASSED, EXIT_FAILED) or not results.exists():
        return code
    outcome = RunResult.read(results)
    target = f"{request.installed} → {request.target}" if request.installed else str(request.target)
    blockers = blocking(outcome, strict=settings.strict)
    if code == EXIT_PASSED and not blockers:
        print(f"drillbook gate pre-upgrade: PASS — {len(outcome.scenarios)} @pre-upgrade scenario(s) "
              f"passed; nothing blocks the upgrade to {target}")
        return EXIT_PASSED
    if blockers:
        print(f"drillbook gate pre-upgrade: BLOCKED — the upgrade to {target} is blocked by "
              f"{len(blockers)} of {len(outcome.scenarios)} scenario(s):")
        for lines in blockers:
            print("\n".join(lines))
    else:
        print(f"drillbook gate pre-upgrade: BLOCKED — the upgrade to {target}: every scenario passed, "
              "but the run's audit trail is incomplete (see the messages above)")
    return EXIT_FAILED


def blocking(outcome: RunResult, *, strict: bool) -> list[list[str]]:
    """Per failing scenario: a line with its id and name, one per failing check with its message."""
    found = []
    for scenario in outcome.scenarios:
        if not scenario.outcome.counts_as_fail(strict=strict):
            continue
        lines = [f"  {scenario.scenario_id or '-':<8} {scenario.scenario}"]
        failing = [v for v in scenario.verdicts if v.counts_as_fail(strict=strict)]
        for verdict in failing:
            lines.append(f"      {verdict.outcome.value}: {verdict.id}: {redact.redact(verdict.message)}")
        if not failing and scenario.failure:
            lines.append(f"      {redact.redact(scenario.failure.splitlines()[0])}")
        found.append(lines)
    return found
