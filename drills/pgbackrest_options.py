"""``kind = "pgbackrest"`` stores in drillbook.toml: a stanza, a repo number and pgbackrest options.

The ``[targets.<name>.options]`` table holds pgbackrest.conf options (``repo1-path``,
``repo1-s3-bucket``, …). drillbook passes them as ``PGBACKREST_*`` environment variables to every
pgbackrest child it runs, always with ``--config=/dev/null`` (study A2: no file in /etc is read).
A secret option (``*-key``, ``*-key-secret``, ``*-cipher-pass``, ``*-token``) must be written as
``${ENV}`` (never its value in the file) and is registered with the redactor. The options drillbook
itself decides (where to restore, which set, logging, locks, the config file) are refused: they
are listed in :data:`FORCED`. drills/store_kinds/pgbackrest.py calls
:func:`pgbackrest_store`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError

from .targets import StoreSpec

KEYS = {"kind", "stanza", "repo", "options"}
_OPTION = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_STANZA = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INDEXED = re.compile(r"(repo|pg)([0-9]+)-(.+)")
_ENV_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
SECRET_SUFFIXES = ("-key", "-key-secret", "-cipher-pass", "-token")
# Options drillbook sets itself on every command (or that choose what to restore): not configurable.
FORCED = frozenset({
    "config", "config-path", "config-include-path", "stanza", "repo", "set", "type", "target",
    "target-action", "target-exclusive", "target-timeline", "recovery-option", "delta", "force",
    "link-all", "link-map", "tablespace-map", "tablespace-map-all", "db-include", "db-exclude",
    "archive-mode", "lock-path", "log-path", "spool-path", "log-level-console", "log-level-stderr",
    "log-level-file", "log-subprocess", "log-timestamp", "archive-async", "output", "cmd", "exec-id",
})
_MAX_REPO = 256


def is_secret(option: str) -> bool:
    """Whether an option holds a credential (pgbackrest refuses these on its command line, A2)."""
    return option.endswith(SECRET_SUFFIXES)


def env_name(option: str) -> str:
    """``repo1-s3-key`` → ``PGBACKREST_REPO1_S3_KEY`` (pgbackrest's environment form)."""
    return "PGBACKREST_" + option.upper().replace("-", "_")


def pgbackrest_store(name: str, spec: Mapping[str, Any], config_path: Path | None, where: str, key: str,
                     resolve: Callable[[Any, str, bool], str]) -> StoreSpec:
    """Validate one ``kind = "pgbackrest"`` table; ``resolve(value, key, secret)`` expands ``${ENV}``."""
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key `{key}.{unknown[0]}` (allowed here: "
                          f"{', '.join(sorted(KEYS))})", file=where, key=f"{key}.{unknown[0]}")
    if "stanza" not in spec:
        raise ConfigError(f"{where}: `{key}.stanza` is required", file=where, key=f"{key}.stanza",
                          hint="the stanza name the backups were taken with (`pgbackrest info` lists it)")
    stanza = resolve(spec["stanza"], f"{key}.stanza", False)
    if not _STANZA.fullmatch(stanza):
        raise ConfigError(f"{where}: `{key}.stanza` must be letters, digits, `_`, `.` or `-` (at most 64), "
                          f"got {stanza!r}", file=where, key=f"{key}.stanza")
    repo = spec.get("repo", 1)
    if isinstance(repo, bool) or not isinstance(repo, int) or not 1 <= repo <= _MAX_REPO:
        raise ConfigError(f"{where}: `{key}.repo` must be a repository number 1–{_MAX_REPO}, got {repo!r}",
                          file=where, key=f"{key}.repo", hint="repo = 1 reads the repo1-* options")
    raw = spec.get("options", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: `{key}.options` must be a table, got {type(raw).__name__}",
                          file=where, key=f"{key}.options")
    base = config_path.parent if config_path else Path.cwd()
    options: dict[str, str] = {}
    for option, value in raw.items():
        okey = f"{key}.options.{option}"
        _check_option(option, where, okey)
        options[option] = _value(option, value, where, okey, resolve)
    repos = {int(m.group(2)) for o in options if (m := _INDEXED.fullmatch(o))}
    if repos and repo not in repos:
        raise ConfigError(f"{where}: `{key}.repo` is {repo} but the options configure only "
                          f"repo{', repo'.join(str(r) for r in sorted(repos))}", file=where,
                          key=f"{key}.repo",
                          hint=f"add repo{repo}-* options or pick one of those repositories")
    for option, value in list(options.items()):
        if _is_local_path(option, options) and not Path(value).is_absolute():
            options[option] = str((base / value).resolve())  # relative to this file, like other paths
    return StoreSpec(name=name, url=f"pgbackrest:{stanza}@repo{repo}", kind="pgbackrest", stanza=stanza,
                     repo=repo, options=tuple(sorted(options.items())))


def _check_option(option: Any, where: str, okey: str) -> None:
    if not isinstance(option, str) or not _OPTION.fullmatch(option) or len(option) > 64:
        raise ConfigError(f"{where}: `{okey}` is not a pgbackrest option name (lower-case words "
                          "joined by `-`)", file=where, key=okey)
    indexed = _INDEXED.fullmatch(option)
    if indexed and indexed.group(1) == "pg":
        raise ConfigError(f"{where}: `{okey}`: drillbook restores into its own scratch directory and sets "
                          "every pg* option itself", file=where, key=okey, hint="remove this option")
    if indexed and not 1 <= int(indexed.group(2)) <= _MAX_REPO:
        raise ConfigError(f"{where}: `{okey}`: repository numbers run 1–{_MAX_REPO}", file=where, key=okey)
    if option in FORCED:
        raise ConfigError(f"{where}: `{okey}` is set by drillbook itself (it always runs pgbackrest with "
                          "--config=/dev/null, its own lock and log paths in scratch, and picks the set "
                          "and restore type)", file=where, key=okey, hint="remove this option")


def _value(option: str, value: Any, where: str, okey: str, resolve: Callable[[Any, str, bool], str]) -> str:
    secret = is_secret(option)
    if secret and not (isinstance(value, str) and _ENV_ONLY.fullmatch(value)):
        raise ConfigError(f"{where}: `{okey}` is a secret: write it as \"${{ENV_VAR}}\", never its value",
                          file=where, key=okey, hint=f'{option} = "${{PGBR_SECRET}}" and export PGBR_SECRET')
    if isinstance(value, bool):
        text = "y" if value else "n"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = resolve(value, okey, secret)
    else:
        raise ConfigError(f"{where}: `{okey}` must be a string, number or true/false, got "
                          f"{type(value).__name__}", file=where, key=okey)
    if any(ord(c) < 0x20 or c == "\x7f" for c in text) or not text:
        raise ConfigError(f"{where}: `{okey}` must be a non-empty value on one line", file=where, key=okey)
    if secret:
        redact.register(text)
    return text


def _is_local_path(option: str, options: Mapping[str, str]) -> bool:
    """A file or directory on this machine (resolved relative to the config), not an object-store prefix."""
    indexed = _INDEXED.fullmatch(option)
    if option.endswith(("-file", "-ca-path")):
        return True
    if indexed and indexed.group(3) == "path":
        return options.get(f"repo{indexed.group(2)}-type", "posix") in ("posix", "cifs")
    return False


def environment(spec: StoreSpec) -> dict[str, str]:
    """The ``PGBACKREST_*`` variables for a store's options (values may be secrets: never log them)."""
    return {env_name(option): value for option, value in spec.options}


def redacted_options(spec: StoreSpec) -> dict[str, str]:
    """The options for evidence: secrets masked."""
    return {o: redact.MASK if is_secret(o) else redact.redact(v) for o, v in spec.options}
