"""The documentation's commands still work: every ``sh runnable`` block of README.md and docs/*.md.

One test per page that has runnable blocks. Its blocks run in page order, in one fresh working
directory of the page's own, each command as ``python -m drillbook ARGS`` (never through a shell:
tests/support/docs_pages.py splits it), against one detached sandbox started for the module. A
command that exits otherwise than its block states fails the page, naming ``page:line``, the
command as written, its exit code and the end of its output. The contract is in
docs/development.md ("Docs that run").
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from checks.errors import EnvironmentError_
from drills import pgtools
from drills.processes import S3_SECRET_ACCESS_KEY
from tests.support.cli import drillbook, private_tmpdir
from tests.support.docs_pages import (
    PROVIDED_VARIABLES,
    REPO,
    Command,
    DocsCommandError,
    has_runnable,
    page_name,
    pages,
    runnable_blocks,
)

pytestmark = pytest.mark.integration

SANDBOX_START_TIMEOUT_S = 150
COMMAND_TIMEOUT_S = 240  # a `drillbook run` takes ~12 s; this only stops a hang
TAIL_LINES = 30

PAGES = [page for page in pages() if has_runnable(page.read_text(encoding="utf-8"))]


def _sandbox_details(stdout: str) -> dict[str, str]:
    """The ``  key   value`` lines `drillbook sandbox up` prints."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^  (\S+)\s+(\S.*)$", line)
        if match:
            found[match[1]] = match[2].strip()
    return found


@pytest.fixture(scope="module")
def docs_env(sandbox_cache_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, dict[str, str]]]:
    """One detached sandbox for every page; yields the variables pages may use and the child env."""
    try:
        initdb = Path(pgtools.bindir()) / "initdb"
    except EnvironmentError_ as exc:
        pytest.skip(reason=f"PostgreSQL server binaries are not installed: {exc}")
    if not initdb.exists() or shutil.which("redis-server") is None:
        pytest.skip(reason="PostgreSQL's initdb or redis-server is not installed")
    state = tmp_path_factory.mktemp("docs-sandbox") / "sandbox.json"
    tmpdir = private_tmpdir("drillbook-docs-tmp-")
    base = {**sandbox_cache_env, "TMPDIR": str(tmpdir)}
    up = drillbook("sandbox", "up", "--detach", "--state", str(state), env=base,
                   timeout=SANDBOX_START_TIMEOUT_S)
    try:
        assert up.returncode == 0, f"the docs' sandbox did not start:\n{up.stdout}\n{up.stderr}"
        details = _sandbox_details(up.stdout)
        values = {
            "PROD_PG_DSN": details["postgres.production"],
            "SANDBOX_BACKUPS": details["directory"],
            "AWS_ENDPOINT_URL": details["s3.endpoint_url"],
            "AWS_ACCESS_KEY_ID": details["s3.access_key_id"],
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,  # moto's fake pair; `up` prints only the id
            "SANDBOX_BUCKET": details["s3.bucket"],
            "CHECKOUT": str(REPO),  # where the reader cloned drillbook: its features/, its sandbox files
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(Path.home())),
        }
        provided = {name: values[name] for name in PROVIDED_VARIABLES}  # the pages' contract, exactly
        # What a reader's shell would hold, plus how this checkout is found and the session's
        # sandbox cache: nothing else of the test process leaks into the commands.
        child = {**provided, **base, "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
        yield {"provided": provided, "child": child}
    finally:
        drillbook("sandbox", "down", "--state", str(state), env=base, timeout=90)
        shutil.rmtree(tmpdir, ignore_errors=True)


def _run(argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> tuple[int | None, str]:
    """Run ``drillbook ARGV``; (exit code, merged output). None when it hung past the timeout."""
    proc = subprocess.Popen([sys.executable, "-m", "drillbook", *argv], cwd=cwd, env=dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # drillbook cleans up its servers on SIGTERM
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


def _failure(page: str, command: Command, code: int | None, expected: int, output: str) -> str:
    tail = "\n".join(output.rstrip().splitlines()[-TAIL_LINES:])
    what = (f"did not finish within {COMMAND_TIMEOUT_S}s" if code is None
            else f"exited {code}, the page expects {expected}")
    return (f"{page}:{command.line}: `{command.source}` {what}\n"
            f"--- the last {TAIL_LINES} lines of its output ---\n{tail}")


def check_page(name: str, text: str, *, provided: Mapping[str, str], child: Mapping[str, str],
               cwd: Path) -> str | None:
    """Run the page's runnable blocks in order in ``cwd``; the first failure's message, or None."""
    try:
        blocks = runnable_blocks(text)
        planned = [(block, command, command.argv(provided))
                   for block in blocks for command in block.commands]
    except DocsCommandError as exc:
        return f"{name}:{exc.line}: {exc}"
    if not planned:
        return f"{name} has no runnable command"
    for block, command, argv in planned:
        code, output = _run(argv, cwd=cwd, env=child)
        if code != block.expected_exit:
            return _failure(name, command, code, block.expected_exit, output)
    return None


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_page_commands(page: Path, docs_env: dict[str, dict[str, str]], tmp_path: Path) -> None:
    """Every runnable block of the page, in page order, exits with the code it states."""
    failure = check_page(page_name(page), page.read_text(encoding="utf-8"), cwd=tmp_path,
                         provided=docs_env["provided"], child=docs_env["child"])
    if failure is not None:
        pytest.fail(failure, pytrace=False)


class TestFailures:
    """What a reader of a failed docs test sees (no sandbox needed: the commands fail early)."""

    PAGE = """# A page

```sh runnable
drillbook verify backup "$HOME/no-such-backup.sql.gz" \\
    --max-age 26h
drillbook steps
```
"""

    def test_a_command_exiting_otherwise_names_page_line_command_code_and_output(
            self, tmp_path: Path) -> None:
        """The message names page:line, the command as written, its exit code and its last lines."""
        env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
        failure = check_page("docs/a-page.md", self.PAGE, provided=env, child=env, cwd=tmp_path)
        assert failure is not None
        first, *rest = failure.splitlines()
        assert first == ('docs/a-page.md:4: `drillbook verify backup "$HOME/no-such-backup.sql.gz"'
                         '     --max-age 26h` exited 2, the page expects 0')
        assert f"backup source {tmp_path}/no-such-backup.sql.gz does not exist" in "\n".join(rest)

    def test_an_unknown_variable_fails_before_anything_runs(self, tmp_path: Path) -> None:
        """A page asking for a variable the harness lacks fails naming it; no command ran."""
        page = self.PAGE.replace("$HOME", "$BACKUP_DIR")
        env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
        failure = check_page("docs/a-page.md", page, provided=env, child=env, cwd=tmp_path)
        assert failure is not None
        assert failure.startswith("docs/a-page.md:4: unknown variable $BACKUP_DIR")
        assert list(tmp_path.iterdir()) == []
