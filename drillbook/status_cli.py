"""``drillbook status`` and ``drillbook gate cadence``: every drill against its cadence."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checks.cadence import DrillHistory, DrillState, drill_state, due_at
from checks.errors import ConfigError
from reports.ledger import Ledger, LedgerRead, LocalLedger
from reports.ledger_heads import HeadsVerdict
from reports.ledger_runs import histories

from .audit import METRICS_FILE, Drill, catalogue, ledger_at
from .runner import EXIT_FAILED, EXIT_OVERDUE, EXIT_PASSED, _default_features


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="where runs are written; the ledger is <out>/ledger.jsonl (default out/)")
    parser.add_argument("--ledger", type=Path, help="the ledger file (overrides --out and the config)")
    parser.add_argument("--config", type=Path, help="drillbook.toml (for `[ledger] url`)")
    parser.add_argument("--features", type=Path, action="append",
                        help="feature file or folder defining the drills (default features/ "
                        "without the packs: a pack's drills count once they ran, or with --pack)")
    parser.add_argument("--pack", action="append", metavar="NAME",
                        help="also hold the drills of this pack to their cadence, run or not (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    from .evidence_cli import add_trust_options

    # Any of them: every ledger entry must be vouched for by a verified signed head (ledger_heads.py).
    add_trust_options(parser)


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_status = sub.add_parser("status", help="every drill: cadence, last run, last pass, due, state")
    _common(p_status)
    p_status.add_argument("--prometheus", type=Path, metavar="FILE",
                          help=f"also write a node_exporter textfile (e.g. .../{METRICS_FILE})")


def add_gate_cadence_parser(gate_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_cadence = gate_sub.add_parser("cadence", help="exit 3 when any drill is overdue or never ran")
    _common(p_cadence)


def _ledger(args: argparse.Namespace) -> Ledger:
    if args.ledger is not None:
        return LocalLedger(args.ledger.resolve())
    url, options = None, {}
    if args.config is not None:
        from drills.config import load_config

        config = load_config(args.config.resolve())
        url, options = config.ledger_url, dict(config.ledger_s3)
    return ledger_at(url, args.out, args.config.resolve() if args.config else None, options)


def status_rows(drills: dict[str, Drill], read: LedgerRead, *, now: datetime) -> list[dict[str, Any]]:
    """One row per drill (and, in a fleet, per drill and member) known to the features or the ledger.

    A fleet member's drill is its own row, ``FLT-01[db-042]``, held to the drill's cadence on its
    own: one member overdue blocks the gate though the others passed yesterday. A drill of the
    features with no entry at all, on any member, is one ``never run`` row under its bare id.
    """
    found = histories(read.entries, {d.id: d.cadence for d in drills.values()})
    ran = {history.drill_id for history in found.values()}
    for drill_id, defined in drills.items():
        if drill_id not in ran:
            found[drill_id] = DrillHistory(drill_id=drill_id, cadence=defined.cadence)
    rows = []
    for key in sorted(found, key=lambda k: (found[k].drill_id, found[k].member or "")):
        history = found[key]
        drill = drills.get(history.drill_id)
        due = due_at(history)
        rows.append({
            "id": key,
            "drill": history.drill_id,
            "member": history.member,
            "scenario": drill.scenario if drill else None,
            "cadence": history.cadence,
            "last_run": _iso(history.last_run),
            "last_outcome": history.last_outcome.value if history.last_outcome else None,
            "last_pass": _iso(history.last_pass),
            "due": _iso(due),
            "state": drill_state(history, now=now).value,
            "in_features": drill is not None,
        })
    return rows


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _load(args: argparse.Namespace) -> tuple[Ledger, LedgerRead, dict[str, Drill], HeadsVerdict | None]:
    from checks.signatures import SignatureInputError

    from .evidence_cli import load_trust, trust_asked

    trust = None
    if trust_asked(args):
        try:
            trust = load_trust(args)
        except SignatureInputError as exc:
            raise ConfigError(str(exc), hint=exc.hint) from exc
    ledger = _ledger(args)
    read = ledger.read()
    heads = None
    if trust is not None:
        from reports.ledger_heads import verify_heads

        heads = verify_heads(read, trust)
        # A ledger nothing trusted vouches for proves nothing: its problems count like damage.
        read.problems.extend(heads.problems)
    return ledger, read, catalogue(drill_features(args.features, args.pack)), heads


def drill_features(features: list[Path] | None, packs: list[str] | None) -> list[Path]:
    """The features whose drills are held to their cadence (the same default as `drillbook run`)."""
    from .packs import pack_path, without_packs

    root = _default_features()
    chosen = list(features) if features else without_packs(root)
    chosen += [pack_path(root, name) for name in packs or []]
    return [p.resolve() for p in chosen]


def status(args: argparse.Namespace) -> int:
    ledger, read, drills, heads = _load(args)
    rows = status_rows(drills, read, now=datetime.now(UTC))
    if args.prometheus is not None:
        from reports.metrics import write_textfile

        write_textfile(args.prometheus, read.entries, {d.id: d.cadence for d in drills.values()})
    if args.json:
        print(json.dumps({"ledger": _where(ledger), "ledger_ok": read.ok,
                          "ledger_problems": [str(p) for p in read.problems],
                          "ledger_signed_heads": _heads_json(heads), "drills": rows}, indent=2))
    else:
        _table(rows)
        print(f"ledger: {_where(ledger)} ({len(read.entries)} entries)")
        if heads is not None:
            from .evidence_cli import heads_summary

            print(f"ledger: {heads_summary(heads)}")
    _print_problems(ledger, read)
    return EXIT_PASSED if read.ok else EXIT_FAILED


def _heads_json(heads: HeadsVerdict | None) -> dict[str, Any] | None:
    if heads is None:
        return None
    return {"verified": heads.verified, "covered_to_seq": heads.covered_to, "signers": heads.signers}


def gate_cadence(args: argparse.Namespace) -> int:
    ledger, read, drills, _heads = _load(args)
    rows = status_rows(drills, read, now=datetime.now(UTC))
    blocking = [r for r in rows if r["state"] in (DrillState.OVERDUE.value, DrillState.NEVER_RUN.value)
                and r["cadence"] is not None]
    if args.json:
        print(json.dumps({"ledger": _where(ledger), "ledger_ok": read.ok,
                          "ledger_problems": [str(p) for p in read.problems],
                          "blocking": blocking, "passed": not blocking and read.ok}, indent=2))
    _print_problems(ledger, read)
    if not read.ok:
        # A damaged ledger cannot prove anything: "could not check", never a pass.
        return EXIT_FAILED
    if blocking:
        if not args.json:
            print(f"drillbook gate cadence: BLOCKED — {len(blocking)} drill(s) out of cadence:")
            for row in blocking:
                last = row["last_pass"] or "never passed"
                print(f"  {row['state'].upper():<10} {row['id']:<10} {row['cadence']:<10} "
                      f"last pass {last}; due {row['due'] or 'now'}")
        return EXIT_OVERDUE
    if not args.json:
        print(f"drillbook gate cadence: PASS — {len(rows)} drill(s) within cadence")
    return EXIT_PASSED


def _print_problems(ledger: Ledger, read: LedgerRead) -> None:
    if read.ok:
        return
    print(f"drillbook: the ledger {_where(ledger)} is damaged:", file=sys.stderr)
    for problem in read.problems:
        print(f"  {problem}", file=sys.stderr)


def _where(ledger: Ledger) -> str:
    return str(getattr(ledger, "location", ledger.path))


def _table(rows: list[dict[str, Any]]) -> None:
    header = ("ID", "CADENCE", "LAST RUN", "OUTCOME", "LAST PASS", "DUE", "STATE")
    lines = [header] + [(
        r["id"], r["cadence"] or "-", _short(r["last_run"]), r["last_outcome"] or "-",
        _short(r["last_pass"]), _short(r["due"]), r["state"],
    ) for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _short(value: str | None) -> str:
    return value.replace("+00:00", "Z") if value else "-"
