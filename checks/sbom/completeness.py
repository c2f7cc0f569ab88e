"""``sbom.components_complete``: every component carries the fields the policy requires."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checks.verdict import Verdict

from .base import Component, SbomDocument, listing
from .loading import loaded

KNOWN_FIELDS = frozenset({"name", "version", "purl", "hashes", "licenses", "bom-ref"})


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
            offenders.append({**component.evidence(), "problems": reasons})
    evidence["incomplete"] = offenders
    total = len(document.components)
    if offenders:
        names = [f"{o['name']} ({'; '.join(o['problems'])})" for o in offenders]
        return Verdict.failed(
            check_id, f"{len(offenders)} of {total} components in {document.path.name} are incomplete: "
            f"{listing(names)}", measured=total - len(offenders), expected=expected, evidence=evidence)
    return Verdict.passed(check_id, f"all {total} components in {document.path.name} have "
                          f"{', '.join(required)}", measured=total, expected=expected, evidence=evidence)


def components_have_versions_and_purls(sbom: Path | SbomDocument) -> Verdict:
    """``sbom.components_complete``: every component has a version and a purl that parses."""
    return components_have_fields(sbom, ("version", "purl"))

