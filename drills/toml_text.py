"""TOML text that drillbook writes (``drillbook init``'s config, the fleet sandbox's): strings and keys.

Read back by :mod:`tomllib` (drills/config.py). Not ``json.dumps``: JSON leaves DEL (0x7F)
unescaped, and TOML forbids it raw in a string.
"""

from __future__ import annotations

import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character (DEL too) escaped."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_key(name: str) -> str:
    """A bare key when TOML allows one; ``prod.db`` must be quoted or it would nest tables."""
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)
