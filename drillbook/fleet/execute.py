"""Running one fleet member's scenarios: a child ``drillbook run`` per member.

A child process per member, not another pytest session in this one: pytest caches the
generated test module and the plugins of a session, and a member's environment (its targets,
its throwaway scratch server) must end with its run. The child binds the member's targets
(``--member``), names its scenarios ``ID[member]`` and never appends to the ledger: the fleet's
merge is the only ledger writer (FLEET.md §4.3).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from checks import redact

Progress = Callable[[str], None]


def member_command(*, config: Path, member: str, scenario_ids: list[str], features: list[Path], out: Path,
                   run_id: str, env: str = "live", strict: bool = False) -> list[str]:
    """The child's command line (scenario ids select by ``--tags "id:A or id:B"``)."""
    tags = " or ".join(f"id:{ident}" for ident in sorted(scenario_ids))
    command = [sys.executable, "-m", "drillbook", "run", "--config", str(config), "--member", member,
               "--env", env, "--out", str(out), "--run-id", run_id, "--tags", tags]
    for path in features:
        command += ["--features", str(path)]
    if strict:
        command.append("--strict")
    return command


def run_member(*, config: Path, member: str, scenario_ids: list[str], features: list[Path], out: Path,
               run_id: str, env: str = "live", extra_env: dict[str, str] | None = None,
               strict: bool = False, progress: Progress | None = None, timeout: float | None = None) -> Path:
    """Run ``scenario_ids`` for ``member`` in a child process; return its run directory.

    The run directory holds results.json, junit.xml and report.html when the child got as far as
    running scenarios. A child that could not (a usage error, a crash, a kill) leaves no
    results.json: the caller reports the member's work items as ``error`` with :func:`tail`'s
    text, never as passed.
    """
    command = member_command(config=config, member=member, scenario_ids=scenario_ids, features=features,
                             out=out, run_id=run_id, env=env, strict=strict)
    child_env = {**os.environ, **(extra_env or {})}
    # The repo itself first on the path, so a checkout without an install runs its own code.
    repo = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, child_env.get("PYTHONPATH", "")) if p)
    run_dir = out / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "drillbook.log"
    with log.open("wb") as sink:
        try:
            proc = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=child_env,
                                  timeout=timeout, check=False)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    if progress is not None:
        done = "timed out" if code is None else f"exit {code}"
        progress(f"member {member}: {len(scenario_ids)} scenario(s), {done}")
    return run_dir


def tail(run_dir: Path, lines: int = 12) -> str:
    """The last lines a member's child printed (redacted): why it left no results."""
    try:
        text = (run_dir / "drillbook.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return redact.redact("\n".join(text.strip().splitlines()[-lines:]))
