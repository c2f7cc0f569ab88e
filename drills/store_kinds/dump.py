"""``kind = "s3"`` and ``kind = "directory"``: logical dumps, one object (or file) per backup."""

from __future__ import annotations

from typing import Any

from checks.errors import ConfigError
from checks.immutability import check_probe_prefix, check_role_arn

from ..config_values import required
from ..targets import StoreSpec
from . import Context

S3_KEYS = frozenset({
    "kind", "url", "key_pattern", "endpoint_url", "region",
    "access_key_id", "secret_access_key", "checksum_suffix", "probe_role_arn", "probe_prefix",
})
DIRECTORY_KEYS = frozenset({"kind", "path", "key_pattern", "checksum_suffix"})


def parse_s3(ctx: Context) -> StoreSpec:
    """An S3 prefix of dumps, with its endpoint, keys and optional immutability probe."""
    values, where, key = ctx.values, ctx.where, ctx.key
    url = required(values, "url", where, key)
    if not url.startswith("s3://") or not url[5:].split("/")[0]:
        raise ConfigError(f"{where}: `{key}.url` must look like s3://bucket/prefix/, "
                          f"got {url!r}", file=where, key=f"{key}.url")
    probe = _probe_keys(ctx, url)
    return StoreSpec(
        name=ctx.name, url=url, key_pattern=values.get("key_pattern"),
        endpoint_url=values.get("endpoint_url"),
        region=values.get("region", "us-east-1"),
        access_key_id=values.get("access_key_id"),
        secret_access_key=values.get("secret_access_key"),
        checksum_suffix=values.get("checksum_suffix", ".sha256"),
        probe_role_arn=probe.get("probe_role_arn"), probe_prefix=probe.get("probe_prefix"),
    )


def parse_directory(ctx: Context) -> StoreSpec:
    """A local folder of dumps (relative to the config file)."""
    directory = required(ctx.values, "path", ctx.where, ctx.key)
    return StoreSpec(
        name=ctx.name, url=str((ctx.base / directory).resolve()),
        key_pattern=ctx.values.get("key_pattern"),
        checksum_suffix=ctx.values.get("checksum_suffix", ".sha256"),
    )


def _probe_keys(ctx: Context, url: str) -> dict[str, Any]:
    """``probe_role_arn`` and ``probe_prefix``: both or neither, each checked (checks/immutability.py)."""
    values, where, key = ctx.values, ctx.where, ctx.key
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
