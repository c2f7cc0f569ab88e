"""The fleet inventory as the fleet commands use it (the parsing lives in :mod:`drills.fleet`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from checks.errors import ConfigError
from drills.fleet import Fleet, Member, fleet_table, parse_fleet, select_members

__all__ = ["Fleet", "Member", "load_fleet", "select_members"]


def load_fleet(config_path: Path) -> Fleet:
    """The fleet of a drillbook.toml (its ``[fleet]`` table or a ``fleet.toml`` beside it)."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config_path}: {exc.strerror}",
                          file=str(config_path)) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}", file=str(config_path)) from exc
    found = fleet_table(config_path, data)
    if found is None:
        raise ConfigError(f"{config_path}: no fleet defined", file=str(config_path), key="fleet",
                          hint="add a [fleet] table with [[fleet.members]] "
                               "(or a fleet.toml beside the config)")
    table, source = found
    return parse_fleet(table, source)
