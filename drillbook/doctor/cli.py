"""``drillbook doctor [--config F] [--json]``: what a config (or, without one, the sandbox) calls for.

Exit 0 when no check failed (warnings pass), 1 when one did, 2 for a usage or configuration
error (a bad config stops before any check, with the usual ConfigError message).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from checks import redact
from checks.verdict import Outcome, Verdict, worst
from drills.config import Config
from drills.targets import PostgresTarget, Role

from ..runner import DEFAULT_OUT, EXIT_FAILED, EXIT_PASSED
from . import environment, postgres, targets
from .base import Check, as_json, concurrently, failed, render, result, run_checks, summary


def doctor_setup(args: argparse.Namespace) -> int:
    """Run the checks, print one line each (or JSON), return the exit code."""
    if args.config is not None:
        from drills.config import load_config

        config = load_config(args.config.resolve())
        checks = config_checks(config, shown=str(args.config))
        heading = f"drillbook doctor: the setup of {args.config}"
    else:
        from ..audit import ledger_at

        # Where `drillbook run` without a config appends: <DEFAULT_OUT>/ledger.jsonl, from here.
        checks = environment.machine_checks(ledger=ledger_at(None, DEFAULT_OUT).path)
        heading = "drillbook doctor: this machine, for the embedded sandbox (no --config)"
    verdicts: list[Verdict] = []
    if not args.json:
        print(heading, flush=True)
    for verdict in run_checks(checks):
        verdicts.append(verdict)
        if not args.json:
            print("\n".join(render(verdict)), flush=True)
    code = EXIT_FAILED if failed(verdicts) else EXIT_PASSED
    if args.json:
        from ..cli import print_json

        print_json({"config": str(args.config) if args.config else None, "checks": as_json(verdicts),
                    "outcome": "fail" if code else "pass"})
    else:
        print(f"drillbook doctor: {'FAIL' if code else 'PASS'} — {summary(verdicts)}", flush=True)
    sys.stdout.flush()
    return code


def config_checks(config: Config, *, shown: str) -> list[Check]:
    """Every target reachable; subjects read-only; scratch safe; tools; ledger; clock."""
    for spec in config.stores.values():
        redact.register(spec.secret_access_key)  # before any thread could print an error with it
    sessions = postgres.Sessions()  # each server's version read once, by whichever check asks first
    checks = [Check("config", lambda: _config_line(config, shown))]
    checks += _reachability(config, sessions)
    subjects = [t for t in config.postgres.values() if t.role is Role.SUBJECT]
    scratches = [t for t in config.postgres.values() if t.role is Role.SCRATCH]
    for subject in subjects:
        name = f"targets.{subject.name} read-only role"
        checks.append(Check(name, partial(postgres.privileges, name, subject)))
    for scratch in scratches:
        checks += _scratch_checks(scratch, subjects)
    if not scratches and (subjects or config.stores):
        # Restores need scratch: without a configured one, drillbook starts a local cluster.
        local = "scratch created locally"
        checks += [Check(local, partial(_local_scratch, local, subjects, sessions)),
                   Check("postgres OS user", partial(environment.server_user, "postgres OS user")),
                   Check("temp dir", partial(environment.temp_dir, "temp dir"))]
    checks += [
        Check("pg_restore version", lambda: _tool("pg_restore version", "pg_restore", subjects, sessions)),
        Check("psql version", lambda: _tool("psql version", "psql", subjects, sessions, restrict=True)),
        Check("ledger writable", lambda: _ledger("ledger writable", config)),
    ]
    if config.postgres:
        checks.append(Check("clock", lambda: _clock("clock", list(config.postgres.values()))))
    return checks


def _config_line(config: Config, shown: str) -> Verdict:
    kinds = {"postgres": len(config.postgres), "redis": len(config.redis), "store": len(config.stores),
             "http": len(config.http), "tls": len(config.tls), "prometheus": len(config.prometheus)}
    counted = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
    if not counted:
        return result("config", Outcome.WARNING, f"{shown} is valid but names no target",
                      fix="add `[targets.NAME]` tables (`drillbook init` writes a first one)")
    return result("config", Outcome.PASSED, f"{shown} is valid: targets {counted}")


def _reachability(config: Config, sessions: postgres.Sessions) -> list[Check]:
    kinds: list[tuple[Callable[[str, Any], Verdict], Mapping[str, Any]]] = [
        (partial(targets.postgres, sessions=sessions), config.postgres), (targets.redis, config.redis),
        (targets.store, config.stores),
        (targets.http, config.http), (targets.tls, config.tls), (targets.prometheus, config.prometheus)]
    found = []
    for check, table in kinds:
        for target_name, target in table.items():
            name = f"targets.{target_name} reachable"
            found.append(Check(name, partial(check, name, target)))
    return found


def _scratch_checks(scratch: PostgresTarget, subjects: Sequence[PostgresTarget]) -> list[Check]:
    empty, own, role = (f"targets.{scratch.name} {what}"
                        for what in ("empty", "on a server of its own", "role contained"))
    return [Check(empty, partial(postgres.scratch_empty, empty, scratch)),
            Check(own, partial(postgres.scratch_own_server, own, scratch, subjects)),
            Check(role, partial(postgres.scratch_role, role, scratch))]


def _tool(name: str, tool: str, subjects: Sequence[PostgresTarget], sessions: postgres.Sessions, *,
          restrict: bool = False) -> Verdict:
    servers, unreached = sessions.versions(subjects)
    if not subjects:
        local = environment.local_server_version()
        servers = [local] if local is not None else []
    return environment.client_tool(name, tool, servers=servers, unreached=unreached, restrict=restrict)


def _local_scratch(name: str, subjects: Sequence[PostgresTarget], sessions: postgres.Sessions) -> Verdict:
    """No scratch configured: the local server binaries start one, at least as new as every subject."""
    binaries = environment.server_binaries(name)
    local = environment.local_server_version()
    if binaries.outcome is not Outcome.PASSED or local is None:
        return binaries
    servers, unreached = sessions.versions(subjects)
    newer = [s for s in servers if s.major > local.major]
    if newer:
        named = ", ".join(f"{s.label} ({s.text})" for s in newer)
        return result(name, Outcome.FAILED, f"{binaries.message} would restore dumps of {named}, a newer "
                      "major version", fix="install the PostgreSQL server of the subject's major version "
                      "(DRILLBOOK_PG_BINDIR), or configure a postgres target with `scratch = true`")
    message = f"no `scratch = true` target: drillbook starts one from {binaries.message}"
    if unreached:
        return result(name, Outcome.WARNING, f"{message}; not compared with {', '.join(unreached)} (no "
                      "answer)", fix="make those targets reachable, then run doctor again")
    return result(name, Outcome.PASSED, message)


def _ledger(name: str, config: Config) -> Verdict:
    url = config.ledger_url
    if url is not None and url.startswith("s3://"):
        return environment.s3_ledger(name, url, dict(config.ledger_s3))
    from ..audit import ledger_at

    return environment.local_ledger(name, ledger_at(url, config.out, config.path).path)


def _clock(name: str, pg_targets: Sequence[PostgresTarget]) -> Verdict:
    """The worst skew of the servers that answer; those that do not are named."""
    verdicts: list[Verdict] = []
    silent: list[str] = []
    answers = concurrently(partial(postgres.clock, name), pg_targets)
    for target, answer in zip(pg_targets, answers, strict=True):
        if isinstance(answer, Verdict):
            verdicts.append(answer)
        else:  # its reachability line says why; the clock needs an answer
            silent.append(f"`{target.name}`")
    if not verdicts:
        return result(name, Outcome.WARNING, f"no PostgreSQL target answered ({', '.join(silent)}): the "
                      f"clock ({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC) was compared with none",
                      fix="make the postgres targets reachable, then run doctor again")
    outcome = worst(v.outcome for v in verdicts) or Outcome.PASSED
    if outcome is Outcome.PASSED:
        skews = ", ".join(f"{v.evidence['target']} {float(v.evidence['skew_s']):+.1f} s" for v in verdicts)
        message = f"PostgreSQL clocks against this machine's UTC clock (limit 60 s): {skews}"
    else:
        message = "; ".join(v.message for v in verdicts if v.outcome is not Outcome.PASSED)
    if silent:
        message += f"; not compared with {', '.join(silent)} (no answer)"
    chosen = next(v for v in verdicts if v.outcome is outcome)
    return result(name, outcome, message, fix=str(chosen.evidence.get("fix") or ""))
