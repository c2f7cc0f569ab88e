"""What every layout module shares: the folder's listing, reading files, duplicate versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from checks.migration_history import show_version, version_key

from ..model import Direction, LayoutError, Migration, MigrationSet, Part

# Names that sit beside migrations and are never one (a layout ignores them).
NOT_MIGRATIONS = {"readme", "license", "licence", "notice", "changelog", "authors"}
IGNORED_SUFFIXES = (".md", ".txt", ".rst", ".toml", ".sum", ".conf", ".json", ".yaml", ".yml", ".lock")


@dataclass(frozen=True)
class Listing:
    """A migration folder's entries, read once."""

    directory: Path
    files: tuple[Path, ...]
    dirs: tuple[Path, ...]

    @classmethod
    def of(cls, directory: Path) -> Listing:
        """List ``directory``; a missing or unreadable folder is a LayoutError."""
        if not directory.is_dir():
            raise LayoutError(f"migration directory {directory} does not exist or is not a directory",
                              directory=str(directory), hint="give the folder that holds the migration files")
        try:
            children = sorted(directory.iterdir())
        except OSError as exc:
            raise LayoutError(f"cannot list {directory}: {exc.strerror}", directory=str(directory)) from exc
        return cls(directory, tuple(p for p in children if p.is_file()),
                   tuple(p for p in children if p.is_dir() and not p.name.startswith(".")))

    @property
    def sql_files(self) -> list[Path]:
        return [p for p in self.files if p.name.endswith(".sql")]

    def has(self, name: str) -> bool:
        return (self.directory / name).is_file()

    def first_line_of_any(self, wanted: str, *, limit: int = 400) -> bool:
        """Whether some .sql file's first line (stripped) is ``wanted`` (case-insensitive)."""
        return any(first_line(path, limit=limit).strip().lower() == wanted.lower() for path in self.sql_files)

    def any_line(self, predicate_text: str) -> bool:
        """Whether some .sql file has a line that starts with ``predicate_text`` (after spaces)."""
        for path in self.sql_files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if any(line.lstrip().startswith(predicate_text) for line in text.splitlines()):
                return True
        return False


def first_line(path: Path, *, limit: int = 400) -> str:
    """The first line of a file ("" when unreadable: detection only, load reports the error)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(limit)
    except OSError:
        return ""
    return head.decode("utf-8", errors="replace").removeprefix("\ufeff").splitlines()[0] if head else ""


def is_ignored(path: Path) -> bool:
    """A file that sits beside migrations and is not one (README, LICENSE, *.md, *.toml, *.sum)."""
    stem = path.name.split(".")[0].lower()
    return stem in NOT_MIGRATIONS or path.name.lower().endswith(IGNORED_SUFFIXES) or path.name.startswith(".")


def read_text(path: Path) -> str:
    """A migration file's text (UTF-8, BOM dropped); LayoutError when unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"cannot read {path}: {exc.strerror}", file=str(path)) from exc
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LayoutError(f"{path}: not UTF-8 text (line {line}, byte {exc.start})", file=str(path),
                          line=line, hint="save the file as UTF-8, as the migration tool expects") from exc


def shown(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)


def require_name_order(directory: Path, entries: Sequence[tuple[str, str]], *, tool: str,
                       sort_by: str) -> None:
    """Refuse a folder where the tool's text order differs from the numeric version order.

    Prisma, Atlas and Diesel apply steps in the order of their names (``10_x`` before ``9_x``),
    drillbook by :func:`version_key`: where the two disagree, a replay would not be what the tool
    does. ``entries`` are ``(name the tool sorts by, version)`` pairs, in the tool's order.
    """
    for (name_a, version_a), (name_b, version_b) in pairwise(entries):
        if version_key(version_a) > version_key(version_b):
            raise LayoutError(
                f"{directory}: {tool} applies {name_a} before {name_b} ({sort_by}), but its version "
                f"{version_a} is higher than {version_b}: replaying by version would run them in "
                f"another order than {tool} does",
                directory=str(directory), file=name_b,
                hint="give the versions the same number of digits (zero-pad them), as the tool's "
                     "generated timestamps do")


class Versions:
    """Up steps by version, refusing a second step with the same version (naming both files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._ups: dict[tuple[int, ...], Migration] = {}
        self._downs: dict[tuple[int, ...], Part] = {}

    def add(self, migration: Migration) -> None:
        key = version_key(migration.version)
        if key in self._ups:
            other = self._ups[key].up.path
            raise LayoutError(
                f"{self.directory}: duplicate version {show_version(key)}: "
                f"{shown(other, self.directory)} and {shown(migration.up.path, self.directory)}",
                directory=str(self.directory), hint="give every migration its own version number")
        self._ups[key] = migration

    def add_down(self, version: str, part: Part) -> None:
        key = version_key(version)
        if key in self._downs:
            raise LayoutError(
                f"{self.directory}: duplicate down migration for version {show_version(key)}: "
                f"{self._downs[key].path.name} and {part.path.name}", directory=str(self.directory))
        self._downs[key] = part

    def migrations(self) -> list[Migration]:
        """The up steps in version order, each paired with its down part."""
        for key, part in sorted(self._downs.items()):
            if key not in self._ups:
                raise LayoutError(f"{self.directory}: {part.path.name} undoes version {show_version(key)}, "
                                  "which has no up migration", directory=str(self.directory),
                                  file=part.path.name)
        out = []
        for key, migration in sorted(self._ups.items()):
            down = self._downs.get(key)
            if down is not None:
                migration = Migration(migration.version, migration.description, migration.up, down,
                                      migration.repeatable, migration.verify, migration.history_id,
                                      migration.hashed)
            out.append(migration)
        return out

    def set(self, layout: str, extra: list[Migration] | None = None) -> MigrationSet:
        return MigrationSet(self.directory, layout, tuple(self.migrations() + (extra or [])),
                            (self.directory,))


@dataclass(frozen=True)
class ParsedName:
    """What a file name says: version (None for repeatables), description, direction."""

    version: str | None
    description: str
    direction: Direction


def named_sql_files(listing: Listing) -> list[Path]:
    """The .sql files a name-based layout reads."""
    return [p for p in listing.sql_files if not is_ignored(p)]


def detect_named(listing: Listing, parse: object) -> bool:
    """A name-based layout fits when every .sql file's name parses and there is no step directory."""
    files = named_sql_files(listing)
    return bool(files) and all(parse(p.name) is not None for p in files)  # type: ignore[operator]


def load_named(directory: Path, layout: str, parse: object) -> MigrationSet:
    """Read a folder of one file per direction whose names carry version, description, direction."""
    listing = Listing.of(directory)
    files = named_sql_files(listing)
    if not files:
        raise LayoutError(f"{directory}: no *.sql migration files", directory=str(directory))
    versions = Versions(directory)
    repeatables: list[Migration] = []
    for path in files:
        parsed: ParsedName | None = parse(path.name)  # type: ignore[operator]
        if parsed is None:
            raise LayoutError(f"{directory}: {path.name} does not fit the {layout} layout",
                              directory=str(directory), file=path.name)
        if parsed.version is None:
            repeatables.append(Migration(parsed.description, parsed.description, Part(path), repeatable=True))
        elif parsed.direction is Direction.UP:
            versions.add(Migration(parsed.version, parsed.description, Part(path)))
        else:
            versions.add_down(parsed.version, Part(path))
    return versions.set(layout, sorted(repeatables, key=lambda m: m.description))
