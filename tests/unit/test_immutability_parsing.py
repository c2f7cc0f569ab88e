"""Immutable backups: what drillbook parses (lock configurations, retain-until dates, probe keys)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.errors import ConfigError
from checks.immutability import (
    DAYS_PER_YEAR,
    RETAIN_UNTIL_SLACK,
    LockConfiguration,
    check_probe_prefix,
    check_role_arn,
    object_verdict,
    parse_lock_configuration,
    parse_retain_until,
    versioning_verdict,
)
from checks.verdict import Outcome
from drills.config import load_config
from drills.immutability_probe import marker_key

MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                  timezone(timedelta(hours=-8))]))
SEGMENTS = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,12}", fullmatch=True)


class TestParsing:
    @given(MOMENTS)
    def test_retain_until_from_datetime_or_text_is_the_same_utc_moment(self, moment: datetime) -> None:
        for value in (moment, moment.isoformat(), moment.astimezone(UTC).isoformat().replace("+00:00", "Z")):
            parsed = parse_retain_until(value)
            assert parsed == moment and parsed.tzinfo is UTC

    @given(st.one_of(st.integers(), st.none(), st.text(max_size=20).filter(lambda t: not t[:4].isdigit())))
    def test_retain_until_rejects_what_is_not_a_date(self, value: object) -> None:
        with pytest.raises(ValueError):
            parse_retain_until(value)

    @given(st.sampled_from(["COMPLIANCE", "GOVERNANCE"]), st.integers(0, 3650), st.integers(0, 10))
    def test_lock_configuration_days_and_years(self, mode: str, days: int, years: int) -> None:
        rule = {"DefaultRetention": {"Mode": mode, "Days": days, "Years": years}}
        answer = {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": rule}}
        lock = parse_lock_configuration(answer)
        total = days + DAYS_PER_YEAR * years
        assert lock == LockConfiguration(enabled=True, mode=mode, days=total or None)

    @given(st.dictionaries(st.sampled_from(["ObjectLockEnabled", "Rule", "Other"]),
                           st.one_of(st.none(), st.just("Disabled"), st.just({}), st.integers(),
                                     st.just({"DefaultRetention": "x"}))))
    def test_lock_configuration_without_enabled_is_disabled(self, config: dict[str, object]) -> None:
        assert parse_lock_configuration({"ObjectLockConfiguration": config}).enabled is False

    def test_versioning_states(self) -> None:
        enabled = versioning_verdict({"Status": "Enabled", "MFADelete": "Enabled"}, "b", "w")
        assert enabled.outcome is Outcome.PASSED and "MFA delete Enabled" in enabled.message
        suspended = versioning_verdict({"Status": "Suspended"}, "b", "w")
        assert suspended.outcome is Outcome.FAILED and "suspended" in suspended.message
        assert "never enabled" in versioning_verdict({}, "b", "w").message


class TestObjectRetention:
    NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)

    @given(st.integers(1, 400), st.integers(0, 400), st.integers(0, 30 * 24))
    def test_passes_exactly_when_granted_days_reach_the_asked(self, asked: int, granted: int,
                                                              age_h: int) -> None:
        written = self.NOW - timedelta(hours=age_h)
        until = written + timedelta(days=granted)
        head = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until, "LastModified": written}
        verdict = object_verdict(head, "k", "w", days=asked, now=self.NOW)
        expected = Outcome.PASSED if granted >= asked and until > self.NOW else Outcome.FAILED
        assert verdict.outcome is expected, verdict.message

    def test_slack_covers_second_rounding_only(self) -> None:
        written = self.NOW - timedelta(hours=1)
        head = {"ObjectLockMode": "COMPLIANCE", "LastModified": written,
                "ObjectLockRetainUntilDate": written + timedelta(days=30) - RETAIN_UNTIL_SLACK / 2}
        assert object_verdict(head, "k", "w", days=30, now=self.NOW).outcome is Outcome.PASSED
        head["ObjectLockRetainUntilDate"] = written + timedelta(days=30) - 2 * RETAIN_UNTIL_SLACK
        assert object_verdict(head, "k", "w", days=30, now=self.NOW).outcome is Outcome.FAILED

    def test_legal_hold_alone_is_a_warning(self) -> None:
        verdict = object_verdict({"ObjectLockLegalHoldStatus": "ON"}, "k", "w", days=30, now=self.NOW)
        assert verdict.outcome is Outcome.WARNING and "legal hold" in verdict.message


class TestProbeKeys:
    @given(st.lists(SEGMENTS, min_size=1, max_size=4))
    def test_prefixes_outside_the_store_are_accepted(self, parts: list[str]) -> None:
        # "~" is outside the segments' alphabet: the two prefixes can never overlap.
        assert check_probe_prefix("/".join(parts) + "/", store_prefix="~backups/") is None

    @given(st.lists(SEGMENTS, max_size=3), st.sampled_from(["", ".", ".."]), st.lists(SEGMENTS, max_size=3))
    def test_bad_segments_are_refused(self, head: list[str], bad: str, tail: list[str]) -> None:
        assert check_probe_prefix("/".join([*head, bad, *tail]) + "/", store_prefix="") is not None

    @pytest.mark.parametrize("prefix", ["probes", "/probes/", "db/probes/", "db/", "x\n/"])
    def test_refused(self, prefix: str) -> None:
        assert check_probe_prefix(prefix, store_prefix="db/") is not None

    @given(st.from_regex(r"[a-z0-9+=,.@_-]{1,30}(/[a-z0-9+=,.@_-]{1,20})?", fullmatch=True))
    def test_role_arns(self, name: str) -> None:
        assert check_role_arn(f"arn:aws:iam::123456789012:role/{name}") is None
        assert check_role_arn(f"arn:aws:iam::123456789012:user/{name}") is not None
        assert check_role_arn(f"arn:aws:iam::12345:role/{name}") is not None

    @given(st.text(min_size=1, max_size=60))
    def test_marker_key_stays_under_the_prefix(self, run_id: str) -> None:
        key = marker_key("probes/", run_id)
        assert key.startswith("probes/drillbook-probe/")
        assert "/" not in key.removeprefix("probes/drillbook-probe/")
        assert ".." not in key.split("/") and all(ord(ch) >= 0x20 for ch in key)


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "drillbook.toml"
    path.write_text('[targets.vault]\nkind = "s3"\nurl = "s3://bk/db/"\n' + extra, encoding="utf-8")
    return path


class TestConfig:
    def test_both_keys_from_the_environment(self, tmp_path: Path) -> None:
        path = _config(tmp_path, 'probe_role_arn = "${ROLE}"\nprobe_prefix = "probes/"\n')
        spec = load_config(path, environ={"ROLE": "arn:aws:iam::123456789012:role/backup"}).stores["vault"]
        assert spec.probe_role_arn == "arn:aws:iam::123456789012:role/backup"
        assert spec.probe_prefix == "probes/"

    @pytest.mark.parametrize(("extra", "key"), [
        ('probe_prefix = "probes/"\n', "targets.vault.probe_role_arn"),
        ('probe_role_arn = "arn:aws:iam::123456789012:role/b"\n', "targets.vault.probe_prefix"),
        ('probe_role_arn = "arn:aws:iam::1:role/b"\nprobe_prefix = "probes/"\n',
         "targets.vault.probe_role_arn"),
        ('probe_role_arn = "arn:aws:iam::123456789012:role/b"\nprobe_prefix = "db/p/"\n',
         "targets.vault.probe_prefix"),
    ])
    def test_refused_naming_the_key(self, tmp_path: Path, extra: str, key: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_config(_config(tmp_path, extra), environ={})
        assert caught.value.context.get("key") == key

    def test_whole_bucket_store_needs_a_key_pattern(self, tmp_path: Path) -> None:
        """Else the probe's marker could be taken for the newest backup."""
        path = tmp_path / "drillbook.toml"
        probe = 'probe_role_arn = "arn:aws:iam::123456789012:role/b"\nprobe_prefix = "probes/"\n'
        path.write_text('[targets.vault]\nkind = "s3"\nurl = "s3://bk/"\n' + probe, encoding="utf-8")
        with pytest.raises(ConfigError, match="not the whole bucket"):
            load_config(path, environ={})
        path.write_text('[targets.vault]\nkind = "s3"\nurl = "s3://bk/"\nkey_pattern = "db-%Y%m%d.dump"\n'
                        + probe, encoding="utf-8")
        assert load_config(path, environ={}).stores["vault"].probe_prefix == "probes/"

    def test_directory_store_has_no_probe_keys(self, tmp_path: Path) -> None:
        path = tmp_path / "drillbook.toml"
        path.write_text('[targets.d]\nkind = "directory"\npath = "."\nprobe_prefix = "p/"\n',
                        encoding="utf-8")
        with pytest.raises(ConfigError, match=r"unknown key `targets\.d\.probe_prefix`"):
            load_config(path, environ={})
