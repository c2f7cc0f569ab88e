"""``drillbook init``: point drillbook at your own database in one command.

Asks (on a terminal, for what no flag gave) or takes flags for the subject database, where its
backups are and how they are named, and the drill's cadence; writes ``drillbook.toml`` (``${VAR}``
placeholders only) and ``features/restore/<target>-restore-from-yesterday.feature``. Read-only
throughout: the backups are listed to suggest a key pattern, the subject's catalog is read (when
its DSN is in the environment) to pick the tables of the row-count table. Refuses to overwrite
anything: every path is checked before the first byte is written.

Exit 0 written; 2 a usage error (a missing value without a terminal, a bad key pattern, a file
that exists), nothing written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError, DrillbookError

from .init_files import (
    CONFIG_NAME,
    DRILL_CADENCES,
    BackupInterval,
    InitAnswers,
    TableFloor,
    default_dsn_var,
    looks_like_dsn,
    matching,
    render_config,
    render_feature,
    row_floor,
    suggest_key_pattern,
    validate,
    validate_backups,
    validate_cadence,
    validate_key_pattern,
    validate_target,
    validate_var,
)
from .runner import EXIT_PASSED

_CONNECT_TIMEOUT_S = 5
_STATEMENT_TIMEOUT = "5s"  # a count(*) slower than this falls back to the planner's estimate
_TABLES = 3  # rows of the row-count table
_SAMPLES = 20  # newest file names the key pattern is suggested from
_DEFAULT_ENDPOINT_VAR = "AWS_ENDPOINT_URL"


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "init", help="write a drillbook.toml and a restore drill for your own database",
        description="Asks for what no flag gives when run on a terminal; with --yes (or without a "
                    "terminal) a missing value is a usage error naming its flag. Never writes a secret.")
    p.add_argument("--target", help="a name for the database, used by the features (default production)")
    p.add_argument("--dsn-var", metavar="VAR",
                   help="the environment variable holding its DSN (default <TARGET>_PG_DSN); a pasted "
                        "DSN is never written: the file gets ${VAR} and you export it")
    p.add_argument("--backups", metavar="DIR|s3://BUCKET/PREFIX/", help="where its backups are")
    p.add_argument("--key-pattern", metavar="PATTERN",
                   help="how backups are named, e.g. backup-%%Y%%m%%d.sql.gz (default: suggested from the "
                        "newest backups found)")
    p.add_argument("--endpoint-var", metavar="VAR",
                   help=f"s3 only: the variable holding the S3 endpoint URL (default {_DEFAULT_ENDPOINT_VAR} "
                        "when it is set; none: AWS itself)")
    p.add_argument("--cadence", choices=DRILL_CADENCES, help="how often the drill runs (default monthly)")
    p.add_argument("--backup-interval", choices=[i.value for i in BackupInterval],
                   help="how often backups are taken: sets the freshness limit (default daily: 26h)")
    p.add_argument("--rto", help='the restore\'s time limit (default "30 minutes")')
    p.add_argument("--id", dest="drill_id", metavar="ID", help="the drill's @id tag (default RST-01)")
    p.add_argument("--dir", type=Path, default=Path(), help="where to write (default: here)")
    p.add_argument("--yes", action="store_true",
                   help="never ask: take defaults and suggestions; a missing value is exit 2")


@dataclass
class _Notes:
    """What init found out on the way, printed after the files."""

    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)


def init(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None,
         now: datetime | None = None) -> int:
    """``drillbook init``: gather, validate, check the paths, probe read-only, write, tell."""
    env = os.environ if environ is None else environ
    ask = _Asker(interactive=not args.yes and sys.stdin.isatty())
    notes = _Notes()

    target = ask("--target", args.target, "A name for the database (the features use it)", "production",
                 validate_target)
    dsn_answer = ask("--dsn-var", args.dsn_var, f"Environment variable holding {target}'s DSN (or paste the "
                     "DSN)", default_dsn_var(target), _check_dsn_answer)
    pasted: str | None = None
    if looks_like_dsn(dsn_answer):
        pasted = dsn_answer
        dsn_var = default_dsn_var(target)
        notes.add(f"the DSN you gave is not written anywhere: export it before running drillbook:\n"
                  f"    export {dsn_var}='{redact.redact(pasted)}'   (with the real password)")
        if args.dsn_var is not None:
            notes.add("a DSN on the command line shows in the process list and stays in the shell's "
                      "history: prefer --dsn-var with the variable's name")
    else:
        dsn_var = dsn_answer
    backups = _location(ask("--backups", args.backups, "Where are the backups (a directory or "
                            "s3://bucket/prefix/)", None, lambda v: validate_backups(_absolute(v))))
    endpoint_var = args.endpoint_var
    if backups.startswith("s3://") and endpoint_var is None:
        default = _DEFAULT_ENDPOINT_VAR if _DEFAULT_ENDPOINT_VAR in env else None
        endpoint_var = ask("--endpoint-var", None, "Variable holding the S3 endpoint URL (empty: AWS "
                           "itself)", default, lambda v: validate_var("--endpoint-var", v), optional=True)
    cadence = ask("--cadence", args.cadence, f"How often the drill runs ({', '.join(DRILL_CADENCES)})",
                  "monthly", validate_cadence)
    interval = _interval(ask("--backup-interval", args.backup_interval, "How often backups are taken "
                             "(hourly, daily, weekly)", "daily", _interval))
    answers = InitAnswers(
        target=target, dsn_var=dsn_var, backups=backups, key_pattern="%Y%m%d",  # the real one below
        cadence=cadence, interval=interval, rto=args.rto or "30 minutes",
        drill_id=args.drill_id or "RST-01", endpoint_var=endpoint_var or None,
    )
    validate(answers)  # everything but the pattern, before anything is read
    config_path, feature_path = _paths(args.dir, answers)
    names = _backup_names(answers, env, notes)
    answers = replace(answers, key_pattern=_key_pattern(args.key_pattern, names, ask, notes))
    dsn = pasted or env.get(dsn_var)
    if dsn:
        redact.register_dsn(dsn)  # an error message quoting it must not show its password
        answers = replace(answers, tables=_biggest_tables(dsn, target, notes))
    else:
        notes.add(f"${dsn_var} is not set, so {target} was not read: the feature has a commented example "
                  "row-count table; fill it in")
    validate(answers)
    _write(config_path, render_config(answers, written=now or datetime.now(UTC)),
           feature_path, render_feature(answers))
    _tell(args.dir, config_path, feature_path, answers, notes)
    return EXIT_PASSED


def _check_dsn_answer(answer: str) -> None:
    if looks_like_dsn(answer):
        redact.register_dsn(answer)  # at once: from here on every output masks its password
    else:
        validate_var("--dsn-var", answer)


def _interval(answer: str) -> BackupInterval:
    try:
        return BackupInterval(answer)
    except ValueError:
        raise ConfigError(f"--backup-interval must be hourly, daily or weekly, got {answer!r}",
                          key="--backup-interval") from None


class _Asker:
    """A flag's value, checked; else, on a terminal, a question (asked again after a bad answer);
    elsewhere the default, and no default is a usage error naming the flag."""

    _TRIES = 3

    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive

    def __call__(self, flag: str, given: str | None, question: str, default: str | None,
                 check: Callable[[str], object], *, optional: bool = False) -> str:
        if given is not None:
            check(given)
            return given
        for attempt in range(self._TRIES if self.interactive else 1):
            answer = _prompt(question, default) if self.interactive else (default or "")
            if not answer and optional:
                return ""
            try:
                if not answer:
                    _missing(flag, question.split(" (")[0].lower())
                check(answer)
            except ConfigError as exc:
                if not self.interactive or attempt == self._TRIES - 1:
                    raise
                print(f"  {exc.message}", file=sys.stderr)
                continue
            return answer
        raise AssertionError("unreachable: the last try raises or returns")


def _prompt(question: str, default: str | None) -> str:
    suffix = f" [{default}]" if default else ""
    try:
        answer = input(f"{question}{suffix}: ").strip()
    except EOFError:
        answer = ""
    return answer or (default or "")


def _missing(flag: str, what: str) -> None:
    raise ConfigError(f"{flag} is required: {what}", key=flag,
                      hint=f"pass {flag} (without a terminal, or with --yes, init asks nothing)")


def _absolute(raw: str) -> str:
    """A directory as an absolute path (the config is read from wherever it is); s3:// as given."""
    return raw if raw.startswith("s3://") else str(Path(raw).expanduser().absolute())


def _location(raw: str) -> str:
    path = _absolute(raw)
    validate_backups(path)
    return path


def _paths(directory: Path, answers: InitAnswers) -> tuple[Path, Path]:
    """Both files to write; any that exists already is a usage error, and nothing is written."""
    config_path = directory / CONFIG_NAME
    feature_path = directory / Path(answers.feature_path)
    existing = [str(p) for p in (config_path, feature_path) if p.exists() or p.is_symlink()]
    if existing:
        raise ConfigError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: "
                          "drillbook init never overwrites, nothing was written", key="--dir",
                          hint="move it away, or write elsewhere with --dir DIR (or another --target)")
    return config_path, feature_path


def _backup_names(answers: InitAnswers, env: Mapping[str, str], notes: _Notes) -> list[str]:
    """The backups' names, newest first (by mtime / LastModified); read-only, failures only noted."""
    from checks.backups import is_sidecar
    from drills.stores import open_store
    from drills.targets import StoreSpec

    if answers.is_s3:
        endpoint = env.get(answers.endpoint_var) if answers.endpoint_var else None
        spec = StoreSpec(name=answers.store, url=answers.backups, endpoint_url=endpoint,
                         access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                         secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))
    else:
        if not Path(answers.backups).is_dir():
            notes.add(f"{answers.backups} is not a directory here: check the path where drillbook runs")
            return []
        spec = StoreSpec(name=answers.store, url=answers.backups)
    try:
        objects = open_store(spec).list()
    except (DrillbookError, OSError) as exc:
        notes.add(f"could not list the backups in {answers.backups}: {redact.redact(str(exc))}")
        return []
    backups = [o for o in objects if not is_sidecar(o.key) and not o.key.endswith("/")]
    backups.sort(key=lambda o: (o.last_modified, o.key), reverse=True)
    if not backups:
        notes.add(f"no backup found in {answers.backups} yet")
    return [o.key for o in backups]


def _key_pattern(given: str | None, names: list[str], ask: _Asker, notes: _Notes) -> str:
    """``--key-pattern`` checked like ``verify backup`` checks it; else one suggested from the names."""
    suggestion = None if given is not None else suggest_key_pattern(names[:_SAMPLES])
    if suggestion is not None:
        read = matching(suggestion, names)
        notes.add(f"key pattern {suggestion!r} suggested from the file names: it reads {len(read)} of the "
                  f"{len(names)} files (newest: {read[0]})")
    pattern = ask("--key-pattern", given, "How backups are named, with %Y %m %d (%H %M %S) for the date",
                  suggestion, validate_key_pattern)
    if given is not None and names and not matching(given, names):
        notes.add(f"none of the {len(names)} files found matches {given!r} (newest: {names[0]}): check "
                  "the pattern before running the drill")
    return pattern


# Biggest user tables first; a partitioned table counts its partitions. Read from the catalog only.
_BIGGEST_SQL = """
SELECT n.nspname, c.relname,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
            ELSE pg_total_relation_size(c.oid) END AS bytes,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(greatest(p.reltuples, 0)), 0) FROM pg_partition_tree(c.oid) t
                  JOIN pg_class p ON p.oid = t.relid)
            ELSE greatest(c.reltuples, 0) END AS estimate
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
ORDER BY bytes DESC, 1, 2
LIMIT 6
"""


def _biggest_tables(dsn: str, target: str, notes: _Notes) -> tuple[TableFloor, ...]:
    """The subject's biggest tables with half of today's rows, read in a read-only session."""
    import psycopg
    from psycopg import sql

    from .init_files import PLAIN_TABLE

    options = f"-c default_transaction_read_only=on -c statement_timeout={_STATEMENT_TIMEOUT}"
    floors: list[TableFloor] = []
    try:
        with psycopg.connect(dsn, connect_timeout=_CONNECT_TIMEOUT_S, options=options,
                             autocommit=True) as conn:
            conn.read_only = True  # belt and braces: the session default above, and libpq's own
            for schema, name, _, estimate in conn.execute(_BIGGEST_SQL).fetchall():
                qualified = name if schema == "public" else f"{schema}.{name}"
                if not PLAIN_TABLE.fullmatch(qualified):
                    continue  # a name that needs quoting stays out of the generated table
                try:
                    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(schema, name))).fetchone()
                    count = int(row[0]) if row else 0
                except psycopg.errors.QueryCanceled:
                    count = int(estimate)  # too big to count in time: the planner's estimate will do
                except psycopg.Error:
                    continue  # no SELECT right: leave it out
                floor = row_floor(count)
                if floor > 0:
                    floors.append(TableFloor(qualified, floor))
                if len(floors) == _TABLES:
                    break
    except psycopg.Error as exc:
        notes.add(f"could not read {target} ({redact.redact(str(exc).strip().splitlines()[0])}): the "
                  "feature has a commented example row-count table; fill it in")
        return ()
    if floors:
        notes.add(f"row-count table: {target}'s {len(floors)} biggest tables with half of today's rows "
                  "(tighten it as you learn what a good backup holds)")
    else:
        notes.add(f"{target} has no table with rows to list: the feature has a commented example")
    return tuple(floors)


def _write(config_path: Path, config_text: str, feature_path: Path, feature_text: str) -> None:
    """Both files or neither: created exclusively (a race with another writer loses, not overwrites)."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with config_path.open("x", encoding="utf-8") as out:
            out.write(config_text)
    except FileExistsError:
        _paths_exist(config_path)
    try:
        feature_path.parent.mkdir(parents=True, exist_ok=True)
        with feature_path.open("x", encoding="utf-8") as out:
            out.write(feature_text)
    except BaseException as exc:
        config_path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            _paths_exist(feature_path)
        raise


def _paths_exist(path: Path) -> None:
    raise ConfigError(f"{path} appeared while init ran: nothing was written", key="--dir",
                      hint="run drillbook init again")


def _tell(directory: Path, config_path: Path, feature_path: Path, answers: InitAnswers,
          notes: _Notes) -> None:
    print(f"wrote {config_path}")
    print(f"wrote {feature_path}")
    for line in notes.lines:
        print(f"  - {line}")
    needed = [answers.dsn_var]
    if answers.is_s3:
        needed += [v for v in (answers.endpoint_var, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if v]
    print(f"\nexport {', '.join(needed)} (see the top of {config_path.name}), then:")
    here = directory.resolve() == Path.cwd().resolve()
    config = CONFIG_NAME if here else str(config_path)
    print(f"  drillbook doctor --config {config}      # is the setup right? (read-only)")
    run = f"drillbook run --config {config}"
    if not here or _other_features(feature_path):
        run += f" --features {feature_path}"
    print(f"  {run}        # the drill")


def _other_features(feature_path: Path) -> bool:
    """Whether ``features/`` holds more than what init wrote (then `run` must name the file)."""
    root = feature_path.parent.parent
    return any(p != feature_path for p in root.rglob("*.feature"))
