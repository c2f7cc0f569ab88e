"""Scrub resolved secrets from anything that leaves a run.

Every secret source of a config is registered here (:mod:`drills.config` does
it while it loads the file):

- every value resolved from ``${ENV}``;
- the password in the userinfo (``user:password@``) of any URL-valued field, and
  ``password=`` style parameters in its query: DSNs, Redis URLs, S3
  ``endpoint_url``, http and prometheus ``url``, the ledger's URL and endpoint;
  literal or from ``${ENV}`` alike;
- the password of a key=value DSN (``password='...'``);
- http header values (:func:`register_header`): the whole value, the credential
  after an auth scheme (``Bearer``, ``Basic``...) and, for ``Basic``, the decoded
  ``user:password`` and the password.

A secret is masked in every form it may take in an output: as given, URL-decoded,
URL-encoded (several encoders' styles), base64-encoded at any byte alignment
(so ``base64(user:password)`` in a Basic header hides the password too), and
each of those escaped as JSON or HTML text.

Writers of logs, JUnit, HTML and evidence pass text through :func:`redact`;
``drillbook``'s command line writes stdout and stderr through
:class:`RedactingWriter`. :func:`redact` also masks the password of any
``scheme://user:password@`` it sees, registered or not: a process that never
loaded the config (``drillbook evidence export``) still does not print one.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import threading
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words and digits
# A base64 form shorter than this could occur by chance in any base64 text (hashes, keys).
_MIN_BASE64_FORM = 8
# RFC 3986 lets userinfo carry sub-delims unencoded: some encoders leave them so.
_USERINFO_SAFE = "!$&'()*+,;="
# Query parameters that carry a credential in libpq, redis-py and common HTTP APIs.
_SECRET_PARAMS = frozenset({"password", "sslpassword", "passwd", "pass", "pwd", "secret", "token",
                            "access_token", "api_key", "apikey", "auth"})
# Header values are secrets unless the header is one of these (what every client sends; masking
# `application/json` would only damage the report).
_PUBLIC_HEADERS = frozenset({"accept", "accept-charset", "accept-encoding", "accept-language",
                             "cache-control", "content-type", "pragma", "user-agent"})
# `scheme://user:password@` anywhere in a text: the password group is masked even when unregistered.
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\[\]]*:)([^\s/?#]+)@")
# One `key=value` of a libpq key=value DSN: a bare value, or a single-quoted one with \-escapes.
_KV_PAIR = re.compile(r"([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] | None = None  # every form of every secret, longest first; rebuilt on change


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it, in every form it may take, everywhere."""
    if not secret or len(secret) < _MIN_SECRET_LEN:
        return
    found = forms(secret)
    global _ordered
    with _lock:
        if not found <= _secrets:
            _secrets.update(found)
            _ordered = None


def forms(secret: str) -> set[str]:
    """The texts that reveal ``secret``: as given, URL-decoded, URL-encoded, base64 at any alignment."""
    plain = {secret, unquote(secret)}
    found = set(plain)
    for text in plain:
        for encoded in (quote(text, safe=""), quote(text, safe="/"), quote(text, safe=_USERINFO_SAFE),
                        quote_plus(text)):
            found.add(encoded)
            # %2f and %2F decode alike: both spellings are the secret.
            found.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
        found |= _base64_forms(text.encode("utf-8"))
    # As a JSON string or HTML/XML text holds it: for a writer that redacts after serialising.
    for text in list(found):
        found.update((json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
                      html.escape(text), html.escape(text, quote=False)))
    return {f for f in found if len(f) >= _MIN_SECRET_LEN}


def _base64_forms(data: bytes) -> set[str]:
    """What every base64 encoding of a text holding ``data`` contains, for each of the 3 alignments.

    With ``k`` bytes before it, the characters that depend only on ``data`` start after the
    ``ceil(8k/6)`` that mix in the prefix and stop before the one that mixes in what follows.
    """
    found: set[str] = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode("ascii")
        core = encoded[-(-8 * k // 6):(8 * (k + len(data))) // 6]
        if len(core) >= _MIN_BASE64_FORM:
            found.add(core)
            found.add(core.translate(str.maketrans("+/", "-_")))  # the URL-safe alphabet
    return found


def register_dsn(dsn: str) -> None:
    """Register the password inside a URL-style or key=value DSN (libpq, Redis, S3 endpoint...)."""
    if "://" in dsn:
        register_url(dsn)
        return
    for key, value in _KV_PAIR.findall(dsn):
        if key.lower() in _SECRET_PARAMS:
            if value.startswith("'"):
                register(value[1:-1])  # as written, escapes and all
                # libpq: inside single quotes, a backslash escapes the next character.
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            register(value)


def register_url(url: str) -> None:
    """Register the userinfo password and any credential query parameter of ``url``.

    The password is registered as written (percent-encoded) and decoded; ``user:password``
    too, whose base64 is what a client sends as Basic credentials.
    """
    # urlsplit rejects some malformed netlocs (an unbalanced `[`): fall back to the regex.
    try:
        parts = urlsplit(url)
        password, username, query = parts.password, parts.username, parts.query
    except ValueError:
        match = _URL_USERINFO.search(url)
        password, username, query = (match.group(2) if match else None), None, ""
    if password:
        register(password)
        if username is not None:
            register(f"{unquote(username)}:{unquote(password)}")
    for key, value in parse_qsl(query, keep_blank_values=False):
        if key.lower() in _SECRET_PARAMS:
            register(value)


def register_header(name: str, value: str) -> None:
    """Register an http header value (literal or from ``${ENV}``) unless the header is harmless.

    ``Authorization = "Bearer TOKEN"`` registers the value and ``TOKEN``; ``Basic B64`` also
    the decoded ``user:password`` and the password; ``Cookie`` each cookie's value.
    """
    if name.lower() in _PUBLIC_HEADERS:
        return
    value = value.strip()
    register(value)
    scheme, _, credentials = value.partition(" ")
    credentials = credentials.strip()
    if credentials and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", scheme):
        register(credentials)
        if scheme.lower() == "basic":
            _register_basic(credentials)
    if name.lower() == "cookie":
        for cookie in value.split(";"):
            register(cookie.partition("=")[2].strip())


def _register_basic(credentials: str) -> None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return  # not base64 of text: the credentials themselves are registered already
    register(decoded)
    register(decoded.partition(":")[2])


def registered() -> frozenset[str]:
    """Every form of every registered secret."""
    with _lock:
        return frozenset(_secrets)


def _longest_first() -> tuple[str, ...]:
    global _ordered
    with _lock:
        if _ordered is None:
            # Longest first, so a form containing another is masked whole. (str.replace per form
            # measured 3-10x faster than one regex alternation of hundreds of literals.)
            _ordered = tuple(sorted(_secrets, key=lambda s: (-len(s), s)))
        return _ordered


def redact(text: str) -> str:
    """Replace every registered secret, and any URL's userinfo password, in ``text`` with ``***``."""
    result = str(text)
    for secret in _longest_first():
        if secret in result:
            result = result.replace(secret, MASK)
    if "://" in result:
        result = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", result)
    if result == text:
        return text  # unchanged: the very object, so a markupsafe.Markup stays markup
    if type(text) is not str:
        # A str subclass (markupsafe.Markup, which templates must not escape twice): masking
        # only removes characters and adds "***", which cannot make markup, so it keeps its class.
        try:
            return type(text)(result)
        except (TypeError, ValueError):
            return result
    return result


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value


class RedactingWriter:
    """A text stream that writes whole lines through :func:`redact` to another stream.

    Lines are held until their newline (or a flush) so a secret written in two pieces is
    still seen whole. Used for ``drillbook``'s stdout and stderr: pytest's own report of a
    failure, a traceback, anything printed.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""
        self._write_lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return self._stream.encoding

    @property
    def errors(self) -> str | None:
        return self._stream.errors

    @property
    def wrapped(self) -> TextIO:
        """The stream written to."""
        return self._stream

    def write(self, text: str) -> int:
        with self._write_lock:
            self._pending += text
            head, newline, tail = self._pending.rpartition("\n")
            if newline:
                self._stream.write(redact(head + newline))
                self._pending = tail
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._write_lock:
            if self._pending:
                self._stream.write(redact(self._pending))
                self._pending = ""
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True


def clear() -> None:
    """Forget every secret (tests and a new run in the same process)."""
    global _ordered
    with _lock:
        _secrets.clear()
        _ordered = None
