"""CycloneDX schema validation: against the schema of the version the document declares.

JSON is checked by :func:`checks.cyclonedx_fast.fast_json_validator` (the library's
validator with a fast IRI check: same verdicts), XML by the library's XSD validator.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from itertools import islice
from pathlib import Path
from typing import Any

from checks.redact import redact
from checks.verdict import Verdict

from .base import SbomMalformed, decode, failed_verdict
from .cyclonedx import _detect_format, _parse_json, _parse_xml

_MAX_ERRORS = 10  # schema errors kept as evidence (the first one is the library's verdict)
_LIBRARY_VERSION = importlib.metadata.version("cyclonedx-python-lib")  # recorded with every verdict


def validate_cyclonedx(path: Path, data: bytes) -> Verdict:
    """``sbom.valid`` for a CycloneDX file's bytes: malformed content and unknown versions fail."""
    check_id = "sbom.valid"
    try:
        fmt = _detect_format(path, data)
        text = decode(path, data)
    except SbomMalformed as exc:
        return failed_verdict(check_id, exc, path)
    evidence: dict[str, Any] = {"sbom": str(path), "sbom_sha256": hashlib.sha256(data).hexdigest(),
                                "format": fmt, "size": len(data)}
    try:
        if fmt == "json":
            errors, version, validator = _json_errors(path, text)
        else:
            errors, version, validator = _xml_errors(path, data, text)
    except SbomMalformed as exc:
        return failed_verdict(check_id, exc, path, evidence)
    evidence |= {"spec_version": version, "validator": validator}
    expected = f"valid CycloneDX {version} {fmt.upper()}"
    if not errors:
        return Verdict.passed(check_id, f"{path.name} is valid CycloneDX {version} ({fmt.upper()})",
                              measured="valid", expected=expected, evidence=evidence)
    first = errors[0]
    evidence["errors"] = errors
    return Verdict.failed(
        check_id,
        redact(f"{path} is not valid CycloneDX {version}: at {first['at']}: {first['message']}"),
        measured="invalid", expected=expected, evidence=evidence,
    )


def _schema_version(path: Path, version: str, fmt: str) -> Any:
    from cyclonedx.schema import SchemaVersion

    try:
        return SchemaVersion.from_version(version)
    except (ValueError, KeyError) as exc:
        supported = ", ".join(supported_versions(fmt))
        where = "$.specVersion" if fmt == "json" else "the bom element's namespace"
        raise SbomMalformed(
            f"{path}: unsupported CycloneDX spec version {version[:40]!r} at {where} "
            f"(supported {fmt.upper()}: {supported})", path=str(path),
            hint=f"regenerate the SBOM at a supported spec version ({supported}); cyclonedx-python-lib "
                 f"{_LIBRARY_VERSION} has no schema for {version[:40]!r}") from exc


def supported_versions(fmt: str) -> list[str]:
    """The spec versions the pinned cyclonedx-python-lib validates, oldest first (JSON starts at 1.2)."""
    from cyclonedx.schema import SchemaVersion

    versions = sorted(SchemaVersion, key=lambda v: v.value)
    return [v.to_version() for v in versions if fmt != "json" or v.value >= (1, 2)]


def _json_errors(path: Path, text: str) -> tuple[list[dict[str, str]], str, str]:
    from checks.cyclonedx_fast import fast_json_validator

    document, version = _parse_json(path, text)
    schema_version = _schema_version(path, version, "json")
    try:
        validator = fast_json_validator(schema_version)
    except (NotImplementedError, ValueError) as exc:  # the library says "unsupported" either way
        raise SbomMalformed(f"{path}: CycloneDX {version} has no JSON schema (JSON starts at 1.2)",
                            path=str(path)) from exc
    try:
        found = [{"at": e.json_path, "message": _short(e.message)}
                 for e in islice(validator.iter_errors(document), _MAX_ERRORS)]
    except RecursionError as exc:  # components nested hundreds deep exhaust jsonschema's recursion
        raise SbomMalformed(f"{path}: components nested too deeply to validate", path=str(path)) from exc
    return found, version, f"cyclonedx-python-lib {_LIBRARY_VERSION} JSON schema {version} (fast IRI check)"


def _xml_errors(path: Path, data: bytes, text: str) -> tuple[list[dict[str, str]], str, str]:
    from cyclonedx.schema import OutputFormat
    from cyclonedx.validation import make_schemabased_validator
    from lxml import etree

    _root, version = _parse_xml(path, data)
    schema_version = _schema_version(path, version, "xml")
    validator = make_schemabased_validator(OutputFormat.XML, schema_version)
    try:
        result = validator.validate_str(text, all_errors=True)
    except etree.XMLSyntaxError as exc:  # the library raises on malformed input instead of reporting
        raise SbomMalformed(f"{path}: malformed XML: {exc}", path=str(path)) from exc
    except NotImplementedError as exc:
        raise SbomMalformed(f"{path}: no XML schema for CycloneDX {version}", path=str(path)) from exc
    found: list[dict[str, str]] = []
    for error in islice(result or (), _MAX_ERRORS):
        entry = error.data
        found.append({"at": f"line {getattr(entry, 'line', '?')}",
                      "message": _short(str(getattr(entry, "message", entry)))})
    return found, version, f"cyclonedx-python-lib {_LIBRARY_VERSION} XML schema {version}"


def _short(message: str, limit: int = 400) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"

