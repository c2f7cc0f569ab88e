"""``sbom.valid``: schema validation, by the format that handles the file."""

from __future__ import annotations

from pathlib import Path

from checks.verdict import Verdict

from .base import SbomUnreadable, error_verdict, read_bytes
from .loading import format_for


def validate_sbom(path: Path) -> Verdict:
    """``sbom.valid``: the document is valid against the schema of the version it declares.

    CycloneDX JSON is checked by :func:`checks.cyclonedx_fast.fast_json_validator` (the library's
    validator with a fast IRI check: same verdicts), XML by the library's XSD validator.
    Malformed JSON/XML and unknown versions fail; an unreadable file is an error.
    """
    try:
        data = read_bytes(path)
    except SbomUnreadable as exc:
        return error_verdict("sbom.valid", exc, path)
    return format_for(data).validate(path, data)
