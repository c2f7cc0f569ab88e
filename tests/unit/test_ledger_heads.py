"""Signed ledger heads: a consistent rewrite of the ledger is caught only where a signature vouches.

The attacker these tests play holds write access to the ledger (file, head, heads folder) but
not the signing identity: they rewrite a failed entry as passed, recompute every later hash and
the ``.head`` record, and delete or keep signed heads as suits them. Signatures come from the
sandbox signing authority and are checked by sigstore's own Verifier against its private root.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.signatures import LoadedRoot, load_trusted_root
from checks.verdict import Outcome
from drills.signing_authority import DEFAULT_IDENTITY, DEFAULT_ISSUER, SigningAuthority
from reports.evidence_signature import Trust
from reports.ledger import GENESIS, LedgerEntry, LocalLedger, NewEntry, _with_hash, parse_entry
from reports.ledger_heads import (
    HeadError,
    LocalHeads,
    parse_head,
    sign_run_head,
    verify_heads,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def authority() -> SigningAuthority:
    return SigningAuthority.create("ledger-heads-test")


@pytest.fixture(scope="module")
def root(authority: SigningAuthority, tmp_path_factory: pytest.TempPathFactory) -> LoadedRoot:
    return load_trusted_root(authority.write_trusted_root(tmp_path_factory.mktemp("root") / "root.json"))


@pytest.fixture(scope="module")
def trust(root: LoadedRoot) -> Trust:
    return Trust(root, DEFAULT_IDENTITY, DEFAULT_ISSUER, options="--trusted-root")


def entry(ident: str, outcome: Outcome, run_id: str) -> NewEntry:
    return NewEntry(id=ident, scenario=f"scenario {ident}", cadence="monthly", pack="backup", outcome=outcome,
                    run_id=run_id, time=NOW.isoformat(), duration_s=1.5, evidence_sha256="ab" * 32)


# Three runs of two scenarios each: r2's BKP-01 failed (seq 3), the others passed.
RUNS = [("r1", Outcome.PASSED), ("r2", Outcome.FAILED), ("r3", Outcome.PASSED)]


def run(ledger: LocalLedger, run_id: str, outcome: Outcome,
        sign: SigningAuthority | None) -> list[LedgerEntry]:
    """One run as `drillbook run --sign-sandbox` does it: append, then sign the run's own head."""
    appended = ledger.append([entry("BKP-01", outcome, run_id), entry("BKP-02", Outcome.PASSED, run_id)])
    if sign is not None:
        first = next(e for e in ledger.read().entries if e.seq == 1)
        sign_run_head(ledger, appended, lambda data: json.dumps(sign.sign(data)).encode(),
                      ledger_id=first.hash, location=str(ledger.path), now=NOW)
    return appended


def signed_ledger(tmp_path: Path, authority: SigningAuthority) -> LocalLedger:
    ledger = LocalLedger(tmp_path / "ledger.jsonl")
    for run_id, outcome in RUNS:
        run(ledger, run_id, outcome, authority)
    return ledger


def rewrite(ledger: LocalLedger, seq: int, outcome: Outcome) -> None:
    """The consistent forgery: one outcome changed, every later hash and the head recomputed."""
    entries = [parse_entry(line) for line in ledger.path.read_text(encoding="utf-8").splitlines()]
    prev, lines = GENESIS, []
    for item in entries:
        changed = replace(item, outcome=outcome) if item.seq == seq else item
        forged = _with_hash(replace(changed, prev=prev))
        prev = forged.hash
        lines.append(forged.line())
    ledger.path.write_text("".join(lines), encoding="utf-8")
    ledger._write_head(entries[-1].seq, prev)


def heads_dir(ledger: LocalLedger) -> Path:
    return ledger.path.with_name(ledger.path.name + ".heads")


class TestWhatAnUnsignedLedgerDetects:
    def test_a_consistent_rewrite_is_not_detected_without_signed_heads(self, tmp_path: Path) -> None:
        """docs/evidence.md's claim, as a test: chain and head alone cannot tell a re-chained forgery."""
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        for run_id, outcome in RUNS:
            run(ledger, run_id, outcome, None)
        rewrite(ledger, 3, Outcome.PASSED)
        read = ledger.read()
        assert read.ok, read.problems
        assert read.entries[2].outcome is Outcome.PASSED

    def test_without_trust_the_heads_claims_still_catch_a_rewrite_that_left_them(
            self, tmp_path: Path, authority: SigningAuthority) -> None:
        """Every read compares the chain with the hashes the heads list (no root needed)."""
        ledger = signed_ledger(tmp_path, authority)
        rewrite(ledger, 3, Outcome.PASSED)
        problems = [str(p) for p in ledger.read().problems]
        assert problems == [
            f"{ledger.path}: entry seq 3 (BKP-01, run r2, now passed) was rewritten after run r2 signed "
            "it: its hash does not match signed head ledger.jsonl.heads/000000000003.json; 1 later "
            "signed head(s) no longer match either (ledger.jsonl.heads/000000000005.json): the chain "
            "after it was recomputed"]

    def test_deleting_the_heads_defeats_a_check_without_trust(self, tmp_path: Path,
                                                              authority: SigningAuthority) -> None:
        """What claims alone cannot do: heads removed with the rewrite leave nothing to compare."""
        ledger = signed_ledger(tmp_path, authority)
        rewrite(ledger, 3, Outcome.PASSED)
        shutil.rmtree(heads_dir(ledger))
        assert ledger.read().ok


class TestSignedHeadsWithTrust:
    def test_an_untouched_signed_ledger_verifies(self, tmp_path: Path, authority: SigningAuthority,
                                                 trust: Trust) -> None:
        read = signed_ledger(tmp_path, authority).read()
        assert read.ok, read.problems
        verdict = verify_heads(read, trust)
        assert verdict.ok, verdict.problems
        assert (verdict.verified, verdict.covered_to) == (3, 6)
        assert verdict.signers == [f"{DEFAULT_IDENTITY} ({DEFAULT_ISSUER})"]

    def test_rewrite_with_chain_and_head_recomputed_is_named_by_ledger_and_seq(
            self, tmp_path: Path, authority: SigningAuthority, trust: Trust) -> None:
        ledger = signed_ledger(tmp_path, authority)
        rewrite(ledger, 3, Outcome.PASSED)
        read = ledger.read()
        verdict = verify_heads(read, trust)
        problems = [str(p) for p in [*read.problems, *verdict.problems]]
        assert problems[0].startswith(
            f"{ledger.path}: entry seq 3 (BKP-01, run r2, now passed) was rewritten")
        # The runs whose heads no longer match are vouched for by nothing any more.
        assert problems[1] == (
            f"{ledger.path}: entries seq 3..6 (run r2, r3) are vouched for by no verified signed head: "
            "appended by a run that did not sign, or its signed head was deleted or fails; a consistent "
            "rewrite of them cannot be ruled out")

    def test_rewrite_of_an_older_entry_is_caught_by_its_earlier_head(
            self, tmp_path: Path, authority: SigningAuthority, trust: Trust) -> None:
        """The attacker deletes the later heads (which would mismatch): the earlier head still does."""
        ledger = signed_ledger(tmp_path, authority)
        rewrite(ledger, 3, Outcome.PASSED)
        (heads_dir(ledger) / "000000000005.json").unlink()
        read = ledger.read()
        assert "was rewritten after run r2 signed it" in str(read.problems[0])
        assert "ledger.jsonl.heads/000000000003.json" in str(read.problems[0])
        assert not verify_heads(read, trust).ok

    def test_deleting_the_covering_heads_leaves_the_rewritten_runs_unvouched(
            self, tmp_path: Path, authority: SigningAuthority, trust: Trust) -> None:
        """Every head from the rewritten one on removed: nothing mismatches, but nothing vouches either."""
        ledger = signed_ledger(tmp_path, authority)
        rewrite(ledger, 3, Outcome.PASSED)
        for name in ("000000000003.json", "000000000005.json"):
            (heads_dir(ledger) / name).unlink()
        read = ledger.read()
        assert read.ok  # the claims check has nothing left to compare
        assert [str(p) for p in verify_heads(read, trust).problems] == [
            f"{ledger.path}: entries seq 3..6 (run r2, r3) are vouched for by no verified signed head: "
            "appended by a run that did not sign, or its signed head was deleted or fails; a consistent "
            "rewrite of them cannot be ruled out"]

    def test_a_later_honest_run_cannot_launder_the_rewrite(self, tmp_path: Path, authority: SigningAuthority,
                                                           trust: Trust) -> None:
        """A signing run after the forgery vouches for its own entries only."""
        ledger = signed_ledger(tmp_path, authority)
        rewrite(ledger, 3, Outcome.PASSED)
        shutil.rmtree(heads_dir(ledger))
        run(ledger, "r4", Outcome.PASSED, authority)
        problems = [str(p) for p in verify_heads(ledger.read(), trust).problems]
        assert len(problems) == 1 and "entries seq 1..6 (run r1, r2, r3)" in problems[0]

    def test_a_run_that_did_not_sign_is_named(self, tmp_path: Path, authority: SigningAuthority,
                                              trust: Trust) -> None:
        ledger = signed_ledger(tmp_path, authority)
        run(ledger, "r4", Outcome.PASSED, None)
        problems = [str(p) for p in verify_heads(ledger.read(), trust).problems]
        assert len(problems) == 1 and "entries seq 7..8 (run r4)" in problems[0]

    def test_an_unsigned_ledger_proves_nothing_under_trust(self, tmp_path: Path, trust: Trust) -> None:
        ledger = LocalLedger(tmp_path / "ledger.jsonl")
        run(ledger, "r1", Outcome.PASSED, None)
        assert "entries seq 1..2 (run r1)" in str(verify_heads(ledger.read(), trust).problems[0])

    def test_an_empty_ledger_needs_no_head(self, tmp_path: Path, trust: Trust) -> None:
        assert verify_heads(LocalLedger(tmp_path / "none.jsonl").read(), trust).ok

    def test_another_signer_is_refused(self, tmp_path: Path, authority: SigningAuthority,
                                       root: LoadedRoot) -> None:
        read = signed_ledger(tmp_path, authority).read()
        verdict = verify_heads(read, Trust(root, "mallory@example.com", DEFAULT_ISSUER))
        assert verdict.verified == 0
        assert "signature not verified" in str(verdict.problems[0])

    def test_a_forger_with_their_own_authority_is_refused(self, tmp_path: Path, trust: Trust) -> None:
        """Re-signing the forged heads needs the trusted identity: another authority's heads fail."""
        ledger = signed_ledger(tmp_path, SigningAuthority.create("mallory"))
        verdict = verify_heads(ledger.read(), trust)
        assert verdict.verified == 0 and len(verdict.problems) == 4  # 3 heads + nothing vouched

    def test_truncation_behind_a_signed_head_is_named(self, tmp_path: Path,
                                                      authority: SigningAuthority) -> None:
        """The last run's entries cut and the .head rewritten, its signed head kept: named."""
        ledger = signed_ledger(tmp_path, authority)
        lines = ledger.path.read_text(encoding="utf-8").splitlines(keepends=True)
        ledger.path.write_text("".join(lines[:4]), encoding="utf-8")
        ledger._write_head(4, parse_entry(lines[3]).hash)
        assert [str(p) for p in ledger.read().problems] == [
            "truncated: signed head ledger.jsonl.heads/000000000005.json (run r3) vouches for entries up "
            "to seq 6, the ledger ends at seq 4"]

    def test_a_rollback_of_whole_runs_with_their_heads_is_not_detected(
            self, tmp_path: Path, authority: SigningAuthority, trust: Trust) -> None:
        """The limit, stated as a test: removing the last run *and* its head leaves a valid ledger.
        Only an outside record (Rekor, an earlier bundle, Object Lock) reveals it."""
        ledger = signed_ledger(tmp_path, authority)
        lines = ledger.path.read_text(encoding="utf-8").splitlines(keepends=True)
        ledger.path.write_text("".join(lines[:4]), encoding="utf-8")
        ledger._write_head(4, parse_entry(lines[3]).hash)
        (heads_dir(ledger) / "000000000005.json").unlink()
        read = ledger.read()
        assert read.ok and verify_heads(read, trust).ok

    def test_a_head_copied_from_another_ledger_is_named(self, tmp_path: Path, authority: SigningAuthority,
                                                        trust: Trust) -> None:
        ours = signed_ledger(tmp_path / "a", authority)
        theirs = LocalLedger(tmp_path / "b" / "ledger.jsonl")
        for run_id, outcome in [("other", Outcome.PASSED), *RUNS]:  # other content, so other hashes
            run(theirs, run_id, outcome, authority)
        (heads_dir(ours) / "000000000005.json").unlink()
        shutil.copy(heads_dir(theirs) / "000000000005.json", heads_dir(ours) / "000000000005.json")
        read = ours.read()
        assert "ledger.jsonl.heads/000000000005.json" in str(read.problems[0])
        assert not verify_heads(read, trust).ok


class TestHeadStorage:
    def test_heads_are_create_only(self, tmp_path: Path, authority: SigningAuthority) -> None:
        ledger = signed_ledger(tmp_path, authority)
        path = heads_dir(ledger) / "000000000001.json"
        before = path.read_bytes()
        with pytest.raises(HeadError, match="exists already") as caught:
            LocalHeads(ledger.path).create_head("000000000001.json", b"{}")
        assert caught.value.hint
        assert path.read_bytes() == before
        assert sorted(p.name for p in heads_dir(ledger).iterdir()) == [
            "000000000001.json", "000000000003.json", "000000000005.json"]  # no temporary left

    def test_a_foreign_file_among_the_heads_is_named(self, tmp_path: Path,
                                                     authority: SigningAuthority) -> None:
        ledger = signed_ledger(tmp_path, authority)
        (heads_dir(ledger) / "notes.txt").write_text("hello")
        (heads_dir(ledger) / "sub").mkdir()
        problems = [str(p) for p in ledger.read().problems]
        assert problems == ["signed head ledger.jsonl.heads/notes.txt is not a drillbook signed head: not "
                            "JSON: Expecting value: line 1 column 1 (char 0)",
                            "signed head ledger.jsonl.heads/sub is not a regular file"]


@pytest.fixture(scope="module")
def genuine(authority: SigningAuthority,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalLedger, bytes]:
    ledger = signed_ledger(tmp_path_factory.mktemp("genuine"), authority)
    return ledger, (heads_dir(ledger) / "000000000003.json").read_bytes()


class TestParsingUntrustedHeads:
    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=300))
    def test_any_bytes_parse_or_raise_value_error(self, data: bytes) -> None:
        with contextlib.suppress(ValueError):
            parse_head("000000000001.json", data)

    @settings(max_examples=200, deadline=None)
    @given(document=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=20))
    def test_any_json_parses_or_raises_value_error(self, document: object) -> None:
        with contextlib.suppress(ValueError):
            parse_head("000000000001.json", json.dumps(document).encode())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_byte_change_of_a_head_is_detected(self, genuine: tuple[LocalLedger, bytes], trust: Trust,
                                                   data: st.DataObject) -> None:
        """Flip any byte of a genuine head: what it claims can no longer pass as signed.

        A flip inside parts of the bundle sigstore does not bind (the log id hint, a checkpoint's
        signer name: SANDBOX-SIGSTORE.md) may still verify; then the claim must be unchanged.
        """
        ledger, body = genuine
        original = parse_head("x/000000000003.json", body).statement
        at = data.draw(st.integers(0, len(body) - 1))
        changed = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1:]
        read = ledger.read()
        read.heads = [h for h in read.heads if not h.name.endswith("000000000003.json")]
        try:
            head = parse_head("ledger.jsonl.heads/000000000003.json", changed)
        except ValueError:
            return
        read.heads.append(head)
        if verify_heads(read, trust).ok:
            assert head.statement == original
