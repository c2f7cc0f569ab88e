"""drillbook.toml `[run]` deadlines: restore_timeout, migration_timeout, query_timeout."""

from __future__ import annotations

from datetime import timedelta

import pytest

from checks.errors import ConfigError
from drills import deadlines
from drills.config import parse_config
from drills.deadlines import Limit


class TestTimeoutKeys:
    def test_durations_are_read_as_runbooks_write_them(self) -> None:
        """`"90s"`, `"30m"`, `"1h"` become durations; an unset key is absent (the default applies)."""
        config = parse_config('[run]\nrestore_timeout = "1h"\nquery_timeout = "90s"\n', path=None, environ={})
        assert config.timeouts == {"restore_timeout": timedelta(hours=1),
                                   "query_timeout": timedelta(seconds=90)}
        assert "migration_timeout" not in config.timeouts

    @pytest.mark.parametrize("value", ['"soon"', '"0s"', "30"])
    def test_a_bad_duration_names_the_key(self, value: str) -> None:
        """Not a duration, zero, or not a string: a ConfigError naming `run.restore_timeout`."""
        with pytest.raises(ConfigError, match=r"run\.restore_timeout"):
            parse_config(f"[run]\nrestore_timeout = {value}\n", path=None, environ={})


class TestLimit:
    def test_rto_gets_a_margin_of_half_at_least_ten_seconds(self) -> None:
        """The RTO plus max(50 %, 10 s): 5 s becomes 15 s, 10 min becomes 15 min."""
        assert Limit.from_rto(timedelta(seconds=5)).seconds == 15
        assert Limit.from_rto(timedelta(minutes=10)).seconds == 900
        assert Limit.from_rto(timedelta(seconds=5)).describe() == (
            "15.0s (the scenario's RTO 5.0s + 10.0s margin)")

    def test_configured_or_default(self) -> None:
        """A configured value names its key; without one the built-in default applies."""
        assert Limit.configured(timedelta(minutes=2), key="restore_timeout", default_s=1).describe() == (
            "2m 00s ([run] restore_timeout)")
        default = Limit.configured(None, key="restore_timeout", default_s=deadlines.DEFAULT_RESTORE_TIMEOUT_S)
        assert default.seconds == 3600 and default.source == "the default restore_timeout"
