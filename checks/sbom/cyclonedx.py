"""CycloneDX documents (JSON and XML, any spec version): format detection and reading.

Components are read through cyclonedx-python-lib's model, or directly from the
document when the model rejects it (it does on some valid files, e.g. the 1.6
SaaSBOM sample). Schema validation is :mod:`checks.sbom.cyclonedx_schema`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from checks.strict_json import DuplicateKeyError, loads_strict
from checks.verdict import Verdict

from .base import Component, License, SbomDocument, SbomMalformed, Service, decode, text_value
from .cyclonedx_services import read_json_services, read_xml_services, walk_nested

_XML_NAMESPACE = re.compile(r"^\{http://cyclonedx\.org/schema/bom/(?P<version>[^}]+)\}bom$")
_text = text_value
# Above this many components the document is read directly rather than through the library's
# model: Bom.from_json keeps components in SortedSets ordered by a 20-field tuple, ~1 ms of CPU per
# component (10 s for 10,000; minutes for a container image's 100,000). The direct reader reads the
# same facts (tests/unit/test_sbom.py compares them); only the order of components may differ.
MODEL_MAX_COMPONENTS = 5000


class CycloneDx:
    """The CycloneDX :class:`~checks.sbom.base.SbomFormat`: claims every file (it is the last resort)."""

    name = "CycloneDX"

    def claims(self, data: bytes) -> bool:
        return True

    def read(self, path: Path, data: bytes) -> SbomDocument:
        return read_cyclonedx(path, data)

    def validate(self, path: Path, data: bytes) -> Verdict:
        from .cyclonedx_schema import validate_cyclonedx

        return validate_cyclonedx(path, data)


CYCLONEDX = CycloneDx()


def _detect_format(path: Path, data: bytes) -> str:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        return "json"
    if head == b"<":
        return "xml"
    if not head:
        raise SbomMalformed(f"{path}: the file is empty", path=str(path))
    raise SbomMalformed(f"{path}: neither JSON nor XML (starts with {data[:16]!r})", path=str(path))


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SbomMalformed(f"{path}: not UTF-8 text (byte {exc.start})", path=str(path)) from exc


def _parse_json(path: Path, text: str) -> tuple[dict[str, Any], str]:
    try:
        document = loads_strict(text)
    except DuplicateKeyError as exc:
        raise SbomMalformed(f"{path}: {exc}", path=str(path), key=exc.key,
                            hint="an SBOM that says two things about one field cannot be checked: "
                                 "regenerate it") from exc
    except json.JSONDecodeError as exc:
        raise SbomMalformed(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                            path=str(path), line=exc.lineno) from exc
    except RecursionError as exc:
        raise SbomMalformed(f"{path}: JSON nested too deeply", path=str(path)) from exc
    if not isinstance(document, dict):
        raise SbomMalformed(f"{path}: not a CycloneDX document (top level is a {type(document).__name__})",
                            path=str(path))
    version = document.get("specVersion")
    if not isinstance(version, str) or not version:
        raise SbomMalformed(f"{path}: not a CycloneDX document: no specVersion", path=str(path))
    return document, version


def _xml_parser() -> Any:
    from lxml import etree

    # No entities, no DTD, no network: an SBOM is outside input.
    return etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, dtd_validation=False)


# A CycloneDX document has no DTD; one that declares a document type or entities is refused before
# any parser or schema validator sees it (entity expansion, external entities, and the validator's
# "Internal error" on them): the markers are matched as bytes, as XML spells them (upper case).
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")


def _parse_xml(path: Path, data: bytes) -> tuple[Any, str]:
    from lxml import etree

    found = [marker.decode() for marker in _DTD_MARKERS if marker in data]
    if found:
        raise SbomMalformed(
            f"{path}: XML with a document type or entity declaration ({', '.join(found)}) is refused: "
            "a CycloneDX SBOM has no DTD, and entities are how XML input reaches files and memory "
            "it should not", path=str(path), hint="regenerate the SBOM without a DOCTYPE (any "
            "CycloneDX generator writes none), or export it as JSON")
    try:
        root = etree.fromstring(data, parser=_xml_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else "?"
        raise SbomMalformed(f"{path}: malformed XML at line {line}: {exc.msg}", path=str(path)) from exc
    if root is None:
        raise SbomMalformed(f"{path}: malformed XML: no root element", path=str(path))
    tag = root.tag if isinstance(root.tag, str) else ""
    match = _XML_NAMESPACE.match(tag)
    if match is None:
        raise SbomMalformed(
            f"{path}: not a CycloneDX document: root element {tag or '?'} is not "
            "{http://cyclonedx.org/schema/bom/<version>}bom", path=str(path))
    return root, match.group("version")



def read_cyclonedx(path: Path, data: bytes) -> SbomDocument:
    """Read a CycloneDX JSON or XML file: components through cyclonedx-python-lib's model,
    or directly from the document when the model rejects it (it does on some valid files).

    Raises :class:`SbomMalformed`; never validates the schema.
    """
    fmt = _detect_format(path, data)
    text = decode(path, data)
    digest = hashlib.sha256(data).hexdigest()
    document: Any
    if fmt == "json":
        document, version = _parse_json(path, text)
    else:
        document, version = _parse_xml(path, data)
    count = _count_components(fmt, document)
    # Read directly first: it keeps where each component is (JSON path or line) and which fields
    # it carries, which the model does not; and it is the reading when the model fails or is skipped.
    direct, direct_subject = _read_direct(path, fmt, document)
    services = _read_services(path, fmt, document)
    try:
        if count > MODEL_MAX_COMPONENTS:
            raise _TooLargeForModel(f"{count} components: read directly, the model would take "
                                    f"~{count // 1000} s (more than {MODEL_MAX_COMPONENTS})")
        components, subject = _read_with_model(fmt, text)
        components = _located(components, direct)
        reader, note = "model", ""
        if len(components) != len(direct):
            # The model keeps components in a set: equal ones collapse into one, and a check would
            # count (and judge) fewer components than the document lists.
            reader = "document"
            note = (f"cyclonedx-python-lib merged {len(direct) - len(components)} duplicate components "
                    f"({len(direct)} listed): read from the document")
            components, subject = direct, direct_subject
    except _TooLargeForModel as exc:
        reader, note = "document", str(exc)
        components, subject = direct, direct_subject
    except Exception as exc:  # noqa: BLE001 - the model rejects valid documents too; read them directly
        reader, note = "document", f"cyclonedx-python-lib could not load it: {type(exc).__name__}: {exc}"
        components, subject = direct, direct_subject
    return SbomDocument(path=path, format=fmt, spec_version=version, sha256=digest, size=len(data),
                        components=tuple(components), subject=subject, reader=reader,
                        reader_note=note[:300], raw=document, services=tuple(services))


def _located(model: list[Component], direct: list[Component]) -> list[Component]:
    """The model's components with the location and present fields of the same component read directly.

    The model orders components its own way, so they are matched by name, version and type
    (in document order among equals); one the direct reading does not have keeps none.
    """
    pending: dict[tuple[str, str | None, str | None], list[Component]] = {}
    for component in direct:
        pending.setdefault((component.name, component.version, component.type), []).append(component)
    located: list[Component] = []
    for component in model:
        same = pending.get((component.name, component.version, component.type))
        if same:
            twin = same.pop(0)
            component = replace(component, path=twin.path, present=twin.present)
        located.append(component)
    return located


class _TooLargeForModel(Exception):
    pass


def _count_components(fmt: str, document: Any) -> int:
    """Components at any depth, without recursion (a hostile file may nest thousands deep)."""
    if fmt != "json":
        ns = document.tag.split("}")[0] + "}"
        return sum(1 for _ in document.iter(f"{ns}component"))
    count = 0
    pending = [document.get("components")]
    while pending:
        items = pending.pop()
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    count += 1
                    pending.append(item.get("components"))
    return count


def _read_direct(path: Path, fmt: str, document: Any) -> tuple[list[Component], Component | None]:
    try:
        if fmt == "json":
            return _read_json_components(document)
        return _read_xml_components(document)
    except RecursionError as deep:
        raise SbomMalformed(f"{path}: components nested too deeply to read", path=str(path)) from deep


def _read_services(path: Path, fmt: str, document: Any) -> list[Service]:
    try:
        return read_json_services(document) if fmt == "json" else read_xml_services(document)
    except RecursionError as deep:
        raise SbomMalformed(f"{path}: services nested too deeply to read", path=str(path)) from deep


def _read_with_model(fmt: str, text: str) -> tuple[list[Component], Component | None]:
    from cyclonedx.model.bom import Bom

    with warnings.catch_warnings():
        # Deprecation warnings about old fields (e.g. metadata.tools) say nothing about what we read.
        warnings.simplefilter("ignore")
        if fmt == "json":
            bom = Bom.from_json(json.loads(text))  # type: ignore[attr-defined]  # added by serializable
        else:
            from defusedxml import ElementTree as SafeElementTree

            bom = Bom.from_xml(SafeElementTree.fromstring(text))  # type: ignore[attr-defined]
    components: list[Component] = []

    def walk(items: Iterable[Any]) -> None:
        for item in items:
            components.append(_from_model(item))
            walk(item.components)

    walk(bom.components)
    subject = bom.metadata.component
    return components, (_from_model(subject) if subject is not None else None)


def _from_model(item: Any) -> Component:
    licenses: list[License] = []
    for entry in item.licenses:
        if hasattr(entry, "value"):  # LicenseExpression
            licenses.append(License("expression", str(entry.value)))
        elif getattr(entry, "id", None):
            licenses.append(License("id", str(entry.id)))
        elif getattr(entry, "name", None):
            licenses.append(License("name", str(entry.name)))
    hashes = tuple((h.alg.value, str(h.content).lower()) for h in item.hashes)
    return Component(
        name=str(item.name), version=item.version or None,
        purl=item.purl.to_string() if item.purl is not None else None,
        bom_ref=item.bom_ref.value or None, group=item.group or None,
        type=item.type.value if item.type is not None else None,
        hashes=hashes, licenses=tuple(licenses),
    )


def _read_json_components(document: Mapping[str, Any]) -> tuple[list[Component], Component | None]:
    components = walk_nested(document, "components", _from_json)
    metadata = document.get("metadata")
    subject = metadata.get("component") if isinstance(metadata, dict) else None
    return components, (_from_json(subject, "$.metadata.component") if isinstance(subject, dict) else None)


def _filled(value: Any) -> bool:
    """Whether a field's value says something: not null, not an empty string, list or object."""
    return value is not None and value != "" and value != [] and value != {}


def _from_json(item: Mapping[str, Any], path: str = "") -> Component:
    hashes: list[tuple[str, str]] = []
    for entry in item.get("hashes") or []:
        if isinstance(entry, dict) and _text(entry.get("alg")) and _text(entry.get("content")):
            hashes.append((entry["alg"], entry["content"].lower()))
    licenses: list[License] = []
    for entry in item.get("licenses") or []:
        if not isinstance(entry, dict):
            continue
        if _text(entry.get("expression")):
            licenses.append(License("expression", entry["expression"]))
        elif isinstance(entry.get("license"), dict):
            lic = entry["license"]
            if _text(lic.get("id")):
                licenses.append(License("id", lic["id"]))
            elif _text(lic.get("name")):
                licenses.append(License("name", lic["name"]))
    return Component(
        name=_text(item.get("name")) or "?", version=_text(item.get("version")),
        purl=_text(item.get("purl")), bom_ref=_text(item.get("bom-ref")),
        group=_text(item.get("group")), type=_text(item.get("type")),
        hashes=tuple(hashes), licenses=tuple(licenses),
        path=path, present=_shared(frozenset(key for key, value in item.items() if _filled(value))),
    )


def _read_xml_components(root: Any) -> tuple[list[Component], Component | None]:
    ns = root.tag.split("}")[0] + "}"
    components: list[Component] = []

    def walk(container: Any) -> None:
        if container is None:
            return
        for element in container.findall(f"{ns}component"):
            components.append(_from_xml(element, ns))
            walk(element.find(f"{ns}components"))

    walk(root.find(f"{ns}components"))
    subject = root.find(f"{ns}metadata/{ns}component")
    return components, (_from_xml(subject, ns) if subject is not None else None)


def _from_xml(element: Any, ns: str) -> Component:
    def child(name: str) -> str | None:
        found = element.find(f"{ns}{name}")
        return _text(found.text.strip()) if found is not None and found.text else None

    hashes = tuple((h.get("alg", ""), (h.text or "").strip().lower())
                   for h in element.findall(f"{ns}hashes/{ns}hash") if h.get("alg") and h.text)
    licenses: list[License] = []
    licenses_element = element.find(f"{ns}licenses")
    if licenses_element is not None:
        for entry in licenses_element:
            tag = entry.tag if isinstance(entry.tag, str) else ""
            if tag == f"{ns}expression" and entry.text and entry.text.strip():
                licenses.append(License("expression", entry.text.strip()))
            elif tag == f"{ns}license":
                for kind in ("id", "name"):
                    found = entry.find(f"{ns}{kind}")
                    if found is not None and found.text and found.text.strip():
                        licenses.append(License(kind, found.text.strip()))
                        break
    return Component(
        name=child("name") or "?", version=child("version"), purl=child("purl"),
        bom_ref=element.get("bom-ref") or None, group=child("group"), type=element.get("type"),
        hashes=hashes, licenses=tuple(licenses),
        path=f"line {element.sourceline}" if getattr(element, "sourceline", None) else "",
        present=_xml_present(element, ns),
    )


def _xml_present(element: Any, ns: str) -> frozenset[str]:
    """The CycloneDX field names an XML component carries: its child elements with content."""
    names = {name for name in ("bom-ref", "type", "mime-type") if element.get(name)}
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag.startswith(ns) and ((child.text or "").strip() or len(child) or child.attrib):
            names.add(tag[len(ns):])
    return _shared(frozenset(names))


@functools.lru_cache(maxsize=4096)
def _shared(names: frozenset[str]) -> frozenset[str]:
    """One instance per distinct field set: a 100,000-component SBOM has a handful of them, and a
    set per component would cost tens of megabytes."""
    return names

