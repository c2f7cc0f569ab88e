"""``drillbook doctor``: the setup checks (drillbook/doctor/), and ``doctor ledger``.

``drillbook doctor [--config F] [--json]`` runs read-only checks of the setup, one line each
(drillbook/doctor/cli.py). ``drillbook doctor ledger``: may the configured S3 ledger be trusted
with concurrent appends?

Races create-only writers on scratch keys beside the ledger (checks/conditional_writes.py) and
refuses the endpoint (exit 1) when more than one writer wins a race: there, two runs appending at
once could overwrite each other's batch. Exit 0 when every race had one winner, 1 when one had
more or the endpoint could not be tested, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checks.errors import ConfigError
from checks.verdict import Outcome

from .runner import EXIT_FAILED, EXIT_PASSED

if TYPE_CHECKING:
    from reports.ledger_s3 import S3Location

_SCRATCH = "doctor/"  # beside the ledger's prefix, never inside it (a read would name it foreign)


def add_parser(sub: argparse._SubParsersAction[Any], parser_class: Any) -> None:
    p_doctor = sub.add_parser(
        "doctor", help="read-only checks of the setup, each a line with a verdict and a fix; exit 1 "
        "if one fails", description="Without a subcommand: check the setup (--config: every target, "
        "privileges, scratch, tools, ledger, clock; without: what the embedded sandbox needs).")
    p_doctor.add_argument("--config", type=Path, help="drillbook.toml whose targets to check (default: "
                          "check this machine for the embedded sandbox)")
    p_doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor_sub = p_doctor.add_subparsers(dest="doctor", required=False, parser_class=parser_class)
    p_ledger = doctor_sub.add_parser(
        "ledger", help="race create-only writers on the S3 ledger's endpoint; exit 1 if two can win")
    # One dest with `doctor`'s own --config and --json: SUPPRESS leaves the value given before
    # `ledger` (`doctor --json ledger`) in place instead of resetting it to the default.
    p_ledger.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                          help="drillbook.toml whose `[ledger] url` is an s3:// ledger (required; may "
                          "also come before `ledger`)")
    p_ledger.add_argument("--writers", type=int, default=8, help="concurrent writers per race (default 8)")
    p_ledger.add_argument("--trials", type=int, default=5, help="races (default 5)")
    p_ledger.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                          help="print the verdict as JSON")


def scratch_prefix(location: S3Location) -> str:
    """The doctor's scratch prefix beside the ledger's (``ledger/`` → ``ledger.doctor/``), never inside."""
    return (location.prefix.rstrip("/") + "." if location.prefix else "") + _SCRATCH


def doctor_ledger(args: argparse.Namespace) -> int:
    from drills.config import load_config
    from reports.ledger_s3 import S3Ledger

    from .audit import s3_ledger

    if args.config is None:
        raise ConfigError("doctor ledger needs --config: the drillbook.toml whose `[ledger] url` is an "
                          "s3:// ledger", hint="`drillbook doctor ledger --config drillbook.toml`")
    where = str(args.config)
    if args.writers < 2 or args.trials < 1:
        raise ConfigError(f"--writers must be at least 2 and --trials at least 1 (got {args.writers}, "
                          f"{args.trials})", hint="a race needs two writers")
    config = load_config(args.config.resolve())
    url = config.ledger_url or ""
    if not url.startswith("s3://"):
        raise ConfigError(f"{where}: `ledger.url` is {url or 'not set'}: doctor ledger tests an s3:// "
                          "ledger (a local file ledger relies on fcntl locks, not on the server)",
                          file=where, key="ledger.url", hint="set `[ledger] url = \"s3://bucket/prefix/\"`")
    import boto3

    session = boto3.session.Session()  # the service model loaded once for every writer's client

    def make_client() -> Any:
        made = s3_ledger(url, dict(config.ledger_s3), session=session)
        assert isinstance(made, S3Ledger)
        return made.client

    from checks.conditional_writes import race_create_only
    from reports.ledger_s3 import S3Location

    location = S3Location.parse(url)
    scratch = scratch_prefix(location)
    verdict = race_create_only(make_client, bucket=location.bucket, scratch_prefix=scratch,
                               writers=args.writers, trials=args.trials)
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        label = {Outcome.PASSED: "PASS", Outcome.FAILED: "REFUSED"}.get(verdict.outcome, "ERROR")
        print(f"drillbook doctor ledger: {label} — {verdict.message}")
        left = verdict.evidence.get("not_deleted") or []
        if left:
            print(f"  scratch keys left behind (delete them): {', '.join(left)}")
    return EXIT_PASSED if verdict.outcome is Outcome.PASSED else EXIT_FAILED
