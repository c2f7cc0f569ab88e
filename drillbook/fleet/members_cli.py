"""``drillbook fleet members``: what the inventory holds, without a secret."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .inventory import load_fleet, select_members


def add_members_parser(fleet_sub: argparse._SubParsersAction[Any]) -> None:
    p = fleet_sub.add_parser("members", help="list the fleet's members: name, labels, the targets each binds",
                             description="Reads the [fleet] inventory (or fleet.toml beside the config); "
                             "patterns are expanded (a discover location is listed). Target values are "
                             "never printed: only which names each member binds, and their kinds.")
    p.add_argument("--config", type=Path, default=Path("drillbook.toml"),
                   help="drillbook.toml (default: here)")
    p.add_argument("--members", help="only these: label terms (tier=1,host=pg-*) or names")
    p.add_argument("--json", action="store_true", help="print them as JSON")


def fleet_members(args: argparse.Namespace) -> int:
    """Print the selected members, one line each (or JSON); exit 0."""
    fleet = load_fleet(args.config.resolve())
    members = select_members(fleet, args.members)
    rows: list[dict[str, Any]] = [{"name": m.name, "labels": dict(sorted(m.labels.items())),
                                    "targets": {name: str(body.get("kind", "?"))
                                                for name, body in sorted(m.targets.items())}}
                                   for m in members]
    if args.json:
        print(json.dumps({"source": str(fleet.source), "host_cap": fleet.host_cap, "digest": fleet.digest,
                          "members": rows}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        labels = " ".join(f"{k}={v}" for k, v in row["labels"].items()) or "-"
        targets = ", ".join(f"{k} ({v})" for k, v in row["targets"].items())
        print(f"{row['name']:<{width}}  {labels:<28}  {targets}")
    print(f"{len(rows)} of {len(fleet.members)} members (host cap {fleet.host_cap}; {fleet.source})")
    return 0
