"""pg_controldata's output → the settings a hot standby of that cluster needs (checks/controldata.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks import controldata
from drills.physical import recovery

# Real output of PostgreSQL 15's pg_controldata (the lines that matter, and neighbours).
SAMPLE = """\
pg_control version number:            1300
Database cluster state:               in production
wal_level setting:                    replica
wal_log_hints setting:                off
max_connections setting:              150
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           128
track_commit_timestamp setting:       off
"""


def test_only_settings_above_the_defaults_are_raised() -> None:
    assert controldata.standby_settings(controldata.parse(SAMPLE)) == {
        "max_connections": "150", "max_locks_per_transaction": "128"}


def test_a_value_beyond_the_bound_is_refused_naming_it() -> None:
    fields = controldata.parse(SAMPLE.replace("150", "5000000"))
    with pytest.raises(controldata.TooLarge, match=r"max_connections = 5000000 \(drillbook allows at most"):
        controldata.standby_settings(fields)


@given(st.text(max_size=2000))
def test_any_text_parses_and_raises_only_known_settings(text: str) -> None:
    try:
        raised = controldata.standby_settings(controldata.parse(text))
    except controldata.TooLarge as exc:
        assert exc.value > exc.limit
        return
    known = {setting for setting, _, _ in controldata.STANDBY_SETTINGS.values()}
    assert set(raised) <= known
    assert all(value.isdigit() for value in raised.values())


@given(st.dictionaries(st.sampled_from(sorted(controldata.STANDBY_SETTINGS)),
                       st.integers(min_value=0, max_value=20_000)))
def test_each_setting_is_the_backups_when_above_the_default(values: dict[str, int]) -> None:
    text = "".join(f"{label}: {value}\n" for label, value in values.items())
    try:
        raised = controldata.standby_settings(controldata.parse(text))
    except controldata.TooLarge as exc:
        assert exc.value > exc.limit
        return
    for label, value in values.items():
        setting, default, _ = controldata.STANDBY_SETTINGS[label]
        assert raised.get(setting) == (str(value) if value > default else None)


def test_a_setting_raised_after_the_backup_is_named() -> None:
    """The server's own words (PostgreSQL 15) when WAL raises a setting past the one it runs with."""
    log = ("FATAL:  recovery aborted because of insufficient parameter settings\n"
           "DETAIL:  max_connections = 150 is a lower setting than on the primary server, where its "
           "value was 200.\n")
    found = recovery._INSUFFICIENT.search(log)
    assert found is not None and found.groups() == ("max_connections", "200")
