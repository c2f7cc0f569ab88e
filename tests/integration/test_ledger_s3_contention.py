"""The S3 ledger under fleet contention, against moto's S3 HTTP server on loopback.

FLEET.md §4.3 measured the old append (20 tries, the whole prefix listed per try): 8 of 40
concurrent appenders failed. With the chain followed object by object, jittered pauses and a time
budget, all of them must land. Batches stay small (a few KB): moto's conditional writes hold
there, and cannot prove atomicity anyway (tests/unit/test_ledger_s3_races.py pins that logic).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from checks.verdict import Outcome
from drillbook.audit import s3_ledger
from drills.processes import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, free_port, wait_until
from reports.ledger import LedgerEntry, NewEntry
from reports.ledger_runs import append_run_once
from reports.ledger_s3 import S3Ledger
from reports.results import RunResult, ScenarioResult

pytestmark = pytest.mark.integration

APPENDERS = 40
BATCH = 10
REPO = Path(__file__).resolve().parents[2]
# moto's S3 server in a process of its own: the 40 appenders' threads do not share its GIL.
_SERVE = ("import sys, time; from drills.processes import S3Server; "
          "S3Server(port=int(sys.argv[1])).start(); time.sleep(3600)")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as response:  # noqa: S310 - loopback
                return int(response.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    try:
        wait_until(answers, what=f"moto's S3 server on {url}", deadline_s=60,
                   gave_up=lambda: None if child.poll() is None else f"it exited with {child.returncode}")
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


_SESSION = boto3.session.Session()  # the service model loaded once; every ledger its own client


def open_ledger(endpoint: str, url: str) -> S3Ledger:
    made = s3_ledger(url, {"endpoint_url": endpoint, "access_key_id": S3_ACCESS_KEY_ID,
                           "secret_access_key": S3_SECRET_ACCESS_KEY}, session=_SESSION)
    assert isinstance(made, S3Ledger)
    return made


@pytest.fixture
def url(endpoint: str) -> str:
    bucket = f"ledger-{secrets.token_hex(4)}"
    open_ledger(endpoint, f"s3://{bucket}/").client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/fleet/ledger/"


def counted(ledger: S3Ledger, calls: Counter[str]) -> S3Ledger:
    """Count the requests an appender makes (figures for the report, not assertions on time)."""
    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    ledger.client.meta.events.register("before-call.s3", count)
    return ledger


def entries(run_id: str, count: int) -> list[NewEntry]:
    return [NewEntry(id=f"FLT-{i:02d}", scenario="s", cadence="monthly", pack="fleet", outcome=Outcome.PASSED,
                     run_id=run_id, time="2026-12-03T02:00:00+00:00", duration_s=1.0,
                     evidence_sha256="ab" * 32, member=f"db-{i:03d}") for i in range(count)]


def race(workers: int, work: object) -> tuple[list[object], list[BaseException]]:
    """Run ``work(index)`` in ``workers`` threads released together; results and errors."""
    barrier = threading.Barrier(workers)
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        barrier.wait()
        try:
            found = work(index)  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - a thread's error, surfaced by the caller
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(found)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "an appender never returned"
    return results, errors


class TestContention:
    def test_forty_unrelated_appenders_all_land_in_one_intact_chain(self, endpoint: str, url: str) -> None:
        """40 runs x 10 entries released by one barrier: 400 entries, 40 objects, each batch whole."""
        calls: Counter[str] = Counter()
        # Each appender its own client, as separate runs have.
        ledgers = [counted(open_ledger(endpoint, url), calls) for _ in range(APPENDERS)]
        started = time.monotonic()
        results, errors = race(APPENDERS, lambda i: ledgers[i].append(entries(f"run-{i:02d}", BATCH)))
        wall = time.monotonic() - started
        assert errors == []
        assert len(results) == APPENDERS
        read = open_ledger(endpoint, url).read()
        assert read.ok, read.problems[:3]
        assert [e.seq for e in read.entries] == list(range(1, APPENDERS * BATCH + 1))
        by_run: dict[str, list[int]] = {}
        for item in read.entries:
            by_run.setdefault(item.run_id, []).append(item.seq)
        assert sorted(by_run) == [f"run-{i:02d}" for i in range(APPENDERS)]
        for run_id, seqs in by_run.items():  # contiguous: one object per batch, never interleaved
            assert seqs == list(range(seqs[0], seqs[0] + BATCH)), run_id
            assert seqs[0] % BATCH == 1
        # What each appender was told it appended is what the ledger holds.
        landed = {e.hash for found in results for e in found}  # type: ignore[attr-defined]
        assert landed == {e.hash for e in read.entries}
        print(f"\n{APPENDERS} appenders x {BATCH} entries: all landed in {wall:.1f} s; requests "
              f"{dict(sorted(calls.items()))}")

    def test_racing_merges_of_one_group_append_one_batch(self, endpoint: str, url: str) -> None:
        """Six merges of run group g-1 and six unrelated runs at once: g-1 is in the ledger once."""
        ledgers = [open_ledger(endpoint, url) for _ in range(12)]
        when = "2026-12-03T02:00:00+00:00"
        group = RunResult(run_id="g-1", started_at=when, scenarios=[
            ScenarioResult(nodeid=f"f::FLT-01[db-{m}]", feature="f", feature_path="features/fleet/f.feature",
                           scenario="s", tags=["id:FLT-01", "monthly"], started_at=when)
            for m in range(3)])

        def work(index: int) -> list[LedgerEntry]:
            if index % 2 == 0:
                return append_run_once(ledgers[index], group)
            return ledgers[index].append(entries(f"other-{index}", 2))

        results, errors = race(12, work)
        assert errors == []
        read = open_ledger(endpoint, url).read()
        assert read.ok, read.problems[:3]
        assert [e.run_id for e in read.entries].count("g-1") == 3
        merged = [r for i, r in enumerate(results) if r and r[0].run_id == "g-1"]  # type: ignore[index]
        assert len(merged) == 1
        assert len(read.entries) == 3 + 6 * 2
