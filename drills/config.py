"""``drillbook.toml``: read with tomllib, validated before anything runs.

An unknown key or a bad value stops the run at once, naming the key and the
file. Secrets never live in the file: any string value may reference
``${ENV_VAR}``. Registered with :mod:`checks.redact`, so that every output masks
them: every resolved ``${ENV_VAR}`` value, the password in the userinfo (and
credential query parameters) of every URL-valued field whether literal or not
(``dsn``, ``url``, ``endpoint_url``, the ledger's ``url`` and ``endpoint_url``),
a key=value DSN's password, and every http header value (but ``Accept``,
``Content-Type``, ``User-Agent`` and the like).

::

    [run]
    out = "out"                 # where runs are written (relative to this file; --out overrides)
    strict = false              # warnings fail the run (--strict / --no-strict override)
    waivers = "waivers.toml"    # optional: the waiver file (relative to this file)
    restore_timeout = "1h"      # optional: a restore's deadline when its scenario states no RTO
    migration_timeout = "30m"   # optional: a migration replay's deadline
    query_timeout = "10m"       # optional: statement_timeout of the checks' queries

    [ledger]
    url = "out/ledger.jsonl"    # optional: the cadence ledger (default <out>/ledger.jsonl), or
                                # "s3://bucket/prefix/" with endpoint_url, region, access_key_id,
                                # secret_access_key as for an s3 target
    append_timeout = "2m"       # optional, s3:// only: how long an append keeps retrying while
                                # other runs win the race for the tail (default 2m)

    [migrations]
    layout = "flyway"           # optional: the layout of every migration folder a feature names
                                # (flyway, dotted, updown, directory, numbered, goose, dbmate, prisma,
                                # sqitch, liquibase, atlas, sqlx, diesel; default: detected)
    prelude = "db/init.sql"     # optional: SQL run in the scratch database before the first step
    [migrations.folders]
    "db/migrations" = "updown"  # optional: one folder's layout (path relative to this file)
    # Migrations written as code: the team's own command instead of a folder (drills/migrations/command.py)
    # command = "alembic upgrade head"      # run against a scratch database (DATABASE_URL, PG*)
    # down_command = "alembic downgrade base"   # the round trip's way back to empty
    # workdir = "."                         # the folder it runs in (relative to this file; default: here)
    # command_timeout = "10m"               # default: [run] migration_timeout
    # command_env = ["ALEMBIC_CONFIG"]      # variables it may see besides PATH, HOME, LANG

    [containers.production]     # `--env containers` only: the image of a sandbox target
    image = "registry.internal/postgres:15.8"   # (production, scratch, cache, nightly-custom,
                                # nightly-dumpall; default: the official images, see containers_env)

    [targets.barman]            # Barman cloud (docs/physical-backups.md): barman-cloud-backup's
    kind = "barman-cloud"       # source URL and server name; endpoint_url, region and the keys
    url = "s3://backups/barman/"   # as for an s3 store, the keys only as ${ENV}
    server = "pg-main"

    [targets.production]        # a subject: read-only, always
    kind = "postgres"
    dsn = "${PROD_PG_DSN}"

    [targets.scratch]           # where drills may write: must be empty
    kind = "postgres"
    dsn = "${SCRATCH_PG_DSN}"
    scratch = true

    [targets.nightly]
    kind = "s3"                 # or "directory"
    url = "s3://backups/aureus/"
    key_pattern = "backup-%Y%m%d.sql.gz"
    endpoint_url = "https://s3.internal"
    access_key_id = "${AWS_ACCESS_KEY_ID}"
    secret_access_key = "${AWS_SECRET_ACCESS_KEY}"
    probe_role_arn = "${BACKUP_ROLE_ARN}"   # optional, with probe_prefix: the immutability probe
    probe_prefix = "drillbook-probes/"      # assumes this role and writes its own marker here
                                            # (never under the store's prefix); docs/immutable-backups.md

    [targets.cache]
    kind = "redis"
    url = "${REDIS_URL}"

    [targets.sark-api]          # an HTTP(S) health endpoint; TLS is always verified
    kind = "http"
    url = "https://sark.internal:8443"
    ca_file = "certs/internal-ca.pem"   # optional: else the system store (relative to this file)
    headers = { Authorization = "Bearer ${SARK_TOKEN}" }   # optional
    follow_redirects = "never"  # optional: a 3xx is the answer (default); or "same-origin": follow
                                # redirects to the same scheme, host and port only

    [targets.sovra-edge]        # certificates: a live endpoint ...
    kind = "tls"
    host = "edge.sovra.internal"
    port = 443                  # optional, default 443
    server_name = "edge.sovra.example"  # optional: SNI and the name to verify (default: host)
    ca_file = "certs/internal-ca.pem"   # optional: else the system store
    # ... or a PEM file (leaf first, then intermediates): pem_file = "certs/edge.pem"

    [targets.metrics]
    kind = "prometheus"
    url = "https://prometheus.internal:9090"
    ca_file = "certs/internal-ca.pem"   # optional
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError

from . import service_kinds, store_kinds
from .config_values import (
    SECRET_KEYS,
    STRUCTURED_KEYS,
    as_bool,
    as_string,
    as_table,
    duration,
    register_url_secrets,
    reject_unknown,
    required,
    resolve,
)
from .targets import HttpTarget, PostgresTarget, PrometheusTarget, RedisTarget, Role, StoreSpec, TlsTarget

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")

# [run] deadlines (drills/deadlines.py), written as durations: "90s", "30m", "1h".
_TIMEOUT_KEYS = ("restore_timeout", "migration_timeout", "query_timeout")
_RUN_KEYS = {"out", "strict", "waivers", *_TIMEOUT_KEYS}
_LEDGER_KEYS = {"url", "endpoint_url", "region", "access_key_id", "secret_access_key", "append_timeout"}
_TARGET_KEYS: dict[str, set[str]] = {
    "postgres": {"kind", "dsn", "scratch"},
    "redis": {"kind", "url", "scratch"},
    **{kind: set(store.keys) for kind, store in store_kinds.KINDS.items()},
    "http": {"kind", "url", "ca_file", "headers", "follow_redirects"},
    "tls": {"kind", "host", "port", "server_name", "pem_file", "ca_file"},
    "prometheus": {"kind", "url", "ca_file"},
}
_TOP_KEYS = {"run", "targets", "ledger", "migrations", "containers", "fleet"}
# A fleet member's child run names its member here (drillbook/fleet/execute.py): every load of the
# config in that process (the steps load it too) then binds the member's targets.
MEMBER_ENV = "DRILLBOOK_MEMBER"
# The team's own migrate command (drills/migrations/command.py).
_COMMAND_KEYS = ("command", "down_command", "workdir", "command_timeout", "command_env")
_MIGRATIONS_KEYS = {"layout", "folders", "prelude", *_COMMAND_KEYS}
# drills.migrations.Layout's values (not imported: reading a config must not load the SQL parser).
MIGRATION_LAYOUTS = ("flyway", "dotted", "updown", "directory", "numbered", "goose", "dbmate", "prisma",
                     "sqitch", "liquibase", "atlas", "sqlx", "diesel")


@dataclass(frozen=True)
class MigrationCommandConfig:
    """``[migrations] command`` and its companions: the team's own migrate command, validated."""

    command: str
    workdir: Path  # resolved: relative to the config file, default its folder
    down_command: str | None = None
    timeout: timedelta | None = None  # None: [run] migration_timeout
    env: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """A validated configuration: run options and targets by logical name."""

    path: Path | None
    out: Path = Path("out")
    strict: bool = False
    postgres: Mapping[str, PostgresTarget] = field(default_factory=dict)
    redis: Mapping[str, RedisTarget] = field(default_factory=dict)
    stores: Mapping[str, StoreSpec] = field(default_factory=dict)
    http: Mapping[str, HttpTarget] = field(default_factory=dict)
    tls: Mapping[str, TlsTarget] = field(default_factory=dict)
    prometheus: Mapping[str, PrometheusTarget] = field(default_factory=dict)
    waivers: Path | None = None  # [run] waivers: the waiver file, relative to the config file
    ledger_url: str | None = None  # [ledger] url: the cadence ledger (a path; default <out>/ledger.jsonl)
    ledger_s3: Mapping[str, str] = field(default_factory=dict)  # endpoint_url, region, keys for s3://
    migration_layout: str | None = None  # [migrations] layout: every folder's layout (default: detected)
    migration_folders: Mapping[Path, str] = field(default_factory=dict)  # [migrations.folders], resolved
    # [migrations] prelude: SQL run in each scratch database before the first step (resolved; must exist).
    migration_prelude: Path | None = None
    migration_command: MigrationCommandConfig | None = None  # [migrations] command, down_command, …
    # [containers.<target>] image: images per service of the containers environment (postgres, redis, ...)
    container_images: Mapping[str, str] = field(default_factory=dict)
    # [run] restore_timeout / migration_timeout / query_timeout: None means the built-in default.
    timeouts: Mapping[str, timedelta] = field(default_factory=dict)
    member: str | None = None  # the fleet member whose targets are bound (drills/fleet.py)

    def migration_layout_for(self, directory: Path) -> str | None:
        """The layout configured for a migration folder: its own entry, else ``[migrations] layout``."""
        return self.migration_folders.get(directory.resolve(), self.migration_layout)

    def redacted(self) -> dict[str, Any]:
        """The effective config with every secret masked (for evidence)."""
        data: dict[str, Any] = {
            "out": str(self.out),
            "strict": self.strict,
            "timeouts_s": {k: v.total_seconds() for k, v in self.timeouts.items()},
            "waivers": str(self.waivers) if self.waivers else None,
            "ledger_url": redact.redact(self.ledger_url) if self.ledger_url else None,
            "migrations": {"layout": self.migration_layout,
                           "prelude": str(self.migration_prelude) if self.migration_prelude else None,
                           "folders": {str(k): v for k, v in self.migration_folders.items()},
                           "command": redact.redact(self.migration_command.command)
                           if self.migration_command else None},
            "targets": {},
        }
        for name, pg in self.postgres.items():
            data["targets"][name] = {"kind": "postgres", "dsn": redact.redact(pg.dsn),
                                     "scratch": pg.role is Role.SCRATCH}
        for name, rd in self.redis.items():
            data["targets"][name] = {"kind": "redis", "url": redact.redact(rd.url)}
        for name, st in self.stores.items():
            data["targets"][name] = store_kinds.redacted(st)
        for name, ht in self.http.items():
            data["targets"][name] = {"kind": "http", "url": redact.redact(ht.url),
                                     "ca_file": str(ht.ca_file) if ht.ca_file else None,
                                     "headers": {k: redact.redact(v) for k, v in ht.headers},
                                     "follow_redirects": ht.follow_redirects.value}
        for name, tl in self.tls.items():
            data["targets"][name] = {"kind": "tls", "host": tl.host, "port": tl.port,
                                     "server_name": tl.server_name,
                                     "pem_file": str(tl.pem_file) if tl.pem_file else None,
                                     "ca_file": str(tl.ca_file) if tl.ca_file else None}
        for name, pr in self.prometheus.items():
            data["targets"][name] = {"kind": "prometheus", "url": redact.redact(pr.url),
                                     "ca_file": str(pr.ca_file) if pr.ca_file else None}
        return data


def load_config(path: Path, *, environ: Mapping[str, str] | None = None, member: str | None = None) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the key and file.

    ``member`` (default: ``$DRILLBOOK_MEMBER``) binds that fleet member's targets over the shared ones.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", file=str(path)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", file=str(path)) from exc
    env = os.environ if environ is None else environ
    return parse_config(text, path=path, environ=env, member=member or env.get(MEMBER_ENV) or None)


def parse_config(text: str, *, path: Path | None, environ: Mapping[str, str],
                 member: str | None = None) -> Config:
    """Validate TOML text. ``environ`` resolves ``${VAR}`` references; ``member`` binds a fleet member."""
    where = str(path) if path else "<config>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}", file=where) from exc
    if member is not None:
        data = _bind_member(data, path, member)
        where = f"{where} (fleet member {member})"

    reject_unknown(data, _TOP_KEYS, where, "")
    run = as_table(data.get("run", {}), where, "run")
    reject_unknown(run, _RUN_KEYS, where, "run.")
    out = Path(as_string(run.get("out", "out"), where, "run.out"))
    if "out" in run and not out.is_absolute() and path is not None:
        # Like [run] waivers and [ledger] url: relative to the config file, whatever the cwd.
        out = path.parent / out
    strict = as_bool(run.get("strict", False), where, "run.strict")
    waivers = None
    if "waivers" in run:
        waivers_value = Path(as_string(run["waivers"], where, "run.waivers"))
        if not waivers_value.is_absolute() and path is not None:
            waivers_value = path.parent / waivers_value
        waivers = waivers_value
    timeouts = {key: duration(run[key], where, f"run.{key}") for key in _TIMEOUT_KEYS if key in run}
    ledger = as_table(data.get("ledger", {}), where, "ledger")
    reject_unknown(ledger, _LEDGER_KEYS, where, "ledger.")
    ledger_url = None
    if "url" in ledger:
        ledger_url = resolve(ledger["url"], where, "ledger.url", environ, secret=False)
    ledger_s3 = {k: resolve(v, where, f"ledger.{k}", environ, secret=k in SECRET_KEYS)
                 for k, v in ledger.items() if k != "url"}
    register_url_secrets({"url": ledger_url or "", **ledger_s3})
    if "append_timeout" in ledger_s3:
        # Checked here, kept as text: reports/ledger_s3 reads it when it builds the client.
        duration(ledger_s3["append_timeout"], where, "ledger.append_timeout")
    if ledger_s3 and not (ledger_url or "").startswith("s3://"):
        raise ConfigError(f"{where}: `ledger.{sorted(ledger_s3)[0]}` applies only to an s3:// `ledger.url`",
                          file=where, key=f"ledger.{sorted(ledger_s3)[0]}")

    migration_layout, migration_folders = _migrations(data.get("migrations", {}), where, path)
    migration_prelude = _prelude(data.get("migrations", {}), where, path)
    migration_command = _migration_command(data.get("migrations", {}), where, path)
    container_images = _containers(data.get("containers", {}), where, environ)

    postgres: dict[str, PostgresTarget] = {}
    redis_targets: dict[str, RedisTarget] = {}
    stores: dict[str, StoreSpec] = {}
    http_targets: dict[str, HttpTarget] = {}
    tls_targets: dict[str, TlsTarget] = {}
    prometheus_targets: dict[str, PrometheusTarget] = {}
    targets = as_table(data.get("targets", {}), where, "targets")
    for name, body in targets.items():
        key = f"targets.{name}"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: target name `{name}` must start with a letter and use only "
                "letters, digits, `_`, `.` and `-`", file=where, key=key,
            )
        spec = as_table(body, where, key)
        kind = spec.get("kind")
        if kind not in _TARGET_KEYS:
            raise ConfigError(
                f"{where}: `{key}.kind` must be one of {sorted(_TARGET_KEYS)}, got {kind!r}",
                file=where, key=f"{key}.kind",
            )
        reject_unknown(spec, _TARGET_KEYS[kind], where, f"{key}.")
        if kind in store_kinds.KINDS:
            stores[name] = store_kinds.parse_store(name, spec, config_path=path, where=where, key=key,
                                                   environ=environ)
            continue
        values = {k: resolve(v, where, f"{key}.{k}", environ, secret=k in SECRET_KEYS)
                  for k, v in spec.items() if k not in STRUCTURED_KEYS}
        register_url_secrets(values)
        scratch = as_bool(spec.get("scratch", False), where, f"{key}.scratch")
        role = Role.SCRATCH if scratch else Role.SUBJECT
        if kind == "postgres":
            dsn = required(values, "dsn", where, key)
            redact.register_dsn(dsn)
            _check_dsn(dsn, where, f"{key}.dsn")
            postgres[name] = PostgresTarget(name=name, dsn=dsn, role=role)
        elif kind == "redis":
            url = required(values, "url", where, key)
            redact.register_dsn(url)
            redis_targets[name] = RedisTarget(name=name, url=url, role=role)
        elif kind == "http":
            http_targets[name] = service_kinds.http_target(name, spec, values, path, where, key, environ)
        elif kind == "prometheus":
            prometheus_targets[name] = service_kinds.prometheus_target(name, values, path, where, key)
        else:
            tls_targets[name] = service_kinds.tls_target(name, spec, values, path, where, key)
    _reject_scratch_equal_to_subject(postgres, where)
    return Config(path=path, out=out, strict=strict, postgres=postgres,
                  redis=redis_targets, stores=stores, http=http_targets, tls=tls_targets,
                  prometheus=prometheus_targets, waivers=waivers, ledger_url=ledger_url,
                  ledger_s3=ledger_s3, migration_layout=migration_layout,
                  migration_folders=migration_folders, migration_prelude=migration_prelude,
                  migration_command=migration_command,
                  container_images=container_images,
                  timeouts=timeouts, member=member)


def _bind_member(data: dict[str, Any], path: Path | None, member: str) -> dict[str, Any]:
    """The config's tables with fleet member ``member``'s targets bound (drills/fleet.py)."""
    from .fleet import fleet_table, overlay, parse_fleet

    found = fleet_table(path, data) if path is not None else None
    if found is None:
        raise ConfigError(f"{path or '<config>'}: fleet member {member!r} asked for, but the config has no "
                          "[fleet] table (nor a fleet.toml beside it)", file=str(path), key="fleet",
                          hint="define the fleet's members, or run without --member")
    table, source = found
    return overlay(data, parse_fleet(table, source).member(member))


def _containers(value: Any, where: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``[containers.<target>] image = "..."``: images per service of the containers environment."""
    table = as_table(value, where, "containers")
    if not table:
        return {}
    # Imported only when the table is there: reading a config must stay cheap.
    from .containers_env import images_for_targets

    by_target: dict[str, str] = {}
    for target, body in table.items():
        key = f"containers.{target}"
        spec = as_table(body, where, key)
        reject_unknown(spec, {"image"}, where, f"{key}.")
        image = resolve(required(spec, "image", where, key), where, f"{key}.image", environ, secret=False)
        if not image.strip() or any(c.isspace() for c in image):
            raise ConfigError(f"{where}: `{key}.image` must be an image reference such as postgres:15, "
                              f"got {image!r}", file=where, key=f"{key}.image")
        by_target[target] = image
    return images_for_targets(by_target, where=where)


def _prelude(value: Any, where: str, path: Path | None) -> Path | None:
    """``[migrations] prelude``: a SQL file (relative to the config file) that must exist."""
    if not isinstance(value, dict) or "prelude" not in value:
        return None
    text = as_string(value["prelude"], where, "migrations.prelude")
    base = path.parent if path is not None else Path.cwd()
    prelude = (base / text).resolve()
    if not prelude.is_file():
        raise ConfigError(f"{where}: `migrations.prelude` names {text!r}, which is not a file ({prelude})",
                          file=where, key="migrations.prelude",
                          hint="give the SQL file the team's init script runs, relative to drillbook.toml")
    return prelude


def _migrations(value: Any, where: str, path: Path | None) -> tuple[str | None, dict[Path, str]]:
    """``[migrations]``: a default layout and per-folder layouts, each one of the known layouts."""
    table = as_table(value, where, "migrations")
    reject_unknown(table, _MIGRATIONS_KEYS, where, "migrations.")

    def layout(raw: Any, key: str) -> str:
        text = as_string(raw, where, key)
        if text not in MIGRATION_LAYOUTS:
            raise ConfigError(f"{where}: `{key}` must be one of {', '.join(MIGRATION_LAYOUTS)}, got {text!r}",
                              file=where, key=key)
        return text

    default = layout(table["layout"], "migrations.layout") if "layout" in table else None
    folders: dict[Path, str] = {}
    base = path.parent if path is not None else Path.cwd()
    for folder, raw in as_table(table.get("folders", {}), where, "migrations.folders").items():
        key = f"migrations.folders.{folder}"
        if not folder.strip():
            raise ConfigError(f"{where}: `migrations.folders` has an empty folder name", file=where, key=key)
        folders[(base / folder).resolve()] = layout(raw, key)
    return default, folders


def _migration_command(value: Any, where: str, path: Path | None) -> MigrationCommandConfig | None:
    """``[migrations] command`` & co: split like a shell line (never run by one), folder exists,
    duration valid, variables nameable and not the scratch database's own (``DATABASE_URL``, ``PG*``)."""
    table = as_table(value, where, "migrations")
    if "command" not in table:
        extra = sorted(k for k in _COMMAND_KEYS if k in table)
        if extra:
            raise ConfigError(f"{where}: `migrations.{extra[0]}` applies only with `migrations.command`",
                              file=where, key=f"migrations.{extra[0]}")
        return None
    # Imported only when configured: reading a config must stay cheap.
    from .migrations.command import CommandUnusable, check_env_names, split_command

    def checked(key: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args, what=f"`migrations.{key}`")
        except CommandUnusable as exc:
            raise ConfigError(f"{where}: {exc.message}", file=where, key=f"migrations.{key}",
                              hint=exc.hint) from None

    command = as_string(table["command"], where, "migrations.command")
    checked("command", split_command, command)
    down = None
    if "down_command" in table:
        down = as_string(table["down_command"], where, "migrations.down_command")
        checked("down_command", split_command, down)
    base = path.parent if path is not None else Path.cwd()
    workdir = (base / as_string(table.get("workdir", "."), where, "migrations.workdir")).resolve()
    if not workdir.is_dir():
        raise ConfigError(f"{where}: `migrations.workdir`: no such folder {workdir}", file=where,
                          key="migrations.workdir", hint="name the folder the command runs in, relative "
                                                         "to this file")
    timeout = (duration(table["command_timeout"], where, "migrations.command_timeout")
               if "command_timeout" in table else None)
    names = table.get("command_env", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}: `migrations.command_env` must be a list of variable names, got "
                          f"{names!r}", file=where, key="migrations.command_env")
    env = checked("command_env", check_env_names, names)
    return MigrationCommandConfig(command, workdir, down, timeout, env)


def _check_dsn(dsn: str, where: str, key: str) -> None:
    """A DSN libpq cannot parse is named by key; the value itself may hold a password, so not shown."""
    import psycopg

    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = redact.redact(str(exc).strip())
        raise ConfigError(f"{where}: `{key}` is not a valid connection string: {reason}",
                          file=where, key=key) from None


def _reject_scratch_equal_to_subject(postgres: Mapping[str, PostgresTarget], where: str) -> None:
    """A scratch target that is also a subject would let a drill write to production."""
    import psycopg

    def identity(t: PostgresTarget) -> tuple[str, str, str]:
        info = psycopg.conninfo.conninfo_to_dict(t.dsn)
        return (str(info.get("host") or ""), str(info.get("port") or "5432"),
                str(info.get("dbname") or ""))

    subjects = {identity(t): n for n, t in postgres.items() if t.role is Role.SUBJECT}
    for name, target in postgres.items():
        if target.role is Role.SCRATCH and identity(target) in subjects:
            raise ConfigError(
                f"{where}: scratch target `{name}` is the same database as subject "
                f"`{subjects[identity(target)]}` ({target.describe()})",
                file=where, key=f"targets.{name}",
                hint="point `scratch` at an empty database or let drillbook create one",
            )
