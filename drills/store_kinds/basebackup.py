"""``kind = "basebackup"``: pg_basebackup output and its WAL archive (drills/physical/basebackup.py).

The archive is a directory, or an S3 prefix (``wal = "s3://bucket/prefix/"``) read with
``endpoint_url``, ``region`` and the keys as a barman-cloud store takes them: the keys only as
``${ENV}`` references.
"""

from __future__ import annotations

from typing import Any

from checks.errors import ConfigError

from ..config_values import as_string, duration, required
from ..targets import StoreSpec
from . import Context
from .barman_cloud import env_only_keys

_S3_KEYS = frozenset({"endpoint_url", "region", "access_key_id", "secret_access_key"})
KEYS = frozenset({"kind", "path", "key_pattern", "wal", "rpo", "pitr_column"}) | _S3_KEYS


def parse(ctx: Context) -> StoreSpec:
    """The backups folder and the WAL archive (a folder, both relative to the config file, or s3://)."""
    values, where, key = ctx.values, ctx.where, ctx.key
    wal = required(values, "wal", where, key)
    s3: dict[str, Any] = {}
    if wal.startswith("s3://"):
        bucket, _, prefix = wal[5:].partition("/")
        if not bucket or "?" in wal or "#" in wal:
            raise ConfigError(f"{where}: `{key}.wal` must look like s3://bucket/prefix/ or be a folder, "
                              f"got {wal!r}", file=where, key=f"{key}.wal")
        if prefix and not prefix.endswith("/"):  # the archive's own folder, never a name's beginning
            wal += "/"
        env_only_keys(ctx)
        s3 = {"endpoint_url": values.get("endpoint_url"), "region": values.get("region", "us-east-1"),
              "access_key_id": values.get("access_key_id"),
              "secret_access_key": values.get("secret_access_key")}
    else:
        given = sorted(_S3_KEYS & set(ctx.spec))
        if given:
            raise ConfigError(f"{where}: `{key}.{given[0]}` applies only to an s3:// `{key}.wal`",
                              file=where, key=f"{key}.{given[0]}")
        wal = str((ctx.base / wal).resolve())
    return StoreSpec(
        name=ctx.name, url=str((ctx.base / required(values, "path", where, key)).resolve()),
        key_pattern=values.get("key_pattern"), kind="basebackup", wal=wal,
        **s3, **pitr_keys(values, where, key),
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
