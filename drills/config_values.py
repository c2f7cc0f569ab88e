"""The primitives drills/config.py and drills/store_kinds/ validate ``drillbook.toml`` values with.

Each raises :class:`~checks.errors.ConfigError` naming the file (``where``) and the key; each
``${ENV}`` value it resolves is registered with :mod:`checks.redact`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from checks import redact
from checks.durations import parse_duration
from checks.errors import ConfigError

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Values that are not strings, validated by kind: excluded from the generic ${ENV} resolution.
STRUCTURED_KEYS = {"kind", "scratch", "headers", "port"}
SECRET_KEYS = {"dsn", "url", "secret_access_key", "access_key_id", "endpoint_url"}


def reject_unknown(table: Mapping[str, Any], allowed: set[str], where: str, prefix: str) -> None:
    """A key outside ``allowed`` stops the run, naming it and the keys allowed there."""
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key `{prefix}{key}` (allowed here: {', '.join(sorted(allowed))})",
                file=where, key=f"{prefix}{key}",
            )


def as_table(value: Any, where: str, key: str) -> dict[str, Any]:
    """A TOML table, or an error naming the key."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: `{key}` must be a table, got {type(value).__name__}",
                          file=where, key=key)
    return value


def as_string(value: Any, where: str, key: str) -> str:
    """A TOML string, or an error naming the key."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: `{key}` must be a string, got {type(value).__name__}",
                          file=where, key=key)
    return value


def as_bool(value: Any, where: str, key: str) -> bool:
    """A TOML boolean, or an error naming the key."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: `{key}` must be true or false, got {value!r}",
                          file=where, key=key)
    return value


def duration(value: Any, where: str, key: str) -> timedelta:
    """A positive duration as runbooks write it (``"90s"``, ``"30m"``, ``"1h"``)."""
    text = as_string(value, where, key)
    try:
        parsed = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: `{key}`: {exc}", file=where, key=key) from None
    if parsed <= timedelta(0):
        raise ConfigError(f"{where}: `{key}` must be longer than 0s, got {text!r}", file=where, key=key)
    return parsed


def required(values: Mapping[str, str], name: str, where: str, key: str) -> str:
    """``values[name]``, non-empty, or an error naming ``key.name``."""
    value = values.get(name)
    if not value:
        raise ConfigError(f"{where}: `{key}.{name}` is required", file=where, key=f"{key}.{name}")
    return value


def resolve(value: Any, where: str, key: str, environ: Mapping[str, str], *, secret: bool) -> str:
    """Expand ``${VAR}``; a missing variable is an error naming it and the key."""
    text = as_string(value, where, key)

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

    resolved = ENV_REF.sub(substitute, text)
    if secret and resolved != text:
        redact.register(resolved)
    return resolved


def register_url_secrets(values: Mapping[str, str]) -> None:
    """Register the userinfo password of every URL-valued field, literal or from ``${ENV}``.

    Any field, not a list of known ones: an ``endpoint_url = "http://user:pw@..."`` written
    in the file must be masked like a DSN from the environment, and so must a field added later.
    """
    for value in values.values():
        if "://" in value:
            redact.register_url(value)


def validate_key_pattern(pattern: str, where: str, key: str) -> None:
    """A store's ``key_pattern`` must compile (checks/backups.py)."""
    from checks.backups import compile_key_pattern

    try:
        compile_key_pattern(pattern)
    except ConfigError as exc:
        raise ConfigError(f"{where}: `{key}`: {exc.message}", file=where, key=key) from exc
