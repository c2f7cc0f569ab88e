"""Atlas versioned migrations: ``<version>_<name>.sql`` files plus ``atlas.sum``.

What Atlas does (ariga/atlas ``sql/migrate/dir.go``, ``cmd/atlas/internal/cmdapi``), and
what this module does alike:

* **Files**: every ``*.sql`` at the top of the folder, sorted by name (byte order); the
  version is the name before the first ``_`` (``20220318104614_initial.sql`` →
  ``20220318104614``), the description the rest without ``.sql``.
* **atlas.sum** (``HashFile``): first line ``h1:<sum>``, then one ``<file> h1:<hash>`` line
  per file. The per-file hash is *cumulative*: one SHA-256 is fed each file's name and then
  its bytes, in order, and after each file its digest so far (base64) is that file's hash.
  A file whose first line carries ``atlas:sum ignore`` feeds only its name and gets no
  line. The first line is the SHA-256 over every line's name and hash (without ``h1:``).
* **Validation** (``migrate.Validate``, run by ``atlas migrate validate`` and before every
  ``apply``): the sum file must parse, its first line must match its own lines, and its
  lines must equal those computed from the files. Any difference is :class:`SumMismatch`
  naming the file: added, removed, or the first one edited (a cumulative hash cannot tell
  whether later files were edited too). Integrity is checked here, before any SQL runs.
* **Transactions**: ``-- atlas:txmode none`` runs the file outside a transaction
  (``transactional=False``); ``-- atlas:txmode file`` (the default) in one. The directive
  must be in the file's header comment block, followed by a blank line; ``all``, an unknown
  mode or two txmode directives are errors, as in Atlas.
* ``-- atlas:delimiter X`` splits the file on ``X`` instead of PostgreSQL's parser.
* ``-- atlas:checkpoint`` files are refused: on an empty database Atlas starts from the
  last checkpoint and skips the files before it, which this layout does not model yet.

What Atlas records per applied file (``atlas_schema_revisions.hash``) is that file's
cumulative hash: :attr:`Migration.hashed` carries it as ``b"h1:<hash>"``, exactly the
atlas.sum entry, for :mod:`checks.migration_history.tables.atlas`.

Errors::

    LayoutError
    └── IntegrityFailed
        └── SumMismatch    atlas.sum missing, malformed, or not matching the files: a failed
                           verdict ``migrations.atlas_sum`` (exit 1), not "could not check"
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..model import IntegrityFailed, LayoutError, Migration, MigrationSet, Part, Statement
from .common import Listing, read_text, require_name_order

NAME = "atlas"
SUM_FILE = "atlas.sum"
CHECK_ID = "migrations.atlas_sum"

# Atlas's directive regexp (dir.go reDirective), anchored at the start of the text given:
# printable-ASCII prefix, `atlas:<name>`, then optional space-separated arguments.
_DIRECTIVE = re.compile(r"([ -~]*)atlas:(\w+)(?: +([ -~]*))*", re.ASCII)
_VERSION = re.compile(r"^\d+$")


class SumMismatch(IntegrityFailed):
    """atlas.sum does not vouch for the files: refused before any of them runs (a finding,
    reported as a failed ``migrations.atlas_sum`` verdict, not as "could not check")."""

    check_id = CHECK_ID
    default_hint = ("if the change is intended, run `atlas migrate hash` and commit atlas.sum; "
                    "otherwise restore the file from version control")


@dataclass(frozen=True)
class SumEntry:
    """One ``<file> h1:<hash>`` line of atlas.sum (hash without the ``h1:`` prefix)."""

    name: str
    hash: str
    line: int = 0


def directive(content: str, name: str) -> str | None:
    """Atlas's ``directive(content, name)``: the argument when ``content`` starts with one."""
    match = _DIRECTIVE.match(content)
    if match and match[2] == name:
        return match[3] or ""
    return None


def header_comments(content: str) -> list[tuple[int, str]]:
    """Atlas's ``LocalFile.comments()``: the leading ``--``/``#`` lines (1-based line, text
    trimmed), but only when a blank line separates them from the statements."""
    comments: list[tuple[int, str]] = []
    line = 1
    while content.startswith(("#", "--")):
        end = content.find("\n")
        if end == -1:
            comments.append((line, content))   # a comments-only file: Atlas keeps it untrimmed
            return comments
        comments.append((line, content[:end].strip()))
        content = content[end + 1:]
        line += 1
    return comments if content.startswith("\n") else []


def file_directives(content: str, name: str) -> list[tuple[int, str]]:
    """Every header directive ``name`` with its line (Atlas's ``LocalFile.Directive``)."""
    found = []
    for line, comment in header_comments(content):
        value = directive(comment, name)
        if value is not None:
            found.append((line, value))
    return found


def compute_sum(files: list[tuple[str, bytes]]) -> list[SumEntry]:
    """Atlas's ``NewHashFile``: the cumulative hash of each file, in the given (name) order."""
    running = hashlib.sha256()
    entries = []
    for name, data in files:
        running.update(name.encode("utf-8"))
        if directive(data.decode("utf-8", errors="replace"), "sum") == "ignore":
            continue
        running.update(data)
        entries.append(SumEntry(name, base64.b64encode(running.digest()).decode("ascii")))
    return entries


def total_sum(entries: list[SumEntry]) -> str:
    """Atlas's ``HashFile.Sum``: SHA-256 over every entry's name and hash, base64."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(entry.name.encode("utf-8"))
        digest.update(entry.hash.encode("utf-8"))
    return base64.b64encode(digest.digest()).decode("ascii")


def render_sum(entries: list[SumEntry]) -> str:
    """Atlas's ``HashFile.MarshalText``: the atlas.sum text ``atlas migrate hash`` writes."""
    return f"h1:{total_sum(entries)}\n" + "".join(f"{e.name} h1:{e.hash}\n" for e in entries)


def parse_sum(text: str, *, path: Path) -> tuple[str, list[SumEntry]]:
    """Atlas's ``HashFile.UnmarshalText``: the recorded sum and entries; SumMismatch when
    a line has no ``h1:`` or the first line does not match the entries (a hand edit)."""
    # bufio.ScanLines: split on \n, drop one trailing \r per line, no empty last line.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    recorded = lines[0].removeprefix("h1:") if lines else ""
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        name, sep, digest = line.partition("h1:")
        if not sep:
            raise SumMismatch(f"{path}:{number}: atlas.sum line is not `<file> h1:<hash>`: {line!r}",
                              file=SUM_FILE, line=number)
        entries.append(SumEntry(name.strip(), digest, number))
    if recorded != total_sum(entries):
        raise SumMismatch(f"{path}:1: atlas.sum was edited by hand: its first line does not "
                          "match the file hashes below it", file=SUM_FILE, line=1)
    return recorded, entries


def validate_sum(directory: Path, recorded: list[SumEntry], computed: list[SumEntry]) -> None:
    """Atlas's ``migrate.Validate``: the recorded entries must equal the computed ones.

    Raises SumMismatch naming the added, removed or first edited file.
    """
    if [(e.name, e.hash) for e in recorded] == [(e.name, e.hash) for e in computed]:
        return
    on_disk = {e.name for e in computed}
    in_sum = {e.name for e in recorded}
    added = sorted(on_disk - in_sum)
    removed = sorted(in_sum - on_disk)
    where = directory / SUM_FILE
    if added or removed:
        parts = ([f"added since atlas.sum was written: {', '.join(added)}"] if added else []) + (
            [f"listed in atlas.sum but missing: {', '.join(removed)}"] if removed else [])
        first = (added or removed)[0]
        raise SumMismatch(f"{where}: the migration files do not match atlas.sum: {'; '.join(parts)}",
                          file=first, added=added, removed=removed)
    by_name = {e.name: e for e in recorded}
    for entry in computed:
        expected = by_name[entry.name]
        if expected.hash != entry.hash:
            raise SumMismatch(
                f"{where}:{expected.line}: {entry.name} was edited after atlas.sum was written "
                f"(h1:{entry.hash}, atlas.sum has h1:{expected.hash}); later files cannot be "
                "checked apart from it, atlas.sum hashes being cumulative",
                file=entry.name, line=expected.line, edited=[entry.name])
    raise SumMismatch(f"{where}: atlas.sum lists the files in another order than their names",
                      file=SUM_FILE)


def detect(listing: Listing) -> bool:
    """An ``atlas.sum`` beside the files is Atlas's own marker."""
    return any(p.name == SUM_FILE for p in listing.files)


def load(directory: Path) -> MigrationSet:
    """Read, integrity-check and order an Atlas migration folder (nothing runs before the
    sum matches)."""
    sql_files = sorted(Listing.of(directory).sql_files, key=lambda p: p.name.encode("utf-8"))
    sum_path = directory / SUM_FILE
    if not sum_path.is_file():
        raise SumMismatch(f"{directory}: no atlas.sum beside {len(sql_files)} migration files "
                          "(atlas migrate validate: checksum file not found)",
                          file=SUM_FILE,
                          hint="run `atlas migrate hash` and commit atlas.sum")
    if not sql_files:
        raise LayoutError(f"{directory}: atlas.sum but no *.sql migration files",
                          directory=str(directory))
    contents = [(p.name, p.read_bytes()) for p in sql_files]
    _, recorded = parse_sum(read_text(sum_path), path=sum_path)
    computed = compute_sum(contents)
    validate_sum(directory, recorded, computed)
    hashes = {e.name: e.hash for e in computed}
    migrations = [_migration(directory, path, data, hashes.get(path.name))
                  for path, (_, data) in zip(sql_files, contents, strict=True)]
    seen: dict[str, str] = {}
    for migration in migrations:
        if migration.version in seen:
            raise LayoutError(f"{directory}: duplicate version {migration.version}: "
                              f"{seen[migration.version]} and {migration.up.path.name}",
                              directory=str(directory), file=migration.up.path.name,
                              hint="give every migration its own version")
        seen[migration.version] = migration.up.path.name
    require_name_order(directory, [(m.up.path.name, m.version) for m in migrations],
                       tool="Atlas", sort_by="files run in name order")
    return MigrationSet(directory, NAME, tuple(migrations), (directory,))


def _migration(directory: Path, path: Path, data: bytes, cumulative: str | None) -> Migration:
    name = path.name
    version = name.removesuffix(".sql").split("_", 1)[0]
    description = name.split("_", 1)[1].removesuffix(".sql") if "_" in name else ""
    if not _VERSION.match(version):
        raise LayoutError(f"{directory}: {name}: Atlas's version is the name before the first `_`, "
                          f"here {version!r}, which is not a number", directory=str(directory),
                          file=name, hint="name files <timestamp>_<name>.sql, as `atlas migrate diff` does")
    text = read_text(path)
    if file_directives(text, "checkpoint"):
        raise LayoutError(f"{directory}: {name}: atlas:checkpoint files are not supported: Atlas "
                          "starts an empty database from the last checkpoint",
                          directory=str(directory), file=name, line=1,
                          hint="replay a folder without checkpoint files")
    return Migration(version, description,
                     Part(path, transactional=_transactional(directory, name, text),
                          statements=_delimited(directory, name, text)),
                     hashed=None if cumulative is None else f"h1:{cumulative}".encode("ascii"))


def _transactional(directory: Path, name: str, text: str) -> bool:
    """Atlas's txmodeFor: one ``none`` or ``file`` directive at most; ``all`` is refused."""
    modes = file_directives(text, "txmode")
    if len(modes) > 1:
        raise LayoutError(f"{directory}: {name}:{modes[1][0]}: more than one atlas:txmode "
                          "directive", directory=str(directory), file=name, line=modes[1][0])
    if not modes:
        return True
    line, mode = modes[0]
    if mode == "all":
        raise LayoutError(f"{directory}: {name}:{line}: atlas:txmode all is not allowed in a file "
                          "(Atlas: use `file`)", directory=str(directory), file=name, line=line)
    if mode not in ("none", "file"):
        raise LayoutError(f"{directory}: {name}:{line}: unknown atlas:txmode {mode!r} "
                          "(none or file)", directory=str(directory), file=name, line=line)
    return mode == "file"


def _delimited(directory: Path, name: str, text: str) -> tuple[Statement, ...] | None:
    """With ``-- atlas:delimiter X`` the file's statements are the pieces between ``X``s."""
    found = file_directives(text, "delimiter")
    if not found:
        return None
    line, raw = found[0]
    # Written with escapes in the directive (`\n\n` for a blank line between statements).
    delimiter = raw.encode("ascii").decode("unicode_escape") if raw else ""
    if not delimiter:
        raise LayoutError(f"{directory}: {name}:{line}: empty atlas:delimiter",
                          directory=str(directory), file=name, line=line)
    statements = []
    offset = 0
    for piece in text.split(delimiter):
        stripped = piece.strip()
        if stripped and not all(ln.strip().startswith(("--", "#")) or not ln.strip()
                                for ln in stripped.splitlines()):
            lead = len(piece) - len(piece.lstrip())
            statements.append(Statement(stripped, text[: offset + lead].count("\n") + 1))
        offset += len(piece) + len(delimiter)
    return tuple(statements)
