"""Prisma Migrate: ``<timestamp>_<name>/migration.sql`` plus ``migration_lock.toml``.

What Prisma does (prisma/prisma-engines, schema-engine), and what this module does alike:

* Every subdirectory of ``prisma/migrations`` is one migration, applied in the order of
  the directory names; its SQL is ``migration.sql`` (a directory without one is an error,
  as ``prisma migrate deploy`` fails on it). Migrations are up only.
* The name is ``<timestamp>_<name>`` (``20230406064219_init``; baselines often use
  ``0_init``): the version is the digits before the first ``_``. Prisma's history
  (``_prisma_migrations.migration_name``) records the whole directory name, so it is the
  migration's :attr:`Migration.history_id`.
* ``migration_lock.toml`` names the provider the folder was generated for; anything but
  PostgreSQL is refused (its SQL is another dialect). A folder without one is accepted.
* Prisma sends the whole ``migration.sql`` as one script (one implicit transaction):
  the default :class:`Part`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ..model import LayoutError, Migration, MigrationSet, Part
from .common import Listing, read_text, require_name_order

NAME = "prisma"
LOCK_FILE = "migration_lock.toml"
SCRIPT = "migration.sql"
# prisma-engines accepts both spellings for PostgreSQL in a datasource.
POSTGRES_PROVIDERS = frozenset({"postgresql", "postgres"})

_STEP = re.compile(r"^(?P<version>\d+)_(?P<desc>.+)$")


def detect(listing: Listing) -> bool:
    """``migration_lock.toml``, or step directories that hold ``migration.sql``."""
    if any(p.name == LOCK_FILE for p in listing.files):
        return True
    return any((d / SCRIPT).is_file() for d in listing.dirs)


def provider(directory: Path) -> str | None:
    """The provider ``migration_lock.toml`` names (None when the folder has no lock file)."""
    lock = directory / LOCK_FILE
    if not lock.is_file():
        return None
    text = read_text(lock)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_line(str(exc))
        raise LayoutError(f"{lock}{f':{line}' if line else ''}: not valid TOML: {exc}",
                          directory=str(directory), file=LOCK_FILE, line=line or 1,
                          hint="restore migration_lock.toml as `prisma migrate dev` wrote it") from exc
    value = data.get("provider")
    if not isinstance(value, str):
        raise LayoutError(f"{lock}: no `provider = \"…\"` line", directory=str(directory),
                          file=LOCK_FILE, line=1,
                          hint='migration_lock.toml should hold provider = "postgresql"')
    return value


def load(directory: Path) -> MigrationSet:
    """Read a Prisma migrations folder: check the provider, one migration per directory."""
    listing = Listing.of(directory)
    found = provider(directory)
    if found is not None and found not in POSTGRES_PROVIDERS:
        lock_text = read_text(directory / LOCK_FILE)
        line = next((n for n, text in enumerate(lock_text.splitlines(), start=1)
                     if text.strip().startswith("provider")), 1)
        raise LayoutError(
            f"{directory / LOCK_FILE}:{line}: these migrations were generated for provider "
            f"{found!r}, not PostgreSQL: their SQL is another database's dialect",
            directory=str(directory), file=LOCK_FILE, line=line, provider=found,
            hint="point drillbook at a Prisma project whose datasource provider is postgresql")
    steps = sorted(listing.dirs, key=lambda d: d.name)
    migrations = []
    for step in steps:
        script = step / SCRIPT
        if not script.is_file():
            raise LayoutError(f"{directory}: {step.name}/ has no {SCRIPT} (prisma migrate deploy "
                              "would fail on it)", directory=str(directory), file=step.name,
                              hint=f"add {step.name}/{SCRIPT} or remove the directory")
        match = _STEP.match(step.name)
        if match is None:
            raise LayoutError(f"{directory}: {step.name}/ is not named <timestamp>_<name>",
                              directory=str(directory), file=step.name,
                              hint="name migration directories as `prisma migrate dev` does, "
                                   "e.g. 20230406064219_init")
        read_text(script)   # Prisma reads it as UTF-8 text: refuse what it would refuse
        migrations.append(Migration(match["version"], match["desc"].replace("_", " "),
                                    Part(script), history_id=step.name))
    if not migrations:
        raise LayoutError(f"{directory}: no Prisma migrations (no <timestamp>_<name>/{SCRIPT})",
                          directory=str(directory))
    seen: dict[str, str] = {}
    for migration in migrations:
        assert migration.history_id is not None
        if migration.version in seen:
            raise LayoutError(f"{directory}: duplicate version {migration.version}: "
                              f"{seen[migration.version]}/ and {migration.history_id}/",
                              directory=str(directory), file=migration.history_id,
                              hint="give every migration directory its own timestamp")
        seen[migration.version] = migration.history_id
    require_name_order(directory, [(f"{m.history_id}/", m.version) for m in migrations],
                       tool="Prisma", sort_by="directories run in name order")
    return MigrationSet(directory, NAME, tuple(migrations), (directory,))


def _toml_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match[1]) if match else None
