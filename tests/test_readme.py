"""The README and the documentation site (docs/, mkdocs.yml) stay true to the code: every error code, every command,
the two commands of a fresh machine; and every page of the site is in its navigation and linked from the README."""
from __future__ import annotations

import re

import yaml

from conftest import PROJECT
from kflowgen.cli import app
from kflowgen.codes import CODES
from kflowgen.tools import SHOWN


PAGES = sorted((PROJECT / "docs").glob("*.md"))
# what a user reads: the README, then the site's pages
README = "\n".join(p.read_text() for p in [PROJECT / "README.md", *PAGES])


def test_every_code_is_listed_with_its_title():
    rows = dict(re.findall(r"^\| (KF\d{3}) \| (.+?) \|$", README, re.M))
    assert rows == CODES


def test_every_command_is_documented():
    names = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for name in names - {"version"}:
        assert f"kflowgen {name}" in README, name


def test_pinned_tool_versions_are_the_documented_ones():
    for tool in SHOWN:
        assert f"{tool.name} {tool.version}" in README


def test_the_two_commands_exist_in_the_makefile_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    makefile = (PROJECT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (PROJECT / ".ci/run").read_text()


def test_every_path_the_readme_names_in_the_code_exists():
    """The "where things live" table and the prose name real files: a move without a README change fails here."""
    named = set(re.findall(r"`((?:kflowgen|tools|bench|tests|bases|schemas)/[\w./<>-]*)`", README))
    missing = [p for p in sorted(named) if "<" not in p and not (PROJECT / p).exists()]
    assert named and missing == []


def test_every_finding_the_readme_shows_is_one_an_example_prints():
    """The findings the README shows a data scientist, with their fix lines, are printed by an example folder under
    tests/examples/invalid/ (whose test runs them): a message changed without the README fails here."""
    lines = README.splitlines()
    shown = [f"{ln}\n{after}" for ln, after in zip(lines, lines[1:])
             if re.match(r"^specs/\S+:\d+:\d+: (error|warning) \[KF\d{3}\] ", ln)]
    printed = "\n".join(p.read_text() for p in (PROJECT / "tests/examples/invalid").glob("*/expected.txt"))
    assert shown and [s for s in shown if not s.split("\n")[1].startswith("    fix: ") or s not in printed] == []


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    return [p for value in node.values() for p in _nav_pages(value)]


def test_every_page_of_the_site_is_in_its_navigation_and_the_readme_links_the_guides():
    nav = _nav_pages(yaml.safe_load((PROJECT / "mkdocs.yml").read_text())["nav"])
    assert sorted(nav) == [p.name for p in PAGES]
    readme = (PROJECT / "README.md").read_text()
    assert [p.name for p in PAGES if p.name != "index.md" and f"(docs/{p.name})" not in readme] == []
    assert len(readme.splitlines()) < 100  # the README keeps the two commands and the links; the guides are the site
