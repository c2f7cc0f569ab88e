"""Merge drillbook's JUnit files: one ``<testsuite>`` per shard, sorted, totals recomputed.

FLEET.md §4.1: drillbook's shard files have one uniform shape (pytest's
``junitxml`` output, renamed by reports/junit.py), so a small ElementTree merger
beats a general one. junitparser's output follows its input order and its CLI
has lost names and counts before; here suites are given in index order, test
cases are sorted by (classname, name), suites are renamed ``drillbook shard
03/16`` (same-named suites trouble some consumers), and every total is
recomputed from the test cases themselves, never copied.

Shard files come back from the runs location, so they are parsed with
defusedxml: no entity expansion, no external references.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from defusedxml import ElementTree as SafeET

from checks.errors import DrillbookError
from checks.redact import redact

__all__ = ["Element", "JunitMergeError", "Suite", "error_case", "merge", "suite_name", "testcases"]

Element = ET.Element
_OUTCOMES = ("failure", "error", "skipped")


class JunitMergeError(DrillbookError):
    """A shard's junit.xml is not a JUnit document."""

    default_hint = "re-run that shard's index: its attempt's junit.xml is damaged"


@dataclass
class Suite:
    """The test cases of one shard under the name the merged file gives it."""

    name: str
    cases: list[ET.Element]


def suite_name(index: int, bins: int) -> str:
    width = max(2, len(str(bins)))
    return f"drillbook shard {index:0{width}d}/{bins:0{width}d}"


def testcases(data: bytes, *, where: str) -> list[ET.Element]:
    """Every ``<testcase>`` of a JUnit document (``<testsuites>`` or a bare ``<testsuite>``)."""
    try:
        root = SafeET.fromstring(data)
    except (ET.ParseError, ValueError) as exc:  # defusedxml's refusals are ValueErrors
        raise JunitMergeError(f"{where}: not a JUnit XML document ({exc})", url=where) from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise JunitMergeError(f"{where}: the root element is <{root.tag}>, not <testsuites>", url=where)
    return list(root.iter("testcase"))


def error_case(classname: str, name: str, message: str) -> ET.Element:
    """A test case that could not run: an ``<error>`` with the reason (never a pass, never a skip)."""
    case = ET.Element("testcase", {"classname": redact(classname), "name": redact(name), "time": "0"})
    error = ET.SubElement(case, "error", {"message": redact(message)})
    error.text = redact(message)
    return case


def merge(suites: Sequence[Suite]) -> bytes:
    """One ``<testsuites>`` document: the suites in the given order, cases sorted, totals summed."""
    root = ET.Element("testsuites")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for suite in suites:
        element = ET.SubElement(root, "testsuite", {"name": suite.name})
        counts = dict.fromkeys(totals, 0)
        seconds = 0.0
        for case in sorted(suite.cases, key=lambda c: (c.get("classname", ""), c.get("name", ""))):
            element.append(case)
            counts["tests"] += 1
            for outcome, key in zip(_OUTCOMES, ("failures", "errors", "skipped"), strict=True):
                if case.find(outcome) is not None:
                    counts[key] += 1
            seconds += _seconds(case.get("time"))
        for key, value in counts.items():
            element.set(key, str(value))
            totals[key] += value
        element.set("time", _format(seconds))
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _format(total_time))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _seconds(text: str | None) -> float:
    try:
        value = float(text or 0)
    except ValueError:
        return 0.0
    return value if value >= 0 else 0.0


def _format(seconds: float) -> str:
    return f"{seconds:.3f}"
