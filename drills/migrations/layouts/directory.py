"""One directory per step: ``0003_add_x/up.sql`` and ``down.sql``, ordered by integer version."""

from __future__ import annotations

import re
from pathlib import Path

from ..model import Direction, LayoutError, Migration, MigrationSet, Part
from .common import Listing, ParsedName, Versions

NAME = "directory"

_PATTERN = re.compile(r"^(?P<version>\d+)(?:[_-](?P<desc>.*))?$")


def parse(name: str) -> ParsedName | None:
    match = _PATTERN.match(name)
    return ParsedName(match["version"], match["desc"] or "", Direction.UP) if match else None


def step_dirs(listing: Listing) -> list[Path]:
    return [d for d in listing.dirs if (d / "up.sql").is_file()]


def detect(listing: Listing) -> bool:
    return bool(step_dirs(listing)) and not any(p.name.endswith(".sql") for p in listing.files)


def load(directory: Path) -> MigrationSet:
    listing = Listing.of(directory)
    steps = step_dirs(listing)
    if not steps:
        raise LayoutError(f"{directory}: no step directories with up.sql (layout directory)",
                          directory=str(directory))
    versions = Versions(directory)
    for step in steps:
        parsed = parse(step.name)
        if parsed is None or parsed.version is None:
            raise LayoutError(f"{directory}: step directory {step.name}/ does not start with "
                              "a version number", directory=str(directory), file=step.name)
        versions.add(Migration(parsed.version, parsed.description, Part(step / "up.sql")))
        if (step / "down.sql").is_file():
            versions.add_down(parsed.version, Part(step / "down.sql"))
    return versions.set(NAME)
