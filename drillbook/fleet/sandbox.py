"""The fleet sandbox: ``n`` small member databases with their backup histories, on one local PostgreSQL.

Issue 14 item 8: the whole fleet path (plan, shards, merge) runs on one machine
from the README. :func:`sandbox_fleet` starts one PostgreSQL from local
binaries (as :mod:`drills.local` does: a copy of the cached template data dir,
the server processes as the ``postgres`` OS user when running as root), seeds
the members (:mod:`drills.sandbox.members`), and writes a ``drillbook.toml``
whose ``[fleet]`` binds each member's ``production`` (its database, read by a
read-only role over loopback trust: no secret, so no ``${VAR}``) and
``nightly`` (a directory store of its ``pg_dump -Fc`` backups). Scratch is not
configured: the live environment starts its own throwaway local PostgreSQL.

Everything lives in one recorded temp dir (``drillbook-fleet-…``; see
:mod:`drills.reaper`), removed with the server on exit, at interpreter exit,
and on SIGTERM; a ``kill -9`` leaves it to the next run's reaper.

Members are spread over three fake hosts (``labels.host``: pg-a, pg-b, pg-c)
and two tiers (the first third is tier 1), so ``--members`` and the plan's
per-host cap have something to select and to spread.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from checks.errors import ConfigError
from drills import pgtools, reaper
from drills.local import _Cleanup, _make_workdir
from drills.processes import PostgresServer, stop_each, template_datadir
from drills.sandbox import history, members
from drills.sandbox.members import Fault, MemberPlan, SeededMember
from drills.toml_text import toml_string

Progress = Callable[[str], None]

HOST_CAP = 2
CONFIG_NAME = "drillbook.toml"
MEMBER_CONFIGS = "members"
# More would only make a sandbox nobody waits for; the largest figure is 500 members.
MAX_MEMBERS = 500
# Two seeders: the machine has two cores, and each member is one connection plus pg_dump runs.
_SEED_WORKERS = 2


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


class FleetSandbox(_Cleanup):
    """One local PostgreSQL holding the members, their backup stores and the config naming them."""

    def __init__(self, workdir: Path, record: reaper.Record, *, canary: bool) -> None:
        super().__init__(workdir, record)
        self.canary = canary
        self.server: PostgresServer | None = None
        self.members: list[SeededMember] = []
        self.config_path = workdir / CONFIG_NAME
        self.timings: dict[str, float] = {}
        # Bound, never listening: connecting to it is refused at once (the unreachable member's DSN).
        self._refusing: socket.socket | None = None

    @classmethod
    def start(cls, n: int, *, canary: bool = False, workdir: Path | None = None,
              progress: Progress | None = None, now: datetime | None = None,
              bindir: Path | None = None, cache_dir: Path | None = None) -> FleetSandbox:
        """Start the server, seed ``n`` members, write the config; on any failure leave nothing behind.

        ``workdir``: the directory the sandbox's own temp dir is made in (default: the
        system's temp dir); the ``postgres`` OS user must be able to traverse it when
        running as root. ``now`` (default: the clock) dates the rows and backups.
        """
        check_member_count(n)
        say = progress or _quiet
        started = time.monotonic()
        sandbox = cls(*_make_workdir("drillbook-fleet-", workdir), canary=canary)
        try:
            sandbox._start(n, now or datetime.now(UTC), say, bindir or pgtools.bindir(),
                           cache_dir or history.default_cache_dir())
        except BaseException:
            sandbox.close()
            raise
        sandbox.timings["total"] = round(time.monotonic() - started, 3)
        return sandbox

    def _start(self, n: int, now: datetime, say: Progress, bindir: Path, cache_dir: Path) -> None:
        mark = time.monotonic()
        say("starting PostgreSQL (fleet members)")
        template = template_datadir(cache_dir, bindir=bindir, workdir=self.workdir)
        self.server = PostgresServer("fleet", self.workdir / "fleet-pgdata", bindir=bindir)
        self.server.init(template=template)
        self.server.start(wait=False)
        self._remember(self.server.label, self.server.pid)
        self.server.wait_ready()
        mark = self._lap("postgres", mark)

        plans = members.plan_members(n, canary=self.canary)
        say(f"seeding {n} member databases with {members.BACKUP_DAYS} nights of backups each")
        admin = self.server.dsn()
        members.create_template(admin)
        stores = self.workdir / "stores"
        with ThreadPoolExecutor(max_workers=_SEED_WORKERS, thread_name_prefix="fleet-seed") as pool:
            self.members = list(pool.map(
                lambda plan: members.seed_member(plan, admin_dsn=admin, bindir=bindir,
                                                 store=stores / plan.name, now=now),
                plans))
        mark = self._lap("seed", mark)
        for member in self.members:
            if member.plan.fault is not None:
                say(f"canary: {member.plan.name} is broken ({member.plan.fault.value})")
        if any(member.plan.fault is Fault.UNREACHABLE for member in self.members):
            self._refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._refusing.bind(("127.0.0.1", 0))
        self._write_configs()
        self._lap("config", mark)
        say(f"fleet config: {self.config_path}")

    def _lap(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.timings[phase] = round(now - since, 3)
        return now

    # -- the config ------------------------------------------------------------------------------

    def production_dsn(self, plan: MemberPlan) -> str:
        """The member's subject DSN: the read-only role on loopback, or the refusing port."""
        assert self.server is not None
        if plan.fault is Fault.UNREACHABLE and self._refusing is not None:
            port = self._refusing.getsockname()[1]
            return f"postgresql://{members.READER_ROLE}@127.0.0.1:{port}/{plan.name}"
        return members.reader_dsn(self.server.dsn(), plan.name)

    def member_targets(self, member: SeededMember) -> dict[str, dict[str, str]]:
        """The member's ``[targets.X]`` tables, keyed exactly as :mod:`drills.config` reads them."""
        return {
            "production": {"kind": "postgres", "dsn": self.production_dsn(member.plan)},
            "nightly": {"kind": "directory", "path": str(member.store),
                        "key_pattern": member.plan.key_pattern,
                        "checksum_suffix": members.CHECKSUM_SUFFIX},
        }

    def _write_configs(self) -> None:
        written = datetime.now(UTC).isoformat(timespec="seconds")
        lines = [f"# Written by drillbook's fleet sandbox at {written}:",
                 f"# {len(self.members)} members on one local PostgreSQL; removed when the sandbox stops."]
        broken = [m.plan for m in self.members if m.plan.fault is not None]
        if broken:
            lines.append("# canary: these members are broken on purpose:")
            lines += [f"#   {plan.name}: {plan.fault.value}" for plan in broken if plan.fault is not None]
        lines += ["", "[fleet]", f"host_cap = {HOST_CAP}"]
        singles = self.workdir / MEMBER_CONFIGS
        singles.mkdir()
        for member in self.members:
            plan = member.plan
            targets = self.member_targets(member)
            lines += ["", "[[fleet.members]]", f"name = {toml_string(plan.name)}",
                      f"labels = {{ tier = {toml_string(plan.tier)}, host = {toml_string(plan.host)} }}"]
            single = [f"# {plan.name} of the fleet sandbox alone (a plain `drillbook run --config`)."]
            for target, table in targets.items():
                lines += ["", f"[fleet.members.targets.{target}]", *_pairs(table)]
                single += ["", f"[targets.{target}]", *_pairs(table)]
            (singles / f"{plan.name}.toml").write_text("\n".join(single) + "\n", encoding="utf-8")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def member_config(self, name: str) -> Path:
        """A config binding only member ``name``'s targets, as plain ``[targets.X]``."""
        path = self.workdir / MEMBER_CONFIGS / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(m.plan.name for m in self.members)
            raise ConfigError(f"the fleet sandbox has no member {name!r} (members: {known})", key=name)
        return path

    # -- what it is -------------------------------------------------------------------------------

    def broken(self) -> dict[str, Fault]:
        """The canary's broken members and how each is broken."""
        return {m.plan.name: m.plan.fault for m in self.members if m.plan.fault is not None}

    def details(self) -> dict[str, str]:
        """What ``drillbook sandbox up --sandbox-members N`` prints."""
        found = {"config": str(self.config_path), "members": str(len(self.members)),
                 "hosts": ", ".join(sorted({m.plan.host for m in self.members})),
                 "host_cap": str(HOST_CAP), "canary": str(self.canary).lower()}
        if self.server is not None:
            found["postgres"] = self.server.dsn()
        for name, fault in self.broken().items():
            found[f"broken.{name}"] = fault.value
        for phase, seconds in self.timings.items():
            found[f"timing.{phase}_s"] = f"{seconds:.3f}"
        return found

    # -- the end -----------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        refusing, self._refusing = self._refusing, None
        stop_each((self.server.stop if self.server else None, refusing.close if refusing else None))


def check_member_count(n: int) -> None:
    """``--sandbox-members``: from 1 to :data:`MAX_MEMBERS`, else a usage error (exit 2)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_MEMBERS:
        raise ConfigError(f"--sandbox-members must be a number from 1 to {MAX_MEMBERS}, got {n!r}",
                          key="--sandbox-members", hint="e.g. --sandbox-members 8")


@contextlib.contextmanager
def sandbox_fleet(n: int, *, canary: bool, workdir: Path | None = None,
                  progress: Progress | None = None) -> Iterator[Path]:
    """Seed ``n`` members (broken ones under ``canary``); yield the config path; clean up on exit."""
    sandbox = FleetSandbox.start(n, canary=canary, workdir=workdir, progress=progress)
    try:
        yield sandbox.config_path
    finally:
        sandbox.close()


def _pairs(table: dict[str, str]) -> list[str]:
    return [f"{key} = {toml_string(value)}" for key, value in table.items()]
