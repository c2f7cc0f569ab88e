"""Facts about an HTTP(S) health endpoint: status, latency, values in its JSON body.

:func:`fetch` makes one GET with TLS verification always on (the target's CA
file, or the system store) and no proxy, and returns what came back with the
time it took. The checks then look at that :class:`HttpResponse`; they never
fetch themselves, so one response can be checked several ways.

A JSON path is dotted: ``status``, ``components.database.status``; a segment
of digits indexes a list (``items.0.state``). Keys containing a dot cannot be
addressed.
"""

from __future__ import annotations

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
from urllib.parse import urlsplit

from . import redact
from .errors import DrillbookError, TargetUnreachable, UnusableAnswer
from .verdict import Verdict, format_duration, verdict_from_error

# A health body larger than this is not a health body; reading stops there.
MAX_BODY_BYTES = 4 * 1024 * 1024
_MISSING = object()


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


def fetch(
    url: str,
    *,
    target: str,
    ca_file: Path | None = None,
    headers: Iterable[tuple[str, str]] = (),
    timeout_s: float = 10.0,
) -> HttpResponse:
    """GET ``url``; any HTTP status is an answer, no answer is :class:`TargetUnreachable`."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise UnusableAnswer(f"`{target}`: {url!r} is not an http(s) URL", target=target, url=url,
                             hint="the target's `url` must start with https:// or http://")
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if scheme == "https":
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(ca_file)))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310 - scheme checked
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=timeout_s) as answer:
            body = answer.read(MAX_BODY_BYTES)
            status = int(answer.status)
            answer_headers = answer.headers
    except urllib.error.HTTPError as exc:
        # 4xx/5xx is an answer: the status check decides what it means.
        body = exc.read(MAX_BODY_BYTES) if exc.fp is not None else b""
        status = int(exc.code)
        answer_headers = exc.headers
    except urllib.error.URLError as exc:
        raise _unreachable(target, url, exc.reason, timeout_s) from None
    except (OSError, ssl.SSLError) as exc:
        raise _unreachable(target, url, exc, timeout_s) from None
    latency = timedelta(seconds=time.perf_counter() - started)
    return HttpResponse(
        target=target, url=url, status=status, body=body, latency=latency,
        content_type=answer_headers.get("Content-Type", "") if answer_headers else "",
        headers=dict(answer_headers.items()) if answer_headers else {},
    )


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


def status_within(response: HttpResponse, *, status: int, limit: timedelta) -> Verdict:
    """The endpoint answered with ``status`` within ``limit`` (request sent to last body byte)."""
    evidence = {"target": response.target, "url": response.url, "status": response.status,
                "latency_s": round(response.latency.total_seconds(), 6),
                "content_type": response.content_type}
    problems = []
    if response.status != status:
        problems.append(f"HTTP {response.status}, expected {status}")
    if response.latency > limit:
        problems.append(f"took {format_duration(response.latency)}, limit {format_duration(limit)}")
    measured = {"status": response.status, "latency_s": round(response.latency.total_seconds(), 6)}
    expected = {"status": status, "latency_s": f"<= {limit.total_seconds():g}"}
    if problems:
        return Verdict.failed(
            "http.status", f"`{response.target}` {response.url}: " + "; ".join(problems),
            measured=measured, expected=expected, evidence=evidence,
        )
    return Verdict.passed(
        "http.status",
        f"`{response.target}` {response.url} answered HTTP {response.status} in "
        f"{format_duration(response.latency)} (limit {format_duration(limit)})",
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
    try:
        value = _value_at(response, path)
    except DrillbookError as exc:
        return verdict_from_error(check_id, exc)
    shown = as_text(value)
    evidence = {"target": response.target, "url": response.url, "path": path, "value": value,
                "status": response.status}
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
            evidence={"target": response.target, "url": response.url, "path": path, "value": collection},
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
    evidence = {"target": response.target, "url": response.url, "path": path, "field": field_name,
                "values": values}
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
