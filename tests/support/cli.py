"""Helpers for tests that run ``drillbook`` as a user does: a subprocess of this interpreter."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parents[2]
DRILLBOOK = [sys.executable, "-m", "drillbook.cli"]


def drillbook(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``drillbook ARGS`` to completion (bounded by ``timeout``) and capture its output."""
    return subprocess.run(
        [*DRILLBOOK, *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env={**os.environ, **(env or {})}, check=False,
    )


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes other than this one that contain ``text``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if text in cmdline:
            found.append(f"{proc.pid}: {cmdline}")
    return found


def private_tmpdir(prefix: str) -> Path:
    """A TMPDIR of a subprocess's own, so what it leaves behind can be told from other tests' files.

    World-traversable (0711): as root the servers run as ``postgres``, which must reach their
    data dirs inside it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


class Spawned:
    """``drillbook ARGS`` started in a session of its own, its stdout read line by line as it comes.

    A session of its own lets a test deliver Ctrl-C the way a terminal does: to the whole
    process group (:meth:`interrupt_group`).
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [*DRILLBOOK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=cwd or REPO, env={**os.environ, **(env or {})}, start_new_session=True,
        )
        self.lines: list[str] = []
        self._stderr: list[str] = []
        # When each stdout line and each signal reached the test: a late signal shows up here.
        self._started = time.monotonic()
        self._events: list[tuple[float, str]] = []
        self._new_line = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._new_line:
                into.append(line.rstrip("\n"))
                if into is self.lines:
                    self._events.append((time.monotonic(), line.rstrip("\n")))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_line(self, predicate: Callable[[str], bool], *, timeout: float) -> str:
        """The first stdout line matching ``predicate``; fails naming what was printed instead."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                finished = self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)
                if left <= 0 or finished:
                    raise AssertionError(
                        f"no matching line within {timeout:.0f}s (exit code {self.proc.poll()}); "
                        f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
                    )
                self._new_line.wait(min(left, 0.5))

    def interrupt_group(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to every process of the group."""
        self._events.append((time.monotonic(), ">>> SIGINT to the process group"))
        os.killpg(self.proc.pid, signal.SIGINT)

    def send(self, signum: int) -> None:
        """A signal to the drillbook process alone (a CI timeout, ``kill PID``)."""
        self._events.append((time.monotonic(), f">>> {signal.Signals(signum).name} to drillbook"))
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Its exit code; fails (after killing the group) when it does not exit in time."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"drillbook did not exit within {timeout:.0f}s; stdout:\n{self.stdout}"
                                 f"\nstderr:\n{self.stderr}") from None
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def kill(self) -> None:
        """Last resort cleanup for a test that failed half-way: SIGKILL the whole group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()

    @property
    def timeline(self) -> str:
        """stdout lines and the signals sent, each with the second it happened (for failure messages)."""
        return "\n".join(f"+{at - self._started:7.2f}s {text}" for at, text in list(self._events))

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)


def run_directory_backups(tmp_path: Path, backups: dict[str, str], feature: str, *,
                          env: dict[str, str], timeout: float = 300,
                          ) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]:
    """`drillbook run --config` over one directory store per backup (``name`` → plain SQL text).

    Writes ``<name>/backup.sql``, a config naming each directory as a target ``name``, and
    ``feature`` as the only feature; returns the process and its scenarios by id (empty when the
    run wrote no results).
    """
    for name, text in backups.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "backup.sql").write_text(text)
    config = tmp_path / "drillbook.toml"
    config.write_text("".join(f'[targets.{name}]\nkind = "directory"\npath = "{tmp_path / name}"\n'
                              for name in backups))
    features = tmp_path / "features"
    features.mkdir()
    (features / "backups.feature").write_text(feature)
    out = tmp_path / "out"
    proc = drillbook("run", "--config", str(config), "--features", str(features), "--out", str(out),
                     env=env, timeout=timeout)
    found = sorted(out.glob("*/results.json"))
    scenarios = json.loads(found[0].read_text())["scenarios"] if found else []
    return proc, {s["id"]: s for s in scenarios}
