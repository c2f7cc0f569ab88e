"""Plain SQL backups (``pg_dump -Fp``, ``pg_dumpall``): reading them, and feeding them to psql safely.

A plain dump is a psql script, and psql executes the meta-commands it finds
in a script (``\\!`` runs a shell command, ``\\o |cmd`` pipes to one, ``\\c``
connects elsewhere, ``\\copy`` reads and writes client files). A backup is
untrusted, so :class:`PsqlFeed` puts psql into ``\\restrict`` mode with a key
drillbook draws per restore before the first line of the file: psql then
refuses every meta-command except ``\\unrestrict <key>``, which the file cannot
know. The dump's own ``\\restrict``/``\\unrestrict`` lines (pg_dump 15.14+
writes them) are blanked, and so are the statements ``pg_restore --no-owner
--no-acl`` would skip: ownership and privileges name roles the scratch server
does not have, and the restore role may not take them. pg_dumpall's
``\\encoding NAME`` (for a database of another encoding) becomes ``SET
client_encoding``, which needs no meta-command.

Dropped lines become empty lines so that psql's line numbers stay the file's
(:meth:`PsqlFeed.file_line` maps one to the other for messages).
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from checks.errors import BackupUnreadable

CHUNK = 1 << 20
_MAX_REMEMBERED_META = 64

Numbered = tuple[int, bytes]


def sql_lines(path: Path, *, gz: bool) -> Iterator[Numbered]:
    """The dump's lines with their 1-based numbers; gzip is decompressed on the fly and must end cleanly."""
    if not gz:
        with path.open("rb") as fh:
            yield from enumerate(fh, start=1)
        return
    yield from enumerate(_gunzip_lines(path), start=1)


def _gunzip_lines(path: Path) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    consumed = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            consumed += len(chunk)
            try:
                data = decompressor.decompress(chunk)
            except zlib.error as exc:
                raise BackupUnreadable(
                    f"{path.name}: corrupt gzip data near byte {consumed:,}: {exc}"
                ) from exc
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
            while decompressor.eof and decompressor.unused_data:
                # Concatenated gzip members are legal (e.g. appended by cat).
                rest = decompressor.unused_data
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending += decompressor.decompress(rest)
    if not decompressor.eof:
        raise BackupUnreadable(
            f"{path.name}: gzip stream is truncated (ended after {consumed:,} bytes "
            "without its end-of-stream marker)",
        )
    if pending:
        yield pending


# -- pg_dumpall ---------------------------------------------------------------------------

# pg_dumpall writes the name as it is, quotes included: `-- Database "Weird "db"" dump`.
_DB_HEADER = re.compile(rb'^-- Database "(?P<name>.+)" dump\s*$')
# pg_dumpall's own lines that create or switch to the dumped database: its content goes into
# scratch instead. Only those naming the section's own database are blanked; any other \connect
# or \c is refused by psql's restricted mode, and any other CREATE/ALTER DATABASE by the server.
_CONNECT = re.compile(rb"^\\connect (?:-reuse-previous=on )?(?P<target>.+?)\s*$")
_OWN_DATABASE_DDL = re.compile(rb"^(?:CREATE|ALTER) DATABASE (?P<target>\"(?:[^\"]|\"\")+\"|\S+)[ ;]")
_TEMPLATES = ("postgres", "template0", "template1")


def dumpall_databases(lines: Iterable[Numbered]) -> list[str]:
    """Names of the databases a ``pg_dumpall`` output rebuilds, in order."""
    names = []
    for _, line in lines:
        match = _DB_HEADER.match(line)
        if match:
            names.append(match.group("name").decode("utf-8", "replace"))
    return names


def choose_database(names: list[str], database: str | None, path: Path) -> str:
    """The named database, or the one application database when none is named."""
    if database is not None:
        if database not in names:
            raise BackupUnreadable(
                f"{path.name}: pg_dumpall output has no database {database!r} "
                f"(databases in the dump: {', '.join(names) or 'none'})",
            )
        return database
    candidates = [n for n in names if n not in _TEMPLATES]
    if len(candidates) != 1:
        raise BackupUnreadable(
            f"{path.name}: pg_dumpall output holds {len(candidates)} application databases "
            f"({', '.join(candidates) or 'none'}); name the one to restore",
            hint='add `from database "NAME"` to the restore step, or `--database` to verify backup',
        )
    return candidates[0]


def dumpall_section(lines: Iterable[Numbered], database: str) -> Iterator[Numbered]:
    """The part of ``pg_dumpall`` output that rebuilds one database, minus its CREATE/\\connect.

    Roles and tablespaces (the globals) belong to the cluster, not to the
    scratch database, so they are left out, and so are the statements that
    create or switch to the original database. Lines skipped inside the section
    come out empty, so the section's lines stay contiguous.
    """
    wanted = database.encode()
    own = _spellings(database)
    current: bytes | None = None
    for number, line in lines:
        match = _DB_HEADER.match(line)
        if match:
            current = match.group("name")
            continue
        if current == wanted:
            yield number, (b"\n" if _is_own_database_line(line, own) else line)


def _spellings(database: str) -> set[bytes]:
    """How pg_dumpall may name a database: bare, quoted, or as a quoted ``dbname=…`` conninfo.

    (psql's ``appendPsqlMetaConnect``: a name of other than ``[A-Za-z0-9_.]`` is connected to as
    ``\\connect -reuse-previous=on "dbname='…'"``, the value single-quoted when it must be.)
    """
    name = database.encode()
    quoted = b'"' + name.replace(b'"', b'""') + b'"'
    conninfos = (b"dbname=" + name,
                 b"dbname='" + name.replace(b"\\", b"\\\\").replace(b"'", b"\\'") + b"'")
    return {name, quoted, *(b'"' + c.replace(b'"', b'""') + b'"' for c in conninfos)}


def _is_own_database_line(line: bytes, own: set[bytes]) -> bool:
    match = _CONNECT.match(line) or _OWN_DATABASE_DDL.match(line)
    return bool(match and match.group("target") in own)


# -- feeding psql ---------------------------------------------------------------------------

# pg_dump's TOC comment before every object: "-- Name: x; Type: TABLE; Schema: public; Owner: app"
_ENTRY = re.compile(
    rb"^-- (?:Data for )?Name: .*; Type: (?P<type>[^;]+); Schema: [^;]*; Owner: (?P<owner>.*?)\s*$")
_DUMP_RESTRICT = re.compile(rb"^\\(?:un)?restrict(?:\s+\S*)?\s*$")
# pg_dumpall switches the client encoding for a database of another encoding with psql's
# \encoding; the same, said in SQL, needs no meta-command.
_ENCODING = re.compile(rb"^\\encoding\s+(?P<name>[A-Za-z0-9_]+)\s*$")
_OWNER_TO = re.compile(rb"^ALTER [A-Z][A-Z ]* .+ OWNER TO (?P<owner>.+);\s*$")
_ACL_STATEMENT = re.compile(rb"^(?:GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) .*;\s*$")
_SESSION_AUTHORIZATION = re.compile(rb"^(?:SET|RESET) SESSION AUTHORIZATION\b.*;\s*$")
_COPY_FROM_STDIN = re.compile(rb"^COPY .* FROM stdin(?: WITH .*)?;\s*$", re.IGNORECASE)
_COPY_END = b"\\."
_ACL_TYPES = {b"ACL", b"DEFAULT ACL"}


class PsqlFeed:
    """The lines psql reads for one restore: a ``\\restrict`` line of ours, then the dump's lines.

    ``meta_commands`` remembers the lines outside COPY data that start with a
    backslash, so a refusal by psql can be named with the command.
    """

    def __init__(self) -> None:
        self.key = secrets.token_hex(16)
        self.meta_commands: dict[int, str] = {}
        self._first_line: int | None = None

    def lines(self, numbered: Iterable[Numbered]) -> Iterator[bytes]:
        """The restricted stream; psql's line N is file line :meth:`file_line` (N)."""
        yield b"\\restrict " + self.key.encode() + b"\n"
        in_copy = False
        entry_type = b""
        entry_owner = b""
        for number, line in numbered:
            if self._first_line is None:
                self._first_line = number
            if in_copy:
                in_copy = line.rstrip(b"\r\n") != _COPY_END
                yield line
                continue
            header = _ENTRY.match(line)
            if header:
                entry_type, entry_owner = header.group("type"), header.group("owner")
            encoding = _ENCODING.match(line)
            if encoding:
                yield b"SET client_encoding = '" + encoding.group("name") + b"';\n"
                continue
            yield b"\n" if self._dropped(number, line, entry_type, entry_owner) else line
            if _COPY_FROM_STDIN.match(line):
                in_copy = True

    def _dropped(self, number: int, line: bytes, entry_type: bytes, entry_owner: bytes) -> bool:
        stripped = line.lstrip()
        if stripped.startswith(b"\\"):
            if _DUMP_RESTRICT.match(stripped):
                return True
            if len(self.meta_commands) < _MAX_REMEMBERED_META:
                # Numbered from the file, for the message when psql refuses it.
                self.meta_commands[number] = stripped.decode("utf-8", "replace").strip()[:80]
            return False
        if _SESSION_AUTHORIZATION.match(line):
            return True
        if entry_type in _ACL_TYPES and _ACL_STATEMENT.match(line):
            return True
        owner = _OWNER_TO.match(line)
        return bool(owner and entry_owner and owner.group("owner").strip(b'"') == entry_owner.strip(b'"'))

    def file_line(self, psql_line: int) -> int | None:
        """The file's line number for psql's stdin line (our ``\\restrict`` is line 1)."""
        if self._first_line is None or psql_line < 2:
            return None
        return self._first_line + psql_line - 2
