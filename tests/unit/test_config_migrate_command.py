"""drillbook.toml `[migrations] command` & co: the team's own migrate command, validated at load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.errors import ConfigError
from drills.config import load_config
from drills.migrations.command import CommandUnusable, database_url, split_command


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "drillbook.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


class TestMigrateCommandConfig:
    def test_every_key_read_and_resolved_against_the_config_folder(self, tmp_path: Path) -> None:
        """workdir is relative to the config file; the timeout a duration; env a list of names."""
        (tmp_path / "app").mkdir()
        config = _load(tmp_path, '[migrations]\ncommand = "alembic upgrade head"\n'
                                 'down_command = "alembic downgrade base"\nworkdir = "app"\n'
                                 'command_timeout = "10m"\ncommand_env = ["ALEMBIC_CONFIG"]\n')
        command = config.migration_command
        assert command is not None
        assert (command.command, command.down_command) == ("alembic upgrade head", "alembic downgrade base")
        assert command.workdir == (tmp_path / "app").resolve()
        assert command.timeout == timedelta(minutes=10)
        assert command.env == ("ALEMBIC_CONFIG",)
        assert config.redacted()["migrations"]["command"] == "alembic upgrade head"

    def test_the_folder_defaults_to_the_config_files(self, tmp_path: Path) -> None:
        config = _load(tmp_path, '[migrations]\ncommand = "bin/rails db:migrate"\n')
        assert config.migration_command is not None
        assert config.migration_command.workdir == tmp_path.resolve()
        assert config.migration_command.timeout is None  # [run] migration_timeout then

    def test_no_command_no_command_config(self, tmp_path: Path) -> None:
        assert _load(tmp_path, '[migrations]\nlayout = "flyway"\n').migration_command is None

    @pytest.mark.parametrize(("text", "key", "says"), [
        ('command = ""', "migrations.command", "is empty"),
        ('command = "   "', "migrations.command", "is empty"),
        ("command = \"sh -c 'unbalanced\"", "migrations.command", "No closing quotation"),
        ("command = 3", "migrations.command", "must be a string"),
        ('command = "alembic upgrade head"\ndown_command = ""', "migrations.down_command", "is empty"),
        ('down_command = "alembic downgrade base"', "migrations.down_command", "only with"),
        ('command_timeout = "5m"', "migrations.command_timeout", "only with"),
        ('command = "x"\nworkdir = "nope"', "migrations.workdir", "no such folder"),
        ('command = "x"\ncommand_timeout = "soon"', "migrations.command_timeout", ""),
        ('command = "x"\ncommand_timeout = "0s"', "migrations.command_timeout", "longer than 0s"),
        ('command = "x"\ncommand_env = "HOME"', "migrations.command_env", "list of variable names"),
        ('command = "x"\ncommand_env = ["NOT-A-NAME"]', "migrations.command_env", "not a variable name"),
        ('command = "x"\ncommand_env = ["DATABASE_URL"]', "migrations.command_env", "set by drillbook"),
        ('command = "x"\ncommand_env = ["PGHOST"]', "migrations.command_env", "set by drillbook"),
        ('comand = "x"', "migrations.comand", "unknown key"),
    ])
    def test_bad_values_name_the_key_and_file(self, tmp_path: Path, text: str, key: str, says: str) -> None:
        """Every mistake stops the run at load, naming the key and the file, before anything runs."""
        with pytest.raises(ConfigError) as caught:
            _load(tmp_path, f"[migrations]\n{text}\n")
        message = str(caught.value)
        assert f"`{key}`" in message
        assert str(tmp_path / "drillbook.toml") in message
        assert says in message


class TestSplitCommand:
    @given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                            min_size=1), min_size=1, max_size=6))
    def test_a_shell_quoted_argv_comes_back_whole(self, argv: list[str]) -> None:
        """Whatever the arguments hold (spaces, quotes, $, ;), quoting then splitting is the identity:
        nothing is interpreted, as no shell runs."""
        import shlex

        assert split_command(shlex.join(argv)) == tuple(argv)

    def test_shell_syntax_is_not_interpreted(self) -> None:
        assert split_command("alembic upgrade head; rm -rf / $HOME") == (
            "alembic", "upgrade", "head;", "rm", "-rf", "/", "$HOME")

    def test_unbalanced_quotes_are_refused(self) -> None:
        with pytest.raises(CommandUnusable, match="No closing quotation"):
            split_command("sh -c 'echo")


class TestDatabaseUrl:
    def test_tcp_host_password_and_options(self) -> None:
        url = database_url("host=127.0.0.1 port=5433 dbname=scratch_a user=scratch_a password='p@ss:w/rd' "
                           "sslmode=disable")
        assert url == "postgresql://scratch_a:p%40ss%3Aw%2Frd@127.0.0.1:5433/scratch_a?sslmode=disable"

    def test_a_socket_directory_goes_in_the_query(self) -> None:
        assert database_url("host=/run/postgresql port=5432 dbname=d user=u") == (
            "postgresql://u@/d?host=%2Frun%2Fpostgresql&port=5432")

    @given(st.text(min_size=1, max_size=30).filter(lambda s: "\0" not in s))
    def test_libpq_reads_back_the_same_password(self, password: str) -> None:
        import psycopg

        dsn = psycopg.conninfo.make_conninfo(host="127.0.0.1", port="5432", dbname="d", user="u",
                                             password=password)
        assert psycopg.conninfo.conninfo_to_dict(database_url(dsn))["password"] == password


class TestToolHistory:
    """The tool's own table in scratch (what the command wrote) against the subject's."""

    def test_missing_fails_pending_passes_unless_refused(self) -> None:
        from checks.command_history import KNOWN_TOOL_TABLES, compare_tool_history
        from checks.verdict import Outcome

        rails = next(t for t in KNOWN_TOOL_TABLES if t.name == "schema_migrations")
        scratch = frozenset({("20240101000000",), ("20240201000000",)})
        subject = frozenset({("20240101000000",), ("20231231000000",)})
        verdict = compare_tool_history(rails, scratch, subject, subject_name="prod",
                                       command="bin/rails db:migrate")
        assert verdict.outcome is Outcome.FAILED
        assert ("missing (applied on prod, not written by `bin/rails db:migrate`): 20231231000000"
                in verdict.message)
        behind = compare_tool_history(rails, scratch, frozenset({("20240101000000",)}), subject_name="prod",
                                      command="x")
        assert behind.outcome is Outcome.PASSED and "1 pending (20240201000000)" in behind.message
        strict = compare_tool_history(rails, scratch, frozenset({("20240101000000",)}), subject_name="prod",
                                      command="x", allow_pending=False)
        assert strict.outcome is Outcome.FAILED

    def test_a_current_only_table_cannot_tell_behind_from_lost(self) -> None:
        from checks.command_history import KNOWN_TOOL_TABLES, compare_tool_history
        from checks.verdict import Outcome

        alembic = next(t for t in KNOWN_TOOL_TABLES if t.name == "alembic_version")
        verdict = compare_tool_history(alembic, frozenset({("c3",)}), frozenset({("b2",)}),
                                       subject_name="prod", command="alembic upgrade head")
        assert verdict.outcome is Outcome.WARNING
        assert "holds b2" in verdict.message and "leaves c3" in verdict.message
        same = compare_tool_history(alembic, frozenset({("c3",)}), frozenset({("c3",)}), subject_name="prod",
                                    command="alembic upgrade head")
        assert same.outcome is Outcome.PASSED
