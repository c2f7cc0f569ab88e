"""``0003_add_x.sql``: up only, ordered by integer version."""

from __future__ import annotations

import re
from pathlib import Path

from ..model import Direction, MigrationSet
from .common import Listing, ParsedName, detect_named, load_named

NAME = "numbered"

_PATTERN = re.compile(r"^(?P<version>\d+)[_-](?P<desc>.+)\.sql$")


def parse(name: str) -> ParsedName | None:
    match = _PATTERN.match(name)
    if not match or name.endswith((".up.sql", ".down.sql")):
        return None
    return ParsedName(match["version"], match["desc"], Direction.UP)


def detect(listing: Listing) -> bool:
    return detect_named(listing, parse)


def load(directory: Path) -> MigrationSet:
    return load_named(directory, NAME, parse)
