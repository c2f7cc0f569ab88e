"""Real SPDX documents for tests: built with spdx-tools' model, written by its own writers.

One document, four serializations (JSON, YAML, tag-value, RDF/XML), so tests read
what the library writes rather than hand-typed text. :func:`github_export` and
:func:`syft_style` are dicts shaped like the documents those tools publish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from spdx_tools.spdx.model.actor import Actor, ActorType
from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
from spdx_tools.spdx.model.document import CreationInfo, Document
from spdx_tools.spdx.model.file import File
from spdx_tools.spdx.model.package import (
    ExternalPackageRef,
    ExternalPackageRefCategory,
    Package,
    PackagePurpose,
)
from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
from spdx_tools.spdx.writer.write_anything import write_file

from checks.spdx.locate import licence_problem

SUFFIXES = {"json": ".spdx.json", "yaml": ".spdx.yaml", "tag-value": ".spdx", "rdf": ".rdf.xml"}
DOCUMENT_ID = "SPDXRef-DOCUMENT"


@dataclass
class Pkg:
    """One package to put in a test SPDX document."""

    name: str
    version: str | None = None
    purl: str | None = None
    sha256: str | None = None
    licence: str | None = None  # an SPDX licence expression, concluded and declared


@dataclass
class FileEntry:
    """One file to put in a test SPDX document (SHA-1 is mandatory in SPDX 2.x)."""

    name: str
    content: bytes
    extra: Sequence[str] = field(default_factory=lambda: ["SHA256"])


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _licence(expression: str | None) -> Any:
    from spdx_tools.common.spdx_licensing import spdx_licensing

    if expression is None:
        return SpdxNoAssertion()
    assert licence_problem(expression) is None, expression
    return spdx_licensing.parse(expression)


def build(packages: Sequence[Pkg], files: Sequence[FileEntry] = (), *, version: str = "SPDX-2.3") -> Document:
    """A valid document: an application package DESCRIBED, depending on ``packages``, containing ``files``."""
    creation = CreationInfo(
        spdx_version=version,
        spdx_id=DOCUMENT_ID,
        name="drillbook-test",
        document_namespace="https://example.org/spdxdocs/drillbook-test-1",
        creators=[Actor(ActorType.TOOL, "drillbook-tests")],
        created=datetime(2026, 11, 22),
    )
    # SPDX 2.2 has no primaryPackagePurpose and makes licences and copyright text mandatory.
    v22 = version == "SPDX-2.2"
    common: dict[str, Any] = {"copyright_text": SpdxNoAssertion()} if v22 else {}
    root = Package(
        spdx_id="SPDXRef-app",
        name="app",
        version="1.0.0",
        download_location=SpdxNoAssertion(),
        files_analyzed=False,
        license_concluded=SpdxNoAssertion(),
        license_declared=SpdxNoAssertion(),
        primary_package_purpose=None if v22 else PackagePurpose.APPLICATION,
        **common,
    )
    items = [root]
    relationships = [Relationship(DOCUMENT_ID, RelationshipType.DESCRIBES, "SPDXRef-app")]
    for index, pkg in enumerate(packages):
        refs = (
            [ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", pkg.purl)]
            if pkg.purl
            else []
        )
        checksums = [Checksum(ChecksumAlgorithm.SHA256, pkg.sha256)] if pkg.sha256 else []
        items.append(
            Package(
                spdx_id=f"SPDXRef-pkg-{index}",
                name=pkg.name,
                version=pkg.version,
                download_location=SpdxNoAssertion(),
                files_analyzed=False,
                checksums=checksums,
                license_concluded=_licence(pkg.licence),
                license_declared=_licence(pkg.licence),
                external_references=refs,
                primary_package_purpose=None if v22 else PackagePurpose.LIBRARY,
                **common,
            )
        )
        relationships.append(Relationship("SPDXRef-app", RelationshipType.DEPENDS_ON, f"SPDXRef-pkg-{index}"))
    spdx_files = []
    for index, entry in enumerate(files):
        checksums = [Checksum(ChecksumAlgorithm.SHA1, hashlib.sha1(entry.content).hexdigest())]  # noqa: S324 - SPDX's mandatory file checksum
        if "SHA256" in entry.extra:
            checksums.append(Checksum(ChecksumAlgorithm.SHA256, sha256_of(entry.content)))
        spdx_files.append(
            File(
                name=f"./{entry.name}",
                spdx_id=f"SPDXRef-file-{index}",
                checksums=checksums,
                license_concluded=SpdxNoAssertion(),
            )
        )
        relationships.append(Relationship(DOCUMENT_ID, RelationshipType.DESCRIBES, f"SPDXRef-file-{index}"))
    return Document(creation_info=creation, packages=items, files=spdx_files, relationships=relationships)


def write(document: Document, directory: Path, serialization: str, stem: str = "sbom") -> Path:
    """The document written by spdx-tools' writer for the serialization (not validated: tests break some)."""
    path = directory / f"{stem}{SUFFIXES[serialization]}"
    write_file(document, str(path), validate=False)
    return path


def github_export() -> dict[str, Any]:
    """Shaped like GitHub's dependency-graph SPDX export (SPDX 2.3 JSON, packages with purls, no files)."""
    deps = [
        ("npm", "lodash", "4.17.21", "MIT"),
        ("npm", "express", "4.18.2", "MIT"),
        ("actions", "actions/checkout", "4.*.*", None),
    ]
    packages: list[dict[str, Any]] = [
        {
            "name": "com.github.example/web",
            "SPDXID": "SPDXRef-com.github.example-web",
            "versionInfo": "",
            "downloadLocation": "git+https://github.com/example/web",
            "licenseDeclared": "Apache-2.0",
            "filesAnalyzed": False,
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": "pkg:github/example/web",
                }
            ],
        }
    ]
    relationships = [
        {
            "relationshipType": "DESCRIBES",
            "spdxElementId": DOCUMENT_ID,
            "relatedSpdxElement": "SPDXRef-com.github.example-web",
        }
    ]
    for ecosystem, name, version, licence in deps:
        spdx_id = f"SPDXRef-{ecosystem}-{name.replace('/', '-')}-{version.replace('*', 'x')}"
        entry: dict[str, Any] = {
            "name": f"{ecosystem}:{name}",
            "SPDXID": spdx_id,
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": f"pkg:{'githubactions' if ecosystem == 'actions' else ecosystem}/"
                    f"{name}@{version}",
                }
            ],
        }
        if licence:
            entry["licenseConcluded"] = licence
        packages.append(entry)
        relationships.append(
            {
                "relationshipType": "DEPENDS_ON",
                "spdxElementId": "SPDXRef-com.github.example-web",
                "relatedSpdxElement": spdx_id,
            }
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": DOCUMENT_ID,
        "name": "com.github.example/web",
        "documentNamespace": "https://spdx.org/spdxdocs/protobom/8b2c1c1e-2f3e-4a5b-9c6d-7e8f9a0b1c2d",
        "creationInfo": {
            "creators": ["Tool: protobom-v0.0.0-20240605", "Tool: GitHub.com-Dependency-Graph"],
            "created": "2026-11-22T10:00:00Z",
        },
        "packages": packages,
        "relationships": relationships,
    }


def syft_style() -> dict[str, Any]:
    """Shaped like syft's SPDX JSON for a Python environment: a package with ``filesAnalyzed: false``
    that CONTAINS a file. spdx-tools (and the SPDX online validator) reject that combination."""
    content = b"print('hello')\n"
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": DOCUMENT_ID,
        "name": "/app",
        "documentNamespace": "https://anchore.com/syft/dir/app-3e671687",
        "creationInfo": {
            "licenseListVersion": "3.25",
            "creators": ["Organization: Anchore, Inc", "Tool: syft-1.18.1"],
            "created": "2026-11-22T10:00:00Z",
        },
        "packages": [
            {
                "name": "requests",
                "SPDXID": "SPDXRef-Package-python-requests-1a2b3c",
                "versionInfo": "2.32.3",
                "supplier": "NOASSERTION",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "sourceInfo": "acquired package info from installed python package manifest file",
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "Apache-2.0",
                "copyrightText": "NOASSERTION",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:pypi/requests@2.32.3",
                    }
                ],
            },
            {
                "name": "/app",
                "SPDXID": "SPDXRef-DocumentRoot-Directory-.-app",
                "supplier": "NOASSERTION",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "primaryPackagePurpose": "FILE",
            },
        ],
        "files": [
            {
                "fileName": "app/main.py",
                "SPDXID": "SPDXRef-File-app-main.py-9f8e7d",
                "fileTypes": ["TEXT"],
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": hashlib.sha1(content).hexdigest()},  # noqa: S324
                    {"algorithm": "SHA256", "checksumValue": sha256_of(content)},
                ],
                "licenseConcluded": "NOASSERTION",
                "licenseInfoInFiles": ["NOASSERTION"],
                "copyrightText": "",
            }
        ],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-Package-python-requests-1a2b3c",
                "relatedSpdxElement": "SPDXRef-File-app-main.py-9f8e7d",
                "relationshipType": "CONTAINS",
            },
            {
                "spdxElementId": DOCUMENT_ID,
                "relatedSpdxElement": "SPDXRef-DocumentRoot-Directory-.-app",
                "relationshipType": "DESCRIBES",
            },
        ],
    }
