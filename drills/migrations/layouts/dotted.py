"""Authelia's ``V0003.Add_X.up.sql`` / ``.down.sql``, ordered by integer version."""

from __future__ import annotations

import re
from pathlib import Path

from ..model import Direction, MigrationSet
from .common import Listing, ParsedName, detect_named, load_named

NAME = "dotted"

_PATTERN = re.compile(r"^V(?P<version>\d+)\.(?P<desc>.+)\.(?P<dir>up|down)\.sql$")


def parse(name: str) -> ParsedName | None:
    match = _PATTERN.match(name)
    return ParsedName(match["version"], match["desc"], Direction(match["dir"])) if match else None


def detect(listing: Listing) -> bool:
    return detect_named(listing, parse)


def load(directory: Path) -> MigrationSet:
    return load_named(directory, NAME, parse)
