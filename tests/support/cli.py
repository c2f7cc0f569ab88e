"""Helpers for tests that run ``drillbook`` as a user does: a subprocess of this interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

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
