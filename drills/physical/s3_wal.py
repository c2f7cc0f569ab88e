"""WAL on S3, read by drillbook's own process: a barman ``wals/`` prefix or a basebackup store's ``wal``.

:func:`download` brings one archived file into scratch, decompressing ``.gz`` and ``.bz2`` and
refusing anything that grows past the largest WAL segment; :func:`segment_bytes` checks that the
segments fetched have one size PostgreSQL allows. The recovered server never sees the bucket or its
keys: its ``restore_command`` copies from scratch.
"""

from __future__ import annotations

import bz2
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from checks.backups import BackupObject
from checks.errors import RestoreFailed
from drills.stores import S3Store

# A WAL segment is 1 MiB to 1 GiB (a power of two): a larger decompressed object is refused.
MAX_SEGMENT = 1 << 30
_DECOMPRESS = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File}


def download(store: S3Store, key: str, compression: str | None, dest: Path, *, store_name: str) -> int:
    """One archived file into ``dest`` (decompressed), through a ``.part`` name; its size."""
    part = dest.with_name(dest.name + ".part")
    with store.open(BackupObject(key=key, size=0, last_modified=datetime.now(UTC))) as raw:
        stream: IO[bytes] = _DECOMPRESS[compression](fileobj=raw) if compression else raw
        written = 0
        with part.open("wb") as out:
            while chunk := stream.read(1 << 20):
                written += len(chunk)
                if written > MAX_SEGMENT:
                    raise RestoreFailed(f"{key} decompresses to more than 1 GiB: not a WAL file",
                                        key=key, store=store_name)
                out.write(chunk)
    part.rename(dest)
    return written


def segment_bytes(sizes: set[int], where: str, *, store_name: str) -> int:
    """The one segment size of the files fetched, or RestoreFailed when it is not WAL's."""
    size = max(sizes)
    if len(sizes) != 1 or size & (size - 1) or not 1 << 20 <= size <= MAX_SEGMENT:
        raise RestoreFailed(f"the WAL archive {where} holds segments of unusual sizes "
                            f"({sorted(sizes)[:4]} bytes): not PostgreSQL WAL", store=store_name)
    return size
