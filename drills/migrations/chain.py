"""Several migration folders replayed in order into one database.

A sqitch project and the project it requires, or Flyway's several ``locations``: the folders are
read one by one (each in its own layout) and chained into one set, in the order given. The same
version in two folders is an error naming both. Versions that are only positions in a plan
(sqitch, Liquibase) are renumbered after the folders before them, so they never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from checks.migration_history import show_version

from .layouts import load_migrations, sqitch
from .model import LayoutError, Migration, MigrationSet


def load_folders(directories: Sequence[Path], *, layout: str | None = None,
                 layouts: Sequence[str | None] | None = None) -> MigrationSet:
    """Read each folder (``layouts[i]``, else ``layout``, else detected) and chain them."""
    if not directories:
        raise LayoutError("no migration folder given", hint="name at least one folder")
    chosen = list(layouts) if layouts is not None else [layout] * len(directories)
    sets = [load_migrations(d, layout=c or layout) for d, c in zip(directories, chosen, strict=True)]
    for index, current in enumerate(sets):
        # A sqitch plan may require another project's change: that project must come first.
        unmet = sqitch.unmet_requirements(current, sets[:index])
        if unmet:
            raise LayoutError(f"{current.directory}: " + "; ".join(unmet), directory=str(current.directory),
                              hint="give the required project's folder before this one "
                                   "(drillbook verify migrations REQUIRED DEPENDENT)")
    return chain(sets)


def chain(sets: Sequence[MigrationSet]) -> MigrationSet:
    """One set applying ``sets`` one after the other; a version in two folders is an error."""
    if len(sets) == 1:
        return sets[0]
    seen: dict[tuple[int, ...], tuple[MigrationSet, Migration]] = {}
    ordered: list[Migration] = []
    repeatables: list[Migration] = []
    offset = 0
    for current in sets:
        versioned = current.versioned()
        if current.ordinal_versions:
            versioned = [replace(m, version=str(int(m.version) + offset)) for m in versioned]
        for migration in versioned:
            if migration.key in seen:
                earlier, other = seen[migration.key]
                raise LayoutError(
                    f"version {show_version(migration.key)} is in two folders: "
                    f"{earlier.directory / earlier.relative(other.up.path)} and "
                    f"{current.directory / current.relative(migration.up.path)}",
                    hint="each version must exist once across the folders given",
                    version=migration.version)
            seen[migration.key] = (current, migration)
        ordered += versioned
        offset = max((m.key[0] for m in ordered if m.key), default=offset)
        repeatables += [m for m in current.migrations if m.repeatable]
    if not any(s.ordinal_versions for s in sets):
        # Flyway's several locations are one sorted set; a folder order would apply 2 after 3.
        ordered.sort(key=lambda m: m.key)
    directories = tuple(d for s in sets for d in (s.directories or (s.directory,)))
    layout = "+".join(dict.fromkeys(s.layout for s in sets))
    return MigrationSet(sets[0].directory, layout, tuple(ordered + repeatables), directories)
