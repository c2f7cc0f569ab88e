"""Lint migrations for lock-heavy or destructive operations with squawk.

`squawk <https://squawkhq.com>`_ is a PostgreSQL migration linter written in
Rust; the ``squawk-cli`` wheel on PyPI ships the real binary. It is run once
over all the files with ``--reporter json``; each finding becomes evidence
with file, line (1-based here; squawk counts from 0), column, rule and
message. The feature decides which rules fail the gate
(:func:`lint_verdict`); every other finding is listed as evidence only.

Errors::

    DrillbookError
    ├── LinterUnavailable    squawk is not installed, or did not answer in JSON
    └── UnknownRule          a feature names a rule squawk does not have
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DrillbookError
from .verdict import Verdict

LINT_TIMEOUT_S = 120
ALL_RULES = "all"
# Destructive or lock-heavy operations: the default blocking set of `verify migrations --lint`.
DEFAULT_BLOCKING_RULES = frozenset({
    "adding-required-field", "adding-field-with-default", "adding-not-nullable-field",
    "changing-column-type", "constraint-missing-not-valid", "ban-drop-column", "ban-drop-table",
    "ban-drop-database", "renaming-column", "renaming-table", "disallowed-unique-constraint",
})
# The rule squawk reports when it cannot parse a file: never advisory.
SYNTAX_ERROR = "syntax-error"


class LinterUnavailable(DrillbookError):
    default_hint = "install the linter into drillbook's environment: pip install squawk-cli"


@dataclass(frozen=True)
class Finding:
    """One squawk finding, located in its file."""

    file: str
    line: int
    column: int
    rule: str
    level: str
    message: str
    help: str | None = None

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def to_evidence(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "rule": self.rule,
                "level": self.level, "message": self.message, "help": self.help}


def squawk_binary() -> Path:
    """squawk next to this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("squawk")
    if found:
        return Path(found)
    raise LinterUnavailable("the squawk migration linter is not installed")


def parse_squawk_json(output: str, *, base: Path | None = None) -> list[Finding]:
    """Findings from ``squawk --reporter json`` output; raises LinterUnavailable on anything else."""
    try:
        data = json.loads(output or "[]")
    except json.JSONDecodeError as exc:
        raise LinterUnavailable(f"squawk did not answer in JSON: {output[:200]!r}") from exc
    if not isinstance(data, list):
        raise LinterUnavailable(f"squawk's JSON is not a list of findings: {output[:200]!r}")
    findings = []
    for item in data:
        if not isinstance(item, dict):
            raise LinterUnavailable(f"unexpected squawk finding: {item!r}")
        file = str(item.get("file", "?"))
        if base is not None:
            with contextlib.suppress(ValueError):  # a path outside base stays absolute
                file = str(Path(file).relative_to(base))
        findings.append(Finding(
            file=file, line=int(item.get("line") or 0) + 1, column=int(item.get("column") or 0) + 1,
            rule=str(item.get("rule_name") or "?"), level=str(item.get("level") or "?"),
            message=str(item.get("message") or ""),
            help=str(item["help"]) if item.get("help") else None,
        ))
    # squawk may report the same syntax error twice (two columns): keep one per place and rule.
    unique = {(f.file, f.line, f.column, f.rule, f.message): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.file, f.line, f.column, f.rule))


# squawk reads untrusted SQL: it gets none of drillbook's environment (tokens, DSNs, AWS keys).
LINTER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def lint_files(paths: Sequence[Path], *, base: Path | None = None, pg_version: str = "15",
               assume_in_transaction: bool = True, binary: Path | None = None) -> list[Finding]:
    """Run squawk over the files (empty files are skipped: nothing to lint)."""
    files = [p for p in paths if p.stat().st_size > 0]
    if not files:
        return []
    command = [str(binary or squawk_binary()), "--reporter", "json", f"--pg-version={pg_version}"]
    if assume_in_transaction:
        # Each migration runs in its own transaction, as the replay does.
        command.append("--assume-in-transaction")
    command += [str(p) for p in files]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, check=False,
                              env=LINTER_ENV)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinterUnavailable(f"squawk could not run: {exc}") from exc
    # Exit 0: no errors; 1: findings at error level. Anything else: squawk itself failed.
    if proc.returncode not in (0, 1):
        raise LinterUnavailable(f"squawk exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return parse_squawk_json(proc.stdout, base=base)


class UnknownRule(DrillbookError):
    default_hint = "use squawk's rule names (https://squawkhq.com/docs/rules), e.g. ban-drop-column"


def check_rule_names(rules: Collection[str], *, binary: Path | None = None) -> None:
    """Ask squawk itself whether it knows every rule name: a typo must not silently block nothing."""
    names = sorted(r for r in rules if r != SYNTAX_ERROR)
    if not names:
        return
    with tempfile.NamedTemporaryFile(suffix=".sql") as empty:
        command = [str(binary or squawk_binary()), f"--exclude={','.join(names)}", empty.name]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=LINT_TIMEOUT_S,
                                  check=False, env=LINTER_ENV)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LinterUnavailable(f"squawk could not run: {exc}") from exc
    if proc.returncode != 0:
        match = re.search(r"invalid rule name (\S+)", proc.stderr)
        unknown = match.group(1) if match else ", ".join(names)
        raise UnknownRule(f"squawk has no rule named {unknown!r}", rule=unknown)


def lint_verdict(findings: Sequence[Finding], *, failing_rules: Collection[str] | str,
                 files: int, check_id: str = "migrations.lint") -> Verdict:
    """Failed when a finding's rule is one the feature says fails the gate; passed otherwise.

    ``failing_rules`` is a set of squawk rule names, or ``"all"``. A syntax error
    always fails: an unparseable migration cannot be judged.
    """
    def blocking(f: Finding) -> bool:
        return failing_rules == ALL_RULES or f.rule in failing_rules or f.rule == SYNTAX_ERROR

    blockers = [f for f in findings if blocking(f)]
    advisory = [f for f in findings if not blocking(f)]
    evidence = {
        "linter": "squawk", "files": files,
        "failing_rules": failing_rules if isinstance(failing_rules, str) else sorted(failing_rules),
        "blocking": [f.to_evidence() for f in blockers],
        "advisory": [f.to_evidence() for f in advisory],
    }
    if blockers:
        shown = "; ".join(f"{f.where()} {f.rule}: {f.message}" for f in blockers[:5])
        more = f"; and {len(blockers) - 5} more" if len(blockers) > 5 else ""
        return Verdict.failed(check_id, f"{len(blockers)} blocking lint finding(s): {shown}{more}",
                              measured=len(blockers), expected="no finding of a blocking rule",
                              evidence=evidence)
    rules = sorted({f.rule for f in advisory})
    return Verdict.passed(
        check_id, f"no blocking lint finding in {files} file(s)"
        + (f"; {len(advisory)} advisory ({', '.join(rules)})" if advisory else ""),
        measured=0, expected="no finding of a blocking rule", evidence=evidence)
