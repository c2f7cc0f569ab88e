"""S3 ledger under contention: N unrelated appenders released at once, against moto's S3 server.

    .venv/bin/python bench/ledger_contention.py [--appenders 8,24,40] [--batch 10]

For each N, the current append (catch-up listing, jittered exponential pauses, time budget) and,
as the baseline in the same run, the append it replaced (the whole prefix listed per try, no
pause, 20 tries). Printed per N and method: appends landed / failed, wall time, requests per
append (PUT, GET, LIST), whether the chain is intact, and the load average (the machine is shared:
a figure measured under load says so). Targets (FLEET.md §8): 100 % of 40 land, chain intact.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402 - after the repository is on the path, like the other benches
from botocore.exceptions import ClientError  # noqa: E402

from checks.verdict import Outcome  # noqa: E402
from drillbook.audit import s3_ledger  # noqa: E402
from drills.processes import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, free_port  # noqa: E402
from reports.ledger import LedgerEntry, LedgerError, NewEntry  # noqa: E402
from reports.ledger_s3 import S3Ledger, _chained  # noqa: E402

_SERVE = ("import sys, time; from drills.processes import S3Server; "
          "S3Server(port=int(sys.argv[1])).start(); time.sleep(3600)")


class OldAppend(S3Ledger):
    """The append before issue 14: list the whole prefix, try the next position, 20 times at most."""

    def append(self, new: Sequence[NewEntry], *, unless_run: str | None = None) -> list[LedgerEntry]:
        for _ in range(20):
            keys = self._ledger_keys()
            seq, prev = self._end_of(keys[-1], self._object_text(keys[-1]) or "") if keys else (0, "0" * 64)
            entries = _chained(new, seq, prev)
            body = "".join(e.line() for e in entries).encode()
            try:
                self.client.put_object(Bucket=self.location.bucket, Key=self._key(entries[0].seq), Body=body,
                                       IfNoneMatch="*")
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                    continue
                raise
            return entries
        raise LedgerError("20 other appends won the race in a row")


def serve() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/", timeout=1):  # noqa: S310 - loopback
                return child, url
        except urllib.error.HTTPError:
            return child, url
        except OSError:
            time.sleep(0.2)
    child.kill()
    raise SystemExit(f"moto's S3 server did not answer on {url} within 60 s")


def measure(endpoint: str, appenders: int, batch: int, old: bool) -> str:
    session = boto3.session.Session()
    opts = {"endpoint_url": endpoint, "access_key_id": S3_ACCESS_KEY_ID,
            "secret_access_key": S3_SECRET_ACCESS_KEY}
    bucket = f"bench-{secrets.token_hex(4)}"
    url = f"s3://{bucket}/ledger/"
    first = s3_ledger(url, opts, session=session)
    assert isinstance(first, S3Ledger)
    first.client.create_bucket(Bucket=bucket)
    calls: Counter[str] = Counter()
    ledgers: list[S3Ledger] = []
    for _ in range(appenders):
        made = s3_ledger(url, opts, session=session)
        assert isinstance(made, S3Ledger)
        if old:
            made = OldAppend(made.location, made.client, endpoint=endpoint)

        def count(event_name: str, **_: Any) -> None:
            calls[event_name.rsplit(".", 1)[-1]] += 1

        made.client.meta.events.register("before-call.s3", count)
        ledgers.append(made)
    barrier = threading.Barrier(appenders)
    failed: list[str] = []

    def one(index: int) -> None:
        rows = [NewEntry(id=f"FLT-{i:02d}", scenario="s", cadence="monthly", pack="fleet",
                         outcome=Outcome.PASSED, run_id=f"run-{index}", time="2026-12-03T02:00:00+00:00",
                         duration_s=1.0, evidence_sha256="ab" * 32, member=f"db-{i:03d}")
                for i in range(batch)]
        barrier.wait()
        try:
            ledgers[index].append(rows)
        except LedgerError as exc:
            failed.append(str(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(appenders)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    read = first.read()
    per = {k: calls[k] / appenders for k in ("PutObject", "GetObject", "ListObjectsV2")}
    return (f"{'old' if old else 'new'}  N={appenders:<3} landed {appenders - len(failed):>3}/{appenders:<3} "
            f"wall {wall:6.1f} s  per append: PUT {per['PutObject']:5.1f} GET {per['GetObject']:5.1f} "
            f"LIST {per['ListObjectsV2']:5.1f}  chain {'intact' if read.ok else 'BROKEN'}  "
            f"load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appenders", default="8,24,40")
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    child, endpoint = serve()
    try:
        for appenders in (int(n) for n in args.appenders.split(",")):
            for old in (True, False):
                print(measure(endpoint, appenders, args.batch, old), flush=True)
    finally:
        child.terminate()
        child.wait(timeout=30)


if __name__ == "__main__":
    main()
