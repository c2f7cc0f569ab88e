"""``sbom.licenses``: no component is licensed only under a denied licence (SPDX expressions)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from checks.verdict import Verdict

from .base import SbomDocument, listing
from .loading import loaded


class _ExpressionUnreadable(Exception):
    pass


@functools.cache
def _licensing() -> Any:
    from license_expression import Licensing

    # Built once: a Licensing() per expression cost more than parsing it. It has no symbols of its
    # own (validate=False, strict=False below), so one instance parses every expression alike.
    return Licensing()


# The same expressions recur across thousands of components ("MIT OR Apache-2.0"): decided once.
@functools.lru_cache(maxsize=16_384)
def _denied_in(expression: str, denied: frozenset[str]) -> bool:
    """Whether every way of satisfying the SPDX expression uses a denied licence."""
    from license_expression import ExpressionError, LicenseSymbol, LicenseWithExceptionSymbol

    licensing = _licensing()
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
    document = loaded(check_id, sbom)
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
                              f"licence: {listing(names)}", measured=len(hits), expected=expected,
                              evidence=evidence)
    if unreadable:
        names = [f"{u['name']} ({u['expression']!r})" for u in unreadable]
        return Verdict.error(check_id, f"cannot parse the licence expression of {len(unreadable)} components "
                             f"in {document.path.name}: {listing(names)}", evidence=evidence)
    return Verdict.passed(check_id, f"no denied licence among {len(document.components)} components "
                          f"in {document.path.name}", measured=0, expected=expected, evidence=evidence)
