"""Duration parsing for step sentences and CLI options."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.durations import parse_duration


class TestParseDuration:
    @pytest.mark.parametrize(("text", "expected"), [
        ("26h", timedelta(hours=26)), ("30 minutes", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)), ("35 days", timedelta(days=35)),
        ("2w", timedelta(weeks=2)), ("1.5h", timedelta(minutes=90)),
    ])
    def test_runbook_forms(self, text: str, expected: timedelta) -> None:
        """The forms runbooks use parse to the duration they mean."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["", "26", "h", "26 parsecs", "-5h", "1h and 2m"])
    def test_rejects_with_the_text_named(self, text: str) -> None:
        """Anything else is an error that quotes the input."""
        with pytest.raises(ValueError, match="duration"):
            parse_duration(text)

    @given(st.integers(0, 10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
    def test_number_and_unit_round_trip(self, number: int, unit: str) -> None:
        """N<unit> is N times the unit."""
        size = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        assert parse_duration(f"{number}{unit}") == timedelta(seconds=number * size)

    @given(st.text(max_size=20))
    def test_never_crashes_on_garbage(self, text: str) -> None:
        """Outside input either parses or raises ValueError, nothing else."""
        with contextlib.suppress(ValueError):
            parse_duration(text)
