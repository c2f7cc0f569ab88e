"""``drillbook.toml``: read with tomllib, validated before anything runs.

An unknown key or a bad value stops the run at once, naming the key and the
file. Secrets never live in the file: any string value may reference
``${ENV_VAR}``; every resolved value of a secret-bearing key (and every
password inside a DSN) is registered with :mod:`checks.redact`.

::

    [run]
    out = "out"                 # where runs are written
    strict = false              # warnings fail the run
    waivers = "waivers.toml"    # optional: the waiver file (relative to this file)

    [ledger]
    url = "out/ledger.jsonl"    # optional: the cadence ledger (default <out>/ledger.jsonl), or
                                # "s3://bucket/prefix/" with endpoint_url, region, access_key_id,
                                # secret_access_key as for an s3 target

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

    [targets.cache]
    kind = "redis"
    url = "${REDIS_URL}"
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError

from .targets import PostgresTarget, RedisTarget, Role, StoreSpec

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")

_RUN_KEYS = {"out", "strict", "waivers"}
_LEDGER_KEYS = {"url", "endpoint_url", "region", "access_key_id", "secret_access_key"}
_TARGET_KEYS: dict[str, set[str]] = {
    "postgres": {"kind", "dsn", "scratch"},
    "redis": {"kind", "url", "scratch"},
    "s3": {
        "kind", "url", "key_pattern", "endpoint_url", "region",
        "access_key_id", "secret_access_key", "checksum_suffix",
    },
    "directory": {"kind", "path", "key_pattern", "checksum_suffix"},
}
_SECRET_KEYS = {"dsn", "url", "secret_access_key", "access_key_id", "endpoint_url"}
_TOP_KEYS = {"run", "targets", "ledger"}


@dataclass(frozen=True)
class Config:
    """A validated configuration: run options and targets by logical name."""

    path: Path | None
    out: Path = Path("out")
    strict: bool = False
    postgres: Mapping[str, PostgresTarget] = field(default_factory=dict)
    redis: Mapping[str, RedisTarget] = field(default_factory=dict)
    stores: Mapping[str, StoreSpec] = field(default_factory=dict)
    waivers: Path | None = None  # [run] waivers: the waiver file, relative to the config file
    ledger_url: str | None = None  # [ledger] url: the cadence ledger (a path; default <out>/ledger.jsonl)
    ledger_s3: Mapping[str, str] = field(default_factory=dict)  # endpoint_url, region, keys for s3://

    def redacted(self) -> dict[str, Any]:
        """The effective config with every secret masked (for evidence)."""
        data: dict[str, Any] = {
            "out": str(self.out),
            "strict": self.strict,
            "waivers": str(self.waivers) if self.waivers else None,
            "ledger_url": redact.redact(self.ledger_url) if self.ledger_url else None,
            "targets": {},
        }
        for name, pg in self.postgres.items():
            data["targets"][name] = {"kind": "postgres", "dsn": redact.redact(pg.dsn),
                                     "scratch": pg.role is Role.SCRATCH}
        for name, rd in self.redis.items():
            data["targets"][name] = {"kind": "redis", "url": redact.redact(rd.url)}
        for name, st in self.stores.items():
            data["targets"][name] = {
                "kind": "s3" if st.is_s3 else "directory",
                "url": redact.redact(st.url),
                "key_pattern": st.key_pattern,
                "endpoint_url": redact.redact(st.endpoint_url or ""),
            }
        return data


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the key and file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", file=str(path)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", file=str(path)) from exc
    return parse_config(text, path=path, environ=os.environ if environ is None else environ)


def parse_config(text: str, *, path: Path | None, environ: Mapping[str, str]) -> Config:
    """Validate TOML text. ``environ`` resolves ``${VAR}`` references."""
    where = str(path) if path else "<config>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}", file=where) from exc

    _reject_unknown(data, _TOP_KEYS, where, "")
    run = _table(data.get("run", {}), where, "run")
    _reject_unknown(run, _RUN_KEYS, where, "run.")
    out = Path(_string(run.get("out", "out"), where, "run.out"))
    strict = _bool(run.get("strict", False), where, "run.strict")
    waivers = None
    if "waivers" in run:
        waivers_value = Path(_string(run["waivers"], where, "run.waivers"))
        if not waivers_value.is_absolute() and path is not None:
            waivers_value = path.parent / waivers_value
        waivers = waivers_value
    ledger = _table(data.get("ledger", {}), where, "ledger")
    _reject_unknown(ledger, _LEDGER_KEYS, where, "ledger.")
    ledger_url = None
    if "url" in ledger:
        ledger_url = _resolve(ledger["url"], where, "ledger.url", environ, secret=False)
    ledger_s3 = {k: _resolve(v, where, f"ledger.{k}", environ, secret=k in _SECRET_KEYS)
                 for k, v in ledger.items() if k != "url"}
    if ledger_s3 and not (ledger_url or "").startswith("s3://"):
        raise ConfigError(f"{where}: `ledger.{sorted(ledger_s3)[0]}` applies only to an s3:// `ledger.url`",
                          file=where, key=f"ledger.{sorted(ledger_s3)[0]}")

    postgres: dict[str, PostgresTarget] = {}
    redis_targets: dict[str, RedisTarget] = {}
    stores: dict[str, StoreSpec] = {}
    targets = _table(data.get("targets", {}), where, "targets")
    for name, body in targets.items():
        key = f"targets.{name}"
        if not _NAME.match(name):
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
        values = {k: _resolve(v, where, f"{key}.{k}", environ, secret=k in _SECRET_KEYS)
                  for k, v in spec.items() if k not in {"kind", "scratch"}}
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
            stores[name] = StoreSpec(
                name=name, url=url, key_pattern=values.get("key_pattern"),
                endpoint_url=values.get("endpoint_url"),
                region=values.get("region", "us-east-1"),
                access_key_id=values.get("access_key_id"),
                secret_access_key=values.get("secret_access_key"),
                checksum_suffix=values.get("checksum_suffix", ".sha256"),
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
                  redis=redis_targets, stores=stores, waivers=waivers, ledger_url=ledger_url,
                  ledger_s3=ledger_s3)


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
