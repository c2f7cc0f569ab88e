"""Pure parts of the health checks: sizes, JSON paths, cron, heartbeats, audit files, certificates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks.audit_log import AuditFile, event_count, file_event_times, glob_to_like
from checks.durations import parse_duration
from checks.errors import UnusableAnswer
from checks.http_health import HttpResponse, endpoint_url, every_entry_equals, json_equals, resolve
from checks.prometheus_slo import parse_query_response
from checks.schedules import fire_times, heartbeat, match_occurrences, schedule_followed
from checks.thresholds import compare, format_size, parse_size
from checks.tls_certs import CertSource, chain_verifies, days_to_expiry, load_pem_chain, verify_pem
from checks.verdict import Outcome

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=10)


def response(document: Any, *, body: bytes | None = None) -> HttpResponse:
    raw = json.dumps(document).encode() if body is None else body
    return HttpResponse(target="api", url="https://api.test/health", status=200, body=raw,
                        latency=timedelta(milliseconds=5), content_type="application/json")


class TestSizes:
    @pytest.mark.parametrize(("text", "size"), [
        ("50 GB", 50 * 1024**3), ("500MB", 500 * 1024**2), ("1.5 TB", int(1.5 * 1024**4)),
        ("10 kB", 10 * 1024), ("2 GiB", 2 * 1024**3), ("123 bytes", 123), ("7 B", 7),
    ])
    def test_sizes_as_postgresql_prints_them(self, text: str, size: int) -> None:
        """kB, MB, GB and TB are 1024-based, as pg_size_pretty shows them; IEC names mean the same."""
        assert parse_size(text) == size

    @pytest.mark.parametrize("text", ["", "GB", "50", "50 parsecs", "-1 GB", "5 GB extra"])
    def test_not_a_size_is_named(self, text: str) -> None:
        """Anything else is a ValueError quoting the text and an example."""
        with pytest.raises(ValueError, match="size"):
            parse_size(text)

    @given(number=st.integers(min_value=0, max_value=10**6),
           unit=st.sampled_from(["B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"]),
           space=st.sampled_from(["", " ", "  "]))
    def test_every_whole_size_parses_to_its_bytes(self, number: int, unit: str, space: str) -> None:
        """n UNIT is n times the unit's power of 1024, with or without a space, in any case."""
        power = {"B": 0, "kB": 1, "MB": 2, "GB": 3, "TB": 4, "KiB": 1, "MiB": 2, "GiB": 3, "TiB": 4}[unit]
        assert parse_size(f"{number}{space}{unit.upper()}") == number * 1024**power

    def test_format_size_reads_like_pg_size_pretty(self) -> None:
        """Sizes in messages read as a DBA would see them."""
        assert format_size(8 * 1024**2) == "8.0 MB"
        assert format_size(50 * 1024**3) == "50 GB"

    def test_comparisons_never_hold_for_nan(self) -> None:
        """NaN compares false with every word; an unknown word is named."""
        assert not compare(float("nan"), "at most", 1)
        with pytest.raises(ValueError, match="at least"):
            compare(1, "roughly", 1)


class TestLatencyLimits:
    @pytest.mark.parametrize(("text", "ms"), [("500 ms", 500), ("100ms", 100), ("1s 250ms", 1250),
                                             ("2s", 2000)])
    def test_milliseconds_are_a_duration(self, text: str, ms: int) -> None:
        """Health latency limits are written in ms: "answers HTTP 200 within 500 ms"."""
        assert parse_duration(text) == timedelta(milliseconds=ms)


class TestJsonPaths:
    def test_dotted_paths_and_list_indexes(self) -> None:
        """components.database.status walks objects; a digit segment indexes a list."""
        doc = {"components": {"database": {"status": "healthy"}}, "items": [{"state": "ok"}]}
        assert resolve(doc, "components.database.status") == "healthy"
        assert resolve(doc, "items.0.state") == "ok"

    def test_a_missing_segment_names_where_and_what_is_there(self) -> None:
        """The error names the missing key, the path walked so far and the keys that exist."""
        with pytest.raises(KeyError) as caught:
            resolve({"components": {"db": {}, "redis": {}}}, "components.database.status")
        assert "no `database` under components (keys there: db, redis)" in caught.value.args[0]

    @pytest.mark.parametrize("path", ["", ".", "a..b", "a."])
    def test_an_empty_segment_is_refused(self, path: str) -> None:
        with pytest.raises(ValueError, match="not a JSON path"):
            resolve({}, path)

    @settings(max_examples=150)
    @given(keys=st.lists(KEYS, min_size=1, max_size=6), leaf=SCALARS)
    def test_any_nesting_resolves_to_its_leaf(self, keys: list[str], leaf: Any) -> None:
        """Built by nesting objects along the keys, the document yields the leaf at the dotted path."""
        doc: Any = leaf
        for key in reversed(keys):
            doc = {key: doc}
        assert resolve(json.loads(json.dumps(doc)), ".".join(keys)) == leaf

    @settings(max_examples=100)
    @given(keys=st.lists(KEYS, min_size=1, max_size=5), extra=KEYS)
    def test_a_path_longer_than_the_document_is_a_key_error(self, keys: list[str], extra: str) -> None:
        """One segment past a scalar never resolves to anything."""
        doc: Any = "leaf"
        for key in reversed(keys):
            doc = {key: doc}
        with pytest.raises(KeyError):
            resolve(doc, ".".join([*keys, extra]))

    def test_values_compare_as_the_feature_writes_them(self) -> None:
        """Strings compare bare; true, 3 and null compare as JSON text."""
        doc = {"status": "ok", "ready": True, "replicas": 3, "error": None}
        assert json_equals(response(doc), "status", "ok").outcome is Outcome.PASSED
        assert json_equals(response(doc), "ready", "true").outcome is Outcome.PASSED
        assert json_equals(response(doc), "replicas", "3").outcome is Outcome.PASSED
        assert json_equals(response(doc), "error", "null").outcome is Outcome.PASSED
        failed = json_equals(response(doc), "status", "healthy")
        assert failed.outcome is Outcome.FAILED
        assert "`status` is 'ok', expected 'healthy'" in failed.message

    def test_a_missing_path_is_an_error_naming_target_url_and_path(self) -> None:
        verdict = json_equals(response({"status": "ok"}), "components.database.status", "healthy")
        assert verdict.outcome is Outcome.ERROR
        assert "`api`" in verdict.message and "https://api.test/health" in verdict.message
        assert "components.database.status" in verdict.message
        assert verdict.evidence["hint"]

    def test_a_body_that_is_not_json_is_an_error(self) -> None:
        verdict = json_equals(response(None, body=b"<html>maintenance</html>"), "status", "ok")
        assert verdict.outcome is Outcome.ERROR
        assert "not JSON" in verdict.message and "<html>" in verdict.message

    def test_every_entry_of_an_object_or_list(self) -> None:
        """Objects' values and lists' items are entries; one off or missing the field fails, named."""
        healthy = {"components": {"db": {"status": "healthy"}, "cache": {"status": "healthy"}}}
        verdict = every_entry_equals(response(healthy), "components", "status", "healthy")
        assert verdict.outcome is Outcome.PASSED
        mixed = {"items": [{"status": "healthy"}, {"status": "degraded"}, {"name": "x"}]}
        verdict = every_entry_equals(response(mixed), "items", "status", "healthy")
        assert verdict.outcome is Outcome.FAILED
        assert "2 of 3" in verdict.message and "1: 'degraded'" in verdict.message
        assert "2: no `status`" in verdict.message

    def test_no_entries_is_never_a_pass(self) -> None:
        """An empty components object proves nothing is healthy: failed."""
        verdict = every_entry_equals(response({"components": {}}), "components", "status", "ok")
        assert verdict.outcome is Outcome.FAILED

    def test_a_path_that_is_a_url_is_refused(self) -> None:
        """A step may not send the check to another host."""
        assert endpoint_url("https://a:1/base/", "/health") == "https://a:1/base/health"
        with pytest.raises(ValueError, match="not a path"):
            endpoint_url("https://a", "https://elsewhere/health")


class TestCronSchedules:
    def test_daily_fire_times_in_a_window(self) -> None:
        """0 3 * * * fires once a day at 03:00 UTC."""
        times = fire_times("0 3 * * *", start=NOW - timedelta(days=3), end=NOW)
        assert times == [datetime(2026, 3, d, 3, 0, tzinfo=UTC) for d in (13, 14, 15)]

    def test_a_backup_every_night_follows_the_schedule(self) -> None:
        backups = [datetime(2026, 3, d, 3, 12, tzinfo=UTC) for d in range(1, 16)]
        verdict = schedule_followed("0 3 * * *", backups, now=NOW, window=timedelta(days=7),
                                    tolerance=timedelta(minutes=30), what="backups")
        assert verdict.outcome is Outcome.PASSED
        assert verdict.evidence["expected"] == 7

    def test_missing_fire_times_are_listed(self) -> None:
        """A night without a backup is named in the message and listed in evidence."""
        backups = [datetime(2026, 3, d, 3, 5, tzinfo=UTC) for d in range(1, 16) if d != 12]
        verdict = schedule_followed("0 3 * * *", backups, now=NOW, window=timedelta(days=7),
                                    tolerance=timedelta(minutes=30), what="backups")
        assert verdict.outcome is Outcome.FAILED
        assert "2026-03-12 03:00" in verdict.message
        assert verdict.evidence["missing"] == ["2026-03-12T03:00:00+00:00"]

    def test_one_occurrence_cannot_cover_several_fire_times(self) -> None:
        """Health every 5 minutes with 10 minutes' tolerance: one event is not four checks."""
        events = [NOW - timedelta(minutes=20)]
        verdict = schedule_followed("*/5 * * * *", events, now=NOW, window=timedelta(minutes=30),
                                    tolerance=timedelta(minutes=10), what="health checks")
        assert verdict.outcome is Outcome.FAILED
        assert len(verdict.evidence["matched"]) == 1
        assert len(verdict.evidence["missing"]) == 3

    def test_a_fire_time_still_within_its_tolerance_is_pending(self) -> None:
        """03:00 today with 1 h tolerance at 03:20 is not yet missing."""
        now = datetime(2026, 3, 15, 3, 20, tzinfo=UTC)
        backups = [datetime(2026, 3, 14, 3, 1, tzinfo=UTC)]
        verdict = schedule_followed("0 3 * * *", backups, now=now, window=timedelta(days=1, hours=1),
                                    tolerance=timedelta(hours=1), what="backups")
        assert verdict.outcome is Outcome.PASSED
        assert verdict.evidence["pending"] == ["2026-03-15T03:00:00+00:00"]

    def test_a_bad_cron_or_an_empty_window_is_an_error(self) -> None:
        """Nothing checked is never a pass."""
        bad = schedule_followed("every night", [], now=NOW, window=timedelta(days=1),
                                tolerance=timedelta(hours=1), what="backups")
        assert bad.outcome is Outcome.ERROR and "not a cron schedule" in bad.message
        empty = schedule_followed("0 3 1 1 *", [], now=NOW, window=timedelta(days=7),
                                  tolerance=timedelta(hours=1), what="backups")
        assert empty.outcome is Outcome.ERROR and "widen the window" in empty.message

    @settings(max_examples=100, deadline=None)
    @given(jitters=st.lists(st.integers(min_value=-600, max_value=600), min_size=24, max_size=24),
           dropped=st.sets(st.integers(min_value=0, max_value=23), max_size=5))
    def test_matching_finds_exactly_the_dropped_fire_times(self, jitters: list[int],
                                                           dropped: set[int]) -> None:
        """Hourly fires, an event jittered within 10 min unless dropped: exactly the dropped are missing."""
        fires = [NOW - timedelta(hours=24 - i) for i in range(24)]
        events = [f + timedelta(seconds=j) for i, (f, j) in enumerate(zip(fires, jitters, strict=True))
                  if i not in dropped]
        matched, missing = match_occurrences(fires, events, tolerance=timedelta(minutes=10))
        assert missing == [fires[i] for i in sorted(dropped)]
        assert len(set(matched.values())) == len(matched)

    @settings(max_examples=100, deadline=None)
    @given(events=st.lists(st.integers(min_value=0, max_value=24 * 60), max_size=40))
    def test_every_match_is_within_the_tolerance_and_used_once(self, events: list[int]) -> None:
        """Whatever the events, a pairing never exceeds the tolerance or reuses an event."""
        fires = [NOW - timedelta(hours=24 - i) for i in range(24)]
        occurrences = [NOW - timedelta(hours=24) + timedelta(minutes=m) for m in events]
        matched, missing = match_occurrences(fires, occurrences, tolerance=timedelta(minutes=15))
        assume(occurrences or missing)
        assert all(abs(o - f) <= timedelta(minutes=15) for f, o in matched.items())
        assert len(matched) + len(missing) == len(fires)
        assert len(matched) <= len(occurrences)


class TestHeartbeats:
    def test_fresh_stale_and_absent(self) -> None:
        fresh = heartbeat(NOW - timedelta(hours=2), now=NOW, max_age=timedelta(hours=26), source="license")
        stale = heartbeat(NOW - timedelta(days=2), now=NOW, max_age=timedelta(hours=26), source="license")
        absent = heartbeat(None, now=NOW, max_age=timedelta(hours=26), source="license")
        assert (fresh.outcome, stale.outcome) == (Outcome.PASSED, Outcome.FAILED)
        assert absent.outcome is Outcome.FAILED
        assert "48h 00m 00s old" in stale.message
        assert "no timestamp" in absent.message


class TestAuditFiles:
    def test_counts_matching_kinds_in_the_window(self, tmp_path: Path) -> None:
        """*_FAILED matches by glob; events outside the window do not count; naive times are UTC."""
        log = tmp_path / "audit.jsonl"
        log.write_text("\n".join(json.dumps(e) for e in [
            {"kind": "LOGIN_FAILED", "time": "2026-03-15T10:00:00Z"},
            {"kind": "FOCUS_FAILED", "time": "2026-03-14T13:00:00"},
            {"kind": "LOGIN_OK", "time": "2026-03-15T10:00:00Z"},
            {"kind": "LOGIN_FAILED", "time": "2026-03-01T10:00:00+02:00"},
        ]) + "\n\n")
        times = file_event_times(AuditFile(log), kind="*_FAILED", since=NOW - timedelta(days=7), until=NOW)
        assert times == [datetime(2026, 3, 14, 13, tzinfo=UTC), datetime(2026, 3, 15, 10, tzinfo=UTC)]
        verdict = event_count(times, kind="*_FAILED", comparison="at most", count=1, window=timedelta(days=7),
                              now=NOW, source=str(log))
        assert verdict.outcome is Outcome.FAILED
        assert "2 '*_FAILED' events in the last" in verdict.message

    @pytest.mark.parametrize(("line", "reason"), [
        ("{not json", "is not JSON"),
        ('{"kind": "X"}', "expected an object with `kind`"),
        ('{"kind": "X", "time": "yesterday"}', "not ISO 8601"),
        ('["X", "2026-03-15"]', "expected an object"),
    ])
    def test_a_bad_line_is_named_with_its_number(self, tmp_path: Path, line: str, reason: str) -> None:
        log = tmp_path / "audit.jsonl"
        log.write_text('{"kind": "OK", "time": "2026-03-15T00:00:00Z"}\n' + line + "\n")
        with pytest.raises(UnusableAnswer, match=reason) as caught:
            file_event_times(AuditFile(log), kind="X", since=NOW - timedelta(days=1), until=NOW)
        assert f"{log}:2" in caught.value.message

    @given(glob=st.text(alphabet="ab*?%_\\", max_size=12))
    def test_like_patterns_escape_every_literal_wildcard(self, glob: str) -> None:
        """Only * and ? become SQL wildcards; %, _ and \\ are always escaped."""
        like = glob_to_like(glob)
        unescaped = like.replace("\\\\", "").replace("\\%", "").replace("\\_", "")
        assert unescaped.count("%") == glob.count("*")
        assert unescaped.count("_") == glob.count("?")


class TestCertificatesOnDisk:
    @pytest.fixture
    def ca(self) -> trustme.CA:
        return trustme.CA()

    def _source(self, tmp_path: Path, ca: trustme.CA, pem: bytes, *, name: str = "localhost") -> CertSource:
        (tmp_path / "leaf.pem").write_bytes(pem)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        return CertSource(label="edge", pem_file=tmp_path / "leaf.pem", ca_file=tmp_path / "ca.pem",
                          server_name=name)

    def test_a_chain_through_an_intermediate_verifies(self, tmp_path: Path, ca: trustme.CA) -> None:
        leaf = ca.create_child_ca().issue_cert("localhost")
        source = self._source(tmp_path, ca, b"".join(p.bytes() for p in leaf.cert_chain_pems))
        verdict = verify_pem(source, hostname="localhost", now=datetime.now(UTC))
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["chain_length"] == 2

    def test_the_wrong_host_name_fails(self, tmp_path: Path, ca: trustme.CA) -> None:
        leaf = ca.issue_cert("localhost")
        source = self._source(tmp_path, ca, leaf.cert_chain_pems[0].bytes())
        verdict = verify_pem(source, hostname="other.example", now=datetime.now(UTC))
        assert verdict.outcome is Outcome.FAILED
        assert "other.example" in verdict.message

    def test_an_expired_certificate_fails_both_checks(self, tmp_path: Path, ca: trustme.CA) -> None:
        now = datetime.now(UTC)
        leaf = ca.issue_cert("localhost", not_before=now - timedelta(days=60),
                             not_after=now - timedelta(days=2))
        source = self._source(tmp_path, ca, leaf.cert_chain_pems[0].bytes())
        assert verify_pem(source, hostname="localhost", now=now).outcome is Outcome.FAILED
        cert = load_pem_chain(source.pem_file, label="edge")[0]  # type: ignore[arg-type]
        expiry = days_to_expiry(cert, now=now, min_days=30, where="edge")
        assert expiry.outcome is Outcome.FAILED
        assert "expired 2.0 days ago" in expiry.message

    def test_a_certificate_from_another_ca_fails(self, tmp_path: Path, ca: trustme.CA) -> None:
        stranger = trustme.CA().issue_cert("localhost")
        source = self._source(tmp_path, ca, stranger.cert_chain_pems[0].bytes())
        assert verify_pem(source, hostname="localhost", now=datetime.now(UTC)).outcome is Outcome.FAILED

    def test_days_left_against_the_threshold(self, tmp_path: Path, ca: trustme.CA) -> None:
        """Sovra: at least 30 days; 20 left fails, 90 left passes."""
        now = datetime.now(UTC)
        for days, outcome in ((20, Outcome.FAILED), (90, Outcome.PASSED)):
            leaf = ca.issue_cert("localhost", not_after=now + timedelta(days=days))
            cert = load_pem_chain(self._source(tmp_path, ca, leaf.cert_chain_pems[0].bytes()).pem_file,  # type: ignore[arg-type]
                                  label="edge")[0]
            assert days_to_expiry(cert, now=now, min_days=30, where="edge").outcome is outcome

    def test_a_pem_file_without_a_name_to_verify_is_an_error(self, tmp_path: Path, ca: trustme.CA) -> None:
        """Neither server_name nor host: nothing to verify the name against, so nothing is claimed."""
        source = self._source(tmp_path, ca, ca.issue_cert("localhost").cert_chain_pems[0].bytes())
        unnamed = CertSource(label="edge", pem_file=source.pem_file, ca_file=source.ca_file)
        verdict = chain_verifies(unnamed, now=datetime.now(UTC))
        assert verdict.outcome is Outcome.ERROR
        assert "server_name" in verdict.evidence["hint"]

    def test_a_file_without_certificates_is_named(self, tmp_path: Path) -> None:
        (tmp_path / "x.pem").write_text("hello")
        with pytest.raises(UnusableAnswer, match="holds no PEM certificate"):
            load_pem_chain(tmp_path / "x.pem", label="edge")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def prometheus_answer(body: Any) -> HttpResponse:
    return HttpResponse(target="metrics", url="http://prom:9090/api/v1/query", status=200,
                        body=json.dumps(body).encode(), latency=timedelta(milliseconds=3))


class TestPrometheusAnswers:
    def test_a_one_sample_vector_and_a_scalar(self) -> None:
        vector = {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"job": "sark"}, "value": [1700000000.5, "0.9995"]}]}}
        sample = parse_query_response(prometheus_answer(vector), "up")
        assert (sample.value, sample.labels, sample.result_type) == (0.9995, {"job": "sark"}, "vector")
        scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "42"]}}
        assert parse_query_response(prometheus_answer(scalar), "q").value == 42.0

    @pytest.mark.parametrize(("body", "reason"), [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"},
         "failed (bad_data): parse error"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, "no sample"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "returned a matrix"),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "NaN"]}}, "NaN"),
        ([1, 2], "not an object"),
    ])
    def test_unusable_answers_name_the_query(self, body: Any, reason: str) -> None:
        with pytest.raises(UnusableAnswer, match=re.escape(reason)) as caught:
            parse_query_response(prometheus_answer(body), "sum(up)")
        assert "'sum(up)'" in caught.value.message and caught.value.hint

    @settings(max_examples=300, deadline=None)
    @given(data=JSON_VALUES, result_type=st.sampled_from(["vector", "scalar", "matrix", "string", "x"]),
           result=JSON_VALUES)
    def test_any_answer_is_a_sample_or_unusable(self, data: Any, result_type: str, result: Any) -> None:
        """Whatever JSON comes back, parsing yields a number or UnusableAnswer, never a crash."""
        for body in (data, {"status": "success", "data": data},
                     {"status": "success", "data": {"resultType": result_type, "result": result}}):
            try:
                sample = parse_query_response(prometheus_answer(body), "q")
            except UnusableAnswer:
                continue
            assert isinstance(sample.value, float)
