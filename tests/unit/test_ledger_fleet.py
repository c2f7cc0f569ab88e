"""The ledger at fleet scale: entry v2 with a member, old ledgers still verifying, one batch per
run (append_run_once), and the cadence held per drill *and member* (``FLT-01[db-042]``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.cadence import DrillState, drill_state, within_cadence
from checks.errors import ConfigError
from checks.verdict import Outcome, Verdict
from drillbook.audit import Drill
from drillbook.status_cli import status_rows
from reports.ledger import (
    GENESIS,
    LedgerEntry,
    LocalLedger,
    NewEntry,
    chain,
    entry_digest,
    holds_run,
    parse_entry,
    read_text,
)
from reports.ledger_runs import append_run_once, entries_for_run, histories
from reports.metrics import drill_metrics, render
from reports.results import RunResult, ScenarioResult

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]

# Two entries exactly as drillbook wrote them before entry v2 (generated with the v1 code).
V1_LEDGER = (
    '{"cadence":"monthly","duration_s":12.5,"evidence_sha256":"abababababababababababababababababababab'
    'abababababababababababab","hash":"00e494abbaacc50c97121e5cb8814d124b005262fb9d5e63a8dad3bf00c5db0c",'
    '"id":"BKP-01","outcome":"passed","pack":"backup","prev":"000000000000000000000000000000000000000000'
    '0000000000000000000000","run_id":"20261101T020000Z-ab12","scenario":"Yesterday\'s backup restores",'
    '"seq":1,"time":"2026-11-01T02:00:00+00:00","waiver":null}\n'
    '{"cadence":"daily","duration_s":3.0,"evidence_sha256":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd'
    'cdcdcdcdcdcdcdcdcdcd","hash":"4107f5b5f51594a2607e4617587e5b96649e2704f8761868d9cf9763122986d5",'
    '"id":"BKP-02","outcome":"failed","pack":"backup","prev":"00e494abbaacc50c97121e5cb8814d124b005262fb'
    '9d5e63a8dad3bf00c5db0c","run_id":"20261101T020000Z-ab12","scenario":"The WAL archive is complete",'
    '"seq":2,"time":"2026-11-01T02:01:00+00:00","waiver":null}\n'
)


def entry(ident: str = "FLT-01", member: str | None = "db-001", *, run_id: str = "g1",
          outcome: Outcome = Outcome.PASSED, when: datetime = NOW, cadence: str = "weekly") -> NewEntry:
    return NewEntry(id=ident, scenario=f"scenario {ident}", cadence=cadence, pack="fleet", outcome=outcome,
                    run_id=run_id, time=when.isoformat(), duration_s=2.0, evidence_sha256="ef" * 32,
                    member=member)


def chained(rows: list[NewEntry]) -> list[LedgerEntry]:
    found, prev = [], GENESIS
    for seq, row in enumerate(rows, start=1):
        item = chain(row, seq=seq, prev=prev)
        found.append(item)
        prev = item.hash
    return found


def scenario(ident: str, member: str | None, outcome_ok: bool = True) -> ScenarioResult:
    verdict = (Verdict.passed("t.ok", "fine") if outcome_ok else Verdict.failed("t.ok", "broken"))
    return ScenarioResult(nodeid=f"features/fleet.feature::{ident}[{member}]", feature="Fleet",
                          feature_path="features/fleet/fleet.feature", scenario=f"scenario {ident}",
                          tags=[f"id:{ident}", "weekly"], verdicts=[verdict], started_at=NOW.isoformat(),
                          duration_s=1.0, member=member)


def run(run_id: str, members: list[str]) -> RunResult:
    return RunResult(run_id=run_id, started_at=NOW.isoformat(),
                     scenarios=[scenario("FLT-01", m) for m in members])


class TestEntryV2:
    def test_appends_write_v2_with_the_member(self, tmp_path: Path) -> None:
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        ledger.append([entry(member="db-042"), entry("BKP-01", member=None)])
        raw = [json.loads(line) for line in ledger.path.read_text().splitlines()]
        assert [(r["v"], r["member"]) for r in raw] == [(2, "db-042"), (2, None)]
        read = ledger.read()
        assert read.ok, read.problems
        assert [e.display_id for e in read.entries] == ["FLT-01[db-042]", "BKP-01"]

    def test_a_v1_ledger_still_verifies_and_v2_appends_chain_after_it(self, tmp_path: Path) -> None:
        """Old ledgers are evidence: their hashes must keep matching under the new reader."""
        path = tmp_path / "ledger.jsonl"
        path.write_text(V1_LEDGER, encoding="utf-8")
        ledger = LocalLedger(path)
        assert read_text(V1_LEDGER, head=None, path=path, require_head=False).ok
        ledger._write_head(2, "4107f5b5f51594a2607e4617587e5b96649e2704f8761868d9cf9763122986d5")
        appended = ledger.append([entry(member="db-042")])
        assert appended[0].seq == 3 and appended[0].prev.startswith("4107f5b5")
        read = ledger.read()
        assert read.ok, read.problems
        assert [(e.v, e.member) for e in read.entries] == [(1, None), (1, None), (2, "db-042")]
        assert path.read_text(encoding="utf-8").startswith(V1_LEDGER)  # never rewritten

    def test_a_v1_line_stays_byte_identical_through_parse(self) -> None:
        first = V1_LEDGER.splitlines(keepends=True)[0]
        parsed = parse_entry(first)
        assert parsed.v == 1 and parsed.line() == first
        assert entry_digest(parsed.body()) == parsed.hash

    @pytest.mark.parametrize(("edit", "message"), [
        (lambda d: {**d, "member": "db-1"}, "unknown field(s) member"),  # v1 + member: no such thing
        (lambda d: {**d, "v": 2}, "missing field(s) member"),
        (lambda d: {**d, "v": 3, "member": None}, "entry version 3 is unknown"),
        (lambda d: {**d, "v": "2", "member": None}, "entry version '2' is unknown"),
        (lambda d: {**d, "v": True, "member": None}, "entry version True is unknown"),
        (lambda d: {**d, "v": 2.0, "member": None}, "entry version 2.0 is unknown"),
        (lambda d: {**d, "v": 2, "member": ""}, "member must be a non-empty string or null"),
        (lambda d: {**d, "v": 2, "member": 42}, "member must be a non-empty string or null"),
        (lambda d: {**d, "v": 2, "member": None, "shard": 3}, "unknown field(s) shard"),
    ])
    def test_each_version_is_parsed_strictly(self, edit: object, message: str) -> None:
        data = json.loads(V1_LEDGER.splitlines()[0])
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_entry(json.dumps(edit(data)))  # type: ignore[operator]

    def test_an_edited_member_breaks_the_hash(self) -> None:
        """The member is hashed: moving a pass from db-001 to db-042 is detected like any edit."""
        text = "".join(e.line() for e in chained([entry(member="db-001")]))
        forged = text.replace('"member":"db-001"', '"member":"db-042"')
        problems = read_text(forged, head=None, path=Path("l"), require_head=False).problems
        assert [str(p) for p in problems] == [
            "line 1: entry seq 1 was edited: its content does not match its hash"]

    @settings(max_examples=150, deadline=None)
    @given(member=st.none() | st.text(min_size=1, max_size=40), run_id=st.text(min_size=1, max_size=30),
           scenario_name=st.text(max_size=60))
    def test_any_v2_entry_round_trips(self, member: str | None, run_id: str, scenario_name: str) -> None:
        new = NewEntry(id="FLT-01", scenario=scenario_name, cadence="weekly", pack=None,
                       outcome=Outcome.PASSED, run_id=run_id, time=NOW.isoformat(), duration_s=1.0,
                       evidence_sha256="00" * 32, member=member)
        made = chain(new, seq=1, prev=GENESIS)
        assert parse_entry(made.line()) == made
        # The run-id test the merge relies on: exact, whatever the strings hold.
        assert holds_run(made.line(), run_id)
        assert not holds_run(made.line(), run_id + "x")

    @settings(max_examples=200, deadline=None)
    @given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                              | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6),
           key=st.sampled_from(["v", "member"]))
    def test_any_v_or_member_value_parses_or_is_a_named_value_error(self, value: object, key: str) -> None:
        data = {**json.loads(V1_LEDGER.splitlines()[0]), "v": 2, "member": None, key: value}
        try:
            parsed = parse_entry(json.dumps(data))
        except ValueError as exc:
            assert str(exc)
        else:
            assert parsed.v == 2 and (parsed.member is None or isinstance(parsed.member, str))

    def test_run_id_test_is_not_fooled_by_a_scenario_quoting_it(self) -> None:
        new = entry(run_id="g1")
        sly = NewEntry(**{**new.__dict__, "scenario": '"run_id":"g2","scenario":"x"', "run_id": "g1"})
        assert not holds_run(chain(sly, seq=1, prev=GENESIS).line(), "g2")


class TestEntriesForRun:
    def test_member_comes_from_the_scenario(self) -> None:
        found = entries_for_run(run("g1", ["db-001", "db-042"]))
        assert [(e.id, e.member, e.run_id) for e in found] == [("FLT-01", "db-001", "g1"),
                                                             ("FLT-01", "db-042", "g1")]

    def test_a_scenario_outside_fleets_has_no_member(self) -> None:
        plain = ScenarioResult(nodeid="n", feature="f", feature_path="features/backup/b.feature",
                               scenario="s", tags=["id:BKP-01"], verdicts=[Verdict.passed("x", "ok")])
        assert entries_for_run(RunResult(run_id="r", started_at=NOW.isoformat(),
                                         scenarios=[plain]))[0].member is None


class TestAppendRunOnce:
    def test_a_second_append_of_the_same_run_adds_nothing(self, tmp_path: Path) -> None:
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        first = append_run_once(ledger, run("g1", ["db-001", "db-002"]))
        ledger.append([entry("BKP-01", None, run_id="manual-7")])  # an unrelated run in between
        again = append_run_once(ledger, run("g1", ["db-001", "db-002"]))
        assert [e.seq for e in first] == [1, 2]
        assert again == []
        read = ledger.read()
        assert read.ok and [e.run_id for e in read.entries] == ["g1", "g1", "manual-7"]

    def test_another_run_is_appended(self, tmp_path: Path) -> None:
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        append_run_once(ledger, run("g1", ["db-001"]))
        assert [e.seq for e in append_run_once(ledger, run("g2", ["db-001"]))] == [2]

    def test_racing_merges_of_one_run_append_one_batch(self, tmp_path: Path) -> None:
        """Eight threads merge the same run group at once: the check sits under the append's lock."""
        path = tmp_path / "ledger.jsonl"
        results: list[int] = []
        barrier = threading.Barrier(8)

        def merge() -> None:
            barrier.wait()
            results.append(len(append_run_once(LocalLedger(path), run("g1", ["db-001", "db-002"]))))

        threads = [threading.Thread(target=merge) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == [0] * 7 + [2]
        assert len(LocalLedger(path).read().entries) == 2

    def test_an_empty_run_appends_nothing(self, tmp_path: Path) -> None:
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        assert append_run_once(ledger, RunResult(run_id="g0", started_at=NOW.isoformat())) == []
        assert not ledger.path.exists()


def fleet_history() -> list[LedgerEntry]:
    """Weekly FLT-01 on three members: db-042 last passed 20 days ago, then failed; the others are fresh."""
    return chained([
        entry(member="db-042", run_id="g0", when=NOW - timedelta(days=20)),
        entry(member="db-001", run_id="g1", when=NOW - timedelta(days=1)),
        entry(member="db-042", run_id="g1", when=NOW - timedelta(days=1), outcome=Outcome.FAILED),
        entry(member="db-002", run_id="g1", when=NOW - timedelta(days=1)),
        entry("BKP-01", None, run_id="m1", when=NOW - timedelta(days=2), cadence="monthly"),
    ])


class TestPerMemberCadence:
    def test_histories_are_per_drill_and_member(self) -> None:
        found = histories(fleet_history())
        assert sorted(found) == ["BKP-01", "FLT-01[db-001]", "FLT-01[db-002]", "FLT-01[db-042]"]
        lagging = found["FLT-01[db-042]"]
        assert (lagging.drill_id, lagging.member) == ("FLT-01", "db-042")
        assert lagging.last_pass == NOW - timedelta(days=20)
        assert drill_state(lagging, now=NOW) is DrillState.OVERDUE
        assert drill_state(found["FLT-01[db-001]"], now=NOW) is DrillState.OK

    def test_the_cadence_verdict_names_the_member(self) -> None:
        verdict = within_cadence(histories(fleet_history())["FLT-01[db-042]"], now=NOW)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.message.startswith("drill FLT-01[db-042] (weekly) last passed")
        assert verdict.evidence["member"] == "db-042" and verdict.evidence["drill"] == "FLT-01"

    def test_status_rows_name_the_overdue_member_only(self) -> None:
        drills = {"FLT-01": Drill(id="FLT-01", scenario="s", cadence="weekly", feature_path="f", line=1),
                  "FLT-02": Drill(id="FLT-02", scenario="t", cadence="weekly", feature_path="f", line=9)}
        from reports.ledger import LedgerRead

        read = LedgerRead(path=Path("ledger.jsonl"), entries=fleet_history())
        rows = {r["id"]: r for r in status_rows(drills, read, now=NOW)}
        assert list(rows) == ["BKP-01", "FLT-01[db-001]", "FLT-01[db-002]", "FLT-01[db-042]", "FLT-02"]
        assert {k: r["state"] for k, r in rows.items()} == {
            "BKP-01": "ok", "FLT-01[db-001]": "ok", "FLT-01[db-002]": "ok", "FLT-01[db-042]": "overdue",
            "FLT-02": "never run"}
        assert (rows["FLT-01[db-042]"]["drill"], rows["FLT-01[db-042]"]["member"]) == ("FLT-01", "db-042")
        assert rows["FLT-01[db-042]"]["in_features"] is True

    def test_metrics_give_each_member_its_own_series(self) -> None:
        text = render(drill_metrics(fleet_history()))
        assert 'drillbook_last_success_timestamp_seconds{id="FLT-01",member="db-042",cadence="weekly"' in text
        assert 'drillbook_scenario_outcome{id="FLT-01",member="db-042",cadence="weekly",pack="fleet",' \
               'outcome="failed"} 1' in text
        assert 'drillbook_last_success_timestamp_seconds{id="BKP-01",cadence="monthly"' in text


class TestGateCadenceCli:
    def test_one_member_overdue_blocks_and_is_named(self, tmp_path: Path) -> None:
        """`drillbook gate cadence` over a fleet ledger: exit 3 naming FLT-01[db-042] and no other."""
        features = tmp_path / "features"
        features.mkdir()
        (features / "fleet.feature").write_text(
            "Feature: f\n  @id:FLT-01 @weekly\n  Scenario: s\n    Then the drill `FLT-01` passed within "
            "its cadence\n")
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        now = datetime.now(UTC)
        ledger.append([entry(member="db-042", run_id="g0", when=now - timedelta(days=20)),
                       entry(member="db-001", run_id="g0", when=now - timedelta(days=20))])
        ledger.append([entry(member="db-001", run_id="g1", when=now - timedelta(hours=2))])
        common = ["--ledger", str(ledger.path), "--features", str(features)]
        gate = subprocess.run([sys.executable, "-m", "drillbook.cli", "gate", "cadence", *common],
                              capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
        assert gate.returncode == 3, gate.stdout + gate.stderr
        assert "1 drill(s) out of cadence" in gate.stdout
        assert "FLT-01[db-042]" in gate.stdout and "db-001" not in gate.stdout


class TestAppendTimeoutConfig:
    def test_a_bad_append_timeout_is_a_config_error_naming_the_key(self, tmp_path: Path) -> None:
        from drills.config import load_config

        config = tmp_path / "drillbook.toml"
        config.write_text('[ledger]\nurl = "s3://b/p/"\nappend_timeout = "soon"\n')
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        assert "ledger.append_timeout" in str(caught.value)

    def test_append_timeout_sets_the_s3_ledgers_budget(self, tmp_path: Path) -> None:
        from drillbook.audit import s3_ledger
        from drills.config import load_config

        config = tmp_path / "drillbook.toml"
        config.write_text('[ledger]\nurl = "s3://b/p/"\nendpoint_url = "http://127.0.0.1:9"\n'
                          'append_timeout = "5m"\n')
        loaded = load_config(config)
        made = s3_ledger(loaded.ledger_url or "", dict(loaded.ledger_s3))
        assert made.policy.budget_s == 300.0  # type: ignore[attr-defined]


class TestCadenceStepOnAMember:
    def test_a_members_run_asks_about_its_own_member(self, tmp_path: Path) -> None:
        """The cadence step in db-042's run: db-001's pass, in the ledger or earlier in this run,
        does not count for db-042."""
        from drillbook.audit import LedgerView

        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        ledger.append([entry(member="db-042", run_id="g0", when=NOW - timedelta(days=20)),
                       entry(member="db-001", run_id="g1", when=NOW - timedelta(days=1))])
        done = [scenario("FLT-01", "db-001")]
        view = LedgerView(ledger, lambda: ("g2", done), member="db-042")
        history = view.history("FLT-01")
        assert (history.member, history.last_pass) == ("db-042", NOW - timedelta(days=20))
        verdict = within_cadence(history, now=NOW)
        assert verdict.outcome is Outcome.FAILED and "FLT-01[db-042]" in verdict.message
        mine = LedgerView(ledger, lambda: ("g2", [scenario("FLT-01", "db-042")]), member="db-042")
        assert mine.history("FLT-01").last_run_id == "g2"
