"""in-toto statements: parse a DSSE payload into the facts an attestation check compares.

A sigstore bundle with a DSSE envelope signs a *payload*; sigstore verifies the envelope and hands
the payload back as opaque bytes ("users of this API must assert that type is known to them").
This module is that assertion for ``application/vnd.in-toto+json``: it reads an in-toto Statement
(v1, and v0.1, which slsa-github-generator and older cosign still emit) and returns its subjects and
predicate type, or raises :class:`InTotoStatementError` naming the JSON path that is wrong.

Only what a verdict depends on is checked strictly: ``_type``, ``subject[*].name`` and
``subject[*].digest`` (a SHA-256 must be 64 hex digits, so a typo is reported as such rather than
as "no subject matches"), ``predicateType``, and that ``predicate`` is an object when present. The
predicate's own schema (SLSA, SPDX, ...) is the producer's business and is not validated here.

Never raises anything but :class:`InTotoStatementError` on any input (property-tested): the payload
comes from whoever made the bundle.

::

    DrillbookError
    └── InTotoStatementError    the payload is not an in-toto statement (JSON path, hint)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import DrillbookError
from .strict_json import DuplicateKeyError, loads_strict

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
_HEX = re.compile(r"[0-9a-fA-F]+")
# Lengths in hex digits of the algorithms whose digests drillbook can tell apart from a typo.
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128, "sha224": 56, "sha1": 40,
                "sha3_256": 64, "sha3_384": 96, "sha3_512": 128}

# Predicate types a reader recognises by name, from the in-toto attestation and SLSA specs.
PREDICATE_NAMES: Mapping[str, str] = MappingProxyType({
    "https://slsa.dev/provenance/v1": "SLSA provenance v1",
    "https://slsa.dev/provenance/v0.2": "SLSA provenance v0.2",
    "https://slsa.dev/provenance/v0.1": "SLSA provenance v0.1",
    "https://slsa.dev/verification_summary/v1": "SLSA verification summary v1",
    "https://slsa.dev/verification_summary/v0.2": "SLSA verification summary v0.2",
    "https://spdx.dev/Document": "SPDX SBOM",
    "https://spdx.dev/Document/v2.3": "SPDX 2.3 SBOM",
    "https://cyclonedx.org/bom": "CycloneDX SBOM",
    "https://cyclonedx.org/bom/v1.4": "CycloneDX 1.4 SBOM",
    "https://cyclonedx.org/bom/v1.5": "CycloneDX 1.5 SBOM",
    "https://cyclonedx.org/bom/v1.6": "CycloneDX 1.6 SBOM",
    "https://openvex.dev/ns": "OpenVEX document",
    "https://openvex.dev/ns/v0.2.0": "OpenVEX v0.2.0 document",
    "https://in-toto.io/attestation/link/v0.3": "in-toto link v0.3",
    "https://in-toto.io/attestation/test-result/v0.1": "in-toto test result v0.1",
    "https://in-toto.io/attestation/vulns/v0.1": "in-toto vulnerability scan v0.1",
    "https://in-toto.io/attestation/runtime-trace/v0.1": "in-toto runtime trace v0.1",
    "https://in-toto.io/attestation/release/v0.1": "in-toto release v0.1",
    "https://in-toto.io/attestation/scai/attribute-report/v0.2": "SCAI attribute report v0.2",
    "https://github.com/npm/attestation/tree/main/specs/publish/v0.1": "npm publish attestation v0.1",
})


class InTotoStatementError(DrillbookError):
    """A DSSE payload is not an in-toto statement; ``path`` is the JSON path of what is wrong."""

    default_hint = ("the bundle's payload must be an in-toto Statement "
                    "(https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md): "
                    "regenerate the attestation with its producer (cosign attest, "
                    "actions/attest-build-provenance, slsa-github-generator)")

    def __init__(self, path: str, problem: str, *, hint: str | None = None) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}", hint=hint, path=path)


@dataclass(frozen=True)
class Subject:
    """One attested artifact: its name (may be absent) and digests, algorithm → lowercase hex."""

    name: str | None
    digest: Mapping[str, str]

    @property
    def sha256(self) -> str | None:
        return self.digest.get("sha256")

    def label(self) -> str:
        """``name (sha256 abcd…)`` for messages; the full digest stays in the evidence."""
        name = self.name if self.name else "(unnamed)"
        if self.sha256:
            return f"{name} (sha256 {self.sha256[:12]}…)"
        return f"{name} (no sha256; {', '.join(sorted(self.digest))})"

    def evidence(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    """The parts of an in-toto statement a verdict depends on."""

    statement_type: str
    subjects: tuple[Subject, ...]
    predicate_type: str

    def predicate_name(self) -> str:
        """``SLSA provenance v1 (https://slsa.dev/provenance/v1)``, or the bare URI when unknown."""
        return describe_predicate(self.predicate_type)

    def subjects_with_sha256(self, digest: str) -> list[Subject]:
        """Subjects whose SHA-256 is ``digest`` (hex, any case); the name is not compared."""
        wanted = digest.lower()
        return [s for s in self.subjects if s.sha256 == wanted]


def describe_predicate(predicate_type: str) -> str:
    """A predicate type as a reader knows it, with the URI that identifies it."""
    name = PREDICATE_NAMES.get(predicate_type)
    return f"{name} ({predicate_type})" if name else f"in-toto attestation (predicate type {predicate_type})"


def parse_statement(payload: bytes) -> Statement:
    """Parse a DSSE payload as an in-toto statement; :class:`InTotoStatementError` when it is not."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InTotoStatementError("$", f"the payload is not UTF-8 text (byte {exc.start})") from exc
    try:
        document = loads_strict(text)
    except DuplicateKeyError as exc:
        # Which of two values counts would depend on the parser: refuse, naming the key.
        raise InTotoStatementError("$", f"key {exc.key!r} appears twice in one object") from exc
    except ValueError as exc:  # json.JSONDecodeError, and int strings past Python's digit limit
        raise InTotoStatementError("$", f"the payload is not JSON: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise InTotoStatementError("$", "the payload nests too deeply to be a statement") from exc
    return statement_from_json(document)


def statement_from_json(document: Any) -> Statement:
    """Check an already-decoded JSON value as an in-toto statement."""
    if not isinstance(document, dict):
        raise InTotoStatementError("$", f"expected a JSON object, got {_kind(document)}")
    statement_type = document.get("_type")
    if not isinstance(statement_type, str):
        raise InTotoStatementError("$._type", "missing or not a string" if statement_type is None
                                   else f"expected a string, got {_kind(statement_type)}")
    if statement_type not in STATEMENT_TYPES:
        raise InTotoStatementError(
            "$._type", f"{_short(statement_type)} is not an in-toto Statement type "
            f"(expected {' or '.join(STATEMENT_TYPES)})")
    raw_subjects = document.get("subject")
    if not isinstance(raw_subjects, list):
        raise InTotoStatementError("$.subject", "missing" if raw_subjects is None
                                   else f"expected a list, got {_kind(raw_subjects)}")
    if not raw_subjects:
        raise InTotoStatementError("$.subject", "the list is empty: the statement attests to nothing")
    subjects = tuple(_subject(item, f"$.subject[{i}]") for i, item in enumerate(raw_subjects))
    predicate_type = document.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type.strip():
        raise InTotoStatementError("$.predicateType", "missing" if predicate_type is None
                                   else f"expected a non-empty string, got {_short(predicate_type)}")
    predicate = document.get("predicate")
    if predicate is not None and not isinstance(predicate, dict):
        raise InTotoStatementError("$.predicate", f"expected an object, got {_kind(predicate)}")
    return Statement(statement_type, subjects, predicate_type)


def _subject(item: Any, path: str) -> Subject:
    if not isinstance(item, dict):
        raise InTotoStatementError(path, f"expected an object, got {_kind(item)}")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise InTotoStatementError(f"{path}.name", f"expected a string, got {_kind(name)}")
    raw = item.get("digest")
    if not isinstance(raw, dict):
        raise InTotoStatementError(f"{path}.digest", "missing: every subject needs a digest" if raw is None
                                   else f"expected an object, got {_kind(raw)}")
    if not raw:
        raise InTotoStatementError(f"{path}.digest", "empty: every subject needs at least one digest")
    digest: dict[str, str] = {}
    for algorithm, value in raw.items():
        where = f"{path}.digest.{algorithm}" if _plain_key(algorithm) else f"{path}.digest[{algorithm!r}]"
        if not isinstance(value, str):
            raise InTotoStatementError(where, f"expected a hex string, got {_kind(value)}")
        expected = _HEX_LENGTHS.get(algorithm.lower())
        if expected is not None and (len(value) != expected or not _HEX.fullmatch(value)):
            raise InTotoStatementError(
                where, f"{_short(value)} is not a {algorithm} digest ({expected} hex digits)")
        digest[algorithm.lower()] = value.lower() if expected is not None else value
    return Subject(name, MappingProxyType(digest))


def _plain_key(key: str) -> bool:
    return key.isidentifier()


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
