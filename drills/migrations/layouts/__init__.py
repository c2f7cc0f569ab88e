"""The migration tools drillbook reads: one module per layout, tried in detection order.

Each module has ``NAME``, ``detect(listing) -> bool`` and ``load(directory) -> MigrationSet``.
Detection tries the layouts with a marker of their own first (``sqitch.plan``, ``atlas.sum``,
``migration_lock.toml``, Diesel's timestamped step directories, Liquibase's header line, goose's
and dbmate's annotations, sqlx's ``-- no-transaction``), then those known only by file names, the
most specific first (a golang-migrate name also fits the numbered pattern, never the reverse).
A layout named explicitly (``--layout``, ``[migrations] layout``) skips detection.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

from ..model import Layout, LayoutError, MigrationSet
from . import (
    atlas,
    dbmate,
    diesel,
    dotted,
    flyway,
    goose,
    liquibase,
    numbered,
    prisma,
    sqitch,
    sqlx,
    updown,
)
from . import directory as step_dirs
from .common import Listing, ParsedName, named_sql_files

# Detection order (see the module docstring).
_MODULES: tuple[ModuleType, ...] = (sqitch, atlas, prisma, diesel, liquibase, goose, dbmate, sqlx,
                                    step_dirs, flyway, dotted, updown, numbered)
# The layouts known by file names alone: a file fitting none of them is named in the error.
_NAMED: tuple[ModuleType, ...] = (flyway, dotted, updown, numbered)


def _ready(module: ModuleType) -> bool:
    return hasattr(module, "detect") and hasattr(module, "load")


def known() -> list[str]:
    """The layout names drillbook reads, for ``--layout`` and ``[migrations] layout``."""
    return [m.NAME for m in _MODULES if _ready(m)]


def module(name: str) -> ModuleType:
    for candidate in _MODULES:
        if name == candidate.NAME and _ready(candidate):
            return candidate
    raise LayoutError(f"unknown migration layout {name!r}: use one of {', '.join(known())}",
                      hint="name a layout drillbook reads, or leave it out to detect it")


def parse_name(layout: Layout | str, name: str) -> ParsedName | None:
    """Parse one file name (for ``directory``: the step directory's name) in a name-based layout."""
    parse = getattr(module(str(layout)), "parse", None) if str(layout) in known() else None
    if parse is None:
        return None  # a layout known by its content or marker files, not by a file's name
    result: ParsedName | None = parse(name)
    return result


def detect_layout(directory: Path) -> Layout:
    """The one layout the folder is written in."""
    listing = Listing.of(directory)
    _refuse_half_step_dirs(listing)
    for candidate in _MODULES:
        if _ready(candidate) and candidate.detect(listing):
            return Layout(candidate.NAME)
    files = named_sql_files(listing)
    step_dirs = [d for d in listing.dirs if (d / "up.sql").is_file()]
    if step_dirs and files:
        raise LayoutError(
            f"{directory}: mixes step directories ({step_dirs[0].name}/) with migration files "
            f"({files[0].name})", directory=str(directory))
    if not files:
        raise LayoutError(f"{directory}: no migrations found (no *.sql files, no step directories "
                          "with up.sql, no sqitch.plan)", directory=str(directory))
    # Name the file that fits no layout at all, else the two that disagree.
    for path in files:
        if all(m.parse(path.name) is None for m in _NAMED):
            raise LayoutError(f"{directory}: unknown migration layout: {path.name} fits none of "
                              f"{', '.join(known())}", directory=str(directory), file=path.name)
    first = next(m for m in _NAMED if m.parse(files[0].name))
    other = next(p for p in files if first.parse(p.name) is None)
    raise LayoutError(f"{directory}: mixed layouts: {files[0].name} is {first.NAME}, "
                      f"{other.name} is not", directory=str(directory))


def _refuse_half_step_dirs(listing: Listing) -> None:
    # A numbered step directory with SQL in it but no up.sql would silently be skipped otherwise.
    for child in listing.dirs:
        if (step_dirs.parse(child.name) and not (child / "up.sql").is_file()
                and not (child / "migration.sql").is_file() and any(child.glob("*.sql"))):
            raise LayoutError(f"{listing.directory}: step directory {child.name}/ has no up.sql",
                              directory=str(listing.directory), file=child.name)


def load_migrations(directory: Path, *, layout: Layout | str | None = None) -> MigrationSet:
    """Read a migration folder in its layout (detected unless named)."""
    directory = directory.resolve()
    chosen = Layout(layout) if layout else detect_layout(directory)
    loaded: MigrationSet = module(chosen).load(directory)
    # The layout as an enum member, whatever the module wrote (callers compare with Layout.X).
    return replace(loaded, layout=chosen)
