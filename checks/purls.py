"""Package URLs parsed once per run: completeness and vulnerability matching both parse every
component's purl, and packageurl's parser costs ~0.1 ms a purl (10 s over 100,000 components)."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["parse_purl"]

# Big enough for a container image's full inventory, so the second check finds every purl the
# first one parsed; bounded so a hostile document cannot grow memory without limit (~0.5 KB each).
_CACHE_SIZE = 262_144


@functools.lru_cache(maxsize=_CACHE_SIZE)
def parse_purl(purl: str) -> Any:
    """``packageurl.PackageURL.from_string(purl)``, cached (the result is an immutable namedtuple;
    do not mutate its ``qualifiers``). Raises ``ValueError`` as packageurl does (not cached)."""
    from packageurl import PackageURL

    return PackageURL.from_string(purl)
