"""CycloneDX services (what a SaaSBOM lists), read directly from the JSON or XML document.

cyclonedx-python-lib's model is not used: it rejects valid SaaSBOMs (the 1.6
conformance sample raises ``ValueError`` in ``Bom.from_json``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .base import Service, text_value

T = TypeVar("T")


def _filled(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def walk_nested(document: Mapping[str, Any], key: str, build: Callable[[dict[str, Any], str], T]) -> list[T]:
    """``build(item, json_path)`` for every object of ``document[key]`` and the same key nested in it."""
    found: list[T] = []

    def walk(items: Any, at: str) -> None:
        if not isinstance(items, list):
            return
        for index, item in enumerate(items):
            if isinstance(item, dict):
                here = f"{at}[{index}]"
                found.append(build(item, here))
                walk(item.get(key), f"{here}.{key}")

    walk(document.get(key), f"$.{key}")
    return found


def read_json_services(document: Mapping[str, Any]) -> list[Service]:
    """Every service of a JSON document, nested ones included, with its JSON path."""
    return walk_nested(document, "services", _from_json)


def _from_json(item: Mapping[str, Any], path: str) -> Service:
    endpoints = tuple(e for e in item.get("endpoints") or [] if text_value(e)) \
        if isinstance(item.get("endpoints"), list) else ()
    references = item.get("externalReferences")
    urls = tuple(r["url"] for r in references if isinstance(r, dict) and text_value(r.get("url"))) \
        if isinstance(references, list) else ()
    data = item.get("data")
    flows: list[Any] = data if isinstance(data, list) else []
    # 1.2-1.4: {flow, classification}; 1.5+: serviceData, which requires the same two.
    incomplete = tuple(f"{path}.data[{i}]" for i, flow in enumerate(flows)
                       if not (isinstance(flow, dict) and text_value(flow.get("flow"))
                               and _filled(flow.get("classification"))))
    return Service(
        name=text_value(item.get("name")) or "?", version=text_value(item.get("version")),
        bom_ref=text_value(item.get("bom-ref")), group=text_value(item.get("group")),
        endpoints=endpoints, external_references=urls, data_flows=len(flows),
        incomplete_flows=incomplete, path=path,
        present=frozenset(key for key, value in item.items() if _filled(value)),
    )


def read_xml_services(root: Any) -> list[Service]:
    """Every service of an XML document, nested ones included, located by line."""
    ns = root.tag.split("}")[0] + "}"
    services: list[Service] = []

    def walk(container: Any) -> None:
        if container is None:
            return
        for element in container.findall(f"{ns}service"):
            services.append(_from_xml(element, ns))
            walk(element.find(f"{ns}services"))

    walk(root.find(f"{ns}services"))
    return services


def _from_xml(element: Any, ns: str) -> Service:
    def child(name: str) -> str | None:
        found = element.find(f"{ns}{name}")
        return text_value(found.text.strip()) if found is not None and found.text else None

    endpoints = tuple(e.text.strip() for e in element.findall(f"{ns}endpoints/{ns}endpoint")
                      if e.text and e.text.strip())
    urls = tuple(u.text.strip() for u in element.findall(f"{ns}externalReferences/{ns}reference/{ns}url")
                 if u.text and u.text.strip())
    # 1.2-1.4 (and 1.5+ too): data/classification[@flow]; 1.5+: data/dataflow/classification[@flow].
    flows: list[tuple[Any, bool]] = []
    for entry in element.findall(f"{ns}data/{ns}classification"):
        flows.append((entry, bool(entry.get("flow")) and bool((entry.text or "").strip())))
    for entry in element.findall(f"{ns}data/{ns}dataflow"):
        cls = entry.find(f"{ns}classification")
        flows.append((entry, cls is not None and bool(cls.get("flow")) and bool((cls.text or "").strip())))
    incomplete = tuple(f"line {entry.sourceline}" for entry, ok in flows if not ok)
    present = {name for name in ("bom-ref",) if element.get(name)}
    for sub in element:
        tag = sub.tag if isinstance(sub.tag, str) else ""
        if tag.startswith(ns) and ((sub.text or "").strip() or len(sub) or sub.attrib):
            present.add(tag[len(ns):])
    return Service(
        name=child("name") or "?", version=child("version"), bom_ref=element.get("bom-ref") or None,
        group=child("group"), endpoints=endpoints, external_references=urls, data_flows=len(flows),
        incomplete_flows=incomplete, path=f"line {element.sourceline}" if element.sourceline else "",
        present=frozenset(present),
    )
