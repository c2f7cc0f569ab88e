"""The SPDX :class:`~checks.sbom.base.SbomFormat`: recognise, read and validate SPDX 2.2/2.3 documents.

Reading maps spdx-tools' model onto the format-neutral :class:`~checks.sbom.SbomDocument`
so that completeness, coverage, licences and vulnerabilities work unchanged:

- every package is a :class:`~checks.sbom.Component`: ``versionInfo`` is its version,
  the first ``externalRefs`` entry of type ``purl`` its purl, ``SPDXID`` its ``bom_ref``,
  ``primaryPackagePurpose`` its type (CycloneDX's names), ``checksums`` its hashes;
- every file is a component of type ``file`` carrying its checksums (so a release
  directory is covered by files' as well as packages' checksums);
- the licence of an element is its concluded licence when it states one, else its
  declared one (``NOASSERTION`` and ``NONE`` state nothing): the concluded licence is
  what a reviewer or tool determined, and it is what a denial applies to;
- the subject is the package the document ``DESCRIBES`` (the first, when several).

Validation is spdx-tools' (:func:`checks.spdx.fast_validation.validate_document`, the
library's validator in linear time, same messages); each message is placed with
:mod:`checks.spdx.locate`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

from checks.redact import redact
from checks.sbom.base import (
    Component,
    License,
    SbomDocument,
    SbomMalformed,
    decode,
    failed_verdict,
)
from checks.verdict import Verdict

from .fast_validation import validate_document
from .locate import Locator
from .parsing import HINT, ParsedSpdx, detect, parse_spdx

__all__ = ["SPDX", "SpdxFormat", "components_of"]

_LIBRARY = f"spdx-tools {importlib.metadata.version('spdx-tools')}"
_MAX_ERRORS = 10
# SPDX checksum algorithm (spdx-tools' enum name) -> CycloneDX's name, which coverage reads.
_ALGORITHMS = {
    "SHA1": "SHA-1",
    "SHA256": "SHA-256",
    "SHA384": "SHA-384",
    "SHA512": "SHA-512",
    "MD5": "MD5",
    "SHA3_256": "SHA3-256",
    "SHA3_384": "SHA3-384",
    "SHA3_512": "SHA3-512",
    "BLAKE2B_256": "BLAKE2b-256",
    "BLAKE2B_384": "BLAKE2b-384",
    "BLAKE2B_512": "BLAKE2b-512",
    "BLAKE3": "BLAKE3",
}
# primaryPackagePurpose -> CycloneDX component type; purposes with no counterpart stay None.
_PURPOSES = {
    "APPLICATION": "application",
    "FRAMEWORK": "framework",
    "LIBRARY": "library",
    "CONTAINER": "container",
    "OPERATING_SYSTEM": "operating-system",
    "DEVICE": "device",
    "FIRMWARE": "firmware",
    "FILE": "file",
}


class SpdxFormat:
    """SPDX 2.2/2.3 in JSON, YAML, tag-value or RDF/XML, read and validated with spdx-tools."""

    name = "SPDX"

    def claims(self, data: bytes) -> bool:
        """Whether the bytes are an SPDX document in one of the four serializations."""
        return detect(data) is not None

    def read(self, path: Path, data: bytes) -> SbomDocument:
        """The document's packages and files as components; :class:`SbomMalformed` naming the place."""
        parsed = self._parse(path, data)
        components, subject = components_of(parsed.document, parsed.locator)
        version = str(parsed.document.creation_info.spdx_version).removeprefix("SPDX-")
        return SbomDocument(
            path=path,
            format=parsed.serialization.value,
            spec_version=version,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            components=tuple(components),
            subject=subject,
            reader="model",
            raw=parsed.document,
            standard="SPDX",
        )

    def validate(self, path: Path, data: bytes) -> Verdict:
        """``sbom.valid``: spdx-tools' verdict on the document, each problem placed; never raises."""
        check_id = "sbom.valid"
        serialization = detect(data)
        evidence: dict[str, Any] = {
            "sbom": str(path),
            "sbom_sha256": hashlib.sha256(data).hexdigest(),
            "standard": "SPDX",
            "format": serialization.value if serialization else "?",
            "size": len(data),
            "validator": f"{_LIBRARY} (linear-time document checks)",
        }
        try:
            parsed = self._parse(path, data)
        except SbomMalformed as exc:
            return failed_verdict(check_id, exc, path, evidence)
        version = str(parsed.document.creation_info.spdx_version)
        evidence["spec_version"] = version.removeprefix("SPDX-")
        expected = f"valid {version} {parsed.serialization.value}"
        try:
            messages = validate_document(parsed.document)
        except Exception as exc:  # noqa: BLE001 - the library's validators raise on models its parser let through
            return Verdict.error(
                check_id,
                redact(f"{path}: spdx-tools could not validate it: {type(exc).__name__}: {exc}"[:500]),
                evidence={**evidence, "hint": HINT},
            )
        if not messages:
            return Verdict.passed(
                check_id,
                f"{path.name} is valid {version} ({parsed.serialization.value})",
                measured="valid",
                expected=expected,
                evidence=evidence,
            )
        errors = [
            {"at": _place(m, parsed.locator), "message": _short(m.validation_message)}
            for m in messages[:_MAX_ERRORS]
        ]
        evidence |= {"errors": errors, "error_count": len(messages), "hint": HINT}
        first = errors[0]
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        return Verdict.failed(
            check_id,
            redact(f"{path} is not valid {version}: at {first['at']}: {first['message']}{more}"),
            measured="invalid",
            expected=expected,
            evidence=evidence,
        )

    @staticmethod
    def _parse(path: Path, data: bytes) -> ParsedSpdx:
        serialization = detect(data)
        if serialization is None:
            raise SbomMalformed(f"{path}: not an SPDX document", path=str(path), hint=HINT)
        return parse_spdx(path, decode(path, data), serialization)


SPDX = SpdxFormat()


def components_of(document: Any, locator: Locator) -> tuple[list[Component], Component | None]:
    """Packages and files of an spdx-tools Document as components, and the described package."""
    components: list[Component] = []
    by_id: dict[str, Component] = {}
    for package in document.packages:
        purl = next(
            (ref.locator for ref in package.external_references if ref.reference_type == "purl"), None
        )
        purpose = package.primary_package_purpose
        present = {
            name
            for name, value in (
                ("version", package.version),
                ("purl", purl),
                ("hashes", package.checksums),
                ("supplier", package.supplier),
                ("downloadLocation", package.download_location),
            )
            if value
        }
        component = Component(
            name=package.name,
            version=package.version or None,
            purl=purl,
            bom_ref=package.spdx_id,
            type=_PURPOSES.get(purpose.name) if purpose is not None else None,
            hashes=_hashes(package.checksums),
            licenses=_licences(package.license_concluded, package.license_declared),
            path=locator.element(package.spdx_id),
            present=frozenset(present),
        )
        components.append(component)
        by_id.setdefault(package.spdx_id, component)
    for file in document.files:
        components.append(
            Component(
                name=file.name,
                bom_ref=file.spdx_id,
                type="file",
                hashes=_hashes(file.checksums),
                licenses=_licences(file.license_concluded, None),
                path=locator.element(file.spdx_id),
                present=frozenset({"hashes"} if file.checksums else set()),
            )
        )
    document_id = document.creation_info.spdx_id
    described = [
        str(r.related_spdx_element_id)
        for r in document.relationships
        if r.relationship_type.name == "DESCRIBES" and r.spdx_element_id == document_id
    ]
    described += [
        r.spdx_element_id
        for r in document.relationships
        if r.relationship_type.name == "DESCRIBED_BY" and str(r.related_spdx_element_id) == document_id
    ]
    subject = next((by_id[i] for i in described if i in by_id), None)
    return components, subject


def _hashes(checksums: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        (_ALGORITHMS.get(c.algorithm.name, c.algorithm.name), str(c.value).lower()) for c in checksums
    )


def _licences(concluded: Any, declared: Any) -> tuple[License, ...]:
    from license_expression import LicenseExpression

    for value in (concluded, declared):
        if isinstance(value, LicenseExpression):
            return (License("expression", str(value)),)
    return ()


def _place(message: Any, locator: Locator) -> str:
    context = message.context
    element = context.full_element
    kind = context.element_type.name if context.element_type is not None else ""
    if kind == "RELATIONSHIP" and element is not None:
        return locator.relationship(
            element.spdx_element_id, element.relationship_type.name, str(element.related_spdx_element_id)
        )
    if kind == "ANNOTATION" and element is not None:
        return locator.element(element.spdx_id)
    return locator.element(context.spdx_id or context.parent_id)


def _short(message: str, limit: int = 400) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
