"""The cadence ledger: hash chain, damage named, concurrent appends, drill states, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.cadence import DrillHistory, DrillState, drill_state, within_cadence
from checks.verdict import Outcome
from reports.ledger import GENESIS, LedgerCorrupt, LocalLedger, NewEntry, read_text
from reports.ledger_runs import histories
from reports.metrics import drill_metrics, render

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def entry(ident: str = "BKP-01", outcome: Outcome = Outcome.PASSED, *, run_id: str = "r1",
          when: datetime = NOW, cadence: str = "monthly") -> NewEntry:
    return NewEntry(id=ident, scenario=f"scenario {ident}", cadence=cadence, pack="backup", outcome=outcome,
                    run_id=run_id, time=when.isoformat(), duration_s=1.5, evidence_sha256="ab" * 32)


def filled(tmp_path: Path, count: int = 5) -> LocalLedger:
    ledger = LocalLedger(tmp_path / "ledger.jsonl")
    ledger.append([entry(f"BKP-{i:02d}", run_id=f"r{i}") for i in range(1, count + 1)])
    return ledger


def lines(ledger: LocalLedger) -> list[str]:
    return ledger.path.read_text(encoding="utf-8").splitlines(keepends=True)


class TestChain:
    def test_entries_chain_from_genesis(self, tmp_path: Path) -> None:
        """seq counts from 1; each entry's prev is the hash of the one before."""
        read = filled(tmp_path).read()
        assert read.ok, read.problems
        assert [e.seq for e in read.entries] == [1, 2, 3, 4, 5]
        assert read.entries[0].prev == GENESIS
        assert all(b.prev == a.hash for a, b in zip(read.entries, read.entries[1:], strict=False))

    def test_appends_continue_the_chain(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path, 2)
        ledger.append([entry("BKP-09")])
        read = ledger.read()
        assert read.ok
        assert read.entries[-1].seq == 3
        assert read.entries[-1].prev == read.entries[1].hash

    def test_missing_ledger_is_empty(self, tmp_path: Path) -> None:
        read = LocalLedger(tmp_path / "none.jsonl").read()
        assert read.ok
        assert read.entries == []


class TestDamage:
    def test_edited_entry_is_named_by_line_and_seq(self, tmp_path: Path) -> None:
        """An outcome changed from failed to passed in place breaks that entry's hash."""
        ledger = filled(tmp_path)
        text = lines(ledger)
        text[2] = text[2].replace('"outcome":"passed"', '"outcome":"failed"')
        ledger.path.write_text("".join(text), encoding="utf-8")
        read = ledger.read()
        assert [str(p) for p in read.problems] == [
            "line 3: entry seq 3 was edited: its content does not match its hash"]

    def test_edited_entry_with_recomputed_hash_breaks_the_next_link(self, tmp_path: Path) -> None:
        """A forger who also fixes the edited entry's own hash is caught by the next entry's prev."""
        from reports.ledger import _with_hash, parse_entry

        ledger = filled(tmp_path)
        text = lines(ledger)
        forged = parse_entry(text[1])
        from dataclasses import replace

        text[1] = _with_hash(replace(forged, outcome=Outcome.FAILED)).line()
        ledger.path.write_text("".join(text), encoding="utf-8")
        problems = [str(p) for p in ledger.read().problems]
        assert any(p.startswith("line 3: chain broken at seq 3") for p in problems), problems

    def test_deleted_entry_is_named(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path)
        text = lines(ledger)
        del text[1]
        ledger.path.write_text("".join(text), encoding="utf-8")
        assert [str(p) for p in ledger.read().problems] == ["line 2: entry seq 2 deleted before seq 3"]

    def test_partial_last_line_is_truncation(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path)
        raw = ledger.path.read_bytes()
        ledger.path.write_bytes(raw[:-40])
        problems = [str(p) for p in ledger.read().problems]
        assert problems[0] == "line 5: truncated: the last entry is incomplete (no end of line)"

    def test_removed_last_entries_are_caught_by_the_head(self, tmp_path: Path) -> None:
        """Whole entries cut from the end leave a valid chain: the head record tells."""
        ledger = filled(tmp_path)
        ledger.path.write_text("".join(lines(ledger)[:3]), encoding="utf-8")
        assert [str(p) for p in ledger.read().problems] == [
            "truncated: the head records seq 5, the ledger ends at seq 3 (entries 4..5 were removed)"]

    def test_deleted_head_is_named(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path)
        ledger.head_path.unlink()
        assert "head record" in str(ledger.read().problems[0])

    def test_damaged_ledger_refuses_appends_and_is_never_rewritten(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path)
        raw = ledger.path.read_bytes()
        damaged = raw[:-40]
        ledger.path.write_bytes(damaged)
        with pytest.raises(LedgerCorrupt) as caught:
            ledger.append([entry("BKP-99")])
        assert "truncated" in str(caught.value)
        assert caught.value.hint
        assert ledger.path.read_bytes() == damaged

    def test_edited_last_entry_refuses_appends(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path)
        text = lines(ledger)
        text[-1] = text[-1].replace('"duration_s":1.5', '"duration_s":2.5')
        ledger.path.write_text("".join(text), encoding="utf-8")
        with pytest.raises(LedgerCorrupt, match="seq 5"):
            ledger.append([entry("BKP-99")])

    @settings(max_examples=150, deadline=None)
    @given(data=st.data())
    def test_any_single_byte_change_is_detected(self, data: st.DataObject) -> None:
        """Whatever byte of whatever entry is replaced, reading names a problem."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            ledger = filled(Path(tmp), 3)
            raw = ledger.path.read_bytes()
            head = json.loads(ledger.head_path.read_text())
        position = data.draw(st.integers(0, len(raw) - 1))
        new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]))
        changed = raw[:position] + bytes([new]) + raw[position + 1:]
        try:
            text = changed.decode("utf-8")
        except UnicodeDecodeError:
            return  # LocalLedger.read names non-UTF-8 bytes before parsing (tested below)
        assert not read_text(text, head=head, path=Path("ledger.jsonl")).ok

    def test_non_utf8_byte_is_named(self, tmp_path: Path) -> None:
        ledger = filled(tmp_path, 3)
        raw = bytearray(ledger.path.read_bytes())
        raw[len(raw) // 2] = 0xFF
        ledger.path.write_bytes(bytes(raw))
        assert "not UTF-8" in str(ledger.read().problems[0])


APPENDER = """
import sys
from pathlib import Path
from reports.ledger import LocalLedger, NewEntry
from checks.verdict import Outcome
ledger = LocalLedger(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    ledger.append([NewEntry(id=f"{sys.argv[2]}-{i}", scenario="s", cadence="daily", pack=None,
                            outcome=Outcome.PASSED, run_id=sys.argv[2], time="2026-11-22T00:00:00+00:00",
                            duration_s=0.0, evidence_sha256="00")])
"""


class TestConcurrency:
    def test_two_processes_appending_at_once_lose_nothing(self, tmp_path: Path) -> None:
        """Two writers, 150 appends each, interleaved: 300 entries, one unbroken chain."""
        path = tmp_path / "ledger.jsonl"
        procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), name, "150"], cwd=REPO)
                 for name in ("A", "B")]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        read = LocalLedger(path).read()
        assert read.ok, read.problems[:3]
        ids = [e.id for e in read.entries]
        assert len(ids) == 300
        assert {f"A-{i}" for i in range(150)} | {f"B-{i}" for i in range(150)} == set(ids)
        # Interleaved, not one writer after the other: the lock really was contended.
        assert ids[:150] != [f"A-{i}" for i in range(150)] or ids[150:] != [f"B-{i}" for i in range(150)]


KILLED_APPEND = """
import os, signal, sys
from pathlib import Path
from reports.ledger import LocalLedger, NewEntry
from checks.verdict import Outcome
ledger, kill_at, opened = LocalLedger(Path(sys.argv[1])), int(sys.argv[2]), []
def die_at_the_nth_open(event, args):
    if event == "open":
        opened.append(args[0])
        if len(opened) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9, as a reclaimed pod or the OOM killer does
batch = [NewEntry(id=f"FLT-0{i}", scenario="s", cadence="daily", pack=None, outcome=Outcome.PASSED,
                  run_id="g1", time="2026-11-22T00:00:00+00:00", duration_s=0.0, evidence_sha256="00",
                  member="m1") for i in (1, 2)]
sys.addaudithook(die_at_the_nth_open)
ledger.append(batch, unless_run="g1")
"""


class TestKilledWriter:
    def test_a_writer_killed_at_any_file_open_leaves_a_ledger_the_next_append_completes(
            self, tmp_path: Path) -> None:
        """kill -9 before each file the first append opens (lock, tail, head, ledger): the same
        batch again (as `report merge` redoes a killed merge) lands once, and the ledger verifies."""
        points = 0
        for kill_at in range(1, 30):
            path = tmp_path / f"k{kill_at}" / "ledger.jsonl"
            path.parent.mkdir()
            child = subprocess.run([sys.executable, "-c", KILLED_APPEND, str(path), str(kill_at)],
                                   cwd=REPO, timeout=60)
            if child.returncode == 0:
                break  # fewer opens than kill_at: this run was not killed, every point is covered
            assert child.returncode == -9
            points += 1
            ledger = LocalLedger(path)
            redo = [replace(entry(ident, run_id="g1"), member="m1") for ident in ("FLT-01", "FLT-02")]
            ledger.append(redo, unless_run="g1")  # raised LedgerCorrupt after a kill between entries and head
            read = ledger.read()
            assert read.ok, (kill_at, read.problems)
            assert sorted(e.id for e in read.entries if e.id) == ["FLT-01", "FLT-02"], kill_at
        assert points >= 5, "the append opens the lock, the tail, the head (twice) and the ledger"


class TestHistories:
    def test_outline_rows_of_one_run_count_as_one_run_with_the_worst_outcome(self) -> None:
        from reports.ledger import chain

        rows = [entry("BKP-10", Outcome.PASSED, run_id="r1"), entry("BKP-10", Outcome.FAILED, run_id="r1")]
        chained = [chain(r, seq=i + 1, prev=GENESIS) for i, r in enumerate(rows)]
        found = histories(chained)["BKP-10"]
        assert found.last_outcome is Outcome.FAILED
        assert found.last_pass is None

    def test_last_pass_is_the_newest_run_that_counts_as_a_pass(self) -> None:
        from reports.ledger import chain

        rows = [entry(outcome=Outcome.PASSED, run_id="r1", when=NOW - timedelta(days=40)),
                entry(outcome=Outcome.WAIVED, run_id="r2", when=NOW - timedelta(days=10)),
                entry(outcome=Outcome.FAILED, run_id="r3", when=NOW - timedelta(days=1))]
        found = histories([chain(r, seq=i + 1, prev=GENESIS) for i, r in enumerate(rows)])["BKP-01"]
        assert found.last_pass == NOW - timedelta(days=10)
        assert found.last_run == NOW - timedelta(days=1)
        assert found.last_outcome is Outcome.FAILED
        assert found.last_run_id == "r3"

    def test_feature_cadence_wins_over_the_recorded_one(self) -> None:
        from reports.ledger import chain

        found = histories([chain(entry(cadence="monthly"), seq=1, prev=GENESIS)], {"BKP-01": "weekly"})
        assert found["BKP-01"].cadence == "weekly"


def history(*, last_pass_days: float | None, last_outcome: Outcome = Outcome.PASSED,
            cadence: str | None = "monthly", ran: bool = True) -> DrillHistory:
    last_pass = NOW - timedelta(days=last_pass_days) if last_pass_days is not None else None
    last_run = NOW - timedelta(hours=1) if ran else None
    return DrillHistory(drill_id="BKP-01", cadence=cadence, last_run=last_run,
                        last_outcome=last_outcome if ran else None, last_pass=last_pass, last_run_id="r")


class TestDrillState:
    @pytest.mark.parametrize(("days", "state"), [
        (1, DrillState.OK), (25.9, DrillState.OK), (26.5, DrillState.DUE), (30.9, DrillState.DUE),
        (31.1, DrillState.OVERDUE), (400, DrillState.OVERDUE),
    ])
    def test_monthly_drill_by_age_of_its_last_pass(self, days: float, state: DrillState) -> None:
        """Monthly: ok for 26 days, due for the last 5 of 31, then overdue."""
        assert drill_state(history(last_pass_days=days), now=NOW) is state

    def test_never_run(self) -> None:
        assert drill_state(history(last_pass_days=None, ran=False), now=NOW) is DrillState.NEVER_RUN

    def test_failing_while_the_last_pass_is_still_in_cadence(self) -> None:
        state = drill_state(history(last_pass_days=3, last_outcome=Outcome.FAILED), now=NOW)
        assert state is DrillState.FAILING

    def test_ran_but_never_passed_is_overdue(self) -> None:
        state = drill_state(history(last_pass_days=None, last_outcome=Outcome.ERROR), now=NOW)
        assert state is DrillState.OVERDUE


class TestWithinCadence:
    def test_pass_inside_the_period(self) -> None:
        verdict = within_cadence(history(last_pass_days=10), now=NOW)
        assert verdict.outcome is Outcome.PASSED
        assert "due by 2026-12-13" in verdict.message

    def test_overdue_names_by_how_much(self) -> None:
        verdict = within_cadence(history(last_pass_days=33), now=NOW)
        assert verdict.outcome is Outcome.FAILED
        assert "overdue by 2.0 days" in verdict.message

    def test_never_run_fails_with_a_hint(self) -> None:
        verdict = within_cadence(history(last_pass_days=None, ran=False), now=NOW)
        assert verdict.outcome is Outcome.FAILED
        assert "never run" in verdict.message
        assert "drillbook run --tags id:BKP-01" in verdict.evidence["hint"]

    def test_never_passed_fails(self) -> None:
        verdict = within_cadence(history(last_pass_days=None, last_outcome=Outcome.FAILED), now=NOW)
        assert verdict.outcome is Outcome.FAILED
        assert "never passed" in verdict.message

    def test_no_cadence_is_an_error_not_a_pass(self) -> None:
        verdict = within_cadence(history(last_pass_days=1, cadence=None), now=NOW)
        assert verdict.outcome is Outcome.ERROR


class TestMetrics:
    def test_textfile_names_each_drill_with_its_labels(self, tmp_path: Path) -> None:
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        ledger.append([entry("BKP-01", Outcome.PASSED, run_id="r1", when=NOW - timedelta(days=2)),
                       entry("BKP-01", Outcome.FAILED, run_id="r2", when=NOW),
                       entry('X"1', Outcome.ERROR, run_id="r2", cadence="daily")])
        text = render(drill_metrics(ledger.read().entries))
        labels = 'id="BKP-01",cadence="monthly",pack="backup"'
        assert f'drillbook_scenario_outcome{{{labels},outcome="failed"}} 1' in text
        assert f'drillbook_scenario_outcome{{{labels},outcome="passed"}} 0' in text
        assert f"drillbook_drill_duration_seconds{{{labels}}} 1.5" in text
        last = int((NOW - timedelta(days=2)).timestamp())
        assert f"drillbook_last_success_timestamp_seconds{{{labels}}} {last}" in text
        assert f"drillbook_cadence_period_seconds{{{labels}}} {31 * 86400}" in text
        # Never passed: 0, so `time() - last_success > period` fires; quotes escaped.
        assert 'drillbook_last_success_timestamp_seconds{id="X\\"1",cadence="daily",pack="backup"} 0' in text

    def test_textfile_parses_with_the_prometheus_client_parser(self, tmp_path: Path) -> None:
        """The official client's parser reads every family back, with the values written."""
        from prometheus_client.parser import text_string_to_metric_families

        from reports.metrics import write_textfile

        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        ledger.append([entry("BKP-01", Outcome.PASSED, when=NOW),
                       entry("BKP-02", Outcome.WAIVED, cadence="weekly")])
        target = tmp_path / "textfile" / "drillbook.prom"
        write_textfile(target, ledger.read().entries)
        families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
        assert set(families) == {
            "drillbook_scenario_outcome", "drillbook_drill_duration_seconds",
            "drillbook_last_success_timestamp_seconds", "drillbook_cadence_period_seconds"}
        waived = [s for s in families["drillbook_scenario_outcome"].samples
                  if s.labels["id"] == "BKP-02" and s.value == 1]
        assert [s.labels["outcome"] for s in waived] == ["waived"]
        last = families["drillbook_last_success_timestamp_seconds"]
        success = {s.labels["id"]: s.value for s in last.samples}
        assert success == {"BKP-01": NOW.timestamp(), "BKP-02": NOW.timestamp()}
        assert list(target.parent.iterdir()) == [target]  # the temp file was renamed, not left behind
