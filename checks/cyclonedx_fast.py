"""CycloneDX JSON schema validation that is not pathologically slow.

cyclonedx-python-lib 11 validates JSON with jsonschema's Draft 7 validator and
its default format checker. With the ``[validation]`` extra installed, the
``iri-reference`` format (used by every URL in a CycloneDX document) is checked
by ``rfc3987-syntax``, an Earley parser: milliseconds per URL, ~100 s for a
1.9 MB SBOM (FIELD-NOTES). This module builds the *library's own* validator
(same schema files, same reference registry, same Draft 7 rules) and swaps
only the ``iri`` / ``iri-reference`` format checks for a regex-based RFC 3986
checker (``rfc3986-validator``) that gives the same answer as the library's
parser on every string:

- The RFC 3987 grammar restricted to ASCII is the RFC 3986 grammar, so an
  ASCII string is checked with ``rfc3986-validator``'s regex (with a full
  match: its own ``$`` would also accept a trailing newline).
- A non-ASCII character that the library's grammar accepts (``ucschar``)
  is allowed in exactly the places ``~`` is, once IP literals are excluded,
  so it is replaced by ``~``; a character it accepts nowhere (astral plane,
  specials, controls) is replaced by a space, which is accepted nowhere.
- The library's grammar rejects some valid IPv6 literals (``[::1]``) and
  accepts ``iprivate`` characters in queries only: a string with ``[`` or an
  ``iprivate`` character is handed to the library's own parser, so the
  verdict stays identical (such URLs are rare, and results are cached).

``tests/unit/test_sbom.py`` proves the equivalence with hypothesis and on
every fixture document; ``bench/sbom.py`` measures the speed-up.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import rfc3986_validator
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator
from jsonschema import FormatChecker
from jsonschema.validators import Draft7Validator
from rfc3987_syntax import is_valid_syntax as _library_iri_syntax

__all__ = [
    "fast_json_validator",
    "iri_ok",
    "iri_reference_ok",
    "library_json_validator",
]

# Anchored with fullmatch rather than the module's own ``^…$`` (``$`` matches before a final "\n").
_URI = re.compile(rfc3986_validator.URI_RE, re.VERBOSE)
_URI_REFERENCE = re.compile(
    f"(?:{rfc3986_validator.URI_RE}|{rfc3986_validator.RELATIVE_REF_RE})", re.VERBOSE
)

# The character classes of rfc3987-syntax's grammar (syntax_rfc3987.lark), copied exactly:
# note they stop at U+FFEF: the grammar accepts no astral-plane character.
_UCSCHAR = re.compile("[\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]")
_IPRIVATE = re.compile("[\ue000-\uf8ff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
_CACHE_SIZE = 65536  # distinct URLs in one large SBOM; bounded so a hostile file cannot grow memory


def _ascii_equivalent(value: str) -> str | None:
    """The ASCII string with the same validity, or None when only the library's parser can tell."""
    if "[" in value or _IPRIVATE.search(value):
        return None
    if value.isascii():
        return value
    return _NON_ASCII.sub(lambda m: "~" if _UCSCHAR.fullmatch(m.group()) else " ", value)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def iri_reference_ok(value: str) -> bool:
    """Whether ``value`` is an ``iri-reference``, exactly as cyclonedx-python-lib's default decides."""
    ascii_value = _ascii_equivalent(value)
    if ascii_value is None:
        return bool(_library_iri_syntax("iri_reference", value))
    return _URI_REFERENCE.fullmatch(ascii_value) is not None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def iri_ok(value: str) -> bool:
    """Whether ``value`` is an absolute ``iri``, exactly as cyclonedx-python-lib's default decides."""
    ascii_value = _ascii_equivalent(value)
    if ascii_value is None:
        return bool(_library_iri_syntax("iri", value))
    return _URI.fullmatch(ascii_value) is not None


def _checks_iri_reference(instance: object) -> bool:
    # jsonschema's own checkers pass anything that is not a string (the type keyword judges it).
    return not isinstance(instance, str) or iri_reference_ok(instance)


def _checks_iri(instance: object) -> bool:
    return not isinstance(instance, str) or iri_ok(instance)


def _fast_format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checkers = dict(Draft7Validator.FORMAT_CHECKER.checkers)
    checker.checks("iri-reference", raises=ValueError)(_checks_iri_reference)
    checker.checks("iri", raises=ValueError)(_checks_iri)
    return checker


@functools.cache
def library_json_validator(version: SchemaVersion) -> Any:
    """cyclonedx-python-lib's own Draft 7 validator for ``version`` (the slow default).

    Raises ``NotImplementedError`` for versions without a JSON schema (1.0, 1.1).
    """
    # ``_validator`` is the library's lazily built Draft7Validator (schema + reference registry).
    # Reusing it, rather than rebuilding from the schema files, keeps "same rules" true by
    # construction; the dependency is pinned below 12 and the fixture tests fail if it moves.
    return make_schemabased_validator(OutputFormat.JSON, version)._validator


@functools.cache
def fast_json_validator(version: SchemaVersion) -> Any:
    """The library's validator for ``version`` with the regex IRI checks: same verdicts, fast.

    Use ``.iter_errors(document)`` on the parsed JSON; errors come in the same
    order as the library's. Raises ``NotImplementedError`` like
    :func:`library_json_validator`.
    """
    return library_json_validator(version).evolve(format_checker=_fast_format_checker())
