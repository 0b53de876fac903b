"""The listing of specs/ made ahead: every command that reads the specs starts it as it starts (the command line
before it imports its stages: early), and a forked child makes it (Ahead) on the other core while this process
goes on; the stage that reads the specs takes it (taken_or_started)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from kflowgen import survey
from kflowgen.parallel import Beside


def spec_listing(root: Path, started: list) -> tuple[list[tuple[str, str]] | None, dict[str, str]]:
    """What specs() started, read: find's listing of specs/ as find_paths gives it, and {path: blob id} of the spec
    files git vouches for (see vouched; none when git was not asked or cannot say)."""
    # git's listing of the index (done first) is read while diff-files and find, which stat every file, still run
    outs = survey.results(started[:1])
    columns = survey.index_columns(outs[0], exact=True) if len(started) > 1 else None
    outs += survey.results(started[1:])
    found = survey.find_output(outs.pop())
    known = survey.vouched(root, outs, found, survey.SPECS, True, columns) if outs and columns else None
    return survey.find_paths(found), known[0] if known else {}


class Ahead(Beside):
    """spec_listing(root, survey.specs(root, git)), made by a forked child while this process goes on (Beside): the
    child starts the commands and reads their output (at 1,000 teams about 0.1 s of Python) on the other core, while
    this one imports the stages and parses the options. get() gives it (made here, the same way, when the child could
    not). Forked as the command line's first step, before any thread starts. Without fork, the commands are started
    here and get() reads them (a reader that needs the listing at once)."""

    def __init__(self, root: Path, git: bool, fork: bool = True):
        super().__init__(_listing, root, git, os.getpid(), fork=fork)
        self.root, self.git, self.started = root, git, None if fork else survey.specs(root, git)

    def get(self) -> tuple[list[tuple[str, str]] | None, dict[str, str]]:
        started, self.started = self.started, None
        return spec_listing(self.root, started) if started is not None else self.result()

    def finish(self) -> None:
        """Wait for what it started, when the listing is not wanted any more."""
        survey.finish(self.started)
        self.started = None
        self.answer()


def _listing(root: Path, git: bool, parent: int) -> tuple[list[tuple[str, str]] | None, dict[str, str]]:
    """spec_listing; in the child (not in parent, which makes it when the child could not), asked to stop (SIGTERM,
    drop), it asks the commands it started to stop too, then ends (at 10,000 teams git's two listings of specs/ take
    0.6 s of each core's time: they would run on beside a gate in scope, which reads the specs from git). The handler
    only sends signals: the wait it interrupts holds the lock Popen's own methods take."""
    started: list = []
    asked: list = []  # SIGTERM came while the commands were being started: they are stopped once they all are

    def stop(*_) -> None:
        if not started:
            asked.append(True)
            return
        for run, *_ in started:
            if run is not None and run.returncode is None:  # (not reaped: its pid is still its own)
                try:
                    os.kill(run.pid, signal.SIGTERM)
                except OSError:
                    pass
        os._exit(1)

    if os.getpid() != parent:  # (SIGCHLD as by default: ignored, the kernel would reap the commands unseen)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, stop)
    started += survey.specs(root, git)
    if asked:
        stop()
    return spec_listing(root, started)


def early(root: Path, git: bool, started: dict | None = None) -> dict:
    """The listing of specs/ made Ahead from now, for Options.early (or taken from started, where an earlier early()
    for the same root and git left it); taken by the stage that reads the specs of this root (taken_or_started)."""
    key = (str(root), survey.SPECS, git)
    if started and key in started:
        return {key: started.pop(key)}
    return {key: Ahead(root, git)}


def taken_or_started(given: dict, root: Path, git: bool) -> Ahead:
    """The listing of specs/ made ahead for this root (taken: a second reader starts its own), else started now, here
    (a child would only be waited for)."""
    return given.pop((str(root), survey.SPECS, git), None) or Ahead(root, git, fork=False)


def drop(given: dict, root: Path, git: bool) -> None:
    """The listing of specs/ made ahead for this root is not wanted (a gate in scope reads the specs from git): the
    child making it is stopped, and so are the git and find it started (see _listing)."""
    found = given.pop((str(root), survey.SPECS, git), None)
    if found is not None:
        found.cancel(signal.SIGTERM)
