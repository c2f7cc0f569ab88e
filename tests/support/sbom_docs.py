"""Real CycloneDX documents for tests, written by cyclonedx-python-lib itself."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

FIXTURES = Path(os.environ.get("DRILLBOOK_FIXTURES")
                or Path(__file__).resolve().parents[3] / "shared" / "fixtures")
CYCLONEDX_FIXTURES = FIXTURES / "supply_chain" / "cyclonedx"

_ALGORITHMS = {"SHA-256": HashAlgorithm.SHA_256, "SHA-512": HashAlgorithm.SHA_512,
               "MD5": HashAlgorithm.MD5, "SHA-1": HashAlgorithm.SHA_1}


@dataclass
class Part:
    """One component to put in a test SBOM."""

    name: str
    version: str | None = None
    purl: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    licenses: Sequence[str] = ()  # "id:MIT", "name:Some licence", "expr:MIT OR Apache-2.0"
    children: Sequence[Part] = ()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _component(part: Part) -> Component:
    licenses: list[DisjunctiveLicense | LicenseExpression] = []
    for entry in part.licenses:
        kind, _, value = entry.partition(":")
        if kind == "id":
            licenses.append(DisjunctiveLicense(id=value))
        elif kind == "name":
            licenses.append(DisjunctiveLicense(name=value))
        else:
            licenses.append(LicenseExpression(value))
    return Component(
        name=part.name, version=part.version, type=ComponentType.LIBRARY,
        purl=PackageURL.from_string(part.purl) if part.purl else None,
        hashes=[HashType(alg=_ALGORITHMS[alg], content=hex_) for alg, hex_ in part.hashes.items()],
        licenses=licenses, components=[_component(c) for c in part.children],
    )


def write_sbom(path: Path, parts: Sequence[Part], *, fmt: str = "json", version: str = "1.6",
               subject: Part | None = None) -> Path:
    """Write an SBOM of ``parts`` with cyclonedx-python-lib's own outputter."""
    components = [_component(p) for p in parts]
    bom = Bom(components=components)
    if subject is not None:
        bom.metadata.component = root = _component(subject)
        bom.register_dependency(root, components)  # a root without dependencies makes the library warn
    output_format = OutputFormat.JSON if fmt == "json" else OutputFormat.XML
    text = make_outputter(bom, output_format, SchemaVersion.from_version(version)).output_as_string(indent=2)
    path.write_text(text, encoding="utf-8")
    return path
