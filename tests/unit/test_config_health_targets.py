"""drillbook.toml: the `http`, `tls` and `prometheus` target kinds, validated before anything runs."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import redact
from checks.errors import ConfigError
from checks.http_health import FollowRedirects
from drills.config import load_config, parse_config
from drills.live import LiveEnvironment

HEADER_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
HEADER_VALUES = st.text(alphabet=string.ascii_letters + string.digits + " -._~+/=", min_size=1, max_size=40)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    redact.clear()


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "certs" / "ca.pem"
    path.parent.mkdir()
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


class TestHttpTargets:
    def test_url_ca_file_and_headers_are_read(self, tmp_path: Path, ca_file: Path) -> None:
        """ca_file is relative to the config file; header values resolve ${ENV}; live lookup finds it."""
        config_path = tmp_path / "drillbook.toml"
        config_path.write_text(
            '[targets.sark-api]\nkind = "http"\nurl = "https://sark.internal:8443"\n'
            'ca_file = "certs/ca.pem"\n'
            'headers = { Authorization = "Bearer ${TOKEN}", Accept = "application/json" }\n'
        )
        config = load_config(config_path, environ={"TOKEN": "tok-123456"})
        target = LiveEnvironment(config).http("sark-api")
        assert target.url == "https://sark.internal:8443"
        assert target.ca_file == ca_file
        assert dict(target.headers) == {"Authorization": "Bearer tok-123456", "Accept": "application/json"}

    def test_a_token_from_the_environment_is_never_shown(self) -> None:
        """A header value from ${ENV} is registered: the redacted config and any text mask it."""
        config = parse_config(
            '[targets.api]\nkind = "http"\nurl = "https://api.example"\n'
            'headers = { Authorization = "Bearer ${TOKEN}" }\n', path=None, environ={"TOKEN": "s3cr3t-token"},
        )
        assert "s3cr3t-token" not in str(config.redacted())
        assert "s3cr3t-token" not in redact.redact("sent Bearer s3cr3t-token; later s3cr3t-token alone")

    def test_a_password_in_the_url_is_masked_in_details(self) -> None:
        """user:password@ in a URL is a secret: the environment's details show host and path only."""
        config = parse_config('[targets.metrics]\nkind = "prometheus"\nurl = "https://u:pa55word@prom:9090/"\n',
                              path=None, environ={})
        details = LiveEnvironment(config).details()
        assert details["prometheus.metrics"] == "https://prom:9090/"
        assert "pa55word" not in str(config.redacted())

    @pytest.mark.parametrize("url", ["ftp://x/", "sark.internal", "https://", "https://h:notaport/",
                                     "https://h/health?x=1"])
    def test_a_bad_url_is_named(self, url: str) -> None:
        """Not http(s), no host, a bad port, a query: ConfigError naming the key."""
        with pytest.raises(ConfigError) as caught:
            parse_config(f'[targets.api]\nkind = "http"\nurl = {_toml_str(url)}\n', path=None, environ={})
        assert "targets.api.url" in str(caught.value)

    def test_a_missing_ca_file_is_named_at_start(self, tmp_path: Path) -> None:
        """A ca_file that does not exist stops the run before anything runs, naming key and path."""
        config_path = tmp_path / "drillbook.toml"
        config_path.write_text('[targets.api]\nkind = "http"\nurl = "https://a"\nca_file = "nope.pem"\n')
        with pytest.raises(ConfigError) as caught:
            load_config(config_path, environ={})
        assert "targets.api.ca_file" in str(caught.value)
        assert str(tmp_path / "nope.pem") in str(caught.value)
        assert "relative to the config file" in caught.value.hint

    def test_an_unknown_key_is_named(self) -> None:
        """`insecure = true` is not a key: TLS verification cannot be switched off."""
        with pytest.raises(ConfigError, match=r"targets\.api\.insecure"):
            parse_config('[targets.api]\nkind = "http"\nurl = "https://a"\ninsecure = true\n',
                         path=None, environ={})

    @pytest.mark.parametrize(("headers", "key"), [
        ('headers = "Authorization: x"', "targets.api.headers"),
        ('headers = { "Bad Name" = "x" }', "targets.api.headers.Bad Name"),
        ('headers = { X = 1 }', "targets.api.headers.X"),
        ('headers = { X = "a\\nb" }', "targets.api.headers.X"),
    ])
    def test_bad_headers_are_named(self, headers: str, key: str) -> None:
        """Not a table, a name that is not a token, a non-string value, a line break: the key is named."""
        with pytest.raises(ConfigError) as caught:
            parse_config(f'[targets.api]\nkind = "http"\nurl = "https://a"\n{headers}\n',
                         path=None, environ={})
        assert caught.value.context["key"] == key

    @settings(max_examples=60, deadline=None)
    @given(headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5))
    def test_any_valid_header_table_round_trips(self, headers: dict[str, str]) -> None:
        """Whatever valid names and values are written, the target carries exactly them, in order."""
        table = ", ".join(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in headers.items())
        config = parse_config(f'[targets.api]\nkind = "http"\nurl = "https://a"\nheaders = {{ {table} }}\n',
                              path=None, environ={})
        assert config.http["api"].headers == tuple(headers.items())


HTTP_API = '[targets.api]\nkind = "http"\nurl = "https://a"\n'


class TestFollowRedirects:
    """`follow_redirects` of an http target: a 3xx is the answer unless same-origin is opted in."""

    def test_the_default_is_never(self) -> None:
        config = parse_config(HTTP_API, path=None, environ={})
        assert config.http["api"].follow_redirects is FollowRedirects.NEVER
        assert config.redacted()["targets"]["api"]["follow_redirects"] == "never"

    @pytest.mark.parametrize("mode", list(FollowRedirects))
    def test_each_allowed_value_is_read(self, mode: FollowRedirects) -> None:
        config = parse_config(f'{HTTP_API}follow_redirects = "{mode}"\n', path=None, environ={})
        assert config.http["api"].follow_redirects is mode

    @pytest.mark.parametrize("value", ['"always"', '"same_origin"', '"Same-Origin"', '""', "true", "5"])
    def test_a_bad_value_is_named_with_the_file_and_key(self, tmp_path: Path, value: str) -> None:
        """Anything but "never" or "same-origin" stops the run at load, naming file, key and choices."""
        config_path = tmp_path / "drillbook.toml"
        config_path.write_text(f"{HTTP_API}follow_redirects = {value}\n")
        with pytest.raises(ConfigError) as caught:
            load_config(config_path, environ={})
        message = str(caught.value)
        assert str(config_path) in message and "`targets.api.follow_redirects`" in message
        assert caught.value.context["key"] == "targets.api.follow_redirects"
        if value.startswith('"'):
            assert '"never", "same-origin"' in message and "other hosts never receive" in caught.value.hint

    def test_it_is_not_a_key_of_other_kinds(self) -> None:
        """Prometheus answers come from the configured server only: no opt-in there."""
        with pytest.raises(ConfigError, match=r"targets\.metrics\.follow_redirects"):
            parse_config('[targets.metrics]\nkind = "prometheus"\nurl = "https://p:9090"\n'
                         'follow_redirects = "same-origin"\n', path=None, environ={})


class TestTlsTargets:
    def test_an_endpoint_with_sni(self) -> None:
        """host, port and server_name are read; the name to verify is the SNI name."""
        config = parse_config('[targets.edge]\nkind = "tls"\nhost = "10.0.0.5"\nport = 8443\n'
                              'server_name = "edge.sovra.example"\n', path=None, environ={})
        target = LiveEnvironment(config).tls("edge")
        assert (target.host, target.port) == ("10.0.0.5", 8443)
        assert target.expected_hostname == "edge.sovra.example"

    def test_a_pem_file(self, tmp_path: Path, ca_file: Path) -> None:
        """pem_file and ca_file are resolved relative to the config file."""
        (tmp_path / "edge.pem").write_text("x")
        config_path = tmp_path / "drillbook.toml"
        config_path.write_text('[targets.edge]\nkind = "tls"\npem_file = "edge.pem"\n'
                               'ca_file = "certs/ca.pem"\n')
        target = load_config(config_path, environ={}).tls["edge"]
        assert target.pem_file == tmp_path / "edge.pem"
        assert target.ca_file == ca_file
        assert LiveEnvironment(load_config(config_path, environ={})).details()["tls.edge"] == str(
            tmp_path / "edge.pem")

    @pytest.mark.parametrize(("body", "key"), [
        ("", "targets.edge"),
        ('host = "a"\npem_file = "b"', "targets.edge"),
        ('host = "https://a"', "targets.edge.host"),
        ('host = "a:443"', "targets.edge.host"),
        ('host = "a"\nport = "443"', "targets.edge.port"),
        ('host = "a"\nport = 0', "targets.edge.port"),
        ('host = "a"\nport = true', "targets.edge.port"),
        ('host = "a"\nserver_name = "a b"', "targets.edge.server_name"),
    ])
    def test_bad_tls_targets_are_named(self, body: str, key: str) -> None:
        """Neither or both sources, a URL as host, a port that is not 1..65535: the key is named."""
        with pytest.raises(ConfigError) as caught:
            parse_config(f'[targets.edge]\nkind = "tls"\n{body}\n', path=None, environ={})
        assert caught.value.context["key"] == key

    @settings(max_examples=80, deadline=None)
    @given(port=st.integers(min_value=-(2**31), max_value=2**31))
    def test_ports_outside_the_tcp_range_are_refused(self, port: int) -> None:
        """Every port from 1 to 65535 is read as given; every other number is a ConfigError."""
        text = f'[targets.edge]\nkind = "tls"\nhost = "h"\nport = {port}\n'
        if 1 <= port <= 65535:
            assert parse_config(text, path=None, environ={}).tls["edge"].port == port
        else:
            with pytest.raises(ConfigError, match=r"targets\.edge\.port"):
                parse_config(text, path=None, environ={})


class TestPrometheusTargets:
    def test_url_is_read_and_found_by_name(self) -> None:
        """A prometheus target is found by name; an unknown name lists the configured ones."""
        config = parse_config('[targets.metrics]\nkind = "prometheus"\nurl = "http://127.0.0.1:9090"\n',
                              path=None, environ={})
        env = LiveEnvironment(config)
        assert env.prometheus("metrics").url == "http://127.0.0.1:9090"
        with pytest.raises(ConfigError, match=r"no prometheus target named `grafana` \(configured: metrics"):
            env.prometheus("grafana")

    def test_kinds_do_not_mix(self) -> None:
        """A prometheus target is not an http target: asking for it by the wrong kind is refused."""
        config = parse_config('[targets.metrics]\nkind = "prometheus"\nurl = "http://p"\n',
                              path=None, environ={})
        with pytest.raises(ConfigError, match="no http target named `metrics`"):
            LiveEnvironment(config).http("metrics")

    @settings(max_examples=100, deadline=None)
    @given(url=st.text(max_size=40))
    def test_any_url_text_is_accepted_or_named(self, url: str) -> None:
        """Whatever text is written as a URL, the result is a target with an http(s) URL or a ConfigError."""
        text = tomli_w.dumps({"targets": {"metrics": {"kind": "prometheus", "url": url}}})
        try:
            config = parse_config(text, path=None, environ={})
        except ConfigError as exc:
            assert "targets.metrics" in str(exc)
        else:
            assert config.prometheus["metrics"].url.startswith(("http://", "https://"))
