"""Where an SPDX element is in the file: a JSON path (JSON, YAML) or a line (tag-value).

spdx-tools' parser and validator say *what* is wrong (``did not find the
referenced spdx_id "SPDXRef-x"``, ``Error while constructing Package``) but not
*where*: its model keeps no positions. A :class:`Locator` is built once from the
raw document and answers "where is element X / relationship (A, TYPE, B)", and,
after the library has refused a document, "which element is the first one it
could not have read" (:meth:`Locator.first_problem`). It never decides validity:
that stays the library's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JsonLocator", "Locator", "RdfLocator", "TagValueLocator"]

# The lists of the JSON/YAML form whose entries are elements with an SPDXID.
_ELEMENT_LISTS = ("packages", "files", "snippets")
_OBJECT_LISTS = (*_ELEMENT_LISTS, "relationships", "annotations", "hasExtractedLicensingInfos")
_LICENCE_FIELDS = ("licenseConcluded", "licenseDeclared")
_LICENCE_LISTS = ("licenseInfoFromFiles", "licenseInfoInFiles", "licenseInfoInSnippets")
_TOP_STRINGS = ("SPDXID", "spdxVersion", "name", "dataLicense", "documentNamespace")
_SPECIAL_LICENCES = ("NOASSERTION", "NONE")

# Tag-value: a tag that starts an element, and the licence tags whose value is an expression.
_TV_STARTS = {"PackageName": "package", "FileName": "file", "SnippetSPDXID": "snippet"}
_TV_LICENCE_TAGS = frozenset(
    {
        "PackageLicenseConcluded",
        "PackageLicenseDeclared",
        "PackageLicenseInfoFromFiles",
        "LicenseConcluded",
        "LicenseInfoInFile",
        "SnippetLicenseConcluded",
        "LicenseInfoInSnippet",
    }
)
_TV_LINE = re.compile(r"^(?P<tag>[A-Za-z][A-Za-z0-9]*):\s?(?P<value>.*)$")


def licence_problem(expression: str) -> str | None:
    """Why an SPDX licence expression does not parse (license-expression, as spdx-tools uses it), or None."""
    from license_expression import ExpressionError, get_spdx_licensing

    if expression.strip() in _SPECIAL_LICENCES:
        return None
    try:
        get_spdx_licensing().parse(expression, validate=False, strict=False)
    except ExpressionError as exc:
        return str(exc) or "does not parse"
    except Exception as exc:  # noqa: BLE001 - the parser raises others on odd input; any of them means "does not parse"
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class Locator:
    """Places of elements and relationships; subclasses fill the maps from their serialization."""

    document_place: str = "$"
    elements: dict[str, str] = field(default_factory=dict)  # SPDXID -> place (first occurrence)
    relationships: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def element(self, spdx_id: str | None) -> str:
        """Where the element is, or the document's place when it is not found."""
        return self.elements.get(spdx_id or "", self.document_place)

    def relationship(self, origin: str, kind: str, target: str) -> str:
        """Where the relationship ``origin kind target`` is written (kind as in the model: ``DEPENDS_ON``)."""
        return self.relationships.get((origin, kind, target), self.element(origin))

    def first_problem(self) -> tuple[str, str] | None:
        """(place, what) of the first element spdx-tools cannot read, or None when none is apparent."""
        return None


class JsonLocator(Locator):
    """JSON paths in the JSON (or YAML) form: ``$.packages[3]``, ``$.relationships[7]``."""

    def __init__(self, raw: Any) -> None:
        super().__init__(document_place="$")
        self.raw = raw
        if not isinstance(raw, Mapping):
            return
        for key in _ELEMENT_LISTS:
            for index, entry in _entries(raw, key):
                spdx_id = entry.get("SPDXID")
                if isinstance(spdx_id, str):
                    self.elements.setdefault(spdx_id, f"$.{key}[{index}]")
        for index, entry in _entries(raw, "relationships"):
            ends = (
                entry.get("spdxElementId"),
                entry.get("relationshipType"),
                entry.get("relatedSpdxElement"),
            )
            origin, kind, target = ends
            if isinstance(origin, str) and isinstance(kind, str) and isinstance(target, str):
                self.relationships.setdefault(
                    (origin, kind.upper().replace("-", "_"), target), f"$.relationships[{index}]"
                )
        described = raw.get("documentDescribes")
        document_id = raw.get("SPDXID")
        if isinstance(described, list) and isinstance(document_id, str):
            for index, target in enumerate(described):
                if isinstance(target, str):
                    self.relationships.setdefault(
                        (document_id, "DESCRIBES", target), f"$.documentDescribes[{index}]"
                    )
        for index, entry in _entries(raw, "packages"):
            files = entry.get("hasFiles")
            if isinstance(files, list) and isinstance(entry.get("SPDXID"), str):
                for position, target in enumerate(files):
                    if isinstance(target, str):
                        self.relationships.setdefault(
                            (entry["SPDXID"], "CONTAINS", target), f"$.packages[{index}].hasFiles[{position}]"
                        )

    def first_problem(self) -> tuple[str, str] | None:
        raw = self.raw
        if not isinstance(raw, Mapping):
            return "$", f"the document is a {type(raw).__name__}, not an object"
        for key in _TOP_STRINGS:
            if not isinstance(raw.get(key), str):
                return f"$.{key}", "is missing" if key not in raw else f"is not a string ({_kind(raw[key])})"
        if not isinstance(raw.get("creationInfo"), Mapping):
            return "$.creationInfo", "is missing or not an object"
        for key in _OBJECT_LISTS:
            if key in raw and not isinstance(raw[key], list):
                return f"$.{key}", f"is not a list ({_kind(raw[key])})"
            for index, entry in enumerate(raw.get(key) or []):
                if not isinstance(entry, Mapping):
                    return f"$.{key}[{index}]", f"is not an object ({_kind(entry)})"
        for key in _ELEMENT_LISTS:
            for index, entry in _entries(raw, key):
                if not isinstance(entry.get("SPDXID"), str):
                    what = "has no SPDXID" if "SPDXID" not in entry else "has an SPDXID that is not a string"
                    return f"$.{key}[{index}].SPDXID", what
                found = _licence_field_problem(entry, f"$.{key}[{index}]")
                if found:
                    return found
        return None


class TagValueLocator(Locator):
    """Lines of the tag-value form: ``line 42``."""

    def __init__(self, text: str) -> None:
        super().__init__(document_place="line 1")
        self.lines = text.splitlines()
        for number, tag, value in self._tags():
            if tag == "SPDXID":
                self.elements.setdefault(value.strip(), f"line {number}")
            elif tag == "Relationship":
                parts = value.split()
                if len(parts) >= 3:
                    self.relationships.setdefault((parts[0], parts[1].upper(), parts[2]), f"line {number}")

    def _tags(self) -> Iterator[tuple[int, str, str]]:
        for number, line in enumerate(self.lines, 1):
            match = _TV_LINE.match(line)
            if match:
                yield number, match.group("tag"), match.group("value")

    def first_problem(self) -> tuple[str, str] | None:
        open_element: tuple[int, str, str] | None = (
            None  # (line, kind, name) of an element without SPDXID yet
        )
        for number, tag, value in self._tags():
            if tag in _TV_STARTS:
                if open_element is not None:
                    break
                if tag != "SnippetSPDXID":
                    open_element = (number, _TV_STARTS[tag], value.strip())
            elif tag == "SPDXID":
                open_element = None
            elif tag in _TV_LICENCE_TAGS:
                why = licence_problem(value)
                if why:
                    return f"line {number}", f"{tag}: {value.strip()[:120]!r} does not parse ({why})"
        if open_element is not None:
            line, kind, name = open_element
            return f"line {line}", f"{kind} {name[:80]!r} has no SPDXID"
        return None


class RdfLocator(Locator):
    """RDF/XML has no useful positions once in a graph: elements are named by their SPDXID/URI."""

    def __init__(self) -> None:
        super().__init__(document_place="the SpdxDocument")

    def element(self, spdx_id: str | None) -> str:
        return f"element {spdx_id}" if spdx_id else self.document_place

    def relationship(self, origin: str, kind: str, target: str) -> str:
        return f"relationship {origin} {kind} {target}"


def _entries(raw: Mapping[str, Any], key: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    items = raw.get(key)
    if isinstance(items, list):
        for index, entry in enumerate(items):
            if isinstance(entry, Mapping):
                yield index, entry


def _licence_field_problem(entry: Mapping[str, Any], place: str) -> tuple[str, str] | None:
    for key in _LICENCE_FIELDS:
        value = entry.get(key)
        if isinstance(value, str):
            why = licence_problem(value)
            if why:
                return f"{place}.{key}", f"licence expression {value[:120]!r} does not parse ({why})"
    for key in _LICENCE_LISTS:
        values = entry.get(key)
        for index, value in enumerate(values if isinstance(values, list) else []):
            why = licence_problem(value) if isinstance(value, str) else None
            if why:
                return f"{place}.{key}[{index}]", f"licence expression {value[:120]!r} does not parse ({why})"
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
