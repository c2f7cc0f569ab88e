"""Ctrl-C and SIGTERM, remembered as well as raised.

A ``KeyboardInterrupt`` can be lost: Python swallows one that lands while a
finalizer (``__del__``, a weakref callback) runs, and prints only "Exception
ignored". A run that lost the user's Ctrl-C would go on and end in PASS. The
handler therefore also records the signal; the plugin stops before the next
scenario and the runner reports the run as interrupted, whatever pytest saw.
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def install() -> None:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt`` and leave a record (main thread only)."""
    forget()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def received() -> str | None:
    """The name of the first interrupting signal this process received, if any."""
    return signal.Signals(_received[0]).name if _received else None


def forget() -> None:
    """Clear the record (tests, and a process that runs several commands)."""
    _received.clear()
