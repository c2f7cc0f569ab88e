"""The S3 ledger's handling of lost races, made deterministic with botocore's Stubber.

moto never answers 409 ``ConditionalRequestConflict`` and cannot prove a conditional write atomic
(FLEET.md §4.3), so the race handling is pinned here against scripted answers: 412 follows the
chain, 409 retries the same position, pauses are jittered and bounded, the time budget ends the
attempts with a named error, and a 412 on our own earlier write counts as landed, never twice.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from checks.verdict import Outcome
from reports.ledger import GENESIS, LedgerCorrupt, LedgerEntry, LedgerError, NewEntry, chain
from reports.ledger_s3 import AppendPolicy, S3Ledger, S3Location

BUCKET, PREFIX = "ops", "ledger/"


def entry(ident: str, run_id: str = "mine") -> NewEntry:
    return NewEntry(id=ident, scenario="s", cadence="monthly", pack="backup", outcome=Outcome.PASSED,
                    run_id=run_id, time="2026-12-03T09:00:00+00:00", duration_s=1.0, evidence_sha256="00")


def batch(first_seq: int, prev: str, idents: list[str], run_id: str) -> list[LedgerEntry]:
    found = []
    for offset, ident in enumerate(idents):
        item = chain(entry(ident, run_id), seq=first_seq + offset, prev=prev)
        found.append(item)
        prev = item.hash
    return found


def body(entries: list[LedgerEntry]) -> bytes:
    return "".join(e.line() for e in entries).encode("utf-8")


def key(seq: int) -> str:
    return f"{PREFIX}{seq:012d}.jsonl"


class Clock:
    """Monotonic time that moves only when the ledger sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class Script:
    """The S3 answers an append will get, in order, checked against what it asks."""

    def __init__(self, stubber: Stubber) -> None:
        self.stubber = stubber

    def listing(self, *keys: str, after: str | None = None) -> None:
        """One listing answer; ``after``: the ``StartAfter`` the append must ask with."""
        params = {"Bucket": BUCKET, "Prefix": PREFIX, "Delimiter": "/"}
        if after is not None:
            params["StartAfter"] = after
        self.stubber.add_response(
            "list_objects_v2", {"Contents": [{"Key": k} for k in keys], "IsTruncated": False}, params)

    def get(self, at: str, data: bytes, writer: str = "someone-else") -> None:
        self.stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data)),
                                                 "Metadata": {"drillbook-append": writer}},
                                  {"Bucket": BUCKET, "Key": at})

    def missing(self, at: str) -> None:
        self.stubber.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404,
                                      expected_params={"Bucket": BUCKET, "Key": at})

    def put(self, at: str, data: bytes | Any = ANY) -> None:
        self.stubber.add_response("put_object", {"ETag": '"e"'}, self._put_params(at, data))

    def lose(self, at: str, status: int) -> None:
        code = {412: "PreconditionFailed", 409: "ConditionalRequestConflict"}[status]
        self.stubber.add_client_error("put_object", service_error_code=code, http_status_code=status,
                                      expected_params=self._put_params(at, ANY))

    @staticmethod
    def _put_params(at: str, data: bytes | Any) -> dict[str, Any]:
        return {"Bucket": BUCKET, "Key": at, "Body": data, "IfNoneMatch": "*",
                "ContentType": "application/x-ndjson", "Metadata": {"drillbook-append": ANY}}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client() -> Any:
    # Never sends a request: the Stubber answers every call, and refuses any it was not told of.
    return boto3.session.Session().client("s3", region_name="us-east-1", aws_access_key_id="k",
                                          aws_secret_access_key="s")


@pytest.fixture
def script(client: Any) -> Iterator[Script]:
    with Stubber(client) as stubber:
        yield Script(stubber)
        stubber.assert_no_pending_responses()


def ledger(client: Any, clock: Clock, policy: AppendPolicy | None = None) -> S3Ledger:
    return S3Ledger(S3Location(BUCKET, PREFIX), client, policy=policy or AppendPolicy(),
                    clock=clock, sleep=clock.sleep, rng=random.Random(7))


class TestLostRaces:
    def test_409_retries_the_same_position_and_412_follows_the_winner(
            self, client: Any, clock: Clock, script: Script) -> None:
        """Tail at seq 1; a conflict (409), then seq 2 taken by a 2-entry batch (412): ours goes to 4."""
        ours_first = batch(1, GENESIS, ["A"], "old")
        winner = batch(2, ours_first[-1].hash, ["W1", "W2"], "other")
        expected = batch(4, winner[-1].hash, ["X", "Y"], "mine")
        script.listing(key(1))
        script.get(key(1), body(ours_first))
        script.lose(key(2), 409)
        script.listing(after=key(1))  # nothing landed during the pause
        script.lose(key(2), 412)
        script.get(key(2), body(winner))
        script.listing(after=key(2))
        script.put(key(4), body(expected))
        appended = ledger(client, clock).append([entry("X"), entry("Y")])
        assert appended == expected
        assert appended[0].prev == winner[-1].hash
        policy = AppendPolicy()
        assert len(clock.pauses) == 2
        for lost, pause in enumerate(clock.pauses, start=1):
            assert 0.0 <= pause <= min(policy.cap_s, policy.base_s * 2 ** lost)

    def test_a_412_whose_winner_is_not_readable_yet_retries_the_same_position(
            self, client: Any, clock: Clock, script: Script) -> None:
        script.listing()
        script.lose(key(1), 412)
        script.missing(key(1))
        script.listing()
        script.put(key(1))
        assert [e.seq for e in ledger(client, clock).append([entry("X")])] == [1]
        assert len(clock.pauses) == 1

    def test_a_412_on_our_own_earlier_write_is_landed_not_appended_again(
            self, client: Any, clock: Clock, script: Script) -> None:
        """A PUT whose reply was lost and retried finds its own object: that is success, once."""
        mine = batch(1, GENESIS, ["X"], "mine")
        made = ledger(client, clock)
        names: list[str] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            names.append(params["Metadata"]["drillbook-append"])

        client.meta.events.register("before-parameter-build.s3.PutObject", record)
        script.listing()
        script.lose(key(1), 412)
        # The object the lost-reply try created carries this append's name; answered lazily below.
        script.get(key(1), body(mine), writer="pending")

        def name_it(**kwargs: Any) -> None:
            kwargs["parsed"]["Metadata"]["drillbook-append"] = names[0]

        client.meta.events.register("after-call.s3.GetObject", name_it)
        assert made.append([entry("X")]) == mine
        assert clock.pauses == []

    def test_the_same_bytes_from_another_writer_are_followed_not_taken_for_ours(
            self, client: Any, clock: Clock, script: Script) -> None:
        """Two appenders of identical entries: both are appends, the second chains after the first."""
        twin = batch(1, GENESIS, ["X"], "mine")
        script.listing()
        script.lose(key(1), 412)
        script.get(key(1), body(twin), writer="another-append")
        script.listing(after=key(1))
        script.put(key(2))
        assert [e.seq for e in ledger(client, clock).append([entry("X")])] == [2]

    def test_the_time_budget_ends_the_attempts_with_a_named_error(self, client: Any, clock: Clock) -> None:
        policy = AppendPolicy(budget_s=1.0, base_s=0.2, cap_s=0.5)
        with Stubber(client) as stubber:  # not the script fixture: the budget leaves answers unused
            script = Script(stubber)
            script.listing()
            for _ in range(40):  # far more than 1 s of 0..0.5 s pauses lets it try
                script.lose(key(1), 409)
                script.listing()
            with pytest.raises(LedgerError) as caught:
                ledger(client, clock, policy).append([entry("X")])
        message = str(caught.value)
        assert message.startswith(f"could not append to the S3 ledger s3://{BUCKET}/{PREFIX}: other appends "
                                  "won the race")
        assert "time budget 1 s" in message
        assert "[ledger] append_timeout" in (caught.value.hint or "")
        assert clock.now <= 1.0 and len(clock.pauses) >= 2

    def test_a_loser_jumps_to_the_new_tail_in_one_listing(
            self, client: Any, clock: Clock, script: Script) -> None:
        """Three runs landed while it paused: one listing and one read, not three more lost races."""
        runs = [batch(1, GENESIS, ["A"], "a")]
        for n, name in ((2, "b"), (3, "c"), (4, "d")):
            runs.append(batch(n, runs[-1][-1].hash, [name.upper()], name))
        script.listing()
        script.lose(key(1), 412)
        script.get(key(1), body(runs[0]))
        script.listing(key(2), key(3), key(4), after=key(1))
        script.get(key(4), body(runs[3]))  # only the last is read: no run id to look for
        script.put(key(5))
        appended = ledger(client, clock).append([entry("X")])
        assert [(e.seq, e.prev) for e in appended] == [(5, runs[3][-1].hash)]
        assert len(clock.pauses) == 1

    def test_a_damaged_winner_refuses_the_append(self, client: Any, clock: Clock, script: Script) -> None:
        script.listing()
        script.lose(key(1), 412)
        script.get(key(1), body(batch(1, GENESIS, ["W"], "other"))[:-20])
        with pytest.raises(LedgerCorrupt, match=r"000000000001\.jsonl is incomplete"):
            ledger(client, clock).append([entry("X")])


class TestUnlessRun:
    def test_a_run_already_listed_appends_nothing(self, client: Any, clock: Clock, script: Script) -> None:
        first = batch(1, GENESIS, ["A"], "manual")
        second = batch(2, first[-1].hash, ["B"], "group-7")
        script.listing(key(1), key(2))
        script.get(key(1), body(first))
        script.get(key(2), body(second))
        assert ledger(client, clock).append([entry("X", "group-7")], unless_run="group-7") == []

    def test_a_twin_merge_that_wins_the_race_is_found_on_the_way(
            self, client: Any, clock: Clock, script: Script) -> None:
        """The other merge of the same group took seq 1 after our listing: we read it, append nothing."""
        twin = batch(1, GENESIS, ["X", "Y"], "group-7")
        script.listing()
        script.lose(key(1), 412)
        script.get(key(1), body(twin))  # the same run, other bytes than ours (another scenario list)
        assert ledger(client, clock).append([entry("X", "group-7")], unless_run="group-7") == []

    def test_unrelated_winners_are_followed(self, client: Any, clock: Clock, script: Script) -> None:
        other = batch(1, GENESIS, ["W"], "manual")
        script.listing()
        script.lose(key(1), 412)
        script.get(key(1), body(other))
        script.listing(after=key(1))
        script.put(key(2))
        appended = ledger(client, clock).append([entry("X", "group-7")], unless_run="group-7")
        assert [(e.seq, e.prev) for e in appended] == [(2, other[-1].hash)]

    def test_a_twin_that_landed_during_the_pause_is_found_by_catching_up(
            self, client: Any, clock: Clock, script: Script) -> None:
        first = batch(1, GENESIS, ["W"], "manual")
        second = batch(2, first[-1].hash, ["V"], "cron")
        twin = batch(3, second[-1].hash, ["X"], "group-7")
        script.listing()
        script.lose(key(1), 412)
        script.get(key(1), body(first))
        script.listing(key(2), key(3), after=key(1))
        script.get(key(2), body(second))
        script.get(key(3), body(twin))
        assert ledger(client, clock).append([entry("X", "group-7")], unless_run="group-7") == []


class TestPolicy:
    def test_pauses_grow_exponentially_up_to_the_cap(self) -> None:
        policy = AppendPolicy(base_s=0.1, cap_s=1.0)
        rng = random.Random(1)
        for attempt, bound in ((1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (60, 1.0)):
            draws = [policy.pause(attempt, rng) for _ in range(200)]
            assert all(0.0 <= d <= bound for d in draws)
            assert max(draws) > bound * 0.8  # the jitter really spreads over the whole range
