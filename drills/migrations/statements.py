"""A step's SQL made ready to run: its text, split into statements with their file lines.

Text is split with PostgreSQL's own parser (pglast), so a failing step names its file, the
statement and the line; text pglast cannot parse is sent whole and the server's error position
gives the line. A layout may split a part itself (goose's ``StatementBegin``/``StatementEnd``, a
Liquibase ``endDelimiter``): its statements are then taken as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .layouts.common import read_text
from .model import Part, Statement


@dataclass(frozen=True)
class Script:
    """A part ready to run: its text, statements (None when unparsed), where it starts in the file."""

    path: Path
    text: str
    statements: tuple[Statement, ...] | None
    parse_error: str | None = None
    first_line: int = 1
    # False: the layout says this part runs outside a transaction (goose NO TRANSACTION, …).
    transactional: bool = True
    # The tool wraps the part in one transaction, whatever it holds (see Part.wrapped).
    wrapped: bool = False

    @property
    def empty(self) -> bool:
        return self.statements == () or not self.text.strip()

    @property
    def autocommit(self) -> bool:
        if not self.transactional:
            return not self.empty
        if self.wrapped:
            return False
        return bool(self.statements) and any(s.needs_autocommit for s in self.statements or ())


# Statements PostgreSQL refuses inside a transaction block, and transaction control:
# a file holding them manages its own transactions, so it runs in autocommit.
_AUTOCOMMIT_NODES = {"TransactionStmt", "VacuumStmt", "AlterSystemStmt", "CreatedbStmt", "DropdbStmt",
                     "CreateTableSpaceStmt", "DropTableSpaceStmt"}


def read_script(source: Part | Path) -> Script:
    """Read a part (or a whole file) and split it with PostgreSQL's parser (pglast)."""
    part = source if isinstance(source, Part) else Part(source)
    text = read_text(part.path) if part.text is None else part.text
    common = {"first_line": part.first_line, "transactional": part.transactional, "wrapped": part.wrapped}
    if part.statements is not None:
        return Script(part.path, text, part.statements, **common)  # type: ignore[arg-type]
    if not text.strip():
        return Script(part.path, text, (), **common)  # type: ignore[arg-type]
    try:
        return Script(part.path, text, tuple(split_statements(text, first_line=part.first_line)),
                      **common)  # type: ignore[arg-type]
    except ParseFailure as exc:
        # The server is the judge: the text is sent whole, its error position gives the line.
        return Script(part.path, text, None, parse_error=str(exc), **common)  # type: ignore[arg-type]


class ParseFailure(Exception):
    """pglast could not parse the text (kept internal: the server decides)."""


def split_statements(text: str, *, first_line: int = 1) -> Iterator[Statement]:
    """The statements of a SQL text with their line (counted from ``first_line``), via libpg_query."""
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(text))
    except parser.ParseError as exc:
        raise ParseFailure(str(exc)) from exc
    data = text.encode("utf-8")
    for raw in tree.get("stmts", []):
        start = int(raw.get("stmt_location", 0))
        length = int(raw.get("stmt_len", 0)) or len(data) - start
        chunk = data[start:start + length].decode("utf-8")
        # libpg_query's location may include leading whitespace or comments: count to the first token.
        lead = len(chunk) - len(chunk.lstrip())
        line = data[:start].count(b"\n") + chunk[:lead].count("\n") + first_line
        node = next(iter(raw.get("stmt", {})), "")
        body = raw.get("stmt", {}).get(node, {})
        yield Statement(chunk.strip(), line, needs_autocommit(node, body))


def needs_autocommit(node: str, body: dict[str, object]) -> bool:
    """Whether a parsed statement cannot run inside a transaction block (or controls one)."""
    return node in _AUTOCOMMIT_NODES or (
        node in ("IndexStmt", "ReindexStmt", "DropStmt") and bool(
            body.get("concurrent") or any("concurrently" in json.dumps(p).lower()
                                          for p in body.get("params", []) or [])))  # type: ignore[attr-defined]
