"""Deterministic YAML text for rendered manifests and workflows.

Documents are built as plain dicts (insertion order = the order a reader expects) and dumped
with PyYAML's safe dumper: every scalar is quoted when YAML would otherwise read it as
something else (``on``, ``"2"``, ``*``), so a value can never change the document's shape.
Multi-line strings become literal blocks, which is how people write CI scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ... import __version__

_WIDTH = 4096  # never fold a long command line: a folded shell line reads as two to a person


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
    """Safe dumper that indents lists under their key (the style of Kubernetes and CI docs)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def header(engine: str, *lines: str) -> str:
    """The comment every rendered file starts with: what made it and how to change it."""
    text = [
        f"# Rendered by `drillbook fleet render {engine}` (drillbook {__version__}).",
        "# Do not edit by hand: change the inventory or the options and render again;",
        "# `drillbook fleet render` lints what it writes (docs/fleet.md).",
        *lines,
    ]
    return "".join(f"{line}\n" if line.startswith("#") else f"# {line}\n" for line in text)


def dump(documents: Sequence[dict[str, Any]], *, comment: str) -> str:
    """``comment`` then the documents, separated by ``---``; the same input gives the same bytes."""
    body: str = yaml.dump_all(
        list(documents),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=_WIDTH,
        allow_unicode=False,
        explicit_start=len(documents) > 1,
    )
    return comment + body


def load(text: str) -> list[Any]:
    """Every document of a YAML text (safe loader); empty documents dropped."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]
