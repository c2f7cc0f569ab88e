"""The store kinds of ``[targets.<name>]``: where backups live, each kind validated by its own module.

One small interface: a module names the keys its table allows (``KEYS``) and turns a
:class:`Context` into a :class:`~drills.targets.StoreSpec` (``parse``). drills/config.py dispatches
here by ``kind``; drills/stores.py and drills/physical/ then read the stores a spec names.

- ``s3`` and ``directory`` (:mod:`.dump`): logical dumps, one object per backup;
- ``basebackup`` (:mod:`.basebackup`): pg_basebackup output and its WAL archive;
- ``barman-cloud`` (:mod:`.barman_cloud`) and ``pgbackrest`` (:mod:`.pgbackrest`): the tools' repositories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from checks import redact

from ..config_values import SECRET_KEYS, STRUCTURED_KEYS, register_url_secrets, resolve, validate_key_pattern
from ..pgbackrest_options import redacted_options
from ..targets import StoreSpec


@dataclass(frozen=True)
class Context:
    """One ``[targets.<name>]`` table of a store kind, with what its validation needs."""

    name: str
    spec: Mapping[str, Any]  # the table as written
    values: Mapping[str, str]  # its string values, ${ENV} resolved (empty for a kind that resolves its own)
    config_path: Path | None
    where: str  # the file, for messages
    key: str  # ``targets.<name>``
    environ: Mapping[str, str]

    @property
    def base(self) -> Path:
        """Relative paths are relative to the config file."""
        return self.config_path.parent if self.config_path else Path.cwd()

    def resolve(self, value: Any, key: str, secret: bool) -> str:
        """Expand ``${ENV}`` in one value of this table (``key`` is its full dotted key)."""
        return resolve(value, self.where, key, self.environ, secret=secret)


class Kind(NamedTuple):
    """A store kind: the keys its table allows and its validation."""

    keys: frozenset[str]
    parse: Callable[[Context], StoreSpec]
    resolves_own_values: bool = False  # its table holds more than strings (pgbackrest's options)


def _kinds() -> dict[str, Kind]:
    from . import barman_cloud, basebackup, dump, pgbackrest

    return {
        "s3": Kind(dump.S3_KEYS, dump.parse_s3),
        "directory": Kind(dump.DIRECTORY_KEYS, dump.parse_directory),
        "basebackup": Kind(basebackup.KEYS, basebackup.parse),
        "barman-cloud": Kind(barman_cloud.KEYS, barman_cloud.parse),
        "pgbackrest": Kind(pgbackrest.KEYS, pgbackrest.parse, resolves_own_values=True),
    }


KINDS: dict[str, Kind] = _kinds()


def parse_store(name: str, spec: Mapping[str, Any], *, config_path: Path | None, where: str, key: str,
                environ: Mapping[str, str]) -> StoreSpec:
    """Validate one store table whose ``kind`` is in :data:`KINDS` (its keys already checked)."""
    kind = KINDS[spec["kind"]]
    values: dict[str, str] = {}
    if not kind.resolves_own_values:
        values = {k: resolve(v, where, f"{key}.{k}", environ, secret=k in SECRET_KEYS)
                  for k, v in spec.items() if k not in STRUCTURED_KEYS}
        register_url_secrets(values)
    store = kind.parse(Context(name, spec, values, config_path, where, key, environ))
    if store.key_pattern:
        validate_key_pattern(store.key_pattern, where, f"{key}.key_pattern")
    return store


def redacted(st: StoreSpec) -> dict[str, Any]:
    """A store as the run's evidence shows it: every secret masked."""
    return {
        "kind": st.kind if st.kind != "dump" else "s3" if st.is_s3 else "directory",
        **({"wal": redact.redact(st.wal)} if st.wal else {}),
        **({"server": st.server} if st.server else {}),
        **({"stanza": st.stanza, "repo": st.repo, "options": redacted_options(st)}
           if st.kind == "pgbackrest" else {}),
        "url": redact.redact(st.url),
        "key_pattern": st.key_pattern,
        "endpoint_url": redact.redact(st.endpoint_url or ""),
    }
