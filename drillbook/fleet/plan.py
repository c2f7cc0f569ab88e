"""The fleet plan: work items (member × scenario) packed into bins, stored once as ``plan.json``.

FLEET.md §5. Every shard reads the one stored plan and nobody recomputes it (the
pytest-split lesson), so the plan records its inputs: format version, drillbook
version, inventory digest, features digest, the selection (cadence, tags,
members) and the history snapshot its estimates came from.

Estimates, per (member, scenario id), first that applies:

1. ``history``: the p75 of the scenario's ``duration_s`` in earlier *merged*
   results of that member (p75, not the mean: "unknown = average" under-estimates);
2. ``size``: the member's newest backup size × a restore rate (learned from the
   history when it has sizes, else :data:`DEFAULT_RATE_BPS`);
3. ``known``: the p75 of every estimate of kind 1 or 2 in this plan;
4. ``default``: :data:`DEFAULT_ESTIMATE_S`.

Packing: a member's scenarios form one unit (they share the expensive parts),
unless the member's total exceeds the target bin length (ΣT / bins): then each
of its scenarios is a unit. Units go largest first onto the least-loaded bin
(LPT); bins are then sorted by estimate, longest first, and numbered.

The per-host cap ``k`` (members' ``host`` label): the members of one host are
packed into at most ``k`` bins *of the whole plan*. A bin runs its items one
after the other, so at most ``k`` drills read that host at any moment, whatever
the engine's parallelism and dispatch order. (A cap per parallelism wave would
allow more bins per host, but Kubernetes and CI start the next bin whenever a
slot frees, so "waves" do not exist at run time and such a cap would not hold.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from checks.errors import ConfigError
from reports.results import RunResult

FORMAT = 1
DEFAULT_ESTIMATE_S = 60.0  # a scenario nobody has measured and with no backup size: a minute
DEFAULT_RATE_BPS = 50 * 1024 * 1024  # restore throughput assumed without history: 50 MiB/s
# No item costs less: a member's child run starts a process and its environment. Without a floor,
# a fleet of tiny backups would estimate ~0 s everywhere and LPT could not tell its bins apart.
MIN_ESTIMATE_S = 1.0
_ROUND = 3  # estimates in ms: stable JSON bytes whatever the float noise of the inputs


class PlanError(ConfigError):
    """A plan that cannot be made or read: exit 2, nothing ran."""

    default_hint = "make the plan again with `drillbook plan` from this checkout"


class MemberLike(Protocol):
    """What the planner needs of an inventory member (drillbook.fleet.inventory.Member)."""

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str | None: ...


class ScenarioLike(Protocol):
    """What the planner needs of a scenario (drillbook.fleet.scenarios.ScenarioRef)."""

    @property
    def id(self) -> str: ...

    @property
    def feature(self) -> Path: ...

    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class WorkItem:
    """One scenario for one member, with its estimate and where the estimate came from."""

    member: str
    scenario: str
    estimate_s: float
    basis: str  # history | size | known | default

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "id": self.scenario, "estimate_s": self.estimate_s,
                "basis": self.basis}


@dataclass(frozen=True)
class Bin:
    """What one shard index runs: items grouped by member, in order."""

    index: int
    items: tuple[WorkItem, ...]

    @property
    def estimate_s(self) -> float:
        return round(sum(i.estimate_s for i in self.items), _ROUND)

    def members(self) -> list[str]:
        """The bin's members in the order they run (first appearance)."""
        return list(dict.fromkeys(i.member for i in self.items))


@dataclass(frozen=True)
class ScenarioInfo:
    """What the merge needs to name a scenario that never ran (a missing shard's items)."""

    name: str
    feature: str  # the feature file, relative to its features folder
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """A stored plan; :meth:`to_bytes` is canonical: same inputs, same bytes."""

    group: str
    drillbook_version: str
    inventory_digest: str
    features_digest: str
    features: tuple[str, ...]  # the selected feature files, relative to their features folder
    config: str | None  # the drillbook.toml the plan was made from, as given
    selection: Mapping[str, str | None]
    parallel: int
    host_cap: int | None
    hosts: Mapping[str, str]  # member -> host label, for members that have one
    scenarios: Mapping[str, ScenarioInfo]
    history: Mapping[str, Any]
    bins: tuple[Bin, ...]
    format: int = FORMAT

    def items(self) -> list[tuple[int, WorkItem]]:
        return [(b.index, item) for b in self.bins for item in b.items]

    def makespan_s(self) -> float:
        """Planned wall time: bins dispatched in index order onto ``parallel`` free slots."""
        return planned_makespan([b.estimate_s for b in self.bins], self.parallel)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "group": self.group,
            "drillbook_version": self.drillbook_version,
            "inventory_digest": self.inventory_digest,
            "features_digest": self.features_digest,
            "features": list(self.features),
            "config": self.config,
            "selection": dict(self.selection),
            "parallel": self.parallel,
            "host_cap": self.host_cap,
            "hosts": dict(self.hosts),
            "scenarios": {k: {"name": v.name, "feature": v.feature, "tags": list(v.tags)}
                          for k, v in self.scenarios.items()},
            "history": dict(self.history),
            "estimated_makespan_s": round(self.makespan_s(), _ROUND),
            "bins": [{"index": b.index, "estimate_s": b.estimate_s, "items": [i.to_dict() for i in b.items]}
                     for b in self.bins],
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> Plan:
        """Parse a stored plan; anything malformed is a :class:`PlanError` naming ``where``."""
        from checks.strict_json import loads_strict

        try:
            raw = loads_strict(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise PlanError(f"{where}: not a drillbook plan (not JSON: {exc})", file=where) from exc
        try:
            return _plan_from(raw)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise PlanError(f"{where}: not a drillbook plan ({type(exc).__name__}: {exc})",
                            file=where) from exc


def _plan_from(raw: Any) -> Plan:
    if not isinstance(raw, dict):
        raise TypeError("the document is not an object")
    if raw["format"] != FORMAT:
        raise ValueError(f"format {raw['format']!r}, this drillbook reads format {FORMAT}")
    bins = []
    for expected, entry in enumerate(raw["bins"]):
        if entry["index"] != expected:
            raise ValueError(f"bin {expected} is numbered {entry['index']!r}")
        items = tuple(WorkItem(member=_member(i["member"]), scenario=_scenario_id(i["id"]),
                               estimate_s=float(i["estimate_s"]), basis=_str(i["basis"]))
                      for i in entry["items"])
        bins.append(Bin(index=expected, items=items))
    scenarios = {_scenario_id(k): ScenarioInfo(name=_str(v["name"]), feature=_str(v["feature"]),
                                       tags=tuple(_str(t) for t in v["tags"]))
                 for k, v in raw["scenarios"].items()}
    seen: set[tuple[str, str]] = set()
    for _, item in ((b.index, i) for b in bins for i in b.items):
        key = (item.member, item.scenario)
        if key in seen:
            raise ValueError(f"work item {item.scenario}[{item.member}] is in two bins")
        if item.scenario not in scenarios:
            raise ValueError(f"work item {item.scenario}[{item.member}] names an unknown scenario")
        seen.add(key)
    cap = raw["host_cap"]
    if not bins:
        raise ValueError("the plan has no bins")
    return Plan(
        group=_group(raw["group"]), drillbook_version=_str(raw["drillbook_version"]),
        inventory_digest=_str(raw["inventory_digest"]), features_digest=_str(raw["features_digest"]),
        features=tuple(_str(f) for f in raw["features"]),
        config=None if raw["config"] is None else _str(raw["config"]),
        selection={_str(k): (None if v is None else _str(v)) for k, v in raw["selection"].items()},
        parallel=_positive(raw["parallel"]), host_cap=None if cap is None else _positive(cap),
        hosts={_str(k): _str(v) for k, v in raw["hosts"].items()},
        scenarios=scenarios, history=dict(raw["history"]), bins=tuple(bins),
    )


# A plan is read back from a runs location anyone with write access to it could have written:
# names that become paths, keys or a child's --tags expression are held to plain characters.
_SCENARIO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _member(value: Any) -> str:
    from drills.fleet import MEMBER_NAME

    if not MEMBER_NAME.fullmatch(_str(value)):
        raise ValueError(f"member name {value!r} is not a fleet member name")
    return str(value)


def _scenario_id(value: Any) -> str:
    if not _SCENARIO_ID.fullmatch(_str(value)):
        raise ValueError(f"scenario id {value!r} is not an @id: value")
    return str(value)


def _group(value: Any) -> str:
    if not _GROUP_NAME.fullmatch(_str(value)) or value == "ledger":
        raise ValueError(f"group {value!r} is not a run group name")
    return str(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def canonical_json(data: Any) -> bytes:
    """Sorted keys, fixed separators, UTF-8, a final newline: the same data gives the same bytes."""
    return (json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- estimates


def p75(values: Sequence[float]) -> float:
    """The 75th percentile, linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("p75 of nothing")
    ordered = sorted(values)
    position = 0.75 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class History:
    """Durations per (member, scenario id) from earlier merged runs, and the runs they came from."""

    durations: Mapping[tuple[str, str], tuple[float, ...]] = field(default_factory=dict)
    run_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, runs: Iterable[RunResult]) -> History:
        found: dict[tuple[str, str], list[float]] = {}
        ids = []
        for run in sorted(runs, key=lambda r: r.run_id):
            ids.append(run.run_id)
            for scenario in run.scenarios:
                member = getattr(scenario, "member", None)
                ident = scenario.scenario_id
                # Only scenarios that ran: a never-committed shard's stand-in has no duration.
                if member is None or ident is None or scenario.duration_s <= 0:
                    continue
                found.setdefault((member, ident), []).append(scenario.duration_s)
        return cls({k: tuple(v) for k, v in found.items()}, tuple(ids))

    def estimate(self, member: str, scenario: str) -> float | None:
        values = self.durations.get((member, scenario))
        return round(max(MIN_ESTIMATE_S, p75(values)), _ROUND) if values else None


def estimate_items(members: Sequence[MemberLike], scenario_ids: Sequence[str], *, history: History,
                   sizes: Mapping[str, int], rate_bps: float = DEFAULT_RATE_BPS) -> list[WorkItem]:
    """One :class:`WorkItem` per (member, scenario) with its estimate (module docstring's order)."""
    items: list[WorkItem] = []
    pending: list[tuple[str, str]] = []
    for member in members:
        for ident in scenario_ids:
            measured = history.estimate(member.name, ident)
            if measured is not None:
                items.append(WorkItem(member.name, ident, measured, "history"))
            elif sizes.get(member.name):
                estimate = max(MIN_ESTIMATE_S, sizes[member.name] / rate_bps)
                items.append(WorkItem(member.name, ident, round(estimate, _ROUND), "size"))
            else:
                pending.append((member.name, ident))
    known = [i.estimate_s for i in items]
    fallback, basis = (round(p75(known), _ROUND), "known") if known else (DEFAULT_ESTIMATE_S, "default")
    items.extend(WorkItem(m, s, fallback, basis) for m, s in pending)
    return items


# ---------------------------------------------------------------- packing


@dataclass(frozen=True)
class _Unit:
    """What LPT places: a member's items (or one of a split member's)."""

    items: tuple[WorkItem, ...]
    host: str | None

    @property
    def estimate_s(self) -> float:
        return sum(i.estimate_s for i in self.items)

    def key(self) -> tuple[float, str, str]:
        return (-self.estimate_s, self.items[0].member, self.items[0].scenario)


def pack(items: Sequence[WorkItem], *, bins: int, hosts: Mapping[str, str],
         host_cap: int | None = None) -> tuple[Bin, ...]:
    """LPT with members kept whole unless longer than ΣT/bins; at most ``host_cap`` bins per host."""
    if bins < 1:
        raise PlanError(f"a plan needs at least one bin, got {bins}", key="--bins")
    if host_cap is not None and host_cap < 1:
        raise PlanError(f"--host-cap must be at least 1, got {host_cap}", key="--host-cap")
    by_member: dict[str, list[WorkItem]] = {}
    for item in items:
        by_member.setdefault(item.member, []).append(item)
    total = sum(i.estimate_s for i in items)
    target = total / bins
    units: list[_Unit] = []
    for member, own in by_member.items():
        own.sort(key=lambda i: i.scenario)
        host = hosts.get(member)
        if sum(i.estimate_s for i in own) > target and len(own) > 1:
            units.extend(_Unit((i,), host) for i in own)
        else:
            units.append(_Unit(tuple(own), host))
    units.sort(key=_Unit.key)
    loads = [0.0] * bins
    contents: list[list[WorkItem]] = [[] for _ in range(bins)]
    host_bins: dict[str, list[int]] = {}
    for unit in units:
        candidates: Iterable[int] = range(bins)
        if host_cap is not None and unit.host is not None:
            used = host_bins.setdefault(unit.host, [])
            if len(used) >= host_cap:
                candidates = used
        chosen = min(candidates, key=lambda b: (loads[b], len(contents[b]), b))
        loads[chosen] += unit.estimate_s
        contents[chosen].extend(unit.items)
        if unit.host is not None and chosen not in host_bins.setdefault(unit.host, []):
            host_bins[unit.host].append(chosen)
    # Longest first: an engine with fewer slots than bins then dispatches like LPT list scheduling.
    order = sorted(range(bins), key=lambda b: (-loads[b], _first_key(contents[b]), b))
    return tuple(Bin(index=new, items=tuple(contents[old])) for new, old in enumerate(order))


def _first_key(items: Sequence[WorkItem]) -> tuple[str, str]:
    return (items[0].member, items[0].scenario) if items else ("\uffff", "")


def planned_makespan(estimates: Sequence[float], parallel: int) -> float:
    """Bins started in order whenever one of ``parallel`` slots frees: when the last ends."""
    import heapq

    slots = [0.0] * max(1, min(parallel, len(estimates) or 1))
    for estimate in estimates:
        start = heapq.heappop(slots)
        heapq.heappush(slots, start + estimate)
    return max(slots)


# ---------------------------------------------------------------- digests


def features_digest(files: Mapping[str, bytes]) -> str:
    """SHA-256 over the selected feature files' names (relative) and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).hexdigest().encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def feature_rel(path: Path) -> str:
    """A feature file's name relative to its enclosing ``features`` folder (else its own name)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == "features":
            return resolved.relative_to(parent).as_posix()
    return resolved.name


def read_features(paths: Iterable[Path]) -> dict[str, bytes]:
    """The bytes of the given feature files, keyed by :func:`feature_rel` (two with one name: error)."""
    found: dict[str, bytes] = {}
    where: dict[str, Path] = {}
    for path in sorted({p.resolve() for p in paths}):
        name = feature_rel(path)
        if name in found:
            raise PlanError(f"two selected feature files are both {name!r}: {where[name]} and {path}",
                            hint="give each selected feature file its own path under features/")
        try:
            found[name] = path.read_bytes()
        except OSError as exc:
            raise PlanError(f"cannot read the feature file {path}: {exc.strerror}", file=str(path)) from exc
        where[name] = path
    return found


# ---------------------------------------------------------------- the planner


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan is a function of (so that the same inputs give byte-identical plans)."""

    group: str
    drillbook_version: str
    inventory_digest: str
    members: Sequence[MemberLike]
    scenarios: Sequence[ScenarioLike]
    feature_bytes: Mapping[str, bytes]
    selection: Mapping[str, str | None]
    bins: int
    parallel: int | None = None
    host_cap: int | None = None
    config: str | None = None
    history: History = field(default_factory=History)
    sizes: Mapping[str, int] = field(default_factory=dict)  # member -> newest backup size (bytes)


def make_plan(inputs: PlanInputs) -> Plan:
    """Estimate, pack and describe: a pure function of ``inputs``."""
    if not inputs.members:
        raise PlanError("no fleet member is selected: nothing to plan", key="--members",
                        hint="check `--members` against the [fleet] members' names and labels")
    if not inputs.scenarios:
        raise PlanError("no fleet scenario is selected: nothing to plan", key="--cadence",
                        hint="check --cadence / --tags against the features' tags")
    ids = sorted({s.id for s in inputs.scenarios})
    rate = _learned_rate(inputs.history, inputs.sizes) or DEFAULT_RATE_BPS
    items = estimate_items(inputs.members, ids, history=inputs.history, sizes=inputs.sizes, rate_bps=rate)
    hosts = {m.name: m.host for m in inputs.members if m.host}
    bins = pack(items, bins=inputs.bins, hosts=hosts, host_cap=inputs.host_cap)
    scenarios = {s.id: ScenarioInfo(name=s.name, feature=feature_rel(s.feature), tags=tuple(s.tags))
                 for s in sorted(inputs.scenarios, key=lambda s: (s.id, str(s.feature)))}
    snapshot = {
        "runs": list(inputs.history.run_ids),
        "p75_s": {f"{s}[{m}]": inputs.history.estimate(m, s)
                  for (m, s) in sorted(inputs.history.durations)},
        "rate_bps": round(rate, _ROUND),
        "backup_bytes": {k: v for k, v in sorted(inputs.sizes.items()) if v},
    }
    return Plan(
        group=inputs.group, drillbook_version=inputs.drillbook_version,
        inventory_digest=inputs.inventory_digest, features_digest=features_digest(inputs.feature_bytes),
        features=tuple(sorted(inputs.feature_bytes)), config=inputs.config,
        selection=dict(inputs.selection), parallel=inputs.parallel or inputs.bins, host_cap=inputs.host_cap,
        hosts=hosts, scenarios=scenarios, history=snapshot, bins=bins,
    )


def _learned_rate(history: History, sizes: Mapping[str, int]) -> float | None:
    """Bytes per second of the members whose backup size and durations are both known."""
    size_total = 0
    time_total = 0.0
    for (member, scenario) in history.durations:
        size = sizes.get(member)
        measured = history.estimate(member, scenario)
        if size and measured:
            size_total += size
            time_total += measured
    return size_total / time_total if time_total > 0 else None
