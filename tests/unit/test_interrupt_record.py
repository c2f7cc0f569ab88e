"""A Ctrl-C Python swallows is still remembered, and no scenario starts after it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from drillbook import interrupts, plugin

# A SIGINT that lands while a finalizer runs: Python prints "Exception ignored" and goes on.
SWALLOWED = textwrap.dedent("""
    import os, signal, sys
    from drillbook import interrupts

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):
                pass

    interrupts.install()
    item = Finalized()
    del item
    print("went on", interrupts.received())
""")


def test_a_swallowed_ctrl_c_is_remembered() -> None:
    """The reproduction and the defence: the program goes on, but the record says SIGINT."""
    done = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt" in done.stderr  # Python's own "Exception ignored in ... __del__"
    assert done.stdout.strip() == "went on SIGINT"


def test_no_record_without_a_signal() -> None:
    interrupts.forget()
    assert interrupts.received() is None


def test_no_scenario_starts_after_a_recorded_interrupt(request: pytest.FixtureRequest) -> None:
    """The plugin's setup hook raises KeyboardInterrupt, so pytest ends the run as interrupted."""
    interrupts.forget()
    plugin.pytest_runtest_setup(request.node)  # nothing recorded: the scenario may start
    interrupts._received.append(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            plugin.pytest_runtest_setup(request.node)
    finally:
        interrupts.forget()
