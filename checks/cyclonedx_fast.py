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

The per-node cost is cut too: jsonschema builds a validator object at every node and resolves
every ``$ref`` anew; here each is built once per (subschema, base URI), and subschemas are compiled
into exact "no error here" predicates (:mod:`checks.cyclonedx_compiled`) so that jsonschema walks
only the subtrees that hold an error. 100,000 components validate in seconds, not minutes.

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

import referencing.exceptions
import rfc3986_validator
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator
from jsonschema import FormatChecker, ValidationError
from jsonschema import _keywords as jsonschema_keywords
from jsonschema import _utils as jsonschema_utils
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.validators import Draft7Validator, extend, validator_for
from rfc3987_syntax import is_valid_syntax as _library_iri_syntax

from checks import cyclonedx_compiled

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
    of their own (so ``true`` is not ``1``, at any depth). A string, a number and ``null``
    are their own key (a string equals no number, and Python's ``1 == 1.0`` with
    ``hash(1) == hash(1.0)`` is JSON's equality); booleans, arrays and objects get tagged
    tuples, which equal no string, number or ``null``. The exact types a JSON parser
    produces are tested first (this runs once per node of a 100k-component array).
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or value is None:
        return value
    if kind is dict:
        return ("d", frozenset([(key, _canonical(item)) for key, item in value.items()]))  # type: ignore[attr-defined]
    if kind is list:
        return ("l", tuple([_canonical(item) for item in value]))  # type: ignore[attr-defined]
    if value is True or value is False:
        return ("b", value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int | float):
        return float(value) if isinstance(value, float) else int(value)
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


def _evolve_uncached(self: Any, **changes: Any) -> Any:
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


# ---------------------------------------------------------------------------- per-node overhead

# jsonschema builds a new validator object at every node it descends into (``evolve``: attrs
# __init__, the keyword list of the subschema, a class lookup from ``$schema``) and resolves every
# ``$ref`` from scratch (``referencing`` lookups: URL joins, JSON-pointer walks, new resolvers):
# ~0.7 ms per component, 60 % of a large document's validation. Both depend only on the subschema
# and the resolver's base URI here, so both are computed once and reused:
# - an evolved validator is a function of its class, schema, resolver, registry and format checker.
#   Of the resolver, only the base URI decides anything in draft-07: its registry is a cache of
#   the same fixed resources (a later lookup in it finds what a fresh one would), and its dynamic
#   scope (``previous``) is read only by ``$recursiveRef`` / ``$dynamicRef``, which draft-07 does
#   not have. So the key is (class, subschema, base URI, registry, format checker); a validator of
#   another draft (a referenced schema declaring one) is never cached.
# - a resolved ``$ref`` is a function of (registry, base URI, reference).
# Keys use id(); each cached value holds the schema, registry and format checker it was built for,
# so no id is reused while its entry exists. Entries are bounded by the schema's size (a few
# thousand subschemas), not the document's; the cap guards against a pathological schema.
_CACHE_CAP = 100_000
_EVOLVED: dict[tuple[Any, ...], Any] = {}
_RESOLVED: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _evolve_keeping_class(self: Any, **changes: Any) -> Any:
    """:func:`_evolve_uncached`, reused for every node with the same subschema and base URI."""
    if self._ref_resolver is not None or not set(changes) <= {"schema", "_resolver"}:
        return _evolve_uncached(self, **changes)
    schema = changes.get("schema", self.schema)
    resolver = changes.get("_resolver", self._resolver)
    key = (type(self), id(schema), resolver._base_uri, id(self._registry), id(self.format_checker))
    cached = _EVOLVED.get(key)
    if cached is not None:
        return cached
    evolved = _evolve_uncached(self, **changes)
    if isinstance(evolved, _FastDraft7) and len(_EVOLVED) < _CACHE_CAP:
        _EVOLVED[key] = evolved
    return evolved


def _validate_reference_cached(self: Any, ref: str, instance: Any) -> Any:
    """jsonschema's ``_validate_reference`` (registry branch) with each lookup done once."""
    if self._ref_resolver is not None:  # the deprecated RefResolver: jsonschema's own code
        return _DRAFT7_VALIDATE_REFERENCE(self, ref, instance)
    key = (id(self._registry), self._resolver._base_uri, ref)
    found = _RESOLVED.get(key)
    if found is None:
        try:
            resolved = self._resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as err:
            raise jsonschema_exceptions._WrappedReferencingError(err) from err
        found = (resolved, self._registry)
        if len(_RESOLVED) < _CACHE_CAP:
            _RESOLVED[key] = found
    resolved = found[0]
    return self.descend(instance, resolved.contents, resolver=resolved.resolver)


_DRAFT7_VALIDATE_REFERENCE = Draft7Validator._validate_reference
_FastDraft7.evolve = _evolve_keeping_class
_FastDraft7._validate_reference = _validate_reference_cached
# Subtrees the compiled predicates pass are not walked (checks/cyclonedx_compiled.py).
cyclonedx_compiled.install(_FastDraft7, {"uniqueItems": _unique_items, "enum": _enum}, unique_items_ok)


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
