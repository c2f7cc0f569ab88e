"""Untrusted tars extracted into scratch only: the one extraction every physical source uses.

A backup's tar is written by whoever can write the store. Every member is judged *before* anything
is written (absolute names and ``..`` outright, then tarfile's ``data`` filter: links pointing out,
device files, odd modes), then the archive is extracted through the same filter. Link targets are
relative and never climb, so no chain of links can lead out of ``dest``. The archive is a local
file drillbook wrote or was given: what is judged is what is extracted (no second read of a store).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from checks.errors import BackupRefused, RestoreFailed


def extract_tar(archive: Path, dest: Path, *, name: str | None = None) -> int:
    """Extract an untrusted tar (plain, gzip, bzip2 or xz) into ``dest`` only; return its member count.

    ``name`` is what messages call the archive (e.g. the object key it came from); by default its
    file name. A refused member is :class:`BackupRefused` naming it, raised before anything is written.
    """
    label = name or archive.name
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:  # refuse before writing anything (the filter alone stops mid-way)
                _refuse_escapes(member, label)
                tarfile.data_filter(member, str(dest))
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise BackupRefused(f"{label}: refusing member {exc.tarinfo.name!r}: {exc}",
                            hint="a backup never holds absolute paths, `..`, devices or links out of "
                            "its directory: inspect who wrote this archive", key=label) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RestoreFailed(f"{label} is not a readable tar: {exc}", key=label) from exc
    return len(members)


def _refuse_escapes(member: tarfile.TarInfo, label: str) -> None:
    """Absolute names and ``..`` are refused outright (the data filter would strip a leading ``/``)."""
    link = member.linkname if member.islnk() or member.issym() else ""
    for what, name in (("name", member.name), ("link target", link)):
        if name.startswith("/") or ".." in name.split("/"):
            raise BackupRefused(f"{label}: refusing member {member.name!r}: its {what} {name!r} "
                                "is absolute or climbs with `..`", key=label,
                                hint="a backup never holds such names: inspect who wrote this archive")
