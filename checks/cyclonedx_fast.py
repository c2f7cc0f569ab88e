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

Two keywords of that validator are also replaced, with the same semantics, because
jsonschema's implementations cost more than linear time on large documents:

- ``uniqueItems``: jsonschema sorts the array when Python can, and otherwise compares
  every pair (``_utils.uniq``): an array of objects (``components``,
  ``dependencies``, ``services``) costs n²/2 deep comparisons: 35 s for 5,000
  components, 131 s for 10,000. :func:`unique_items_ok` keeps the sorting path
  exactly as jsonschema runs it (it is n log n, and its answer has quirks worth
  keeping identical) and replaces only the pairwise path with a set of canonical
  keys: two values have the same key exactly when jsonschema's ``equal`` calls them
  equal (1 == 1.0, ``true`` != 1, key order irrelevant), so one pass finds a repeat.
- ``enum`` on a string: jsonschema calls ``equal`` against each member in Python
  (the SPDX licence id list has ~700); for a string instance ``equal`` is plain
  ``==``, so list membership in C gives the same answer.

The validator class keeps itself when a referenced schema (``spdx.schema.json``,
``jsf-0.82.schema.json``) declares ``$schema`` draft-07, where jsonschema would switch
back to ``Draft7Validator``: same draft, same rules, and the fast keywords stay on.
Error messages, paths and order are jsonschema's own: the keyword functions run
in the same place of the same schema walk.

``tests/unit/test_sbom.py`` and ``tests/unit/test_cyclonedx_fast.py`` prove the
equivalence with hypothesis and on every fixture document; ``bench/sbom.py``
measures the speed-up and the scaling.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import rfc3986_validator
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator
from jsonschema import FormatChecker, ValidationError
from jsonschema import _keywords as jsonschema_keywords
from jsonschema import _utils as jsonschema_utils
from jsonschema.validators import Draft7Validator, extend, validator_for
from rfc3987_syntax import is_valid_syntax as _library_iri_syntax

__all__ = [
    "fast_json_validator",
    "iri_ok",
    "iri_reference_ok",
    "library_json_validator",
    "unique_items_ok",
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


# ---------------------------------------------------------------------------- uniqueItems and enum


class _Unkeyable(Exception):
    """A value that is not plain JSON (never produced by a JSON parser): compare it pairwise."""


def _canonical(value: object) -> Hashable:
    """A key equal for two values exactly when jsonschema's ``_utils.equal`` says they are equal.

    ``equal`` compares strings with ``==``, sequences item by item, mappings by keys and
    values, and everything else with ``==`` after turning ``True``/``False`` into markers
    of their own (so ``true`` is not ``1``, at any depth). Numbers keep their value in
    the key: Python's ``1 == 1.0`` and ``hash(1) == hash(1.0)`` are JSON's equality.
    """
    if isinstance(value, str):
        return ("s", value)
    if value is True or value is False:
        return ("b", value)
    if value is None:
        return ("z",)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, list | tuple):
        return ("l", tuple(_canonical(item) for item in value))
    if isinstance(value, Mapping):
        return ("d", frozenset((key, _canonical(item)) for key, item in value.items()))
    raise _Unkeyable(type(value).__name__)


def _sorted_path(container: list[Any]) -> bool:
    """jsonschema's own first attempt, verbatim: sort, compare neighbours. Raises TypeError when
    the items do not sort (objects, mixed types): jsonschema then compares every pair."""
    ordered = sorted(jsonschema_utils.unbool(item) for item in container)
    return all(not jsonschema_utils.equal(a, b) for a, b in itertools.pairwise(ordered))


def unique_items_ok(container: list[Any]) -> bool:
    """Whether ``container`` passes ``uniqueItems``, as jsonschema 4's ``_utils.uniq`` decides, in
    O(n log n) rather than O(n²).

    The sorting path is jsonschema's (it can miss a repeat that Python's ordering does not place
    next to its twin, e.g. ``[[true], [1], [true]]``: kept, so verdicts stay identical); the
    pairwise path becomes one pass over canonical keys, which finds a repeat exactly when some
    pair is ``equal``.
    """
    try:
        return _sorted_path(container)
    except (NotImplementedError, TypeError):
        pass
    seen: set[Hashable] = set()
    try:
        for item in container:
            key = _canonical(item)
            if key in seen:
                return False
            seen.add(key)
    except (_Unkeyable, TypeError):
        return bool(jsonschema_utils.uniq(container))  # not plain JSON: jsonschema's own loop
    return True


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # The same condition and message as jsonschema._keywords.uniqueItems.
    if unique and validator.is_type(instance, "array") and not unique_items_ok(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


def _enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if isinstance(instance, str) and isinstance(enums, list):
        # equal(each, a_string) is each == a_string (identity first): what list membership does.
        if instance not in enums:
            yield ValidationError(f"{instance!r} is not one of {enums!r}")
        return
    yield from jsonschema_keywords.enum(validator, enums, instance, schema)


_FastDraft7: Any = extend(Draft7Validator, {"uniqueItems": _unique_items, "enum": _enum})


def _evolve_keeping_class(self: Any, **changes: Any) -> Any:
    """jsonschema's ``evolve``, except that a draft-07 ``$schema`` keeps this class.

    jsonschema picks the class of a referenced schema from its ``$schema``
    (``validator_for``): ``Draft7Validator`` for every file the library ships, which
    would put the quadratic ``uniqueItems`` back below the first external ``$ref``.
    Any other draft still gets its own class, as in jsonschema.
    """
    cls = type(self)
    schema = changes.setdefault("schema", self.schema)
    chosen = validator_for(schema, default=cls)
    new_class = cls if chosen is Draft7Validator else chosen
    for attribute in new_class.__attrs_attrs__:
        if attribute.init and attribute.alias not in changes:
            changes[attribute.alias] = getattr(self, attribute.name)
    return new_class(**changes)


_FastDraft7.evolve = _evolve_keeping_class


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
    """The library's validator for ``version`` with the regex IRI checks and the linear
    ``uniqueItems`` / ``enum``: same verdicts, fast.

    Same schema, same reference registry; use ``.iter_errors(document)`` on the parsed
    JSON; errors come in the same order as the library's. Raises ``NotImplementedError``
    like :func:`library_json_validator`.
    """
    library = library_json_validator(version)
    return _FastDraft7(library.schema, registry=library._registry, format_checker=_fast_format_checker())
