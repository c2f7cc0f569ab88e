"""The documentation pages as data: their runnable command blocks, headings and relative links.

The docs-test contract (docs/development.md, "Docs that run"): a fenced block whose info string
is ``sh runnable`` (optionally ``exit=N``) holds ``drillbook …`` commands that
tests/integration/test_docs_commands.py runs, page by page, against a sandbox. Commands are split
here like a POSIX shell line — but never run through a shell, so every piece of shell syntax the
harness would not honour (pipes, redirections, command substitution, globs, ``~``) is refused
instead of silently meaning something else. ``$VAR`` / ``${VAR}`` are expanded from the given
environment only; an unknown name is an error, so a page never shows a command its reader cannot
run. Single quotes keep ``${VAR}`` literal, as a shell does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

RUNNABLE = "runnable"
# The variables a runnable command may use: what tests/integration/test_docs_commands.py provides
# (docs/development.md, "Docs that run"). Anything else a page names fails the docs test.
PROVIDED_VARIABLES = ("PROD_PG_DSN", "SANDBOX_BACKUPS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                      "AWS_SECRET_ACCESS_KEY", "SANDBOX_BUCKET", "CHECKOUT", "PATH", "HOME")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# Characters a shell gives a meaning the harness does not reproduce (no shell runs the command).
_SHELL_SYNTAX = {"|": "a pipe", "&": "a background job or &&", ";": "a command separator",
                 "<": "a redirection", ">": "a redirection", "(": "a subshell", ")": "a subshell",
                 "`": "command substitution"}
_GLOB = set("*?[")


class DocsCommandError(ValueError):
    """A runnable block or command the harness cannot run as written; ``line`` is 1-based."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Command:
    """One ``drillbook …`` command as written on the page (continuations joined)."""

    line: int
    source: str

    def argv(self, env: Mapping[str, str]) -> list[str]:
        """The arguments after ``drillbook``, quotes removed and variables expanded from ``env``."""
        try:
            words = split_words(self.source, env)
        except DocsCommandError as exc:
            raise DocsCommandError(str(exc), line=self.line) from None
        if not words or words[0] != "drillbook":
            raise DocsCommandError(f"a runnable command starts with `drillbook `, got: {self.source}",
                                   line=self.line)
        return words[1:]


@dataclass(frozen=True)
class Block:
    """A fenced ``sh runnable`` block: where it starts, the exit code it expects, its commands."""

    line: int
    expected_exit: int
    commands: tuple[Command, ...]


def pages() -> list[Path]:
    """The pages under the contract, in the order the docs test runs them: README, then docs/."""
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def page_name(page: Path) -> str:
    """A page as the failure messages name it: relative to the repository."""
    return page.relative_to(REPO).as_posix()


def _lines(text: str) -> list[str]:
    """A page's lines as Markdown sees them: split at newlines only (not at \\f, \\x1e, \\u2028…)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _fences(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line of the opening fence, info string, body lines) of each fenced block, in order."""
    lines = _lines(text)
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence)
                    and not closing["info"].strip()):
                break
            # Content of an indented fence (inside a list item) loses that indentation.
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        yield i + 1, match["info"].strip(), body
        i = j + 1


def _expected_exit(info: str, line: int) -> int | None:
    """None for a block that is not runnable; else the exit code it states (default 0)."""
    words = info.split()
    if len(words) < 2 or words[0] != "sh" or words[1] != RUNNABLE:
        return None
    expected = 0
    for word in words[2:]:
        match = re.fullmatch(r"exit=(\d{1,3})", word)
        if not match or int(match[1]) > 255:
            raise DocsCommandError(f"unknown attribute {word!r} of a runnable block (only exit=N, "
                                   "N from 0 to 255)", line=line)
        expected = int(match[1])
    return expected


def runnable_blocks(text: str) -> list[Block]:
    """The page's ``sh runnable`` blocks in page order; a malformed one raises, naming its line."""
    blocks = []
    for start, info, body in _fences(text):
        expected = _expected_exit(info, start)
        if expected is None:
            continue
        commands = tuple(_commands(body, first_line=start + 1))
        if not commands:
            raise DocsCommandError("a runnable block without a command", line=start)
        blocks.append(Block(line=start, expected_exit=expected, commands=commands))
    return blocks


def has_runnable(text: str) -> bool:
    """Whether the page marks any block runnable (cheap, for collecting one test per page)."""
    return any(info.split()[:2] == ["sh", RUNNABLE] for _, info, _ in _fences(text))


def _commands(body: list[str], *, first_line: int) -> Iterator[Command]:
    """Logical commands of a block: ``\\``-continued lines joined, blanks and ``#`` lines skipped."""
    pending: list[str] = []
    start = first_line
    for offset, raw in enumerate(body):
        line_no = first_line + offset
        if not pending:
            start = line_no
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
        continued = _continues(raw)
        pending.append(raw[:-1] if continued else raw)
        if continued:
            continue
        # As in a shell, backslash-newline vanishes: the next line's indentation separates words.
        source = "".join(pending).strip()
        pending = []
        if source != "drillbook" and not source.startswith("drillbook "):
            raise DocsCommandError(f"a runnable command starts with `drillbook `, got: {source}",
                                   line=start)
        yield Command(line=start, source=source)
    if pending:
        raise DocsCommandError("the block ends inside a continued line (a trailing `\\`)", line=start)


def _continues(line: str) -> bool:
    """A line ending in an odd number of backslashes continues on the next one, unless a comment
    holds them (in a shell, a comment runs to the end of the line, backslashes and all)."""
    if _has_comment(line):
        return False
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _has_comment(line: str) -> bool:
    """Whether an unquoted ``#`` starts a word of the line."""
    quote: str | None = None
    i, previous = 0, " "
    while i < len(line):
        char = line[i]
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\":
            i += 1  # the escaped character is part of a word (in "..." too)
            char = "x"
        elif quote == '"':
            quote = None if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and previous in " \t":
            return True
        previous = char
        i += 1
    return False


def split_words(line: str, env: Mapping[str, str]) -> list[str]:
    """Split one command line like a POSIX shell would, expanding ``$VAR`` from ``env`` only.

    An expanded value stays one word (a shell would split an unquoted one: the docs quote them).
    """
    words: list[str] = []
    current: list[str] = []
    in_word = False
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char in " \t":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
        elif char == "#" and not in_word:
            break  # a comment runs to the end of the line
        elif char == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise DocsCommandError(f"an unterminated single quote in: {line}")
            current.append(line[i + 1:end])
            in_word, i = True, end + 1
        elif char == '"':
            text, i = _double_quoted(line, i + 1, env)
            current.append(text)
            in_word = True
        elif char == "\\":
            if i + 1 >= n:
                raise DocsCommandError(f"a backslash ends the command: {line}")
            current.append(line[i + 1])
            in_word, i = True, i + 2
        elif char == "$":
            value, i = _dollar(line, i, env)
            current.append(value)
            in_word = True
        elif char in _SHELL_SYNTAX:
            raise DocsCommandError(f"{_SHELL_SYNTAX[char]} ({char!r}) in: {line} — the docs test runs "
                                   "commands without a shell; quote the character if it is an argument")
        elif char in _GLOB:
            raise DocsCommandError(f"an unquoted {char!r} (a shell would expand it as a glob) in: {line}")
        elif char == "~" and not in_word:
            raise DocsCommandError(f"an unquoted `~` (a shell would expand it) in: {line}; write $HOME")
        else:
            current.append(char)
            in_word, i = True, i + 1
    if in_word:
        words.append("".join(current))
    return words


def _double_quoted(line: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """The text of a double-quoted string starting after its quote, and the index after it."""
    out: list[str] = []
    while i < len(line):
        char = line[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(line) and line[i + 1] in '$`"\\':
            out.append(line[i + 1])
            i += 2
        elif char == "$":
            value, i = _dollar(line, i, env)
            out.append(value)
        elif char == "`":
            raise DocsCommandError(f"command substitution (`) in: {line}")
        else:
            out.append(char)
            i += 1
    raise DocsCommandError(f"an unterminated double quote in: {line}")


def _dollar(line: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the ``$…`` at ``line[i]``; returns the value and the index after it."""
    rest = line[i + 1:]
    if rest.startswith("{"):
        end = rest.find("}")
        if end < 0:
            raise DocsCommandError(f"an unterminated ${{ in: {line}")
        name = rest[1:end]
        if not _NAME.fullmatch(name):
            raise DocsCommandError(f"${{{name}}} is not a plain variable (no shell expansions): {line}")
        return _lookup(name, env), i + 2 + end
    match = _NAME.match(rest)
    if match:
        return _lookup(match[0], env), i + 1 + match.end()
    if rest.startswith("("):
        raise DocsCommandError(f"command substitution ($(…)) in: {line}")
    if rest[:1] and (rest[0].isdigit() or rest[0] in "?$#@*!-"):
        raise DocsCommandError(f"the shell parameter ${rest[0]} in: {line}")
    return "$", i + 1  # a lone `$` is literal, as in a shell


def _lookup(name: str, env: Mapping[str, str]) -> str:
    if name not in env:
        raise DocsCommandError(f"unknown variable ${name}: the docs test provides {', '.join(sorted(env))} "
                               "(single-quote a placeholder that must stay literal)")
    return env[name]


# --- headings and links ----------------------------------------------------------------------

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")


def _outside_fences(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line that is not part of a fenced code block (as :func:`_fences`
    reads them: the opening fence, the body, and the closing fence when there is one)."""
    fenced: set[int] = set()
    for start, _, body in _fences(text):
        fenced.update(range(start, start + len(body) + 2))
    for number, line in enumerate(_lines(text), 1):
        if number not in fenced:
            yield number, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, `-`."""
    text = _CODE_SPAN.sub(lambda m: m[2], heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return slug.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page, duplicates numbered ``-1``, ``-2`` as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _outside_fences(text):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match[2])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link outside code: inline, image and reference definitions."""
    found = []
    for number, line in _outside_fences(text):
        prose = _CODE_SPAN.sub("", line)
        found += [(number, m[1]) for m in _INLINE_LINK.finditer(prose)]
        definition = _REFERENCE_DEF.match(prose)
        if definition:
            found.append((number, definition[1]))
    return found


def is_relative(target: str) -> bool:
    """A link into this repository (not a URL with a scheme, not mail)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) is None


def broken_link(page: Path, target: str) -> str | None:
    """Why a relative link of ``page`` does not resolve (no such file, no such anchor), or None."""
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.exists():
        return f"{target}: no such file {resolved}"
    if (anchor and resolved.suffix == ".md"
            and anchor not in anchors(resolved.read_text(encoding="utf-8"))):
        return f"{target}: no heading of {resolved.name} has the anchor #{anchor}"
    return None


# --- commands a page shows ---------------------------------------------------------------------

# Blocks a reader types from: a shell language, or none. `text` blocks hold output; so do the
# lines of a `console` block without a `$ ` prompt.
_SHELL_INFOS = {"", "sh", "bash", "shell", "zsh", "console"}
# `drillbook SUBCOMMAND …`, optionally after a `$ ` prompt; `drillbook: …` (output) is no command.
_SHOWN_COMMAND = re.compile(r"^\s*(?P<prompt>\$\s+)?drillbook\s+[a-z][a-z-]*(?:\s|$)")


def shown_commands(text: str) -> list[int]:
    """Lines of the page that show a ``drillbook …`` command line in a shell (or untyped) block."""
    found = []
    for start, info, body in _fences(text):
        language = (info.split() or [""])[0]
        if language not in _SHELL_INFOS:
            continue
        for offset, line in enumerate(body):
            match = _SHOWN_COMMAND.match(line)
            if match and (language != "console" or match["prompt"]):
                found.append(start + 1 + offset)
    return found
