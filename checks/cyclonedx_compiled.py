"""Exact validity predicates compiled from draft-07 subschemas, for checks.cyclonedx_fast.

Even with checks.cyclonedx_fast's caches (one validator per subschema, one lookup per ``$ref``),
jsonschema runs ~30 generator frames and error-setting wrappers per
component of a valid document. Each (subschema, base URI) is therefore also compiled, once, into a
plain predicate "jsonschema would report no error here", built from the same keyword semantics
(the same type checker, format checker, ``equal``, ``re.search``, ``find_additional_properties``,
the same subschema contexts: ``descend`` where jsonschema descends, ``evolve`` where it evolves).
``descend`` asks the predicate first: a subtree it passes yields no error, exactly as jsonschema's
walk would; any other subtree is walked by jsonschema itself, so every error, its message, path
and order are jsonschema's. A keyword this compiler does not know, or an implementation other
than jsonschema's draft-07 one (or this module's), makes the subschema uncompiled: always walked.
tests/unit/test_cyclonedx_fast.py checks the predicate against the library's validator.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import referencing.jsonschema
from jsonschema import ValidationError
from jsonschema import _types as jsonschema_types
from jsonschema import _utils as jsonschema_utils
from jsonschema.validators import Draft7Validator

__all__ = ["install"]


class _Uncompilable(Exception):
    """A subschema the compiler does not mirror: jsonschema walks it."""


# id(evolved validator) -> (predicate or None, that validator: keeps the id from being reused).
# Predicates either answer exactly or raise; descend then lets jsonschema walk.
_COMPILED: dict[int, tuple[Any, Any]] = {}
_DRAFT7 = referencing.jsonschema.DRAFT7

def _always(instance: Any) -> bool:
    return True


def _never(instance: Any) -> bool:
    return False


def _uncompiled(instance: Any) -> bool:
    # A predicate never answers for a subschema it does not mirror (a False inside "not" or
    # "oneOf" would be a wrong True): it raises, and descend lets jsonschema walk the subtree.
    raise _Uncompilable("uncompiled subschema")


def _predicate(validator: Any) -> Any:
    """The compiled predicate of an evolved validator (its schema, its resolver), or None."""
    entry = _COMPILED.get(id(validator))
    if entry is not None:
        return entry[0]
    cell: list[Any] = []
    _COMPILED[id(validator)] = (lambda instance: cell[0](instance), validator)  # recursive $refs
    try:
        compiled = _compile(validator)
    except Exception:  # noqa: BLE001 - _Uncompilable, an unresolvable $ref, a malformed schema:
        compiled = None  # jsonschema walks it and reports (or raises) as it always does
    cell.append(compiled if compiled is not None else _uncompiled)
    _COMPILED[id(validator)] = (compiled, validator)
    return compiled


def _sub(validator: Any, schema: Any, *, descend: bool) -> Any:
    """The predicate of a subschema in the context jsonschema gives it (descend or evolve)."""
    if schema is True or schema is False:  # descend decides these before any resolver is built
        return _always if schema else _never
    if descend:
        resolver = validator._resolver.in_subresource(_DRAFT7.create_resource(schema))
        child = validator.evolve(schema=schema, _resolver=resolver)
    else:
        child = validator.evolve(schema=schema)
    if not isinstance(child, _FAST_CLASS):
        raise _Uncompilable("another draft")
    found = _predicate(child)
    if found is None:
        raise _Uncompilable("uncompiled subschema")
    return found


def _compile(validator: Any) -> Any:
    schema = validator.schema
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise _Uncompilable("not a schema")
    type_checker = validator.TYPE_CHECKER
    is_type = type_checker.is_type
    own = getattr(type_checker, "_type_checkers", {})
    if any(own.get(name) is not fn for name, fn in _ISINSTANCE_TYPES.items()):
        raise _Uncompilable("another type checker")  # the inline isinstance tests below are draft-07's
    keywords = {k: v for _fn, k, v in validator._validators}
    for fn, k, _v in validator._validators:
        if _EXPECTED.get(k) is not fn:
            raise _Uncompilable(k)
    checks: list[Any] = []
    for k, v in keywords.items():
        if k == "$ref":
            resolved = validator._resolver.lookup(v)
            target = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            if not isinstance(target, _FAST_CLASS):
                raise _Uncompilable("another draft")
            entry_id = id(target)

            def ref_check(instance: Any, entry_id: int = entry_id, target: Any = target) -> bool:
                found = _COMPILED.get(entry_id)
                predicate = found[0] if found is not None else _predicate(target)
                return (predicate or _uncompiled)(instance)
            _predicate(target)
            if _COMPILED[entry_id][0] is None:
                raise _Uncompilable("$ref to an uncompiled schema")
            checks.append(ref_check)
        elif k == "type":
            types = [v] if isinstance(v, str) else list(v)
            tests = []
            for name in types:
                if not isinstance(name, str) or name not in own:
                    raise _Uncompilable(f"type {name!r}")  # jsonschema raises UnknownType: let it
                tests.append((own[name], type_checker))
            if len(tests) == 1:
                checks.append(lambda i, f=tests[0][0], c=type_checker: f(c, i))
            else:
                checks.append(lambda i, ts=tests: any(f(c, i) for f, c in ts))
        elif k == "properties":
            subs = [(name, _sub(validator, sub, descend=True)) for name, sub in v.items()]
            checks.append(lambda i, subs=subs: not isinstance(i, dict)
                          or all(p(i[name]) for name, p in subs if name in i))
        elif k == "required":
            checks.append(lambda i, req=list(v): not isinstance(i, dict) or all(r in i for r in req))
        elif k == "additionalProperties":
            if is_type(v, "object"):
                extra = _sub(validator, v, descend=True)
                checks.append(lambda i, p=extra, s=schema: not isinstance(i, dict) or all(
                    p(i[e]) for e in set(jsonschema_utils.find_additional_properties(i, s))))
            elif not v:
                checks.append(lambda i, s=schema: not isinstance(i, dict)
                              or not any(True for _ in jsonschema_utils.find_additional_properties(i, s)))
        elif k == "items":
            if is_type(v, "array"):
                subs_list = [_sub(validator, sub, descend=True) for sub in v]
                checks.append(lambda i, ps=subs_list: not isinstance(i, list)
                              or all(p(item) for item, p in zip(i, ps, strict=False)))
            else:
                each = _sub(validator, v, descend=True)
                checks.append(lambda i, p=each: not isinstance(i, list) or all(p(item) for item in i))
        elif k == "additionalItems":
            if not is_type(schema.get("items", {}), "object"):
                if is_type(v, "object"):
                    more = _sub(validator, v, descend=True)
                    checks.append(lambda i, p=more, s=schema: not isinstance(i, list) or all(
                        p(item) for item in i[len(s.get("items", [])):]))
                elif not v:
                    checks.append(lambda i, s=schema: not isinstance(i, list)
                                  or len(i) <= len(s.get("items", [])))
        elif k == "enum":
            checks.append(lambda i, e=v: (i in e) if isinstance(i, str) and isinstance(e, list)
                          else any(jsonschema_utils.equal(m, i) for m in e))
        elif k == "const":
            checks.append(lambda i, c=v: jsonschema_utils.equal(i, c))
        elif k == "format":
            checker = validator.format_checker
            if checker is not None:
                checks.append(lambda i, f=v, c=checker: c.conforms(i, f))
        elif k == "pattern":
            checks.append(lambda i, pat=v: not isinstance(i, str) or re.search(pat, i) is not None)
        elif k == "minLength":
            checks.append(lambda i, n=v: not isinstance(i, str) or len(i) >= n)
        elif k == "maxLength":
            checks.append(lambda i, n=v: not isinstance(i, str) or len(i) <= n)
        elif k == "minimum":
            checks.append(lambda i, n=v: not is_type(i, "number") or not i < n)
        elif k == "maximum":
            checks.append(lambda i, n=v: not is_type(i, "number") or not i > n)
        elif k == "minItems":
            checks.append(lambda i, n=v: not (isinstance(i, list) and len(i) < n))
        elif k == "maxItems":
            checks.append(lambda i, n=v: not (isinstance(i, list) and len(i) > n))
        elif k == "uniqueItems":
            checks.append(lambda i, u=v: not (u and isinstance(i, list) and not _UNIQUE_ITEMS_OK[0](i)))
        elif k == "allOf":
            subs_all = [_sub(validator, sub, descend=True) for sub in v]
            checks.append(lambda i, ps=subs_all: all(p(i) for p in ps))
        elif k == "anyOf":
            subs_any = [_sub(validator, sub, descend=True) for sub in v]
            checks.append(lambda i, ps=subs_any: any(p(i) for p in ps))
        elif k == "oneOf":
            first = [_sub(validator, sub, descend=True) for sub in v]
            rest = [_sub(validator, sub, descend=False) for sub in v]

            def one_of(i: Any, first: list[Any] = first, rest: list[Any] = rest) -> bool:
                for index, p in enumerate(first):
                    if p(i):
                        return not any(q(i) for q in rest[index + 1:])
                return False
            checks.append(one_of)
        elif k == "not":
            negated = _sub(validator, v, descend=False)
            checks.append(lambda i, p=negated: not p(i))
        elif k == "if":
            condition = _sub(validator, v, descend=False)
            then = _sub(validator, schema["then"], descend=True) if "then" in schema else _always
            else_ = _sub(validator, schema["else"], descend=True) if "else" in schema else _always
            checks.append(lambda i, c=condition, t=then, e=else_: t(i) if c(i) else e(i))
        else:  # contains, dependencies, multipleOf, patternProperties, ...: not in CycloneDX schemas
            raise _Uncompilable(k)
    if len(checks) == 1:
        return checks[0]
    return lambda instance, checks=tuple(checks): all(check(instance) for check in checks)


def _descend_checked(self: Any, instance: Any, schema: Any, path: Any = None, schema_path: Any = None,
                     resolver: Any = None) -> Iterator[ValidationError]:
    """jsonschema's ``descend``, skipping a subtree the compiled predicate passes (no error there)."""
    if isinstance(instance, dict | list) and isinstance(schema, dict) and self._ref_resolver is None:
        if resolver is None:
            resolver = self._resolver.in_subresource(_DRAFT7.create_resource(schema))
        evolved = self.evolve(schema=schema, _resolver=resolver)
        if isinstance(evolved, _FAST_CLASS):
            predicate = _predicate(evolved)
            try:
                if predicate is not None and predicate(instance):
                    return
            except Exception:  # noqa: BLE001, S110 - jsonschema's walk below raises it the same way
                pass
    yield from _DRAFT7_DESCEND(self, instance, schema, path=path, schema_path=schema_path,
                               resolver=resolver)


_DRAFT7_DESCEND = Draft7Validator.descend
_ISINSTANCE_TYPES = {"object": jsonschema_types.is_object, "array": jsonschema_types.is_array,
                     "string": jsonschema_types.is_string}
_FAST_CLASS: Any = type(None)  # set by install(); nothing is an instance until then
_EXPECTED: dict[str, Any] = {}
_UNIQUE_ITEMS_OK: list[Any] = []


def install(cls: Any, keywords: dict[str, Any], unique_items_ok: Any) -> None:
    """Make ``cls`` (a draft-07 validator class extended with ``keywords``, whose ``uniqueItems``
    decides as ``unique_items_ok``) skip the subtrees its compiled predicates pass."""
    global _FAST_CLASS
    _FAST_CLASS = cls
    _EXPECTED.clear()
    _EXPECTED.update(dict(Draft7Validator.VALIDATORS) | keywords)
    _UNIQUE_ITEMS_OK[:] = [unique_items_ok]
    cls.descend = _descend_checked
