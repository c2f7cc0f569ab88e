"""Reading an SBOM of any supported standard: which format handles a file, and loading it once."""

from __future__ import annotations

from pathlib import Path

from checks.spdx.spdx_format import SPDX
from checks.verdict import Verdict

from .base import (
    SbomDocument,
    SbomFormat,
    SbomMalformed,
    SbomUnreadable,
    error_verdict,
    failed_verdict,
    read_bytes,
)
from .cyclonedx import CYCLONEDX

# Tried in order; CycloneDX last, because it claims every file (its messages say what is wrong
# with a file that is no SBOM at all). A new standard goes before it.
FORMATS: list[SbomFormat] = [SPDX, CYCLONEDX]


def format_for(data: bytes) -> SbomFormat:
    """The format that handles these bytes."""
    return next(fmt for fmt in FORMATS if fmt.claims(data))


def read_sbom(path: Path) -> SbomDocument:
    """Read an SBOM file of any supported standard: CycloneDX JSON or XML (any spec version),
    SPDX 2.2/2.3 JSON, YAML, tag-value or RDF/XML.

    Raises :class:`SbomUnreadable` or :class:`SbomMalformed`; never validates the schema.
    """
    data = read_bytes(path)
    return format_for(data).read(path, data)


def as_document(sbom: Path | SbomDocument) -> SbomDocument:
    """The document itself, or the one read from the path."""
    return sbom if isinstance(sbom, SbomDocument) else read_sbom(sbom)


def loaded(check_id: str, sbom: Path | SbomDocument) -> SbomDocument | Verdict:
    """The document, or the verdict saying why it could not be read."""
    path = sbom.path if isinstance(sbom, SbomDocument) else sbom
    try:
        return as_document(sbom)
    except SbomUnreadable as exc:
        return error_verdict(check_id, exc, path)
    except SbomMalformed as exc:
        return failed_verdict(check_id, exc, path)
