"""Deadlines for work that runs what someone else wrote: a restore, a migration replay, a query.

A backup or a migration can hold ``SELECT pg_sleep(600)``, a lock wait, or a CHECK
constraint calling a function that never returns. Without a deadline the drill, and the
whole run after it, hangs. So each such piece of work gets one :class:`Deadline`:

- when the scenario states its own limit (``Then the restore completes within 5 minutes``),
  the restore's deadline is that limit **plus a margin** of half the limit, at least
  ``MIN_MARGIN_S``: a restore a little over its RTO still finishes and is reported with its
  measured time against the RTO ("took 6 min, limit 5 min"), while a hang is cut off soon after;
- otherwise the configured default (``[run] restore_timeout``, ``migration_timeout``,
  ``query_timeout`` in drillbook.toml), else the built-in defaults below.

On expiry the work is cancelled where it runs, not merely abandoned: the client's process
group is killed and every session left in the scratch database is terminated server-side
(killing a client alone leaves its backend sleeping until it next writes to the socket).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any

import psycopg

from checks.verdict import format_duration

MARGIN_FRACTION = 0.5
MIN_MARGIN_S = 10.0
# Built-in defaults when neither the scenario nor the config states a limit: generous enough
# for any honest restore of a large database, finite so a hang still ends the drill.
DEFAULT_RESTORE_TIMEOUT_S = 3600.0
DEFAULT_MIGRATION_TIMEOUT_S = 1800.0
DEFAULT_QUERY_TIMEOUT_S = 600.0
# How long the terminated sessions of a scratch database may take to go away.
TERMINATE_WAIT_S = 10.0
_POLL_S = 0.1


@dataclass(frozen=True)
class Limit:
    """How long a kind of work may take, and where that number came from (for the message)."""

    seconds: float
    source: str

    @classmethod
    def from_rto(cls, rto: timedelta) -> Limit:
        """The scenario's RTO plus the margin (see the module docstring)."""
        limit = rto.total_seconds()
        margin = max(limit * MARGIN_FRACTION, MIN_MARGIN_S)
        return cls(limit + margin, f"the scenario's RTO {format_duration(rto)} "
                                   f"+ {format_duration(timedelta(seconds=margin))} margin")

    @classmethod
    def configured(cls, value: timedelta | None, *, key: str, default_s: float) -> Limit:
        """``[run] <key>`` when the config sets it, else the built-in default."""
        if value is not None:
            return cls(value.total_seconds(), f"[run] {key}")
        return cls(default_s, f"the default {key}")

    def describe(self) -> str:
        return f"{format_duration(timedelta(seconds=self.seconds))} ({self.source})"

    def start(self) -> Deadline:
        return Deadline(self)


@dataclass(frozen=True)
class Deadline:
    """A :class:`Limit` that started counting when it was created."""

    limit: Limit
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return max(0.0, self.limit.seconds - self.elapsed())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def statement_timeout_ms(self) -> int:
        """The remaining time as a server-side ``statement_timeout`` (at least 1 ms: 0 means none)."""
        return max(1, int(self.remaining() * 1000))

    def libpq_options(self) -> str:
        """``options`` for a connection whose statements must end by this deadline, server-side."""
        return f"-c statement_timeout={self.statement_timeout_ms()}"

    def expiry_message(self, what: str, phase: str) -> str:
        """``<what> cancelled after 15.2s in phase `restore`: deadline 15s (the scenario's RTO ...)``."""
        elapsed = format_duration(timedelta(seconds=self.elapsed()))
        return (f"{what} cancelled after {elapsed} in phase `{phase}`: "
                f"past its deadline of {self.limit.describe()}")


class Watchdog:
    """Calls ``on_expiry`` once, from a timer thread, if the block is still running at the deadline.

    For work that blocks the calling thread in a way no timeout argument reaches (psql being
    fed line by line blocks in ``write`` once its pipe is full).
    """

    def __init__(self, deadline: Deadline, on_expiry: Callable[[], None]) -> None:
        self._on_expiry = on_expiry
        self.fired = threading.Event()
        self._timer = threading.Timer(deadline.remaining(), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired.set()
        self._on_expiry()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()
        # A firing that already began must finish (the kill) before the caller inspects the child.
        if self._timer.is_alive() and self.fired.is_set():
            self._timer.join()


def kill_process_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a child started with ``start_new_session=True`` and every process it forked.

    ``pg_restore -j N`` works through forked workers: killing the parent alone leaves them.
    """
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing to stop
        os.killpg(proc.pid, signal.SIGKILL)


def terminate_sessions(dsn: str, *, wait_s: float = TERMINATE_WAIT_S) -> int:
    """End every other session of the database ``dsn`` names; wait until they are gone.

    Connects as the database's own role, which may signal its own sessions (the restore and
    replay run as that role), so no superuser is needed. Returns how many were terminated.
    Raises ``psycopg.Error`` when the server cannot be reached (the caller journals it; the
    scratch database's ``DROP ... WITH (FORCE)`` in cleanup is the second line).
    """
    query = ("SELECT pid FROM pg_catalog.pg_stat_activity"
             " WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        pids = [int(row[0]) for row in conn.execute(query).fetchall()]
        for pid in pids:
            conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,))
        end = time.monotonic() + wait_s
        while conn.execute(query).fetchone() is not None and time.monotonic() < end:
            time.sleep(_POLL_S)
    return len(pids)
