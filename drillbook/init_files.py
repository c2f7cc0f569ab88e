"""What ``drillbook init`` writes: the answers, validated, and the two files rendered from them.

Pure functions of their inputs (no I/O, no clock): :mod:`drillbook.init_cli` asks the questions,
probes the subject and the store, and writes what these return. Secrets never reach this module:
the config names environment variables (``${VAR}``) and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import PurePosixPath

from checks.backups import compile_key_pattern
from checks.durations import parse_duration
from checks.errors import ConfigError
from drills.toml_text import toml_key, toml_string

# drills/config.py's target names; a store target is named `<target>-backups`, hence 55 at most.
TARGET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,54}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
DRILL_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
# Table names written into the feature's row table: plain unquoted identifiers only, so a name
# read from the subject can neither break the Gherkin table nor need quoting.
PLAIN_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?")
DRILL_CADENCES = ("daily", "weekly", "monthly", "quarterly", "annually")  # @continuous is not a drill's
STORE_SUFFIX = "-backups"
CONFIG_NAME = "drillbook.toml"


class BackupInterval(Enum):
    """How often backups are taken: the freshness limit is one interval plus a grace period."""

    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"

    @property
    def max_age(self) -> str:
        """The RPO sentence's limit: a nightly job at 02:00 plus two hours for a slow upload, etc."""
        return {"hourly": "2h", "daily": "26h", "weekly": "8d"}[self.value]

    @property
    def rationale(self) -> tuple[str, ...]:
        """The scenario description's lines on freshness."""
        return {
            "hourly": ("Backups are taken hourly: the newest may be an hour old, plus an hour's grace.",),
            "daily": ("Backups are taken nightly: the newest may be a day old, plus two hours' grace",
                      "for a slow upload. Older means a night was missed."),
            "weekly": ("Backups are taken weekly: the newest may be a week old, plus a day's grace.",),
        }[self.value]


@dataclass(frozen=True)
class TableFloor:
    """One row of the feature's row-count table: a table and the fewest rows a restore may hold."""

    table: str
    rows: int


@dataclass(frozen=True)
class InitAnswers:
    """Everything the two files are rendered from; :func:`validate` has checked each field."""

    target: str
    dsn_var: str
    backups: str  # an absolute directory path, or s3://bucket/prefix/
    key_pattern: str
    cadence: str = "monthly"
    interval: BackupInterval = BackupInterval.DAILY
    rto: str = "30 minutes"
    drill_id: str = "RST-01"
    endpoint_var: str | None = None  # s3 only: the variable holding the endpoint URL (None: AWS)
    tables: tuple[TableFloor, ...] = ()  # empty: a commented example is written instead

    @property
    def is_s3(self) -> bool:
        return self.backups.startswith("s3://")

    @property
    def store(self) -> str:
        return store_name(self.target)

    @property
    def feature_path(self) -> PurePosixPath:
        return feature_path(self.target)


def feature_path(target: str) -> PurePosixPath:
    """The drill's file, relative to the directory drillbook.toml is written to."""
    return PurePosixPath("features", "restore", f"{target}-restore-from-yesterday.feature")


def store_name(target: str) -> str:
    """The backups' target: ``production`` → ``production-backups``."""
    return f"{target}{STORE_SUFFIX}"


def default_dsn_var(target: str) -> str:
    """``production`` → ``PRODUCTION_PG_DSN``; characters a variable cannot hold become ``_``."""
    return re.sub(r"[^A-Z0-9_]", "_", target.upper()) + "_PG_DSN"


def looks_like_dsn(value: str) -> bool:
    """A pasted connection string (URL or key=value) rather than the name of a variable."""
    return "://" in value or "=" in value or "@" in value or " " in value.strip()


def validate_target(target: str) -> None:
    if not TARGET_NAME.fullmatch(target):
        raise ConfigError(f"--target: {target!r} is not a target name", key="--target",
                          hint="start with a letter; use letters, digits, `_`, `.` and `-`; at most 55 "
                               "characters")


def validate_var(flag: str, var: str) -> None:
    if not ENV_NAME.fullmatch(var):
        raise ConfigError(f"{flag}: {var!r} is not an environment variable name", key=flag,
                          hint="letters, digits and `_`, not starting with a digit (e.g. PRODUCTION_PG_DSN)")


def validate_cadence(cadence: str) -> None:
    if cadence not in DRILL_CADENCES:
        raise ConfigError(f"--cadence must be one of {', '.join(DRILL_CADENCES)}, got {cadence!r}",
                          key="--cadence")


def validate(answers: InitAnswers) -> InitAnswers:
    """Check every answer; :class:`ConfigError` names the flag (exit 2, nothing written)."""
    validate_target(answers.target)
    validate_variables(answers.dsn_var, answers.endpoint_var, backups=answers.backups)
    validate_cadence(answers.cadence)
    validate_key_pattern(answers.key_pattern)
    validate_backups(answers.backups)
    validate_rto(answers.rto)
    validate_drill_id(answers.drill_id)
    for floor in answers.tables:
        if not PLAIN_TABLE.fullmatch(floor.table) or floor.rows < 0:
            raise ConfigError(f"table {floor.table!r} ({floor.rows} rows) cannot be written into the feature",
                              key="tables")
    return answers


def validate_variables(dsn_var: str, endpoint_var: str | None, *, backups: str) -> None:
    """Variable names; an endpoint for s3:// only; for s3://, no variable holding two values."""
    for flag, var in (("--dsn-var", dsn_var), ("--endpoint-var", endpoint_var)):
        if var is not None:
            validate_var(flag, var)
    if not backups.startswith("s3://"):
        if endpoint_var is not None:
            raise ConfigError("--endpoint-var applies only to s3:// backups", key="--endpoint-var")
        return
    taken = {dsn_var: "--dsn-var", "AWS_ACCESS_KEY_ID": "the access key",
             "AWS_SECRET_ACCESS_KEY": "the secret key"}
    for flag, var in (("--dsn-var", dsn_var), ("--endpoint-var", endpoint_var)):
        if var is not None and taken.get(var, flag) != flag:
            raise ConfigError(f"{flag}: {var} already holds {taken[var]}", key=flag,
                              hint="each value needs a variable of its own")


def validate_rto(rto: str) -> None:
    try:
        limit = parse_duration(rto)
    except ValueError as exc:
        raise ConfigError(f"--rto: {exc}", key="--rto") from None
    if limit.total_seconds() <= 0:
        raise ConfigError(f"--rto must be longer than 0s, got {rto!r}", key="--rto")


def validate_drill_id(drill_id: str) -> None:
    if not DRILL_ID.fullmatch(drill_id):
        raise ConfigError(f"--id: {drill_id!r} is not a drill id", key="--id",
                          hint="letters, digits, `_`, `.` and `-`, e.g. RST-01")


def validate_key_pattern(pattern: str) -> None:
    """``--key-pattern`` compiles as ``verify backup`` compiles it: %Y %m %d required."""
    try:
        compile_key_pattern(pattern)
    except ConfigError as exc:
        raise ConfigError(f"--key-pattern: {exc.message}", hint=exc.hint, key="--key-pattern") from exc
    if "/" in pattern:
        # A store's key pattern may span folders, but init suggests and documents file names only.
        raise ConfigError(f"--key-pattern: {pattern!r} names folders; give the backup file's name",
                          key="--key-pattern", hint="e.g. backup-%Y%m%d.sql.gz")


def validate_backups(backups: str) -> None:
    """An absolute directory path or ``s3://bucket/prefix/``; nothing the config would misread."""
    if backups.startswith("s3://"):
        bucket = backups[5:].split("/")[0]
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigError(f"--backups: {backups!r} does not name a bucket (s3://bucket/prefix/)",
                              key="--backups")
    elif not backups.startswith("/"):
        raise ConfigError(f"--backups: {backups!r} must be an absolute directory path or s3://bucket/prefix/",
                          key="--backups")
    if "${" in backups or any(ord(c) < 32 or ord(c) == 127 for c in backups):
        raise ConfigError("--backups: the location holds `${` or a control character", key="--backups",
                          hint="give the literal directory path or s3:// URL")


def render_config(answers: InitAnswers, *, written: datetime) -> str:
    """``drillbook.toml``: the subject and its backups, every secret a ``${VAR}`` placeholder."""
    a = answers
    exports = [f"#   export {a.dsn_var}='postgresql://READ_ONLY_USER:PASSWORD@HOST:5432/DBNAME'"]
    if a.is_s3:
        exports.append("#   export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...")
        if a.endpoint_var:
            exports.append(f"#   export {a.endpoint_var}=https://s3.example.internal   # the S3 endpoint")
    lines = [
        f"# drillbook.toml, written by `drillbook init` on {written:%Y-%m-%d}.",
        "#",
        "# No secret is in this file: each ${VAR} below is read from the environment when drillbook",
        "# runs (an unset one stops it at once, naming the key). Before `drillbook doctor` or",
        "# `drillbook run`, export them, e.g.:",
        *exports,
        "# Give the subject a role that can only read (drillbook never writes to it).",
        "# Every key: docs/configuration.md.",
        "",
        f"[targets.{toml_key(a.target)}]".ljust(40) + "# the subject: drillbook only ever reads it",
        'kind = "postgres"',
        f"dsn = {toml_string('${' + a.dsn_var + '}')}",
        "",
        f"[targets.{toml_key(a.store)}]".ljust(40) + "# where its backups are",
    ]
    if a.is_s3:
        lines += [
            'kind = "s3"',
            f"url = {toml_string(a.backups if a.backups.endswith('/') else a.backups + '/')}",
            _pattern_line(a.key_pattern),
        ]
        if a.endpoint_var:
            lines.append(f"endpoint_url = {toml_string('${' + a.endpoint_var + '}')}")
        lines += [
            'access_key_id = "${AWS_ACCESS_KEY_ID}"',
            'secret_access_key = "${AWS_SECRET_ACCESS_KEY}"',
            '# region = "eu-west-1"                # default us-east-1',
        ]
    else:
        lines += [
            'kind = "directory"',
            f"path = {toml_string(a.backups)}",
            _pattern_line(a.key_pattern),
        ]
    lines += [
        "",
        "# Restores go into a throwaway PostgreSQL that drillbook starts and removes. To restore into",
        "# a database of your own instead (it must be EMPTY, on a server that holds no subject, and",
        "# reached by a role that is not a superuser; see docs/configuration.md):",
        "# [targets.scratch]",
        '# kind = "postgres"',
        '# dsn = "${SCRATCH_PG_DSN}"',
        "# scratch = true",
        "",
    ]
    return "\n".join(lines)


def _pattern_line(pattern: str) -> str:
    return f"key_pattern = {toml_string(pattern)}".ljust(39) + " # the backup time is read from the name"


def render_feature(answers: InitAnswers) -> str:
    """The restore-from-yesterday drill for the subject, in existing step sentences only."""
    a = answers
    tags = "@postgres @s3" if a.is_s3 else "@postgres"
    lines = [
        tags,
        f"Feature: Restore {a.target} from yesterday's backup",
        f"  The runbook promises that last night's backup of {a.target} can rebuild it. A backup",
        "  nobody has restored is a hope, not a control: this drill restores the newest backup",
        "  into a throwaway database, times it, and proves its content against the live",
        f"  database. Nothing is ever written to {a.target}. Written by `drillbook init`: edit it",
        "  like any runbook (`drillbook steps` lists every sentence a feature can use).",
        "",
        f"  @id:{a.drill_id} @{a.cadence} @impact:high @ref:ISO27001-A.8.13",
        f"  Scenario: {a.target} — yesterday's backup restores within the RTO and matches the live database",
        *(f"    {line}" for line in a.interval.rationale),
        f"    The restore must fit the RTO of {a.rto}; every row that existed at backup time",
        "    must come back unchanged.",
        "",
        f'    Given the backups in "{a.store}"',
        f'    And the subject database "{a.target}"',
        "    When the newest backup is restored into a scratch database",
        f"    Then the newest backup is at most {a.interval.max_age} old",
        f"    And the restore completes within {a.rto}",
    ]
    if a.tables:
        width = max(len("table"), *(len(f.table) for f in a.tables))
        rows_width = max(len("rows"), *(len(str(f.rows)) for f in a.tables))
        lines.append("    And the restored tables hold at least these rows:")
        lines.append(f"      | {'table'.ljust(width)} | {'rows'.ljust(rows_width)} |")
        lines += [f"      | {f.table.ljust(width)} | {str(f.rows).ljust(rows_width)} |" for f in a.tables]
    else:
        lines += [
            "    # The subject was not reachable when this was written: name its biggest tables and",
            "    # the fewest rows a good backup of each holds, then uncomment these lines.",
            "    # And the restored tables hold at least these rows:",
            "    #   | table  | rows |",
            "    #   | orders | 1000 |",
        ]
    lines += ["    And every row older than the backup matches the subject", ""]
    return "\n".join(lines)


def row_floor(count: int) -> int:
    """Half of today's count, rounded down to two significant digits: catches a backup that lost most
    of a table while leaving room for the rows written since it was taken."""
    half = count // 2
    if half < 100:
        return half
    scale: int = 10 ** (len(str(half)) - 2)
    return half // scale * scale


# -- suggesting a key pattern from file names -------------------------------------------------------

# A date first (the first digits that read as one), then optionally a time right after it.
_DATE = re.compile(
    r"(?<![0-9])(?P<date>(?:19|20)[0-9]{2}(?P<sep>[-_.]?)[01][0-9](?P=sep)[0-3][0-9])"
    r"(?:(?P<tsep>[-_T.]?)(?P<time>[0-2][0-9](?P<csep>[-:.]?)[0-5][0-9](?:(?P=csep)[0-5][0-9])?))?"
    r"(?![0-9])"
)


def _escape(literal: str) -> str:
    return literal.replace("%", "%%")


def pattern_of(name: str) -> str | None:
    """The key pattern of one file name (``db_20261202_020000.sql.gz`` → ``db_%Y%m%d_%H%M%S.sql.gz``)."""
    for match in _DATE.finditer(name):
        sep = match.group("sep")
        directives = f"%Y{sep}%m{sep}%d"
        if match.group("time") is not None:
            csep, time = match.group("csep"), match.group("time")
            fields = len(time.split(csep)) if csep else len(time) // 2  # HHMM or HHMMSS
            directives += match.group("tsep") + csep.join(("%H", "%M", "%S")[:fields])
        candidate = _escape(name[:match.start()]) + directives + _escape(name[match.end():])
        try:
            if compile_key_pattern(candidate).parse(name) is not None:
                return candidate
        except ConfigError:
            continue
    return None


def suggest_key_pattern(names: Sequence[str]) -> str | None:
    """The pattern most of ``names`` (newest first) are named by; ties go to the newest's. Names
    without a date (a README, ``latest.dump``) do not vote. None when no name carries a date."""
    votes: dict[str, int] = {}
    for name in names:
        candidate = pattern_of(name.rsplit("/", 1)[-1])
        if candidate is not None:
            votes[candidate] = votes.get(candidate, 0) + 1
    if not votes:
        return None
    return max(votes, key=votes.__getitem__)  # max keeps the first (newest) of equal counts


def matching(pattern: str, names: Iterable[str]) -> list[str]:
    """The names the pattern reads a date from."""
    compiled = compile_key_pattern(pattern)
    return [n for n in names if compiled.parse(n) is not None]
