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
from checks.durations import parse_duration
from checks.errors import ConfigError
from checks.http_health import FollowRedirects
from checks.immutability import check_probe_prefix, check_role_arn

from .pgbackrest_options import KEYS as PGBACKREST_KEYS
from .pgbackrest_options import pgbackrest_store, redacted_options
from .targets import HttpTarget, PostgresTarget, PrometheusTarget, RedisTarget, Role, StoreSpec, TlsTarget

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
# RFC 9110 field-name token; a value may not break the header block.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")

# [run] deadlines (drills/deadlines.py), written as durations: "90s", "30m", "1h".
_TIMEOUT_KEYS = ("restore_timeout", "migration_timeout", "query_timeout")
_RUN_KEYS = {"out", "strict", "waivers", *_TIMEOUT_KEYS}
_LEDGER_KEYS = {"url", "endpoint_url", "region", "access_key_id", "secret_access_key", "append_timeout"}
_TARGET_KEYS: dict[str, set[str]] = {
    "postgres": {"kind", "dsn", "scratch"},
    "redis": {"kind", "url", "scratch"},
    "s3": {
        "kind", "url", "key_pattern", "endpoint_url", "region",
        "access_key_id", "secret_access_key", "checksum_suffix", "probe_role_arn", "probe_prefix",
    },
    "directory": {"kind", "path", "key_pattern", "checksum_suffix"},
    "basebackup": {"kind", "path", "key_pattern", "wal"},
    "pgbackrest": PGBACKREST_KEYS,
    "http": {"kind", "url", "ca_file", "headers", "follow_redirects"},
    "tls": {"kind", "host", "port", "server_name", "pem_file", "ca_file"},
    "prometheus": {"kind", "url", "ca_file"},
}
# Values that are not strings, validated by kind: excluded from the generic ${ENV} resolution.
_STRUCTURED_KEYS = {"kind", "scratch", "headers", "port"}
_SECRET_KEYS = {"dsn", "url", "secret_access_key", "access_key_id", "endpoint_url"}
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
            data["targets"][name] = {
                "kind": st.kind if st.kind != "dump" else "s3" if st.is_s3 else "directory",
                **({"wal": st.wal} if st.wal else {}),
                **({"stanza": st.stanza, "repo": st.repo, "options": redacted_options(st)}
                   if st.kind == "pgbackrest" else {}),
                "url": redact.redact(st.url),
                "key_pattern": st.key_pattern,
                "endpoint_url": redact.redact(st.endpoint_url or ""),
            }
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

    _reject_unknown(data, _TOP_KEYS, where, "")
    run = _table(data.get("run", {}), where, "run")
    _reject_unknown(run, _RUN_KEYS, where, "run.")
    out = Path(_string(run.get("out", "out"), where, "run.out"))
    if "out" in run and not out.is_absolute() and path is not None:
        # Like [run] waivers and [ledger] url: relative to the config file, whatever the cwd.
        out = path.parent / out
    strict = _bool(run.get("strict", False), where, "run.strict")
    waivers = None
    if "waivers" in run:
        waivers_value = Path(_string(run["waivers"], where, "run.waivers"))
        if not waivers_value.is_absolute() and path is not None:
            waivers_value = path.parent / waivers_value
        waivers = waivers_value
    timeouts = {key: _duration(run[key], where, f"run.{key}") for key in _TIMEOUT_KEYS if key in run}
    ledger = _table(data.get("ledger", {}), where, "ledger")
    _reject_unknown(ledger, _LEDGER_KEYS, where, "ledger.")
    ledger_url = None
    if "url" in ledger:
        ledger_url = _resolve(ledger["url"], where, "ledger.url", environ, secret=False)
    ledger_s3 = {k: _resolve(v, where, f"ledger.{k}", environ, secret=k in _SECRET_KEYS)
                 for k, v in ledger.items() if k != "url"}
    _register_url_secrets({"url": ledger_url or "", **ledger_s3})
    if "append_timeout" in ledger_s3:
        # Checked here, kept as text: reports/ledger_s3 reads it when it builds the client.
        _duration(ledger_s3["append_timeout"], where, "ledger.append_timeout")
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
    targets = _table(data.get("targets", {}), where, "targets")
    for name, body in targets.items():
        key = f"targets.{name}"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: target name `{name}` must start with a letter and use only "
                "letters, digits, `_`, `.` and `-`", file=where, key=key,
            )
        spec = _table(body, where, key)
        kind = spec.get("kind")
        if kind not in _TARGET_KEYS:
            raise ConfigError(
                f"{where}: `{key}.kind` must be one of {sorted(_TARGET_KEYS)}, got {kind!r}",
                file=where, key=f"{key}.kind",
            )
        _reject_unknown(spec, _TARGET_KEYS[kind], where, f"{key}.")
        if kind == "pgbackrest":  # its own options table (drills/pgbackrest_options.py)
            stores[name] = pgbackrest_store(
                name, spec, path, where, key,
                lambda value, k, secret: _resolve(value, where, k, environ, secret=secret))
            continue
        values = {k: _resolve(v, where, f"{key}.{k}", environ, secret=k in _SECRET_KEYS)
                  for k, v in spec.items() if k not in _STRUCTURED_KEYS}
        _register_url_secrets(values)
        scratch = _bool(spec.get("scratch", False), where, f"{key}.scratch")
        role = Role.SCRATCH if scratch else Role.SUBJECT
        if kind == "postgres":
            dsn = _required(values, "dsn", where, key)
            redact.register_dsn(dsn)
            _check_dsn(dsn, where, f"{key}.dsn")
            postgres[name] = PostgresTarget(name=name, dsn=dsn, role=role)
        elif kind == "redis":
            url = _required(values, "url", where, key)
            redact.register_dsn(url)
            redis_targets[name] = RedisTarget(name=name, url=url, role=role)
        elif kind == "s3":
            url = _required(values, "url", where, key)
            if not url.startswith("s3://") or not url[5:].split("/")[0]:
                raise ConfigError(f"{where}: `{key}.url` must look like s3://bucket/prefix/, "
                                  f"got {url!r}", file=where, key=f"{key}.url")
            probe = _probe_keys(values, url, where, key)
            stores[name] = StoreSpec(
                name=name, url=url, key_pattern=values.get("key_pattern"),
                endpoint_url=values.get("endpoint_url"),
                region=values.get("region", "us-east-1"),
                access_key_id=values.get("access_key_id"),
                secret_access_key=values.get("secret_access_key"),
                checksum_suffix=values.get("checksum_suffix", ".sha256"),
                probe_role_arn=probe.get("probe_role_arn"), probe_prefix=probe.get("probe_prefix"),
            )
        elif kind == "http":
            url = _http_url(_required(values, "url", where, key), where, f"{key}.url")
            http_targets[name] = HttpTarget(
                name=name, url=url, ca_file=_file(values.get("ca_file"), path, where, f"{key}.ca_file"),
                headers=_headers(spec.get("headers", {}), where, f"{key}.headers", environ),
                follow_redirects=_follow_redirects(values.get("follow_redirects"), where,
                                                   f"{key}.follow_redirects"),
            )
        elif kind == "prometheus":
            url = _http_url(_required(values, "url", where, key), where, f"{key}.url")
            prometheus_targets[name] = PrometheusTarget(
                name=name, url=url, ca_file=_file(values.get("ca_file"), path, where, f"{key}.ca_file"),
            )
        elif kind == "tls":
            tls_targets[name] = _tls_target(name, spec, values, path, where, key)
        elif kind == "basebackup":
            base = path.parent if path else Path.cwd()
            stores[name] = StoreSpec(
                name=name, url=str((base / _required(values, "path", where, key)).resolve()),
                key_pattern=values.get("key_pattern"), kind="basebackup",
                wal=str((base / _required(values, "wal", where, key)).resolve()),
            )
        else:
            directory = _required(values, "path", where, key)
            base = path.parent if path else Path.cwd()
            stores[name] = StoreSpec(
                name=name, url=str((base / directory).resolve()),
                key_pattern=values.get("key_pattern"),
                checksum_suffix=values.get("checksum_suffix", ".sha256"),
            )
        if key_pattern := values.get("key_pattern"):
            _validate_key_pattern(key_pattern, where, f"{key}.key_pattern")
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
    table = _table(value, where, "containers")
    if not table:
        return {}
    # Imported only when the table is there: reading a config must stay cheap.
    from .containers_env import images_for_targets

    by_target: dict[str, str] = {}
    for target, body in table.items():
        key = f"containers.{target}"
        spec = _table(body, where, key)
        _reject_unknown(spec, {"image"}, where, f"{key}.")
        image = _resolve(_required(spec, "image", where, key), where, f"{key}.image", environ, secret=False)
        if not image.strip() or any(c.isspace() for c in image):
            raise ConfigError(f"{where}: `{key}.image` must be an image reference such as postgres:15, "
                              f"got {image!r}", file=where, key=f"{key}.image")
        by_target[target] = image
    return images_for_targets(by_target, where=where)


def _prelude(value: Any, where: str, path: Path | None) -> Path | None:
    """``[migrations] prelude``: a SQL file (relative to the config file) that must exist."""
    if not isinstance(value, dict) or "prelude" not in value:
        return None
    text = _string(value["prelude"], where, "migrations.prelude")
    base = path.parent if path is not None else Path.cwd()
    prelude = (base / text).resolve()
    if not prelude.is_file():
        raise ConfigError(f"{where}: `migrations.prelude` names {text!r}, which is not a file ({prelude})",
                          file=where, key="migrations.prelude",
                          hint="give the SQL file the team's init script runs, relative to drillbook.toml")
    return prelude


def _migrations(value: Any, where: str, path: Path | None) -> tuple[str | None, dict[Path, str]]:
    """``[migrations]``: a default layout and per-folder layouts, each one of the known layouts."""
    table = _table(value, where, "migrations")
    _reject_unknown(table, _MIGRATIONS_KEYS, where, "migrations.")

    def layout(raw: Any, key: str) -> str:
        text = _string(raw, where, key)
        if text not in MIGRATION_LAYOUTS:
            raise ConfigError(f"{where}: `{key}` must be one of {', '.join(MIGRATION_LAYOUTS)}, got {text!r}",
                              file=where, key=key)
        return text

    default = layout(table["layout"], "migrations.layout") if "layout" in table else None
    folders: dict[Path, str] = {}
    base = path.parent if path is not None else Path.cwd()
    for folder, raw in _table(table.get("folders", {}), where, "migrations.folders").items():
        key = f"migrations.folders.{folder}"
        if not folder.strip():
            raise ConfigError(f"{where}: `migrations.folders` has an empty folder name", file=where, key=key)
        folders[(base / folder).resolve()] = layout(raw, key)
    return default, folders


def _migration_command(value: Any, where: str, path: Path | None) -> MigrationCommandConfig | None:
    """``[migrations] command`` & co: split like a shell line (never run by one), folder exists,
    duration valid, variables nameable and not the scratch database's own (``DATABASE_URL``, ``PG*``)."""
    table = _table(value, where, "migrations")
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

    command = _string(table["command"], where, "migrations.command")
    checked("command", split_command, command)
    down = None
    if "down_command" in table:
        down = _string(table["down_command"], where, "migrations.down_command")
        checked("down_command", split_command, down)
    base = path.parent if path is not None else Path.cwd()
    workdir = (base / _string(table.get("workdir", "."), where, "migrations.workdir")).resolve()
    if not workdir.is_dir():
        raise ConfigError(f"{where}: `migrations.workdir`: no such folder {workdir}", file=where,
                          key="migrations.workdir", hint="name the folder the command runs in, relative "
                                                         "to this file")
    timeout = (_duration(table["command_timeout"], where, "migrations.command_timeout")
               if "command_timeout" in table else None)
    names = table.get("command_env", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}: `migrations.command_env` must be a list of variable names, got "
                          f"{names!r}", file=where, key="migrations.command_env")
    env = checked("command_env", check_env_names, names)
    return MigrationCommandConfig(command, workdir, down, timeout, env)


def _http_url(url: str, where: str, key: str) -> str:
    """An http(s) URL with a host; a password in it is registered as a secret, never shown."""
    from urllib.parse import urlsplit

    redact.register_dsn(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: `{key}` is not a valid URL", file=where, key=key) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: `{key}` must be an http:// or https:// URL with a host, "
            f"got {redact.redact(url)!r}", file=where, key=key,
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: `{key}` must not carry a query or fragment: steps name the path",
                          file=where, key=key)
    return url


def _file(value: str | None, config_path: Path | None, where: str, key: str) -> Path | None:
    """A file named relative to the config file; it must exist now, not an hour into the run."""
    if value is None:
        return None
    if not value:
        raise ConfigError(f"{where}: `{key}` is empty", file=where, key=key)
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = (config_path.parent if config_path else Path.cwd()) / candidate
    if not candidate.is_file():
        raise ConfigError(f"{where}: `{key}`: no such file {candidate}", file=where, key=key,
                          hint="paths are relative to the config file")
    return candidate


def _follow_redirects(value: str | None, where: str, key: str) -> FollowRedirects:
    """``never`` (the default: a 3xx is the answer) or ``same-origin``; anything else names the key."""
    if value is None:
        return FollowRedirects.NEVER
    try:
        return FollowRedirects(value)
    except ValueError:
        allowed = ", ".join(f'"{mode.value}"' for mode in FollowRedirects)
        raise ConfigError(
            f"{where}: `{key}` must be one of {allowed}, got {value!r}", file=where, key=key,
            hint='"never" (the default) reports a redirect as the answer; "same-origin" follows it '
            "only to the target's own scheme, host and port: other hosts never receive its headers",
        ) from None


def _headers(value: Any, where: str, key: str, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``{ Name = "value" }``; values may reference ``${ENV}``; every value is registered as a secret."""
    table = _table(value, where, key)
    headers = []
    for name, raw in table.items():
        if not _HEADER_NAME.match(name):
            raise ConfigError(f"{where}: `{key}`: {name!r} is not a valid header name", file=where,
                              key=f"{key}.{name}")
        # Header values (tokens) are secrets when they come from the environment.
        resolved = _resolve(raw, where, f"{key}.{name}", environ, secret=True)
        if "\r" in resolved or "\n" in resolved or "\0" in resolved:
            raise ConfigError(f"{where}: `{key}.{name}` contains a line break", file=where,
                              key=f"{key}.{name}")
        # Literal values too: a token written into the file is as secret as one from ${ENV}.
        redact.register_header(name, resolved)
        headers.append((name, resolved))
    return tuple(headers)


def _is_host(value: str) -> bool:
    """A DNS name, or an IPv4/IPv6 address (brackets allowed): no scheme, port or path."""
    import ipaddress

    if _HOST_NAME.match(value):
        return True
    try:
        ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _tls_target(name: str, spec: Mapping[str, Any], values: Mapping[str, str], config_path: Path | None,
                where: str, key: str) -> TlsTarget:
    host = values.get("host")
    pem = values.get("pem_file")
    if (host is None) == (pem is None):
        raise ConfigError(f"{where}: `{key}` needs exactly one of `host` (a live endpoint) or `pem_file`",
                          file=where, key=key)
    if host is not None and not _is_host(host):
        raise ConfigError(f"{where}: `{key}.host` must be a bare host name or address (no scheme, port "
                          f"or path), got {host!r}", file=where, key=f"{key}.host")
    port = spec.get("port", 443)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}: `{key}.port` must be a number from 1 to 65535, got {port!r}",
                          file=where, key=f"{key}.port")
    if "port" in spec and host is None:
        raise ConfigError(f"{where}: `{key}.port` applies only with `host`", file=where, key=f"{key}.port")
    server_name = values.get("server_name")
    if server_name is not None and not _is_host(server_name):
        raise ConfigError(f"{where}: `{key}.server_name` must be a host name, got {server_name!r}",
                          file=where, key=f"{key}.server_name")
    if host is not None:
        host = host.removeprefix("[").removesuffix("]")  # [::1]: sockets take the bare address
    return TlsTarget(
        name=name, host=host, port=port, server_name=server_name,
        pem_file=_file(pem, config_path, where, f"{key}.pem_file"),
        ca_file=_file(values.get("ca_file"), config_path, where, f"{key}.ca_file"),
    )


def _register_url_secrets(values: Mapping[str, str]) -> None:
    """Register the userinfo password of every URL-valued field, literal or from ``${ENV}``.

    Any field, not a list of known ones: an ``endpoint_url = "http://user:pw@..."`` written
    in the file must be masked like a DSN from the environment, and so must a field added later.
    """
    for value in values.values():
        if "://" in value:
            redact.register_url(value)


def _check_dsn(dsn: str, where: str, key: str) -> None:
    """A DSN libpq cannot parse is named by key; the value itself may hold a password, so not shown."""
    import psycopg

    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = redact.redact(str(exc).strip())
        raise ConfigError(f"{where}: `{key}` is not a valid connection string: {reason}",
                          file=where, key=key) from None


def _validate_key_pattern(pattern: str, where: str, key: str) -> None:
    from checks.backups import compile_key_pattern

    try:
        compile_key_pattern(pattern)
    except ConfigError as exc:
        raise ConfigError(f"{where}: `{key}`: {exc.message}", file=where, key=key) from exc


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


def _probe_keys(values: Mapping[str, str], url: str, where: str, key: str) -> dict[str, str]:
    """``probe_role_arn`` and ``probe_prefix``: both or neither, each checked (checks/immutability.py)."""
    given = {k: values[k] for k in ("probe_role_arn", "probe_prefix") if values.get(k)}
    if not given:
        return {}
    missing = {"probe_role_arn", "probe_prefix"} - set(given)
    if missing:
        name = missing.pop()
        raise ConfigError(f"{where}: `{key}.{name}` is required with `{key}.{sorted(given)[0]}` "
                          "(the probe assumes the role and writes its marker under the prefix)",
                          file=where, key=f"{key}.{name}")
    store_prefix = url[5:].partition("/")[2]
    if not store_prefix and not values.get("key_pattern"):
        # Every key of the bucket is a backup candidate: the newest could be the probe's marker.
        raise ConfigError(f"{where}: `{key}.probe_prefix` needs a store that is not the whole bucket: "
                          f"give `{key}.url` a prefix or set `{key}.key_pattern`",
                          file=where, key=f"{key}.probe_prefix")
    for name, check in (("probe_role_arn", check_role_arn), ("probe_prefix", check_probe_prefix)):
        problem = check(given[name], store_prefix=store_prefix)
        if problem:
            raise ConfigError(f"{where}: `{key}.{name}` {problem}", file=where, key=f"{key}.{name}")
    return given


def _reject_unknown(table: Mapping[str, Any], allowed: set[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key `{prefix}{key}` (allowed here: {', '.join(sorted(allowed))})",
                file=where, key=f"{prefix}{key}",
            )


def _table(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: `{key}` must be a table, got {type(value).__name__}",
                          file=where, key=key)
    return value


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: `{key}` must be a string, got {type(value).__name__}",
                          file=where, key=key)
    return value


def _duration(value: Any, where: str, key: str) -> timedelta:
    """A positive duration as runbooks write it (``"90s"``, ``"30m"``, ``"1h"``)."""
    text = _string(value, where, key)
    try:
        parsed = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: `{key}`: {exc}", file=where, key=key) from None
    if parsed <= timedelta(0):
        raise ConfigError(f"{where}: `{key}` must be longer than 0s, got {text!r}", file=where, key=key)
    return parsed


def _bool(value: Any, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: `{key}` must be true or false, got {value!r}",
                          file=where, key=key)
    return value


def _required(values: Mapping[str, str], name: str, where: str, key: str) -> str:
    value = values.get(name)
    if not value:
        raise ConfigError(f"{where}: `{key}.{name}` is required", file=where, key=f"{key}.{name}")
    return value


def _resolve(value: Any, where: str, key: str, environ: Mapping[str, str], *, secret: bool) -> str:
    """Expand ``${VAR}``; a missing variable is an error naming it and the key."""
    text = _string(value, where, key)

    def substitute(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in environ:
            raise ConfigError(
                f"{where}: `{key}` references ${{{var}}}, which is not set",
                file=where, key=key, hint=f"export {var} before running drillbook",
            )
        resolved = environ[var]
        redact.register(resolved)
        return resolved

    resolved = _ENV_REF.sub(substitute, text)
    if secret and resolved != text:
        redact.register(resolved)
    return resolved
