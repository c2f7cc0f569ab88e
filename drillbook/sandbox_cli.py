"""``drillbook sandbox up`` / ``down``: the embedded environment, to explore by hand.

``up --sandbox-members N`` starts the fleet sandbox instead (:mod:`drillbook.fleet.sandbox`): N
member databases with their backup histories, and the path of a ``drillbook.toml`` with their
``[fleet]`` for ``drillbook run --config PATH --fleet`` while it is up. ``--canary`` seeds the
failing variants (fleet: which members are broken, and how, is printed).

``down --stale`` reaps what killed runs left (servers, temp dirs; see drills/reaper.py); ``up``
does the same before it starts, as ``drillbook run`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from checks.errors import EnvironmentError_

from .runner import EXIT_FAILED, EXIT_PASSED

_DETACH_DEADLINE_S = 120.0


def sandbox_up(args: argparse.Namespace) -> int:
    """Start the local sandbox; print its connection details; stay up until Ctrl-C or `down`."""
    state: Path = args.state
    if state.exists() and _alive(_read_pid(state)):
        print(f"a sandbox is already running (pid {_read_pid(state)}); stop it with "
              "`drillbook sandbox down`", file=sys.stderr)
        return EXIT_FAILED
    members: int | None = getattr(args, "sandbox_members", None)
    canary: bool = getattr(args, "canary", False)
    if members is not None:
        from .fleet.sandbox import check_member_count

        check_member_count(members)  # a usage error before anything starts
    if args.detach:
        return _detach(state, members=members, canary=canary)

    from drills.reaper import reap_stale

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    reap_stale(progress=say)
    env: Any
    if members is not None:
        from .fleet.sandbox import FleetSandbox

        env = FleetSandbox.start(members, canary=canary, progress=say)
    else:
        from drills.local import LocalEnvironment

        env = LocalEnvironment.start(progress=say, canary=canary)
    try:
        details = dict(env.details())
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"pid": os.getpid(), "details": details}, indent=2) + "\n",
                         encoding="utf-8")
        print("sandbox is up:")
        for key, value in details.items():
            print(f"  {key:<28} {value}")
        if members is not None:
            print(f"run the fleet against it: drillbook run --config {details['config']} --fleet")
        print("stop it with Ctrl-C (or `drillbook sandbox down` from another shell)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the sandbox", file=sys.stderr)
    finally:
        env.close()
        state.unlink(missing_ok=True)
    return EXIT_PASSED


def _detach(state: Path, *, members: int | None, canary: bool) -> int:
    log = state.with_suffix(".log")
    state.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "drillbook.cli", "sandbox", "up", "--state", str(state)]
    if members is not None:
        command += ["--sandbox-members", str(members)]
    if canary:
        command.append("--canary")
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + _DETACH_DEADLINE_S
    while time.monotonic() < deadline:
        if state.exists():
            details = json.loads(state.read_text(encoding="utf-8"))["details"]
            print(f"sandbox is up (pid {proc.pid}):")
            for key, value in details.items():
                print(f"  {key:<28} {value}")
            print("stop it with `drillbook sandbox down`")
            return EXIT_PASSED
        if proc.poll() is not None:
            raise EnvironmentError_(f"the sandbox exited during start; its log: {log}")
        time.sleep(0.2)
    proc.terminate()
    raise EnvironmentError_(f"the sandbox did not come up within {_DETACH_DEADLINE_S:.0f}s; log: {log}")


def sandbox_down(args: argparse.Namespace) -> int:
    """Stop a detached sandbox and wait until it has cleaned up; with ``--stale``, reap instead."""
    state: Path = args.state
    if args.stale:
        return _reap_stale(state)
    if not state.exists():
        print("no sandbox is running", file=sys.stderr)
        return EXIT_PASSED
    pid = _read_pid(state)
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            print(f"sandbox (pid {pid}) did not stop within 60 s", file=sys.stderr)
            return EXIT_FAILED
    state.unlink(missing_ok=True)
    print("sandbox stopped")
    return EXIT_PASSED


def _reap_stale(state: Path) -> int:
    """Stop and remove what killed runs and sandboxes left; a running sandbox is left alone."""
    from drills.reaper import reap_stale

    lines = reap_stale()
    for line in lines:
        print(line)
    if state.exists() and not _alive(_read_pid(state)):
        state.unlink()
        print(f"removed the state file of a sandbox that is gone: {state}")
    if not lines:
        print("nothing left by killed runs")
    return EXIT_FAILED if any(line.startswith("could not") for line in lines) else EXIT_PASSED


def _read_pid(state: Path) -> int:
    return int(json.loads(state.read_text(encoding="utf-8"))["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
