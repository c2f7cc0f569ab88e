"""`drillbook steps`: the step catalogue users write their own features from.

Every step sentence of ``steps/`` must be printed with its parameters and a one-line
description, and every step function must carry the docstring that description comes from.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd import parsers
from pytest_bdd.steps import step_function_context_registry

from drillbook.cli import _readable
from drillbook.plugin import pytest_plugins

REPO = Path(__file__).resolve().parents[2]


def _step_contexts() -> list[Any]:
    """The registry as ``print_steps`` sees it, restricted to this suite's ``steps`` package."""
    for module in pytest_plugins:
        importlib.import_module(module)
    contexts = [c for c in step_function_context_registry.values()
                if c.step_func.__module__.startswith("steps.")]
    # Several decorators on one function register it more than once; one entry per sentence.
    return list({(c.type, c.parser.name): c for c in contexts}.values())


def _parameters(context: Any) -> list[str]:
    parser = context.parser
    if isinstance(parser, parsers.re):
        return list(parser.regex.groupindex)
    if isinstance(parser, parsers.parse):
        return list(parser.parser.named_fields)
    return []


@pytest.fixture(scope="module")
def catalogue() -> str:
    """What `drillbook steps` prints, run as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "drillbook.cli", "steps"], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env=dict(os.environ), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


class TestStepModules:
    def test_every_steps_module_is_a_registered_plugin(self) -> None:
        """A module under steps/ that the plugin does not load would silently offer no steps."""
        modules = {f"steps.{p.stem}" for p in (REPO / "steps").glob("*.py")
                   if "from pytest_bdd import" in p.read_text(encoding="utf-8")}
        assert "steps.backup" in modules  # the filter finds step modules
        assert modules - set(pytest_plugins) == set()

    def test_the_catalogue_is_not_empty(self) -> None:
        """The sandbox's own features need Given, When and Then steps."""
        kinds = {c.type for c in _step_contexts()}
        assert {"given", "when", "then"} <= kinds


class TestEveryStepIsDocumented:
    def test_every_step_function_has_a_docstring(self) -> None:
        """The catalogue's one-line description comes from the docstring: none may be missing."""
        undocumented = [f"{c.step_func.__module__}.{c.step_func.__name__}" for c in _step_contexts()
                        if not (c.step_func.__doc__ or "").strip()]
        assert undocumented == []

    def test_every_sentence_is_printed_with_its_description(self, catalogue: str) -> None:
        """Each sentence appears after its Given/When/Then, followed by its docstring's first line."""
        lines = catalogue.splitlines()
        missing = []
        for context in _step_contexts():
            header = f"{context.type.capitalize():<6} {_readable(context.parser.name)}"
            description = f"       {(context.step_func.__doc__ or '').strip().splitlines()[0]}"
            positions = [i for i, line in enumerate(lines) if line == header]
            if not any(i + 1 < len(lines) and lines[i + 1] == description for i in positions):
                missing.append(header)
        assert missing == []

    def test_parameters_are_shown_as_placeholders(self, catalogue: str) -> None:
        """Every named parameter of a sentence shows as ``{name…}``, and no regex syntax leaks out."""
        for context in _step_contexts():
            sentence = _readable(context.parser.name)
            for name in _parameters(context):
                assert "{" + name in sentence, (name, sentence)
        assert "(?P<" not in catalogue
        assert "\\d" not in catalogue

    def test_sections_name_their_module(self, catalogue: str) -> None:
        """Steps are grouped under ``# steps.<module>`` headings, one per module that defines steps."""
        modules = {c.step_func.__module__ for c in _step_contexts()}
        for module in modules:
            assert f"# {module}" in catalogue.splitlines()
