"""The docs say only what exists: every ``r21d-zoo`` command line in the README and the docs pages parses with the
CLI's own parser (every command, flag and choice is real), and the README stays a front page."""

import argparse
import re
import shlex
from pathlib import Path
from typing import List, Tuple

import pytest

from r21d_zoo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def command_lines(text: str) -> List[str]:
    """``r21d-zoo`` (or ``python -m r21d_zoo``) commands of the shell blocks, continuation lines joined, comments
    dropped; commands inside pipes or ``&&`` chains are taken too."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang not in ("bash", "sh", "shell", "console", ""):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|\||;|\|", line.split(" #", 1)[0]):
                part = part.strip().removeprefix("$ ")
                part = re.sub(r"^(torchrun|srun)\b.*?(?=-m r21d_zoo|r21d-zoo )", "", part)
                part = re.sub(r"^python3? -m r21d_zoo\b", "r21d-zoo", part)
                if part.startswith("r21d-zoo "):
                    found.append(" ".join(part.split()))
    return found


def all_commands() -> List[Tuple[str, str]]:
    return [(page.relative_to(ROOT).as_posix(), line) for page in PAGES for line in command_lines(page.read_text())]


class _Refused(Exception):
    pass


def _strict(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and its subparsers raise instead of exiting."""

    def error(message: str) -> None:
        raise _Refused(message)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)


def test_the_docs_show_command_lines_to_check():
    assert len(all_commands()) >= 30


@pytest.mark.parametrize("page, line", all_commands())
def test_every_command_line_in_the_docs_parses(page, line):
    parser = build_parser()
    _strict(parser)
    argv = shlex.split(line)[1:]
    if "--help" in argv or "--version" in argv:
        return
    try:
        parser.parse_args(argv)
    except _Refused as e:
        pytest.fail(f"{page}: `{line}`: {e}")


def test_the_checker_refuses_a_flag_that_does_not_exist():
    parser = build_parser()
    _strict(parser)
    with pytest.raises(_Refused, match="unrecognized"):
        parser.parse_args(["extract", "v.mp4", "-o", "out", "--no-such-flag"])
    block = "```bash\nr21d-zoo extract a.mp4 \\\n  -o out  # comment\n```\n"
    assert command_lines(block) == ["r21d-zoo extract a.mp4 -o out"]


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name not in ("index.md", "cli.md", "api.md"):
            assert f"(docs/{page.name})" in text, f"the README links no guide to {page.name}"
