"""``kind = "pgbackrest"``: a stanza, a repo number and pgbackrest options (drills/pgbackrest_options.py)."""

from __future__ import annotations

from ..pgbackrest_options import KEYS as _KEYS
from ..pgbackrest_options import pgbackrest_store
from ..targets import StoreSpec
from . import Context

KEYS = frozenset(_KEYS)


def parse(ctx: Context) -> StoreSpec:
    """Its own options table: pgbackrest_options validates it and resolves its ``${ENV}`` values."""
    return pgbackrest_store(ctx.name, ctx.spec, ctx.config_path, ctx.where, ctx.key, ctx.resolve)
