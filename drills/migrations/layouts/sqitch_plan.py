"""sqitch's plan format, read as sqitch 1.3 reads it (``App::Sqitch::Plan::_parse``), and change IDs.

Used by :mod:`drills.migrations.layouts.sqitch`; see its docstring for the format. Every
pattern mirrors one of ``Plan.pm``'s (names, pragmas, entries, dependencies), so a plan
sqitch accepts is accepted and one it refuses is refused naming the same line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..model import LayoutError

_HINT = "fix the plan line named above; `sqitch plan` shows how sqitch reads it"

# [[:blank:]] on decoded text: horizontal white space.
_B = "[ \\t\\u00a0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000]"
# Like [:punct:] without "_" (Plan.pm's $punct).
_PUNCT = "\\-!\"#$%&'()*+,./:;<=>?@\\[\\\\\\]^`{|}~"
_NAME = (f"(?![{_PUNCT}])(?:(?![~/=%^][0-9]+(?:$|{_B}))[^{_B[1:-1]}:@#\\\\])+"
         f"(?<![{_PUNCT}])\\b")
_NAME_RE = re.compile(f"^{_NAME}$")
_TS = "(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)"
_TS_RE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_PLANNER = f"(?P<planner_name>[^<]+){_B}+<(?P<planner_email>[^>]+)>"
_BLANK_LINE = re.compile(f"^{_B}*(?:#{_B}*(?P<note>.+)|$)")
_INLINE_NOTE = re.compile(f"{_B}*(?:#{_B}*(?P<note>.*))?$")
_PRAGMA = re.compile(
    f"^{_B}*%{_B}*(?P<name>[^{_PUNCT}](?:[^{_B[1:-1]}=]*?[^{_PUNCT}{_B[1:-1]}])?)"
    f"(?:{_B}*=(?:{_B}*)(?P<value>.+))?$")
_ENTRY = re.compile(
    f"^{_B}*(?:@|{_B}*(?P<operator>[+-]){_B}*)?(?P<name>{_NAME})(?:{_B}+)?"
    f"(?:\\[(?P<dependencies>[^\\]]+)\\]{_B}*)?(?:{_TS}{_B}*)?(?:{_PLANNER})?$")
_DEPEND = re.compile(
    f"^(?P<conflicts>!?)(?:(?P<project>{_NAME}):)?(?:(?P<id>[0-9a-f]{{40}})"
    f"|(?P<change>{_NAME})(?:@(?P<tag>{_NAME}))?|@(?P<only_tag>{_NAME}))$")
_UNESCAPE = {"\\": "\\", "n": "\n", "r": "\r"}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class Dependency:
    """One ``[ … ]`` entry: ``[!][project:]change[@tag]``, ``[project:]@tag`` or an ID."""

    text: str
    conflicts: bool
    project: str | None
    change: str | None
    tag: str | None
    id: str | None

    @property
    def key(self) -> str:
        """Plan key as sqitch forms it: ``change``, ``change@tag``, ``@tag`` or the ID."""
        key = (self.change or "") + (f"@{self.tag}" if self.tag else "")
        return key or (self.id or "")

    def shown(self, project: str) -> str:
        """``Depend::as_string``: the key, prefixed by the project when it is another one."""
        if self.project is None or self.project == project:
            return self.key
        return f"{self.project}:{self.key}"


@dataclass
class Change:
    """One change line of the plan."""

    name: str
    line: int
    timestamp: str
    planner: str
    note: str
    requires: tuple[Dependency, ...]
    conflicts: tuple[Dependency, ...]
    tags: list[str] = field(default_factory=list)
    rework_tags: list[str] = field(default_factory=list)
    id: str = ""


@dataclass(frozen=True)
class Plan:
    """A parsed plan: its pragmas and changes in plan order."""

    path: Path
    project: str
    uri: str | None
    changes: tuple[Change, ...]

    def external_requirements(self) -> list[tuple[Change, Dependency]]:
        """Requirements naming another project (satisfied only by a folder loaded earlier)."""
        return [(c, d) for c in self.changes for d in c.requires
                if d.project is not None and d.project != self.project]


def plan_error(plan: Path, line: int, message: str) -> LayoutError:
    return LayoutError(f"{plan}:{line}: {message}", file=str(plan), line=line, hint=_HINT)


def _perl_true(text: str) -> bool:
    return text not in ("", "0")


def _note(raw: str | None) -> str:
    """A note as ``Plan::Line::BUILDARGS`` keeps it: trimmed, ``\\n``/``\\r``/``\\\\`` unescaped."""
    if raw is None or not _perl_true(raw):
        return raw or ""
    note = raw.strip()
    return re.sub(r"\\([\\nr])", lambda m: _UNESCAPE[m.group(1)], note)


def parse_plan(text: str, path: Path) -> Plan:
    """Parse plan text as sqitch 1.3 does; a LayoutError names the file and line."""
    lines = re.split(r"\r?\n", text.removeprefix("\ufeff"))
    if lines and lines[-1] == "":
        lines.pop()
    pragmas: dict[str, str] = {}
    number = 0
    for number, line in enumerate(lines, 1):
        blank = _BLANK_LINE.match(line)
        if blank:
            if blank["note"] is None:
                break
            continue
        bare = _INLINE_NOTE.sub("", line, count=1)
        pragma = _PRAGMA.match(bare)
        if not pragma:
            raise plan_error(path, number, "invalid pragma; a blank line must come between pragmas "
                                       "and changes")
        if pragma["name"] == "project":
            project = pragma["value"] or ""
            if not _NAME_RE.match(project):
                raise plan_error(path, number, f"invalid project name {project!r}")
        pragmas[pragma["name"]] = pragma["value"] or "1"
    else:
        number = len(lines)
    if "project" not in pragmas:
        raise LayoutError(f"{path}: missing %project pragma", file=str(path),
                          hint="start the plan with `%project=name` (sqitch init writes it)")
    return _parse_entries(lines, number, path, pragmas["project"], pragmas.get("uri"))


def _parse_entries(lines: Sequence[str], header_end: int, path: Path, project: str,
                   uri: str | None) -> Plan:
    done: list[Change] = []            # changes up to the last tag (checked)
    section: list[Change] = []         # changes since the last tag
    seen: dict[str, int] = {}          # earlier sections' changes and "@tag" → line
    in_section: dict[str, int] = {}
    named: dict[str, Change] = {}
    previous: Change | None = None
    for number in range(header_end + 1, len(lines) + 1):
        line = lines[number - 1]
        if _BLANK_LINE.match(line):
            continue
        note_match = _INLINE_NOTE.search(line)
        assert note_match is not None  # the pattern matches at the end of any line
        bare = line[:note_match.start()]
        note = _note(note_match["note"])
        is_tag = re.match(f"^{_B}*@", bare) is not None
        entry = _ENTRY.match(bare)
        if not entry or (entry["ts"] is None and _TS_RE.search(bare)):
            raise plan_error(path, number, "invalid name; names must not begin with punctuation, "
                         'contain "@", ":", "#", "\\" or blanks, or end in punctuation')
        if entry["ts"] is None and entry["planner_name"] is None:
            raise plan_error(path, number, "missing timestamp and planner name and email")
        if entry["ts"] is None:
            raise plan_error(path, number, "missing timestamp")
        if entry["planner_name"] is None:
            raise plan_error(path, number, "missing planner name and email")
        name = entry["name"]
        if name in ("ROOT", "HEAD"):
            raise plan_error(path, number, f'"{"@" if is_tag else ""}{name}" is a reserved name')
        if re.match("^[0-9a-f]{40}", name):
            raise plan_error(path, number, f'"{name}" could be confused with a SHA1 ID')
        try:
            datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise plan_error(path, number, f"invalid timestamp {entry['ts']}") from None
        planner = f"{entry['planner_name']} <{entry['planner_email']}>"
        if is_tag:
            if "/" in name:
                raise plan_error(path, number, f'tag "{name}" contains illegal character /')
            if previous is None:
                raise plan_error(path, number, f'tag "{name}" declared without a preceding change')
            if f"@{name}" in seen:
                raise plan_error(path, number, f'tag "{name}" duplicates earlier declaration on line '
                                           f"{seen['@' + name]}")
            if entry["dependencies"]:
                raise plan_error(path, number, "tags may not specify dependencies")
            _check_section(path, project, seen, section)
            done.extend(section)
            section = []
            previous.tags.append(name)
            seen.update(in_section)
            seen[f"@{name}"] = number
            in_section = {}
            continue
        if entry["operator"] == "-":
            raise plan_error(path, number, f'"-{name}" (revert in the plan) is not supported; '
                                       "drillbook replays a plan forwards only")
        if name in in_section:
            raise plan_error(path, number, f'change "{name}" duplicates earlier declaration on line '
                                       f"{in_section[name]}")
        requires, conflicts = _dependencies(entry["dependencies"], path, number)
        change = Change(name, number, entry["ts"], planner, note, requires, conflicts)
        change.id = change_id(change, project=project, uri=uri,
                              parent=previous.id if previous else None)
        in_section[name] = number
        section.append(change)
        previous = change
        duped = named.get(name)
        if duped is not None:
            # Rework tags: tags of the changes after the older instance, newest first, then its own.
            index = len(done) - 1
            while index >= 0 and done[index] is not duped:
                duped.rework_tags.extend(done[index].tags)
                index -= 1
            duped.rework_tags.extend(duped.tags)
        named[name] = change
    _check_section(path, project, seen, section)
    done.extend(section)
    return Plan(path, project, uri, tuple(done))


def _dependencies(spec: str | None, path: Path, line: int
                  ) -> tuple[tuple[Dependency, ...], tuple[Dependency, ...]]:
    requires: list[Dependency] = []
    conflicts: list[Dependency] = []
    seen: set[str] = set()
    for text in re.split(f"{_B}+", spec.strip()) if spec and spec.strip() else []:
        match = _DEPEND.match(text)
        if not match:
            raise plan_error(path, line, f'"{text}" is not a valid dependency specification')
        if text in seen:
            raise plan_error(path, line, f'duplicate dependency "{text}"')
        seen.add(text)
        dep = Dependency(text, bool(match["conflicts"]), match["project"], match["change"],
                         match["tag"] or match["only_tag"], match["id"])
        (conflicts if dep.conflicts else requires).append(dep)
    return tuple(requires), tuple(conflicts)


def _check_section(path: Path, project: str, seen: dict[str, int], section: list[Change]) -> None:
    """``Plan::check_changes``: every requirement of this project is planned before it."""
    position: dict[str, int] = {}
    for index, change in enumerate(section, 1):
        for dep in change.requires:
            if dep.project is not None and dep.project != project:
                continue                    # another project: see unmet_requirements
            if dep.project is None and dep.id is not None:
                continue                    # an ID may name a change of any project
            key = dep.key
            if re.search(".@", key):
                name, tag = key.split("@", 1)
                if f"@{tag}" in seen and name in seen and seen[name] < seen[f"@{tag}"]:
                    continue
            elif key in seen or key in position:
                continue
            if key == change.name:
                problem = f'change "{change.name}" cannot require itself'
            elif key in (c.name for c in section[index:]):
                problem = f'change "{change.name}" is planned before the change it requires, "{key}"'
            else:
                problem = f'change "{change.name}" requires "{key}", which is not planned before it'
            raise plan_error(path, change.line, problem)
        position[change.name] = index


def change_id(change: Change, *, project: str, uri: str | None, parent: str | None) -> str:
    """The change ID sqitch records (``Plan/Change.pm`` ``info`` and ``id``)."""
    lines = [f"project {project}"]
    if uri:
        lines.append(f"uri {canonical_uri(uri)}")
    lines.append(f"change {change.name}")
    if parent:
        lines.append(f"parent {parent}")
    lines += [f"planner {change.planner}", f"date {change.timestamp}"]
    if change.requires:
        lines.append("requires\n  + " + "\n  + ".join(d.shown(project) for d in change.requires))
    if change.conflicts:
        lines.append("conflicts\n  - " + "\n  - ".join(d.shown(project) for d in change.conflicts))
    if _perl_true(change.note):
        lines += ["", change.note]
    content = "\n".join(lines).encode("utf-8")
    return hashlib.sha1(b"change %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def canonical_uri(uri: str) -> str:
    """Perl URI's ``canonical`` for the common cases: scheme and host lower case, the default
    port dropped, an empty http(s) path made ``/``, %-escapes upper case, unreserved ones decoded."""
    def escape(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        return char if re.match(r"[A-Za-z0-9\-._~]", char) else f"%{m.group(1).upper()}"

    uri = re.sub("%([0-9A-Fa-f]{2})", escape, uri)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):(//([^/?#]*))?(.*)$", uri, re.DOTALL)
    if not match:
        return uri
    scheme, authority, rest = match[1].lower(), match[3], match[4]
    if authority is None:
        return f"{scheme}:{rest}"
    userinfo, _, hostport = authority.rpartition("@")
    host, colon, port = hostport.rpartition(":") if re.search(r":\d*$", hostport) else (hostport, "", "")
    if colon and (port == "" or _DEFAULT_PORTS.get(scheme) == int(port)):
        colon = port = ""
    if scheme in ("http", "https") and rest[:1] in ("", "?", "#"):
        rest = "/" + rest
    return f"{scheme}://{userinfo + '@' if userinfo else ''}{host.lower()}{colon}{port}{rest}"
