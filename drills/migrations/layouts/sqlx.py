"""sqlx: ``<version>_<desc>.sql`` (up only) or ``<version>_<desc>.up.sql`` / ``.down.sql``.

Read the way sqlx reads a migration folder (launchbadge/sqlx, ``sqlx-core/src/migrate/source.rs``
and ``migration_type.rs``):

- the name splits at its first ``_``: the left part is the version (an ``i64``), the right part
  must end in ``.sql``; ``.up.sql`` and ``.down.sql`` make a reversible pair, anything else a
  simple (up only) migration; the description is the right part without its suffix, ``_`` read
  as a space;
- a file whose text *starts with* ``-- no-transaction`` runs outside a transaction (sqlx tests
  ``sql.starts_with("-- no-transaction")`` on the file as read: a byte-order mark or a blank line
  before it means the file runs in a transaction).

Each file runs whole (PostgreSQL's parser splits it for the replay). sqlx's checksum is the
SHA-384 of the up file exactly as read, which is what history validation is given
(:mod:`checks.migration_history.tables.sqlx`).

Folders without ``-- no-transaction`` are detected by their names alone (golang-migrate's
``updown`` or the ``numbered`` layout read them identically); ``--layout sqlx`` names this one,
which also reads a folder mixing simple and reversible files.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..model import Direction, LayoutError, Migration, MigrationSet, Part
from .common import Listing, ParsedName, Versions, first_line, is_ignored

NAME = "sqlx"

_FILE = re.compile(r"^(?P<version>\d+)_(?P<rest>.*\.sql)$")
_NO_TRANSACTION = b"-- no-transaction"
_I64_MAX = (1 << 63) - 1
_SUFFIXES = ((".up.sql", Direction.UP), (".down.sql", Direction.DOWN), (".sql", Direction.UP))


def parse(name: str) -> ParsedName | None:
    """What a sqlx file name says (version, description, direction), None when it is not one."""
    match = _FILE.match(name)
    if match is None or int(match["version"]) > _I64_MAX:
        return None
    rest = match["rest"]
    for suffix, direction in _SUFFIXES:
        if rest.endswith(suffix):
            return ParsedName(match["version"], rest.removesuffix(suffix).replace("_", " "), direction)
    return None  # unreachable: the pattern ends in .sql


def no_transaction(data: bytes) -> bool:
    """sqlx's test, on the file's bytes as read: they start with ``-- no-transaction``."""
    return data.startswith(_NO_TRANSACTION)


def detect(listing: Listing) -> bool:
    """A sqlx folder by its marker: a migration file that starts with ``-- no-transaction``."""
    return any(parse(p.name) is not None and first_line(p).startswith(_NO_TRANSACTION.decode())
               for p in listing.sql_files)


def _read(path: Path) -> bytes:
    """The file's bytes (sqlx reads it as UTF-8 text: anything else is refused, as sqlx refuses it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"cannot read {path}: {exc.strerror}", file=str(path)) from exc
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 text (byte {exc.start})", file=str(path),
                          hint="sqlx reads migrations as UTF-8: save the file as UTF-8") from exc
    return data


def load(directory: Path) -> MigrationSet:
    """Every sqlx migration of the folder: simple files and reversible pairs, by version."""
    listing = Listing.of(directory)
    versions = Versions(directory)
    for path in listing.sql_files:
        if is_ignored(path):
            continue
        parsed = parse(path.name)
        if parsed is None:
            raise LayoutError(f"{directory}: {path.name} does not fit the sqlx layout "
                              "(<version>_<description>.sql, .up.sql, .down.sql)",
                              directory=str(directory), file=path.name,
                              hint="name sqlx migrations like 20240101120000_add_users.sql")
        assert parsed.version is not None
        part = Part(path, transactional=not no_transaction(_read(path)), wrapped=True)
        if parsed.direction == Direction.UP:
            versions.add(Migration(parsed.version, parsed.description, part))
        else:
            versions.add_down(parsed.version, part)
    migrations = versions.migrations()
    if not migrations:
        raise LayoutError(f"{directory}: no sqlx migrations (<version>_<description>.sql)",
                          directory=str(directory))
    return MigrationSet(directory, NAME, tuple(migrations), (directory,))
