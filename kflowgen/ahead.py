"""The listing of specs/ made ahead: every command that reads the specs starts it as it starts (the command line
before it imports its stages: early), and a forked child makes it (Ahead) on the other core while this process
goes on; the stage that reads the specs takes it (taken_or_started)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

from kflowgen import survey


def spec_listing(root: Path, started: list) -> tuple[list[tuple[str, str]] | None, dict[str, str]]:
    """What specs() started, read: find's listing of specs/ as find_paths gives it, and {path: blob id} of the spec
    files git vouches for (see vouched; none when git was not asked or cannot say)."""
    outs = survey.results(started)
    found = survey.find_output(outs.pop())
    known = survey.vouched(root, outs, found, survey.SPECS, exact=True) if outs else None
    return survey.find_paths(found), known[0] if known else {}


class Ahead:
    """spec_listing(root, survey.specs(root, git)), made by a forked child while this process goes on: the child
    starts the commands and reads their output (at 1,000 teams about 0.1 s of Python) on the other core, while this
    one imports the stages and parses the options. get() gives it (made here, the same way, when the child could
    not). Forked before any thread starts (the command line's first step), so that no lock is held in the child.
    Without fork, the commands are started here and get() reads them (a reader that needs the listing at once)."""

    def __init__(self, root: Path, git: bool, fork: bool = True):
        self.root, self.git, self.pid, self.pipe, self.started = root, git, 0, -1, None
        if not fork:
            self.started = survey.specs(root, git)
            return
        try:
            read, write = os.pipe()
        except OSError:
            return
        try:
            self.pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return
        if self.pid == 0:  # the child: its answer, pickled, down the pipe; never back into the caller's code
            code = 1
            try:
                os.close(read)
                with os.fdopen(write, "wb") as out:
                    pickle.dump(spec_listing(root, survey.specs(root, git)), out, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.pipe = read

    def get(self) -> tuple[list[tuple[str, str]] | None, dict[str, str]]:
        started, self.started = self.started, None
        if started is not None:
            return spec_listing(self.root, started)
        answer = self.answer()
        return answer if answer is not None else spec_listing(self.root, survey.specs(self.root, self.git))

    def finish(self) -> None:
        """Wait for what it started, when the listing is not wanted any more."""
        survey.finish(self.started)
        self.started = None
        self.answer()

    def answer(self):
        """The child's answer, once (None when there is none: no child, it failed, or it was taken)."""
        fd, self.pipe, status = self.pipe, -1, 1
        if fd < 0:
            return None
        try:
            with os.fdopen(fd, "rb") as pipe:
                data = pipe.read()
        finally:
            try:
                status = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:  # reaped already (SIGCHLD ignored by whatever started kflowgen): a whole
                status = 0  # answer is one that unpickles (a cut-short pickle does not)
        try:
            return pickle.loads(data) if status == 0 else None
        except Exception:  # cut short: made here instead
            return None


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
