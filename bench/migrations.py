"""Migration benchmarks: ratios against baselines measured in the same run.

    .venv/bin/python bench/migrations.py [--repeat 3] [--tables 200]

1. Replay of the 26-step Authelia set (../shared/fixtures, or $DRILLBOOK_FIXTURES)
   through drillbook — load the folder, split every file with pglast, apply each
   step in its own transaction over one connection, time each step — vs one
   ``psql -X -q -1 -v ON_ERROR_STOP=1 -f FILE`` process per file into another
   fresh database. Target: <= 0.5x. Medians of ``--repeat`` runs.
   Also printed: the server's floor (all files in one psql process and one
   transaction), because on a loaded machine the server's DDL work, not the
   client, dominates both sides and pulls the ratio towards 1.
2. Replay of an 80-step goose set and an 80-step dbmate set (generated: tables, columns,
   indexes, a trigger function every few steps — between goose's StatementBegin/StatementEnd —
   seed rows, and every tenth step an index built CONCURRENTLY outside a transaction) through
   drillbook — sections split, the up section only — vs one psql process per file, each given
   the file's up section only (psql cannot tell the sections apart: fed the whole file it would
   run the down section too). Target: <= 0.5x. Medians of ``--repeat`` runs.
3. Schema fingerprint (:func:`checks.schema.snapshot` + digest) of a schema of
   ``--tables`` tables (columns, defaults, primary keys, a foreign key, an
   index and an owned sequence each, plus views and a trigger function) vs
   ``pg_dump --schema-only`` of the same database. Target: <= 0.5 s absolute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.schema import snapshot
from drills import pgtools
from drills.local import LocalScratch
from drills.migrations import MigrationReplay, load_migrations

REPO = Path(__file__).resolve().parents[1]


def _authelia() -> Path:
    base = Path(os.environ.get("DRILLBOOK_FIXTURES") or REPO.parent / "shared" / "fixtures")
    return base / "postgres" / "migrations" / "authelia"


def bench_replay(scratch: LocalScratch, directory: Path, repeat: int) -> tuple[float, float, float]:
    drillbook_times, psql_times, floor_times = [], [], []
    psql = pgtools.tool("psql")
    for _ in range(repeat):
        target = scratch.fresh_database("bench-drillbook")
        started = time.perf_counter()
        migrations = load_migrations(directory)
        with MigrationReplay(migrations, target) as replay:
            runs = replay.up()
        drillbook_times.append(time.perf_counter() - started)
        assert len(runs) == len(migrations.migrations)
        scratch.drop(target)

        target = scratch.fresh_database("bench-psql")
        files = sorted(directory.glob("V*.up.sql"))
        started = time.perf_counter()
        for path in files:
            subprocess.run([psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", target.dsn,
                            "-f", str(path)],
                           check=True, capture_output=True)
        psql_times.append(time.perf_counter() - started)
        scratch.drop(target)

        # The server's own work: every file through one psql, one transaction (no per-file cost).
        target = scratch.fresh_database("bench-floor")
        text = "".join(path.read_text(encoding="utf-8") + "\n" for path in files)
        started = time.perf_counter()
        subprocess.run([psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", target.dsn], input=text,
                       text=True, check=True, capture_output=True)
        floor_times.append(time.perf_counter() - started)
        scratch.drop(target)
    return (statistics.median(drillbook_times), statistics.median(psql_times),
            statistics.median(floor_times))


ANNOTATED_STEPS = 80


def _step(index: int) -> tuple[list[tuple[str, bool]], list[str], bool]:
    """Step ``index`` of the generated set: (up statements with "is a block", down statements,
    runs outside a transaction)."""
    table = f"t{(index - 1) // 5 * 5 + 1}"  # every step touches the table its group of 5 created
    kind = index % 5
    if index % 10 == 0:
        return ([(f"CREATE INDEX CONCURRENTLY {table}_name_{index} ON {table} (name);", False)],
                [f"DROP INDEX CONCURRENTLY {table}_name_{index};"], True)
    if kind == 1:
        return ([(f"CREATE TABLE {table} (\n    id bigserial PRIMARY KEY,\n    name text NOT NULL,\n"
                  f"    amount numeric(12, 2) CHECK (amount >= 0),\n    updated_at timestamptz\n);", False),
                 (f"CREATE INDEX {table}_updated ON {table} (updated_at);", False)],
                [f"DROP TABLE {table};"], False)
    if kind == 2:
        return ([(f"CREATE FUNCTION touch_{index}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
                  "    NEW.updated_at := now();\n    RETURN NEW;\nEND;\n$$;", True),
                 (f"CREATE TRIGGER {table}_touch BEFORE UPDATE ON {table}\n"
                  f"    FOR EACH ROW EXECUTE FUNCTION touch_{index}();", False)],
                [f"DROP TRIGGER {table}_touch ON {table};", f"DROP FUNCTION touch_{index}();"], False)
    if kind == 3:
        return ([(f"ALTER TABLE {table} ADD COLUMN note_{index} text;", False),
                 (f"COMMENT ON COLUMN {table}.note_{index} IS 'step {index}';", False)],
                [f"ALTER TABLE {table} DROP COLUMN note_{index};"], False)
    return ([(f"INSERT INTO {table} (name, amount)\n    SELECT 'row ' || g, g FROM generate_series(1, 50) g;",
              False)], [f"DELETE FROM {table};"], False)


def write_annotated_set(tool: str, directory: Path,
                        steps: int = ANNOTATED_STEPS) -> list[tuple[Path, str, bool]]:
    """Write a goose or dbmate folder; return (file, its up section alone, outside a transaction)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(1, steps + 1):
        ups, downs, no_tx = _step(index)
        up_sql = "\n".join(sql for sql, _ in ups) + "\n"
        if tool == "goose":
            lines = ["-- +goose NO TRANSACTION"] if no_tx else []
            lines.append("-- +goose Up")
            for sql, block in ups:
                lines += ["-- +goose StatementBegin", sql, "-- +goose StatementEnd"] if block else [sql]
            lines += ["", "-- +goose Down", *downs]
        else:
            option = " transaction:false" if no_tx else ""
            lines = [f"-- migrate:up{option}", *(sql for sql, _ in ups), "",
                     f"-- migrate:down{option}", *downs]
        path = directory / f"2024010100{index:04d}_step_{index}.sql"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append((path, up_sql, no_tx))
    return out


def bench_annotated(scratch: LocalScratch, tool: str, repeat: int) -> tuple[float, float]:
    """(drillbook, one psql per file) medians for the generated set of ``tool``."""
    psql = pgtools.tool("psql")
    ours, baseline = [], []
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as tmp:
        directory = Path(tmp) / tool
        files = write_annotated_set(tool, directory)
        ups = []
        for path, up_sql, no_tx in files:
            up_file = Path(tmp) / "up" / path.name
            up_file.parent.mkdir(exist_ok=True)
            up_file.write_text(up_sql, encoding="utf-8")
            ups.append((up_file, no_tx))
        for _ in range(repeat):
            target = scratch.fresh_database(f"bench-{tool}")
            started = time.perf_counter()
            migrations = load_migrations(directory)
            with MigrationReplay(migrations, target) as replay:
                runs = replay.up()
            ours.append(time.perf_counter() - started)
            assert migrations.layout == tool and len(runs) == len(files)
            scratch.drop(target)

            target = scratch.fresh_database(f"bench-{tool}-psql")
            started = time.perf_counter()
            for up_file, no_tx in ups:
                # As the tool runs it: in one transaction, unless the file says otherwise.
                single = [] if no_tx else ["-1"]
                subprocess.run([psql, "-X", "-q", *single, "-v", "ON_ERROR_STOP=1", "-d", target.dsn,
                                "-f", str(up_file)], check=True, capture_output=True)
            baseline.append(time.perf_counter() - started)
            scratch.drop(target)
    return statistics.median(ours), statistics.median(baseline)


def _big_schema(tables: int) -> str:
    parts = ["CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;"]
    for i in range(tables):
        parent = f"REFERENCES t{i - 1} (id)" if i else ""
        parts.append(
            f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'x{i}', "
            f"amount numeric(12,2) CHECK (amount >= 0), parent_id bigint {parent}, "
            f"tags text[], updated_at timestamptz NOT NULL DEFAULT now());"
            f"CREATE INDEX t{i}_name_idx ON t{i} (name, updated_at);"
        )
        if i % 10 == 0:
            parts.append(f"CREATE VIEW v{i} AS SELECT id, name FROM t{i} WHERE amount > 0;"
                         f"CREATE TRIGGER t{i}_touch BEFORE UPDATE ON t{i} "
                         f"FOR EACH ROW EXECUTE FUNCTION touch();")
    return "\n".join(parts)


def bench_fingerprint(scratch: LocalScratch, tables: int, repeat: int) -> tuple[float, float, int]:
    target = scratch.fresh_database("bench-fingerprint")
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute(_big_schema(tables).encode())
            times = []
            objects = 0
            for _ in range(repeat):
                started = time.perf_counter()
                snap = snapshot(conn)
                snap.digest()
                times.append(time.perf_counter() - started)
                objects = len(snap.objects)
        dump_times = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run([pgtools.tool("pg_dump"), "--schema-only", "-d", target.dsn],
                           check=True, capture_output=True)
            dump_times.append(time.perf_counter() - started)
    finally:
        scratch.drop(target)
    return statistics.median(times), statistics.median(dump_times), objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tables", type=int, default=200)
    args = parser.parse_args()
    directory = _authelia()
    scratch = LocalScratch.start()
    try:
        if (directory / "V0001.Initial_Schema.up.sql").is_file():
            ours, baseline, floor = bench_replay(scratch, directory, args.repeat)
            print(f"replay of {directory.name} (26 steps): drillbook {ours:.3f}s, "
                  f"one psql -1 -f per file {baseline:.3f}s, ratio {ours / baseline:.2f}x (target <= 0.5x)")
            print(f"  server floor (all files through one psql, one transaction): {floor:.3f}s; "
                  f"drillbook / floor {ours / floor:.2f}x; load average {os.getloadavg()[0]:.1f}")
        else:
            print(f"replay: skipped, no Authelia fixtures at {directory}")
        for tool in ("goose", "dbmate"):
            ours, baseline = bench_annotated(scratch, tool, args.repeat)
            print(f"replay of a generated {tool} set ({ANNOTATED_STEPS} steps): drillbook {ours:.3f}s, "
                  f"one psql per file (up section) {baseline:.3f}s, ratio {ours / baseline:.2f}x "
                  f"(target <= 0.5x); load average {os.getloadavg()[0]:.1f}")
        fingerprint, dump, objects = bench_fingerprint(scratch, args.tables, args.repeat)
        print(f"fingerprint of a {args.tables}-table schema ({objects} objects): {fingerprint:.3f}s "
              f"(target <= 0.5s); pg_dump --schema-only {dump:.3f}s, ratio {fingerprint / dump:.2f}x")
    finally:
        scratch.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
