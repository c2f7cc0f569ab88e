"""What ``drillbook fleet render`` is asked to render, checked before anything is written.

Every value here comes from the command line or the config and ends up inside YAML that an
engine executes (a Kubernetes pod's arguments, a CI job's shell line). So each one is held to
a narrow shape *before* rendering: a value that fits the shape cannot break out of its YAML
scalar, cannot start a shell word of its own, and cannot smuggle a GitHub ``${{ }}``
expression into a workflow. Anything else is a :class:`ConfigError` (exit 2) naming the
option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from checks.errors import ConfigError
from checks.schedules import validate_cron
from drills.fleet import FLEET_FILE

from ... import __version__

ENGINES = ("k8s", "github", "gitlab")
# The most shards one run of each engine can hold: GitHub's matrix holds 256 jobs, GitLab's
# `parallel:` 200; an Indexed Job takes far more, but past 256 bins the per-bin overhead
# dominates any fleet we know of, so the same bound keeps the three renders interchangeable.
MAX_BINS = {"k8s": 256, "github": 256, "gitlab": 200}
DEFAULT_SCHEDULE = "0 2 1 * *"  # 02:00 UTC on the 1st: the monthly drills of the design study
DEFAULT_PARALLEL = 8  # the design study's concurrency budget
DEFAULT_SECRET = "drillbook"  # noqa: S105 - the name of a Kubernetes Secret, not a secret
DEFAULT_RUNS = "runs"  # CI without S3: a directory carried between jobs as artifacts
DEFAULT_CONFIG = Path("drillbook.toml")

# `${VAR}` references in the config: the names of the secrets the shards need (never values).
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# s3://bucket[/prefix] (bucket naming rules) or a relative directory of plain path segments.
_S3_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._-]+)*/?")
_REL_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*/?")
# [registry[:port]/]path[:tag][@sha256:digest], the reference grammar of the OCI distribution spec.
_IMAGE = re.compile(
    r"(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
# A Kubernetes object name that leaves room for the Job suffixes the CronJob controller adds.
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?")
_CADENCE = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass(frozen=True)
class RenderSettings:
    """Everything one render needs; build it with :func:`settings_from` to have it checked."""

    engine: str
    bins: int
    parallel: int
    image: str
    schedule: str
    runs: str
    config: str
    secret: str
    name: str
    cadence: str | None
    secret_names: tuple[str, ...]  # names of the secrets the shards read, sorted; never values

    @property
    def runs_in_s3(self) -> bool:
        """Shards commit to S3 (every engine), rather than to a directory carried as CI artifacts."""
        return self.runs.startswith("s3://")

    @property
    def group_dir(self) -> str:
        """The runs location without a trailing slash, for ``$RUNS/$GROUP`` joins."""
        return self.runs.rstrip("/")


def default_image() -> str:
    """The tag ``deploy/Dockerfile``'s documented build command gives the shard image."""
    return f"drillbook:{__version__}"


def settings_from(
    *,
    engine: str,
    bins: int,
    parallel: int | None,
    image: str | None,
    schedule: str | None,
    runs: str | None,
    config: Path,
    secret: str | None,
    name: str | None,
    cadence: str | None,
    secret_names: tuple[str, ...],
) -> RenderSettings:
    """Check every value against its shape; ConfigError naming the option that does not fit."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", hint=f"render one of: {', '.join(ENGINES)}")
    limit = MAX_BINS[engine]
    if not 1 <= bins <= limit:
        raise ConfigError(
            f"--bins {bins}: {engine} takes 1 to {limit} shards in one run",
            hint="pack members into fewer, longer bins (`drillbook plan` does with --bins)",
        )
    width = min(bins, DEFAULT_PARALLEL) if parallel is None else parallel
    if not 1 <= width <= bins:
        raise ConfigError(
            f"--parallel {width}: expected 1 to --bins ({bins})",
            hint="parallelism above the bin count would start shards with no work",
        )
    runs_url = DEFAULT_RUNS if runs is None else runs
    if "\n" in runs_url or not (_S3_URL.fullmatch(runs_url) or _REL_DIR.fullmatch(runs_url)):
        raise ConfigError(
            f"--runs {runs_url!r}: not an s3://bucket/prefix URL or a relative directory",
            hint="give e.g. --runs s3://drills/runs (letters, digits, . _ - and / only)",
        )
    if engine == "k8s" and not runs_url.startswith("s3://"):
        raise ConfigError(
            f"--runs {runs_url!r}: Kubernetes pods share no directory",
            hint="give the S3 runs location the shards commit to, e.g. --runs s3://drills/runs",
        )
    config_text = config.as_posix()
    if not _REL_DIR.fullmatch(config_text) and not re.fullmatch(r"/" + _REL_DIR.pattern, config_text):
        raise ConfigError(
            f"--config {config_text!r}: letters, digits, . _ - and / only",
            hint="rename the file or pass a plain path such as drillbook.toml",
        )
    return RenderSettings(
        engine=engine,
        bins=bins,
        parallel=width,
        image=_checked(
            image if image is not None else default_image(),
            _IMAGE,
            "--image",
            "a registry/name:tag reference such as registry.example.internal/drillbook:1.0",
        ),
        schedule=_schedule(DEFAULT_SCHEDULE if schedule is None else schedule),
        runs=runs_url,
        config=config_text,
        secret=_checked(secret or DEFAULT_SECRET, _NAME, "--secret", "a Kubernetes Secret name"),
        name=_checked(
            name or _default_name(cadence),
            _NAME,
            "--name",
            "lower-case letters, digits and '-', at most 52 characters",
        ),
        cadence=None if cadence is None else _checked(cadence, _CADENCE, "--cadence", "e.g. monthly"),
        secret_names=secret_names,
    )


def _default_name(cadence: str | None) -> str:
    return f"drillbook-{cadence}" if cadence and _CADENCE.fullmatch(cadence) else "drillbook-fleet"


def _checked(value: str, shape: re.Pattern[str], option: str, what: str) -> str:
    if not shape.fullmatch(value):
        raise ConfigError(f"{option} {value!r}: not {what}", hint=f"give {option} as {what}")
    return value


def _schedule(expression: str) -> str:
    """Five cron fields: the one syntax Kubernetes, GitHub and GitLab schedules all accept."""
    text = expression.strip()
    try:
        validate_cron(text)
    except ValueError as exc:
        raise ConfigError(
            f"--schedule {expression!r}: {exc}",
            hint='five cron fields in UTC, e.g. "0 2 1 * *" (02:00 on the 1st)',
        ) from None
    fields = text.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,-]+|[A-Za-z]{3}(-[A-Za-z]{3})?", f) for f in fields):
        raise ConfigError(
            f"--schedule {expression!r}: five fields expected (no seconds, no @macros)",
            hint='GitHub takes only five-field cron, e.g. "0 2 1 * *"',
        )
    return " ".join(fields)


def secret_names_in(config: Path) -> tuple[str, ...]:
    """The ``${VAR}`` names the config (and a ``fleet.toml`` beside it) refers to, sorted.

    They are what the shards' Secret (or the CI's secrets) must hold. Only names are read
    here: no value is ever resolved by a render.
    """
    names: set[str] = set()
    for path in (config, config.with_name(FLEET_FILE)):
        if path.is_file():
            try:
                names.update(_ENV_REF.findall(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot be read ({exc})", hint="check the --config path") from None
    return tuple(sorted(names))


def bin_count(config: Path, *, bins: int | None, engine: str) -> int:
    """How many bins (shards) to render: ``--bins``, else what the inventory suggests.

    One small function on purpose: the plan module may later suggest a better default (from
    history) and the lead swaps it in here. Until then, without ``--bins``: one bin per member
    of the inventory, capped at what the engine holds in one run.
    """
    if bins is not None:
        return bins
    from ..inventory import load_fleet

    if not config.is_file():
        raise ConfigError(
            f"{config}: no such config to count the fleet's members in",
            hint="pass --config drillbook.toml (with a [fleet] table) or --bins N",
        )
    members = len(load_fleet(config).members)
    if members < 1:
        raise ConfigError(
            f"{config}: the fleet has no members", hint="add members to [fleet] or pass --bins N"
        )
    return min(members, MAX_BINS[engine])
