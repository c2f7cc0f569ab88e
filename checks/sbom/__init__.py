"""SBOM checks: schema validity, artifact coverage, component completeness, licences.

Public surface (stable; used by ``steps/supply_chain.py``, ``drillbook verify sbom``
and :mod:`checks.vulnerabilities`). Every ``sbom`` argument is a path or an
already read :class:`SbomDocument`:

- :func:`read_sbom` ``(path) -> SbomDocument``: any supported standard and
  serialisation; raises :class:`SbomUnreadable` (I/O) or :class:`SbomMalformed`
  (content). It does not validate the schema: that is :func:`validate_sbom`.
- :func:`validate_sbom` ``(path) -> Verdict`` ``sbom.valid``: against the schema
  of the version the document declares (CycloneDX: cyclonedx-python-lib 11's
  validators, JSON made fast by :mod:`checks.cyclonedx_fast`, same verdicts).
- :func:`sbom_covers_artifacts` ``(sbom, artifacts_dir) -> Verdict``
  ``sbom.covers_artifacts``: every file of the release (and every digest in
  ``images.txt``) appears as a component hash; :func:`sbom_covers_digests`
  does the same for a release known by digests (an S3 prefix).
- :func:`components_complete` ``(sbom, required=(), by_type=None)`` ->
  ``sbom.components_complete`` by what each component is (packages: version and
  purl; cryptographic assets: cryptoProperties; data: data; files: hashes; …)
  and, for services (a SaaSBOM), name, endpoint or reference, data flows;
  :func:`components_have_versions_and_purls` is it with the built-in rules;
  :func:`components_have_fields` asks the same fields of every component.
- :func:`no_denied_licenses` ``(sbom, denied) -> Verdict`` ``sbom.licenses``.

Outcomes: content that is wrong (malformed, unknown version, invalid, missing
artifact, denied licence) is ``failed``; what could not be read or decided
(unreadable file, unparseable licence expression) is ``error``. Never a crash.

Modules, one concern each::

    base              SbomDocument, Component, Service, License, SbomFormat, errors
    loading           FORMATS, format_for, read_sbom (which format handles a file)
    cyclonedx         CycloneDX detection and reading (model, or the document directly)
    cyclonedx_schema  CycloneDX schema validation (sbom.valid)
    validation        validate_sbom: dispatch to the file's format
    cyclonedx_services CycloneDX services (SaaSBOMs), read from the document
    completeness      sbom.components_complete (rules by component type, services)
    coverage          sbom.covers_artifacts (a release directory, or digests)
    licences          sbom.licenses

Adding a format (SPDX)
----------------------
A format is an object with the :class:`~checks.sbom.base.SbomFormat` protocol:

- ``name``: ``"SPDX"``;
- ``claims(data: bytes) -> bool``: a cheap look at the bytes (``"spdxVersion"`` in
  JSON/YAML, ``SPDXVersion:`` in tag-value, the SPDX namespace in RDF/XML);
- ``read(path, data) -> SbomDocument``: raises :class:`SbomMalformed` naming the
  element (JSON path or line); never validates;
- ``validate(path, data) -> Verdict``: ``sbom.valid``, ``passed``/``failed``/``error``,
  never raises.

It goes into :data:`checks.sbom.loading.FORMATS` **before** CycloneDX (which
claims everything). Its :class:`SbomDocument` sets ``standard="SPDX"``,
``format`` to its serialisation (``json``, ``yaml``, ``tag-value``, ``rdf``), and
fills the views the checks read, so they work unchanged:

- ``components``: one :class:`Component` per package (and file, when it is one),
  with ``version``, ``purl`` (from external refs), ``type`` (CycloneDX's component
  type names where SPDX says it: ``library``, ``application``, ``file``, …),
  ``hashes`` as ``(CycloneDX algorithm name, lowercase hex)`` e.g. ``("SHA-256", …)``
  (coverage only trusts SHA-2/SHA-3), ``licenses`` as :class:`License` entries
  (``kind="expression"`` for an SPDX licence expression), ``path`` (JSON path or
  ``line N``) and ``present`` (the names of the fields it carries);
- ``subject``: what the document describes (``DESCRIBES``), or None;
- ``services``: empty for SPDX;
- ``raw``: the parsed document, for the format's own uses.
"""

from __future__ import annotations

from .base import (
    Component,
    License,
    SbomDocument,
    SbomError,
    SbomFormat,
    SbomMalformed,
    SbomUnreadable,
    Service,
)
from .completeness import (
    ALL_FIELDS,
    COMPONENT_TYPES,
    KNOWN_FIELDS,
    PACKAGE_TYPES,
    TYPE_RULES,
    components_complete,
    components_have_fields,
    components_have_versions_and_purls,
    parse_rules,
)
from .coverage import (
    DEFAULT_IGNORED,
    IMAGES_LIST,
    parse_images_list,
    sbom_covers_artifacts,
    sbom_covers_digests,
)
from .cyclonedx import _parse_xml, _read_json_components, _read_xml_components  # noqa: F401 - tests use them
from .licences import no_denied_licenses
from .loading import FORMATS, read_sbom
from .validation import validate_sbom

__all__ = [
    "ALL_FIELDS",
    "COMPONENT_TYPES",
    "DEFAULT_IGNORED",
    "FORMATS",
    "IMAGES_LIST",
    "KNOWN_FIELDS",
    "PACKAGE_TYPES",
    "TYPE_RULES",
    "Component",
    "License",
    "SbomDocument",
    "SbomError",
    "SbomFormat",
    "SbomMalformed",
    "SbomUnreadable",
    "Service",
    "components_complete",
    "components_have_fields",
    "components_have_versions_and_purls",
    "no_denied_licenses",
    "parse_images_list",
    "parse_rules",
    "read_sbom",
    "sbom_covers_artifacts",
    "sbom_covers_digests",
    "validate_sbom",
]
