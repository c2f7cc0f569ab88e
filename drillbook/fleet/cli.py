"""The fleet protocol's command line: ``drillbook plan``, ``run --plan``, ``run --fleet``, ``report merge``.

Parsers and dispatch live here so that drillbook/cli.py only calls :func:`add_run_arguments`,
:func:`add_parsers` and :func:`dispatch` (as it does for evidence_cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from checks.durations import parse_duration
from checks.errors import ConfigError


def add_run_arguments(p_run: argparse.ArgumentParser) -> None:
    """``drillbook run``'s fleet options."""
    fleet = p_run.add_argument_group("fleet")
    fleet.add_argument("--fleet", action="store_true",
                       help="run every selected scenario once per [fleet] member of --config")
    fleet.add_argument("--members", metavar="EXPR",
                       help="with --fleet: only these members (names, or labels: 'tier=1,host=pg-eu-3')")
    fleet.add_argument("--workers", type=int, metavar="N",
                       help="with --fleet: plan N bins and run them as N local shard processes (default 1)")
    fleet.add_argument("--sandbox-members", type=int, metavar="N",
                       help="with --fleet and no --config: seed a fleet sandbox of N members (broken ones "
                            "with --canary) for the length of the run")
    fleet.add_argument("--plan", metavar="URL",
                       help="run one bin of a stored plan (<runs>/<group>/plan.json, a path or s3://)")
    fleet.add_argument("--shard-index", metavar="I",
                       help="with --plan: the bin (default: JOB_COMPLETION_INDEX, CI_NODE_INDEX-1, "
                            "DRILLBOOK_SHARD_INDEX)")


def add_parsers(sub: argparse._SubParsersAction[Any],
                parser_class: type[argparse.ArgumentParser]) -> None:
    """``drillbook plan`` and ``drillbook report merge`` (called from cli.build_parser)."""
    p_plan = sub.add_parser("plan", help="pack the fleet's work items into bins and store plan.json")
    p_plan.add_argument("--config", type=Path, default=Path("drillbook.toml"),
                        help="drillbook.toml with the [fleet] (default ./drillbook.toml)")
    p_plan.add_argument("--members", metavar="EXPR", help="only these members (names or label=value,...)")
    p_plan.add_argument("--cadence", help="only scenarios of this cadence")
    p_plan.add_argument("--tags", help='tag expression, e.g. "postgres and not weekly"')
    p_plan.add_argument("--features", type=Path, action="append", help="feature file or folder (repeatable)")
    p_plan.add_argument("--bins", type=int, metavar="N", help="how many bins (default: --parallel, else 1)")
    p_plan.add_argument("--parallel", type=int, metavar="W",
                        help="how many bins run at once (default: --bins): for the estimated makespan")
    p_plan.add_argument("--host-cap", type=int, metavar="K",
                        help="at most K bins hold members of one host (default: [fleet] host_cap)")
    p_plan.add_argument("--out", required=True, metavar="URL",
                        help="the run group: <runs>/<group>/ (a directory or s3://bucket/prefix/<group>/)")
    p_plan.add_argument("--github-output", action="store_true",
                        help="also print indexes=[0,1,...] (and append it to $GITHUB_OUTPUT when set)")
    p_report = sub.add_parser("report", help="fleet reports: merge a run group's shards")
    report_sub = p_report.add_subparsers(dest="report", required=True, parser_class=parser_class)
    p_merge = report_sub.add_parser("merge", help="merge a run group into one results.json, junit.xml, "
                                    "report.html and ledger batch (idempotent)")
    p_merge.add_argument("url", help="<runs>/<group>/ (a directory or s3://bucket/prefix/<group>/)")
    p_merge.add_argument("--wait", metavar="DURATION", default="0s",
                         help="wait up to this long for every bin's commit (e.g. 30m); then merge anyway, "
                              "missing bins' items as errors")
    p_merge.add_argument("--config", type=Path,
                         help="drillbook.toml: its [ledger] (and S3 options); default the plan's")


def dispatch(args: argparse.Namespace) -> int | None:
    """Run a fleet command, or None when ``args`` is not one."""
    if args.command == "plan":
        return plan_command(args)
    if args.command == "report" and args.report == "merge":
        return merge_command(args)
    if args.command != "run":
        return None
    if args.plan is not None:
        if args.fleet or args.workers is not None or args.members:
            raise ConfigError("--plan runs one stored bin: --fleet, --workers and --members belong to the "
                              "planner", key="--plan", hint="drop them, or run `drillbook plan` with them")
        from .shard import ShardOptions, run_shard

        return run_shard(ShardOptions(plan_url=args.plan, shard_index=args.shard_index, config=args.config,
                                      features=args.features, work=args.out,
                                      env="live" if args.env == "auto" else args.env,
                                      merge=os.environ.get("DRILLBOOK_SHARD_MERGE") != "0"))
    if args.shard_index is not None:
        raise ConfigError("--shard-index needs --plan URL", key="--shard-index")
    if not args.fleet:
        if args.workers is not None or args.members or args.sandbox_members is not None:
            raise ConfigError("--workers, --members and --sandbox-members need --fleet", key="--fleet")
        return None
    if args.sandbox_members is not None:
        if args.config is not None:
            raise ConfigError("--sandbox-members seeds its own fleet: drop --config (or drop "
                              "--sandbox-members to drill the configured fleet)", key="--sandbox-members")
        if args.sandbox_members < 1:
            raise ConfigError(f"--sandbox-members must be at least 1, got {args.sandbox_members}",
                              key="--sandbox-members")
        from .sandbox import sandbox_fleet

        with sandbox_fleet(args.sandbox_members, canary=args.canary,
                           progress=lambda line: print(f"  {line}", flush=True)) as config:
            args.config = config
            return _run_fleet(args)
    if args.config is None:
        raise ConfigError("--fleet needs --config: the [fleet] members are defined there", key="--config",
                          hint="or try it on a seeded sandbox fleet: --fleet --sandbox-members 8")
    return _run_fleet(args)


def _run_fleet(args: argparse.Namespace) -> int:
    from .planner import Selection
    from .workers import FleetRunOptions, run_fleet

    out = args.out
    if out is None:
        # As a plain run: [run] out of the config (relative to it), else ./out.
        from drills.config import load_config

        out = load_config(args.config.resolve()).out
    return run_fleet(FleetRunOptions(
        config=args.config, out=out, workers=args.workers or 1,
        selection=Selection(cadence=args.cadence, tags=args.tags, members=args.members),
        features=args.features, env="live" if args.env == "auto" else args.env))


def plan_command(args: argparse.Namespace) -> int:
    from .planner import Selection, build_plan, config_s3_options, earlier_history, store_plan
    from .runs import open_runs, split_url
    from .shard import _say

    if args.bins is not None and args.bins < 1:
        raise ConfigError(f"--bins must be at least 1, got {args.bins}", key="--bins")
    if args.parallel is not None and args.parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {args.parallel}", key="--parallel")
    bins = args.bins or args.parallel or 1
    _, group = split_url(args.out)
    runs = open_runs(args.out, config_s3_options(args.config))
    from .planner import default_features

    features = [p.resolve() for p in args.features] if args.features else default_features()
    plan, _ = build_plan(config=args.config, features=features,
                         selection=Selection(cadence=args.cadence, tags=args.tags, members=args.members),
                         group=group, bins=bins, parallel=args.parallel, host_cap=args.host_cap,
                         history=earlier_history(runs), config_label=str(args.config))
    plan = store_plan(runs, plan, _say)
    for plan_bin in plan.bins:
        print(f"bin {plan_bin.index}: {plan_bin.estimate_s:.1f} s, {len(plan_bin.items)} items, "
              f"members {', '.join(plan_bin.members()) or '(none)'}")
    print(f"bins={len(plan.bins)} parallel={plan.parallel} estimated makespan {plan.makespan_s():.1f} s")
    print(f"plan: {runs.url('plan.json')}")
    if args.github_output:
        line = "indexes=" + json.dumps(list(range(len(plan.bins))), separators=(",", ":"))
        print(line)
        target = os.environ.get("GITHUB_OUTPUT")
        if target:
            with Path(target).open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
    return 0


def merge_command(args: argparse.Namespace) -> int:
    from .merge import merge_group
    from .planner import config_s3_options, ledger_for
    from .runs import open_runs
    from .shard import _say
    from .workers import print_outcome

    try:
        wait_s = parse_duration(args.wait).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"--wait: {exc}", key="--wait") from exc
    runs = open_runs(args.url, config_s3_options(args.config))
    # Without --config the ledger is the one beside the groups: the plan's record of its config
    # is outside input and never opened.
    outcome = merge_group(runs, ledger=ledger_for(runs, args.config), wait_s=wait_s, progress=_say)
    return print_outcome(outcome)

