"""Helpers shared by the directory-scanning layouts (prisma, atlas, diesel).

These tools apply migrations in the order of their names (or of version *strings*),
while drillbook orders by :func:`version_key` (numbers). Where the two disagree
(``10_x`` sorts before ``9_x`` as text) replaying in drillbook's order would not be
what the tool does, so such a folder is refused, naming both entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from checks.migration_history import version_key

from ..model import LayoutError


def require_name_order(directory: Path, entries: Sequence[tuple[str, str]], *, tool: str,
                       sort_by: str) -> None:
    """Refuse a folder where the tool's text order differs from the numeric version order.

    ``entries`` are ``(name the tool sorts by, version)`` pairs, in the tool's order.
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


def read_utf8(path: Path, directory: Path) -> str:
    """The file's text; a LayoutError naming the file when it cannot be read or is not UTF-8."""
    shown = _shown(path, directory)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"{directory}: cannot read {shown}: {exc.strerror}",
                          directory=str(directory), file=shown) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LayoutError(f"{directory}: {shown}:{line}: not valid UTF-8 (byte {exc.start})",
                          directory=str(directory), file=shown, line=line,
                          hint="save the file as UTF-8, as the migration tool expects") from exc


def _shown(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)
