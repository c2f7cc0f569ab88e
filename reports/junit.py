"""Enrich pytest's own JUnit XML with Gherkin names and measured values.

drillbook does not write a second JUnit file: the runner passes ``--junitxml``
to pytest, and its plugin calls the two helpers here.

- :func:`junit_properties` gives, per scenario, the ``(name, value)`` pairs the
  plugin appends to ``item.user_properties`` (pytest writes them as
  ``<property>`` elements of the testcase).
- :func:`rename_testcases` post-processes the finished file: each testcase gets
  the feature name as ``classname`` and the scenario name as ``name``, and
  every text and attribute is redacted.

Both pass everything through :func:`checks.redact.redact`.
"""

from __future__ import annotations

import enum
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from checks.files import write_atomic
from checks.redact import redact
from checks.verdict import jsonable
from reports.results import ScenarioResult

__all__ = ["junit_properties", "junit_testcase_key", "rename_testcases"]

_FLOAT_DIGITS = 6  # microsecond resolution for durations in seconds


def junit_properties(scenario: ScenarioResult) -> list[tuple[str, str]]:
    """The JUnit ``<property>`` pairs for one scenario, every value redacted.

    Gherkin identity first (``feature``, ``scenario``, ``id``, ``cadence``,
    ``tags``; always present, empty when unknown), then for every verdict
    ``<verdict id>.outcome`` and, when recorded, ``<verdict id>.measured`` and
    ``<verdict id>.expected``. Durations become seconds as plain numbers
    (``restore.rto.measured=12.3``); other non-strings become compact JSON.
    A verdict id recorded twice in one scenario gets ``#2``, ``#3``… appended
    so that no property name is ambiguous.
    """
    pairs: list[tuple[str, str]] = [
        ("feature", scenario.feature),
        ("scenario", scenario.scenario),
        ("id", scenario.scenario_id or ""),
        ("cadence", ",".join(scenario.cadences)),
        ("tags", " ".join(f"@{tag}" for tag in scenario.tags)),
    ]
    seen: dict[str, int] = {}
    for verdict in scenario.verdicts:
        seen[verdict.id] = seen.get(verdict.id, 0) + 1
        key = verdict.id if seen[verdict.id] == 1 else f"{verdict.id}#{seen[verdict.id]}"
        pairs.append((f"{key}.outcome", verdict.outcome.value))
        if verdict.measured is not None:
            pairs.append((f"{key}.measured", _property_value(verdict.measured)))
        if verdict.expected is not None:
            pairs.append((f"{key}.expected", _property_value(verdict.expected)))
    return [(redact(name), redact(value)) for name, value in pairs]


def junit_testcase_key(nodeid: str) -> tuple[str, str]:
    """The ``(classname, name)`` pytest's junitxml writes for a node id.

    Mirrors ``_pytest.junitxml.mangle_test_address`` (without ``junit_prefix``):
    ``dir/test_x.py::Class::test_y[p]`` becomes ``("dir.test_x.Class", "test_y[p]")``.
    """
    path, sep, tail = nodeid.partition("::")
    dotted = re.sub(r"\.py$", "", path.replace("/", "."))
    if not sep:
        return "", dotted
    name_part, bracket, params = tail.partition("[")
    names = [dotted, *name_part.split("::")]
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def rename_testcases(junit_path: Path, names: Mapping[str, tuple[str, str]]) -> None:
    """Give pytest's testcases their Gherkin names and redact the whole file.

    ``names`` maps a pytest node id (as in ``ScenarioResult.nodeid``) to
    ``(feature name, scenario name)``. A testcase is matched on the
    ``(classname, name)`` pytest derived from that node id (see
    :func:`junit_testcase_key`), also when a ``junit_prefix`` was put in front
    of the classname. Testcases with no match keep pytest's names. Every
    attribute value, text and tail in the document is redacted, and the file
    is replaced atomically with a UTF-8 document with an XML declaration.
    """
    wanted = {junit_testcase_key(nodeid): gherkin for nodeid, gherkin in names.items()}
    # pytest wrote this file in this run: trusted input, no defusedxml needed.
    tree = ET.parse(junit_path)  # noqa: S314
    root = tree.getroot()
    for case in root.iter("testcase"):
        gherkin = _lookup(wanted, case.get("classname", ""), case.get("name", ""))
        if gherkin is not None:
            case.set("classname", gherkin[0])
            case.set("name", gherkin[1])
    for element in root.iter():
        for attribute, value in element.attrib.items():
            element.set(attribute, redact(value))
        if element.text:
            element.text = redact(element.text)
        if element.tail:
            element.tail = redact(element.tail)
    _write_atomically(tree, junit_path)


def _lookup(
    wanted: Mapping[tuple[str, str], tuple[str, str]], classname: str, name: str
) -> tuple[str, str] | None:
    found = wanted.get((classname, name))
    if found is not None:
        return found
    # A junit_prefix puts "<prefix>." in front of pytest's classname.
    for (expected_class, expected_name), gherkin in wanted.items():
        if name == expected_name and classname.endswith(f".{expected_class}"):
            return gherkin
    return None


def _write_atomically(tree: ET.ElementTree[ET.Element], path: Path) -> None:
    data = ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True)
    write_atomic(path, data, phase="writing the JUnit report")


def _property_value(value: Any) -> str:
    """A measured or expected value as property text: numbers stay numbers."""
    if isinstance(value, timedelta):
        return _number(value.total_seconds())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return str(value.value)
    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    rounded = round(value, _FLOAT_DIGITS)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


_plain = jsonable
