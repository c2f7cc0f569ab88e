"""Liquibase formatted SQL changelogs: ``--liquibase formatted sql`` files of ``--changeset`` s.

Every ``.sql`` file of the folder must be a formatted changelog (first non-blank line
``--liquibase formatted sql``); files are taken in name order, changesets in file order.
Lines are classified with the patterns of liquibase-core's ``AbstractFormattedChangeLogParser``
(4.28), so a changeset's SQL is exactly what Liquibase runs and checksums::

    --changeset alice:1 runInTransaction:false splitStatements:false endDelimiter:/
    --comment: why          (kept out of the SQL)
    --validCheckSum: 9:…    (an accepted checksum of an edited changeset; ``ANY`` accepts all)
    --preconditions …       (ignored: drillbook replays from empty, where they would hold or be
    --precondition-…         marked ran; the lines are kept out of the SQL as Liquibase does)
    --rollback DROP …       (each line adds to the down; ``/* liquibase rollback … */`` blocks
                             too, their lines joined with no separator, as Liquibase joins them)
    --property name:x value:y   (``${x}`` in later SQL becomes ``y``)
    --ignoreLines:start … --ignoreLines:end, --ignoreLines:3

Each changeset is one :class:`Migration`: version = its 1-based position across the
folder, description = ``"id by author"``, ``history_id = "id:author"`` (what
``databasechangelog`` identifies it by, without the file name, whose recorded form depends
on how Liquibase was invoked), ``hashed`` = :func:`checksum_input` (the SQL Liquibase's
checksum covers, with the attributes its ``8:`` form folds in). ``runInTransaction:false``
runs statement by statement in autocommit; ``splitStatements:false`` sends the whole SQL as
one statement; ``endDelimiter:X`` splits where a line ends in ``X``; otherwise PostgreSQL's
parser splits on ``;`` (Liquibase 4.28 splits dollar-quoted bodies correctly too).
Changesets with ``ignore:true`` or a ``dbms`` that excludes PostgreSQL are skipped, as
Liquibase skips them on PostgreSQL; contexts and labels are not filtered (Liquibase runs every
changeset when no context is given).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..model import LayoutError, Migration, MigrationSet, Part, Statement
from .common import Listing, first_line, read_text

NAME = "liquibase"

_I = re.IGNORECASE | re.ASCII
_FIRST_LINE = re.compile(r"\s*--\s*liquibase\s*formatted.*", _I)
_PROPERTY = re.compile(r"\s*--[\s]*property\s+(.*:.*)\s+(.*:.*).*", _I)
_ALT_PROPERTY = re.compile(r"\s*?[-]+\s*property\s.*", _I)
_CHANGESET = re.compile(r'\s*--[\s]*changeset\s+("[^"]+"|[^:]+):\s*("[^"]+"|\S+).*', _I)
_ALT_CHANGESET = (re.compile(r"-[\s]*changeset\s.*", _I), re.compile(r"\s*--[\s]*changeset[\s]*.*", _I))
_ROLLBACK = re.compile(r"\s*--[\s]*rollback (.*)", _I)
_ALT_ROLLBACK = re.compile(r"\s*-[\s]*rollback\s.*", _I)
_PRECONDITIONS = re.compile(r"\s*--[\s]*preconditions(.*)", _I)
_PRECONDITION = re.compile(r"\s*--[\s]*precondition\-([a-zA-Z0-9-]+)(?: (.*))?", _I)
_ALT_PRECONDITION = re.compile(r"\s*-[\s]*precondition(.*)", _I)
_COMMENT = re.compile(r"--[\s]*comment:? (.*)", _I)
_ALT_COMMENT = (re.compile(r"-[\s]*comment:? (.*)", _I), re.compile(r"--[\s]*comments:? (.*)", _I))
_VALID_CHECKSUM = re.compile(r"--[\s]*validCheckSum:? (.*)", _I)
_ALT_VALID_CHECKSUM = re.compile(r"-[\s]*validCheckSum(.*)", _I)
_IGNORE_LINES = re.compile(r"--[\s]*ignoreLines:(\w+)", _I)
_ALT_IGNORE = (re.compile(r"-[\s]*?ignoreLines:(\w+).*", _I), re.compile(r"--[\s]*ignore:(\w+)", _I))
_ROLLBACK_BLOCK_START = re.compile(r"\s*/\*\s*liquibase\s*rollback\s*", _I)
_ROLLBACK_BLOCK_END = re.compile(r".*\s*\*/\s*", _I | re.DOTALL)
_INCLUDE = re.compile(r"\s*--\s*include(?:All)?\b.*", _I)
_ATTRIBUTES = {
    "splitStatements": r".*splitStatements:(\w+).*", "runInTransaction": r".*runInTransaction:(\w+).*",
    "stripComments": r".*stripComments:(\w+).*", "endDelimiter": r".*\bendDelimiter:(\S*).*",
    "rollbackSplitStatements": r".*rollbackSplitStatements:(\w+).*",
    "rollbackEndDelimiter": r".*\brollbackEndDelimiter:(\S*).*", "runOnChange": r".*runOnChange:(\w+).*",
    "runAlways": r".*runAlways:(\w+).*", "ignore": r".*ignore:(\w*).*", "dbms": r".*dbms:([^,][\w!,]+).*",
}
_HINT = "see https://docs.liquibase.com/concepts/changelogs/sql-format.html"


@dataclass
class Changeset:
    """One ``--changeset`` of a file, as Liquibase parses it."""

    file: Path
    line: int
    author: str
    id: str
    attributes: dict[str, str]
    body: list[tuple[int, str]] = field(default_factory=list)       # (file line, text) of SQL lines
    rollback: list[tuple[int, str]] = field(default_factory=list)   # pieces, each with its line
    valid_checksums: list[str] = field(default_factory=list)
    end_of_file: bool = False

    def flag(self, name: str, default: bool) -> bool:
        value = self.attributes.get(name)
        return default if value is None else value.lower() == "true"     # Java Boolean.parseBoolean

    @property
    def sql(self) -> str:
        """The SQL as Liquibase holds it: lines joined by newlines, trimmed as Java trims."""
        return _java_trim("".join(text + "\n" for _, text in self.body))


def _java_trim(text: str) -> str:
    start, end = 0, len(text)
    while start < end and ord(text[start]) <= 32:
        start += 1
    while end > start and ord(text[end - 1]) <= 32:
        end -= 1
    return text[start:end]


def _error(path: Path, line: int, message: str, hint: str = _HINT) -> LayoutError:
    return LayoutError(f"{path}:{line}: {message}", file=str(path), line=line, hint=hint)


def _lines(text: str) -> list[str]:
    """``BufferedReader.readLine``: splits on ``\\n``, ``\\r`` and ``\\r\\n``; a BOM is dropped."""
    parts = re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))
    return parts[:-1] if parts and parts[-1] == "" else parts


def is_changelog(text: str) -> bool:
    """True when the first non-blank line says ``--liquibase formatted``."""
    for line in _lines(text):
        if line.strip():
            return _FIRST_LINE.fullmatch(line) is not None
    return False


def detect(listing: Listing) -> bool:
    """A folder with a ``.sql`` file that starts ``--liquibase formatted sql``."""
    return any(_FIRST_LINE.fullmatch(first_line(path)) for path in listing.sql_files)


def parse_changelog(text: str, path: Path) -> list[Changeset]:
    """The changesets of one formatted SQL changelog; a LayoutError names file and line."""
    lines = _lines(text)
    properties: dict[str, str] = {}
    changesets: list[Changeset] = []
    current: Changeset | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        number = index
        if _PROPERTY.fullmatch(line):
            name = re.fullmatch(r".*name:\s*(\S+).*", line, _I)
            value = re.fullmatch(r".*value:\s*(\S+).*", line, _I)
            if name and value:
                properties.setdefault(name[1], value[1])    # Liquibase keeps the first definition
            continue
        if _ALT_PROPERTY.fullmatch(line):
            raise _error(path, number, "unexpected formatting: write --property name:<name> value:<value>")
        ignore = _IGNORE_LINES.fullmatch(line)
        if ignore:
            index = _skip(lines, index, ignore[1], path, number)
            continue
        if any(p.fullmatch(line) for p in _ALT_IGNORE):
            raise _error(path, number, "unexpected formatting: write --ignoreLines:<count|start>")
        start = _CHANGESET.fullmatch(line)
        if start:
            _finish(current, properties, path, number)
            current = _start(start, line, path, number, properties)
            changesets.append(current)
            continue
        if any(p.fullmatch(line) for p in _ALT_CHANGESET):
            raise _error(path, number, "a changeset needs an author and an id: --changeset <author>:<id>")
        if current is None:
            if _COMMENT.fullmatch(line):
                raise _error(path, number, "comment lines are not allowed outside changesets")
            if _INCLUDE.fullmatch(line):
                raise _error(path, number, "includes are not followed; put the included changelogs "
                             "in the folder (they run in file-name order)", hint="remove the include line")
            continue        # Liquibase ignores anything else before the first changeset
        index = _changeset_line(current, lines, index, line, number, path)
    if current is not None:
        current.end_of_file = True
        _finish(current, properties, path, len(lines) + 1)
    return changesets


def _skip(lines: Sequence[str], index: int, what: str, path: Path, number: int) -> int:
    if what == "start":
        while index < len(lines):
            index += 1
            if (end := _IGNORE_LINES.fullmatch(lines[index - 1])) and end[1] == "end":
                return index
            if _ALT_IGNORE[0].fullmatch(lines[index - 1]):
                raise _error(path, index, "unexpected formatting: write --ignoreLines:end")
        return index
    if not what.isdigit():
        raise _error(path, number, f'unknown ignoreLines syntax "{what}"')
    return min(len(lines), index + int(what))


def _start(match: re.Match[str], line: str, path: Path, number: int,
           properties: dict[str, str]) -> Changeset:
    author_group, id_group = match[1], match[2]
    if not re.fullmatch(r"\s*--[\s]*changeset\s+" + re.escape(f"{author_group}:{id_group}") + ".*", line, _I):
        raise _error(path, number, "a changeset needs an author and an id: --changeset <author>:<id>")
    change_id = _expand(id_group.strip('"'), properties)
    if not change_id.replace(":", "").replace(" ", ""):
        raise _error(path, number, "the changeset id is empty")
    attributes = {}
    for name, pattern in _ATTRIBUTES.items():
        found = re.fullmatch(pattern, line, _I)
        if found:
            attributes[name] = found[1]
    return Changeset(path, number, _expand(author_group.strip('"'), properties), change_id, attributes)


def _changeset_line(current: Changeset, lines: Sequence[str], index: int, line: str, number: int,
                    path: Path) -> int:
    """Sort one line of a changeset into comment, checksum, rollback, precondition or SQL."""
    if _COMMENT.fullmatch(line):
        return index
    if any(p.fullmatch(line) for p in _ALT_COMMENT):
        raise _error(path, number, "unexpected formatting: write --comment <comment>")
    if valid := _VALID_CHECKSUM.fullmatch(line):
        current.valid_checksums.append(valid[1].strip())
        return index
    if _ALT_VALID_CHECKSUM.fullmatch(line):
        raise _error(path, number, "unexpected formatting: write --validCheckSum <checksum>")
    if rollback := _ROLLBACK.fullmatch(line):
        current.rollback.append((number, rollback[1] + "\n"))
        return index
    if _ALT_ROLLBACK.fullmatch(line):
        raise _error(path, number, "unexpected formatting: write --rollback <SQL>")
    if _ROLLBACK_BLOCK_START.fullmatch(line):
        block = ""
        while index < len(lines):
            index += 1
            text = lines[index - 1]
            if _ROLLBACK_BLOCK_END.fullmatch(text):
                last = re.split(r"\*/\s*$", text)[0]
                block += last if last.strip() else ""
                current.rollback.append((number + 1, block))
                return index
            block += text                 # Liquibase joins the block's lines with no separator
        raise _error(path, number, "the /* liquibase rollback comment is not closed")
    if _PRECONDITIONS.fullmatch(line) or _PRECONDITION.fullmatch(line):
        return index                      # preconditions are not evaluated (see the module doc)
    if _ALT_PRECONDITION.fullmatch(line):
        raise _error(path, number, "unexpected formatting: write --precondition-sql-check …")
    current.body.append((number, line))
    return index


def _finish(changeset: Changeset | None, properties: dict[str, str], path: Path, number: int) -> None:
    if changeset is None:
        return
    if not changeset.sql:
        raise _error(path, changeset.line, f"changeset {changeset.id} by {changeset.author} has no SQL",
                     hint="add the changeset's SQL below its --changeset line")
    changeset.body = [(n, _expand(text, properties)) for n, text in changeset.body]
    changeset.rollback = [(n, _expand(text, properties)) for n, text in changeset.rollback]
    if (changeset.end_of_file and "endDelimiter" not in changeset.attributes
            and changeset.sql.endswith("\n/")):
        changeset.attributes["endDelimiter"] = "\n/$"    # what Liquibase sets for a trailing "/" line


def _expand(text: str, properties: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: properties.get(m[1], m[0]), text)


def applies_to_postgresql(dbms: str | None) -> bool:
    """``DatabaseList.definitionMatches`` for PostgreSQL (``all``, ``none``, ``!x`` lists)."""
    if not dbms or not dbms.strip():
        return True
    names = [n.strip().lower() for n in dbms.split(",") if n.strip()]
    if "none" in names:
        return False
    if any(n.startswith("!") for n in names):
        return "!postgresql" not in names
    return "all" in names or "postgresql" in names


# -- migrations ------------------------------------------------------------------------

def checksum_input(changeset: Changeset) -> bytes:
    """What Liquibase's checksum of this changeset covers, as ``hashed`` carries it.

    A small JSON document: the SQL (``9:`` hashes it with white space removed) and the
    attributes the ``8:`` form hashes in front of it, plus the ``--validCheckSum`` values and
    ``runOnChange`` (Liquibase accepts those edits), read by the liquibase history table.
    """
    return json.dumps({
        "sql": changeset.sql,
        "endDelimiter": changeset.attributes.get("endDelimiter"),
        "splitStatements": changeset.flag("splitStatements", True),
        "stripComments": changeset.flag("stripComments", True),
        "validCheckSums": changeset.valid_checksums,
        "runOnChange": changeset.flag("runOnChange", False) or changeset.flag("runAlways", False),
    }, sort_keys=True).encode("utf-8")


def _split(pieces: Sequence[tuple[int, str]], delimiter: str | None, split: bool,
           path: Path, transactional: bool) -> Part:
    """A Part for SQL pieces: the text keeps file lines (blank where Liquibase dropped a line)."""
    if not pieces:
        return Part(path, text="", transactional=transactional, wrapped=True)
    first = pieces[0][0]
    text = ""
    for number, piece in pieces:
        text += "\n" * max(0, number - first - text.count("\n")) + piece.rstrip("\n") + "\n"
    if not split:
        return Part(path, text=text, first_line=first, transactional=transactional, wrapped=True,
                    statements=(_statement(text, first),) if text.strip() else ())
    if delimiter in (None, "", ";"):
        return Part(path, text=text, first_line=first, transactional=transactional, wrapped=True)
    literal = _delimiter(delimiter)
    statements = []
    start = 0
    lines = text.split("\n")
    for offset, line in enumerate(lines):
        if _ends_with(line, literal):
            chunk = "\n".join([*lines[start:offset], line.rstrip()[: -len(literal)]])
            if chunk.strip():
                statements.append(_statement(chunk, first + start))
            start = offset + 1
    rest = "\n".join(lines[start:])
    if rest.strip():
        statements.append(_statement(rest, first + start))
    return Part(path, text=text, first_line=first, transactional=transactional, wrapped=True,
                statements=tuple(statements))


def _delimiter(value: str) -> str:
    """The text an ``endDelimiter`` value stands for: ``\\n/$`` and ``/`` are both ``/``."""
    text = value.replace("\\n", "\n").removesuffix("$").strip("\n")
    return re.sub(r"\\(.)", r"\1", text) or value


def _ends_with(line: str, literal: str) -> bool:
    """A line ends with the delimiter (a word delimiter such as GO only as a whole word)."""
    line = line.rstrip()
    if not line.lower().endswith(literal.lower()):
        return False
    before = line[: len(line) - len(literal)]
    return not ((literal[:1].isalnum() and before[-1:].isalnum()) or before[-1:] == "_")


def _statement(chunk: str, line: int) -> Statement:
    stripped = chunk.lstrip()
    line += chunk[: len(chunk) - len(stripped)].count("\n")
    return Statement(stripped.rstrip(), line)


def to_migration(changeset: Changeset, position: int, by_key: dict[str, Changeset]) -> Migration:
    """One changeset as a step: its SQL up, its rollback down."""
    transactional = changeset.flag("runInTransaction", True)
    up = _split(changeset.body, changeset.attributes.get("endDelimiter"),
                changeset.flag("splitStatements", True), changeset.file, transactional)
    down: Part | None = None
    rollback = "".join(piece for _, piece in changeset.rollback)
    if re.fullmatch(r"(not required|empty).*", rollback.strip().lower()):
        down = Part(changeset.file, text="", first_line=changeset.rollback[0][0],
                    transactional=transactional, wrapped=True)
    elif "changesetid" in rollback.lower():
        down = _rollback_to(changeset, rollback, by_key, transactional)
    elif rollback.strip():
        down = _split(changeset.rollback, changeset.attributes.get("rollbackEndDelimiter"),
                      changeset.flag("rollbackSplitStatements", True), changeset.file, transactional)
    return Migration(version=str(position), description=f"{changeset.id} by {changeset.author}",
                     up=up, down=down, history_id=f"{changeset.id}:{changeset.author}",
                     hashed=checksum_input(changeset))


def _rollback_to(changeset: Changeset, text: str, by_key: dict[str, Changeset],
                 transactional: bool) -> Part:
    """``--rollback changesetId:x changesetAuthor:y``: that changeset's SQL is the rollback."""
    flat = text.replace("\n", "").replace("\r", "")
    found_id = re.fullmatch(r".*changeSetId:(\S+).*", flat, _I)
    found_author = re.fullmatch(r".*changesetAuthor:(\S+).*", flat, _I)
    line = changeset.rollback[0][0]
    if not found_id or not found_author:
        raise _error(changeset.file, line,
                     "a rollback naming a changeset needs changesetId: and changesetAuthor:")
    other = by_key.get(f"{found_id[1]}:{found_author[1]}")
    if other is None:
        raise _error(changeset.file, line, f"the rollback names changeset {found_id[1]} by "
                     f"{found_author[1]}, which is not before it in the folder")
    return _split(other.body, other.attributes.get("endDelimiter"), other.flag("splitStatements", True),
                  other.file, transactional)


def load(directory: Path) -> MigrationSet:
    """Every formatted changelog of the folder, by file name; changesets in file order."""
    # Every .sql file counts, changelog.sql included (a name the shared ignore list skips as
    # if it were a CHANGELOG.md): a header-less one is refused below, never skipped.
    files = [p for p in Listing.of(directory).sql_files if not p.name.startswith(".")]
    by_key: dict[str, Changeset] = {}
    migrations: list[Migration] = []
    for path in files:
        text = read_text(path)
        if not text.strip():
            continue                          # Liquibase skips an empty file with a warning
        if not is_changelog(text):
            raise LayoutError(f"{path}: not a formatted SQL changelog (its first line is not "
                              "--liquibase formatted sql)", file=str(path), line=1,
                              hint="start every .sql file of the folder with --liquibase formatted sql")
        for changeset in parse_changelog(text, path):
            if changeset.flag("ignore", False) or not applies_to_postgresql(changeset.attributes.get("dbms")):
                continue
            key = f"{changeset.id}:{changeset.author}"
            if key in by_key:
                earlier = by_key[key]
                raise _error(path, changeset.line, f"changeset {changeset.id} by {changeset.author} "
                             f"is also at {earlier.file.name}:{earlier.line}",
                             hint="give every changeset its own id (drillbook matches history by id:author)")
            migrations.append(to_migration(changeset, len(migrations) + 1, by_key))
            by_key[key] = changeset
    if not migrations:
        raise LayoutError(f"{directory}: no changesets found", directory=str(directory),
                          hint="add a --changeset author:id line and its SQL")
    return MigrationSet(directory, NAME, tuple(migrations), (directory,), ordinal_versions=True)
