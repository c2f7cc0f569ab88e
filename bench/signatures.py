"""Benchmark: sigstore bundles verified per second on one core (target >= 100/s).

Verifies every passing artifact bundle of the shared sigstore fixtures (and,
with ``--sandbox``, bundles from the sandbox signing authority) in a loop, in
one process (one core), through drillbook's ``verify_bundle`` — which also
hashes the file from disk and extracts evidence — and, as the baseline
measured in the same run, through sigstore's bare ``Bundle.from_json`` +
``Verifier.verify_artifact`` on bytes already in memory. Prints both rates and
their ratio (drillbook / bare sigstore). Every verification must pass.

    .venv/bin/python bench/signatures.py [--seconds 3] [--sandbox]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy

from checks.signatures import load_trusted_root, verify_bundle
from checks.verdict import Outcome
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority

TARGET_PER_SECOND = 100.0
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES")
                or Path(__file__).resolve().parents[2] / "shared" / "fixtures") / "supply_chain" / "sigstore"


def fixture_cases() -> list[dict[str, Any]]:
    """(artifact, bundle, root, identity, issuer) of every passing artifact case in cases.json."""
    meta = FIXTURES / "cases.json"
    if not meta.is_file():
        return []
    found = []
    for case in json.loads(meta.read_text())["cases"]:
        if case["kind"] == "artifact" and case["expected"] == "pass":
            found.append({"id": case["id"], "artifact": FIXTURES / case["artifact"],
                          "bundle": FIXTURES / case["bundle"], "root": FIXTURES / case["trusted_root"],
                          "identity": case["identity"], "issuer": case["issuer"]})
    return found


def sandbox_cases(directory: Path, count: int = 3) -> list[dict[str, Any]]:
    authority = SigningAuthority.create("bench")
    root = authority.write_trusted_root(directory / "root.json")
    found = []
    for i in range(count):
        artifact = directory / f"artifact-{i}.bin"
        artifact.write_bytes(os.urandom(4096))
        found.append({"id": f"sandbox-{i}", "artifact": artifact, "bundle": authority.sign_file(artifact),
                      "root": root, "identity": DEFAULT_IDENTITY, "issuer": DEFAULT_ISSUER})
    return found


def rate(label: str, work: list[Callable[[], None]], seconds: float) -> float:
    """Verifications per second, cycling through ``work`` for about ``seconds``."""
    for item in work:  # warm-up: imports, caches, first-call costs
        item()
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for item in work:
            item()
        done += len(work)
    elapsed = time.perf_counter() - start
    per_second = done / elapsed
    print(f"  {label:<34} {per_second:8.1f} bundles/s  ({done} in {elapsed:.2f} s, "
          f"{1000 / per_second:.2f} ms each)")
    return per_second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--sandbox", action="store_true", help="also the sandbox authority's bundles")
    args = parser.parse_args()

    cases = fixture_cases()
    if not cases:
        print(f"shared fixtures not found at {FIXTURES}; using sandbox bundles only")
    tmp = Path(tempfile.mkdtemp(prefix="bench-signatures-"))
    if args.sandbox or not cases:
        cases += sandbox_cases(tmp)
    print(f"{len(cases)} bundles: {', '.join(c['id'] for c in cases)}; one process = one core")

    def drillbook_call(case: dict[str, Any]) -> Callable[[], None]:
        root = load_trusted_root(case["root"])

        def call() -> None:
            verdict = verify_bundle(case["artifact"], case["bundle"], trusted_root=root,
                                    identity=case["identity"], issuer=case["issuer"])
            if verdict.outcome is not Outcome.PASSED:
                raise SystemExit(f"{case['id']}: not verified: {verdict.message}")
        return call

    def bare_call(case: dict[str, Any]) -> Callable[[], None]:
        verifier = Verifier(trusted_root=TrustedRoot.from_file(str(case["root"])))
        data = case["artifact"].read_bytes()
        raw = case["bundle"].read_bytes()
        identity = policy.Identity(identity=case["identity"], issuer=case["issuer"])

        def call() -> None:
            verifier.verify_artifact(data, Bundle.from_json(raw), identity)
        return call

    baseline = rate("sigstore bare (baseline)", [bare_call(c) for c in cases], args.seconds)
    ours = rate("drillbook verify_bundle", [drillbook_call(c) for c in cases], args.seconds)
    ratio = ours / baseline
    ok = ours >= TARGET_PER_SECOND
    print(f"ratio drillbook / bare sigstore: {ratio:.2f}x (overhead: file hashing, evidence extraction)")
    verdict = "MET" if ok else "NOT MET"
    print(f"target >= {TARGET_PER_SECOND:.0f} bundles/s per core: {verdict} ({ours:.1f}/s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
