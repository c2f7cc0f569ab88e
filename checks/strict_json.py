"""Reading untrusted JSON with duplicate keys refused (issue 11).

``json.loads`` keeps the last of two equal keys; other parsers keep the first, or fail. A document
whose meaning depends on the parser (an SBOM listing ``"version"`` twice, a bundle with two
``"verificationMaterial"``, a results file with two ``"passed"``) is refused here, naming the key,
before anything acts on either value. Every JSON input drillbook does not write itself in this run
(SBOMs, sigstore bundles and trusted roots, results and ledgers read back) goes through
:func:`loads_strict`.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice. A ``ValueError``, like ``json.JSONDecodeError``, so
    a caller that already refuses malformed JSON refuses this too; ``key`` is the repeated key."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"duplicate key {key!r} in a JSON object (which value counts would depend "
                         "on the parser)")


def loads_strict(data: str | bytes | bytearray) -> Any:
    """``json.loads``, except that an object with a repeated key raises :class:`DuplicateKeyError`."""
    return json.loads(data, object_pairs_hook=_unique_object)


def reject_duplicate_keys(data: str | bytes | bytearray) -> None:
    """Raise :class:`DuplicateKeyError` when ``data`` repeats a key; otherwise do nothing.

    For inputs another library parses (sigstore's bundles and trusted roots): malformed JSON is
    left to that library, whose own error class callers already tell apart.
    """
    try:
        loads_strict(data)
    except DuplicateKeyError:
        raise
    except (ValueError, RecursionError):
        return


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKeyError(key)
        obj[key] = value
    return obj
