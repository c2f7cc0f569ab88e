"""The ``drillbook`` command line.

Exit codes (ARCHITECTURE.md): 0 all pass; 1 a scenario (or a one-shot check)
failed or errored; 2 usage or configuration error, nothing ran; 3 a cadence
gate found an overdue drill.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, cast

from checks import redact
from checks.errors import ConfigError, DrillbookError

from . import __version__, interrupts
from .runner import EXIT_FAILED, EXIT_PASSED, EXIT_USAGE, RunOptions, run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, as we want
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"drillbook: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="drillbook", description="Runbooks as executable, auditable drills.")
    parser.add_argument("--version", action="version", version=f"drillbook {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_run = sub.add_parser("run", help="run the drills (default: the embedded sandbox, no config)")
    p_run.add_argument("--config", type=Path, help="drillbook.toml with live targets")
    p_run.add_argument("--cadence", help="only scenarios of this cadence (daily, weekly, monthly, ...)")
    p_run.add_argument("--tags", help='tag expression, e.g. "postgres and not weekly"')
    p_run.add_argument("--out", type=Path, default=None,
                       help="where runs are written (default: [run] out of --config, else out/)")
    p_run.add_argument("--features", type=Path, action="append",
                       help="feature file or folder (repeatable; default features/)")
    p_run.add_argument("--env", choices=["auto", "local", "live", "containers"], default="auto",
                       help="where targets come from (default: live with --config, else local)")
    p_run.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                       help="warnings fail the run (default: [run] strict of --config, else no)")
    p_run.add_argument("-v", "--verbose", action="store_true", help="show pytest's tracebacks too")
    p_run.add_argument("--waivers", type=Path, help="waiver file (TOML): approved, time-boxed failures")
    p_run.add_argument("--canary", action="store_true",
                       help="sandbox: sign the release, then break one artifact, to see the gate fail; "
                       "the products' data and services get their failing variants")
    p_run.add_argument("--pack",
                       help="run one runbook pack: features/packs/PACK (`drillbook packs` lists them)")
    p_run.add_argument("--member", help="drill one fleet member of --config ([fleet]): its targets "
                       "bound, scenarios named BKP-01[member], no ledger append")
    p_run.add_argument("--run-id", help="the run directory's name under --out (default: time + random)")
    p_run.add_argument("--seed", help="seed of the run's random choices, e.g. the moments of a point-in-time "
                       "sampling step (default: the run id; recorded in the evidence)")
    signing = p_run.add_mutually_exclusive_group()
    signing.add_argument("--sign", action="store_true",
                         help="sign this run's ledger head keyless with sigstore, as the CI job's ambient "
                         "OIDC identity: a consistent rewrite of the ledger then fails verification")
    signing.add_argument("--sign-sandbox", action="store_true",
                         help="sign the ledger head with the runs directory's sandbox authority "
                         "(<out>/sandbox-authority): to try signed heads offline, not for audits")

    from .fleet import cli as fleet_cli

    fleet_cli.add_run_arguments(p_run)
    fleet_cli.add_parsers(sub, _Parser)

    sub.add_parser("steps", help="print the step catalogue: every sentence a feature can use")
    p_packs = sub.add_parser("packs", help="list the runbook packs with their scenario counts per cadence")
    p_packs.add_argument("--json", action="store_true", help="print them as JSON")
    from .init_cli import add_parser as add_init

    add_init(sub)

    from . import evidence_cli, status_cli

    evidence_cli.add_parsers(sub, _Parser)
    status_cli.add_status_parser(sub)
    p_gate = sub.add_parser("gate", help="CI gates: exit 0, or say what blocks")
    gate_sub = p_gate.add_subparsers(dest="gate", required=True, parser_class=_Parser)
    status_cli.add_gate_cadence_parser(gate_sub)
    from .upgrade_gate import add_parser as add_gate_pre_upgrade

    add_gate_pre_upgrade(gate_sub)
    from .doctor_cli import add_parser as add_doctor

    add_doctor(sub, _Parser)

    p_sandbox = sub.add_parser("sandbox", help="start or stop the embedded environment to explore it")
    sandbox_sub = p_sandbox.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p_up = sandbox_sub.add_parser("up", help="start it and print connection details")
    p_up.add_argument("--detach", action="store_true", help="keep it running in the background")
    p_up.add_argument("--sandbox-members", type=int, default=None, metavar="N",
                      help="instead, a fleet sandbox: N member databases with their backup histories, "
                      "and a drillbook.toml with [fleet] for `drillbook run --config IT --fleet`")
    p_up.add_argument("--canary", action="store_true",
                      help="seed the failing variants (fleet: some members broken, each in its own way)")
    p_up.add_argument("--state", type=Path, default=Path("out/sandbox.json"), help=argparse.SUPPRESS)
    p_down = sandbox_sub.add_parser("down", help="stop a sandbox started with --detach")
    p_down.add_argument("--state", type=Path, default=Path("out/sandbox.json"), help=argparse.SUPPRESS)
    p_down.add_argument("--stale", action="store_true",
                        help="instead, stop and remove the servers and temp dirs killed runs left")

    p_verify = sub.add_parser("verify", help="one-shot checks without writing a feature")
    verify_sub = p_verify.add_subparsers(dest="what", required=True, parser_class=_Parser)
    p_backup = verify_sub.add_parser(
        "backup", help="restore one backup into a scratch database and verify it",
        description="SOURCE is a dump file, a directory of dumps (newest wins), or s3://bucket/prefix.",
    )
    p_backup.add_argument("source")
    p_backup.add_argument("--compare-with", metavar="DSN", help="subject database to compare content with")
    p_backup.add_argument("--max-age", default=None, help="fail when the backup is older (e.g. 26h)")
    p_backup.add_argument("--key-pattern", help="date pattern of backup keys, e.g. backup-%%Y%%m%%d.sql.gz")
    p_backup.add_argument("--endpoint-url", help="S3 endpoint (for s3:// sources)")
    p_backup.add_argument("--database", help="which database of a pg_dumpall backup to restore")
    p_backup.add_argument("--scratch", metavar="DSN",
                          help="an EMPTY database to restore into (default: a throwaway local one)")
    p_backup.add_argument("--timeout", default=None, metavar="DURATION",
                          help="deadline of download + restore + first query (default 1h); past it the "
                               "restore is cancelled and fails")
    p_backup.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    from .verify_migrations import add_parser as add_verify_migrations

    add_verify_migrations(verify_sub)
    from .verify_sbom import add_parser as add_verify_sbom

    add_verify_sbom(verify_sub)
    from .verify_signature import add_parser as add_verify_signature

    add_verify_signature(verify_sub)
    from .fleet.render.command import add_parsers as add_fleet_parsers

    fleet_sub = add_fleet_parsers(sub, _Parser)
    from .fleet.members_cli import add_members_parser

    add_members_parser(fleet_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``drillbook`` command; everything it prints passes through the redactor."""
    with redacting_stdio():
        return _main(argv)


@contextlib.contextmanager
def redacting_stdio() -> Iterator[None]:
    """Route ``sys.stdout``/``sys.stderr`` through :class:`checks.redact.RedactingWriter`.

    Writers of files redact what they write; this covers the rest: pytest's own report of a
    failed scenario and its traceback (``--verbose``), progress lines, error messages, a
    library printing an exception with a DSN in it.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout = cast("TextIO", redact.RedactingWriter(sys.stdout))
    sys.stderr = cast("TextIO", redact.RedactingWriter(sys.stderr))
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved


def _main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(args_list)
    # SIGTERM (a CI timeout, systemd) must unwind like Ctrl-C so servers are stopped.
    interrupts.install()
    try:
        from .fleet.cli import dispatch as fleet_dispatch

        fleet_code = fleet_dispatch(args)
        if fleet_code is not None:
            return fleet_code
        if args.command == "run":
            if args.canary:
                # Read by steps/supply_chain.py (in-process or in a pytest subprocess alike).
                os.environ["DRILLBOOK_CANARY"] = "1"
            return run(
                RunOptions(config=args.config, cadence=args.cadence, tags=args.tags, out=args.out,
                           features=args.features, env=args.env, strict=args.strict,
                           verbose=args.verbose, waivers=args.waivers, pack=args.pack,
                           sign=args.sign, sign_sandbox=args.sign_sandbox, member=args.member,
                           run_id=args.run_id, seed=args.seed),
                argv=args_list,
            )
        if args.command == "steps":
            return print_steps()
        if args.command == "init":
            from .init_cli import init

            return init(args)
        if args.command == "packs":
            from .packs import list_packs
            from .runner import _default_features

            return list_packs(_default_features(), as_json=args.json)
        if args.command == "evidence":
            from .evidence_cli import main as evidence_main

            return evidence_main(args)
        if args.command == "status":
            from .status_cli import status

            return status(args)
        if args.command == "doctor" and args.doctor is None:
            from .doctor.cli import doctor_setup

            return doctor_setup(args)
        if args.command == "gate" and args.gate == "cadence":
            from .status_cli import gate_cadence

            return gate_cadence(args)
        if args.command == "gate" and args.gate == "pre-upgrade":
            from .upgrade_gate import gate_pre_upgrade

            return gate_pre_upgrade(args, args_list)
        if args.command == "doctor" and args.doctor == "ledger":
            from .doctor_cli import doctor_ledger

            return doctor_ledger(args)
        if args.command == "sandbox":
            from .sandbox_cli import sandbox_down, sandbox_up

            return sandbox_up(args) if args.action == "up" else sandbox_down(args)
        if args.command == "fleet" and args.fleet_action == "members":
            from .fleet.members_cli import fleet_members

            return fleet_members(args)
        if args.command == "fleet" and args.fleet_action == "render":
            from .fleet.render.command import fleet_render

            return fleet_render(args)
        if args.command == "verify" and args.what == "backup":
            from .verify import verify_backup

            return verify_backup(args)
        if args.command == "verify" and args.what == "migrations":
            from .verify_migrations import verify_migrations

            return verify_migrations(args)
        if args.command == "verify" and args.what == "sbom":
            from .verify_sbom import verify_sbom

            return verify_sbom(args)
        if args.command == "verify" and args.what == "signature":
            from .verify_signature import verify_signature

            return verify_signature(args)
    except ConfigError as exc:
        print(f"drillbook: {redact.redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("drillbook: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # `drillbook steps | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PASSED
    except DrillbookError as exc:
        print(f"drillbook: {redact.redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    parser.error("unknown command")
    return EXIT_USAGE


def print_steps() -> int:
    """Every step sentence with its parameters and a one-line description."""
    import importlib

    from pytest_bdd.steps import step_function_context_registry

    from .plugin import pytest_plugins

    for module in pytest_plugins:
        importlib.import_module(module)
    by_module: dict[str, list[Any]] = {}
    for context in step_function_context_registry.values():
        by_module.setdefault(context.step_func.__module__, []).append(context)
    for module, contexts in sorted(by_module.items()):
        print(f"# {module}")
        for context in sorted(contexts, key=lambda c: ("given", "when", "then").index(c.type or "then")):
            doc = (context.step_func.__doc__ or "").strip().splitlines()
            sentence = _readable(context.parser.name)
            print(f"{(context.type or 'step').capitalize():<6} {sentence}")
            if doc:
                print(f"       {doc[0]}")
        print()
    return EXIT_PASSED


def _readable(pattern: str) -> str:
    """A regex step shown with its named groups as {placeholders}."""
    import re

    def placeholder(match: re.Match[str]) -> str:
        body = match.group(2)
        # Alternatives are worth showing: they are the words the sentence accepts.
        if "|" in body and re.fullmatch(r"[\w |]+", body):
            return "{" + match.group(1) + ": " + body + "}"
        return "{" + match.group(1) + "}"

    text = re.sub(r"\(\?P<(\w+)>([^()]*(?:\([^()]*\)[^()]*)*)\)", placeholder, pattern)
    return text.strip("^$")


def print_json(data: Any) -> None:
    print(json.dumps(redact.redact_obj(data), indent=2, ensure_ascii=False))


def wait_forever() -> None:
    while True:
        time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
