"""The doctor's parts that need no server: running checks, one line each, and the pure verdicts."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from checks.backups import BackupObject
from checks.errors import TargetUnreachable
from checks.pg_health import read_only_options, refused_credentials
from checks.pg_privileges import relation_findings
from checks.verdict import Outcome, Verdict
from drillbook.doctor.base import Check, as_json, failed, render, result, run_checks
from drillbook.doctor.environment import existing_base, local_ledger, probe_writable
from drillbook.doctor.postgres import clock_verdict
from drillbook.doctor.targets import buildinfo_version, store_verdict

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class TestRunChecks:
    def test_a_check_that_raises_is_a_fail_naming_it_and_the_others_still_run(self) -> None:
        def broken() -> Verdict:
            raise TargetUnreachable("`cache` is unreachable: connection refused", hint="start redis-server")

        verdicts = list(run_checks([Check("a", lambda: result("a", Outcome.PASSED, "fine")),
                                    Check("b", broken),
                                    Check("c", lambda: result("c", Outcome.WARNING, "hm", fix="do x"))]))
        assert [(v.id, v.outcome) for v in verdicts] == [("a", Outcome.PASSED), ("b", Outcome.ERROR),
                                                         ("c", Outcome.WARNING)]
        assert render(verdicts[1]) == ["FAIL  b: `cache` is unreachable: connection refused",
                                       "      fix: start redis-server"]

    def test_an_unexpected_exception_names_its_type(self) -> None:
        def buggy() -> Verdict:
            raise KeyError("version")

        (verdict,) = run_checks([Check("x", buggy)])
        assert verdict.outcome is Outcome.ERROR
        assert verdict.message == "KeyError: 'version'"

    def test_a_check_that_hangs_is_a_fail_at_the_deadline(self) -> None:
        """The report does not wait for it; it is named as having given no answer."""
        release = threading.Event()

        def hangs() -> Verdict:
            release.wait(30)
            return result("slow", Outcome.PASSED, "late")

        try:
            verdicts = list(run_checks([Check("slow", hangs), Check("quick", lambda: result(
                "quick", Outcome.PASSED, "ok"))], deadline_s=0.2))
        finally:
            release.set()
        assert [(v.id, v.outcome) for v in verdicts] == [("slow", Outcome.ERROR), ("quick", Outcome.PASSED)]
        assert verdicts[0].message == "no answer within 0.2 s"

    def test_warnings_pass_failures_fail(self) -> None:
        warn = result("w", Outcome.WARNING, "m", fix="f")
        assert not failed([warn, result("p", Outcome.PASSED, "m")])
        assert failed([warn, result("e", Outcome.ERROR, "m")])
        assert failed([result("f", Outcome.FAILED, "m")])

    def test_json_has_name_outcome_message_and_fix(self) -> None:
        rows = as_json([result("ledger writable", Outcome.FAILED, "read-only", fix="point it elsewhere"),
                        result("clock", Outcome.PASSED, "in step", fix="not shown on a pass")])
        assert rows == [
            {"name": "ledger writable", "outcome": "fail", "verdict": "failed", "message": "read-only",
             "fix": "point it elsewhere"},
            {"name": "clock", "outcome": "pass", "verdict": "passed", "message": "in step", "fix": ""}]
        json.dumps(rows)


@given(name=st.text(min_size=1), message=st.text(), fix=st.text(),
       outcome=st.sampled_from(list(Outcome)))
def test_every_check_is_one_line_and_a_fix_line_at_most(name: str, message: str, fix: str,
                                                        outcome: Outcome) -> None:
    """Whatever a server's error holds (line breaks included), a check prints one line, plus its fix."""
    lines = render(result(name, outcome, message, fix=fix))
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert lines[0].split("  ", 1)[0] in ("PASS", "WARN", "FAIL")
    assert len(lines) <= 2
    assert len(lines) == 1 or lines[1].startswith("      fix: ")


class TestClock:
    @given(seconds=st.floats(min_value=-86_400, max_value=86_400, allow_nan=False))
    def test_outcome_follows_the_size_of_the_skew(self, seconds: float) -> None:
        skew = timedelta(seconds=seconds)  # microseconds: what a datetime can carry
        verdict = clock_verdict("clock", local=NOW, server=NOW + skew, target="db")
        size = abs(skew.total_seconds())
        expected = (Outcome.FAILED if size > 600 else Outcome.WARNING if size > 60 else Outcome.PASSED)
        assert verdict.outcome is expected
        assert verdict.evidence["skew_s"] == skew.total_seconds()

    def test_the_message_says_which_way(self) -> None:
        ahead = clock_verdict("clock", local=NOW, server=NOW + timedelta(seconds=90), target="db")
        behind = clock_verdict("clock", local=NOW, server=NOW - timedelta(minutes=11), target="db")
        assert ahead.message == "`db`'s clock is 90.0 s ahead of this machine's (UTC): more than 60 s"
        assert behind.message == "`db`'s clock is 11.0 min behind this machine's (UTC): more than 10 min"
        assert "NTP" in str(behind.evidence["fix"])


class TestBuildInfo:
    def test_the_version_of_a_prometheus_answer(self) -> None:
        assert buildinfo_version({"status": "success", "data": {"version": "2.42.0+ds"}}) == "2.42.0+ds"

    @given(document=st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                                 lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
    def test_any_json_gives_a_short_version_or_none(self, document: object) -> None:
        """Outside input: never raises, never returns more than a short string."""
        version = buildinfo_version(document)
        assert version is None or (isinstance(version, str) and 0 < len(version) <= 64)


class TestStoreVerdict:
    def obj(self, key: str, age_h: float = 1) -> BackupObject:
        return BackupObject(key=key, size=10, last_modified=NOW - timedelta(hours=age_h))

    def test_counts_the_matches_and_names_the_newest_by_the_date_in_the_key(self) -> None:
        objects = [self.obj("db/app_20261201.sql", 1), self.obj("db/app_20261202.sql", 50),
                   self.obj("db/app_20261202.sql.sha256"), self.obj("db/readme.txt")]
        verdict = store_verdict("s", "s3://b/db/", objects, key_pattern="app_%Y%m%d.sql", now=NOW)
        assert verdict.outcome is Outcome.PASSED
        assert verdict.message == ("s3://b/db/: 2 keys match key_pattern 'app_%Y%m%d.sql'; newest "
                                   "db/app_20261202.sql (36h old)")

    def test_nothing_matching_is_a_fail_with_the_fix(self) -> None:
        verdict = store_verdict("s", "/backups", [self.obj("dump.sql")], key_pattern="app_%Y%m%d.sql",
                                now=NOW)
        assert verdict.outcome is Outcome.FAILED
        assert "none of its 1 keys matches key_pattern 'app_%Y%m%d.sql'" in verdict.message
        assert "key_pattern" in str(verdict.evidence["fix"])


def test_relation_findings_name_each_privilege_and_ownership() -> None:
    rows = [("public.a", True, True, False, False, False), ("public.b", True, False, False, False, True),
            ("s.c", True, False, False, False, False), ("s.d", True, False, False, False, False)]
    assert relation_findings(rows) == [
        "it has INSERT on 4 relations (public.a, public.b, s.c, …)",
        "it has UPDATE on 1 relation (public.a)",
        "it owns 1 relation (public.b): it could alter or drop them",
    ]
    assert relation_findings([]) == []


@given(options=st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40))
def test_a_read_only_session_keeps_the_dsns_own_options(options: str) -> None:
    """The DSN's options (outside input) survive; read-only, UTC and a statement timeout are added after."""
    dsn = psycopg.conninfo.make_conninfo("host=db.internal dbname=app", options=options) if options.strip() \
        else "host=db.internal dbname=app"
    added = read_only_options(dsn, statement_timeout_ms=10_000)
    assert added.startswith(options.strip())
    assert added.endswith("-c default_transaction_read_only=on -c TimeZone=UTC -c statement_timeout=10000")
    assert read_only_options(dsn).endswith("-c default_transaction_read_only=on -c TimeZone=UTC")


def test_refused_credentials_are_told_from_silence() -> None:
    """libpq's words for a refused password, against those of a server that does not answer."""
    assert refused_credentials('connection failed: FATAL:  password authentication failed for user "ro"')
    assert refused_credentials("fe_sendauth: no password supplied")
    assert not refused_credentials("connection failed: Connection refused\n\tIs the server running")
    assert not refused_credentials("connection timeout expired")


class TestWritableProbes:
    def test_a_missing_directory_is_judged_by_its_nearest_parent(self, tmp_path: Path) -> None:
        assert existing_base(tmp_path / "a" / "b") == tmp_path
        verdict = local_ledger("ledger writable", tmp_path / "a" / "b" / "ledger.jsonl")
        assert verdict.outcome is Outcome.PASSED
        assert not (tmp_path / "a").exists()
        assert list(tmp_path.iterdir()) == []

    def test_a_file_in_the_way_fails(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        verdict = local_ledger("ledger writable", tmp_path / "file" / "ledger.jsonl")
        assert verdict.outcome is Outcome.FAILED
        where = tmp_path / "file"
        assert verdict.message == f"ledger {where / 'ledger.jsonl'}: {where} is not a directory"

    def test_the_probe_leaves_nothing(self, tmp_path: Path) -> None:
        assert probe_writable(tmp_path) is None
        assert list(tmp_path.iterdir()) == []


class TestDoctorArguments:
    """`doctor` and `doctor ledger` share --config and --json: given before `ledger`, they hold."""

    def parse(self, *argv: str) -> tuple[object, object]:
        from drillbook.cli import build_parser

        args = build_parser().parse_args(["doctor", *argv])
        return args.config, args.json

    def test_before_or_after_ledger(self) -> None:
        assert self.parse("--json", "ledger", "--config", "a.toml") == (Path("a.toml"), True)
        assert self.parse("--config", "a.toml", "--json", "ledger") == (Path("a.toml"), True)
        assert self.parse("ledger", "--config", "a.toml", "--json") == (Path("a.toml"), True)
        assert self.parse("ledger", "--config", "a.toml") == (Path("a.toml"), False)

    def test_after_ledger_wins(self) -> None:
        assert self.parse("--config", "a.toml", "ledger", "--config", "b.toml") == (Path("b.toml"), False)

    def test_without_ledger(self) -> None:
        assert self.parse() == (None, False)
        assert self.parse("--json") == (None, True)


def test_the_s3_client_takes_short_timeouts() -> None:
    """doctor's S3 calls: the timeouts and attempts it asks for, not a run's 30 s and 3 attempts."""
    from drillbook.audit import s3_client

    config = s3_client({}, connect_timeout_s=3, read_timeout_s=4, max_attempts=1).meta.config
    assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (3, 4, 1)
    default = s3_client({}).meta.config
    assert (default.read_timeout, default.retries["total_max_attempts"]) == (30, 3)
