"""The fleet inventory: many databases drilled by one set of features.

A *member* is one database with its backups. It binds the target names the features already use
(``production``, ``nightly``, …) to that member's own DSNs and stores, so a feature saying
``Given the backups in "nightly"`` drills each member's backups in turn, unchanged. Members are
listed, or generated from a pattern (a list of names, or one member per folder of a directory or
per prefix of an S3 bucket)::

    [fleet]
    host_cap = 2                         # at most 2 drills at once reading one labels.host

    [[fleet.members]]
    name = "orders-eu"
    labels = { tier = "1", host = "pg-eu-3" }
    [fleet.members.targets.production]   # the keys of [targets.X], any kind
    kind = "postgres"
    dsn = "${ORDERS_EU_DSN}"

    [[fleet.pattern]]
    discover = "s3://backups/"           # or names = ["db-001", "db-002"], or a directory path
    endpoint_url = "${S3_ENDPOINT}"      # S3 discovery only: as for an s3 target
    labels = { tier = "2", host = "pg-shared-1" }
    [fleet.pattern.targets.nightly]
    kind = "s3"
    url = "s3://backups/{member}/"       # {member} is the member's name

The ``[fleet]`` table lives in drillbook.toml or in a ``fleet.toml`` beside it (not both).
Values keep their ``${VAR}`` references: they are resolved, and masked, when a member's config is
loaded (:func:`drills.config.load_config` with ``member=``), exactly as ``[targets.X]`` are.

Errors: :class:`ConfigError` naming the file and key, with a hint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checks.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MEMBER_NAME = _NAME  # what a member name may be, wherever one is read back (plans, commits)
_LABEL_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
_FLEET_KEYS = {"host_cap", "members", "pattern"}
_MEMBER_KEYS = {"name", "labels", "targets"}
_PATTERN_KEYS = {"names", "discover", "labels", "targets", "endpoint_url", "region", "access_key_id",
                 "secret_access_key"}
_S3_OPTION_KEYS = ("endpoint_url", "region", "access_key_id", "secret_access_key")
DEFAULT_HOST_CAP = 2
FLEET_FILE = "fleet.toml"


@dataclass(frozen=True)
class Member:
    """One database of the fleet: its name, labels, and the targets it binds (raw, ``${VAR}`` kept)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def host(self) -> str | None:
        """The server it lives on (``labels.host``): the per-host cap counts drills by it."""
        return self.labels.get("host")


@dataclass(frozen=True)
class Fleet:
    """Every member, the per-host cap, where they were read from, and a digest of their definition."""

    members: list[Member]
    host_cap: int
    source: Path
    digest: str

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.members[:8]) + (" …" if len(self.members) > 8 else "")
        raise ConfigError(f"{self.source}: no fleet member named {name!r} (members: {known or 'none'})",
                          file=str(self.source), key="fleet",
                          hint="list members with `drillbook fleet members --config …`")


Lister = Callable[[Mapping[str, Any], str], list[str]]


def fleet_table(config_path: Path, data: Mapping[str, Any]) -> tuple[dict[str, Any], Path] | None:
    """The raw ``[fleet]`` table for a config (its own, or ``fleet.toml`` beside it) and its file."""
    beside = config_path.parent / FLEET_FILE
    own = data.get("fleet")
    if beside.is_file() and beside.resolve() != config_path.resolve():
        if own is not None:
            raise ConfigError(
                f"{config_path}: a [fleet] table and {beside} both define the fleet",
                file=str(config_path), key="fleet", hint=f"keep one of them (move [fleet] into {beside})",
            )
        try:
            other = tomllib.loads(beside.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{beside}: cannot read the fleet inventory: {exc}", file=str(beside)) from exc
        unknown = sorted(set(other) - {"fleet"})
        if unknown:
            raise ConfigError(f"{beside}: unknown table `{unknown[0]}` (a fleet file holds [fleet] only)",
                              file=str(beside), key=unknown[0])
        if "fleet" not in other:
            raise ConfigError(f"{beside}: no [fleet] table", file=str(beside), key="fleet")
        return _table(other["fleet"], beside, "fleet"), beside
    if own is None:
        return None
    return _table(own, config_path, "fleet"), config_path


def parse_fleet(table: Mapping[str, Any], source: Path, *, lister: Lister | None = None) -> Fleet:
    """Validate a ``[fleet]`` table and expand its patterns into members."""
    _reject_unknown(table, _FLEET_KEYS, source, "fleet.")
    host_cap = table.get("host_cap", DEFAULT_HOST_CAP)
    if not isinstance(host_cap, int) or isinstance(host_cap, bool) or host_cap < 1:
        raise ConfigError(f"{source}: `fleet.host_cap` must be a whole number ≥ 1, got {host_cap!r}",
                          file=str(source), key="fleet.host_cap")
    members: list[Member] = []
    listed = table.get("members", [])
    if not isinstance(listed, list):
        raise ConfigError(f"{source}: `fleet.members` must be an array of tables ([[fleet.members]])",
                          file=str(source), key="fleet.members")
    for index, raw in enumerate(listed):
        where = f"fleet.members[{index}]"
        body = _table(raw, source, where)
        _reject_unknown(body, _MEMBER_KEYS, source, f"{where}.")
        name = _member_name(body.get("name"), source, f"{where}.name")
        members.append(Member(name, _labels(body.get("labels", {}), source, f"{where}.labels", name),
                              _targets(body.get("targets", {}), source, f"{where}.targets", name)))
    patterns = table.get("pattern", [])
    if not isinstance(patterns, list):
        raise ConfigError(f"{source}: `fleet.pattern` must be an array of tables ([[fleet.pattern]])",
                          file=str(source), key="fleet.pattern")
    for index, raw in enumerate(patterns):
        members.extend(_expand(_table(raw, source, f"fleet.pattern[{index}]"), source,
                               f"fleet.pattern[{index}]", lister or list_prefixes))
    seen: dict[str, int] = {}
    for member in members:
        seen[member.name] = seen.get(member.name, 0) + 1
    doubled = sorted(name for name, count in seen.items() if count > 1)
    if doubled:
        raise ConfigError(f"{source}: fleet member {doubled[0]!r} is defined more than once",
                          file=str(source), key="fleet", hint="give every member a unique name")
    if not members:
        raise ConfigError(f"{source}: the fleet has no members", file=str(source), key="fleet",
                          hint="add [[fleet.members]] tables or a [[fleet.pattern]]")
    members.sort(key=lambda m: m.name)
    digest = hashlib.sha256(json.dumps(
        {"host_cap": host_cap, "members": [[m.name, m.labels, m.targets] for m in members]},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    return Fleet(members, host_cap, source, digest)


def _expand(body: dict[str, Any], source: Path, where: str, lister: Lister) -> list[Member]:
    _reject_unknown(body, _PATTERN_KEYS, source, f"{where}.")
    names = body.get("names")
    discover = body.get("discover")
    if (names is None) == (discover is None):
        raise ConfigError(f"{source}: `{where}` needs exactly one of `names` or `discover`",
                          file=str(source), key=where,
                          hint='names = ["db-001", "db-002"], or discover = "s3://bucket/prefix/" '
                               "(one member per prefix) or a directory (one per folder)")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{source}: `{where}.names` must be a list of strings",
                              file=str(source), key=f"{where}.names")
        found = list(names)
    else:
        if not isinstance(discover, str) or not discover:
            raise ConfigError(f"{source}: `{where}.discover` must be an s3:// URL or a directory",
                              file=str(source), key=f"{where}.discover")
        found = lister(body, str(source.parent))
    members = []
    for name in found:
        checked = _member_name(name, source, f"{where} member {name!r}")
        labels = _labels(_substitute(body.get("labels", {}), checked), source, f"{where}.labels", checked)
        targets = _targets(_substitute(body.get("targets", {}), checked), source, f"{where}.targets", checked)
        members.append(Member(checked, labels, targets))
    return members


def list_prefixes(body: Mapping[str, Any], base: str) -> list[str]:
    """One name per folder of a directory, or per prefix (``…/<name>/``) of an S3 URL."""
    options = tuple((k, str(body[k])) for k in _S3_OPTION_KEYS if k in body)
    return list(_listed(str(body["discover"]), options, base))


# A run loads its config many times (each step that needs it): list each location once per process.
@functools.lru_cache(maxsize=32)
def _listed(discover: str, options: tuple[tuple[str, str], ...], base: str) -> tuple[str, ...]:
    import os

    if discover.startswith("s3://"):
        return tuple(_s3_prefixes(discover, {k: _env(v) for k, v in options}))
    root = Path(_env(discover))
    if not root.is_absolute():
        root = Path(base) / root
    try:
        return tuple(sorted(entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)))
    except OSError as exc:
        raise ConfigError(f"cannot list the fleet's discover folder {root}: {exc.strerror}",
                          key="fleet.pattern.discover", hint="point `discover` at a readable folder") from exc


def _s3_prefixes(url: str, options: Mapping[str, str]) -> list[str]:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = url[len("s3://"):].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = boto3.client(
        "s3", endpoint_url=options.get("endpoint_url") or None, region_name=options.get("region") or None,
        aws_access_key_id=options.get("access_key_id") or None,
        aws_secret_access_key=options.get("secret_access_key") or None,
        config=BotoConfig(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3}),
    )
    names: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                                      Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(prefix):].rstrip("/"))
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"cannot list the fleet's discover location s3://{bucket}/{prefix}: {exc}",
                          key="fleet.pattern.discover",
                          hint="check the pattern's endpoint_url and credentials") from exc
    return sorted(names)


def _env(text: str) -> str:
    """``${VAR}`` in a discovery option, resolved (and masked) as in targets."""
    import os

    from checks import redact

    def substitute(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(f"fleet discovery references ${{{var}}}, which is not set",
                              key="fleet.pattern", hint=f"export {var} before running drillbook")
        redact.register(os.environ[var])
        return os.environ[var]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", substitute, text)


def _substitute(value: Any, name: str) -> Any:
    """``{member}`` replaced by the member's name in every string of a pattern's tables."""
    if isinstance(value, str):
        return value.replace("{member}", name)
    if isinstance(value, dict):
        return {k: _substitute(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, name) for v in value]
    return value


def _member_name(value: Any, source: Path, key: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(
            f"{source}: `{key}` must be a member name (letters, digits, `_`, `.`, `-`; at most 63), "
            f"got {value!r}", file=str(source), key=key)
    return value


def _labels(value: Any, source: Path, key: str, name: str) -> dict[str, str]:
    table = _table(value, source, key)
    labels: dict[str, str] = {}
    for label, text in table.items():
        if not _LABEL_KEY.fullmatch(label) or not isinstance(text, str | int) or isinstance(text, bool):
            raise ConfigError(f"{source}: member {name!r}: label `{label}` must be a name with a string "
                              f"value, got {text!r}", file=str(source), key=f"{key}.{label}")
        labels[label] = str(text)
    return labels


def _targets(value: Any, source: Path, key: str, name: str) -> dict[str, dict[str, Any]]:
    table = _table(value, source, key)
    if not table:
        raise ConfigError(f"{source}: member {name!r} binds no target", file=str(source), key=key,
                          hint="bind the target names its features use, e.g. "
                               "[fleet.members.targets.production]")
    return {target: _table(body, source, f"{key}.{target}") for target, body in table.items()}


def overlay(data: dict[str, Any], member: Member) -> dict[str, Any]:
    """The config's raw tables with the member's targets in place of (or beside) the shared ones."""
    merged = {k: v for k, v in data.items() if k != "fleet"}
    targets = dict(merged.get("targets", {}))
    targets.update(member.targets)
    merged["targets"] = targets
    return merged


def _table(value: Any, source: Path, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: `{key}` must be a table, got {type(value).__name__}",
                          file=str(source), key=key)
    return value


def _reject_unknown(table: Mapping[str, Any], allowed: set[str], source: Path, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{source}: unknown key `{prefix}{key}` (allowed here: {', '.join(sorted(allowed))})",
                file=str(source), key=f"{prefix}{key}")


def select_members(fleet: Fleet, expression: str | None) -> list[Member]:
    """The members matching ``--members``: ``tier=1,host=pg-eu-3`` (all must hold), names, or all.

    A term without ``=`` is a member name (``orders-eu``), a ``*`` glob allowed; terms separated by
    ``,`` must all hold; an expression matching nothing is an error, never an empty run.
    """
    import fnmatch

    if expression is None or not expression.strip():
        return list(fleet.members)
    terms = [t.strip() for t in expression.split(",") if t.strip()]
    chosen = []
    for member in fleet.members:
        ok = True
        for term in terms:
            key, sep, value = term.partition("=")
            if sep:
                ok = ok and fnmatch.fnmatchcase(member.labels.get(key.strip(), "\0"), value.strip())
            else:
                ok = ok and fnmatch.fnmatchcase(member.name, term)
        if ok:
            chosen.append(member)
    if not chosen:
        raise ConfigError(f"--members {expression!r} matches no member of the fleet ({fleet.source})",
                          key="--members",
                          hint="use label=value terms joined by `,` (all must hold) or member names")
    return chosen
