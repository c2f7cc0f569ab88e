"""Diesel: ``YYYY-MM-DD-HHMMSS_<name>/up.sql`` and ``down.sql``.

What Diesel does (diesel-rs/diesel ``diesel_migrations``, ``migrations_internals``), and
what this module does alike:

* Every subdirectory not starting with ``.`` is a migration and must hold ``up.sql``
  (otherwise Diesel refuses the folder: ``UnknownMigrationFormat``); ``down.sql`` is the
  revert. Files beside them are ignored.
* The version is the name before the first ``_`` with every ``-`` removed
  (``version_from_string``): ``2022-04-26-153628_create_users`` → ``20220426153628``,
  ``00000000000000_diesel_initial_setup`` → ``00000000000000``. Migrations run in the
  order of those version strings; it is what ``__diesel_schema_migrations.version`` holds.
* Each migration runs in a transaction unless its ``metadata.toml`` says otherwise. Diesel
  reads that file with serde, where a *missing* ``run_in_transaction`` key means ``false``
  (the field's ``#[serde(default)]``), while a missing or unparsable file means ``true``:
  both are reproduced here.
* An empty ``up.sql`` (zero bytes) is refused by Diesel (``EmptyMigration``); so it is here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ..model import LayoutError, Migration, MigrationSet, Part
from .common import Listing, read_text, require_name_order

NAME = "diesel"
METADATA = "metadata.toml"
INITIAL_SETUP = "00000000000000_diesel_initial_setup"

# `diesel migration generate` names: 2022-04-26-153628_name (chrono "%Y-%m-%d-%H%M%S").
_DIESEL_STEP = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{6}_.+$")
_DIGITS = re.compile(r"^\d+$")


def version_from_name(name: str) -> str:
    """Diesel's ``version_from_string``: before the first ``_``, without ``-``."""
    return name.split("_", 1)[0].replace("-", "")


def run_in_transaction(metadata: str | None) -> bool:
    """What Diesel decides from a ``metadata.toml`` text (None: no such file)."""
    if metadata is None:
        return True
    try:
        data = tomllib.loads(metadata)
    except tomllib.TOMLDecodeError:
        return True   # Diesel: TomlMetadata::read_from_file(..).unwrap_or_default()
    value = data.get("run_in_transaction", False)
    if not isinstance(value, bool):
        return True   # serde refuses a non-boolean: the whole file falls back to the default
    return value


def detect(listing: Listing) -> bool:
    """Step directories named as Diesel names them, or its initial setup migration."""
    return any(d.name == INITIAL_SETUP or (_DIESEL_STEP.match(d.name) and (d / "up.sql").is_file())
               for d in listing.dirs)


def load(directory: Path) -> MigrationSet:
    """Read a Diesel migrations folder, in Diesel's order."""
    steps = [(step.name, _migration(directory, step)) for step in
             Listing.of(directory).dirs]
    if not steps:
        raise LayoutError(f"{directory}: no Diesel migrations (no <timestamp>_<name>/up.sql)",
                          directory=str(directory))
    steps.sort(key=lambda item: item[1].version)   # Diesel orders by the version string
    seen: dict[str, str] = {}
    for name, migration in steps:
        if migration.version in seen:
            raise LayoutError(f"{directory}: duplicate version {migration.version}: "
                              f"{seen[migration.version]}/ and {name}/",
                              directory=str(directory), file=name,
                              hint="give every migration directory its own timestamp")
        seen[migration.version] = name
    require_name_order(directory, [(f"{name}/", m.version) for name, m in steps],
                       tool="Diesel", sort_by="versions compared as text")
    migrations = [m for _, m in steps]
    return MigrationSet(directory, NAME, tuple(migrations), (directory,))


def _migration(directory: Path, step: Path) -> Migration:
    up, down, meta = step / "up.sql", step / "down.sql", step / METADATA
    if not up.is_file():
        raise LayoutError(f"{directory}: {step.name}/ has no up.sql (Diesel refuses the folder)",
                          directory=str(directory), file=step.name,
                          hint=f"add {step.name}/up.sql or move the directory out of the folder")
    version = version_from_name(step.name)
    if not _DIGITS.match(version):
        raise LayoutError(f"{directory}: {step.name}/: Diesel's version is the name before the "
                          f"first `_` without dashes, here {version!r}, which is not a number",
                          directory=str(directory), file=step.name,
                          hint="name directories as `diesel migration generate` does, "
                               "e.g. 2022-04-26-153628_create_users")
    if up.stat().st_size == 0:
        raise LayoutError(f"{directory}: {step.name}/up.sql is empty: Diesel refuses to run an "
                          "empty migration", directory=str(directory), file=f"{step.name}/up.sql",
                          hint="put the migration's SQL in up.sql (a comment is enough for a no-op)")
    read_text(up)
    transactional = run_in_transaction(read_text(meta) if meta.is_file() else None)
    description = step.name.split("_", 1)[1] if "_" in step.name else ""
    return Migration(
        version, description.replace("_", " "), Part(up, transactional=transactional),
        Part(down, transactional=transactional) if down.is_file() else None)
