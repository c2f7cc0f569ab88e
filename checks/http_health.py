"""Facts about an HTTP(S) health endpoint: status, latency, values in its JSON body.

:func:`fetch` makes one GET with TLS verification always on (the target's CA
file, or the system store) and no proxy, and returns what came back with the
time it took. The checks then look at that :class:`HttpResponse`; they never
fetch themselves, so one response can be checked several ways.

HTTP checks stay on the target. A 3xx is the answer: by default nothing is
followed, and every check names the status and the ``Location`` (a health
endpoint that redirects is not healthy). A target may opt in to
:attr:`FollowRedirects.SAME_ORIGIN`: a redirect to the same scheme, host and
port is followed (at most :data:`MAX_REDIRECTS` hops); one that leaves the
origin, or goes from https to http, is not. Configured headers (tokens) are
therefore only ever sent to the target's own origin, and the answer judged is
always the target's. The chain of hops is evidence.

A JSON path is dotted: ``status``, ``components.database.status``; a segment
of digits indexes a list (``items.0.state``). Keys containing a dot cannot be
addressed.
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from . import redact
from .errors import DrillbookError, TargetUnreachable, UnusableAnswer
from .verdict import Verdict, format_duration, verdict_from_error

# A health body larger than this is not a health body; reading stops there.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Same-origin redirects followed before the chain is cut off: a loop must end long before the timeout.
MAX_REDIRECTS = 5
# Statuses that tell the client to repeat the request at `Location` (RFC 9110 15.4); 300 and 304
# carry no such instruction and are plain answers.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MISSING = object()


class FollowRedirects(enum.StrEnum):
    """Whether :func:`fetch` follows a redirect: ``never`` (the default) or within the same origin only."""

    NEVER = "never"
    SAME_ORIGIN = "same-origin"


@dataclass(frozen=True)
class Hop:
    """One redirect answered on the way: its status, the URL that answered, and where it pointed.

    ``refused`` is empty for a hop that was followed, else why it was not (the last hop).
    URLs are kept as received; :meth:`evidence` redacts them.
    """

    status: int
    url: str
    location: str
    refused: str = ""

    def evidence(self) -> dict[str, Any]:
        """The hop as it goes into a verdict: URLs redacted, followed or why not."""
        entry: dict[str, Any] = {"status": self.status, "url": shown_url(self.url),
                                 "location": shown_url(self.location), "followed": not self.refused}
        if self.refused:
            entry["refused"] = self.refused
        return entry


@dataclass(frozen=True)
class HttpResponse:
    """One GET: the target's name, the URL, status, body and how long it took (to the last byte)."""

    target: str
    url: str
    status: int
    body: bytes
    latency: timedelta
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # Every redirect answered on the way, followed or not; the last one is unfollowed when the
    # answer itself is a redirect (see :attr:`redirect`).
    chain: tuple[Hop, ...] = ()

    @property
    def final_url(self) -> str:
        """The URL that gave this answer: ``url``, or the last same-origin redirect's target."""
        followed = [hop for hop in self.chain if not hop.refused]
        return followed[-1].location if followed else self.url

    @property
    def redirect(self) -> Hop | None:
        """The redirect this answer is, when it was not followed; None for any other answer."""
        if self.chain and self.chain[-1].refused:
            return self.chain[-1]
        return None

    def chain_evidence(self) -> list[dict[str, Any]]:
        """Each hop's status and URLs (redacted): empty when the target answered directly."""
        return [hop.evidence() for hop in self.chain]

    def json(self) -> Any:
        """The body as JSON; :class:`UnusableAnswer` naming target and URL when it is not."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnusableAnswer(
                f"`{self.target}` answered {self.url} with HTTP {self.status} and a body that is not "
                f"JSON ({self.content_type or 'no content type'}; starts {_preview(self.body)}): {exc}",
                target=self.target, url=self.url,
                hint="point the step at the JSON health endpoint (e.g. /health/detailed), "
                "not an HTML page or a proxy's error page",
            ) from None


def endpoint_url(base: str, path: str) -> str:
    """``base`` + ``path`` (``/health``); a whole URL is refused (it would leave the target)."""
    if "://" in path or path.startswith("//"):
        raise ValueError(f"{path!r} is a URL, not a path: name the service as a target and use a path")
    return base.rstrip("/") + "/" + path.lstrip("/")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification on, hostname checked: the CA file when given, else the system store."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TargetUnreachable(
            f"cannot load the CA file {ca_file}: {exc}",
            ca_file=str(ca_file), hint="`ca_file` must be a readable PEM file of CA certificates",
        ) from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's own redirect handling, switched off: it would resend every header to any host.

    Returning None makes urllib raise the 3xx as an ``HTTPError``, which :func:`_get` treats as
    an answer like any other status; :func:`fetch` decides whether to follow it.
    """

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        return None


def fetch(
    url: str,
    *,
    target: str,
    ca_file: Path | None = None,
    headers: Iterable[tuple[str, str]] = (),
    timeout_s: float = 10.0,
    follow_redirects: FollowRedirects = FollowRedirects.NEVER,
) -> HttpResponse:
    """GET ``url``; any HTTP status is an answer, no answer is :class:`TargetUnreachable`.

    A redirect is the answer unless ``follow_redirects`` is ``same-origin`` and it stays on
    ``url``'s scheme, host and port (see the module docstring); ``headers`` go to that origin
    only. ``timeout_s`` applies to each request of the chain; latency covers the whole chain.
    """
    start = urlsplit(url)
    if start.scheme not in ("http", "https"):
        raise UnusableAnswer(f"`{target}`: {url!r} is not an http(s) URL", target=target, url=url,
                             hint="the target's `url` must start with https:// or http://")
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirects()]
    if start.scheme == "https":
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(ca_file)))
    # One opener serves the whole chain: a followed hop never changes scheme.
    opener = urllib.request.build_opener(*handlers)
    sent = dict(headers)
    chain: list[Hop] = []
    current = url
    started = time.perf_counter()
    while True:
        status, body, answer_headers = _get(opener, current, sent, target=target, timeout_s=timeout_s)
        raw_location = answer_headers.get("Location") if answer_headers else None
        if status not in REDIRECT_STATUSES or not raw_location:
            break
        try:
            location = urljoin(current, raw_location.strip())
        except ValueError:
            location = raw_location.strip()  # _refusal names it as not a valid URL
        refused = _refusal(start, location, follow_redirects, followed=len(chain))
        chain.append(Hop(status=status, url=current, location=location, refused=refused))
        if refused:
            break
        current = location
    latency = timedelta(seconds=time.perf_counter() - started)
    return HttpResponse(
        target=target, url=url, status=status, body=body, latency=latency,
        content_type=answer_headers.get("Content-Type", "") if answer_headers else "",
        headers=dict(answer_headers.items()) if answer_headers else {},
        chain=tuple(chain),
    )


def _get(opener: urllib.request.OpenerDirector, url: str, headers: Mapping[str, str], *, target: str,
         timeout_s: float) -> tuple[int, bytes, Any]:
    """One GET of ``url``: status, body (bounded) and headers; :class:`TargetUnreachable` for no answer."""
    request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310 - scheme checked
    try:
        with opener.open(request, timeout=timeout_s) as answer:
            return int(answer.status), answer.read(MAX_BODY_BYTES), answer.headers
    except urllib.error.HTTPError as exc:
        # 3xx/4xx/5xx is an answer: fetch and the status check decide what it means.
        body = exc.read(MAX_BODY_BYTES) if exc.fp is not None else b""
        return int(exc.code), body, exc.headers
    except urllib.error.URLError as exc:
        raise _unreachable(target, url, exc.reason, timeout_s) from None
    except (OSError, ssl.SSLError) as exc:
        raise _unreachable(target, url, exc, timeout_s) from None


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host (lower case) and port, the default port filled in: what "same origin" compares."""
    return parts.scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _refusal(start: SplitResult, location: str, mode: FollowRedirects, *, followed: int) -> str:
    """Why a redirect to ``location`` is not followed, or "" when it is (same origin, opted in)."""
    if mode is FollowRedirects.NEVER:
        return 'not followed (follow_redirects = "never", the default)'
    try:
        parts = urlsplit(location)
        same_origin = _origin(parts) == _origin(start)
    except ValueError:  # a port that is not a number
        return "not followed: the Location is not a valid URL"
    # Checked before the origin so that the message names the downgrade, the worse of the two.
    if start.scheme == "https" and parts.scheme != "https":
        return f"not followed: it goes from https to {parts.scheme or 'another scheme'}"
    if parts.username is not None or parts.password is not None:
        return "not followed: the Location carries user credentials"
    if not same_origin:
        return f'not followed: it leaves the origin {_origin_text(start)} (follow_redirects = "same-origin")'
    if followed >= MAX_REDIRECTS:
        return f"not followed: more than {MAX_REDIRECTS} redirects"
    return ""


def _origin_text(parts: SplitResult) -> str:
    scheme, host, port = _origin(parts)
    return f"{scheme}://{host}:{port}"


def shown_url(url: str) -> str:
    """``url`` fit for a message or evidence: user info dropped, registered secrets masked."""
    try:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            if parts.port is not None:
                netloc += f":{parts.port}"
            url = urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass  # not parseable as a URL: shown as it is, secrets still masked below
    return redact.redact(url)


def _unreachable(target: str, url: str, reason: object, timeout_s: float) -> DrillbookError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return TargetUnreachable(
            f"`{target}` at {url}: TLS verification failed: {reason.verify_message}",
            target=target, url=url,
            hint="the server's certificate is not trusted for this host name: fix the certificate, "
            "or name the issuing CA with the target's `ca_file` (verification is never turned off)",
        )
    if isinstance(reason, TimeoutError | socket.timeout):
        text = f"no answer within {timeout_s:g} s"
    else:
        text = str(getattr(reason, "strerror", None) or reason)
    return TargetUnreachable(
        f"`{target}` at {url} is unreachable: {redact.redact(text)}",
        target=target, url=url,
        hint="check the target's `url`, that the service runs and that this machine can reach it",
    )


def _redirect_note(response: HttpResponse) -> str:
    """How the answer came about, for a message: the unfollowed Location, or the hops followed."""
    hop = response.redirect
    if hop is not None:
        return f"it redirects to {shown_url(hop.location)} ({hop.refused})"
    if response.chain:
        count = len(response.chain)
        return (f"after {count} same-origin redirect{'s' if count > 1 else ''}, "
                f"answered by {shown_url(response.final_url)}")
    return ""


def _redirect_verdict(check_id: str, response: HttpResponse, evidence: dict[str, Any]) -> Verdict | None:
    """A redirect that was not followed, as a failed verdict; None for any other answer.

    Its body belongs to the redirect, not to the health endpoint: judging it would report
    whatever the redirecting server says as the target's health.
    """
    if response.redirect is None:
        return None
    return Verdict.failed(
        check_id,
        f"`{response.target}` {response.url}: HTTP {response.status} is not a health answer; "
        + _redirect_note(response),
        measured={"status": response.status, "location": shown_url(response.redirect.location)},
        evidence=evidence,
    )


def _evidence(response: HttpResponse, **more: Any) -> dict[str, Any]:
    """What every HTTP verdict records: target, URL, status, and the redirect chain."""
    evidence = {"target": response.target, "url": response.url, "status": response.status, **more,
                "redirects": response.chain_evidence()}
    if response.chain:
        evidence["final_url"] = shown_url(response.final_url)
    return evidence


def status_within(response: HttpResponse, *, status: int, limit: timedelta) -> Verdict:
    """The endpoint answered with ``status`` within ``limit`` (request sent to last body byte).

    An unfollowed redirect is the answer: it passes only when ``status`` is that 3xx, and the
    message names its Location either way.
    """
    evidence = _evidence(response, latency_s=round(response.latency.total_seconds(), 6),
                         content_type=response.content_type)
    problems = []
    if response.status != status:
        problems.append(f"HTTP {response.status}, expected {status}")
    if response.latency > limit:
        problems.append(f"took {format_duration(response.latency)}, limit {format_duration(limit)}")
    note = _redirect_note(response)
    suffix = f"; {note}" if note else ""
    measured = {"status": response.status, "latency_s": round(response.latency.total_seconds(), 6)}
    expected = {"status": status, "latency_s": f"<= {limit.total_seconds():g}"}
    if problems:
        return Verdict.failed(
            "http.status", f"`{response.target}` {response.url}: " + "; ".join(problems) + suffix,
            measured=measured, expected=expected, evidence=evidence,
        )
    return Verdict.passed(
        "http.status",
        f"`{response.target}` {response.url} answered HTTP {response.status} in "
        f"{format_duration(response.latency)} (limit {format_duration(limit)})" + suffix,
        measured=measured, expected=expected, evidence=evidence,
    )


def parse_json_path(path: str) -> tuple[str, ...]:
    """``components.database.status`` → its segments; ValueError for an empty segment."""
    segments = tuple(path.strip().split("."))
    if not path.strip() or any(s == "" for s in segments):
        raise ValueError(f"not a JSON path: {path!r} (write dotted keys, e.g. components.database.status)")
    return segments


def resolve(document: Any, path: str) -> Any:
    """The value at a dotted ``path``; KeyError naming the first segment that is missing."""
    current = document
    walked: list[str] = []
    for segment in parse_json_path(path):
        value: Any = _MISSING
        if isinstance(current, Mapping):
            value = current.get(segment, _MISSING)
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            value = current[int(segment)]
        if value is _MISSING:
            where = ".".join(walked) or "the top level"
            found = _keys_of(current)
            raise KeyError(f"no `{segment}` under {where} ({found})")
        walked.append(segment)
        current = value
    return current


def _keys_of(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = sorted(str(k) for k in value)
        shown = ", ".join(keys[:10]) + (", …" if len(keys) > 10 else "")
        return f"keys there: {shown}" if keys else "an empty object there"
    if isinstance(value, list):
        return f"a list of {len(value)} there"
    return f"a {json_type(value)} there"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def as_text(value: Any) -> str:
    """How a JSON value compares with the text of a feature: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _value_at(response: HttpResponse, path: str) -> Any:
    document = response.json()
    try:
        return resolve(document, path)
    except KeyError as exc:
        raise UnusableAnswer(
            f"`{response.target}` {response.url}: the JSON has no `{path}`: {exc.args[0]}",
            target=response.target, url=response.url, path=path,
            hint="check the path against the service's documented health body",
        ) from None


def json_equals(response: HttpResponse, path: str, expected: str) -> Verdict:
    """The JSON body holds ``expected`` at ``path`` (strings compared bare, other values as JSON)."""
    check_id = "http.json"
    redirected = _redirect_verdict(check_id, response, _evidence(response, path=path))
    if redirected is not None:
        return redirected
    try:
        value = _value_at(response, path)
    except DrillbookError as exc:
        return verdict_from_error(check_id, exc)
    shown = as_text(value)
    evidence = _evidence(response, path=path, value=value)
    return Verdict.compare(
        check_id, measured=shown, expected=expected, ok=shown == expected,
        message=f"`{response.target}` {response.url}: `{path}` is {shown!r}, expected {expected!r}",
        evidence=evidence,
    )


def every_entry_equals(response: HttpResponse, path: str, field_name: str, expected: str) -> Verdict:
    """Each entry under ``path`` (a list, or an object's values) has ``field_name`` equal to ``expected``.

    SARK's ``components`` object: every component's ``status`` is ``healthy``.
    No entries at all is a failure: an empty list proves nothing is healthy.
    """
    check_id = "http.json_entries"
    redirected = _redirect_verdict(check_id, response, _evidence(response, path=path, field=field_name))
    if redirected is not None:
        return redirected
    try:
        collection = _value_at(response, path)
    except DrillbookError as exc:
        return verdict_from_error(check_id, exc)
    if isinstance(collection, Mapping):
        entries = [(str(k), v) for k, v in collection.items()]
    elif isinstance(collection, list):
        entries = [(str(i), v) for i, v in enumerate(collection)]
    else:
        return Verdict.error(
            check_id,
            f"`{response.target}` {response.url}: `{path}` is a {json_type(collection)}, "
            "not a list or object of entries",
            evidence=_evidence(response, path=path, value=collection),
        )
    values: dict[str, Any] = {}
    wrong: list[str] = []
    for name, entry in entries:
        value = entry.get(field_name, _MISSING) if isinstance(entry, Mapping) else _MISSING
        if value is _MISSING:
            values[name] = None
            wrong.append(f"{name}: no `{field_name}`")
            continue
        values[name] = value
        if as_text(value) != expected:
            wrong.append(f"{name}: {as_text(value)!r}")
    evidence = _evidence(response, path=path, field=field_name, values=values)
    where = f"`{response.target}` {response.url} `{path}`"
    if not entries:
        return Verdict.failed(check_id, f"{where}: no entries, expected each to have "
                              f"`{field_name}` = {expected!r}", measured=values, expected=expected,
                              evidence=evidence)
    if wrong:
        return Verdict.failed(
            check_id,
            f"{where}: {len(wrong)} of {len(entries)} entries not {expected!r}: " + "; ".join(wrong),
            measured=values, expected=expected, evidence=evidence,
        )
    return Verdict.passed(
        check_id, f"{where}: all {len(entries)} entries have `{field_name}` = {expected!r}",
        measured=values, expected=expected, evidence=evidence,
    )


def _preview(body: bytes, size: int = 40) -> str:
    text = body[:size].decode("utf-8", errors="replace")
    return repr(text + ("…" if len(body) > size else "")) if body else "empty"
