"""Runbook packs: ``features/packs/<product>/``, one per documented product.

``drillbook run --pack sark`` runs one pack; ``drillbook packs`` lists them
with their scenario counts per cadence. A plain ``drillbook run`` leaves the
packs out (they are product-specific: run the one of your product), and the
fleet features too (``features/fleet/``: they name the targets every fleet
member binds, and are what ``drillbook run --fleet`` runs by default).

A scenario is counted once per run item: an outline counts one per Examples
row, as pytest-bdd runs it. A scenario with several cadence tags counts under
each; one with none counts under ``none``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from checks.errors import ConfigError
from reports.results import CADENCES

PACKS_DIR = "packs"
FLEET_DIR = "fleet"
# Folders of features/ a plain run leaves out.
_SET_APART = (PACKS_DIR, FLEET_DIR)
NO_CADENCE = "none"


def packs_root(features_root: Path) -> Path:
    return features_root / PACKS_DIR


def known_packs(features_root: Path) -> list[str]:
    """Names of the pack folders that hold at least one feature file, sorted."""
    root = packs_root(features_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.rglob("*.feature")))


def pack_path(features_root: Path, name: str) -> Path:
    """The pack's folder; an unknown name is a usage error naming the known ones."""
    known = known_packs(features_root)
    if name not in known:
        raise ConfigError(
            f"unknown pack {name!r}; known packs: {', '.join(known) or '(none)'}",
            hint=f"pick one of the folders of {packs_root(features_root)} (`drillbook packs` lists them)",
            key="--pack",
        )
    return packs_root(features_root) / name


def fleet_root(features_root: Path) -> Path:
    """``features/fleet``: the features ``drillbook run --fleet`` runs once per member by default."""
    return features_root / FLEET_DIR


def without_packs(features_root: Path) -> list[Path]:
    """The default features: every folder or file of ``features/`` with features in it, but the packs
    and the fleet features."""
    if not any((features_root / name).is_dir() for name in _SET_APART):
        return [features_root]
    found = []
    for child in sorted(features_root.iterdir()):
        if child.name in _SET_APART:
            continue
        if (child.is_dir() and any(child.rglob("*.feature"))) or child.suffix == ".feature":
            found.append(child)
    return found


@dataclass
class PackSummary:
    """One pack: its scenarios (run items) per cadence, and every scenario id."""

    name: str
    path: Path
    scenarios: int = 0
    by_cadence: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"pack": self.name, "path": str(self.path), "scenarios": self.scenarios,
                "by_cadence": dict(self.by_cadence), "ids": list(self.ids)}


def summarize(path: Path, name: str | None = None) -> PackSummary:
    """Count a pack's scenarios per cadence from its feature files (parsed by pytest-bdd's parser)."""
    from pytest_bdd.parser import FeatureParser

    summary = PackSummary(name=name or path.name, path=path,
                          by_cadence=dict.fromkeys((*CADENCES, NO_CADENCE), 0))
    for feature_file in sorted(path.rglob("*.feature")):
        feature = FeatureParser(str(feature_file.parent), feature_file.name).parse()
        for scenario in feature.scenarios.values():
            tags = set(scenario.tags) | set(feature.tags)
            rows = sum(len(examples.examples) for examples in scenario.examples) or 1
            summary.scenarios += rows
            cadences = [c for c in CADENCES if c in tags] or [NO_CADENCE]
            for cadence in cadences:
                summary.by_cadence[cadence] += rows
            summary.ids += sorted(t.partition(":")[2] for t in tags if t.startswith("id:"))
    summary.ids = sorted(set(summary.ids))
    return summary


def list_packs(features_root: Path, *, as_json: bool) -> int:
    """``drillbook packs``: a table (or JSON) of every pack with its scenario counts per cadence."""
    summaries = [summarize(packs_root(features_root) / name, name) for name in known_packs(features_root)]
    if as_json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"no packs under {packs_root(features_root)}", file=sys.stderr)
        return 0
    columns = [c for c in (*CADENCES, NO_CADENCE)
               if c != NO_CADENCE or any(s.by_cadence[NO_CADENCE] for s in summaries)]
    width = max(len("pack"), *(len(s.name) for s in summaries))
    print(f"{'pack':<{width}}  {'scenarios':>9}  " + "  ".join(f"{c:>10}" for c in columns))
    for s in summaries:
        print(f"{s.name:<{width}}  {s.scenarios:>9}  " + "  ".join(f"{s.by_cadence[c]:>10}" for c in columns))
    print("\nrun one with: drillbook run --pack NAME [--cadence daily] [--config drillbook.toml]")
    return 0
