"""The shard protocol's pieces: create-only storage, 412/409 handling, the index, the JUnit merger."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from checks.errors import ConfigError
from drillbook.fleet import junit_merge
from drillbook.fleet.plan import PlanError
from drillbook.fleet.runs import (
    MAX_COMMIT_BYTES,
    Commit,
    DirRuns,
    MergeInputError,
    RunsError,
    S3Runs,
    split_url,
)
from drillbook.fleet.shard import shard_index


class TestDirRuns:
    def test_create_only_refuses_an_existing_key_and_keeps_the_first_bytes(self, tmp_path: Path) -> None:
        runs = DirRuns("g", tmp_path / "g")
        assert runs.put_create_only("shards/0.commit.json", b"first") is True
        assert runs.put_create_only("shards/0.commit.json", b"second") is False
        assert runs.get("shards/0.commit.json") == b"first"
        assert [p.name for p in (tmp_path / "g" / "shards").iterdir()] == ["0.commit.json"], "no temp left"

    def test_exactly_one_of_many_concurrent_creators_wins(self, tmp_path: Path) -> None:
        """32 threads race for merge.claim: one True, the rest False, the winner's bytes stay."""
        runs = DirRuns("g", tmp_path / "g")
        barrier = threading.Barrier(32)
        results: dict[int, bool] = {}

        def race(n: int) -> None:
            barrier.wait()
            results[n] = runs.put_create_only("merge.claim", str(n).encode())

        threads = [threading.Thread(target=race, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [n for n, won in results.items() if won]
        assert len(winners) == 1
        assert runs.get("merge.claim") == str(winners[0]).encode()

    def test_get_of_a_missing_key_is_none_and_list_is_sorted(self, tmp_path: Path) -> None:
        runs = DirRuns("g", tmp_path / "g")
        assert runs.get("plan.json") is None
        runs.put("shards/1/a/results.json", b"{}")
        runs.put("shards/0/a/results.json", b"{}")
        assert runs.list("shards/") == ["shards/0/a/results.json", "shards/1/a/results.json"]


def _error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


class _StubS3:
    """A stubbed client for the deterministic 412/409 handling FLEET.md asks for (not a moto test)."""

    def __init__(self, answers: list[ClientError | None], stored: bytes | None = None) -> None:
        self.answers = answers
        self.stored = stored
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.puts.append(kwargs)
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer
        return {}

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        if self.stored is None:
            raise _error("NoSuchKey", 404)

        class Body:
            def read(inner) -> bytes:
                assert self.stored is not None
                return self.stored

        return {"Body": Body()}


class TestS3CreateOnly:
    def test_put_sends_if_none_match(self) -> None:
        stub = _StubS3([None])
        assert S3Runs("g", "b", "runs/g/", stub).put_create_only("merge.claim", b"x") is True
        assert stub.puts[0]["IfNoneMatch"] == "*" and stub.puts[0]["Key"] == "runs/g/merge.claim"

    def test_412_means_the_key_exists(self) -> None:
        stub = _StubS3([_error("PreconditionFailed", 412)])
        assert S3Runs("g", "b", "runs/g/", stub).put_create_only("merge.claim", b"x") is False
        assert len(stub.puts) == 1

    def test_409_then_the_other_writer_won(self) -> None:
        """A conflicting write in flight: look; the key is there, so it exists (no second put)."""
        stub = _StubS3([_error("ConditionalRequestConflict", 409)], stored=b"theirs")
        assert S3Runs("g", "b", "runs/g/", stub, sleep=lambda s: None).put_create_only("k", b"x") is False
        assert len(stub.puts) == 1

    def test_409_with_nothing_stored_is_retried(self) -> None:
        stub = _StubS3([_error("ConditionalRequestConflict", 409), None])
        assert S3Runs("g", "b", "runs/g/", stub, sleep=lambda s: None).put_create_only("k", b"x") is True
        assert len(stub.puts) == 2

    def test_other_errors_are_runs_errors_naming_the_object(self) -> None:
        stub = _StubS3([_error("AccessDenied", 403)])
        with pytest.raises(RunsError, match=r"s3://b/runs/g/k.*AccessDenied"):
            S3Runs("g", "b", "runs/g/", stub).put_create_only("k", b"x")


class TestShardIndex:
    def test_sources_in_order(self) -> None:
        env = {"JOB_COMPLETION_INDEX": "3", "CI_NODE_INDEX": "5", "DRILLBOOK_SHARD_INDEX": "7"}
        assert shard_index("1", env) == (1, "--shard-index")
        assert shard_index(None, env) == (3, "JOB_COMPLETION_INDEX")
        assert shard_index(None, {"CI_NODE_INDEX": "5", "DRILLBOOK_SHARD_INDEX": "7"}) == (4, "CI_NODE_INDEX")
        assert shard_index(None, {"DRILLBOOK_SHARD_INDEX": "7"}) == (7, "DRILLBOOK_SHARD_INDEX")

    def test_no_index_is_a_plan_error_naming_the_sources(self) -> None:
        with pytest.raises(PlanError, match="JOB_COMPLETION_INDEX") as caught:
            shard_index(None, {})
        assert caught.value.hint and "DRILLBOOK_SHARD_INDEX" in caught.value.hint

    def test_gitlab_counts_from_one(self) -> None:
        with pytest.raises(PlanError, match="counts from 1"):
            shard_index(None, {"CI_NODE_INDEX": "0"})

    @given(st.text(max_size=12))
    def test_any_text_is_an_index_or_a_plan_error(self, text: str) -> None:
        """Outside input (an environment variable): a whole number, or exit 2 naming the source."""
        try:
            value, _ = shard_index(text, {})
        except PlanError as exc:
            assert "--shard-index" in str(exc)
        else:
            assert value == int(text.strip()) and value >= 0


class TestUrlsAndCommits:
    def test_split_url_accepts_the_group_or_its_plan(self) -> None:
        assert split_url("s3://b/runs/g1/plan.json") == ("s3://b/runs/g1/", "g1")
        assert split_url("/tmp/runs/g1") == ("/tmp/runs/g1/", "g1")

    @pytest.mark.parametrize("url", ["s3://b/runs/../", "s3://b/runs/ledger/", "/tmp/runs/a b/"])
    def test_split_url_refuses_what_is_not_a_group(self, url: str) -> None:
        with pytest.raises(ConfigError, match="run group"):
            split_url(url)

    @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def test_any_bytes_are_a_commit_or_a_merge_input_error(self, data: bytes) -> None:
        """A commit object is read back from the runs location: outside input."""
        try:
            Commit.from_bytes(data, where="shards/0.commit.json")
        except MergeInputError as exc:
            assert "shards/0.commit.json" in str(exc)

    def test_a_commit_stays_under_64_kib(self) -> None:
        commit = Commit(index=0, attempt="a1", files={"results.json": "0" * 64}, details={"host": "h"})
        assert len(commit.to_bytes()) < MAX_COMMIT_BYTES
        assert Commit.from_bytes(commit.to_bytes(), where="c") == commit
        huge = Commit(index=0, attempt="a1", files={f"f{n}": "0" * 64 for n in range(1000)}, details={})
        with pytest.raises(RunsError, match="limit"):
            huge.to_bytes()


def _junit(*cases: str) -> bytes:
    return ("<testsuites><testsuite name='drillbook' tests='99'>" + "".join(cases)
            + "</testsuite></testsuites>").encode()


class TestJunitMerge:
    def test_suites_renamed_cases_sorted_totals_recomputed(self) -> None:
        first = junit_merge.testcases(_junit(
            "<testcase classname='F' name='B[m2]' time='1.5'><failure message='x'/></testcase>",
            "<testcase classname='F' name='A[m1]' time='0.5'/>"), where="s0")
        second = junit_merge.testcases(_junit("<testcase classname='F' name='A[m3]' time='2'/>"), where="s1")
        missing = junit_merge.error_case("F", "B[m3]", "shard 1/2 never committed")
        data = junit_merge.merge([junit_merge.Suite(junit_merge.suite_name(0, 2), first),
                                  junit_merge.Suite(junit_merge.suite_name(1, 2), [*second, missing])])
        root = ET.fromstring(data)  # noqa: S314 - our own output
        assert [s.get("name") for s in root] == ["drillbook shard 00/02", "drillbook shard 01/02"]
        assert [c.get("name") for c in root[0]] == ["A[m1]", "B[m2]"]
        assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == (
            "4", "1", "1", "4.000")
        assert root[1].get("errors") == "1" and root[0].get("tests") == "2"

    def test_the_same_input_merges_to_the_same_bytes(self) -> None:
        def build() -> bytes:
            cases = junit_merge.testcases(_junit("<testcase classname='F' name='A' time='1'/>"), where="s")
            return junit_merge.merge([junit_merge.Suite("drillbook shard 00/01", cases)])

        assert build() == build()

    @pytest.mark.parametrize("data", [b"<x/>", b"not xml",
                                      b'<!DOCTYPE t [<!ENTITY a "aaaa">]><testsuites>&a;</testsuites>'])
    def test_a_damaged_or_hostile_file_is_refused(self, data: bytes) -> None:
        with pytest.raises(junit_merge.JunitMergeError, match="s9"):
            junit_merge.testcases(data, where="s9")


class TestHistory:
    def test_earlier_merged_runs_count_once_and_latest_is_not_a_run(self, tmp_path: Path) -> None:
        """The planner reads sibling groups' merged results.json; `latest` points at one of them."""
        from drillbook.fleet.planner import earlier_history
        from drillbook.runner import _point_latest
        from reports.results import RunResult, ScenarioResult

        for n, seconds in ((1, 10.0), (2, 30.0)):
            scenario = ScenarioResult(nodeid=f"n[a]{n}", feature="f", feature_path="f", scenario="s",
                                      tags=["id:S-1", "member:a"], duration_s=seconds, member="a")
            run = RunResult(run_id=f"r{n}", started_at="", scenarios=[scenario])
            run.write(tmp_path / f"r{n}" / "results.json")
        _point_latest(tmp_path, tmp_path / "r2")
        history = earlier_history(DirRuns("r3", tmp_path / "r3"))
        assert history.run_ids == ("r1", "r2")
        assert history.durations[("a", "S-1")] == (10.0, 30.0)


class TestMemberReadBack:
    @given(st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)))
    def test_a_member_that_is_not_a_string_is_refused(self, member: Any) -> None:
        """A shard's results.json is outside input: its member becomes part of ids and keys."""
        from reports.results import ScenarioResult

        data = {"nodeid": "n", "feature": "f", "feature_path": "f", "scenario": "s", "member": member}
        with pytest.raises(ValueError, match="`member` must be a string or null"):
            ScenarioResult.from_dict(data)
        read = ScenarioResult.from_dict({**data, "member": "db-042", "tags": ["id:S-1"]})
        assert read.display_id == "S-1[db-042]"
