"""Which drills `status` and `gate cadence` hold to their cadence: the default of `drillbook run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.errors import ConfigError
from drillbook.audit import catalogue
from drillbook.status_cli import drill_features

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def test_default_leaves_the_packs_out() -> None:
    paths = drill_features(None, None)
    assert paths and not any("packs" in p.parts for p in paths)
    ids = set(catalogue(paths))
    assert "BKP-01" in ids and not any(i.startswith("SARK-") for i in ids)


def test_a_named_pack_is_added() -> None:
    ids = set(catalogue(drill_features(None, ["sark"])))
    assert "BKP-01" in ids and any(i.startswith("SARK-") for i in ids)


def test_unknown_pack_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="sark"):
        drill_features(None, ["nope"])
