"""SPDX 2.2/2.3 SBOMs (JSON, YAML, tag-value, RDF/XML), read and validated with spdx-tools.

:data:`SPDX` is the :class:`~checks.sbom.base.SbomFormat` that ``checks.sbom`` tries
before CycloneDX; through it ``drillbook verify sbom`` and the supply-chain steps
accept SPDX documents, and every check (completeness, coverage, licences,
vulnerabilities) reads them through the format-neutral ``SbomDocument``.

Modules::

    parsing          which serialization, and reading it with spdx-tools' parsers (refusals placed)
    locate           where an element or relationship is: JSON path or tag-value line
    fast_validation  spdx-tools' validate_full_spdx_document in linear time, same messages
    spdx_format      the SbomFormat: claims / read / validate; packages and files as components

Errors are the SBOM ones (``checks.sbom.base``): a document spdx-tools cannot read
is ``SbomMalformed`` naming the place; a read document that spdx-tools' validator
rejects is a ``failed`` ``sbom.valid`` naming the element. spdx-tools 0.8.3 needs
beartype < 0.20 to turn type errors into its own parse errors (pinned).
"""

from __future__ import annotations

# checks.sbom lists SPDX among its formats: load it first, so that importing checks.spdx on its own
# does not meet checks.sbom half-initialised.
import checks.sbom  # noqa: F401

from .spdx_format import SPDX, SpdxFormat

__all__ = ["SPDX", "SpdxFormat"]
