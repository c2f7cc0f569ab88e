"""``kind = "barman-cloud"``: an S3 source URL and server name as barman-cloud-* take them."""

from __future__ import annotations

import re

from checks.errors import ConfigError

from ..config_values import ENV_REF, required
from ..targets import StoreSpec
from . import Context

KEYS = frozenset({"kind", "url", "server", "endpoint_url", "region", "access_key_id", "secret_access_key"})
# A barman server name: barman's own rule (it becomes a path segment of every object).
_BARMAN_SERVER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse(ctx: Context) -> StoreSpec:
    """The source URL, the server name, the endpoint and the keys (drills/physical/barman_cloud.py).

    The keys are the tool's credentials, so only ``${ENV}`` references are accepted for them: a
    literal secret in the file would be one more copy of production's key on disk.
    """
    values, where, key = ctx.values, ctx.where, ctx.key
    url = required(values, "url", where, key)
    if not url.startswith("s3://") or not url[5:].split("/")[0] or "?" in url or "#" in url:
        raise ConfigError(f"{where}: `{key}.url` must look like s3://bucket/prefix/, got {url!r}",
                          file=where, key=f"{key}.url", hint="barman-cloud's source URL, as given to "
                          "barman-cloud-backup (Azure and GCS are not supported yet)")
    server = required(values, "server", where, key)
    if not _BARMAN_SERVER.fullmatch(server):
        raise ConfigError(f"{where}: `{key}.server` must be a barman server name (letters, digits, "
                          f"`_`, `.`, `-`), got {server!r}", file=where, key=f"{key}.server")
    env_only_keys(ctx)
    return StoreSpec(name=ctx.name, url=url, kind="barman-cloud",
                     server=server, endpoint_url=values.get("endpoint_url"),
                     region=values.get("region", "us-east-1"),
                     access_key_id=values.get("access_key_id"),
                     secret_access_key=values.get("secret_access_key"))


def env_only_keys(ctx: Context, prefix: str = "") -> None:
    """``{prefix}access_key_id`` and ``{prefix}secret_access_key``: both or neither, each a ``${ENV}``."""
    where, key = ctx.where, ctx.key
    for secret in (f"{prefix}access_key_id", f"{prefix}secret_access_key"):
        if secret in ctx.spec and not ENV_REF.fullmatch(str(ctx.spec[secret]).strip()):
            raise ConfigError(f"{where}: `{key}.{secret}` must reference the environment, like "
                              f'"${{AWS_SECRET_ACCESS_KEY}}"', file=where, key=f"{key}.{secret}",
                              hint="keep the key out of the file: export it and reference it")
    if (f"{prefix}access_key_id" in ctx.values) != (f"{prefix}secret_access_key" in ctx.values):
        raise ConfigError(f"{where}: `{key}` needs both {prefix}access_key_id and {prefix}secret_access_key, "
                          "or neither", file=where, key=key)
