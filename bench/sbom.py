"""Benchmark: drillbook's CycloneDX JSON validation vs cyclonedx-python-lib's default validator.

Generates a ~2 MB CycloneDX 1.6 JSON SBOM (~1,000 components, each with hashes,
a licence and external references), validates it with both in this run, and
prints the ratio (target >= 30x). Asserts identical verdicts on the generated
document, on a variant with one bad URL, and on every document of the shared
CycloneDX fixtures (cases.json).

    .venv/bin/python bench/sbom.py [--components 1000] [--skip-fixtures] [--spdx-packages 1000]

It then prints the SPDX figure beside it (bench/sbom_spdx.py: drillbook vs spdx-tools'
own parse + validate on a ~2 MB SPDX JSON document; 0 packages skips it).

The library's default takes minutes on the large document (FIELD-NOTES: ~100 s
for 1.9 MB): that is the baseline being measured.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator

from checks.cyclonedx_fast import iri_ok, iri_reference_ok
from checks.sbom import validate_sbom
from checks.verdict import Outcome

TARGET_RATIO = 30.0
FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES")
                or Path(__file__).resolve().parents[2] / "shared" / "fixtures") / "supply_chain" / "cyclonedx"
_REFERENCE_TYPES = ["website", "vcs", "distribution", "issue-tracker", "documentation", "release-notes"]


def generate(components: int) -> dict[str, Any]:
    """A realistic, schema-valid SBOM: every component with purl, hashes, licence, six URLs."""
    items = []
    for i in range(components):
        name = f"package-{i:04d}"
        version = f"{i % 7}.{i % 13}.{i % 5}"
        digest = hashlib.sha256(name.encode()).hexdigest()
        items.append({
            "type": "library", "bom-ref": f"pkg:pypi/{name}@{version}", "name": name, "version": version,
            "group": f"org.example.team{i % 17}", "description": f"Component {i} of the benchmark SBOM. " * 3,
            "purl": f"pkg:pypi/{name}@{version}",
            "hashes": [{"alg": "SHA-256", "content": digest},
                       {"alg": "SHA-512", "content": hashlib.sha512(name.encode()).hexdigest()}],
            "licenses": [{"license": {"id": ["MIT", "Apache-2.0", "BSD-3-Clause"][i % 3]}}],
            "externalReferences": [
                {"type": kind,
                 "url": f"https://{kind}.example.org/projects/{name}/{version}/{kind}?ref={digest[:12]}#top",
                 "comment": f"{kind} of {name}"}
                for kind in _REFERENCE_TYPES
            ],
        })
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "metadata": {"timestamp": "2026-11-22T00:00:00Z",
                     "component": {"type": "application", "name": "bench-app", "version": "1.0.0",
                                   "bom-ref": "bench-app"}},
        "components": items,
    }


@functools.cache
def _library(fmt: OutputFormat, version: str) -> Any:
    # One validator per version, reused: its schema loading is not what is measured.
    return make_schemabased_validator(fmt, SchemaVersion.from_version(version))


def library_default(text: str) -> tuple[bool, str | None, str | None]:
    """cyclonedx-python-lib's default JSON validator: (valid, first error path, message)."""
    error = _library(OutputFormat.JSON, json.loads(text)["specVersion"]).validate_str(text)
    return (True, None, None) if error is None else (False, error.data.json_path, error.data.message)


def library_xml(text: str, version: str) -> tuple[bool, str | None, str | None]:
    error = _library(OutputFormat.XML, version).validate_str(text)
    return (True, None, None) if error is None else (False, f"line {error.data.line}", error.data.message)


def drillbook_verdict(path: Path) -> tuple[bool, str | None, str | None]:
    verdict = validate_sbom(path)
    if verdict.outcome is Outcome.PASSED:
        return True, None, None
    first = verdict.evidence["errors"][0]
    return False, first["at"], first["message"]


def same(ours: tuple[bool, str | None, str | None], theirs: tuple[bool, str | None, str | None]) -> bool:
    if ours[0] != theirs[0] or ours[1] != theirs[1]:
        return False
    return ours[2] is None or (theirs[2] or "").startswith(ours[2].removesuffix("…"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=1000)
    parser.add_argument("--skip-fixtures", action="store_true")
    parser.add_argument("--spdx-packages", type=int, default=1000, help="SPDX document size; 0 skips SPDX")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="drillbook-bench-sbom-") as tmp:
        path = Path(tmp) / "bench.cdx.json"
        document = generate(args.components)
        text = json.dumps(document, indent=2)
        path.write_text(text)
        urls = sum(len(c["externalReferences"]) for c in document["components"])
        print(f"generated {path.name}: {len(text) / 1e6:.2f} MB, {args.components} components, {urls} URLs")

        # Build both validators first (schema loading is not what is compared).
        library_default('{"specVersion": "1.6"}')
        validate_sbom(path)
        iri_reference_ok.cache_clear()
        iri_ok.cache_clear()

        t0 = time.perf_counter()
        ours = drillbook_verdict(path)
        drillbook_s = time.perf_counter() - t0
        print(f"drillbook validate_sbom (read + parse + validate, cold URL cache): {drillbook_s:.2f} s -> "
              f"{'valid' if ours[0] else 'invalid'}")
        print("library default validator (this takes minutes) ...", flush=True)
        t0 = time.perf_counter()
        theirs = library_default(text)
        library_s = time.perf_counter() - t0
        print(f"library default validate_str: {library_s:.2f} s -> {'valid' if theirs[0] else 'invalid'}")
        assert same(ours, theirs), f"verdicts differ on the generated SBOM: {ours} vs {theirs}"

        # One bad URL early in the document: both must fail at the same place with the same message.
        bad = json.loads(text)
        bad["components"][3]["externalReferences"][1]["url"] = "https://exa mple.org/broken"
        bad_path = Path(tmp) / "bad.cdx.json"
        bad_path.write_text(json.dumps(bad))
        bad_ours, bad_theirs = drillbook_verdict(bad_path), library_default(bad_path.read_text())
        assert same(bad_ours, bad_theirs), \
            f"verdicts differ on the bad-URL variant: {bad_ours} vs {bad_theirs}"
        print(f"bad-URL variant: both invalid at {bad_ours[1]}")

    checked = 0
    cases_file = FIXTURES / "cases.json"
    if args.skip_fixtures:
        print("fixtures: skipped (--skip-fixtures)")
    elif not cases_file.is_file():
        print(f"fixtures: not found under {FIXTURES} (set DRILLBOOK_FIXTURES)")
    else:
        for case in json.loads(cases_file.read_text())["documents"]:
            fixture = FIXTURES / case["file"]
            content = fixture.read_text(encoding="utf-8")
            theirs = library_default(content) if case["format"] == "json" \
                else library_xml(content, case["spec_version"])
            ours = drillbook_verdict(fixture)
            assert same(ours, theirs), f"verdicts differ on {case['file']}: {ours} vs {theirs}"
            assert ours[0] == (case["expected"] == "valid"), f"{case['file']}: expected {case['expected']}"
            checked += 1
        print(f"fixtures: identical verdicts on all {checked} documents of cases.json")

    ratio = library_s / drillbook_s
    status = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"RATIO library default / drillbook = {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x): {status}")
    if args.spdx_packages:
        from sbom_spdx import run as spdx_run  # bench/ is the script's folder, first on sys.path

        with tempfile.TemporaryDirectory(prefix="drillbook-bench-spdx-") as tmp:
            spdx_ratio = spdx_run(args.spdx_packages, Path(tmp))
        print(f"SPDX RATIO spdx-tools / drillbook = {spdx_ratio:.1f}x (CycloneDX above: {ratio:.1f}x)")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
