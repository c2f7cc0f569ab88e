"""Benchmark: drillbook's SPDX validation vs spdx-tools' own parse + validate, in the same run.

Generates a ~2 MB SPDX 2.3 JSON document shaped like a scanner's (packages with
checksums, licences, purl and CPE references; one file per package; DEPENDS_ON
and CONTAINS relationships), in two variants: relationships stated explicitly
(syft style) and files listed with ``hasFiles`` (Trivy style). For each, times

- drillbook: ``validate_sbom(path)`` (read, detect, parse, validate, place the messages);
- the library: ``parse_file(path)`` + ``validate_full_spdx_document(document)``;

asserts the same messages on the document and on a variant with a broken
relationship, and prints the ratio. Run on its own or from ``bench/sbom.py``:

    .venv/bin/python bench/sbom_spdx.py [--packages 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from checks.sbom import validate_sbom
from checks.spdx.fast_validation import validate_document
from checks.spdx.parsing import explicit_relationships
from checks.verdict import Outcome

TARGET_SECONDS = 5.0  # "a 2 MB SPDX JSON validates in seconds"
_LICENCES = ["MIT", "Apache-2.0", "BSD-3-Clause OR MIT", "GPL-2.0-only WITH Classpath-exception-2.0"]


def generate(packages: int, *, has_files: bool) -> dict[str, Any]:
    """A valid SPDX 2.3 document: an application depending on ``packages`` packages, one file each."""
    root = "SPDXRef-Package-root"
    items: list[dict[str, Any]] = [
        {
            "SPDXID": root,
            "name": "bench-app",
            "versionInfo": "1.0.0",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "Apache-2.0",
            "licenseDeclared": "Apache-2.0",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "APPLICATION",
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": "pkg:pypi/bench-app@1.0.0",
                }
            ],
        }
    ]
    files: list[dict[str, Any]] = []
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root}
    ]
    for i in range(packages):
        name, version = f"package-{i:04d}", f"{i % 7}.{i % 13}.{i % 5}"
        spdx_id, file_id = f"SPDXRef-Package-pypi-{name}-{i}", f"SPDXRef-File-{i}"
        file_name = f"./site-packages/{name}/__init__.py"
        package: dict[str, Any] = {
            "SPDXID": spdx_id,
            "name": name,
            "versionInfo": version,
            "filesAnalyzed": True,
            "downloadLocation": f"https://files.example.org/{name}/{version}/{name}-{version}.tar.gz",
            "packageVerificationCode": {
                "packageVerificationCodeValue": hashlib.sha1(name.encode()).hexdigest()  # noqa: S324 - as SPDX defines it
            },
            "supplier": "Organization: Example Team",
            "homepage": f"https://example.org/{name}",
            "checksums": [
                {"algorithm": "SHA256", "checksumValue": hashlib.sha256(name.encode()).hexdigest()}
            ],
            "licenseConcluded": _LICENCES[i % 4],
            "licenseDeclared": _LICENCES[i % 4],
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY",
            "description": f"Package {i} of the benchmark document. " * 2,
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": f"pkg:pypi/{name}@{version}",
                },
                {
                    "referenceCategory": "SECURITY",
                    "referenceType": "cpe23Type",
                    "referenceLocator": f"cpe:2.3:a:example:{name}:{version}:*:*:*:*:*:*:*",
                },
            ],
        }
        files.append(
            {
                "SPDXID": file_id,
                "fileName": file_name,
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": hashlib.sha1(file_name.encode()).hexdigest()},  # noqa: S324
                    {"algorithm": "SHA256", "checksumValue": hashlib.sha256(file_name.encode()).hexdigest()},
                ],
            }
        )
        relationships.append(
            {"spdxElementId": root, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": spdx_id}
        )
        if has_files:
            package["hasFiles"] = [file_id]
        else:
            relationships.append(
                {"spdxElementId": spdx_id, "relationshipType": "CONTAINS", "relatedSpdxElement": file_id}
            )
        items.append(package)
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "bench",
        "documentNamespace": "https://example.org/spdxdocs/bench-3e671687-395b-41f5-a30f-a58921a69b79",
        "creationInfo": {"created": "2026-11-22T00:00:00Z", "creators": ["Tool: drillbook-bench"]},
        "packages": items,
        "files": files,
        "relationships": relationships,
    }


def _library(path: Path) -> tuple[list[Any], float]:
    start = time.perf_counter()
    messages = validate_full_spdx_document(parse_file(str(path)))
    return messages, time.perf_counter() - start


def run(packages: int, directory: Path) -> float:
    """Bench both variants; returns the smallest ratio library / drillbook (asserts identical verdicts)."""
    ratios = []
    for style, has_files in (("syft-style (CONTAINS)", False), ("Trivy-style (hasFiles)", True)):
        raw = generate(packages, has_files=has_files)
        path = directory / f"bench-{'hasfiles' if has_files else 'contains'}.spdx.json"
        path.write_text(json.dumps(raw, indent=2))
        start = time.perf_counter()
        verdict = validate_sbom(path)
        ours_s = time.perf_counter() - start
        assert verdict.outcome is Outcome.PASSED, verdict.message
        print(f"SPDX {style}: {path.stat().st_size / 1e6:.2f} MB, {packages + 1} packages, {packages} files")
        print(f"  drillbook validate_sbom: {ours_s:.2f} s -> valid (target < {TARGET_SECONDS:.0f} s)")
        print("  spdx-tools parse_file + validate_full_spdx_document ...", flush=True)
        theirs, library_s = _library(path)
        print(f"  spdx-tools: {library_s:.2f} s -> {'valid' if not theirs else f'{len(theirs)} messages'}")
        assert not theirs, theirs[:3]

        broken = json.loads(json.dumps(raw))
        broken["relationships"][3]["relatedSpdxElement"] = "SPDXRef-nowhere"
        parsed = parse_file_raw(broken)
        ours_messages, library_messages = validate_document(parsed), validate_full_spdx_document(parsed)
        assert ours_messages == library_messages and len(ours_messages) == 1, ours_messages
        print(f"  broken-relationship variant: identical messages ({ours_messages[0].validation_message})")
        ratio = library_s / ours_s
        print(f"  RATIO spdx-tools / drillbook = {ratio:.1f}x")
        ratios.append(ratio)
    return min(ratios)


def parse_file_raw(raw: dict[str, Any]) -> Any:
    """The library's JSON parser on a dict (through the one-pass relationship rewrite drillbook uses)."""
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser

    return JsonLikeDictParser().parse(explicit_relationships(raw))  # type: ignore[no-untyped-call]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drillbook-bench-spdx-") as tmp:
        ratio = run(args.packages, Path(tmp))
    print(f"SPDX RATIO (smallest) spdx-tools / drillbook = {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
