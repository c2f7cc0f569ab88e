"""Recognising an SPDX file's serialization and reading it with spdx-tools' own parsers.

Serializations: JSON, YAML, tag-value and RDF/XML (SPDX 2.2 and 2.3). Each is read
with spdx-tools 0.8's parser for it; the bytes are first read the way drillbook
reads all outside input: JSON refusing duplicate keys (:mod:`checks.strict_json`),
YAML without aliases (an alias bomb expands exponentially once walked), XML
without a DTD or entities. Any refusal, from drillbook or from the library, is
:class:`~checks.sbom.base.SbomMalformed` naming the place (JSON path or line, see
:mod:`checks.spdx.locate`); the library's own exceptions never escape.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.sbom.base import SbomMalformed
from checks.strict_json import DuplicateKeyError, loads_strict

from .locate import JsonLocator, Locator, RdfLocator, TagValueLocator

__all__ = ["HINT", "ParsedSpdx", "Serialization", "detect", "parse_spdx"]

HINT = (
    "regenerate the SPDX document with its tool (syft, Trivy, GitHub's dependency-graph export, "
    "spdx-tools) and check it with `pyspdxtools -i FILE`"
)
_RDF_NAMESPACE = b"http://spdx.org/rdf/terms"
_YAML_VERSION = re.compile(rb"^spdxVersion\s*:", re.MULTILINE)
_TAG_VALUE_VERSION = re.compile(rb"^SPDXVersion\s*:", re.MULTILINE)
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")


class Serialization(enum.StrEnum):
    """How an SPDX document is written; the value is what verdicts and ``SbomDocument.format`` say."""

    JSON = "json"
    YAML = "yaml"
    TAG_VALUE = "tag-value"
    RDF = "rdf"


@dataclass(frozen=True)
class ParsedSpdx:
    """The library's model of the document, where its elements are, and the raw form it came from."""

    document: Any  # spdx_tools.spdx.model.Document
    serialization: Serialization
    locator: Locator


def detect(data: bytes) -> Serialization | None:
    """The SPDX serialization these bytes are in, or None when they are not SPDX (cheap: no parse)."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        # A CycloneDX JSON document says bomFormat; an SPDX one says spdxVersion.
        return Serialization.JSON if b'"spdxVersion"' in data and b'"bomFormat"' not in data else None
    if head == b"<":
        return Serialization.RDF if _RDF_NAMESPACE in data[:65536] else None
    if _TAG_VALUE_VERSION.search(data):
        return Serialization.TAG_VALUE
    if _YAML_VERSION.search(data):
        return Serialization.YAML
    return None


def parse_spdx(path: Path, text: str, serialization: Serialization) -> ParsedSpdx:
    """The document read by spdx-tools; :class:`SbomMalformed` naming the place when it cannot be."""
    if serialization in (Serialization.JSON, Serialization.YAML):
        raw = _load_json(path, text) if serialization is Serialization.JSON else _load_yaml(path, text)
        locator: Locator = JsonLocator(raw)
        return ParsedSpdx(_run(path, serialization, locator, lambda: _from_dict(raw)), serialization, locator)
    if serialization is Serialization.TAG_VALUE:
        locator = TagValueLocator(text)
        return ParsedSpdx(
            _run(path, serialization, locator, lambda: _from_tag_value(text)), serialization, locator
        )
    found = [marker.decode() for marker in _DTD_MARKERS if marker in text.encode()]
    if found:
        raise SbomMalformed(
            f"{path}: RDF/XML with a document type or entity declaration ({', '.join(found)}) is refused: "
            "an SPDX document needs none, and entities are how XML input reaches files and memory it "
            "should not",
            path=str(path),
            hint="export the SPDX document without a DOCTYPE, or as JSON",
        )
    locator = RdfLocator()
    return ParsedSpdx(_run(path, serialization, locator, lambda: _from_rdf(text)), serialization, locator)


def _load_json(path: Path, text: str) -> Any:
    try:
        return loads_strict(text)
    except DuplicateKeyError as exc:
        raise SbomMalformed(
            f"{path}: {exc}",
            path=str(path),
            key=exc.key,
            hint="an SBOM that says two things about one field cannot be checked: regenerate it",
        ) from exc
    except json.JSONDecodeError as exc:
        raise SbomMalformed(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            path=str(path),
            line=exc.lineno,
            hint=HINT,
        ) from exc
    except RecursionError as exc:
        raise SbomMalformed(f"{path}: JSON nested too deeply", path=str(path), hint=HINT) from exc


def _load_yaml(path: Path, text: str) -> Any:
    import yaml

    class NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
        """SafeLoader that refuses aliases: an SPDX document has no use for them."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "aliases are refused in an SPDX document", event.start_mark
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - NoAliasLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}" if mark is not None else "an unknown line"
        raise SbomMalformed(
            f"{path}: malformed YAML at {line}: {exc.problem or exc}", path=str(path), hint=HINT
        ) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise SbomMalformed(
            f"{path}: malformed YAML: {type(exc).__name__}", path=str(path), hint=HINT
        ) from exc


def explicit_relationships(raw: Any) -> Any:
    """The document with ``documentDescribes`` and ``hasFiles`` written out as relationships.

    Why: spdx-tools' JSON parser turns each of those ids into a relationship only if it is
    not already stated (either way round), by searching the list of all relationships:
    quadratic. A 2 MB Trivy-style document (1,000 packages, each ``hasFiles``) takes ~15 s
    to parse. This does the same, with the same order and the same de-duplication, in one
    pass, and hands the library a document without those keys. Anything unusual (an id
    that is not a string) is left to the library and its error messages.
    """
    if not isinstance(raw, dict):
        return raw
    document_id = raw.get("SPDXID")
    described = raw.get("documentDescribes", [])
    packages = raw.get("packages", [])
    relationships = raw.get("relationships", [])
    if not (isinstance(document_id, str) and isinstance(described, list) and isinstance(packages, list)
            and isinstance(relationships, list) and all(isinstance(r, dict) for r in relationships)
            and all(isinstance(d, str) for d in described)):
        return raw
    implicit: list[tuple[str, str, str]] = [(document_id, "DESCRIBES", target) for target in described]
    for package in packages:
        if not isinstance(package, dict) or "hasFiles" not in package:
            continue
        files = package["hasFiles"]
        if not (isinstance(package.get("SPDXID"), str) and isinstance(files, list)
                and all(isinstance(f, str) for f in files)):
            return raw
        implicit += [(package["SPDXID"], "CONTAINS", target) for target in files]
    if not implicit:
        return raw
    inverse = {"DESCRIBES": "DESCRIBED_BY", "CONTAINS": "CONTAINED_BY"}
    existing = {(r.get("spdxElementId"), str(r.get("relationshipType")).replace("-", "_").upper(),
                 r.get("relatedSpdxElement")) for r in relationships}
    added: list[dict[str, str]] = []
    for origin, kind, target in dict.fromkeys(implicit):  # the library drops repeated ids too
        if (origin, kind, target) in existing or (target, inverse[kind], origin) in existing:
            continue
        added.append({"spdxElementId": origin, "relationshipType": kind, "relatedSpdxElement": target})
        if kind == "DESCRIBES":
            existing.add((origin, kind, target))  # hasFiles is compared with describes added before it
    rewritten = {key: value for key, value in raw.items() if key != "documentDescribes"}
    rewritten["packages"] = [{k: v for k, v in p.items() if k != "hasFiles"} if isinstance(p, dict) else p
                             for p in packages]
    rewritten["relationships"] = [*relationships, *added]
    return rewritten


def _from_dict(raw: Any) -> Any:
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser

    raw = explicit_relationships(raw)
    parser: Any = JsonLikeDictParser  # spdx-tools is untyped
    return parser().parse(raw)


def _from_tag_value(text: str) -> Any:
    from ply import yacc
    from spdx_tools.spdx.parser.tagvalue.parser import Parser

    # ply writes parser tables (parsetab.py, parser.out) into the library's folder and logs
    # "Generating LALR tables" unless told not to.
    parser: Any = Parser  # spdx-tools is untyped
    return parser(write_tables=False, debug=False, errorlog=yacc.NullLogger()).parse(text)


def _from_rdf(text: str) -> Any:
    from rdflib import Graph
    from spdx_tools.spdx.parser.rdf.rdf_parser import translate_graph_to_document

    graph = Graph()
    graph.parse(data=text, format="xml")
    return translate_graph_to_document(graph)


def _run(path: Path, serialization: Serialization, locator: Locator, parse: Any) -> Any:
    from spdx_tools.spdx.parser.error import SPDXParsingError

    try:
        return parse()
    except SPDXParsingError as exc:
        messages: Any = exc.messages  # get_messages() is untyped
        reason = "; ".join(str(m) for m in messages)
    except RecursionError:
        reason = "nested too deeply"
    except Exception as exc:  # noqa: BLE001 - spdx-tools and rdflib raise many kinds on odd input
        reason = f"{type(exc).__name__}: {exc}"
    found = locator.first_problem()
    where, what = found if found else (locator.document_place, "")
    detail = (
        f"{what} (spdx-tools: {_short(reason)})" if what else f"spdx-tools cannot read it: {_short(reason)}"
    )
    raise SbomMalformed(
        f"{path}: not a readable SPDX {serialization.value} document: at {where}: {detail}",
        path=str(path),
        at=where,
        hint=HINT,
    )


def _short(message: str, limit: int = 300) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
