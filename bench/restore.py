"""Restore-drill benchmarks: ratios against baselines measured in the same run.

    .venv/bin/python bench/restore.py [--scales 10,50] [--repeat 2]

1. Restore phase (discovery + download + restore + row counts) of a pgbench
   database dumped with ``pg_dump -Fc`` vs raw ``pg_restore -j 2`` of the same
   file into a fresh database. Target: <= 1.15x.
2. Content comparison of subject vs restored (every column, every table) vs
   one client-side ``COPY (SELECT ... ORDER BY pk) TO STDOUT`` streamed into a
   SHA-256 of one side. Target: <= 1.3x, with peak Python memory independent
   of table size (tracemalloc peak printed per scale).
3. Sandbox cold start: first start (may build the day's cache) and a warm
   start. Aim: <= 2 s warm.

Scale 10 is 1 M rows in pgbench_accounts, scale 50 is 5 M.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.compare import compare_databases
from checks.postgres import pin_session, row_counts
from drills import pgtools
from drills.local import LocalEnvironment, LocalScratch
from drills.restore import RestoreDrill
from drills.targets import PostgresTarget, StoreSpec

TABLES = {"pgbench_accounts": "aid", "pgbench_branches": "bid", "pgbench_tellers": "tid"}


def _connect(target: PostgresTarget) -> psycopg.Connection[Any]:
    return psycopg.connect(target.dsn, connect_timeout=10)


def _copy_hash(target: PostgresTarget) -> tuple[str, float]:
    """Baseline: one side, ordered COPY streamed into SHA-256 (constant memory)."""
    started = time.perf_counter()
    digest = hashlib.sha256()
    with _connect(target) as conn:
        pin_session(conn)
        for table, key in TABLES.items():
            with conn.cursor().copy(f"COPY (SELECT * FROM {table} ORDER BY {key}) TO STDOUT") as copy:
                for chunk in copy:
                    digest.update(chunk)
    return digest.hexdigest(), time.perf_counter() - started


def bench_scale(scratch: LocalScratch, scale: int, repeat: int, workdir: Path) -> None:
    rows = scale * 100_000
    print(f"\n== pgbench scale {scale} ({rows:,} rows in pgbench_accounts) ==", flush=True)
    source = scratch.fresh_database("bench-source")
    subject = PostgresTarget(name="bench-subject", dsn=source.dsn)
    t = time.perf_counter()
    subprocess.run([pgtools.tool("pgbench"), "-i", "-q", "-s", str(scale), "-d", source.dsn],
                   check=True, capture_output=True)
    print(f"pgbench -i: {time.perf_counter() - t:.1f}s", flush=True)
    store = workdir / f"scale{scale}"
    store.mkdir()
    dump = store / f"bench-{scale}.dump"
    subprocess.run([pgtools.tool("pg_dump"), "-Fc", "-f", str(dump), "-d", source.dsn], check=True)
    print(f"dump: {dump.stat().st_size / 1e6:.1f} MB", flush=True)

    baselines, drills = [], []
    for _ in range(repeat):
        target = scratch.fresh_database("bench-baseline")
        t = time.perf_counter()
        subprocess.run([pgtools.tool("pg_restore"), "-j", "2", "--no-owner", "-d", target.dsn, str(dump)],
                       check=True)
        baselines.append(time.perf_counter() - t)
        scratch.drop(target)

        t = time.perf_counter()
        with RestoreDrill(StoreSpec(name="bench", url=str(store)), scratch) as drill:
            result = drill.run()
            assert result.target is not None
            with _connect(result.target) as conn:
                counts = row_counts(conn, {"pgbench_accounts": rows})
            drills.append(time.perf_counter() - t)
            assert counts.outcome.value == "passed", counts.message
    base, drill_time = min(baselines), min(drills)
    print(f"raw pg_restore -j 2:        {base:6.2f}s (best of {repeat})")
    print(f"drill restore phase:        {drill_time:6.2f}s (discovery + download + restore + row counts)")
    print(f"RATIO restore  = {drill_time / base:.3f}x   (target <= 1.15x)", flush=True)

    with RestoreDrill(StoreSpec(name="bench", url=str(store)), scratch) as drill:
        result = drill.run()
        restored = result.target
        assert restored is not None
        _, copy_time = _copy_hash(subject)
        tracemalloc.start()
        t = time.perf_counter()
        verdict = compare_databases(lambda: _connect(subject), lambda: _connect(restored), cutoff=None)
        compare_time = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert verdict.outcome.value == "passed", verdict.message
    print(f"COPY hash of one side:      {copy_time:6.2f}s")
    print(f"content comparison:         {compare_time:6.2f}s (both sides, every column)")
    print(f"RATIO compare  = {compare_time / copy_time:.3f}x   (target <= 1.3x)")
    print(f"compare peak Python memory: {peak / 1024:.0f} KiB", flush=True)
    scratch.drop(source)


def bench_cold_start() -> None:
    print("\n== sandbox start ==", flush=True)
    for label in ("first", "warm"):
        t = time.perf_counter()
        env = LocalEnvironment.start()
        elapsed = time.perf_counter() - t
        env.close()
        print(f"{label} start: {elapsed:.2f}s  phases: {getattr(env, 'timings', {})}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="10,50", help="pgbench scales (10 = 1 M rows)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-start", action="store_true")
    args = parser.parse_args()
    scratch = LocalScratch.start()
    try:
        with tempfile.TemporaryDirectory(prefix="drillbook-bench-") as tmp:
            for scale in (int(s) for s in args.scales.split(",")):
                bench_scale(scratch, scale, args.repeat, Path(tmp))
    finally:
        scratch.close()
    if not args.skip_start:
        bench_cold_start()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
