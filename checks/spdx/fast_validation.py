"""spdx-tools' ``validate_full_spdx_document`` in linear time, with the same messages in the same order.

Why: spdx-tools 0.8.3 checks every referenced SPDXID by rebuilding the list of all
the document's ids (``get_list_of_all_spdx_ids``, through beartype-checked property
getters) and searching it, once per relationship end and annotation; and for each
package with ``filesAnalyzed: false`` it scans all relationships and rebuilds the
id lists again. That is quadratic: a 2 MB syft-style document (1,000 packages,
1,000 files, 2,000 relationships) takes ~10-20 s, 94 % of it in
``get_contained_spdx_element_ids`` (profiled; FIELD-NOTES.md).

This module calls the library's own per-element validators wherever they do not
look the document up, and replaces only the look-ups with sets and indexes built
once. The result is compared message for message with the library's in the tests
and in ``bench/sbom.py``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from spdx_tools.spdx.model.document import Document
from spdx_tools.spdx.model.file import File
from spdx_tools.spdx.model.package import Package
from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
from spdx_tools.spdx.model.relationship_filters import filter_by_type_and_origin, filter_by_type_and_target
from spdx_tools.spdx.model.snippet import Snippet
from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
from spdx_tools.spdx.model.spdx_none import SpdxNone
from spdx_tools.spdx.validation.actor_validator import validate_actor
from spdx_tools.spdx.validation.creation_info_validator import validate_creation_info
from spdx_tools.spdx.validation.extracted_licensing_info_validator import validate_extracted_licensing_infos
from spdx_tools.spdx.validation.file_validator import validate_file_within_document
from spdx_tools.spdx.validation.license_expression_validator import (
    validate_license_expression,
    validate_license_expressions,
)
from spdx_tools.spdx.validation.package_validator import validate_package
from spdx_tools.spdx.validation.snippet_validator import validate_snippet
from spdx_tools.spdx.validation.spdx_id_validators import validate_spdx_id
from spdx_tools.spdx.validation.validation_message import (
    SpdxElementType,
    ValidationContext,
    ValidationMessage,
)

__all__ = ["validate_document"]

_SUPPORTED = ("SPDX-2.2", "SPDX-2.3")


class _Index:
    """Every look-up the library repeats, built once."""

    def __init__(self, document: Document) -> None:
        packages = document.packages
        files = document.files
        snippets = document.snippets
        self.file_ids = frozenset(f.spdx_id for f in files)
        self.all_ids = frozenset(
            [
                document.creation_info.spdx_id,
                *self.file_ids,
                *(p.spdx_id for p in packages),
                *(s.spdx_id for s in snippets),
            ]
        )
        # get_element_type_from_spdx_id answers Package before File before Snippet.
        self.types: dict[str, type] = {}
        for kind, elements in ((Snippet, snippets), (File, files), (Package, packages)):
            for element in elements:
                self.types[element.spdx_id] = kind
        self.contains_by_origin: dict[str, list[Relationship]] = defaultdict(list)
        self.contained_by_target: dict[str, list[Relationship]] = defaultdict(list)
        for relationship in document.relationships:  # document order, as the library's filters keep it
            if relationship.relationship_type == RelationshipType.CONTAINS:
                self.contains_by_origin[relationship.spdx_element_id].append(relationship)
            elif relationship.relationship_type == RelationshipType.CONTAINED_BY:
                self.contained_by_target[str(relationship.related_spdx_element_id)].append(relationship)


def _checked_id(spdx_id: str, document: Document, present: frozenset[str], suffix: str) -> list[str]:
    messages: list[str] = validate_spdx_id(spdx_id, document)
    if len(spdx_id.split(":")) == 1 and spdx_id not in present:
        messages.append(f'did not find the referenced spdx_id "{spdx_id}" in the SPDX document{suffix}')
    return messages


def _package(
    package: Package, spdx_version: str, document: Document, index: _Index
) -> list[ValidationMessage]:
    messages: list[ValidationMessage] = []
    context = ValidationContext(
        spdx_id=package.spdx_id,
        parent_id=document.creation_info.spdx_id,
        element_type=SpdxElementType.PACKAGE,
        full_element=package,
    )
    messages.extend(ValidationMessage(m, context) for m in validate_spdx_id(package.spdx_id, document))
    if not package.files_analyzed:
        combined = [
            r
            for r in index.contains_by_origin.get(package.spdx_id, ())
            if index.types.get(str(r.related_spdx_element_id)) is File
        ]
        combined += [
            r
            for r in index.contained_by_target.get(package.spdx_id, ())
            if index.types.get(r.spdx_element_id) is File
        ]
        if combined:
            messages.append(
                ValidationMessage(
                    f"package must contain no elements if files_analyzed is False, but found {combined}",
                    context,
                )
            )
    messages.extend(validate_license_expression(package.license_concluded, document, package.spdx_id))
    from_files = package.license_info_from_files
    if from_files:
        if not package.files_analyzed:
            messages.append(
                ValidationMessage(
                    f"license_info_from_files must be None if files_analyzed is False, but is: {from_files}",
                    context,
                )
            )
        else:
            messages.extend(validate_license_expressions(from_files, document, package.spdx_id))
    messages.extend(validate_license_expression(package.license_declared, document, package.spdx_id))
    messages.extend(validate_package(package, spdx_version, context))
    return messages


def _snippet(
    snippet: Snippet, spdx_version: str, document: Document, index: _Index
) -> list[ValidationMessage]:
    context = ValidationContext(
        spdx_id=snippet.spdx_id,
        parent_id=document.creation_info.spdx_id,
        element_type=SpdxElementType.SNIPPET,
        full_element=snippet,
    )
    messages = [ValidationMessage(m, context) for m in validate_spdx_id(snippet.spdx_id, document)]
    messages.extend(
        ValidationMessage(m, context)
        for m in _checked_id(snippet.file_spdx_id, document, index.file_ids, "'s files")
    )
    messages.extend(validate_license_expression(snippet.license_concluded, document, snippet.spdx_id))
    messages.extend(validate_license_expressions(snippet.license_info_in_snippet, document, snippet.spdx_id))
    messages.extend(validate_snippet(snippet, spdx_version, context))
    return messages


def _relationship(
    relationship: Relationship, spdx_version: str, document: Document, index: _Index
) -> list[ValidationMessage]:
    context = ValidationContext(element_type=SpdxElementType.RELATIONSHIP, full_element=relationship)
    messages = [
        ValidationMessage(m, context)
        for m in _checked_id(relationship.spdx_element_id, document, index.all_ids, "")
    ]
    related: Any = relationship.related_spdx_element_id
    if related not in [SpdxNone(), SpdxNoAssertion()]:
        messages.extend(
            ValidationMessage(m, context) for m in _checked_id(related, document, index.all_ids, "")
        )
    if spdx_version == "SPDX-2.2" and relationship.relationship_type in (
        RelationshipType.SPECIFICATION_FOR,
        RelationshipType.REQUIREMENT_DESCRIPTION_FOR,
    ):
        messages.append(
            ValidationMessage(f"{relationship.relationship_type} is not supported in SPDX-2.2", context)
        )
    return messages


def validate_document(document: Document) -> list[ValidationMessage]:
    """What ``validate_full_spdx_document(document)`` returns, in linear time."""
    version = document.creation_info.spdx_version
    context = ValidationContext(spdx_id=document.creation_info.spdx_id, element_type=SpdxElementType.DOCUMENT)
    if version not in _SUPPORTED:
        return [
            ValidationMessage(
                f'only SPDX versions "SPDX-2.2" and "SPDX-2.3" are supported, but the document\'s '
                f"spdx_version is: {version}",
                context,
            ),
            ValidationMessage(
                "There are issues concerning the SPDX version of the document. As subsequent "
                "validation relies on the correct version, the validation process has been "
                "cancelled.",
                context,
            ),
        ]
    index = _Index(document)
    messages: list[ValidationMessage] = list(validate_creation_info(document.creation_info, version))
    for package in document.packages:
        messages.extend(_package(package, version, document, index))
    for file in document.files:
        messages.extend(validate_file_within_document(file, version, document))
    for snippet in document.snippets:
        messages.extend(_snippet(snippet, version, document, index))
    for annotation in document.annotations:
        annotation_context = ValidationContext(
            element_type=SpdxElementType.ANNOTATION, full_element=annotation
        )
        messages.extend(validate_actor(annotation.annotator, "annotation"))
        messages.extend(
            ValidationMessage(m, annotation_context)
            for m in _checked_id(annotation.spdx_id, document, index.all_ids, "")
        )
    for relationship in document.relationships:
        messages.extend(_relationship(relationship, version, document, index))
    messages.extend(validate_extracted_licensing_infos(document.extracted_licensing_info))

    document_id = document.creation_info.spdx_id
    describing = filter_by_type_and_origin(
        document.relationships, RelationshipType.DESCRIBES, document_id
    ) + filter_by_type_and_target(document.relationships, RelationshipType.DESCRIBED_BY, document_id)
    single_package = len(document.packages) == 1 and not document.files and not document.snippets
    if not single_package and not describing:
        messages.append(
            ValidationMessage(
                f'there must be at least one relationship "{document_id} DESCRIBES ..." or "... DESCRIBED_BY '
                f'{document_id}" when there is not only a single package present',
                context,
            )
        )
    seen: set[str] = set()
    duplicates: set[str] = set()
    for spdx_id in [
        document_id,
        *(f.spdx_id for f in document.files),
        *(p.spdx_id for p in document.packages),
        *(s.spdx_id for s in document.snippets),
    ]:
        (duplicates if spdx_id in seen else seen).add(spdx_id)
    if duplicates:
        messages.append(
            ValidationMessage(
                f"every spdx_id must be unique within the document, but found the following duplicates: "
                f"{sorted(duplicates)}",
                context,
            )
        )
    return messages
