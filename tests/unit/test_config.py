"""drillbook.toml: validated before anything runs, secrets from the environment, never echoed."""

from __future__ import annotations

import contextlib
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks import redact
from checks.errors import ConfigError
from drills.config import load_config, parse_config
from drills.targets import Role

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)
ENV_VALUES = st.text(alphabet=string.ascii_letters + string.digits + "!#%&*+-./:;<=>?@[]^_{|}~",
                     min_size=8, max_size=40)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TestParseConfig:
    def test_minimal_live_config(self, tmp_path: Path) -> None:
        """Targets are read by kind, subjects by default, scratch only when marked."""
        path = tmp_path / "drillbook.toml"
        path.write_text(
            '[targets.production]\nkind = "postgres"\ndsn = "${PG}"\n'
            '[targets.scratch]\nkind = "postgres"\ndsn = "postgresql://u@h/empty"\nscratch = true\n'
            '[targets.nightly]\nkind = "s3"\nurl = "s3://bk/aureus/"\nkey_pattern = "backup-%Y%m%d.sql.gz"\n',
            encoding="utf-8",
        )
        config = load_config(path, environ={"PG": "postgresql://u:pw1234@db/prod"})
        assert config.postgres["production"].role is Role.SUBJECT
        assert config.postgres["scratch"].role is Role.SCRATCH
        assert config.stores["nightly"].bucket == "bk"
        assert config.stores["nightly"].prefix == "aureus/"

    def test_unknown_key_names_key_and_file(self, tmp_path: Path) -> None:
        """A typo stops the run naming the key and the file."""
        path = tmp_path / "drillbook.toml"
        path.write_text('[targets.p]\nkind = "postgres"\ndsn = "x"\nscrach = true\n', encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert "targets.p.scrach" in str(caught.value)
        assert str(path) in str(caught.value)

    def test_missing_env_var_is_named_with_a_hint(self) -> None:
        """${VAR} that is not set is an error naming the variable and how to fix it."""
        with pytest.raises(ConfigError) as caught:
            parse_config('[targets.p]\nkind = "postgres"\ndsn = "${NOPE_DSN}"\n', path=None, environ={})
        assert "NOPE_DSN" in str(caught.value)
        assert "export NOPE_DSN" in caught.value.hint

    def test_scratch_that_is_a_subject_is_refused(self) -> None:
        """Pointing scratch at the subject's database is refused before any write."""
        text = ('[targets.prod]\nkind = "postgres"\ndsn = "host=db port=5432 dbname=app"\n'
                '[targets.s]\nkind = "postgres"\ndsn = "host=db dbname=app"\nscratch = true\n')
        with pytest.raises(ConfigError, match="same database as subject `prod`"):
            parse_config(text, path=None, environ={})

    def test_bad_s3_url(self) -> None:
        """A store URL that is not s3://bucket/... is named."""
        with pytest.raises(ConfigError, match="s3://bucket/prefix"):
            parse_config('[targets.n]\nkind = "s3"\nurl = "http://x/"\n', path=None, environ={})

    def test_not_toml(self) -> None:
        """Malformed TOML is a config error, not a traceback."""
        with pytest.raises(ConfigError, match="not valid TOML"):
            parse_config("[targets\n", path=None, environ={})

    def test_unparseable_dsn_is_named_without_its_value(self) -> None:
        """A DSN libpq rejects is a config error naming the key, never printing the password."""
        with pytest.raises(ConfigError) as caught:
            parse_config('[targets.p]\nkind = "postgres"\ndsn = "${DSN}"\n', path=None,
                         environ={"DSN": "postgresql://app:s3cr%zz@db/app"})
        assert "targets.p.dsn" in str(caught.value)
        assert "s3cr" not in str(caught.value)

    def test_secret_from_env_is_registered_for_redaction(self) -> None:
        """A resolved secret is masked in anything that passes through the redactor."""
        secret = "pw-" + secrets.token_urlsafe(16)
        parse_config('[targets.p]\nkind = "postgres"\ndsn = "${DSN}"\n', path=None,
                     environ={"DSN": f"postgresql://app:{secret}@db:5432/app"})
        assert secret not in redact.redact(f"connecting to postgresql://app:{secret}@db/app")


class TestContainerImages:
    def test_image_per_sandbox_target(self) -> None:
        """`[containers.<target>] image` names the image of the service serving that target."""
        config = parse_config(
            '[containers.production]\nimage = "registry.internal/postgres:15.8"\n'
            '[containers.cache]\nimage = "${REDIS_IMAGE}"\n',
            path=None, environ={"REDIS_IMAGE": "registry.internal/redis:7.2"},
        )
        assert config.container_images == {"postgres": "registry.internal/postgres:15.8",
                                           "redis": "registry.internal/redis:7.2"}

    def test_no_table_no_images(self) -> None:
        """Without `[containers]` the official images apply (an empty mapping)."""
        assert parse_config("", path=None, environ={}).container_images == {}

    @pytest.mark.parametrize(("text", "key"), [
        ('[containers.production]\nimage = "pg:15"\ntag = "x"\n', "containers.production.tag"),
        ("[containers.production]\n", "containers.production.image"),
        ('[containers.production]\nimage = "pg 15"\n', "containers.production.image"),
        ('[containers.nightly-plain]\nimage = "x:1"\n', "containers.nightly-plain"),
    ])
    def test_bad_entries_name_the_key(self, text: str, key: str) -> None:
        """An unknown key, a missing or malformed image, a target without a container: named at load."""
        with pytest.raises(ConfigError) as caught:
            parse_config(text, path=None, environ={})
        assert caught.value.context["key"] == key


@pytest.fixture(autouse=True)
def _redactor_as_before() -> Iterator[None]:
    """The secrets these tests make up (hypothesis draws e.g. "00000000") must not stay registered:
    a later test in the same worker would see its WAL segment names masked in a log tail."""
    before = redact.registered()
    yield
    redact.clear()
    with redact._lock:  # put back exactly the forms other modules registered (_ordered is rebuilt)
        redact._secrets.update(before)


class TestConfigProperties:
    @settings(max_examples=60, deadline=None)
    @given(names=st.lists(NAMES, min_size=1, max_size=5, unique=True), secret=ENV_VALUES)
    def test_valid_configs_load_and_never_show_secrets(self, names: list[str], secret: str) -> None:
        """Any set of well-formed targets loads; the redacted view never holds the secret."""
        body = "".join(
            f'[targets.{n}]\nkind = "postgres"\ndsn = "${{SECRET_DSN}}"\n' for n in names
        )
        dsn = f"postgresql://app:{quote(secret, safe='')}@db:5432/app"
        # A secret that is a word of the config itself ("timeouts" in `timeouts_s`) proves nothing.
        assume(secret not in repr(parse_config(body, path=None, environ={
            "SECRET_DSN": "postgresql://app:pw@db:5432/app"}).redacted()))
        config = parse_config(body, path=None, environ={"SECRET_DSN": dsn})
        assert set(config.postgres) == set(names)
        assert secret not in repr(config.redacted())

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=300))
    def test_garbage_is_a_config_error_or_loads(self, text: str) -> None:
        """Outside input never crashes the loader with anything but ConfigError."""
        with contextlib.suppress(ConfigError):
            parse_config(text, path=None, environ={})

    @settings(max_examples=60, deadline=None)
    @given(key=st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
    def test_any_unknown_run_key_is_rejected(self, key: str) -> None:
        """Only documented keys are accepted under [run]."""
        if key in {"out", "strict"}:
            return
        with pytest.raises(ConfigError, match=f"run.{key}"):
            parse_config(f"[run]\n{key} = 1\n", path=None, environ={})
