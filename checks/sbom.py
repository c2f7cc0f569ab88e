"""CycloneDX SBOM checks: schema validity, artifact coverage, component completeness, licences.

Public surface (stable; used by ``steps/supply_chain.py``, ``drillbook verify sbom``
and :mod:`checks.vulnerabilities`). Every ``sbom`` argument is a path or an
already read :class:`SbomDocument`:

- :func:`read_sbom` ``(path) -> SbomDocument``: JSON or XML, any spec version;
  raises :class:`SbomUnreadable` (I/O) or :class:`SbomMalformed` (content).
  It does not validate the schema: that is :func:`validate_sbom`.
- :func:`validate_sbom` ``(path) -> Verdict`` ``sbom.valid``: against the schema
  of the version the document declares, with cyclonedx-python-lib 11's
  validators (JSON made fast by :mod:`checks.cyclonedx_fast`, same verdicts).
- :func:`sbom_covers_artifacts` ``(sbom, artifacts_dir) -> Verdict``
  ``sbom.covers_artifacts``: every file of the release (and every digest in
  ``images.txt``) appears as a component hash; :func:`sbom_covers_digests`
  does the same for a release known by digests (an S3 prefix).
- :func:`components_have_versions_and_purls` / :func:`components_have_fields`
  -> ``sbom.components_complete``.
- :func:`no_denied_licenses` ``(sbom, denied) -> Verdict`` ``sbom.licenses``.

Outcomes: content that is wrong (malformed, unknown version, invalid, missing
artifact, denied licence) is ``failed``; what could not be read or decided
(unreadable file, unparseable licence expression) is ``error``. Never a crash.

Errors (subclasses of :class:`checks.errors.DrillbookError`)::

    SbomError
    ├── SbomUnreadable   the file cannot be read (missing, permissions)   -> error
    └── SbomMalformed    not JSON/XML, not CycloneDX, unknown version      -> failed
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from checks.errors import DrillbookError
from checks.redact import redact
from checks.strict_json import DuplicateKeyError, loads_strict
from checks.verdict import Verdict

__all__ = [
    "DEFAULT_IGNORED",
    "KNOWN_FIELDS",
    "Component",
    "License",
    "SbomDocument",
    "SbomError",
    "SbomMalformed",
    "SbomUnreadable",
    "components_have_fields",
    "components_have_versions_and_purls",
    "no_denied_licenses",
    "parse_images_list",
    "read_sbom",
    "sbom_covers_artifacts",
    "sbom_covers_digests",
    "validate_sbom",
]

_XML_NAMESPACE = re.compile(r"^\{http://cyclonedx\.org/schema/bom/(?P<version>[^}]+)\}bom$")
_MAX_LISTED = 10  # how many offenders a message names; the evidence lists them all
_MAX_ERRORS = 10  # schema errors kept as evidence (the first one is the library's verdict)
_CHUNK = 1 << 20
_LIBRARY_VERSION = importlib.metadata.version("cyclonedx-python-lib")  # recorded with every verdict

# Files of a release directory that are not artifacts the SBOM must describe: signatures,
# certificates, checksum sidecars, the SBOMs themselves. Overridable per call.
DEFAULT_IGNORED: tuple[str, ...] = (
    ".*", "*.sigstore.json", "*.sigstore", "*.sig", "*.pem", "*.crt", "*.cert",
    "*.sha256", "*.sha512", "*SUMS", "*SUMS.*", "*.intoto.jsonl",
    "*.cdx.json", "*.cdx.xml", "bom.json", "bom.xml", "sbom.json", "sbom.xml", "*.spdx.json",
)
IMAGES_LIST = "images.txt"

# Digests that prove an artifact is the one described; MD5 and SHA-1 do not.
_STRONG_HASHES = {
    "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512",
    "SHA3-256": "sha3_256", "SHA3-384": "sha3_384", "SHA3-512": "sha3_512",
}
KNOWN_FIELDS = frozenset({"name", "version", "purl", "hashes", "licenses", "bom-ref"})


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
    """The facts drillbook checks about one SBOM component (nested ones included)."""

    name: str
    version: str | None = None
    purl: str | None = None
    bom_ref: str | None = None
    group: str | None = None
    type: str | None = None
    hashes: tuple[tuple[str, str], ...] = ()  # (algorithm as in CycloneDX, lowercase hex)
    licenses: tuple[License, ...] = ()

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
class SbomDocument:
    """A read CycloneDX document: where it came from, its declared version, its components."""

    path: Path
    format: str  # "json" | "xml"
    spec_version: str
    sha256: str
    size: int
    components: tuple[Component, ...]
    subject: Component | None = None  # metadata.component: what the SBOM describes
    reader: str = "model"  # "model" (cyclonedx-python-lib) or "document" (read directly)
    reader_note: str = ""
    raw: Any = field(default=None, repr=False, compare=False)

    def evidence(self) -> dict[str, Any]:
        """Identity of the document for verdict evidence."""
        return {"sbom": str(self.path), "sbom_sha256": self.sha256, "format": self.format,
                "spec_version": self.spec_version, "components": len(self.components)}


# ---------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SbomUnreadable(f"cannot read SBOM {path}: {reason}", path=str(path)) from exc


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


def read_sbom(path: Path) -> SbomDocument:
    """Read a CycloneDX JSON or XML file: components through cyclonedx-python-lib's model,
    or directly from the document when the model rejects it (it does on some valid files).

    Raises :class:`SbomUnreadable` or :class:`SbomMalformed`; never validates the schema.
    """
    data = _read_bytes(path)
    fmt = _detect_format(path, data)
    text = _decode(path, data)
    digest = hashlib.sha256(data).hexdigest()
    if fmt == "json":
        document, version = _parse_json(path, text)
    else:
        document, version = _parse_xml(path, data)
    try:
        components, subject = _read_with_model(fmt, text)
        reader, note = "model", ""
    except Exception as exc:  # noqa: BLE001 - the model rejects valid documents too; read them directly
        reader, note = "document", f"cyclonedx-python-lib could not load it: {type(exc).__name__}: {exc}"
        try:
            if fmt == "json":
                components, subject = _read_json_components(document)
            else:
                components, subject = _read_xml_components(document)
        except RecursionError as deep:
            raise SbomMalformed(f"{path}: components nested too deeply to read", path=str(path)) from deep
    return SbomDocument(path=path, format=fmt, spec_version=version, sha256=digest, size=len(data),
                        components=tuple(components), subject=subject, reader=reader,
                        reader_note=note[:300], raw=document)


def _as_document(sbom: Path | SbomDocument) -> SbomDocument:
    return sbom if isinstance(sbom, SbomDocument) else read_sbom(sbom)


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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_json_components(document: Mapping[str, Any]) -> tuple[list[Component], Component | None]:
    components: list[Component] = []

    def walk(items: Any) -> None:
        if not isinstance(items, list):
            return
        for item in items:
            if isinstance(item, dict):
                components.append(_from_json(item))
                walk(item.get("components"))

    walk(document.get("components"))
    metadata = document.get("metadata")
    subject = metadata.get("component") if isinstance(metadata, dict) else None
    return components, (_from_json(subject) if isinstance(subject, dict) else None)


def _from_json(item: Mapping[str, Any]) -> Component:
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
    )


# ---------------------------------------------------------------------------- validation


def validate_sbom(path: Path) -> Verdict:
    """``sbom.valid``: the document is valid against the schema of the version it declares.

    JSON is checked by :func:`checks.cyclonedx_fast.fast_json_validator` (the library's
    validator with a fast IRI check: same verdicts), XML by the library's XSD validator.
    Malformed JSON/XML and unknown versions fail; an unreadable file is an error.
    """
    check_id = "sbom.valid"
    try:
        data = _read_bytes(path)
        fmt = _detect_format(path, data)
        text = _decode(path, data)
    except SbomUnreadable as exc:
        return _error_verdict(check_id, exc, path)
    except SbomMalformed as exc:
        return _failed_verdict(check_id, exc, path)
    evidence: dict[str, Any] = {"sbom": str(path), "sbom_sha256": hashlib.sha256(data).hexdigest(),
                                "format": fmt, "size": len(data)}
    try:
        if fmt == "json":
            errors, version, validator = _json_errors(path, text)
        else:
            errors, version, validator = _xml_errors(path, data, text)
    except SbomMalformed as exc:
        return _failed_verdict(check_id, exc, path, evidence)
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
        raise SbomMalformed(f"{path}: unknown CycloneDX spec version {version[:40]!r} ({fmt.upper()})",
                            path=str(path), hint="use a spec version cyclonedx-python-lib 11 knows "
                            "(1.0-1.7 XML, 1.2-1.7 JSON)") from exc


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


def _failed_verdict(check_id: str, exc: SbomError, path: Path,
                    evidence: Mapping[str, Any] | None = None) -> Verdict:
    data = {"sbom": str(path), **(evidence or {}), "error": type(exc).__name__, "hint": exc.hint}
    return Verdict.failed(check_id, redact(exc.message), evidence=data)


def _error_verdict(check_id: str, exc: SbomError, path: Path) -> Verdict:
    return Verdict.error(check_id, redact(exc.message),
                         evidence={"sbom": str(path), "error": type(exc).__name__, "hint": exc.hint})


def _loaded(check_id: str, sbom: Path | SbomDocument) -> SbomDocument | Verdict:
    """The document, or the verdict saying why it could not be read."""
    path = sbom.path if isinstance(sbom, SbomDocument) else sbom
    try:
        return _as_document(sbom)
    except SbomUnreadable as exc:
        return _error_verdict(check_id, exc, path)
    except SbomMalformed as exc:
        return _failed_verdict(check_id, exc, path)


# ---------------------------------------------------------------------------- coverage


def _ignored(relative: str, patterns: Sequence[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in patterns)


def _release_files(directory: Path, ignore: Sequence[str], sbom_path: Path) -> Iterator[tuple[str, Path]]:
    own = sbom_path.resolve()
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if any(part.startswith(".") for part in relative.split("/")[:-1]):
            continue  # hidden folders (.git, .cache) hold no release artifacts
        if not path.is_file() or path.resolve() == own or _ignored(relative, ignore):
            continue
        yield relative, path


def _digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    hashers = {alg: hashlib.new(_STRONG_HASHES[alg]) for alg in algorithms}
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {alg: hasher.hexdigest() for alg, hasher in hashers.items()}


_IMAGE_DIGEST = re.compile(r"@sha256:(?P<hex>[0-9a-fA-F]{64})\s*$")


def parse_images_list(text: str, name: str = IMAGES_LIST) -> tuple[list[tuple[str, str]], list[str]]:
    """(reference, sha256 hex) per image line of an ``images.txt``, and the lines without a digest.

    One image per line (``registry/name:tag@sha256:<hex>``); ``#`` starts a comment.
    """
    images: list[tuple[str, str]] = []
    undigested: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        match = _IMAGE_DIGEST.search(line)
        if match is None:
            undigested.append(f"{name} line {number}: {line[:120]}")
        else:
            images.append((line, match.group("hex").lower()))
    return images, undigested


@dataclass
class _Release:
    """What a release holds: file digests by algorithm, image digests, and what could not be read."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)
    images: list[tuple[str, str]] = field(default_factory=list)
    undigested: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _known_hashes(document: SbomDocument) -> tuple[dict[str, set[str]], str]:
    """Strong component hashes by algorithm, and the versions/purls text image digests may appear in."""
    described = list(document.components) + ([document.subject] if document.subject else [])
    known: dict[str, set[str]] = {}
    for component in described:
        for alg, content in component.hashes:
            if alg in _STRONG_HASHES:
                known.setdefault(alg, set()).add(content)
    references = " ".join(f"{c.version or ''} {c.purl or ''}" for c in described).lower()
    return known, references.replace("%3a", ":")


def _coverage(check_id: str, document: SbomDocument, release: _Release, source: str,
              evidence: dict[str, Any]) -> Verdict:
    known, references = _known_hashes(document)
    artifacts: dict[str, str] = {}
    missing: list[str] = []
    for name, digests in release.files.items():
        artifacts[name] = digests.get("SHA-256", "")
        if not any(hex_ in known.get(alg, ()) for alg, hex_ in digests.items()):
            missing.append(name)
    for reference, digest in release.images:
        artifacts[f"image {reference}"] = digest
        if digest not in known.get("SHA-256", set()) and f"sha256:{digest}" not in references:
            missing.append(f"image {reference}")
    total = len(artifacts) + len(release.undigested)
    evidence |= {"artifacts": artifacts, "missing": missing, "unreadable": release.unreadable,
                 "images_without_digest": release.undigested}
    expected = "every artifact's digest is a component hash"
    if missing or release.undigested:
        problems = missing + release.undigested
        return Verdict.failed(
            check_id,
            f"{document.path.name} does not cover {len(problems)} of {total} artifacts in {source}: "
            f"{_listing(problems)}",
            measured=total - len(problems), expected=expected, evidence=evidence)
    if release.unreadable:
        return Verdict.error(check_id, f"cannot read {len(release.unreadable)} artifacts in {source}: "
                             f"{_listing(release.unreadable)}", evidence=evidence)
    if total == 0:
        return Verdict.failed(check_id, f"no artifacts in {source}: an empty release proves nothing",
                              measured=0, expected=expected, evidence=evidence)
    return Verdict.passed(check_id, f"{document.path.name} covers all {total} artifacts in {source}",
                          measured=total, expected=expected, evidence=evidence)


def sbom_covers_artifacts(sbom: Path | SbomDocument, artifacts_dir: Path, *,
                          ignore: Sequence[str] = DEFAULT_IGNORED) -> Verdict:
    """``sbom.covers_artifacts``: every release file's digest appears as a component hash.

    Files are walked recursively; signatures, checksums and SBOMs (``ignore``
    globs, :data:`DEFAULT_IGNORED`) are not artifacts. A line of ``images.txt``
    (``name@sha256:<hex>``) is covered when its digest is a component's SHA-256
    or appears in a component's version or purl (``pkg:oci/…@sha256%3A…``).
    Only strong digests count (SHA-2/SHA-3; MD5 and SHA-1 do not). An empty
    release directory fails; a missing or unreadable one is an error.
    For a release that is not a local folder (an S3 prefix), see :func:`sbom_covers_digests`.
    """
    check_id = "sbom.covers_artifacts"
    document = _loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    evidence: dict[str, Any] = {**document.evidence(), "artifacts_dir": str(artifacts_dir),
                                "ignored_patterns": list(ignore)}
    if not artifacts_dir.is_dir():
        return Verdict.error(check_id, f"release directory {artifacts_dir} does not exist or is not a folder",
                             evidence={**evidence, "hint": "point --artifacts at the release directory"})
    try:
        files = list(_release_files(artifacts_dir, ignore, document.path))
    except OSError as exc:
        return Verdict.error(check_id, f"cannot list {artifacts_dir}: {exc.strerror or exc}",
                             evidence=evidence)
    algorithms = set(_known_hashes(document)[0]) | {"SHA-256"}
    release = _Release()
    for relative, path in files:
        try:
            if path.name == IMAGES_LIST:
                found, bad = parse_images_list(path.read_text(encoding="utf-8", errors="replace"), relative)
                release.images.extend(found)
                release.undigested.extend(bad)
            else:
                release.files[relative] = _digests(path, algorithms)
        except OSError as exc:
            release.unreadable.append(f"{relative}: {exc.strerror or type(exc).__name__}")
    return _coverage(check_id, document, release, str(artifacts_dir), evidence)


def sbom_covers_digests(sbom: Path | SbomDocument, artifacts: Mapping[str, str], *, source: str,
                        images: Sequence[tuple[str, str]] = ()) -> Verdict:
    """``sbom.covers_artifacts`` for a release known by digests: ``{name: sha256 hex}``.

    For releases that are not a local folder (e.g. objects under an S3 prefix, hashed
    while downloading). ``images`` are (reference, sha256 hex) pairs, e.g. from
    :func:`parse_images_list`. ``source`` names the release in messages.
    """
    check_id = "sbom.covers_artifacts"
    document = _loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    release = _Release(files={name: {"SHA-256": digest.lower()} for name, digest in artifacts.items()},
                       images=[(ref, digest.lower()) for ref, digest in images])
    return _coverage(check_id, document, release, source, {**document.evidence(), "source": source})


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# ---------------------------------------------------------------------------- completeness


def _lacks(component: Component, field_name: str) -> str | None:
    """Why the component does not satisfy a required field, or None."""
    if field_name == "name":
        return "no name" if component.name in ("", "?") else None
    if field_name == "version":
        return None if component.version else "no version"
    if field_name == "purl":
        if not component.purl:
            return "no purl"
        from packageurl import PackageURL

        try:
            PackageURL.from_string(component.purl)
        except ValueError as exc:
            return f"invalid purl {component.purl[:80]!r} ({exc})"
        return None
    if field_name == "hashes":
        return None if component.hashes else "no hashes"
    if field_name == "licenses":
        return None if component.licenses else "no licence"
    if field_name == "bom-ref":
        return None if component.bom_ref else "no bom-ref"
    raise ValueError(f"unknown component field {field_name!r}; known: {', '.join(sorted(KNOWN_FIELDS))}")


def components_have_fields(sbom: Path | SbomDocument, required: Sequence[str]) -> Verdict:
    """``sbom.components_complete``: every component has each ``required`` field (see KNOWN_FIELDS).

    A purl must also parse. An SBOM without components fails: it describes nothing.
    Raises ``ValueError`` for a field name not in :data:`KNOWN_FIELDS` (a usage error).
    """
    check_id = "sbom.components_complete"
    unknown = sorted(set(required) - KNOWN_FIELDS)
    if unknown:
        raise ValueError(f"unknown component field(s) {unknown}; known: {', '.join(sorted(KNOWN_FIELDS))}")
    document = _loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    expected = f"every component has {', '.join(required)}"
    evidence: dict[str, Any] = {**document.evidence(), "required": list(required), "reader": document.reader}
    if not document.components:
        return Verdict.failed(check_id, f"{document.path.name} lists no components",
                              measured=0, expected=expected, evidence=evidence)
    offenders: list[dict[str, Any]] = []
    for component in document.components:
        reasons = [r for r in (_lacks(component, f) for f in required) if r]
        if reasons:
            offenders.append({**component.evidence(), "problems": reasons})
    evidence["incomplete"] = offenders
    total = len(document.components)
    if offenders:
        names = [f"{o['name']} ({'; '.join(o['problems'])})" for o in offenders]
        return Verdict.failed(
            check_id, f"{len(offenders)} of {total} components in {document.path.name} are incomplete: "
            f"{_listing(names)}", measured=total - len(offenders), expected=expected, evidence=evidence)
    return Verdict.passed(check_id, f"all {total} components in {document.path.name} have "
                          f"{', '.join(required)}", measured=total, expected=expected, evidence=evidence)


def components_have_versions_and_purls(sbom: Path | SbomDocument) -> Verdict:
    """``sbom.components_complete``: every component has a version and a purl that parses."""
    return components_have_fields(sbom, ("version", "purl"))


# ---------------------------------------------------------------------------- licences


class _ExpressionUnreadable(Exception):
    pass


def _denied_in(expression: str, denied: frozenset[str]) -> bool:
    """Whether every way of satisfying the SPDX expression uses a denied licence."""
    from license_expression import ExpressionError, LicenseSymbol, LicenseWithExceptionSymbol, Licensing

    licensing = Licensing()
    try:
        parsed = licensing.parse(expression, validate=False, strict=False)
    except ExpressionError as exc:
        raise _ExpressionUnreadable(str(exc)) from exc

    def denied_node(node: Any) -> bool:
        if isinstance(node, LicenseWithExceptionSymbol):
            whole = f"{node.license_symbol.key} WITH {node.exception_symbol.key}".lower()
            return whole in denied or str(node.license_symbol.key).lower() in denied
        if isinstance(node, LicenseSymbol):
            return str(node.key).lower() in denied
        if isinstance(node, licensing.AND):
            return any(denied_node(arg) for arg in node.args)
        if isinstance(node, licensing.OR):
            # A choice is denied only when every alternative is.
            return all(denied_node(arg) for arg in node.args)
        raise _ExpressionUnreadable(f"unexpected term {node!r}")

    return parsed is not None and denied_node(parsed)


def no_denied_licenses(sbom: Path | SbomDocument, denied: Iterable[str]) -> Verdict:
    """``sbom.licenses``: no component is licensed only under a denied licence.

    ``denied`` holds SPDX ids (or licence names), compared case-insensitively.
    In an SPDX expression ``A OR B`` is denied only when both are; ``A AND B``
    when either is. An expression that does not parse is an error (it could hide
    a denied licence). No denied licences configured is ``not_applicable``.
    """
    check_id = "sbom.licenses"
    denied_set = frozenset(d.strip().lower() for d in denied if d.strip())
    document = _loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    evidence: dict[str, Any] = {**document.evidence(), "denied": sorted(denied_set),
                                "reader": document.reader}
    if not denied_set:
        return Verdict.not_applicable(check_id, "no denied licences are configured", evidence=evidence)
    if not document.components:
        return Verdict.not_applicable(check_id, f"{document.path.name} lists no components",
                                      evidence=evidence)
    hits: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    unlicensed = 0
    for component in document.components:
        if not component.licenses:
            unlicensed += 1
        for entry in component.licenses:
            try:
                bad = (_denied_in(entry.value, denied_set) if entry.kind == "expression"
                       else entry.value.lower() in denied_set)
            except _ExpressionUnreadable as exc:
                unreadable.append({**component.evidence(), "expression": entry.value, "reason": str(exc)})
                continue
            if bad:
                hits.append({**component.evidence(), "license": entry.value})
    evidence |= {"denied_components": hits, "unreadable_expressions": unreadable,
                 "components_without_licence": unlicensed}
    expected = f"no component under {', '.join(sorted(denied_set))}"
    if hits:
        names = [f"{h['name']} ({h['license']})" for h in hits]
        return Verdict.failed(check_id, f"{len(hits)} components in {document.path.name} carry a denied "
                              f"licence: {_listing(names)}", measured=len(hits), expected=expected,
                              evidence=evidence)
    if unreadable:
        names = [f"{u['name']} ({u['expression']!r})" for u in unreadable]
        return Verdict.error(check_id, f"cannot parse the licence expression of {len(unreadable)} components "
                             f"in {document.path.name}: {_listing(names)}", evidence=evidence)
    return Verdict.passed(check_id, f"no denied licence among {len(document.components)} components "
                          f"in {document.path.name}", measured=0, expected=expected, evidence=evidence)
