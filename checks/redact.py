"""Scrub resolved secrets from anything that leaves a run.

Every secret resolved from ``${ENV}`` (and every password found in a DSN) is
registered here; writers of logs, JUnit, HTML and evidence pass text through
:func:`redact`.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words and digits

_lock = threading.Lock()
_secrets: set[str] = set()


def register(secret: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it everywhere."""
    if not secret or len(secret) < _MIN_SECRET_LEN:
        return
    with _lock:
        _secrets.add(secret)
        # URL-quoted forms appear in DSNs and URLs.
        _secrets.add(unquote(secret))


def register_dsn(dsn: str) -> None:
    """Register the password inside a URL-style or key=value DSN."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password:
            register(parts.password)
            register(unquote(parts.password))
        return
    match = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if match:
        register(match.group(1).strip("'"))


def registered() -> frozenset[str]:
    with _lock:
        return frozenset(_secrets)


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` with ``***``."""
    secrets = registered()
    if not secrets:
        return text
    # Longest first so a secret containing another is masked whole.
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value


def clear() -> None:
    """Forget every secret (tests and a new run in the same process)."""
    with _lock:
        _secrets.clear()
