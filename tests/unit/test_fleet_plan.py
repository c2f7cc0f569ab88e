"""The fleet plan (FLEET.md §5, test T3): every item once, LPT's bound, the host cap, same bytes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drillbook.fleet.plan import (
    DEFAULT_ESTIMATE_S,
    History,
    Plan,
    PlanError,
    PlanInputs,
    WorkItem,
    canonical_json,
    estimate_items,
    make_plan,
    p75,
    pack,
    planned_makespan,
)
from reports.results import RunResult, ScenarioResult


@dataclass(frozen=True)
class Member:
    name: str
    host: str | None = None


@dataclass(frozen=True)
class Ref:
    id: str
    feature: Path
    name: str
    tags: tuple[str, ...] = ()


def _inputs(members: list[Member], ids: list[str], *, bins: int, host_cap: int | None = None,
            history: History | None = None, sizes: dict[str, int] | None = None) -> PlanInputs:
    return PlanInputs(
        group="g1", drillbook_version="0.1.0", inventory_digest="sha256:inv",
        members=members, scenarios=[Ref(i, Path(f"/suite/features/fleet/{i}.feature"), f"scenario {i}")
                                    for i in ids],
        feature_bytes={f"fleet/{i}.feature": i.encode() for i in ids},
        selection={"cadence": "monthly", "tags": None, "members": None},
        bins=bins, host_cap=host_cap, history=history or History(), sizes=sizes or {},
    )


_durations = st.floats(min_value=0.5, max_value=500, allow_nan=False, allow_infinity=False)


@st.composite
def _fleets(draw: st.DrawFn) -> tuple[list[WorkItem], dict[str, str], int]:
    """Random members with 1-4 scenarios of random length, some on shared hosts."""
    count = draw(st.integers(min_value=1, max_value=30))
    hosts = draw(st.lists(st.sampled_from(["h1", "h2", "h3", "h4"]) | st.none(),
                          min_size=count, max_size=count))
    items = []
    for m in range(count):
        for s in range(draw(st.integers(min_value=1, max_value=4))):
            items.append(WorkItem(f"m{m:02d}", f"S-{s}", round(draw(_durations), 3), "history"))
    host_of = {f"m{m:02d}": h for m, h in enumerate(hosts) if h is not None}
    return items, host_of, draw(st.integers(min_value=1, max_value=16))


class TestPacking:
    @settings(max_examples=150, deadline=None)
    @given(_fleets(), st.integers(min_value=1, max_value=3) | st.none())
    def test_every_item_is_in_exactly_one_bin(self, fleet: tuple[list[WorkItem], dict[str, str], int],
                                              cap: int | None) -> None:
        """No work item is lost or planned twice, with or without a host cap."""
        items, hosts, bins = fleet
        packed = pack(items, bins=bins, hosts=hosts, host_cap=cap)
        placed = [(i.member, i.scenario) for b in packed for i in b.items]
        assert sorted(placed) == sorted((i.member, i.scenario) for i in items)
        assert len(packed) == bins
        assert [b.index for b in packed] == list(range(bins))

    @settings(max_examples=150, deadline=None)
    @given(_fleets())
    def test_makespan_is_within_the_list_scheduling_bound(
            self, fleet: tuple[list[WorkItem], dict[str, str], int]) -> None:
        """One wave (bins = W): makespan <= ΣT/W + (1 - 1/W)·max T, T an indivisible unit."""
        items, _, workers = fleet
        packed = pack(items, bins=workers, hosts={})
        total = sum(i.estimate_s for i in items)
        # The units LPT placed: a member's items, or one item of a member split for being long.
        per_member: dict[str, float] = {}
        for item in items:
            per_member[item.member] = per_member.get(item.member, 0.0) + item.estimate_s
        target = total / workers
        units = [t if t <= target else max(i.estimate_s for i in items if i.member == m)
                 for m, t in per_member.items()]
        bound = total / workers + (1 - 1 / workers) * max(units)
        assert planned_makespan([b.estimate_s for b in packed], workers) <= bound + 1e-6

    @settings(max_examples=100, deadline=None)
    @given(_fleets(), st.integers(min_value=1, max_value=8))
    def test_more_bins_than_slots_keeps_graham_bound_over_bins(
            self, fleet: tuple[list[WorkItem], dict[str, str], int], parallel: int) -> None:
        """Bins dispatched longest first onto W slots: makespan <= ΣB/W + (1 - 1/W)·max B."""
        items, _, bins = fleet
        estimates = [b.estimate_s for b in pack(items, bins=bins, hosts={})]
        assert estimates == sorted(estimates, reverse=True)
        bound = sum(estimates) / parallel + (1 - 1 / parallel) * max(estimates)
        assert planned_makespan(estimates, parallel) <= bound + 1e-6

    @settings(max_examples=150, deadline=None)
    @given(_fleets(), st.integers(min_value=1, max_value=3))
    def test_host_cap_bounds_the_bins_holding_a_host(
            self, fleet: tuple[list[WorkItem], dict[str, str], int], cap: int) -> None:
        """The members of one host are in at most k bins of the whole plan."""
        items, hosts, bins = fleet
        packed = pack(items, bins=bins, hosts=hosts, host_cap=cap)
        for host in set(hosts.values()):
            holding = {b.index for b in packed for i in b.items if hosts.get(i.member) == host}
            assert len(holding) <= cap, (host, holding)

    def test_a_member_stays_whole_unless_longer_than_a_bin(self) -> None:
        """Members are packed whole; only one longer than ΣT/bins is split by scenario."""
        items = [WorkItem("big", f"S-{s}", 100.0, "history") for s in range(4)]
        items += [WorkItem(f"small{m}", f"S-{s}", 10.0, "history") for m in range(4) for s in range(2)]
        packed = pack(items, bins=4, hosts={})
        for m in range(4):
            assert len({b.index for b in packed for i in b.items if i.member == f"small{m}"}) == 1
        assert len({b.index for b in packed for i in b.items if i.member == "big"}) == 4

    def test_zero_bins_is_refused(self) -> None:
        with pytest.raises(PlanError, match="at least one bin"):
            pack([WorkItem("a", "S", 1.0, "default")], bins=0, hosts={})


class TestEstimates:
    def test_p75_interpolates_like_numpy(self) -> None:
        assert p75([1.0, 2.0, 3.0, 4.0]) == pytest.approx(3.25)
        assert p75([7.0]) == 7.0

    def test_history_wins_then_size_then_known_then_default(self) -> None:
        """Each item names the basis of its estimate, in the documented order."""
        history = History({("a", "S-1"): (10.0, 20.0, 30.0, 40.0)}, ("r1",))
        items = estimate_items([Member("a"), Member("b"), Member("c")], ["S-1"], history=history,
                               sizes={"b": 100 * 1024 * 1024}, rate_bps=10 * 1024 * 1024)
        by = {i.member: i for i in items}
        assert (by["a"].estimate_s, by["a"].basis) == (32.5, "history")
        assert (by["b"].estimate_s, by["b"].basis) == (10.0, "size")
        assert by["c"].basis == "known" and by["c"].estimate_s == pytest.approx(p75([32.5, 10.0]))
        lone = estimate_items([Member("z")], ["S-1"], history=History(), sizes={})
        assert (lone[0].estimate_s, lone[0].basis) == (DEFAULT_ESTIMATE_S, "default")

    def test_history_reads_member_scenarios_of_merged_runs(self) -> None:
        """Only fleet scenarios that ran count: the stand-in of a never-committed shard has no duration."""
        ran = ScenarioResult(nodeid="n[a]", feature="f", feature_path="f", scenario="s",
                             tags=["id:S-1", "member:a"], duration_s=12.0)
        ran.member = "a"
        missing = ScenarioResult(nodeid="n[b]", feature="f", feature_path="f", scenario="s",
                                 tags=["id:S-1", "member:b"], duration_s=0.0)
        missing.member = "b"
        history = History.of([RunResult(run_id="r1", started_at="", scenarios=[ran, missing])])
        assert history.estimate("a", "S-1") == 12.0
        assert history.estimate("b", "S-1") is None


class TestPlanDocument:
    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.sampled_from(["h1", "h2"]) | st.none(), min_size=1, max_size=12),
           st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=2) | st.none())
    def test_same_inputs_give_byte_identical_plans(self, hosts: list[str | None], bins: int,
                                                   cap: int | None) -> None:
        """Planning twice (members given in another order) writes the same bytes, and they read back."""
        members = [Member(f"db-{n:03d}", h) for n, h in enumerate(hosts)]
        sizes = {m.name: (n + 1) * 10_000_000 for n, m in enumerate(members) if n % 2}
        first = make_plan(_inputs(members, ["S-2", "S-1"], bins=bins, host_cap=cap, sizes=sizes)).to_bytes()
        second = make_plan(_inputs(list(reversed(members)), ["S-1", "S-2"], bins=bins, host_cap=cap,
                                   sizes=dict(reversed(sizes.items())))).to_bytes()
        assert first == second
        assert Plan.from_bytes(first, where="plan.json").to_bytes() == first

    def test_records_its_inputs(self) -> None:
        """Version, inventory and features digests, selection and history snapshot are in plan.json."""
        plan = make_plan(_inputs([Member("a")], ["S-1"], bins=1,
                                 history=History({("a", "S-1"): (5.0,)}, ("r0",))))
        data = plan.to_dict()
        assert data["drillbook_version"] == "0.1.0" and data["inventory_digest"] == "sha256:inv"
        assert data["features_digest"].startswith("sha256:") and data["features"] == ["fleet/S-1.feature"]
        assert data["selection"]["cadence"] == "monthly"
        assert data["history"]["runs"] == ["r0"] and data["history"]["p75_s"] == {"S-1[a]": 5.0}
        assert canonical_json(data) == plan.to_bytes()

    def test_an_edited_feature_changes_the_features_digest(self) -> None:
        base = _inputs([Member("a")], ["S-1"], bins=1)
        edited = PlanInputs(**{**base.__dict__, "feature_bytes": {"fleet/S-1.feature": b"changed"}})
        assert make_plan(base).features_digest != make_plan(edited).features_digest

    @pytest.mark.parametrize(("text", "words"), [
        (b"not json", "not JSON"),
        (b"[]", "not an object"),
        (b'{"format": 99}', "format 99"),
        (b"\xff", "not JSON"),
    ])
    def test_a_malformed_plan_is_a_plan_error_naming_the_file(self, text: bytes, words: str) -> None:
        with pytest.raises(PlanError, match=words) as caught:
            Plan.from_bytes(text, where="s3://b/runs/g/plan.json")
        assert "s3://b/runs/g/plan.json" in str(caught.value)

    def test_an_item_in_two_bins_is_refused(self) -> None:
        data = make_plan(_inputs([Member("a"), Member("b")], ["S-1"], bins=2)).to_dict()
        data["bins"][1]["items"] = list(data["bins"][0]["items"])
        with pytest.raises(PlanError, match="in two bins"):
            Plan.from_bytes(canonical_json(data), where="plan.json")

    @pytest.mark.parametrize(("where", "value", "words"), [
        ("member", "x/../../../home/u/.ssh", "not a fleet member name"),
        ("member", "evil\n", "not a fleet member name"),
        ("id", "S-1 or monthly", "not an @id: value"),
        ("group", "../elsewhere", "not a run group name"),
    ])
    def test_names_that_become_paths_keys_or_tags_are_refused(self, where: str, value: str,
                                                              words: str) -> None:
        """A plan read back from a runs location is outside input: its names become the child's run
        directory, S3 keys and its --tags expression, so they are held to plain characters."""
        data = make_plan(_inputs([Member("a")], ["S-1"], bins=1)).to_dict()
        if where == "group":
            data["group"] = value
        elif where == "member":
            data["bins"][0]["items"][0]["member"] = value
        else:
            data["bins"][0]["items"][0]["id"] = value
            data["scenarios"][value] = data["scenarios"].pop("S-1")
        with pytest.raises(PlanError, match=words):
            Plan.from_bytes(canonical_json(data), where="plan.json")

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                        lambda inner: (st.lists(inner, max_size=3)
                                       | st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                        max_leaves=12))
    def test_any_json_is_a_plan_or_a_plan_error(self, value: object) -> None:
        """Outside input (a plan read back from S3) never crashes the reader with anything else."""
        import json

        with contextlib.suppress(PlanError):
            Plan.from_bytes(json.dumps(value).encode(), where="plan.json")
