"""``drillbook init``: point drillbook at your own database in one command.

Asks (on a terminal, for what no flag gave) or takes flags for the subject database, where its
backups are and how they are named, and the drill's cadence; writes ``drillbook.toml`` (``${VAR}``
placeholders only) and ``features/restore/<target>-restore-from-yesterday.feature``. Read-only
throughout: the backups are listed to suggest a key pattern, the subject's catalog is read (when
its DSN is in the environment) to pick the tables of the row-count table. Refuses to overwrite
anything: every path is checked before the first byte is written.

Refuses, before asking anything, to write into drillbook's own checkout (its ``features/`` holds
drillbook's own drills, which ``drillbook run`` would then run against the new config) unless
``--dir`` names it. On a terminal, a DSN is asked for without echo (``getpass``); the question for
the variable's name is the only one whose answer shows.

Exit 0 written; 2 a usage error (a missing value without a terminal, a bad key pattern, a file
that exists, the checkout), nothing written.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from checks import redact
from checks.errors import ConfigError, DrillbookError

from .init_files import (
    CONFIG_NAME,
    DRILL_CADENCES,
    BackupInterval,
    InitAnswers,
    TableFloor,
    default_dsn_var,
    feature_path,
    looks_like_dsn,
    matching,
    render_config,
    render_feature,
    row_floor,
    store_name,
    suggest_key_pattern,
    validate_backups,
    validate_cadence,
    validate_drill_id,
    validate_key_pattern,
    validate_rto,
    validate_target,
    validate_var,
    validate_variables,
)
from .runner import EXIT_PASSED

_CONNECT_TIMEOUT_S = 5
_STATEMENT_TIMEOUT_MS = 5000  # a count(*) of a never-analysed table slower than this leaves it out
_TABLES = 3  # rows of the row-count table
_SAMPLES = 20  # newest file names the key pattern is suggested from
_DEFAULT_ENDPOINT_VAR = "AWS_ENDPOINT_URL"
# drillbook's own checkout, when it runs from one (an editable install): init refuses to write there.
_CHECKOUT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


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
    p.add_argument("--dir", type=Path,
                   help="where to write (default: here, unless here is drillbook's own checkout)")
    p.add_argument("--yes", action="store_true",
                   help="never ask: take defaults and suggestions; a missing value is exit 2")


def init(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None,
         now: datetime | None = None) -> int:
    """``drillbook init``: gather and check, check the paths, probe read-only, write, tell."""
    env = os.environ if environ is None else environ
    directory = args.dir if args.dir is not None else _here()
    ask = _Asker(interactive=not args.yes and sys.stdin.isatty())
    notes: list[str] = []  # what init found out on the way, printed after the files

    target = ask("--target", args.target, "A name for the database (the features use it)", "production",
                 _checked(validate_target))
    dsn_var, dsn = _dsn(args.dsn_var, target, env, ask, notes)
    backups = ask("--backups", args.backups, "Where are the backups (a directory or s3://bucket/prefix/)",
                  None, _location)
    endpoint_var = args.endpoint_var
    if backups.startswith("s3://") and endpoint_var is None:
        default = _DEFAULT_ENDPOINT_VAR if _DEFAULT_ENDPOINT_VAR in env else None
        endpoint_var = ask("--endpoint-var", None, "Variable holding the S3 endpoint URL (empty: AWS "
                           "itself)", default, _optional_var, optional=True)
    cadence = ask("--cadence", args.cadence, f"How often the drill runs ({', '.join(DRILL_CADENCES)})",
                  "monthly", _checked(validate_cadence))
    interval = ask("--backup-interval", args.backup_interval, "How often backups are taken (hourly, "
                   "daily, weekly)", "daily", _interval)
    rto, drill_id = args.rto or "30 minutes", args.drill_id or "RST-01"
    validate_rto(rto)  # flags only: checked here, before anything is read
    validate_drill_id(drill_id)
    validate_variables(dsn_var, endpoint_var, backups=backups)
    config_path, drill = _paths(directory, target)
    names = _backup_names(backups, store_name(target), endpoint_var, env, notes)
    key_pattern = _key_pattern(args.key_pattern, names, ask, notes)
    if dsn:
        tables = _biggest_tables(dsn, target, notes)
    else:
        tables = ()
        notes.append(f"${dsn_var} is not set, so {target} was not read: the feature has a commented example "
                     "row-count table; fill it in")
    answers = InitAnswers(  # every field was checked as it was given
        target=target, dsn_var=dsn_var, backups=backups, key_pattern=key_pattern, cadence=cadence,
        interval=interval, rto=rto, drill_id=drill_id, endpoint_var=endpoint_var, tables=tables)
    _write(config_path, render_config(answers, written=now or datetime.now(UTC)),
           drill, render_feature(answers))
    _tell(directory, config_path, drill, answers, notes)
    return EXIT_PASSED


def _here() -> Path:
    """The current directory, unless it is (inside) drillbook's own checkout: its features/ holds
    drillbook's own drills, and `drillbook run --config drillbook.toml` there would run them all
    against a config that names only this database. ``--dir .`` writes there all the same."""
    here = Path.cwd().resolve()
    in_checkout = here.is_relative_to(_CHECKOUT) and (_CHECKOUT / "features").is_dir()
    if in_checkout and (_CHECKOUT / "drillbook").is_dir():  # not site-packages: a source checkout
        raise ConfigError(
            f"{here} is inside drillbook's own checkout ({_CHECKOUT}): its features/ holds drillbook's "
            "own drills, which `drillbook run` would run against your config; nothing was written",
            key="--dir", hint="run init in a directory of your own (mkdir ~/drills && cd ~/drills), or "
                              "name the directory with --dir DIR (--dir . writes here all the same)")
    return Path()


def _dsn(given: str | None, target: str, env: Mapping[str, str], ask: _Asker,
         notes: list[str]) -> tuple[str, str | None]:
    """The variable the config names, and a DSN to read the subject with now (None: not read).

    A DSN given in place of the name (``--dsn-var`` or typed at the name question) is used for this
    command only. On a terminal, when the variable is not set, the DSN is asked for without echo:
    what is typed at that question never shows on the screen.
    """
    answer = ask("--dsn-var", given, f"Environment variable holding {target}'s DSN", default_dsn_var(target),
                 _variable_or_dsn)
    if not looks_like_dsn(answer):
        dsn = env.get(answer)
        if dsn is None and ask.interactive:
            dsn = ask("--dsn-var", None, f"{target}'s DSN, to read its tables now (not shown, not written; "
                      "Enter: skip)", None, _optional_dsn, optional=True, secret=True)
            if dsn:
                _note_export(answer, dsn, notes)
        if dsn:
            redact.register_dsn(dsn)  # an error message quoting it must not show its password
        return answer, dsn or None
    dsn_var = default_dsn_var(target)
    _note_export(dsn_var, answer, notes)
    if given is not None:
        notes.append("a DSN on the command line shows in the process list and stays in the shell's "
                     "history: prefer --dsn-var with the variable's name")
    return dsn_var, answer


def _note_export(var: str, dsn: str, notes: list[str]) -> None:
    notes.append(f"the DSN you gave is not written anywhere: export it before running drillbook:\n"
                 f"    export {var}='{redact.redact(dsn)}'   (with the real password)")


def _checked(check: Callable[[str], None]) -> Callable[[str], str]:
    """A check that raises as a conversion that returns the answer unchanged."""
    def convert(answer: str) -> str:
        check(answer)
        return answer
    return convert


def _variable_or_dsn(answer: str) -> str:
    if looks_like_dsn(answer):
        redact.register_dsn(answer)  # at once: from here on every output masks its password
    else:
        validate_var("--dsn-var", answer)
    return answer


def _optional_dsn(answer: str) -> str | None:
    if not answer:
        return None
    if not looks_like_dsn(answer):
        raise ConfigError("that is not a connection string (postgresql://USER@HOST/DB or host=… dbname=…)",
                          key="--dsn-var")
    redact.register_dsn(answer)
    return answer


def _optional_var(answer: str) -> str | None:
    if not answer:
        return None
    validate_var("--endpoint-var", answer)
    return answer


def _interval(answer: str) -> BackupInterval:
    try:
        return BackupInterval(answer)
    except ValueError:
        raise ConfigError(f"--backup-interval must be hourly, daily or weekly, got {answer!r}",
                          key="--backup-interval") from None


def _location(raw: str) -> str:
    """A directory as an absolute path (the config is read from wherever it is); s3:// as given."""
    path = raw if raw.startswith("s3://") else str(Path(raw).expanduser().absolute())
    validate_backups(path)
    return path


class _Asker:
    """A flag's value, converted (which checks it); else, on a terminal, a question (asked again after
    a bad answer); elsewhere the default, and no default is a usage error naming the flag."""

    _TRIES = 3

    def __init__(self, *, interactive: bool) -> None:
        self.interactive = interactive

    def __call__(self, flag: str, given: str | None, question: str, default: str | None,
                 convert: Callable[[str], T], *, optional: bool = False, secret: bool = False) -> T:
        """``optional``: an empty answer goes to ``convert`` instead of being a missing value.
        ``secret``: read without echo, and the default is never shown."""
        if given is not None:
            return convert(given)
        for attempt in range(self._TRIES if self.interactive else 1):
            answer = _prompt(question, default, secret=secret) if self.interactive else (default or "")
            try:
                if not answer and not optional:
                    _missing(flag, question.split(" (")[0].lower())
                return convert(answer)
            except ConfigError as exc:
                if not self.interactive or attempt == self._TRIES - 1:
                    raise
                print(f"  {exc.message}", file=sys.stderr)
        raise AssertionError("unreachable: the last try raises or returns")


def _prompt(question: str, default: str | None, *, secret: bool = False) -> str:
    suffix = f" [{default}]" if default and not secret else ""
    try:
        answer = (getpass.getpass if secret else input)(f"{question}{suffix}: ").strip()
    except EOFError:
        answer = ""
    return answer or (default or "")


def _missing(flag: str, what: str) -> None:
    raise ConfigError(f"{flag} is required: {what}", key=flag,
                      hint=f"pass {flag} (without a terminal, or with --yes, init asks nothing)")


def _paths(directory: Path, target: str) -> tuple[Path, Path]:
    """Both files to write; any that exists already is a usage error, and nothing is written."""
    config_path = directory / CONFIG_NAME
    drill = directory / Path(feature_path(target))
    existing = [str(p) for p in (config_path, drill) if p.exists() or p.is_symlink()]
    if existing:
        raise ConfigError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: "
                          "drillbook init never overwrites, nothing was written", key="--dir",
                          hint="move it away, or write elsewhere with --dir DIR (or another --target)")
    return config_path, drill


def _backup_names(backups: str, store: str, endpoint_var: str | None, env: Mapping[str, str],
                  notes: list[str]) -> list[str]:
    """The backups' names, newest first (by mtime / LastModified); read-only, failures only noted."""
    from checks.backups import is_sidecar
    from drills.stores import open_store
    from drills.targets import StoreSpec

    if backups.startswith("s3://"):
        endpoint = env.get(endpoint_var) if endpoint_var else None
        spec = StoreSpec(name=store, url=backups, endpoint_url=endpoint,
                         access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                         secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))
    else:
        spec = StoreSpec(name=store, url=backups)
    try:
        objects = open_store(spec).list()  # a missing or unreadable directory raises, named
    except (DrillbookError, OSError) as exc:
        notes.append(f"could not list the backups in {backups}: {redact.redact(str(exc))}")
        return []
    found = [o for o in objects if not is_sidecar(o.key) and not o.key.endswith("/")]
    found.sort(key=lambda o: (o.last_modified, o.key), reverse=True)
    if not found:
        notes.append(f"no backup found in {backups} yet")
    return [o.key for o in found]


def _key_pattern(given: str | None, names: list[str], ask: _Asker, notes: list[str]) -> str:
    """``--key-pattern`` checked like ``verify backup`` checks it; else one suggested from the names."""
    suggestion = None if given is not None else suggest_key_pattern(names[:_SAMPLES])
    if suggestion is not None:
        read = matching(suggestion, names)
        notes.append(f"key pattern {suggestion!r} suggested from the file names: it reads {len(read)} of the "
                     f"{len(names)} files (newest: {read[0]})")
    pattern = ask("--key-pattern", given, "How backups are named, with %Y %m %d (%H %M %S) for the date",
                  suggestion, _checked(validate_key_pattern))
    if given is not None and names and not matching(given, names):
        notes.append(f"none of the {len(names)} files found matches {given!r} (newest: {names[0]}): check "
                     "the pattern before running the drill")
    return pattern


# Biggest user tables first, with the planner's row estimate; a partitioned table counts its leaf
# partitions. `unknown`: no usable estimate — never analysed (reltuples -1), or statistics saying
# "no pages" of a heap that has some (before PostgreSQL 14, never analysed read as 0 rows).
_BIGGEST_SQL = """
SELECT n.nspname, c.relname, leaves.bytes, leaves.estimate, leaves.unknown
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT coalesce(sum(pg_total_relation_size(l.oid)), 0) AS bytes,
           coalesce(sum(greatest(l.reltuples, 0)), 0) AS estimate,
           coalesce(bool_or(l.reltuples < 0 OR (l.relpages = 0 AND pg_relation_size(l.oid) > 0)), false)
               AS unknown
    FROM pg_class l
    WHERE l.oid = c.oid AND c.relkind = 'r'  -- pg_partition_tree() has no row for a plain table
       OR l.oid IN (SELECT relid FROM pg_partition_tree(c.oid) WHERE isleaf)
) leaves
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY leaves.bytes DESC, 1, 2
LIMIT 6
"""


def _biggest_tables(dsn: str, target: str, notes: list[str]) -> tuple[TableFloor, ...]:
    """The subject's biggest tables with half of today's rows (the planner's estimate; a count only
    for a table never analysed), read in a read-only session."""
    import psycopg
    from psycopg import sql

    from checks.errors import TargetUnreachable
    from checks.pg_health import connect_read_only

    from .init_files import PLAIN_TABLE

    floors: list[TableFloor] = []
    try:
        with connect_read_only(dsn, label=target, timeout_s=_CONNECT_TIMEOUT_S,
                               statement_timeout_ms=_STATEMENT_TIMEOUT_MS,
                               application_name="drillbook-init") as conn:
            for schema, name, _, estimate, unknown in conn.execute(_BIGGEST_SQL).fetchall():
                qualified = name if schema == "public" else f"{schema}.{name}"
                if not PLAIN_TABLE.fullmatch(qualified):
                    continue  # a name that needs quoting stays out of the generated table
                rows = int(estimate)
                if unknown:
                    try:
                        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                            sql.Identifier(schema, name))).fetchone()
                        rows = int(row[0]) if row else 0
                    except psycopg.Error:
                        continue  # too big to count in time, or no SELECT right: leave it out
                floor = row_floor(rows)
                if floor > 0:
                    floors.append(TableFloor(qualified, floor))
                if len(floors) == _TABLES:
                    break
    except (TargetUnreachable, psycopg.Error) as exc:
        notes.append(f"could not read {target} ({redact.redact(str(exc).strip().splitlines()[0])}): the "
                     "feature has a commented example row-count table; fill it in")
        return ()
    if floors:
        notes.append(f"row-count table: {target}'s {len(floors)} biggest tables with half of today's rows "
                     "(tighten it as you learn what a good backup holds)")
    else:
        notes.append(f"{target} has no table with rows to list: the feature has a commented example")
    return tuple(floors)


def _write(config_path: Path, config_text: str, drill: Path, feature_text: str) -> None:
    """Both files or neither: created exclusively (a race with another writer loses, not overwrites)."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with config_path.open("x", encoding="utf-8") as out:
            out.write(config_text)
    except FileExistsError:
        _paths_exist(config_path)
    try:
        drill.parent.mkdir(parents=True, exist_ok=True)
        with drill.open("x", encoding="utf-8") as out:
            out.write(feature_text)
    except BaseException as exc:
        config_path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            _paths_exist(drill)
        raise


def _paths_exist(path: Path) -> None:
    raise ConfigError(f"{path} appeared while init ran: nothing was written", key="--dir",
                      hint="run drillbook init again")


def _tell(directory: Path, config_path: Path, drill: Path, answers: InitAnswers,
          notes: list[str]) -> None:
    print(f"wrote {config_path}")
    print(f"wrote {drill}")
    for line in notes:
        print(f"  - {line}")
    needed = [answers.dsn_var]
    if answers.is_s3:
        needed += [v for v in (answers.endpoint_var, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if v]
    print(f"\nexport {', '.join(needed)} (see the top of {config_path.name}), then:")
    here = directory.resolve() == Path.cwd().resolve()
    config = CONFIG_NAME if here else str(config_path)
    print(f"  drillbook doctor --config {config}      # is the setup right? (read-only)")
    run = f"drillbook run --config {config}"
    if not here or _other_features(drill):
        run += f" --features {drill}"
    print(f"  {run}        # the drill")


def _other_features(drill: Path) -> bool:
    """Whether ``features/`` holds more than what init wrote (then `run` must name the file)."""
    root = drill.parent.parent
    return any(p != drill for p in root.rglob("*.feature"))
