"""`drillbook run` interrupted mid-run (Ctrl-C, SIGTERM) stops promptly and leaves nothing behind.

The run gets a TMPDIR of its own, so "nothing left" is exact: no process mentions that
directory (servers, psql, pg_restore) and the directory is empty once the run exited.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import Spawned, private_tmpdir, processes_mentioning

pytestmark = pytest.mark.integration

FIRST_SCENARIO_TIMEOUT_S = 120
EXIT_DEADLINE_S = 30
# Progress lines read "  PASSED         BKP-10     Last night's backup ...".
OUTCOMES = ("PASSED", "FAILED", "ERROR", "WARNING", "NOT APPLICABLE", "WAIVED")


@pytest.fixture
def run_tmpdir() -> Iterator[Path]:
    path = private_tmpdir("drillbook-int-tmp-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _is_scenario_line(line: str) -> bool:
    return line.startswith("  ") and line.strip().startswith(OUTCOMES)


def _interrupted_run(tmp_path: Path, tmpdir: Path, cache_env: dict[str, str],
                     interrupt: Callable[[Spawned], None]) -> tuple[Spawned, int]:
    """Start `drillbook run`, interrupt it after its first scenario; fails unless it exits in time."""
    run = Spawned("run", "--out", str(tmp_path / "out"), env={**cache_env, "TMPDIR": str(tmpdir)})
    try:
        run.wait_for_line(_is_scenario_line, timeout=FIRST_SCENARIO_TIMEOUT_S)
        # The servers live under the private TMPDIR: proof the check below can see them.
        assert processes_mentioning(str(tmpdir)), "expected the sandbox's servers under TMPDIR"
        interrupt(run)
        return run, run.wait(EXIT_DEADLINE_S)
    finally:
        if run.proc.poll() is None:
            run.kill()


def _assert_interrupted_and_clean(run: Spawned, code: int, tmpdir: Path) -> None:
    assert code == 1, f"{run.timeline}\nstderr:\n{run.stderr}"
    assert "interrupted" in run.stderr, run.stderr
    assert "drillbook: PASS" not in run.stdout, "the run finished before the signal arrived"
    assert processes_mentioning(str(tmpdir)) == []
    assert list(tmpdir.iterdir()) == []


class TestInterruptedRun:
    def test_ctrl_c_exits_promptly_and_cleans_up(
        self, tmp_path: Path, run_tmpdir: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """Ctrl-C (SIGINT to the whole process group) after the first scenario: exit 1, nothing left."""
        run, code = _interrupted_run(tmp_path, run_tmpdir, sandbox_cache_env,
                                              Spawned.interrupt_group)
        _assert_interrupted_and_clean(run, code, run_tmpdir)

    def test_sigterm_exits_promptly_and_cleans_up(
        self, tmp_path: Path, run_tmpdir: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """SIGTERM to drillbook alone (a CI timeout, `kill PID`): the same clean unwinding as Ctrl-C."""
        run, code = _interrupted_run(tmp_path, run_tmpdir, sandbox_cache_env,
                                              lambda spawned: spawned.send(signal.SIGTERM))
        _assert_interrupted_and_clean(run, code, run_tmpdir)
