"""goose: ``<version>_<name>.sql`` with ``-- +goose Up`` / ``-- +goose Down`` sections.

A goose file holds both directions; applied whole, its down section would undo its up section
in the same step. The sections are read the way goose's own parser reads them
(``internal/sqlparser/parser.go`` of pressly/goose v3, ``ParseSQLMigration`` and
``extractAnnotation``), transcribed rule by rule:

- an annotation is a line starting with ``--`` (no leading whitespace) that names ``+goose``
  once and then one of ``Up``, ``Down``, ``StatementBegin``, ``StatementEnd``,
  ``NO TRANSACTION``, ``ENVSUB ON``, ``ENVSUB OFF`` (any case); any other ``+goose`` comment is
  refused, as goose refuses it;
- ``Up`` comes first (blank lines and comments may precede it), once; ``Down`` after it, once;
- outside ``StatementBegin``/``StatementEnd`` a statement ends on a line whose last word before
  a ``--`` comment ends with ``;``; comments and empty lines before a statement are dropped;
- between ``StatementBegin`` and ``StatementEnd`` everything is one statement (a function body);
- ``NO TRANSACTION`` anywhere makes both directions run outside a transaction.

So each direction becomes a :class:`~drills.migrations.model.Part` whose ``statements`` are
goose's own split (the text is sent to the server exactly as goose sends it), with the file's
line numbers. ``ENVSUB ON``/``OFF`` is accepted as an annotation, but no ``${VAR}`` substitution
is done: drillbook does not read the environment goose would have read, so a statement that
depends on it fails visibly in the replay rather than running with guessed values.

Two of goose's quirks are refused rather than copied, because copying them would replay
something other than what the author wrote: an empty ``StatementBegin``/``StatementEnd`` block
makes goose drop the next SQL line without a word (drillbook names that line), and a Go
migration (``00002_x.go``) cannot run outside the team's Go binary (drillbook names it and
points at ``--command``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from ..model import LayoutError, Migration, MigrationSet, Part, Statement
from .common import Listing, Versions, is_ignored, read_text, shown

NAME = "goose"

_FILE = re.compile(r"^(?P<version>\d+)_(?P<name>.*)\.sql$")
# A numbered Go migration (goose.AddMigration in the team's binary); goose skips *_test.go.
_GO_FILE = re.compile(r"^\d+_.*\.go$")
# Detection's first sieve: a line that may be an up annotation (says_up decides).
_MAYBE_UP = re.compile(r"^--.*\+goose.*up", re.IGNORECASE | re.MULTILINE)
_HINT = "see https://github.com/pressly/goose#sql-migrations for the annotations goose reads"


class Annotation(enum.StrEnum):
    """The annotations goose reads (``-- +goose <name>``), by their canonical spelling."""

    UP = "Up"
    DOWN = "Down"
    STATEMENT_BEGIN = "StatementBegin"
    STATEMENT_END = "StatementEnd"
    NO_TRANSACTION = "NO TRANSACTION"
    ENVSUB_ON = "ENVSUB ON"
    ENVSUB_OFF = "ENVSUB OFF"


_BY_FOLDED = {a.value.casefold(): a for a in Annotation}


class _State(enum.Enum):
    START = "before -- +goose Up"
    UP = "up section"
    UP_BLOCK = "up StatementBegin block"
    # After an empty StatementBegin/StatementEnd block goose drops the next SQL line.
    UP_AFTER_EMPTY = "after an empty up block"
    DOWN = "down section"
    DOWN_BLOCK = "down StatementBegin block"
    DOWN_AFTER_EMPTY = "after an empty down block"


_BLOCKS = {_State.UP_BLOCK, _State.DOWN_BLOCK}
_AFTER_EMPTY = {_State.UP_AFTER_EMPTY, _State.DOWN_AFTER_EMPTY}
_UP_SIDE = {_State.UP, _State.UP_BLOCK, _State.UP_AFTER_EMPTY}


@dataclass(frozen=True)
class Section:
    """One direction of a goose file: its lines as text, where they start, goose's statements."""

    text: str
    first_line: int
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class GooseFile:
    """A parsed goose file: the up section, the down section (None without ``-- +goose Down``)."""

    up: Section
    down: Section | None
    transactional: bool


def scan_lines(text: str) -> list[str]:
    """The file's lines as Go's ``bufio.ScanLines`` yields them: split on LF, one CR dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final line break ends the last line, it does not start an empty one
    return [line.removesuffix("\r") for line in lines]


def ends_statement(line: str) -> bool:
    """goose's ``endsWithSemicolon``: the last word before a ``--`` word ends with ``;``."""
    last = ""
    for word in line.split():
        if word.startswith("--"):
            break
        last = word
    return last.endswith(";")


def _error(file: str, line: int | None, message: str, hint: str = _HINT) -> LayoutError:
    where = f"{file}:{line}" if line is not None else file
    return LayoutError(f"{where}: {message}", file=file, **({"line": line} if line is not None else {}),
                       hint=hint)


def annotation(line: str, *, file: str, number: int) -> Annotation:
    """What an annotation line says (goose's ``extractAnnotation``); LayoutError when goose refuses it."""
    if line.startswith((" ", "\t")):
        raise _error(file, number, f"goose refuses an annotation with leading whitespace: {line.strip()!r}",
                     "start the annotation line with `--`")
    command = line.replace("--", "").replace("+goose", "", 1)
    if "+goose" in command:
        raise _error(file, number, f"goose refuses a line with two +goose annotations: {line.strip()!r}")
    command = command.strip()
    if not command:
        raise _error(file, number, "empty goose annotation (`-- +goose` names nothing)")
    found = _BY_FOLDED.get(command.casefold())
    if found is None:
        raise _error(file, number, f"goose does not know the annotation {command!r} "
                                   f"(it reads {', '.join(a.value for a in Annotation)})")
    return found


def says_up(line: str) -> bool:
    """Whether goose reads the line as ``-- +goose Up``."""
    if not (line.strip().startswith("--") and "+goose" in line):
        return False
    try:
        return annotation(line, file="", number=0) is Annotation.UP
    except LayoutError:
        return False


def parse_file(text: str, *, file: str) -> GooseFile:
    """Split a goose file into its sections and statements, or raise LayoutError naming file and line."""
    return _Parser(file).run(scan_lines(text))


class _Parser:
    """goose's state machine over one file, collecting both directions in one pass."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.state = _State.START
        self.transactional = True
        self.buffer: list[tuple[int, str]] = []
        self.statements: dict[bool, list[Statement]] = {True: [], False: []}
        self.up_at: int | None = None
        self.down_at: int | None = None
        self.block_at = 0
        self.empty_block_at = 0

    def run(self, lines: list[str]) -> GooseFile:
        # A file with no Up at all is said as such, not as SQL before an Up it does not have.
        if not any(says_up(line) for line in lines):
            raise self.no_up()
        for number, line in enumerate(lines, start=1):
            self.line(number, line)
        if self.state is _State.START:
            raise self.no_up()
        if self.state in _BLOCKS:
            raise _error(self.file, self.block_at, "`-- +goose StatementBegin` has no "
                                                   "`-- +goose StatementEnd`",
                         "close the block with a `-- +goose StatementEnd` line")
        self.unfinished("the end of the file")
        assert self.up_at is not None
        up_end = self.down_at if self.down_at is not None else len(lines) + 1
        up = self.section(lines, self.up_at + 1, up_end, self.statements[True])
        down = (self.section(lines, self.down_at + 1, len(lines) + 1, self.statements[False])
                if self.down_at is not None else None)
        return GooseFile(up, down, self.transactional)

    def no_up(self) -> LayoutError:
        return _error(self.file, None, "no `-- +goose Up` annotation: goose refuses the file",
                      "start the migration with a `-- +goose Up` line (and `-- +goose Down` "
                      "before its rollback)")

    @staticmethod
    def section(lines: list[str], start: int, end: int, statements: list[Statement]) -> Section:
        return Section("\n".join(lines[start - 1:end - 1]), start, tuple(statements))

    def line(self, number: int, line: str) -> None:
        if self.state is _State.START and not line.strip():
            return
        if line.strip().startswith("--") and "+goose" in line:
            self.annotated(number, annotation(line, file=self.file, number=number))
            return
        # Comments and empty lines before a statement are not part of it.
        if not self.buffer and (line.strip().startswith("--") or line == ""):
            return
        if self.state is _State.START:
            raise _error(self.file, number, "SQL before the `-- +goose Up` annotation: goose refuses it",
                         "move the statement below `-- +goose Up`")
        if self.state in _AFTER_EMPTY:
            if line.strip():
                raise _error(self.file, number,
                             f"goose would skip this line: it follows the empty StatementBegin/"
                             f"StatementEnd block ending at line {self.empty_block_at}",
                             "remove the empty block, or put the statement inside it")
            self.state = _State.UP if self.state is _State.UP_AFTER_EMPTY else _State.DOWN
            return
        self.buffer.append((number, line))
        if self.state in (_State.UP, _State.DOWN) and ends_statement(line):
            self.emit()

    def annotated(self, number: int, found: Annotation) -> None:
        state = self.state
        if found is Annotation.UP:
            if state is not _State.START:
                raise _error(self.file, number,
                             f"a second `-- +goose Up` (the first is at line {self.up_at})")
            self.state, self.up_at = _State.UP, number
        elif found is Annotation.DOWN:
            if state is _State.START:
                raise _error(self.file, number, "`-- +goose Down` before `-- +goose Up`",
                             "put the up section first, then `-- +goose Down` and the rollback")
            if state not in (_State.UP, _State.UP_AFTER_EMPTY):
                raise _error(self.file, number, f"`-- +goose Down` in the {state.value}"
                             + (f" (the first Down is at line {self.down_at})" if self.down_at else ""))
            self.unfinished("`-- +goose Down`")
            self.buffer = []
            self.state, self.down_at = _State.DOWN, number
        elif found is Annotation.STATEMENT_BEGIN:
            if state in (_State.UP, _State.UP_AFTER_EMPTY):
                self.state = _State.UP_BLOCK
            elif state in (_State.DOWN, _State.DOWN_AFTER_EMPTY):
                self.state = _State.DOWN_BLOCK
            else:
                raise _error(self.file, number, f"`-- +goose StatementBegin` in the {state.value}",
                             "open a block only inside the up or down section, and close it first")
            self.block_at = number
        elif found is Annotation.STATEMENT_END:
            if state not in _BLOCKS:
                raise _error(self.file, number, "`-- +goose StatementEnd` without `-- +goose StatementBegin`")
            up = state is _State.UP_BLOCK
            if self.buffer:
                self.emit()
                self.state = _State.UP if up else _State.DOWN
            else:
                self.empty_block_at = number
                self.state = _State.UP_AFTER_EMPTY if up else _State.DOWN_AFTER_EMPTY
        elif found is Annotation.NO_TRANSACTION:
            self.transactional = False
        # ENVSUB ON/OFF: accepted; no substitution is done (see the module docstring).

    def unfinished(self, where: str) -> None:
        """goose refuses SQL left without its closing semicolon when a section ends."""
        if "".join(text for _, text in self.buffer).strip():
            first = next(n for n, text in self.buffer if text.strip())
            raise _error(self.file, first, f"statement not ended by `;` before {where}: goose refuses it "
                                           "(missing semicolon?)",
                         "end the statement with `;` at the end of a line, or wrap it in "
                         "`-- +goose StatementBegin` / `-- +goose StatementEnd`")

    def emit(self) -> None:
        """The buffered lines become one statement (goose trims it); nothing when only whitespace."""
        text = "\n".join(line for _, line in self.buffer).strip()
        if text:
            first = next(n for n, line in self.buffer if line.strip())
            self.statements[self.state in _UP_SIDE].append(Statement(text, first))
        self.buffer = []


def detect(listing: Listing) -> bool:
    """A goose folder: some .sql file has a ``-- +goose Up`` annotation line."""
    for path in listing.sql_files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # load names the unreadable file
        if _MAYBE_UP.search(text) and any(says_up(line) for line in scan_lines(text)):
            return True
    return False


def load(directory: Path) -> MigrationSet:
    """Every ``<version>_<name>.sql`` of the folder, each split into its up and down sections."""
    listing = Listing.of(directory)
    versions = Versions(directory)
    count = 0
    for path in listing.files:
        name = path.name
        if is_ignored(path):
            continue
        if _GO_FILE.match(name) and not name.endswith("_test.go"):
            raise LayoutError(
                f"{directory}: {name} is a goose Go migration: drillbook replays SQL only",
                directory=str(directory), file=name,
                hint="replay this folder through the team's own binary with --command "
                     "(e.g. --command \"go run ./cmd/migrate up\")")
        if not name.endswith(".sql"):
            continue
        match = _FILE.match(name)
        if match is None:
            raise LayoutError(f"{directory}: {name} does not fit the goose layout (<version>_<name>.sql)",
                              directory=str(directory), file=name,
                              hint="name goose migrations like 20240101120000_add_users.sql")
        if int(match["version"]) < 1:
            raise LayoutError(f"{directory}: {name}: goose versions start at 1", directory=str(directory),
                              file=name, hint="version 0 is goose's own first row: renumber the file")
        parsed = parse_file(read_text(path), file=shown(path, directory))
        up = Part(path, parsed.up.text, parsed.up.first_line, parsed.transactional, parsed.up.statements)
        down = (Part(path, parsed.down.text, parsed.down.first_line, parsed.transactional,
                     parsed.down.statements) if parsed.down is not None else None)
        versions.add(Migration(match["version"], match["name"], up, down))
        count += 1
    if not count:
        raise LayoutError(f"{directory}: no goose migrations (<version>_<name>.sql)",
                          directory=str(directory))
    return versions.set(NAME)
