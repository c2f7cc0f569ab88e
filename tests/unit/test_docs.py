"""The documentation as a checked artefact: size, links, coverage, and the runnable-block parser.

The runnable blocks themselves run in tests/integration/test_docs_commands.py; here, in
milliseconds: the README stays a landing page, every relative link lands on a file (and heading),
every docs page is reachable from the README, and the parser splits commands as a shell would.
"""

from __future__ import annotations

import shlex
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.docs_pages import (
    DOCS,
    PROVIDED_VARIABLES,
    REPO,
    DocsCommandError,
    anchors,
    broken_link,
    github_slug,
    has_runnable,
    is_relative,
    links,
    page_name,
    pages,
    runnable_blocks,
    shown_commands,
    split_words,
)

README = REPO / "README.md"
README_MAX_BYTES = 12_000
# Each runnable `drillbook run` or `gate pre-upgrade` starts its own sandbox (~12-20 s) and every
# command pays ~2.5 s of start-up: these caps keep the docs test under ~4 minutes of CI time.
# (6: physical-backups.md runs the sandbox's point-in-time drill, its only command.)
MAX_RUNNABLE_RUNS = 6
MAX_RUNNABLE_COMMANDS = 28
# Pages that show `drillbook …` command lines but mark none runnable, and why (issue 15: every
# page has the commands it documents exercised by a test).
EXEMPT = {
    "docs/ci-gate.md": "a CI workflow; its sandbox gate runs all 13 @pre-upgrade scenarios (~20 s "
                       "a command): tests/integration/test_upgrades.py runs `gate pre-upgrade`",
    "docs/fleet.md": "tests/integration/test_fleet_sandbox_run.py runs its sandbox command; the rest "
                     "needs a fleet's S3 run group, a CI matrix or Kubernetes",
}
# What the docs test provides (tests/integration/test_docs_commands.py); values do not matter here.
PROVIDED = {name: f"<{name}>" for name in PROVIDED_VARIABLES}


def _fenced(body: str, info: str = "sh runnable") -> str:
    return f"# Page\n\n```{info}\n{body}\n```\n"


class TestPages:
    def test_the_readme_is_a_landing_page(self) -> None:
        """README.md stays at most 12 000 bytes: the reference lives in docs/."""
        size = len(README.read_bytes())
        assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move reference text to docs/"

    @pytest.mark.parametrize("page", pages(), ids=page_name)
    def test_every_relative_link_resolves(self, page: Path) -> None:
        """Each relative link names an existing file, and its #anchor a heading of that page."""
        broken = [f"{page_name(page)}:{line}: {why}"
                  for line, target in links(page.read_text(encoding="utf-8")) if is_relative(target)
                  for why in [broken_link(page, target)] if why]
        assert broken == []

    def test_every_docs_page_is_linked_from_the_readme(self) -> None:
        """No page of docs/ is an orphan: the README's table links each one."""
        linked = {(README.parent / target.partition("#")[0]).resolve()
                  for _, target in links(README.read_text(encoding="utf-8")) if is_relative(target)}
        orphans = [page_name(page) for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
        assert orphans == []

    @pytest.mark.parametrize("page", [p for p in pages() if has_runnable(p.read_text(encoding="utf-8"))],
                             ids=page_name)
    def test_runnable_blocks_parse_with_the_provided_variables(self, page: Path) -> None:
        """Every runnable command splits, using only the variables the docs test provides."""
        for block in runnable_blocks(page.read_text(encoding="utf-8")):
            for command in block.commands:
                assert command.argv(PROVIDED), f"{page_name(page)}:{command.line}: no arguments"

    def test_the_runnable_commands_fit_the_time_budget(self) -> None:
        """Few enough runnable commands (and `drillbook run`s) that the docs test stays short."""
        commands = [(page_name(page), command.line, command.argv(PROVIDED))
                    for page in pages()
                    for block in runnable_blocks(page.read_text(encoding="utf-8"))
                    for command in block.commands]
        runs = [f"{page}:{line}" for page, line, argv in commands
                if argv[:1] == ["run"] or argv[:2] == ["gate", "pre-upgrade"]]
        assert len(runs) <= MAX_RUNNABLE_RUNS, f"runnable `drillbook run`s: {runs}"
        assert len(commands) <= MAX_RUNNABLE_COMMANDS, f"{len(commands)} runnable commands"

    @pytest.mark.parametrize("page", pages(), ids=page_name)
    def test_a_page_showing_commands_runs_some_of_them(self, page: Path) -> None:
        """A page with `drillbook …` command lines has a runnable block, or EXEMPT says why not."""
        text = page.read_text(encoding="utf-8")
        name = page_name(page)
        if name in EXEMPT:
            assert shown_commands(text), f"{name} shows no command any more: drop it from EXEMPT"
            assert not has_runnable(text), f"{name} runs its commands now: drop it from EXEMPT"
        elif shown_commands(text):
            assert has_runnable(text), (
                f"{name}:{shown_commands(text)[0]} shows `drillbook …` commands but no block is "
                "`sh runnable`: mark a cheap one runnable (docs/development.md, \"Docs that run\") "
                "or add the page to EXEMPT in tests/unit/test_docs.py with the reason")

    def test_exempt_names_pages_that_exist(self) -> None:
        """An EXEMPT entry for a renamed or deleted page is an error, not a silent no-op."""
        assert sorted(set(EXEMPT) - {page_name(page) for page in pages()}) == []

    def test_shown_commands_are_shell_lines_not_output(self) -> None:
        """`drillbook X` and `$ drillbook X` in sh/console/untyped blocks count; output does not."""
        text = ("```sh\ndrillbook run --tags id:BKP-01\n```\n"
                "```console\n$ drillbook status\ndrillbook gate cadence: BLOCKED\n```\n"
                "```\n  drillbook doctor   # indented\ndrillbook: writing failed\n```\n"
                "```text\ndrillbook run 2026: features\n```\n"
                "```toml\ndrillbook = 1\n```\n"
                "Inline `drillbook steps` is prose.\n")
        assert shown_commands(text) == [2, 5, 9]


class TestBlocks:
    def test_info_string_and_exit_code(self) -> None:
        """`sh runnable` expects 0, `exit=N` expects N; plain `sh` blocks are text."""
        text = (_fenced("drillbook steps") + _fenced("drillbook run", "sh runnable exit=2")
                + _fenced("drillbook packs", "sh"))
        blocks = runnable_blocks(text)
        assert [(b.line, b.expected_exit, [c.source for c in b.commands]) for b in blocks] == [
            (3, 0, ["drillbook steps"]), (8, 2, ["drillbook run"])]

    @given(st.integers(min_value=0, max_value=255))
    def test_any_exit_code_is_read(self, code: int) -> None:
        """exit=N for every N a process can exit with."""
        (block,) = runnable_blocks(_fenced("drillbook steps", f"sh runnable exit={code}"))
        assert block.expected_exit == code

    @pytest.mark.parametrize("info", ["sh runnable exit=256", "sh runnable exit=x", "sh runnable fast"])
    def test_an_unknown_attribute_is_an_error_naming_the_line(self, info: str) -> None:
        """A typo in the info string fails loudly instead of silently not running the block."""
        with pytest.raises(DocsCommandError, match="unknown attribute") as caught:
            runnable_blocks(_fenced("drillbook steps", info))
        assert caught.value.line == 3

    def test_comments_blank_lines_and_continuations(self) -> None:
        """`#` lines and blanks are skipped; a trailing `\\` continues; lines are the first line's."""
        body = "# first\n\ndrillbook verify backup x \\\n    --json   # why\ndrillbook steps"
        (block,) = runnable_blocks(_fenced(body))
        assert [(c.line, c.argv({})) for c in block.commands] == [
            (6, ["verify", "backup", "x", "--json"]), (8, ["steps"])]

    def test_a_command_not_starting_with_drillbook_is_an_error(self) -> None:
        """Only drillbook commands run: `ls` in a runnable block names its line."""
        with pytest.raises(DocsCommandError, match="starts with `drillbook `") as caught:
            runnable_blocks(_fenced("drillbook steps\nls -l"))
        assert caught.value.line == 5

    def test_an_empty_block_and_a_dangling_continuation_are_errors(self) -> None:
        """A runnable block must hold a command, and may not end inside a continued line."""
        with pytest.raises(DocsCommandError, match="without a command"):
            runnable_blocks(_fenced("# nothing"))
        with pytest.raises(DocsCommandError, match="continued line"):
            runnable_blocks(_fenced("drillbook steps \\"))

    def test_a_runnable_fence_inside_a_longer_fence_is_text(self) -> None:
        """An example of the syntax (a ```` block showing ```sh runnable) never runs."""
        text = "````markdown\n```sh runnable\ndrillbook run\n```\n````\n"
        assert runnable_blocks(text) == []
        assert not has_runnable(text)

    def test_a_block_inside_a_list_item_is_found(self) -> None:
        """Indented fences (list items) run too, their indentation removed."""
        text = "- item\n\n  ```sh runnable\n  drillbook steps\n  ```\n"
        (block,) = runnable_blocks(text)
        assert block.commands[0].argv({}) == ["steps"]


# Words a docs command may contain: any printable text, quotes and shell characters included.
words = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
                 min_size=1, max_size=6)
plain_words = st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_=:./%@,+", min_size=1,
                               max_size=10), min_size=1, max_size=6)
names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)


class TestSplitting:
    @given(words)
    def test_shell_quoted_words_come_back_unchanged(self, argv: list[str]) -> None:
        """Whatever the words, quoting each as a shell would (shlex.quote) round-trips."""
        line = "drillbook " + " ".join(shlex.quote(word) for word in argv)
        assert split_words(line, {}) == ["drillbook", *argv]

    @given(plain_words)
    def test_plain_words_split_as_shlex_does(self, argv: list[str]) -> None:
        """Without quotes or specials the split is shlex's."""
        line = " ".join(argv)
        assert split_words(line, {}) == shlex.split(line)

    @given(plain_words, st.integers(min_value=1, max_value=5), st.text(max_size=20).filter(
        lambda s: "\n" not in s and "\r" not in s))
    def test_continuations_and_comments_do_not_change_the_command(
            self, argv: list[str], every: int, comment: str) -> None:
        """Breaking the line with `\\` and adding a trailing `# comment` leaves the same argv."""
        lines, current = [], ["drillbook"]
        for index, word in enumerate(argv):
            current.append(word)
            if index % every == every - 1:
                lines.append(" ".join(current) + " \\")
                current = ["   "]
        lines.append(" ".join(current) + f"  # {comment}")
        (block,) = runnable_blocks(_fenced("\n".join(lines)))
        (command,) = block.commands
        assert command.argv({}) == argv

    def test_a_backslash_in_a_comment_does_not_continue_the_line(self) -> None:
        """As in a shell: the comment runs to the end of the line, its backslash with it."""
        (block,) = runnable_blocks(_fenced("drillbook steps  # see \\\ndrillbook packs '#' \\\n  --json"))
        assert [c.argv({}) for c in block.commands] == [["steps"], ["packs", "#", "--json"]]

    @given(names, st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
    def test_variables_expand_to_one_word(self, name: str, value: str) -> None:
        """`$NAME`, `${NAME}` and `"$NAME"` become the value, kept as one word (spaces and all)."""
        env = {name: value}
        assert split_words(f'drillbook a"${name}"b', env) == ["drillbook", f"a{value}b"]
        assert split_words(f"drillbook ${{{name}}}x", env) == ["drillbook", f"{value}x"]
        assert split_words(f"drillbook --dsn=${{{name}}}", env) == ["drillbook", f"--dsn={value}"]

    @given(names)
    def test_an_unknown_variable_is_an_error_naming_it(self, name: str) -> None:
        """A page may only use what the docs test provides; the message lists what that is."""
        expected = rf"unknown variable \${name}: the docs test provides HOME"
        with pytest.raises(DocsCommandError, match=expected):
            split_words(f'drillbook run --x "${{{name}}}"', {"HOME": "/h"})

    @given(names)
    def test_single_quoted_placeholders_stay_literal(self, name: str) -> None:
        """`'${VAR}'` is what a config file must keep: not expanded, known or not."""
        assert split_words(f"drillbook init --dsn '${{{name}}}'", {}) == ["drillbook", "init", "--dsn",
                                                                           f"${{{name}}}"]

    @pytest.mark.parametrize(("line", "what"), [
        ("drillbook run | tee x", "a pipe"),
        ("drillbook run > out.txt", "a redirection"),
        ("drillbook run && drillbook status", "a background job"),
        ("drillbook run; drillbook status", "a command separator"),
        ("drillbook run --out $(pwd)", r"command substitution \(\$\(…\)\)"),
        ("drillbook run --out `pwd`", "command substitution"),
        ('drillbook run --out "`pwd`"', "command substitution"),
        ("drillbook run --features features/*.feature", "glob"),
        ("drillbook run --out ~/runs", "write \\$HOME"),
        ("drillbook run --x ${A:-b}", "not a plain variable"),
        ("drillbook run --x $1", r"shell parameter \$1"),
        ("drillbook run --x 'open", "unterminated single quote"),
        ('drillbook run --x "open', "unterminated double quote"),
    ])
    def test_shell_syntax_the_harness_would_not_honour_is_refused(self, line: str, what: str) -> None:
        """No shell runs the commands, so shell syntax is an error rather than a silent literal."""
        with pytest.raises(DocsCommandError, match=what):
            split_words(line, {"A": "a"})

    def test_quoted_shell_characters_are_plain_arguments(self) -> None:
        """Quoted, the same characters are ordinary text; a lone `$` and a mid-word `#` too."""
        line = "drillbook run --tags 'a and not b' \"x|y\" '*.feature' cost=5$ a#b \\; # gone"
        assert split_words(line, {}) == ["drillbook", "run", "--tags", "a and not b", "x|y",
                                         "*.feature", "cost=5$", "a#b", ";"]


class TestAnchors:
    @pytest.mark.parametrize(("heading", "slug"), [
        ("Configuration: `drillbook.toml`", "configuration-drillbooktoml"),
        ("Migrations written as code: the team's own migrate command",
         "migrations-written-as-code-the-teams-own-migrate-command"),
        ("Failing variants: `--canary`", "failing-variants---canary"),
        ("Safety: what a scratch target must be", "safety-what-a-scratch-target-must-be"),
        ("A — B", "a--b"),
        ("[Linked](x.md) heading_with_underscore", "linked-heading_with_underscore"),
    ])
    def test_github_slugs(self, heading: str, slug: str) -> None:
        """Anchors follow GitHub: lower case, punctuation dropped, each space a hyphen."""
        assert github_slug(heading) == slug

    def test_duplicates_are_numbered_and_code_blocks_are_not_headings(self) -> None:
        """A repeated heading gets -1; a `# comment` inside a fence is no heading."""
        text = "# Notes\n\n```sh\n# Notes in a block\n```\n\n## Notes\n"
        assert anchors(text) == {"notes", "notes-1"}

    def test_links_outside_code_only(self) -> None:
        """Links in code spans or fences are text; reference definitions count."""
        text = "See [a](a.md#x) and `[b](b.md)`.\n```\n[c](c.md)\n```\n[d]: d.md\n"
        assert links(text) == [(1, "a.md#x"), (5, "d.md")]

    def test_fences_end_where_the_runnable_block_parser_ends_them(self) -> None:
        """One reading of fences for links and blocks: a shorter fence inside a longer one is text,
        and an unclosed fence runs to the end of the page."""
        text = "````\n```\n[a](a.md)\n```\n````\n[b](b.md)\n```sh\n[c](c.md)\n"
        assert links(text) == [(6, "b.md")]

    def test_a_missing_file_or_anchor_is_named(self, tmp_path: Path) -> None:
        """broken_link says which: the file is missing, or no heading has the anchor."""
        page = tmp_path / "page.md"
        page.write_text("# Title\n", encoding="utf-8")
        assert broken_link(page, "page.md#title") is None
        assert broken_link(page, "#title") is None
        assert "no heading of page.md has the anchor #other" in str(broken_link(page, "#other"))
        assert "no such file" in str(broken_link(page, "gone.md"))
