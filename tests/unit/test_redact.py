"""checks.redact: every secret source of a config is registered, and masked in every form.

The URL and DSN parsing is property-tested: random passwords full of reserved
characters, written percent-encoded into a URL or libpq-quoted into a key=value
DSN, must be registered and then masked raw, URL-quoted and base64-encoded.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks import redact
from drills.config import parse_config

# Reserved and awkward characters on purpose; `*` is left out because the mask is made of it
# (a secret like "w ***" would re-appear out of the mask and the text around it).
RESERVED = ":/?#[]@!$&'()+,;=% \\\"<>{}|^`~-._"
PASSWORDS = st.text(
    alphabet=st.one_of(st.sampled_from(RESERVED), st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                                                exclude_characters="*")),
    min_size=redact._MIN_SECRET_LEN, max_size=24,
)
USERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12)
SCHEMES = st.sampled_from(["postgresql", "postgres", "redis", "rediss", "http", "https"])


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """The redactor is process-wide: each test starts and ends with nothing registered."""
    redact.clear()
    yield
    redact.clear()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _revealing_forms(password: str) -> list[str]:
    """What an output could show of ``password``: raw, URL-quoted (three encoders), base64."""
    found = [password, quote(password, safe=""), quote(password), quote_plus(password)]
    if len(password.encode("utf-8")) >= 7:  # shorter base64 cores are not masked (chance matches)
        found.append(_b64(password).rstrip("="))
    return found


def _expect_masked(forms: list[str]) -> None:
    text = "\n".join(f"<{form}>" for form in forms)
    redacted = redact.redact(text)
    visible = [form for form in forms if form in redacted]
    assert visible == [], f"visible after redaction: {visible!r} in {redacted!r}"


class TestUrlUserinfo:
    @settings(max_examples=200, deadline=None)
    @given(scheme=SCHEMES, user=USERS, password=PASSWORDS)
    def test_password_is_masked_raw_quoted_and_in_basic_credentials(
        self, scheme: str, user: str, password: str
    ) -> None:
        """A percent-encoded userinfo password: every form of it, and base64(user:password), is masked."""
        redact.clear()
        url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@db.internal:5432/app"
        redact.register_dsn(url)
        _expect_masked([*_revealing_forms(password), _b64(f"{user}:{password}").rstrip("="), url])

    @settings(max_examples=100, deadline=None)
    @given(user=USERS, password=PASSWORDS)
    def test_a_password_quoted_only_where_it_must_be_is_masked(self, user: str, password: str) -> None:
        """An encoder that leaves sub-delims (`!$&'()+,;=`) raw in userinfo: that spelling is masked too."""
        redact.clear()
        written = quote(password, safe="!$&'()+,;=")
        redact.register_dsn(f"https://{user}:{written}@api.internal/")
        _expect_masked([written, *_revealing_forms(password)])

    @settings(max_examples=100, deadline=None)
    @given(password=PASSWORDS)
    def test_password_in_the_query_is_masked(self, password: str) -> None:
        """libpq's `?password=` and redis-py's query parameter carry a password as well."""
        redact.clear()
        query = f"sslmode=require&password={quote(password, safe='')}"
        redact.register_dsn(f"postgresql://db.internal/app?{query}")
        _expect_masked(_revealing_forms(password))

    def test_lower_case_percent_escapes_are_the_same_secret(self) -> None:
        """`%2f` and `%2F` decode alike: a URL written with either spelling is masked."""
        redact.register_dsn("https://u:ab%2Fcd%40ef@host/")
        _expect_masked(["ab/cd@ef", "ab%2Fcd%40ef", "ab%2fcd%40ef"])

    def test_username_alone_is_not_a_secret(self) -> None:
        """`postgres` in postgresql://postgres@host stays readable: only passwords are registered."""
        redact.register_dsn("postgresql://postgres@db.internal/app")
        assert redact.redact("connected as postgres") == "connected as postgres"

    def test_any_url_password_is_masked_even_unregistered(self) -> None:
        """A process that never loaded the config, or a 2-character password: the URL still hides it."""
        text = "see postgresql://app:pw@db:5432/x and redis://:s3cr3t@cache/0 and https://[::1]:8443/"
        assert redact.redact(text) == (
            "see postgresql://app:***@db:5432/x and redis://:***@cache/0 and https://[::1]:8443/"
        )

    def test_hosts_ports_and_paths_are_not_mistaken_for_userinfo(self) -> None:
        """No `user:password@`, nothing masked: ports, IPv6 literals, an @ later in the path."""
        text = "http://127.0.0.1:9000/bucket and https://[::1]:8443/x and http://h:80/a@b and git@host:r"
        assert redact.redact(text) == text


class TestKeyValueDsn:
    @settings(max_examples=200, deadline=None)
    @given(password=PASSWORDS)
    def test_libpq_quoted_password_is_registered_as_libpq_reads_it(self, password: str) -> None:
        """password='...' with \\' and \\\\ escapes: what libpq reads is masked, and so is what is written."""
        redact.clear()
        written = password.replace("\\", "\\\\").replace("'", "\\'")
        dsn = f"host=db.internal port=5432 user=app password='{written}' dbname=app"
        assert psycopg.conninfo.conninfo_to_dict(dsn)["password"] == password  # the test's own premise
        redact.register_dsn(dsn)
        _expect_masked([*_revealing_forms(password), written])

    def test_bare_password_is_registered(self) -> None:
        """password=value without quotes ends at whitespace."""
        redact.register_dsn("host=db password=bare-s3cret dbname=app")
        assert redact.redact("x bare-s3cret y") == "x *** y"


class TestHeaders:
    def test_bearer_token_is_masked_alone_and_whole(self) -> None:
        """Authorization = "Bearer TOKEN": the token on its own is a secret, in any form."""
        redact.register_header("Authorization", "Bearer tok-8f3a9c2e1b7d")
        _expect_masked(["Bearer tok-8f3a9c2e1b7d", *_revealing_forms("tok-8f3a9c2e1b7d")])

    @settings(max_examples=100, deadline=None)
    @given(user=USERS, password=PASSWORDS)
    def test_basic_credentials_mask_the_password_and_the_pair(self, user: str, password: str) -> None:
        """Basic base64(user:password): the base64, the decoded pair and the password alone are masked."""
        redact.clear()
        credentials = _b64(f"{user}:{password}")
        redact.register_header("Authorization", f"Basic {credentials}")
        _expect_masked([credentials, f"{user}:{password}", *_revealing_forms(password)])

    def test_a_literal_api_key_is_masked(self) -> None:
        """A value written into the file, not from ${ENV}, is as secret."""
        redact.register_header("X-Api-Key", "key-Lit3ral-55aa77")
        _expect_masked(_revealing_forms("key-Lit3ral-55aa77"))

    def test_cookie_values_are_masked_one_by_one(self) -> None:
        """Cookie = "a=1; session=VALUE": each value, wherever it appears alone."""
        redact.register_header("Cookie", "theme=dark-mode; session=sess-77c1d0e9")
        _expect_masked(["sess-77c1d0e9"])

    def test_content_negotiation_headers_stay_readable(self) -> None:
        """Accept = "application/json" is not a secret: masking it would only damage the report."""
        redact.register_header("Accept", "application/json")
        redact.register_header("User-Agent", "drillbook-probe")
        text = "application/json from drillbook-probe"
        assert redact.redact(text) == text


class TestForms:
    @settings(max_examples=200, deadline=None)
    @given(prefix=st.binary(max_size=5), password=PASSWORDS, suffix=st.binary(max_size=5))
    def test_base64_at_any_alignment_hides_the_secret(
        self, prefix: bytes, password: str, suffix: bytes
    ) -> None:
        """base64 of any text holding the secret, whatever comes before it, no longer decodes to it."""
        redact.clear()
        secret = password.encode("utf-8")
        assume(len(secret) >= 9)  # long enough for an 8-character core at every alignment
        redact.register(password)
        encoded = base64.b64encode(prefix + secret + suffix).decode("ascii")
        masked = redact.redact(encoded)
        assert masked != encoded
        # Whatever survives between masks, decoded at each of the 4 character alignments.
        for fragment in masked.split(redact.MASK):
            for shift in range(4):
                chunk = fragment.rstrip("=")[shift:]
                decoded = base64.b64decode(chunk[:len(chunk) // 4 * 4])
                assert secret not in decoded

    @settings(max_examples=100, deadline=None)
    @given(password=PASSWORDS)
    def test_json_and_html_escaped_forms_are_masked(self, password: str) -> None:
        """A writer that redacts after serialising (the evidence export) still finds the secret."""
        import html

        redact.clear()
        redact.register(password)
        _expect_masked([json.dumps(password)[1:-1], html.escape(password)])

    def test_short_values_are_not_registered(self) -> None:
        """Under 4 characters a value would mask ordinary words and digits."""
        redact.register("abc")
        assert redact.registered() == frozenset()


class TestRedactingWriter:
    def test_a_secret_written_in_two_pieces_is_masked(self) -> None:
        """Lines are held until their newline: a secret split across writes is seen whole."""
        redact.register("split-s3cret-value")
        sink = io.StringIO()
        writer = redact.RedactingWriter(sink)
        writer.write("token: split-s3")
        writer.write("cret-value\nnext")
        assert sink.getvalue() == "token: ***\n"
        writer.flush()
        assert sink.getvalue() == "token: ***\nnext"

    def test_it_answers_like_the_stream_it_wraps(self) -> None:
        """isatty and the number of characters written, as print() and pytest expect."""
        sink = io.StringIO()
        writer = redact.RedactingWriter(sink)
        assert writer.write("abc") == 3
        assert writer.isatty() is False
        assert writer.wrapped is sink


def _config(body: str, environ: dict[str, str] | None = None) -> dict[str, object]:
    return parse_config(body, path=None, environ=environ or {}).redacted()


# One target (or ledger) per URL-valued field, each with a literal password in its userinfo.
URL_FIELDS = {
    "postgres dsn": '[targets.t]\nkind = "postgres"\ndsn = "postgresql://app:{pw}@db.internal:5432/app"\n',
    "redis url": '[targets.t]\nkind = "redis"\nurl = "redis://:{pw}@cache.internal:6379/0"\n',
    "s3 endpoint_url": '[targets.t]\nkind = "s3"\nurl = "s3://backups/x/"\n'
                       'endpoint_url = "http://minio:{pw}@127.0.0.1:9000"\n',
    "http url": '[targets.t]\nkind = "http"\nurl = "https://api:{pw}@api.internal:8443"\n',
    "prometheus url": '[targets.t]\nkind = "prometheus"\nurl = "https://prom:{pw}@prometheus.internal:9090"\n',
    "ledger endpoint_url": '[ledger]\nurl = "s3://ledger/drillbook/"\n'
                           'endpoint_url = "http://ledger:{pw}@127.0.0.1:9000"\n',
    "ledger url": '[ledger]\nurl = "s3://ak:{pw}@ledger/drillbook/"\n',
    "endpoint query token": '[targets.t]\nkind = "s3"\nurl = "s3://backups/x/"\n'
                            'endpoint_url = "http://127.0.0.1:9000/?token={pw}"\n',
}


class TestConfigRegistersEverySecretSource:
    @pytest.mark.parametrize("field", sorted(URL_FIELDS))
    def test_a_literal_password_in_any_url_field_is_masked(self, field: str) -> None:
        """Written into the file, not from ${ENV}: registered all the same, and absent from the evidence."""
        password = "Lit3ral%2Fpw%40x"  # as written in the URL: "Lit3ral/pw@x"
        redacted = _config(URL_FIELDS[field].format(pw=password))
        shown = json.dumps(redacted)
        for form in (password, "Lit3ral/pw@x"):
            assert form not in shown
            assert form not in redact.redact(f"error talking to {form}")

    @settings(max_examples=50, deadline=None)
    @given(password=PASSWORDS)
    def test_an_endpoint_password_from_the_environment_is_masked_in_every_form(self, password: str) -> None:
        """${VAR} inside an endpoint_url: the whole value and the password, raw and quoted."""
        redact.clear()
        body = ('[targets.t]\nkind = "s3"\nurl = "s3://backups/x/"\n'
                'endpoint_url = "http://minio:${S3_PW}@127.0.0.1:9000"\n')
        parse_config(body, path=None, environ={"S3_PW": quote(password, safe="")})
        _expect_masked(_revealing_forms(password))

    def test_literal_and_environment_header_values_are_masked(self) -> None:
        """Bearer ${TOKEN}, a literal X-Api-Key and a literal Basic header: none reaches the evidence."""
        basic = _b64("drill:basic-Pw:x@y-4411")
        redacted = _config(
            '[targets.api]\nkind = "http"\nurl = "https://api.internal"\n'
            f'headers = {{ Authorization = "Bearer ${{TOKEN}}", X-Api-Key = "key-Lit3ral-55aa77", '
            'Accept = "application/json" }\n'
            '[targets.basic]\nkind = "http"\nurl = "https://basic.internal"\n'
            f'headers = {{ Authorization = "Basic {basic}" }}\n',
            {"TOKEN": "tok-8f3a9c2e1b7d"},
        )
        shown = json.dumps(redacted)
        for form in ("tok-8f3a9c2e1b7d", "key-Lit3ral-55aa77", basic, "basic-Pw:x@y-4411"):
            assert form not in shown
            assert form not in redact.redact(f"sent {form}")
        assert '"Accept": "application/json"' in shown


class TestRedactKeepsMarkup:
    def test_markup_stays_markup_when_a_secret_is_masked(self) -> None:
        """The HTML report's pre-rendered badges are markupsafe.Markup: masking must not escape them."""
        from markupsafe import Markup

        redact.register("s3cr3t-Pa55w0rd")
        unchanged = Markup('<span class="badge">FAILED</span>')
        assert redact.redact(unchanged) is unchanged
        masked = redact.redact(Markup("<b>s3cr3t-Pa55w0rd</b>"))
        assert isinstance(masked, Markup) and masked == Markup("<b>***</b>")
