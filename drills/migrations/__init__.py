"""Migration sets on disk, their replay into scratch, and the up→down→up round trip.

- :mod:`.model` — what a set is, whatever tool wrote it (steps, parts, errors);
- :mod:`.layouts` — one module per tool's layout (Flyway, golang-migrate, goose, dbmate, Prisma,
  sqitch, Liquibase, Atlas, sqlx, Diesel, …), detected from the folder or named;
- :mod:`.statements` — a part split into statements with their file lines (pglast);
- :mod:`.replay` — applying steps to a scratch database, timed, failures named by file and line;
- :mod:`.roundtrip` — up → down → up with a schema snapshot at every version;
- :mod:`.chain` — several folders replayed in order into one database.

Only scratch is ever written: every entry point calls ``require_scratch()``.
"""

from __future__ import annotations

from .chain import chain, load_folders
from .layouts import detect_layout, known, load_migrations, parse_name
from .model import (
    Direction,
    IntegrityFailed,
    Layout,
    LayoutError,
    Migration,
    MigrationError,
    MigrationFailed,
    MigrationSet,
    Part,
    Statement,
)
from .replay import MigrationReplay, StepRun, prelude_verdict, replay_verdict
from .roundtrip import Attribution, RoundTripResult, round_trip, round_trip_verdict
from .statements import Script, read_script, split_statements

__all__ = [
    "Attribution", "Direction", "IntegrityFailed", "Layout", "LayoutError", "Migration",
    "MigrationError", "MigrationFailed", "MigrationReplay", "MigrationSet", "Part", "RoundTripResult",
    "Script", "Statement", "StepRun", "chain", "detect_layout", "known", "load_folders",
    "load_migrations", "parse_name", "prelude_verdict", "read_script", "replay_verdict", "round_trip",
    "round_trip_verdict", "split_statements",
]
