"""`drillbook init` as a user runs it, against a real PostgreSQL subject and real pg_dump backups.

One subject database (on the module's own server) with a small table set, and a directory of
gzipped plain dumps of it made with the real pg_dump, named by a date pattern: what a team's
nightly job leaves. The files init writes must pass `drillbook run --config drillbook.toml`.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import re
import select
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from drills import pgtools
from drills.local import LocalScratch
from drills.processes import S3Server
from drills.targets import PostgresTarget
from tests.integration.conftest import Fresh
from tests.support.cli import DRILLBOOK, REPO, drillbook

pytestmark = pytest.mark.integration

PATTERN = "appdb_%Y%m%d_%H%M%S.sql.gz"
FEATURE = Path("features/restore/app-restore-from-yesterday.feature")
SCHEMA = """
CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts,
                     total numeric(10, 2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE "Odd|Name" (id int PRIMARY KEY);
"""


@dataclass(frozen=True)
class Subject:
    target: PostgresTarget
    backups: Path
    password: str
    admin_dsn: str


def _dump(target: PostgresTarget, into: Path) -> None:
    """Real pg_dump | gzip; the password goes through the environment, never the command line."""
    params = psycopg.conninfo.conninfo_to_dict(target.dsn)
    password = str(params.pop("password", ""))
    without_password = psycopg.conninfo.make_conninfo("", **params)
    dump = subprocess.run([str(pgtools.bindir() / "pg_dump"), "-d", without_password], capture_output=True,
                          check=True, timeout=60, env={**os.environ, "PGPASSWORD": password})
    into.write_bytes(gzip.compress(dump.stdout))


@pytest.fixture(scope="module")
def module_subject(subject_cluster: LocalScratch,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    """A subject with rows older than its backups, three nightly dumps, and rows written since."""
    target = subject_cluster.fresh_database("init-subject")
    backups = tmp_path_factory.mktemp("backups")
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=3)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO accounts SELECT i, 'a' || i, %s FROM generate_series(1, 300) i", (old,))
        conn.execute("INSERT INTO orders SELECT i, 1 + i %% 300, i / 7.0, %s FROM generate_series(1, 2000) i",
                     (old,))
    for days in (2, 1, 0):
        taken = now - timedelta(days=days, hours=1)
        _dump(target, backups / taken.strftime(PATTERN))
    with psycopg.connect(target.dsn, autocommit=True) as conn:  # the subject kept growing since
        conn.execute("INSERT INTO orders SELECT i, 1, 1, now() FROM generate_series(2001, 2100) i")
        conn.execute("ANALYZE")  # init reads the planner's estimates: exact for tables this small
    (backups / "README.txt").write_text("not a backup\n", encoding="utf-8")
    password = str(psycopg.conninfo.conninfo_to_dict(target.dsn)["password"])
    try:
        yield Subject(target, backups, password, subject_cluster.server.dsn("postgres"))
    finally:
        subject_cluster.drop(target)


def init(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`drillbook init ARGS` as a user runs it (stdin is not a terminal here: init never asks)."""
    return drillbook("init", *args, cwd=cwd, env=env, timeout=60)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def init_here(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> Callable[..., Ran]:
    """The same command in this process (seconds cheaper than a fresh interpreter importing the CLI),
    in ``tmp_path``; pytest's stdin is not a terminal either."""
    from drillbook.cli import main

    monkeypatch.chdir(tmp_path)
    saved = signal.getsignal(signal.SIGTERM)  # main() turns SIGTERM into KeyboardInterrupt

    def run(*args: str, env: dict[str, str] | None = None) -> Ran:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            code = main(["init", *args])
        finally:
            signal.signal(signal.SIGTERM, saved)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def written(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text(encoding="utf-8")
            for p in sorted(directory.rglob("*")) if p.is_file()}


class TestInitThenRun:
    def test_the_written_files_pass_drillbook_run(self, module_subject: Subject, tmp_path: Path,
                                                  sandbox_cache_env: dict[str, str]) -> None:
        """init (flags only, no terminal) then `drillbook run --config drillbook.toml`: exit 0, the
        restore compared with the subject and the subject's biggest tables counted."""
        env = {**sandbox_cache_env, "APP_PG_DSN": module_subject.target.dsn}
        made = init("--target", "app", "--dsn-var", "APP_PG_DSN", "--backups", str(module_subject.backups),
                    "--cadence", "weekly", cwd=tmp_path, env=env)
        assert made.returncode == 0, made.stderr
        assert f"key pattern '{PATTERN}' suggested" in made.stdout
        assert "drillbook run --config drillbook.toml" in made.stdout
        feature = (tmp_path / FEATURE).read_text(encoding="utf-8")
        assert "@id:RST-01 @weekly" in feature
        assert "| orders   | 1000 |" in feature  # half of today's 2100, two significant digits
        assert "Odd|Name" not in feature  # a name that needs quoting stays out

        ran = drillbook("run", "--config", "drillbook.toml", cwd=tmp_path, env=env, timeout=180)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        results = json.loads((tmp_path / "out/latest/results.json").read_text(encoding="utf-8"))
        (scenario,) = results["scenarios"]
        outcomes = {v["id"]: v["outcome"] for v in scenario["verdicts"]}
        assert outcomes == {"restore.completed": "passed", "backup.freshness": "passed",
                            "restore.rto": "passed", "postgres.row_counts": "passed",
                            "restore.content": "passed"}

    def test_a_read_only_role_is_enough(self, module_subject: Subject, tmp_path: Path) -> None:
        """init reads the catalog and counts rows as a role that can only read, and changes nothing."""
        params = psycopg.conninfo.conninfo_to_dict(module_subject.target.dsn)
        database = sql.Identifier(str(params["dbname"]))
        with psycopg.connect(module_subject.admin_dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE init_reader LOGIN IN ROLE pg_read_all_data")
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO init_reader").format(database))
        params.update(user="init_reader", password="")
        before = _state(module_subject.target.dsn)
        try:
            made = init("--target", "app", "--backups", str(module_subject.backups), "--yes", cwd=tmp_path,
                        env={"APP_PG_DSN": psycopg.conninfo.make_conninfo("", **params)})
        finally:
            with psycopg.connect(module_subject.admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM init_reader").format(database))
                conn.execute("DROP ROLE init_reader")
        assert made.returncode == 0, made.stderr
        feature = (tmp_path / FEATURE).read_text(encoding="utf-8")
        assert "| orders   | 1000 |" in feature and "| accounts | 150  |" in feature, made.stdout
        assert _state(module_subject.target.dsn) == before


class TestRowEstimates:
    def test_the_planner_estimate_is_used_and_only_a_never_analysed_table_is_counted(
            self, module_subject: Subject, subject: Fresh, init_here: Callable[..., Ran]) -> None:
        """An analysed table's floor follows its statistics (no count of production's biggest tables);
        a table never analysed has none, so it is counted."""
        target = subject("init-estimates")
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            for table in ("analysed", "never_analysed"):  # autovacuum must not analyse them meanwhile
                conn.execute(sql.SQL("CREATE TABLE {} (id int) WITH (autovacuum_enabled = false)").format(
                    sql.Identifier(table)))
            conn.execute("INSERT INTO analysed SELECT generate_series(1, 1000)")
            conn.execute("ANALYZE analysed")
            conn.execute("INSERT INTO analysed SELECT generate_series(1001, 3000)")  # stats say 1000
            conn.execute("INSERT INTO never_analysed SELECT generate_series(1, 400)")
            conn.execute("CREATE TABLE parted (id int) PARTITION BY RANGE (id)")
            for part, bounds in (("parted_1", "(1) TO (301)"), ("parted_2", "(301) TO (10000)")):
                conn.execute(f"CREATE TABLE {part} PARTITION OF parted FOR VALUES FROM {bounds} "
                             "WITH (autovacuum_enabled = false)")
            conn.execute("INSERT INTO parted SELECT generate_series(1, 600)")
            conn.execute("ANALYZE parted")  # its leaves' estimates add up to the table's
        made = init_here("--target", "app", "--backups", str(module_subject.backups), "--yes",
                         env={"APP_PG_DSN": target.dsn})
        assert made.returncode == 0, made.stderr
        feature = Path(FEATURE).read_text(encoding="utf-8")
        rows = dict(re.findall(r"^      \| (\w+) +\| (\d+) +\|$", feature, flags=re.MULTILINE))
        # A count would say 1500 for `analysed`; a partitioned table is the sum of its partitions.
        assert rows == {"analysed": "500", "never_analysed": "200", "parted": "300"}, made.stdout


class TestTheCheckout:
    @pytest.mark.parametrize("where", [".", "docs"])
    def test_init_inside_drillbooks_checkout_is_refused_before_anything_is_asked(
            self, where: str, tmp_path: Path, init_here: Callable[..., Ran],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Its features/ holds drillbook's own drills: exit 2 with the way out, nothing written."""
        here = REPO / where
        monkeypatch.chdir(here)
        written_here = [here / "drillbook.toml", here / FEATURE]
        assert not any(p.exists() for p in written_here)
        try:
            made = init_here("--target", "app", "--backups", str(tmp_path), "--yes")
            assert made.returncode == 2
            assert "drillbook's own checkout" in made.stderr
            assert "mkdir ~/drills && cd ~/drills" in made.stderr and "--dir" in made.stderr
            assert not any(p.exists() for p in written_here)
        finally:
            for path in written_here:  # had it written after all, the checkout stays clean
                path.unlink(missing_ok=True)

    def test_an_explicit_dir_in_the_checkout_is_the_users_choice(
            self, tmp_path: Path, init_here: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch) -> None:
        """--dir . is not refused for being the checkout (a fork keeps its drills there): here the
        run stops at a bad --rto instead, before anything is written."""
        monkeypatch.chdir(REPO)
        made = init_here("--target", "app", "--backups", str(tmp_path), "--yes", "--dir", ".",
                         "--rto", "soon")
        assert made.returncode == 2
        assert "--rto" in made.stderr and "checkout" not in made.stderr
        assert not (REPO / "drillbook.toml").exists()


def _state(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
            "ORDER BY 1").fetchall()]
        return [(t, int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                        .fetchone()[0])) for t in tables]  # type: ignore[index]


@pytest.fixture(scope="module")
def s3_backups(module_subject: Subject, s3_server: S3Server) -> dict[str, str]:
    """The same dumps under an S3 prefix of moto's real S3 HTTP server; the variables a user exports."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="init-backups")
    for path in sorted(module_subject.backups.iterdir()):
        client.put_object(Bucket="init-backups", Key=f"app/{path.name}", Body=path.read_bytes())
    return {"AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing"}


class TestS3Backups:
    def test_an_s3_prefix_with_an_endpoint_variable(self, module_subject: Subject, s3_backups: dict[str, str],
                                                    tmp_path: Path, init_here: Callable[..., Ran],
                                                    sandbox_cache_env: dict[str, str]) -> None:
        """The pattern is suggested from the bucket's listing; the config names the endpoint and the keys
        as ${VAR}s only; the drill passes against the bucket."""
        env = {**s3_backups, "APP_PG_DSN": module_subject.target.dsn}
        made = init_here("--target", "app", "--backups", "s3://init-backups/app/", "--yes", env=env)
        assert made.returncode == 0, made.stderr
        assert f"key pattern '{PATTERN}' suggested" in made.stdout
        config = (tmp_path / "drillbook.toml").read_text(encoding="utf-8")
        assert 'endpoint_url = "${AWS_ENDPOINT_URL}"' in config
        assert 'secret_access_key = "${AWS_SECRET_ACCESS_KEY}"' in config
        assert s3_backups["AWS_ENDPOINT_URL"] not in config
        assert "@postgres @s3" in (tmp_path / FEATURE).read_text(encoding="utf-8")

        ran = drillbook("run", "--config", "drillbook.toml", cwd=tmp_path, env={**sandbox_cache_env, **env},
                        timeout=180)
        assert ran.returncode == 0, ran.stdout + ran.stderr


class TestNeverASecret:
    def test_a_pasted_dsn_is_used_but_its_password_is_written_and_shown_nowhere(
            self, module_subject: Subject, tmp_path: Path) -> None:
        """The DSN given in place of a variable name reads the subject; files and output name ${VAR}."""
        made = init("--target", "app", "--dsn-var", module_subject.target.dsn,
                    "--backups", str(module_subject.backups), cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        files = written(tmp_path)
        assert set(files) == {"drillbook.toml", str(FEATURE)}
        for text in [*files.values(), made.stdout, made.stderr]:
            assert module_subject.password not in text
        assert 'dsn = "${APP_PG_DSN}"' in files["drillbook.toml"]
        assert "export APP_PG_DSN='" in made.stdout  # told how, with the password masked
        assert "| orders" in files[str(FEATURE)]  # the pasted DSN was good for reading the catalog


class TestRefusals:
    def test_an_existing_file_is_never_overwritten_and_nothing_is_written(
            self, module_subject: Subject, tmp_path: Path, init_here: Callable[..., Ran]) -> None:
        """The feature exists: exit 2 naming it; no drillbook.toml either."""
        (tmp_path / FEATURE).parent.mkdir(parents=True)
        (tmp_path / FEATURE).write_text("mine\n", encoding="utf-8")
        made = init_here("--target", "app", "--backups", str(module_subject.backups), "--yes")
        assert made.returncode == 2
        assert str(FEATURE) in made.stderr and "never overwrites" in made.stderr
        assert written(tmp_path) == {str(FEATURE): "mine\n"}

    def test_an_existing_config_is_kept_byte_for_byte(self, module_subject: Subject, tmp_path: Path,
                                                      init_here: Callable[..., Ran]) -> None:
        (tmp_path / "drillbook.toml").write_text("# mine\n", encoding="utf-8")
        made = init_here("--backups", str(module_subject.backups), "--yes")
        assert made.returncode == 2
        assert "drillbook.toml" in made.stderr
        assert written(tmp_path) == {"drillbook.toml": "# mine\n"}

    def test_a_missing_value_without_a_terminal_names_its_flag(self, tmp_path: Path,
                                                               init_here: Callable[..., Ran]) -> None:
        made = init_here("--target", "app")
        assert made.returncode == 2
        assert "--backups is required" in made.stderr and "pass --backups" in made.stderr
        assert written(tmp_path) == {}

    def test_no_pattern_and_no_dated_file_names_the_flag(self, tmp_path: Path,
                                                         init_here: Callable[..., Ran]) -> None:
        """Nothing to suggest a key pattern from: --key-pattern is the missing value."""
        store = tmp_path / "store"
        store.mkdir()
        (store / "latest.dump").write_text("PGDMP", encoding="utf-8")
        made = init_here("--backups", str(store), "--yes")
        assert made.returncode == 2
        assert "--key-pattern is required" in made.stderr
        assert written(tmp_path) == {"store/latest.dump": "PGDMP"}

    def test_a_bad_key_pattern_is_a_usage_error(self, module_subject: Subject, tmp_path: Path,
                                                init_here: Callable[..., Ran]) -> None:
        made = init_here("--backups", str(module_subject.backups), "--key-pattern", "appdb_%Y%m.sql.gz",
                         "--yes")
        assert made.returncode == 2
        assert "--key-pattern" in made.stderr and "lacks %d" in made.stderr
        assert written(tmp_path) == {}


class TestNextCommands:
    def test_written_elsewhere_the_run_command_names_the_feature(
            self, module_subject: Subject, tmp_path: Path, init_here: Callable[..., Ran]) -> None:
        """With --dir, `drillbook run` from here would not find ./features: the command says --features."""
        made = init_here("--target", "app", "--backups", str(module_subject.backups), "--yes",
                         "--dir", "elsewhere")
        assert made.returncode == 0, made.stderr
        assert set(written(tmp_path / "elsewhere")) == {"drillbook.toml", str(FEATURE)}
        assert (f"drillbook run --config elsewhere/drillbook.toml --features elsewhere/{FEATURE}"
                in made.stdout)
        assert "$APP_PG_DSN is not set" in made.stdout


class TestUnreachableSubject:
    def test_a_commented_example_is_written_and_said(self, module_subject: Subject, tmp_path: Path,
                                                     init_here: Callable[..., Ran]) -> None:
        """A subject that does not answer: exit 0, the row table is an example to fill in."""
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        made = init_here("--target", "app", "--backups", str(module_subject.backups), "--yes",
                         env={"APP_PG_DSN": f"postgresql://app:hunter22@127.0.0.1:{port}/app"})
        assert made.returncode == 0, made.stderr
        assert "could not read app" in made.stdout
        assert "hunter22" not in made.stdout + made.stderr
        assert "    # And the restored tables hold" in (tmp_path / FEATURE).read_text(encoding="utf-8")


class TestOnATerminal:
    def test_it_asks_for_what_no_flag_gave(self, module_subject: Subject, tmp_path: Path) -> None:
        """On a terminal, each missing value is asked with its default (Enter takes it), and a bad
        answer is asked again, saying what is wrong. The variable unset, the DSN itself is asked
        without echo: it reads the subject, and its password never shows on the terminal."""
        answers = {"A name for the database": ["app"], "Environment variable holding": [""],
                   "to read its tables now": [module_subject.target.dsn],
                   "Where are the backups": [str(module_subject.backups)],
                   "How often the drill runs": ["hourly", "quarterly"],
                   "How often backups are taken": [""], "How backups are named": [""]}
        output = _converse([*DRILLBOOK, "init"], answers, cwd=tmp_path)
        assert "[APP_PG_DSN]" in output and f"[{PATTERN}]" in output
        assert "--cadence must be one of" in output
        assert module_subject.password not in output  # not echoed as typed, masked in the export line
        assert "export APP_PG_DSN='" in output
        files = written(tmp_path)
        feature = files[str(FEATURE)]
        assert "@id:RST-01 @quarterly" in feature and "at most 26h old" in feature
        assert "| orders   | 1000 |" in feature  # the DSN typed at the hidden question was used
        assert f'key_pattern = "{PATTERN}"' in files["drillbook.toml"]
        assert all(module_subject.password not in text for text in files.values())


def _converse(command: list[str], answers: dict[str, list[str]], *, cwd: Path, timeout: float = 60) -> str:
    """Run ``command`` on a pseudo-terminal, answering each prompt that contains a key of ``answers``
    with that key's next answer."""
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PG_DSN")}  # init asks, unset
    # A session of its own with the pty as its controlling terminal: getpass opens /dev/tty, which
    # must be this pty (not the terminal pytest may run in).
    proc = subprocess.Popen(command, stdin=secondary, stdout=secondary, stderr=secondary, cwd=cwd,
                            env={**env, "PYTHONPATH": str(REPO)}, close_fds=True, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(secondary)
    seen, answered_at = "", 0
    pending = {key: list(values) for key, values in answers.items()}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(primary, 4096).decode(errors="replace")
                except OSError:
                    break  # the child closed the terminal
                fresh = seen[answered_at:]  # only a prompt shown after the last answer
                if not fresh.rstrip().endswith(":"):
                    continue
                for key, values in pending.items():
                    if values and key in fresh.rsplit("\n", 1)[-1]:
                        os.write(primary, (values.pop(0) + "\n").encode())
                        answered_at = len(seen)
                        break
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, seen
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
    assert not any(pending.values()), f"never asked: {pending}\n{seen}"
    return seen
