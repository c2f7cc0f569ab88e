"""``sbom.components_complete``: every component carries what its kind carries; every service too.

What a component must carry depends on what it is (CycloneDX 1.6/1.7 ``component.type``).
The schema itself requires only ``type`` and ``name`` of every component; drillbook adds
what identifies each kind:

============================================  ==========================  ===========================
type                                          required                    why
============================================  ==========================  ===========================
library, framework, application, container,   version, purl               a package: advisories and
operating-system, firmware, device-driver                                 licences are found by purl
cryptographic-asset                           cryptoProperties            what a CBOM says about it
data                                          data                        its data descriptions
file                                          hashes                      a file is known by content
platform, device, machine-learning-model      name                        no purl by nature; the spec
(and a type drillbook does not know)                                      has no identity field for
                                                                          them beyond the name
(no type: an unvalidated document)            version, purl               treated as a package
============================================  ==========================  ===========================

A policy replaces the rule of a type (``by_type``) and can require fields of every
component whatever its type (``required``). Services (what a SaaSBOM lists, with no
components at all) need a name, an endpoint or an external reference, and complete
data flows (a flow direction and a classification) where they declare any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from checks.verdict import Verdict

from .base import Component, SbomDocument, Service, listing
from .loading import loaded

# Fields with a meaning of their own here (a purl must parse); the original public set.
KNOWN_FIELDS = frozenset({"name", "version", "purl", "hashes", "licenses", "bom-ref"})
# Every field of a CycloneDX 1.7 component (a superset of 1.2-1.6): any can be required,
# and is satisfied when the component carries it with a non-empty value.
COMPONENT_FIELDS = frozenset({
    "author", "authors", "bom-ref", "components", "copyright", "cpe", "cryptoProperties", "data",
    "description", "evidence", "externalReferences", "group", "hashes", "isExternal", "licenses",
    "manufacturer", "mime-type", "modelCard", "modified", "name", "omniborId", "patentAssertions",
    "pedigree", "properties", "publisher", "purl", "releaseNotes", "scope", "signature", "supplier",
    "swhid", "swid", "tags", "type", "version", "versionRange",
})
ALL_FIELDS = KNOWN_FIELDS | COMPONENT_FIELDS

PACKAGE_TYPES = ("library", "framework", "application", "container", "operating-system", "firmware",
                 "device-driver")
COMPONENT_TYPES = (*PACKAGE_TYPES, "platform", "device", "file", "machine-learning-model", "data",
                   "cryptographic-asset")
TYPE_RULES: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(PACKAGE_TYPES, ("version", "purl")),
    "cryptographic-asset": ("cryptoProperties",),
    "data": ("data",),
    "file": ("hashes",),
    "platform": ("name",),
    "device": ("name",),
    "machine-learning-model": ("name",),
}
_UNTYPED = "(no type)"
_OTHER_RULE = ("name",)  # a type this drillbook does not know (a later spec): not held to a purl


def parse_rules(value: Any) -> dict[str, tuple[str, ...]]:
    """Validate a policy's ``required_fields_by_type`` table: ``{type: [field, …]}``.

    Raises ``ValueError`` naming the offending type or field and what is allowed.
    """
    if not isinstance(value, Mapping):
        raise ValueError('must be a table of component type = [fields], e.g. library = ["version", "purl"]')
    rules: dict[str, tuple[str, ...]] = {}
    for kind, fields in value.items():
        if kind not in COMPONENT_TYPES:
            raise ValueError(f"unknown component type {kind!r} (known: {', '.join(COMPONENT_TYPES)})")
        if not isinstance(fields, list) or not all(isinstance(f, str) and f.strip() for f in fields):
            raise ValueError(f"{kind} must be a list of field names, e.g. [\"version\", \"purl\"]")
        bad = sorted({f.strip() for f in fields} - ALL_FIELDS)
        if bad:
            raise ValueError(f"{kind}: unknown field {bad[0]!r} (a CycloneDX component field: "
                             f"{', '.join(sorted(ALL_FIELDS))})")
        rules[kind] = tuple(dict.fromkeys(f.strip() for f in fields))
    return rules


def _at(component: Component | Service, field_name: str) -> str:
    """Where the missing field belongs: its JSON path, or the component's line."""
    if component.path.startswith("$"):
        return f" at {component.path}.{field_name}"
    return f" (component at {component.path})" if component.path else ""


def _lacks(component: Component, field_name: str) -> str | None:
    """Why the component does not satisfy a required field, or None."""
    where = _at(component, field_name)
    if field_name == "name":
        return f"no name{where}" if component.name in ("", "?") else None
    if field_name == "version":
        return None if component.version else f"no version{where}"
    if field_name == "purl":
        if not component.purl:
            return f"no purl{where}"
        from checks.purls import parse_purl

        try:
            parse_purl(component.purl)
        except ValueError as exc:
            return f"invalid purl {component.purl[:80]!r}{where} ({exc})"
        return None
    if field_name == "hashes":
        return None if component.hashes else f"no hashes{where}"
    if field_name == "licenses":
        return None if component.licenses else f"no licence{where}"
    if field_name == "bom-ref":
        return None if component.bom_ref else f"no bom-ref{where}"
    if field_name in COMPONENT_FIELDS:
        return None if field_name in component.present else f"no {field_name}{where}"
    raise ValueError(f"unknown component field {field_name!r}; known: {', '.join(sorted(ALL_FIELDS))}")


def _check_fields(required: Sequence[str]) -> None:
    unknown = sorted(set(required) - ALL_FIELDS)
    if unknown:
        raise ValueError(f"unknown component field(s) {unknown}; known: {', '.join(sorted(ALL_FIELDS))}")


def components_have_fields(sbom: Path | SbomDocument, required: Sequence[str]) -> Verdict:
    """``sbom.components_complete``: every component, whatever its type, has each ``required`` field.

    A purl must also parse. An SBOM without components fails: it describes nothing.
    Raises ``ValueError`` for a field name not in :data:`ALL_FIELDS` (a usage error).
    For the check by component type, see :func:`components_complete`.
    """
    check_id = "sbom.components_complete"
    _check_fields(required)
    document = loaded(check_id, sbom)
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
            offenders.append({**component.evidence(), "at": component.path, "problems": reasons})
    evidence["incomplete"] = offenders
    total = len(document.components)
    if offenders:
        names = [f"{o['name']} ({'; '.join(o['problems'])})" for o in offenders]
        return Verdict.failed(
            check_id, f"{len(offenders)} of {total} components in {document.path.name} are incomplete: "
            f"{listing(names)}", measured=total - len(offenders), expected=expected, evidence=evidence)
    return Verdict.passed(check_id, f"all {total} components in {document.path.name} have "
                          f"{', '.join(required)}", measured=total, expected=expected, evidence=evidence)


def rule_for(kind: str | None, by_type: Mapping[str, Sequence[str]] | None = None,
             required: Sequence[str] = ()) -> tuple[str, ...]:
    """The fields a component of this type must carry: the policy's rule, else the built-in one."""
    if kind is None:  # an unvalidated document: held to what a library is
        base: Sequence[str] = (by_type or {}).get("library", TYPE_RULES["library"])
    elif by_type is not None and kind in by_type:
        base = by_type[kind]
    else:
        base = TYPE_RULES.get(kind, _OTHER_RULE)
    return tuple(dict.fromkeys([*base, *required]))


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


def _service_problems(service: Service) -> list[str]:
    problems: list[str] = []
    if service.name in ("", "?"):
        problems.append(f"no name{_at(service, 'name')}")
    if not service.endpoints and not service.external_references:
        problems.append(f"no endpoints or externalReferences{_at(service, 'endpoints')}")
    problems.extend(f"data flow without flow or classification at {where}"
                    for where in service.incomplete_flows)
    return problems


def components_complete(sbom: Path | SbomDocument, *, required: Sequence[str] = (),
                        by_type: Mapping[str, Sequence[str]] | None = None) -> Verdict:
    """``sbom.components_complete`` by what each component is (see the module's table).

    ``by_type`` replaces the built-in rule of a type; ``required`` is asked of every component
    on top. Services are checked too; a document with services and no components (a SaaSBOM)
    passes on its services. A document with neither fails. The message says which rule applied
    to how many components of which type. Raises ``ValueError`` for an unknown field name.
    """
    check_id = "sbom.components_complete"
    _check_fields(required)
    for fields in (by_type or {}).values():
        _check_fields(fields)
    document = loaded(check_id, sbom)
    if isinstance(document, Verdict):
        return document
    name = document.path.name
    groups: dict[str, dict[str, Any]] = {}  # type -> {"fields": …, "checked": n, "incomplete": n}
    offenders: list[dict[str, Any]] = []
    for component in document.components:
        kind = component.type or _UNTYPED
        fields = rule_for(component.type, by_type, required)
        group = groups.setdefault(kind, {"fields": list(fields), "checked": 0, "incomplete": 0})
        group["checked"] += 1
        reasons = [r for r in (_lacks(component, f) for f in fields) if r]
        if reasons:
            group["incomplete"] += 1
            offenders.append({**component.evidence(), "type": kind, "at": component.path,
                              "problems": reasons})
    service_offenders: list[dict[str, Any]] = []
    for service in document.services:
        reasons = _service_problems(service)
        if reasons:
            service_offenders.append({"name": service.label, "at": service.path, "problems": reasons})
    ordered = sorted(groups.items(), key=lambda kv: -int(kv[1]["checked"]))
    rules = [f"{g['checked']} {kind} {_plural(g['checked'], 'component')} checked for "
             f"{'+'.join(g['fields']) or 'nothing'}" for kind, g in ordered]
    if document.services:
        flows = sum(s.data_flows for s in document.services)
        rules.append(f"{len(document.services)} {_plural(len(document.services), 'service')} checked for "
                     "name+endpoints-or-reference" + (f" and {flows} data flows" if flows else ""))
    total = len(document.components) + len(document.services)
    evidence: dict[str, Any] = {
        **document.evidence(), "services": len(document.services), "reader": document.reader,
        "rules": {kind: g["fields"] for kind, g in groups.items()}, "by_type": groups,
        "incomplete": offenders, "incomplete_services": service_offenders,
    }
    expected = "every component has what its type carries; every service a name and an endpoint"
    if total == 0:
        return Verdict.failed(check_id, f"{name} lists no components and no services",
                              measured=0, expected=expected, evidence=evidence)
    summary = "; ".join(rules)
    if offenders or service_offenders:
        names = [f"{o['name']} [{o['type']}] ({'; '.join(o['problems'])})" for o in offenders]
        names += [f"service {o['name']} ({'; '.join(o['problems'])})" for o in service_offenders]
        bad = len(offenders) + len(service_offenders)
        return Verdict.failed(
            check_id, f"{bad} of {total} entries in {name} are incomplete: {listing(names)} ({summary})",
            measured=total - bad, expected=expected, evidence=evidence)
    return Verdict.passed(check_id, f"all {total} entries in {name} are complete: {summary}",
                          measured=total, expected=expected, evidence=evidence)


def components_have_versions_and_purls(sbom: Path | SbomDocument) -> Verdict:
    """``sbom.components_complete`` by type: packages have a version and a purl that parses;
    cryptographic assets, data, files and the rest carry what their kind carries instead
    (see :func:`components_complete`)."""
    return components_complete(sbom)
