"""``kind = "basebackup"``: pg_basebackup output and its WAL archive (drills/physical/basebackup.py)."""

from __future__ import annotations

from typing import Any

from checks.errors import ConfigError

from ..config_values import as_string, duration, required
from ..targets import StoreSpec
from . import Context

KEYS = frozenset({"kind", "path", "key_pattern", "wal", "rpo", "pitr_column"})


def parse(ctx: Context) -> StoreSpec:
    """The backups folder and the WAL archive, both relative to the config file."""
    values, where, key = ctx.values, ctx.where, ctx.key
    return StoreSpec(
        name=ctx.name, url=str((ctx.base / required(values, "path", where, key)).resolve()),
        key_pattern=values.get("key_pattern"), kind="basebackup",
        wal=str((ctx.base / required(values, "wal", where, key)).resolve()),
        **pitr_keys(values, where, key),
    )


def pitr_keys(values: Any, where: str, key: str) -> dict[str, Any]:
    """A physical store's point-in-time keys: ``rpo`` (a duration), ``pitr_column`` (schema.table.column)."""
    found: dict[str, Any] = {}
    if "rpo" in values:
        found["rpo"] = duration(values["rpo"], where, f"{key}.rpo")
    if "pitr_column" in values:
        text = as_string(values["pitr_column"], where, f"{key}.pitr_column")
        parts = tuple(text.split("."))
        if len(parts) != 3 or not all(p.strip() == p and p for p in parts):
            raise ConfigError(f"{where}: `{key}.pitr_column` must be schema.table.column (each name as "
                              f"stored, drillbook quotes it), got {text!r}", file=where,
                              key=f"{key}.pitr_column",
                              hint='e.g. pitr_column = "public.orders.created_at"')
        found["pitr_column"] = parts
    return found
