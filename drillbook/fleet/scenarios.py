"""The scenarios a fleet run repeats per member: what a plan splits into work items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks.errors import ConfigError

from ..runner import marker_expression


@dataclass(frozen=True, order=True)
class ScenarioRef:
    """One scenario (all rows of an outline) by its ``@id:``; a work item pairs it with a member."""

    id: str
    feature: Path
    name: str
    tags: tuple[str, ...]


def list_scenarios(features: list[Path], cadence: str | None, tags: str | None) -> list[ScenarioRef]:
    """Every scenario of ``features`` that ``--cadence``/``--tags`` select, sorted by id.

    A fleet scenario must carry an ``@id:`` tag: the id is how a work item, the merge and the
    ledger name it for each member. One without, or two scenarios sharing an id, is a usage error.
    """
    from _pytest.mark.expression import Expression
    from pytest_bdd.feature import get_features

    expression = marker_expression(cadence, tags)
    compiled = Expression.compile(expression) if expression else None
    files = sorted({str(p) for path in features for p in _feature_files(path)})
    found: dict[str, ScenarioRef] = {}
    for feature in get_features(files):
        for scenario in feature.scenarios.values():
            all_tags = frozenset(scenario.tags) | frozenset(feature.tags)
            if compiled is not None and not compiled.evaluate(_Matcher(all_tags)):
                continue
            ident = next((t.partition(":")[2] for t in sorted(all_tags) if t.startswith("id:")), None)
            where = f"{feature.filename}: scenario {scenario.name!r}"
            if ident is None:
                raise ConfigError(f"{where} has no @id: tag; every scenario a fleet runs needs one",
                                  file=feature.filename, hint="tag it @id:XYZ-01 (unique in the suite)")
            ref = ScenarioRef(ident, Path(feature.filename), scenario.name, tuple(sorted(all_tags)))
            if ident in found and found[ident] != ref:
                raise ConfigError(f"{where}: @id:{ident} is also the id of {found[ident].name!r} in "
                                  f"{found[ident].feature}", file=feature.filename,
                                  hint="give each scenario its own id")
            found[ident] = ref
    return sorted(found.values())


def _feature_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path.resolve()]
    return sorted(p.resolve() for p in path.rglob("*.feature"))


class _Matcher:
    """pytest's ``-m`` semantics over Gherkin tags: ``monthly``, ``id(value="BKP-01")``."""

    def __init__(self, tags: frozenset[str]) -> None:
        self.tags = tags

    def __call__(self, name: str, /, **kwargs: Any) -> bool:
        if not kwargs:
            return name in self.tags
        value = kwargs.get("value")
        return f"{name}:{value}" in self.tags
