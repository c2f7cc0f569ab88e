"""Flyway: ``V3__add_x.sql``, undo ``U3__add_x.sql``, repeatable ``R__views.sql``.

Versions compare by their numeric parts, dots or underscores alike (``V1_10__x.sql`` is 1.10, after
1.9); repeatables run after every versioned step, by description.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..model import Direction, MigrationSet
from .common import Listing, ParsedName, detect_named, load_named

NAME = "flyway"

_VERSIONED = re.compile(r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.*)\.sql$")
_REPEATABLE = re.compile(r"^R__(?P<desc>.+)\.sql$")


def parse(name: str) -> ParsedName | None:
    match = _VERSIONED.match(name)
    if match:
        direction = Direction.UP if match["prefix"] == "V" else Direction.DOWN
        return ParsedName(match["version"], match["desc"].replace("_", " "), direction)
    repeatable = _REPEATABLE.match(name)
    if repeatable:
        return ParsedName(None, repeatable["desc"].replace("_", " "), Direction.UP)
    return None


def detect(listing: Listing) -> bool:
    return detect_named(listing, parse)


def load(directory: Path) -> MigrationSet:
    return load_named(directory, NAME, parse)
