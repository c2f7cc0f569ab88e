"""The ``drillbook fleet render`` command line: parse, render, lint, write (or refuse, exit 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError, DiskError

from . import render_files
from .lint import LintContext, lint
from .settings import DEFAULT_CONFIG, ENGINES, bin_count, secret_names_in, settings_from

EXIT_OK = 0
EXIT_USAGE = 2


def add_parsers(
    sub: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> argparse._SubParsersAction[Any]:
    """``drillbook fleet render …`` (called from cli.build_parser); returns ``fleet``'s subparsers so
    other ``fleet`` commands can join it."""
    p_fleet: argparse.ArgumentParser = sub.add_parser(
        "fleet", help="run the suite over a fleet on Kubernetes or a CI matrix"
    )
    fleet_sub: argparse._SubParsersAction[Any] = p_fleet.add_subparsers(
        dest="fleet_action", required=True, parser_class=parser_class
    )
    p = fleet_sub.add_parser(
        "render",
        help="write a Kubernetes CronJob, a GitHub Actions workflow or a GitLab pipeline",
        description="Render the shard engine's files from the inventory, lint them, and write them. "
        "Nothing is written when a lint rule fails (exit 2).",
    )
    p.add_argument("engine", choices=ENGINES)
    p.add_argument("--out", type=Path, required=True, help="directory to write the files into")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="drillbook.toml with the [fleet] inventory (default drillbook.toml); its "
        "${VAR} names are the secrets the shards need, and it is the path the jobs pass on",
    )
    p.add_argument("--bins", type=int, help="number of shards (default: from the inventory)")
    p.add_argument("--parallel", type=int, help="shards running at once (default: bins, at most 8)")
    p.add_argument(
        "--image",
        help="k8s: the shard image (default drillbook:VERSION, see deploy/Dockerfile); "
        "github/gitlab: the job image ./bootstrap sets up in",
    )
    p.add_argument("--schedule", help='five-field cron in UTC (default "0 2 1 * *")')
    p.add_argument(
        "--runs",
        help="runs location: s3://bucket/prefix (k8s needs one), or for CI a "
        "directory carried as artifacts (default runs)",
    )
    p.add_argument("--cadence", help="plan only this cadence's scenarios (e.g. monthly)")
    p.add_argument("--secret", help="k8s: the Secret the shards read through envFrom (default drillbook)")
    p.add_argument("--name", help="CronJob / workflow name (default drillbook-CADENCE or drillbook-fleet)")
    return fleet_sub


def fleet_render(args: argparse.Namespace) -> int:
    """Render ``args.engine``'s files into ``args.out``; exit 2 (nothing written) on any lint finding."""
    config = args.config or DEFAULT_CONFIG
    if args.config is not None and not config.is_file():
        raise ConfigError(f"--config {config}: no such file", hint="give the drillbook.toml the jobs use")
    bins = bin_count(config, bins=args.bins, engine=args.engine)
    settings = settings_from(
        engine=args.engine,
        bins=bins,
        parallel=args.parallel,
        image=args.image,
        schedule=args.schedule,
        runs=args.runs,
        config=config,
        secret=args.secret,
        name=args.name,
        cadence=args.cadence,
        secret_names=secret_names_in(config),
    )
    job_image = args.image if args.engine != "k8s" else None
    files = {name: redact.redact(text) for name, text in render_files(settings, job_image=job_image).items()}
    findings = lint(args.engine, files, LintContext(bins=settings.bins, secret_names=settings.secret_names))
    if findings:
        for finding in findings:
            print(f"drillbook: lint: {finding}", file=sys.stderr)
        print(f"drillbook: {len(findings)} lint finding(s); nothing written", file=sys.stderr)
        return EXIT_USAGE
    write_files(args.out, files)
    for name in sorted(files):
        print(args.out / name)
    print(f"bins={settings.bins} parallel={settings.parallel}", file=sys.stderr)
    return EXIT_OK


def write_files(out: Path, files: dict[str, str]) -> None:
    """Each file written whole (temp file + rename): a reader never sees half a manifest."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in sorted(files.items()):
            target = out / name
            partial = target.with_name(f".{name}.partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(target)
    except OSError as exc:
        raise DiskError(
            f"{out}: cannot write the rendered files ({exc.strerror or exc})",
            hint="give --out a writable directory",
            path=str(out),
            phase="fleet render",
        ) from None
