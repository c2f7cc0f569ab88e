"""The service targets of ``[targets.<name>]``: ``http``, ``prometheus`` and ``tls`` (drills/config.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checks import redact
from checks.errors import ConfigError
from checks.http_health import FollowRedirects

from .config_values import as_table, required, resolve
from .targets import HttpTarget, PrometheusTarget, TlsTarget

# RFC 9110 field-name token; a value may not break the header block.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")


def http_target(name: str, spec: Mapping[str, Any], values: Mapping[str, str], config_path: Path | None,
                where: str, key: str, environ: Mapping[str, str]) -> HttpTarget:
    """An HTTP(S) health endpoint: its URL, CA file, headers (secrets) and redirect policy."""
    url = _http_url(required(values, "url", where, key), where, f"{key}.url")
    return HttpTarget(
        name=name, url=url, ca_file=_file(values.get("ca_file"), config_path, where, f"{key}.ca_file"),
        headers=_headers(spec.get("headers", {}), where, f"{key}.headers", environ),
        follow_redirects=_follow_redirects(values.get("follow_redirects"), where, f"{key}.follow_redirects"),
    )


def prometheus_target(name: str, values: Mapping[str, str], config_path: Path | None, where: str,
                      key: str) -> PrometheusTarget:
    """A Prometheus server: its URL and CA file."""
    url = _http_url(required(values, "url", where, key), where, f"{key}.url")
    return PrometheusTarget(
        name=name, url=url, ca_file=_file(values.get("ca_file"), config_path, where, f"{key}.ca_file"),
    )


def _http_url(url: str, where: str, key: str) -> str:
    """An http(s) URL with a host; a password in it is registered as a secret, never shown."""
    from urllib.parse import urlsplit

    redact.register_dsn(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: `{key}` is not a valid URL", file=where, key=key) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: `{key}` must be an http:// or https:// URL with a host, "
            f"got {redact.redact(url)!r}", file=where, key=key,
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: `{key}` must not carry a query or fragment: steps name the path",
                          file=where, key=key)
    return url


def _file(value: str | None, config_path: Path | None, where: str, key: str) -> Path | None:
    """A file named relative to the config file; it must exist now, not an hour into the run."""
    if value is None:
        return None
    if not value:
        raise ConfigError(f"{where}: `{key}` is empty", file=where, key=key)
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = (config_path.parent if config_path else Path.cwd()) / candidate
    if not candidate.is_file():
        raise ConfigError(f"{where}: `{key}`: no such file {candidate}", file=where, key=key,
                          hint="paths are relative to the config file")
    return candidate


def _follow_redirects(value: str | None, where: str, key: str) -> FollowRedirects:
    """``never`` (the default: a 3xx is the answer) or ``same-origin``; anything else names the key."""
    if value is None:
        return FollowRedirects.NEVER
    try:
        return FollowRedirects(value)
    except ValueError:
        allowed = ", ".join(f'"{mode.value}"' for mode in FollowRedirects)
        raise ConfigError(
            f"{where}: `{key}` must be one of {allowed}, got {value!r}", file=where, key=key,
            hint='"never" (the default) reports a redirect as the answer; "same-origin" follows it '
            "only to the target's own scheme, host and port: other hosts never receive its headers",
        ) from None


def _headers(value: Any, where: str, key: str, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``{ Name = "value" }``; values may reference ``${ENV}``; every value is registered as a secret."""
    table = as_table(value, where, key)
    headers = []
    for name, raw in table.items():
        if not _HEADER_NAME.match(name):
            raise ConfigError(f"{where}: `{key}`: {name!r} is not a valid header name", file=where,
                              key=f"{key}.{name}")
        # Header values (tokens) are secrets when they come from the environment.
        resolved = resolve(raw, where, f"{key}.{name}", environ, secret=True)
        if "\r" in resolved or "\n" in resolved or "\0" in resolved:
            raise ConfigError(f"{where}: `{key}.{name}` contains a line break", file=where,
                              key=f"{key}.{name}")
        # Literal values too: a token written into the file is as secret as one from ${ENV}.
        redact.register_header(name, resolved)
        headers.append((name, resolved))
    return tuple(headers)


def _is_host(value: str) -> bool:
    """A DNS name, or an IPv4/IPv6 address (brackets allowed): no scheme, port or path."""
    import ipaddress

    if _HOST_NAME.match(value):
        return True
    try:
        ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def tls_target(name: str, spec: Mapping[str, Any], values: Mapping[str, str], config_path: Path | None,
                where: str, key: str) -> TlsTarget:
    """A certificate to check: a live ``host`` (and port, SNI name) or a ``pem_file``."""
    host = values.get("host")
    pem = values.get("pem_file")
    if (host is None) == (pem is None):
        raise ConfigError(f"{where}: `{key}` needs exactly one of `host` (a live endpoint) or `pem_file`",
                          file=where, key=key)
    if host is not None and not _is_host(host):
        raise ConfigError(f"{where}: `{key}.host` must be a bare host name or address (no scheme, port "
                          f"or path), got {host!r}", file=where, key=f"{key}.host")
    port = spec.get("port", 443)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}: `{key}.port` must be a number from 1 to 65535, got {port!r}",
                          file=where, key=f"{key}.port")
    if "port" in spec and host is None:
        raise ConfigError(f"{where}: `{key}.port` applies only with `host`", file=where, key=f"{key}.port")
    server_name = values.get("server_name")
    if server_name is not None and not _is_host(server_name):
        raise ConfigError(f"{where}: `{key}.server_name` must be a host name, got {server_name!r}",
                          file=where, key=f"{key}.server_name")
    if host is not None:
        host = host.removeprefix("[").removesuffix("]")  # [::1]: sockets take the bare address
    return TlsTarget(
        name=name, host=host, port=port, server_name=server_name,
        pem_file=_file(pem, config_path, where, f"{key}.pem_file"),
        ca_file=_file(values.get("ca_file"), config_path, where, f"{key}.ca_file"),
    )
