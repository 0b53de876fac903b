"""--timings (issue 23): each stage's time as `timings: STAGE N ms` lines on stderr after the output, for validate,
render, gate, diff and build; the output on stdout is the same with and without it. No time is asserted."""
from __future__ import annotations

import re
import subprocess

import pytest
from typer.testing import CliRunner

from kflowgen.cli import app
from kflowgen.options import Options, since_start

LINE = re.compile(r"timings: ([a-z/]+) (\d+) ms")
START = list(since_start())  # ["start"] where the process's start can be read (Linux)
# then every command loads (waiting for the listing of specs/ made ahead), checks across specs and renders
HEAD = [*START, "load", "load/listing", "validate", "render"]
BASE = ["base", "base/load", "base/validate", "base/render", "base/build", "base/cache"]  # the diff's base side

COMMANDS = {  # arguments -> the stages the command runs, in the order they start
    "validate": (["validate", "--format", "text"], [*HEAD, "check", "values", "build", "verify", "report", "cache"]),
    "render": (["render", "--format", "text"], [*HEAD, "write", "report"]),
    "render --check": (["render", "--check", "--format", "text"], [*HEAD, "check", "report"]),
    "gate": (["gate", "--base", "HEAD", "--format", "text"],
             [*START, "scope", *HEAD[len(START):], "check", "values", "build", "verify", "report", "compare", *BASE]),
    "diff": (["diff", "--base", "HEAD", "--format", "text"],
             [*START, *BASE, *HEAD[len(START):], "build", "cache", "compare", "report"]),
    "build": (["build", "dev"], [*HEAD, "build", "report"]),
}


@pytest.fixture
def committed_repo(example_repo):
    """The example repository as a git repository with one commit (the base of gate and diff)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(example_repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    return example_repo


def invoke(args: list[str], repo, tmp_path):
    cache = {"KFLOWGEN_CACHE": str(tmp_path / "cache")}
    no_cache = ["--no-cache"] if args[0] != "build" else []  # each run does all the work: the same output
    return CliRunner().invoke(app, [*args, *no_cache, "-C", str(repo)], env=cache)


@pytest.mark.parametrize("command", COMMANDS)
def test_timings_name_each_stage_on_stderr_and_leave_stdout_alone(command, committed_repo, tmp_path):
    args, stages = COMMANDS[command]
    plain = invoke(args, committed_repo, tmp_path)
    timed = invoke([*args, "--timings"], committed_repo, tmp_path)
    assert (plain.exit_code, timed.exit_code) == (0, 0)
    assert timed.stdout == plain.stdout and plain.stdout
    assert "timings:" not in plain.stderr
    lines = timed.stderr.splitlines()
    assert all(LINE.fullmatch(line) for line in lines), lines
    assert [LINE.fullmatch(line)[1] for line in lines] == stages


def test_a_stage_inside_another_is_named_after_both_and_a_stage_run_twice_adds_up(tmp_path):
    opts = Options.at(tmp_path, timed=True)
    opts.timings.seconds.clear()  # the process's start
    with opts.timed("base"):
        with opts.timed("load"):
            pass
    for _ in range(2):
        with opts.timed("load"):
            pass
    assert [line.rsplit(" ", 2)[0] for line in opts.timings.lines()] == ["timings: base", "timings: base/load",
                                                                           "timings: load"]
    assert opts.timings.within == []


def test_without_timings_nothing_is_noted(tmp_path):
    opts = Options.at(tmp_path)
    with opts.timed("load"):
        pass
    assert opts.timings is None


def test_a_stage_that_raises_is_still_noted(tmp_path):
    opts = Options.at(tmp_path, timed=True)
    with pytest.raises(ValueError), opts.timed("load"):
        raise ValueError
    assert list(opts.timings.seconds) == [*START, "load"] and opts.timings.within == []


def test_the_start_is_the_first_line_where_it_can_be_read():
    """On Linux, the time from the process's start (Python and the imports) comes first, as a stage."""
    if not START:
        pytest.skip("the process's start time is read from /proc")
    assert 0 < since_start()["start"] < 24 * 3600
