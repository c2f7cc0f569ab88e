"""Evidence and ledger benchmarks: ratios against baselines measured in the same run.

    .venv/bin/python bench/evidence.py [--runs 30] [--entries 5000]

1. Export of N runs (a canonical, stored zip with a manifest) vs a naive
   exporter: read every file, hash it, write an ordinary deflated zip.
2. Verify (every hash, then a canonical rebuild of the archive compared byte
   for byte) vs ``zipfile.testzip()`` (CRC check only) of the naive zip.
3. Ledger append of one run (10 scenarios: lock, tail check, one write,
   fsync, head record) vs a bare ``O_APPEND`` write + fsync of the same lines.
4. Ledger read with the whole chain checked vs ``json.loads`` of every line.

Targets: export <= 3x, verify <= 5x, append <= 3x, read <= 4x of the baselines.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks.verdict import Outcome
from reports.evidence import export_bundle, verify_bundle
from reports.ledger import LocalLedger, NewEntry
from tests.unit.test_evidence import make_run


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def naive_zip(run_dirs: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for run_dir in run_dirs:
            for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
                data = path.read_bytes()
                hashlib.sha256(data).hexdigest()
                archive.writestr(str(path.relative_to(run_dir.parent)), data)
    return buffer.getvalue()


def entry(i: int) -> NewEntry:
    return NewEntry(id=f"BKP-{i % 40:02d}", scenario="Yesterday's backup restores", cadence="monthly",
                    pack="backup", outcome=Outcome.PASSED, run_id=f"run-{i // 10}",
                    time="2026-11-22T09:00:00+00:00", duration_s=1.25, evidence_sha256="ab" * 32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--appends", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="drillbook-bench-evidence-"))
    try:
        run_dirs = [make_run(root / "runs", f"20261101T{i:06d}Z-bench{i:02d}") for i in range(args.runs)]
        size = sum(p.stat().st_size for d in run_dirs for p in d.rglob("*") if p.is_file())
        ours = best(lambda: export_bundle(run_dirs))
        base = best(lambda: naive_zip(run_dirs))
        bundle = export_bundle(run_dirs)
        naive = naive_zip(run_dirs)
        print(f"export   {args.runs} runs, {size / 1e6:.1f} MB in: {ours * 1000:7.1f} ms vs naive deflate "
              f"zip {base * 1000:7.1f} ms  ratio {ours / base:.2f}x (target <= 3x); "
              f"bundle {len(bundle) / 1e6:.2f} MB vs {len(naive) / 1e6:.2f} MB deflated")
        assert export_bundle(run_dirs) == bundle, "export is not deterministic"
        ours = best(lambda: verify_bundle(bundle))
        base = best(lambda: zipfile.ZipFile(io.BytesIO(naive)).testzip())
        print(f"verify   {ours * 1000:7.1f} ms vs testzip {base * 1000:7.1f} ms  ratio {ours / base:.2f}x "
              "(target <= 5x)")

        ledger = LocalLedger(root / "ledger.jsonl")
        raw = root / "raw.jsonl"
        lines = "".join(json.dumps(entry(i).__dict__, default=str) + "\n" for i in range(10)).encode()
        ours_samples, base_samples = [], []
        # Interleaved, so that both see the same disk and the same load.
        for n in range(args.appends):
            t0 = time.perf_counter()
            ledger.append([entry(n * 10 + i) for i in range(10)])
            ours_samples.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            fd = os.open(raw, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, lines)
            os.fsync(fd)
            os.close(fd)
            base_samples.append(time.perf_counter() - t1)
        ours_append, base_append = statistics.median(ours_samples), statistics.median(base_samples)
        print(f"append   {ours_append * 1e6:7.0f} us per run of 10 entries vs bare append+fsync "
              f"{base_append * 1e6:7.0f} us  ratio {ours_append / base_append:.2f}x (target <= 3x)")

        big = LocalLedger(root / "big.jsonl")
        big.append([entry(i) for i in range(args.entries)])
        assert big.read().ok
        ours = best(big.read)
        text = big.path.read_text()
        base = best(lambda: [json.loads(x) for x in text.splitlines()])
        print(f"read     {args.entries} entries, chain checked: {ours * 1000:7.1f} ms vs json.loads "
              f"per line {base * 1000:7.1f} ms  ratio {ours / base:.2f}x (target <= 4x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
