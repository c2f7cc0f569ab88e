"""dbmate: ``<version>_<name>.sql`` with ``-- migrate:up`` / ``-- migrate:down`` sections.

Read the way dbmate reads them (amacneil/dbmate, ``pkg/dbmate/migration.go`` and
``FindMigrations``), rule by rule:

- a migration file is any ``*.sql`` whose name starts with digits; those digits are its version
  (``20240101120000_add_users.sql`` → ``20240101120000``); a doubled ``.sql.sql`` extension is a
  migration like any other;
- a directive is a line starting with ``--`` then ``migrate:up`` or ``migrate:down`` (spaces
  between are optional), then nothing or options such as ``transaction:false``;
- only blank lines and comments may precede the first ``-- migrate:up``;
- every ``-- migrate:up`` opens a section that runs to the next one; each section has one
  ``-- migrate:down`` (newer dbmate allows several sections per file: they run in file order,
  up and down alike);
- a block's options are ``key:value`` words on its directive line; ``transaction:false`` runs it
  outside a transaction.

dbmate sends each block to the server whole; drillbook gives the replay the block's text
(:class:`~drills.migrations.model.Part`, with its first file line) and lets PostgreSQL's parser
split it, so failures name the file's line. In a file of several sections the other
direction's blocks are blanked out of the text (line numbers stay the file's); when any of the
direction's blocks is ``transaction:false``, the whole direction runs outside a transaction.

Where dbmate versions differ, drillbook takes the lenient reading that still replays exactly
what the file says: a file of one section without ``-- migrate:down`` (accepted before dbmate 2)
has no down step; ``-- migrate:down`` before ``-- migrate:up`` is refused (dbmate 2 refuses it).

dbmate applies files in the order of their names; drillbook orders steps by version number.
When the two differ (``9_x.sql`` sorts after ``10_y.sql``), the folder is refused naming both
files, rather than replayed in an order production never ran.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from checks.migration_history import version_key

from ..model import LayoutError, Migration, MigrationSet, Part
from .common import Listing, Versions, is_ignored, read_text, shown

NAME = "dbmate"

_FILE = re.compile(r"^(?P<version>\d+)(?P<rest>.*)\.sql$")
# Go's RE2 \s is [\t\n\f\r ] (Python's also takes \v and Unicode spaces): spelled out.
_S = r"[ \t\n\f\r]"
_UP = re.compile(rf"^--{_S}*migrate:up(?:{_S}*$|{_S}+[^ \t\n\f\r]+)", re.MULTILINE)
_DOWN = re.compile(rf"^--{_S}*migrate:down(?:{_S}*$|{_S}+[^ \t\n\f\r]+)", re.MULTILINE)
_DIRECTIVE = re.compile(r"^--\s*migrate:(?:up|down)")
_HINT = "see https://github.com/amacneil/dbmate#creating-migrations for the file format"


@dataclass(frozen=True)
class Block:
    """One ``-- migrate:up`` or ``-- migrate:down`` block: its character range and options."""

    start: int
    end: int
    transactional: bool


@dataclass(frozen=True)
class Section:
    """The text one direction runs (other blocks blanked), where it starts, its transaction mode."""

    text: str
    first_line: int
    transactional: bool


@dataclass(frozen=True)
class DbmateFile:
    """A parsed dbmate file: the up direction and (when the file has one) the down direction."""

    up: Section
    down: Section | None


def options(block: str) -> dict[str, str]:
    """dbmate's ``parseMigrationOptions``: ``key:value`` words after the directive on its line."""
    first = block.split("\n", 1)[0]
    rest = _DIRECTIVE.sub("", first, count=1).strip()
    found: dict[str, str] = {}
    for word in rest.split():
        pair = word.split(":")
        if len(pair) == 2:  # dbmate ignores anything else
            found[pair[0]] = pair[1]
    return found


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _error(file: str, line: int | None, message: str, hint: str = _HINT) -> LayoutError:
    where = f"{file}:{line}" if line is not None else file
    return LayoutError(f"{where}: {message}", file=file, **({"line": line} if line is not None else {}),
                       hint=hint)


def parse_file(text: str, *, file: str) -> DbmateFile:
    """Split a dbmate file into its up and down directions, or raise LayoutError naming file and line."""
    ups = [m.start() for m in _UP.finditer(text)]
    downs = [m.start() for m in _DOWN.finditer(text)]
    if not ups:
        raise _error(file, None, "no `-- migrate:up` line: dbmate refuses the file",
                     "start the migration with a `-- migrate:up` line (and `-- migrate:down` "
                     "before its rollback)")
    if downs and downs[0] < ups[0]:
        raise _error(file, _line_of(text, downs[0]), "`-- migrate:down` before `-- migrate:up`",
                     "put the up block first, then `-- migrate:down` and the rollback")
    offset = 0
    for line in text[:ups[0]].split("\n"):
        if line.strip() and not line.lstrip().startswith("--"):
            raise _error(file, _line_of(text, offset), "SQL before `-- migrate:up`: dbmate refuses it",
                         "move the statement below `-- migrate:up`")
        offset += len(line) + 1
    up_blocks: list[Block] = []
    down_blocks: list[Block] = []
    bounds = [*ups, len(text)]
    for start, end in itertools.pairwise(bounds):
        inner = [d for d in downs if start < d < end]
        if len(inner) > 1:
            raise _error(file, _line_of(text, inner[1]), "a second `-- migrate:down` without a "
                                                         "`-- migrate:up` between them")
        middle = inner[0] if inner else end
        up_blocks.append(Block(start, middle, options(text[start:middle]).get("transaction") != "false"))
        if inner:
            down_blocks.append(Block(middle, end, options(text[middle:end]).get("transaction") != "false"))
        elif len(ups) > 1:
            raise _error(file, _line_of(text, start), "this `-- migrate:up` section has no "
                                                      "`-- migrate:down`: dbmate refuses the file")
    return DbmateFile(_section(text, up_blocks), _section(text, down_blocks) if down_blocks else None)


def _section(text: str, blocks: list[Block]) -> Section:
    """The blocks' text from the first to the last, anything between them blanked to line breaks."""
    pieces = []
    for index, block in enumerate(blocks):
        pieces.append(text[block.start:block.end])
        if index + 1 < len(blocks):
            pieces.append("\n" * text.count("\n", block.end, blocks[index + 1].start))
    return Section("".join(pieces), _line_of(text, blocks[0].start), all(b.transactional for b in blocks))


def detect(listing: Listing) -> bool:
    """A dbmate folder: some .sql file has a ``-- migrate:up`` line."""
    for path in listing.sql_files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # load names the unreadable file
        if _UP.search(text):
            return True
    return False


def load(directory: Path) -> MigrationSet:
    """Every ``<digits>…sql`` file of the folder, each split into its up and down directions."""
    listing = Listing.of(directory)
    versions = Versions(directory)
    files: list[Path] = []
    for path in listing.sql_files:
        if is_ignored(path):
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise LayoutError(f"{directory}: {path.name} does not fit the dbmate layout "
                              "(<version>_<name>.sql)", directory=str(directory), file=path.name,
                              hint="name dbmate migrations like 20240101120000_add_users.sql")
        rest = match["rest"].removesuffix(".sql")  # a doubled .sql.sql extension
        parsed = parse_file(read_text(path), file=shown(path, directory))
        up = Part(path, parsed.up.text, parsed.up.first_line, parsed.up.transactional, wrapped=True)
        down = (Part(path, parsed.down.text, parsed.down.first_line, parsed.down.transactional, wrapped=True)
                if parsed.down is not None else None)
        versions.add(Migration(match["version"], rest.lstrip("_-"), up, down))
        files.append(path)
    if not files:
        raise LayoutError(f"{directory}: no dbmate migrations (<version>_<name>.sql)",
                          directory=str(directory))
    migrations = versions.migrations()
    _same_order(directory, files, migrations)
    return MigrationSet(directory, NAME, tuple(migrations), (directory,))


def _same_order(directory: Path, files: list[Path], migrations: list[Migration]) -> None:
    """Refuse a folder whose name order (dbmate's) differs from its version order (drillbook's)."""
    by_name = sorted(files, key=lambda p: p.name)
    by_version = [m.up.path for m in sorted(migrations, key=lambda m: version_key(m.version))]
    for named, numbered in zip(by_name, by_version, strict=True):
        if named != numbered:
            raise LayoutError(
                f"{directory}: dbmate applies files in name order, so {named.name} runs before "
                f"{numbered.name}, against their version numbers; drillbook replays by version",
                directory=str(directory), file=named.name,
                hint="give every version the same number of digits (dbmate's timestamps do)")
