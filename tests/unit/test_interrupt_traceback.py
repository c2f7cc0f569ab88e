"""Ctrl-C must unwind as "interrupted" even when Python gives a frame no line number."""

from __future__ import annotations

import sys
from types import FrameType, TracebackType

import pytest

from drillbook.plugin import printable_traceback

# Far past the end of any small function's bytecode: CPython 3.11 maps it to no line.
NO_LINE_LASTI = 10_000


def _here() -> FrameType:
    return sys._getframe()


def _interrupt_with_lineless_frame(*, chained: bool) -> pytest.ExceptionInfo[BaseException]:
    frame = _here()
    lineless = TracebackType(None, frame, NO_LINE_LASTI, -1)
    if lineless.tb_lineno is not None:  # pragma: no cover - depends on the interpreter
        pytest.skip("this Python always finds a line number; nothing to reproduce")
    exc = KeyboardInterrupt()
    if chained:
        cause = RuntimeError("teardown")
        cause.__traceback__ = TracebackType(None, frame, NO_LINE_LASTI, -1)
        exc.__context__ = cause
    exc.__traceback__ = TracebackType(lineless, frame, 0, -1)
    return pytest.ExceptionInfo.from_exception(exc)


def test_the_lineless_frame_breaks_pytest_rendering() -> None:
    """The reproduction: without the fix pytest's own renderer raises TypeError."""
    excinfo = _interrupt_with_lineless_frame(chained=False)
    with pytest.raises(TypeError):
        excinfo.getrepr(funcargs=True)


@pytest.mark.parametrize("chained", [False, True])
def test_printable_traceback_renders(chained: bool) -> None:
    excinfo = _interrupt_with_lineless_frame(chained=chained)
    printable_traceback(excinfo)
    text = str(excinfo.getrepr(funcargs=True))
    assert "KeyboardInterrupt" in text
    # Every frame now has a line: the chain's cause too.
    tb = excinfo.value.__traceback__
    while tb is not None:
        assert tb.tb_lineno is not None
        tb = tb.tb_next
    if chained:
        assert "RuntimeError" in text
