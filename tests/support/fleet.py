"""A small live fleet for the shard protocol's tests: members on a real PostgreSQL, real dumps.

Each member binds ``production`` to a database of the test's subject cluster and ``nightly``
to a directory store holding a real ``pg_dump -Fc`` of it, named with today's time. Two
scenarios per member: the database answers, and the newest backup is fresh.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drills import pgtools
from drills.targets import PostgresTarget

FEATURE = """@monthly
Feature: Fleet drills
  Every member's database answers, and its newest backup is fresh.

  @id:FLT-01
  Scenario: The member's database answers
    Given the subject database "production"
    Then the database answers "SELECT 1" within 20 seconds

  @id:FLT-02
  Scenario: The member's newest backup is fresh
    Given the backups in "nightly"
    Then the newest backup is at most 26h old
"""


@dataclass(frozen=True)
class FleetFixture:
    config: Path
    features: Path
    members: tuple[str, ...]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dump(target: PostgresTarget, path: Path) -> None:
    """A real custom-format dump of ``target`` at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(pgtools.bindir() / "pg_dump"), "-Fc", "-f", str(path), "-d", target.dsn],
                   check=True, capture_output=True, timeout=60)


def make_fleet(base: Path, databases: Sequence[PostgresTarget], *, unreachable: Sequence[str] = (),
               without_backup: Sequence[str] = (), names: Sequence[str] | None = None,
               dumper: Callable[[PostgresTarget, Path], None] = dump) -> FleetFixture:
    """A drillbook.toml with a [fleet] of one member per database (names m1, m2, … by default).

    Members named in ``unreachable`` get a closed port as production; those in
    ``without_backup`` an empty backup folder.
    """
    features = base / "features" / "fleet"
    features.mkdir(parents=True, exist_ok=True)
    (features / "fleet.feature").write_text(FEATURE, encoding="utf-8")
    member_names = list(names or [f"m{n + 1}" for n in range(len(databases))])
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    blocks: list[str] = []
    for name, target in zip(member_names, databases, strict=True):
        folder = base / "backups" / name
        folder.mkdir(parents=True, exist_ok=True)
        if name not in without_backup:
            dumper(target, folder / f"backup-{stamp}.dump")
        dsn = (f"postgresql://postgres@127.0.0.1:{closed_port()}/{name}" if name in unreachable
               else target.dsn)
        blocks.append(
            f'[[fleet.members]]\nname = "{name}"\nlabels = {{ host = "h{len(blocks) % 2}" }}\n'
            f'[fleet.members.targets.production]\nkind = "postgres"\ndsn = "{dsn}"\n'
            f'[fleet.members.targets.nightly]\nkind = "directory"\npath = "{folder}"\n'
            'key_pattern = "backup-%Y%m%d-%H%M.dump"\n'
        )
    config = base / "drillbook.toml"
    config.write_text(
        f'[targets.production]\nkind = "postgres"\ndsn = "postgresql://nobody@127.0.0.1:{closed_port()}/x"\n'
        f'[targets.nightly]\nkind = "directory"\npath = "{base / "backups" / "none"}"\n'
        '[fleet]\nhost_cap = 2\n' + "\n".join(blocks), encoding="utf-8")
    return FleetFixture(config=config, features=base / "features", members=tuple(member_names))
