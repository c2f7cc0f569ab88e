"""Waivers: validated at start-up naming the line; a failed verdict under an active waiver is waived."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.verdict import Outcome, Verdict, VerdictFailed, record, recording
from checks.waivers import WaiverError, apply_waiver, check_known, load_waivers

GOOD = """\
# Approved in CAB-2211
[[waiver]]
id = "BKP-03"
justification = "New storage array: RTO re-baselined in CHG-1234"
author = "alice@example.com"
approver = "bob@example.com"
risk = "medium"
start = 2026-11-01
expiry = 2026-12-31

[[waiver]]
id = "BKP-01"
check = "restore.rto"
justification = "Restore host being replaced"
author = "carol"
approver = "dave"
risk = "high"
start = 2026-10-01
expiry = 2026-10-31
"""

TODAY = date(2026, 11, 22)


def broken(**changes: str | None) -> str:
    """GOOD's first waiver with keys replaced (value text) or removed (None)."""
    lines = GOOD.splitlines()
    out = []
    for line in lines:
        key = line.split("=")[0].strip()
        if key in changes and lines.index(line) < 10:
            value = changes[key]
            if value is not None:
                out.append(f"{key} = {value}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


class TestLoading:
    def test_good_file_loads_with_lines(self) -> None:
        waivers = load_waivers(GOOD, source="waivers.toml")
        assert [(w.id, w.line, w.check) for w in waivers] == [
            ("BKP-03", 2, None), ("BKP-01", 11, "restore.rto")]
        assert waivers[0].expiry == date(2026, 12, 31)

    def test_approver_equal_to_author_is_refused_naming_the_line(self) -> None:
        with pytest.raises(WaiverError) as caught:
            load_waivers(broken(approver='"Alice@Example.com"'), source="w.toml")
        assert str(caught.value).startswith("w.toml:6: waiver: the approver must differ from the author")
        assert caught.value.hint

    def test_missing_key_names_the_waiver_header_line(self) -> None:
        with pytest.raises(WaiverError, match=r"^w\.toml:2: waiver: `justification` is required"):
            load_waivers(broken(justification=None), source="w.toml")

    @pytest.mark.parametrize(("changes", "line", "text"), [
        ({"risk": '"severe"'}, 7, "`risk` must be one of low, medium, high, critical"),
        ({"expiry": "2026-10-01"}, 9, "`expiry` 2026-10-01 is before `start` 2026-11-01"),
        ({"start": '"2026-11-01"'}, 8, "`start` must be a TOML date"),
        ({"start": "2026-11-01T10:00:00"}, 8, "`start` must be a TOML date"),
        ({"author": '""'}, 5, "`author` must be a non-empty string"),
        ({"id": '"BKP 03"'}, 3, "`id` must be a scenario id"),
    ])
    def test_bad_values_name_their_line(self, changes: dict[str, str], line: int, text: str) -> None:
        with pytest.raises(WaiverError) as caught:
            load_waivers(broken(**changes), source="w.toml")
        assert str(caught.value).startswith(f"w.toml:{line}: waiver: {text}")

    def test_unknown_key_is_named(self) -> None:
        text = GOOD.replace('risk = "medium"', 'risk = "medium"\nreviewer = "x"')
        with pytest.raises(WaiverError, match=r"^w\.toml:8: waiver: unknown key `reviewer`"):
            load_waivers(text, source="w.toml")

    def test_invalid_toml_names_the_line(self) -> None:
        text = GOOD.replace('risk = "medium"', "risk = medium")
        with pytest.raises(WaiverError, match=r"^w\.toml:7: not valid TOML"):
            load_waivers(text, source="w.toml")

    def test_unknown_top_level_key(self) -> None:
        with pytest.raises(WaiverError, match="unknown top-level key `waivers`"):
            load_waivers('[[waivers]]\nid = "X"\n', source="w.toml")

    def test_unknown_scenario_id_is_named(self) -> None:
        waivers = load_waivers(GOOD, source="w.toml")
        with pytest.raises(WaiverError) as caught:
            check_known(waivers, {"BKP-03"})
        assert str(caught.value).startswith("w.toml:11: waiver for unknown scenario id 'BKP-01'")

    def test_empty_file_has_no_waivers(self) -> None:
        assert load_waivers("", source="w.toml") == []

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=300))
    def test_arbitrary_text_is_a_waiver_error_or_waivers(self, text: str) -> None:
        """Whatever the file holds, loading never fails with anything but WaiverError."""
        try:
            load_waivers(text, source="w.toml")
        except WaiverError as exc:
            assert str(exc).startswith("w.toml")

    @settings(max_examples=100, deadline=None)
    @given(st.dictionaries(st.sampled_from(["id", "justification", "author", "approver", "risk", "start",
                                            "expiry", "check", "extra"]),
                           st.one_of(st.text(max_size=10), st.integers(), st.dates(), st.booleans()),
                           max_size=9))
    def test_any_table_shape_is_validated(self, table: dict[str, object]) -> None:
        """Tables of random keys and types: loaded only if every rule holds, else a WaiverError."""
        import tomllib

        def toml_value(value: object) -> str:
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, str):
                return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
            return str(value)

        text = "[[waiver]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return
        try:
            [waiver] = load_waivers(text, source="w.toml")
        except WaiverError:
            return
        assert waiver.author.casefold() != waiver.approver.casefold()
        assert waiver.start <= waiver.expiry


class TestApplying:
    waivers = load_waivers(GOOD, source="w.toml")

    def test_failed_verdict_under_active_waiver_is_waived_with_the_waiver_in_evidence(self) -> None:
        verdict = Verdict.failed("restore.rto", "restore took 40m, limit 30m")
        waived = apply_waiver(verdict, "BKP-03", self.waivers, today=TODAY)
        assert waived.outcome is Outcome.WAIVED
        assert waived.evidence["waiver"]["approver"] == "bob@example.com"
        assert waived.evidence["waiver"]["source"] == "w.toml:2"
        assert waived.evidence["waived_outcome"] == "failed"
        assert "WAIVED until 2026-12-31 (medium risk)" in waived.message

    def test_expired_waiver_lets_the_failure_count_again(self) -> None:
        verdict = Verdict.failed("restore.rto", "restore took 40m")
        kept = apply_waiver(verdict, "BKP-01", self.waivers, today=TODAY)
        assert kept.outcome is Outcome.FAILED
        assert kept.evidence["waiver_not_applied"]["state"] == "expired"
        assert "waiver expired" in kept.message

    def test_waiver_not_yet_started(self) -> None:
        kept = apply_waiver(Verdict.failed("x", "m"), "BKP-03", self.waivers, today=date(2026, 10, 1))
        assert kept.outcome is Outcome.FAILED
        assert kept.evidence["waiver_not_applied"]["state"] == "not yet in force"

    def test_expiry_day_itself_is_covered(self) -> None:
        waived = apply_waiver(Verdict.failed("x", "m"), "BKP-03", self.waivers, today=date(2026, 12, 31))
        assert waived.outcome is Outcome.WAIVED

    def test_waiver_scoped_to_a_check_leaves_other_checks_failing(self) -> None:
        waivers = load_waivers(GOOD.replace("2026-10-31", "2026-12-31"), source="w.toml")
        other = apply_waiver(Verdict.failed("backup.freshness", "m"), "BKP-01", waivers, today=TODAY)
        scoped = apply_waiver(Verdict.failed("restore.rto", "m"), "BKP-01", waivers, today=TODAY)
        assert (other.outcome, scoped.outcome) == (Outcome.FAILED, Outcome.WAIVED)

    @pytest.mark.parametrize("outcome", [
        Outcome.ERROR, Outcome.PASSED, Outcome.WARNING, Outcome.NOT_APPLICABLE])
    def test_only_failed_verdicts_are_waived(self, outcome: Outcome) -> None:
        """"Could not check" (error) is never waived: a waiver accepts a known shortfall."""
        verdict = Verdict("restore.rto", outcome, "m")
        assert apply_waiver(verdict, "BKP-03", self.waivers, today=TODAY) is verdict

    def test_other_scenarios_are_untouched(self) -> None:
        verdict = Verdict.failed("restore.rto", "m")
        assert apply_waiver(verdict, "BKP-99", self.waivers, today=TODAY) is verdict
        assert apply_waiver(verdict, None, self.waivers, today=TODAY) is verdict


class TestRecord:
    def test_record_judges_the_verdict_the_recorder_hands_back(self) -> None:
        """The plugin's recorder waives; record() stays the one place that fails, on the waived verdict."""
        seen: list[Verdict] = []
        waivers = load_waivers(GOOD, source="w.toml")

        def recorder(verdict: Verdict) -> Verdict:
            verdict = apply_waiver(verdict, "BKP-03", waivers, today=TODAY)
            seen.append(verdict)
            return verdict

        with recording(recorder):
            result = record(Verdict.failed("restore.rto", "too slow"))
            assert result.outcome is Outcome.WAIVED
            with pytest.raises(VerdictFailed):
                record(Verdict.error("restore.rto", "unreachable"))
        assert [v.outcome for v in seen] == [Outcome.WAIVED, Outcome.ERROR]


class TestConfigKeys:
    """`[run] waivers` and `[ledger]` in drillbook.toml, with the strict unknown-key validation."""

    def test_waivers_path_is_relative_to_the_config_file(self) -> None:
        from pathlib import Path

        from drills.config import parse_config

        config = parse_config('[run]\nwaivers = "ops/waivers.toml"\n[ledger]\nurl = "ledger.jsonl"\n',
                              path=Path("/etc/drillbook/drillbook.toml"), environ={})
        assert config.waivers == Path("/etc/drillbook/ops/waivers.toml")
        assert config.ledger_url == "ledger.jsonl"

    def test_unknown_ledger_key_is_named(self) -> None:
        from checks.errors import ConfigError
        from drills.config import parse_config

        with pytest.raises(ConfigError, match=r"unknown key `ledger\.path`"):
            parse_config('[ledger]\npath = "x"\n', path=None, environ={})

    def test_s3_options_need_an_s3_url(self) -> None:
        from checks.errors import ConfigError
        from drills.config import parse_config

        with pytest.raises(ConfigError, match=r"`ledger\.endpoint_url` applies only to an s3://"):
            parse_config('[ledger]\nurl = "l.jsonl"\nendpoint_url = "http://x"\n', path=None, environ={})

    def test_s3_secret_comes_from_the_environment_and_is_redacted(self) -> None:
        from checks import redact
        from drills.config import parse_config

        try:
            config = parse_config('[ledger]\nurl = "s3://b/p/"\nsecret_access_key = "${LEDGER_KEY}"\n',
                                  path=None, environ={"LEDGER_KEY": "k3y-from-env-1"})
            assert config.ledger_s3["secret_access_key"] == "k3y-from-env-1"
            assert redact.redact("k3y-from-env-1") == "***"
        finally:
            redact.clear()
