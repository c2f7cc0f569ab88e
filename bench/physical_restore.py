"""Physical restore + recovery: drillbook's PhysicalRestore vs the same restore by hand, in one run.

    .venv/bin/python bench/physical_restore.py [--scale 50] [--rounds 5] [--load 60]
                                               [--pairs basebackup,pgbackrest] [--no-pitr]

Builds once, in a temp dir removed at the end (and on Ctrl-C / SIGTERM), the source of
bench/physical_source.py: a pgbench cluster (``--scale``) archiving into a WAL directory and a
pgBackRest posix repo, one ``pg_basebackup -Ft -z -X none`` and one ``pgbackrest backup --type=full``,
then ``pgbench -T --load`` of WAL to replay. Then, the two ways of each pair alternated (A, B, A, B, …)
for ``--rounds``, medians compared (single runs mean little on a shared 2-core machine, A7):

1. Restore + recovery to the end of the archive + first query (issue 16: drillbook / by hand <= 1.15x):
   - basebackup, by hand: ``tar -xzf``, ``recovery.signal``, ``restore_command = 'cp WAL/%f %p'`` in
     auto.conf, ``pg_ctl start -w``, poll until ``pg_is_in_recovery()`` is false, first query;
     drillbook: ``PhysicalRestore`` on a ``kind = "basebackup"`` store (journal phases printed).
   - pgbackrest, by hand: ``pgbackrest restore`` (its own restore_command in auto.conf), the same start,
     wait and query; drillbook: ``PhysicalRestore`` on a ``kind = "pgbackrest"`` store (when this
     checkout has that kind; else the pair is reported as not measured).
2. Recovery to a target time (``--target-at`` of the way through the load) from the base backup and the
   WAL directory, by hand (recovery_target_time + pause) and through drillbook: WAL replay throughput in
   MB/s of LSN replayed (``pg_last_wal_replay_lsn()`` at the pause minus the backup's START WAL
   LOCATION), over the server's redo (the log's "redo starts" to "recovery stopping" lines) and over
   the wall time from server start to paused.

Polling for "promoted"/"paused" is every 0.1 s on both sides (drillbook's own interval), so the poll
is not what is measured. Prints the scale, cores and load average at start; exits 1 only when a run
breaks, never on a ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from physical_source import KEY_PATTERN, STANZA, Built, as_server, build, remove, server_dir

from drills import pgtools
from drills.deadlines import Limit
from drills.physical import PhysicalRestore
from drills.processes import free_port
from drills.targets import StoreSpec

POLL_S = 0.1
TARGET_RATIO = 1.15
LIMIT = Limit(7200.0, "the bench's limit")
FIRST_QUERY = "SELECT count(*) FROM pg_catalog.pg_class"


@dataclass
class Run:
    """One timed way: wall seconds up to the first query's answer, and its phases."""

    total: float
    phases: dict[str, float] = field(default_factory=dict)
    lsn_bytes: int | None = None   # PITR: WAL replayed from the backup's start, in LSN bytes
    redo_s: float | None = None    # PITR: the server's redo, from its log
    start_to_paused_s: float | None = None
    fetched_bytes: int | None = None  # PITR: WAL bytes the restore_command had to hand over
    history_rows: int = -1            # pgbench_history rows recovered (checked after the timing)


# -- by hand: what an operator types ------------------------------------------------------------

class ByHand:
    """A data dir restored by hand and the server ``pg_ctl`` started on it (stopped in ``close``)."""

    # Stopped on the way out whatever happened: pg_ctl's server is in its own session, Ctrl-C misses it.
    running: ClassVar[list[ByHand]] = []
    like_drillbook: ClassVar[bool] = False
    copies_wal: ClassVar[bool] = False

    def __init__(self, built: Built) -> None:
        self.built = built
        self.datadir = built.restores / f"d{time.monotonic_ns()}"
        self.port = free_port()
        self.log = built.restores / f"{self.datadir.name}.log"
        self.started = False

    def pg_ctl(self, *args: str, timeout: float | None = None) -> None:
        as_server([str(self.built.bindir / "pg_ctl"), "-D", str(self.datadir), *args], timeout=timeout)

    def start(self) -> None:
        ByHand.running.append(self)
        self.started = True
        sock = server_dir(self.built.restores / f"{self.datadir.name}-s")
        options = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1"
        if ByHand.like_drillbook:  # what drillbook's scratch server forces (drills/processes.py)
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.pg_ctl("-l", str(self.log), "-w", "-t", str(int(LIMIT.seconds)), "-o", options, "start",
                    timeout=LIMIT.seconds)

    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def wait(self, *, paused: bool) -> None:
        """Poll until promoted (or paused at the target), as an operator's loop would."""
        ends = time.monotonic() + LIMIT.seconds
        sql = ("SELECT CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() = 'paused' "
               "ELSE true END") if paused else "SELECT NOT pg_is_in_recovery()"
        while time.monotonic() < ends:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True) as conn:
                    row = conn.execute(sql).fetchone()
                if row and row[0]:
                    return
            except psycopg.OperationalError:
                pass
            time.sleep(POLL_S)
        raise RuntimeError(f"by-hand recovery of {self.datadir} did not finish; log {self.log}")

    def close(self) -> None:
        if self.started:
            try:
                self.pg_ctl("-m", "immediate", "stop", timeout=120)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"  (stopping {self.datadir}: {exc})", file=sys.stderr)
            self.started = False
        if self in ByHand.running:
            ByHand.running.remove(self)
        as_server(["rm", "-rf", str(self.datadir), f"{self.datadir}-s", f"{self.datadir}-wal", str(self.log)])


def _history_rows(dsn: str) -> int:
    """Proof of what was replayed (untimed): a way that stopped early would count fewer rows."""
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()
    return int(row[0]) if row else -1


def _first_query(dsn: str) -> None:
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        conn.execute(FIRST_QUERY).fetchone()


def _by_hand(built: Built, restore: Callable[[ByHand], None], target: datetime | None) -> Run:
    """Restore with ``restore``, start, wait, query: each phase timed; cleanup untimed."""
    way = ByHand(built)
    phases: dict[str, float] = {}
    try:
        t0 = t = time.perf_counter()
        restore(way)
        if target is not None:
            with (way.datadir / "postgresql.auto.conf").open("a", encoding="utf-8") as auto:
                auto.write(f"recovery_target_time = '{target.isoformat()}'\n"
                           "recovery_target_action = 'pause'\n")
        phases["restore"] = time.perf_counter() - t
        t = time.perf_counter()
        way.start()
        phases["pg_ctl start -w"] = time.perf_counter() - t
        t2 = time.perf_counter()
        way.wait(paused=target is not None)
        phases["then paused" if target else "then promoted"] = time.perf_counter() - t2
        start_to_paused = time.perf_counter() - t
        t = time.perf_counter()
        _first_query(way.dsn())
        phases["first query"] = time.perf_counter() - t
        run = Run(total=time.perf_counter() - t0, phases=phases)
        run.history_rows = _history_rows(way.dsn())
        if target is None:
            run.phases.update(log_phases(way.log.read_text(encoding="utf-8", errors="replace")))
        if target is not None:
            run.lsn_bytes = _replayed(way.dsn(), built.backup_start_lsn)
            run.fetched_bytes = _fetched(way.log, built)
            run.redo_s = redo_seconds(way.log.read_text(encoding="utf-8", errors="replace"))
            run.start_to_paused_s = start_to_paused
        return run
    finally:
        way.close()


def _extract_basebackup(built: Built) -> Callable[[ByHand], None]:
    def restore(way: ByHand) -> None:
        as_server(["mkdir", "-m", "700", str(way.datadir)])
        as_server(["tar", "-xzf", str(built.base_tar), "-C", str(way.datadir)], timeout=LIMIT.seconds)
        as_server(["touch", str(way.datadir / "recovery.signal")])
        wal = built.wal
        if ByHand.copies_wal:  # as drillbook does: the archive from the backup's start, copied first
            wal = server_dir(Path(f"{way.datadir}-wal"))
            names = sorted(p.name for p in built.wal.iterdir() if p.name >= built.start_segment)
            as_server(["cp", *(str(built.wal / name) for name in names), str(wal)], cwd=str(built.wal))
        with (way.datadir / "postgresql.auto.conf").open("a", encoding="utf-8") as auto:
            auto.write(f"restore_command = 'cp {wal}/%f %p'\n")
    return restore


def _pgbackrest_restore(built: Built) -> Callable[[ByHand], None]:
    def restore(way: ByHand) -> None:
        as_server(["mkdir", "-m", "700", str(way.datadir)])
        as_server(["pgbackrest", f"--config={built.config}", f"--stanza={STANZA}",
                   f"--pg1-path={way.datadir}", "restore"], timeout=LIMIT.seconds)
    return restore


# -- drillbook ----------------------------------------------------------------------------------

def _drillbook(spec: StoreSpec, built: Built, target: datetime | None) -> Run:
    """PhysicalRestore.run() (discover … first query), timed whole; its journal gives the phases."""
    t0 = time.perf_counter()
    drill = PhysicalRestore(spec, target=target, limit=LIMIT)
    with drill:
        result = drill.run()
        run = Run(total=time.perf_counter() - t0)
        assert drill.server is not None, "a recovered drill has its server"
        run.history_rows = _history_rows(drill.server.dsn())
        for entry in result.journal.entries:
            run.phases[str(entry["phase"])] = float(str(entry["duration_s"]))
            if entry["phase"] == "copy WAL":
                run.fetched_bytes = int(str(entry.get("bytes", 0)))
        if target is not None:
            if result.recovery.get("state") != "paused at target":
                raise RuntimeError(f"drillbook did not pause at the target: {result.recovery}")
            run.lsn_bytes = _replayed(drill.server.dsn(), built.backup_start_lsn)
            log = drill.server.log_path.read_text(encoding="utf-8", errors="replace")
            run.redo_s = redo_seconds(log)
            run.start_to_paused_s = result.timings.get("recovery")
        else:
            if result.recovery.get("state") != "promoted":
                raise RuntimeError(f"drillbook did not promote: {result.recovery}")
            run.phases.update(log_phases(drill.server.log_path.read_text(encoding="utf-8", errors="replace")))
    return run


def _basebackup_spec(built: Built) -> StoreSpec:
    return StoreSpec(name="bench-bb", url=str(built.store), key_pattern=KEY_PATTERN, kind="basebackup",
                     wal=str(built.wal))


def _pgbackrest_spec(built: Built) -> StoreSpec | str:
    """The ``kind = "pgbackrest"`` store of the same repo, made as drillbook.toml's table would be."""
    try:
        from drills.pgbackrest_options import pgbackrest_store
    except ImportError:
        return 'this checkout has no kind = "pgbackrest" store yet (helper "pgbackrest")'
    table = {"kind": "pgbackrest", "stanza": STANZA, "repo": 1, "options": {"repo1-path": str(built.repo)}}
    return pgbackrest_store("bench-pgbr", table, None, "the bench", "targets.bench-pgbr",
                            lambda value, _key, _secret: str(value))


# -- the table of ways ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """One backup kind restored two ways: by hand (A) and through drillbook (B)."""

    name: str
    by_hand: Callable[[Built], Callable[[ByHand], None]]
    spec: Callable[[Built], StoreSpec | str]


PAIRS = [Pair("basebackup", _extract_basebackup, _basebackup_spec),
         Pair("pgbackrest", _pgbackrest_restore, _pgbackrest_spec)]


Way = tuple[str, Callable[[], Run]]


def _alternate(rounds: int, ways: list[Way], rows: int | None) -> dict[str, list[Run]]:
    """Run the ways in turn (A, B, A, B, …) for ``rounds``; print each run as it ends.

    Every run must recover ``rows`` pgbench_history rows (to a target: as many as the first run did),
    else the run is broken: a way that stops replaying early is not faster, it is wrong.
    """
    runs: dict[str, list[Run]] = {name: [] for name, _ in ways}
    for n in range(1, rounds + 1):
        for name, way in ways:
            run = way()
            runs[name].append(run)
            phases = "  ".join(f"{k} {v:.2f}" for k, v in run.phases.items() if not k.startswith("cleanup"))
            print(f"  round {n}  {name:<24} {run.total:7.2f} s   {phases}", flush=True)
            rows = run.history_rows if rows is None else rows
            if run.history_rows != rows:
                raise RuntimeError(f"{name} recovered {run.history_rows} pgbench_history rows where the "
                                   f"other runs had {rows}: it did not replay the same WAL")
    return runs


def _median_phases(runs: list[Run]) -> str:
    names = [k for k in runs[0].phases if not k.startswith("cleanup")]
    return "  ".join(f"{k} {statistics.median(r.phases.get(k, 0.0) for r in runs):.2f}" for k in names)


def bench_end_of_archive(built: Built, rounds: int, pairs: list[Pair]) -> None:
    print("\n== restore + recovery to the end of the archive + first query ==", flush=True)
    for pair in pairs:
        spec = pair.spec(built)
        hand_name, drill_name = f"{pair.name} by hand", f"{pair.name} drillbook"
        restore = pair.by_hand(built)
        ways = [(hand_name, lambda: _by_hand(built, restore, None))]  # noqa: B023 - used in this iteration
        if isinstance(spec, str):  # the by-hand figures still stand on their own
            print(f"\n-- {pair.name}: by hand only; drillbook not measured: {spec}", flush=True)
            runs = _alternate(rounds, ways, built.history_rows)
            print(f"  median {hand_name:<24} {statistics.median(r.total for r in runs[hand_name]):7.2f} s   "
                  f"{_median_phases(runs[hand_name])}")
            continue
        print(f"\n-- {pair.name} (A = by hand, B = drillbook, alternated)", flush=True)
        ways.append((drill_name, lambda: _drillbook(spec, built, None)))  # noqa: B023
        runs = _alternate(rounds, ways, built.history_rows)
        hand, drill = (statistics.median(r.total for r in runs[n]) for n in (hand_name, drill_name))
        for name in (hand_name, drill_name):
            print(f"  median {name:<24} {statistics.median(r.total for r in runs[name]):7.2f} s   "
                  f"{_median_phases(runs[name])}")
        print(f"RATIO {pair.name} drillbook / by hand = {drill / hand:.3f}x   (target <= {TARGET_RATIO}x; "
              f"medians of {rounds})", flush=True)


def bench_target(built: Built, rounds: int, at: float) -> None:
    span = built.load_ended - built.load_started
    target = built.load_started + timedelta(seconds=span.total_seconds() * at)
    print(f"\n== recovery to a target time: {target.isoformat()} ({at:.0%} into the load), basebackup + WAL "
          "directory ==", flush=True)
    restore = _extract_basebackup(built)
    runs = _alternate(rounds, [
        ("PostgreSQL by hand", lambda: _by_hand(built, restore, target)),
        ("drillbook", lambda: _drillbook(_basebackup_spec(built), built, target))], None)
    for name, these in runs.items():
        lsn_mb = statistics.median(r.lsn_bytes or 0 for r in these) / 1e6
        redo = statistics.median(r.redo_s or 0.0 for r in these)
        wall = statistics.median(r.start_to_paused_s or 0.0 for r in these)
        fetched = statistics.median(r.fetched_bytes or 0 for r in these) / 1e6
        print(f"  median {name:<20} WAL copied {fetched:7.1f} MB   LSN replayed {lsn_mb:7.1f} MB   "
              f"redo {redo:6.2f} s = "
              f"{lsn_mb / redo if redo else 0:6.1f} MB/s   server start -> paused {wall:6.2f} s = "
              f"{lsn_mb / wall if wall else 0:6.1f} MB/s   "
              f"total {statistics.median(r.total for r in these):6.2f} s")


# -- helpers ---------------------------------------------------------------------------------------

def _replayed(dsn: str, start_lsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn)::bigint",
                           (start_lsn,)).fetchone()
    return int(row[0]) if row else 0


def _fetched(log: Path, built: Built) -> int:
    """Bytes of the segments the by-hand server restored (its log names each: "restored log file")."""
    names = set(re.findall(r'restored log file "([0-9A-F]{24})"',
                           log.read_text(encoding="utf-8", errors="replace")))
    return sum((built.wal / name).stat().st_size for name in names if (built.wal / name).is_file())


_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})"


def _when(log: str, pattern: str) -> datetime | None:
    found = re.search(_STAMP + r".*(?:" + pattern + ")", log, re.M)
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S.%f") if found else None


def redo_seconds(log: str) -> float | None:
    """Seconds from the log's ``redo starts at`` to where recovery stopped or paused (same log clock)."""
    start = _when(log, "redo starts at")
    end = _when(log, "recovery stopping|pausing at the end of recovery|redo done at")
    return (end - start).total_seconds() if start and end else None


# Where the server's own time goes, from its log: (phase, from line, to line).
LOG_PHASES = (("log: start->redo", "starting PostgreSQL", "redo starts at"),
              ("log: redo", "redo starts at", "redo done at"),
              ("log: redo done->ready", "redo done at", "database system is ready to accept connections"))


def log_phases(log: str) -> dict[str, float]:
    """The server's startup, redo and end of recovery (to promoted), in seconds, from its log."""
    phases = {}
    for name, begin, end in LOG_PHASES:
        a, b = _when(log, begin), _when(log, end)
        if a and b:
            phases[name] = (b - a).total_seconds()
    return phases


def _describe(built: Built) -> None:
    mb = 1e6
    print(f"source: scale {built.scale}, database {built.db_bytes / mb:.0f} MB; base.tar.gz "
          f"{built.base_tar_bytes / mb:.0f} MB; pgBackRest repo {built.repo_bytes / mb:.0f} MB; "
          f"WAL archive {built.wal_segments} segments ({built.wal_bytes / mb:.0f} MB), "
          f"{built.replay_segments} of them from the base backup's start on; pgbench load "
          f"{(built.load_ended - built.load_started).total_seconds():.0f} s at {built.tps:.0f} tps")
    print("build: " + ", ".join(f"{k} {v:.1f}s" for k, v in built.timings.items()), flush=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale of the source (1 = a smoke run)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds per pair (medians)")
    parser.add_argument("--load", type=int, default=None,
                        help="seconds of pgbench -T after the backups (default 60, 5 below scale 10)")
    parser.add_argument("--pairs", default=",".join(p.name for p in PAIRS), help="which pairs to measure")
    parser.add_argument("--no-pitr", action="store_true", help="skip the recovery to a target time")
    parser.add_argument("--hand-like-drillbook", action="store_true",
                        help="start the by-hand servers with drillbook's fsync=off, full_page_writes=off")
    parser.add_argument("--hand-copies-wal", action="store_true",
                        help="by hand, copy the WAL archive from the backup's start first, as drillbook does")
    parser.add_argument("--target-at", type=float, default=0.8, help="target's place in the load (0-1)")
    args = parser.parse_args()
    args.load = args.load if args.load is not None else (60 if args.scale >= 10 else 5)
    chosen = [p for p in PAIRS if p.name in args.pairs.split(",")]
    ByHand.like_drillbook, ByHand.copies_wal = args.hand_like_drillbook, args.hand_copies_wal
    load1, load5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load1:.2f} (1 min) {load5:.2f} (5 min) at start; "
          f"scale {args.scale}, {args.rounds} rounds, pgbench -T {args.load}"
          f"{'; by hand with fsync=off like drillbook' if args.hand_like_drillbook else ''}"
          f"{'; by hand copying the WAL first' if args.hand_copies_wal else ''}", flush=True)
    signal.signal(signal.SIGTERM, _interrupted)
    root = Path(tempfile.mkdtemp(prefix="drillbook-bench-physical-"))
    root.chmod(0o711)
    try:
        built = build(root, pgtools.bindir(), scale=args.scale, load_s=args.load)
        _describe(built)
        bench_end_of_archive(built, args.rounds, chosen)
        if not args.no_pitr:
            bench_target(built, args.rounds, args.target_at)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a broken run: say what broke, exit 1
        print(f"\nBROKEN RUN: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for way in list(ByHand.running):
            way.close()
        remove(root)
    load1, load5, _ = os.getloadavg()
    print(f"\nload average at the end: {load1:.2f} (1 min) {load5:.2f} (5 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
