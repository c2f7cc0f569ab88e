"""What every SBOM format reads into: the format-neutral document, its errors and verdict helpers.

:class:`SbomDocument` is the interface between a format (CycloneDX in
:mod:`checks.sbom.cyclonedx`, SPDX in its own module) and the checks
(completeness, coverage, licences, vulnerabilities), which never look at the
format's own structure except through ``raw``. See the package docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from checks.errors import DrillbookError
from checks.redact import redact
from checks.verdict import Verdict

_MAX_LISTED = 10  # how many offenders a message names; the evidence lists them all


class SbomError(DrillbookError):
    """An SBOM could not be used."""


class SbomUnreadable(SbomError):
    default_hint = "check the path and permissions of the SBOM file"


class SbomMalformed(SbomError):
    default_hint = (
        "regenerate the SBOM with a CycloneDX tool: JSON with bomFormat/specVersion, "
        "or XML in the http://cyclonedx.org/schema/bom/<version> namespace"
    )


@dataclass(frozen=True)
class License:
    """One licence entry of a component: an SPDX ``id``, a free ``name`` or an ``expression``."""

    kind: str
    value: str


@dataclass(frozen=True)
class Component:
    """The facts drillbook checks about one SBOM component (nested ones included).

    ``path`` locates it in the document (a JSON path such as ``$.components[3].components[0]``,
    or ``line N`` for XML/tag-value); ``present`` holds the names of the document's fields it
    carries with a non-empty value (``cryptoProperties``, ``data``, ``modelCard``, …), so checks
    by component type can ask for fields this dataclass does not model. Both are empty when the
    reader cannot tell (the cyclonedx-python-lib model does not keep locations).
    """

    name: str
    version: str | None = None
    purl: str | None = None
    bom_ref: str | None = None
    group: str | None = None
    type: str | None = None
    hashes: tuple[tuple[str, str], ...] = ()  # (algorithm as in CycloneDX, lowercase hex)
    licenses: tuple[License, ...] = ()
    # Where it was read and what it carries: not facts about the component, so a JSON and an XML
    # reading of one SBOM still compare equal.
    path: str = field(default="", compare=False, repr=False)
    present: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @property
    def label(self) -> str:
        """How messages name the component: ``group/name@version``."""
        name = f"{self.group}/{self.name}" if self.group else self.name
        return f"{name}@{self.version}" if self.version else name

    def evidence(self) -> dict[str, Any]:
        """A JSON-friendly summary for verdict evidence."""
        data: dict[str, Any] = {"name": self.label}
        if self.purl:
            data["purl"] = self.purl
        if self.bom_ref:
            data["bom-ref"] = self.bom_ref
        return data


@dataclass(frozen=True)
class Service:
    """One service of an SBOM (CycloneDX ``services``, nested ones included): what a SaaSBOM lists.

    ``data_flows`` is how many ``data`` entries (classification and flow) it declares and
    ``data_flows_complete`` whether each names a flow and a classification; ``present`` as
    for :class:`Component`.
    """

    name: str
    version: str | None = None
    bom_ref: str | None = None
    group: str | None = None
    endpoints: tuple[str, ...] = ()
    external_references: tuple[str, ...] = ()  # URLs of externalReferences
    data_flows: int = 0
    incomplete_flows: tuple[str, ...] = ()  # JSON paths of data entries lacking flow or classification
    path: str = ""
    present: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """How messages name the service: ``group/name@version``."""
        name = f"{self.group}/{self.name}" if self.group else self.name
        return f"{name}@{self.version}" if self.version else name


@dataclass(frozen=True)
class SbomDocument:
    """A read SBOM: where it came from, its standard, declared version, components and services.

    ``standard`` is the SBOM standard ("CycloneDX", "SPDX"); ``format`` its serialisation
    ("json", "xml"; SPDX adds "yaml", "tag-value", "rdf").
    """

    path: Path
    format: str
    spec_version: str
    sha256: str
    size: int
    components: tuple[Component, ...]
    subject: Component | None = None  # metadata.component: what the SBOM describes
    reader: str = "model"  # "model" (the format's library) or "document" (read directly)
    reader_note: str = ""
    raw: Any = field(default=None, repr=False, compare=False)
    standard: str = "CycloneDX"
    services: tuple[Service, ...] = ()

    def evidence(self) -> dict[str, Any]:
        """Identity of the document for verdict evidence."""
        return {"sbom": str(self.path), "sbom_sha256": self.sha256, "format": self.format,
                "spec_version": self.spec_version, "components": len(self.components)}


class SbomFormat(Protocol):
    """One SBOM standard: how to recognise, read and validate its documents.

    Implementations are listed in :data:`checks.sbom.loading.FORMATS`; the first whose
    :meth:`claims` is true handles the file, CycloneDX last (it claims everything, so
    a file that is no SBOM at all gets CycloneDX's "not a CycloneDX document" message).
    """

    name: str

    def claims(self, data: bytes) -> bool:
        """Whether these bytes look like this standard (cheap: a look at the first bytes)."""
        ...

    def read(self, path: Path, data: bytes) -> SbomDocument:
        """The document; raises :class:`SbomMalformed` naming the place, never validates the schema."""
        ...

    def validate(self, path: Path, data: bytes) -> Verdict:
        """``sbom.valid`` for these bytes: passed, failed (naming the place) or error; never raises."""
        ...


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or :class:`SbomUnreadable`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SbomUnreadable(f"cannot read SBOM {path}: {reason}", path=str(path)) from exc


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text, or :class:`SbomMalformed` naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SbomMalformed(f"{path}: not UTF-8 text (byte {exc.start})", path=str(path)) from exc


def text_value(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def listing(items: Sequence[str]) -> str:
    """The first few items for a message, and how many more."""
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def failed_verdict(check_id: str, exc: SbomError, path: Path,
                   evidence: Mapping[str, Any] | None = None) -> Verdict:
    """The content is wrong: ``failed``, with the error's hint."""
    data = {"sbom": str(path), **(evidence or {}), "error": type(exc).__name__, "hint": exc.hint}
    return Verdict.failed(check_id, redact(exc.message), evidence=data)


def error_verdict(check_id: str, exc: SbomError, path: Path) -> Verdict:
    """The file could not be read: ``error``, with the error's hint."""
    return Verdict.error(check_id, redact(exc.message),
                         evidence={"sbom": str(path), "error": type(exc).__name__, "hint": exc.hint})
