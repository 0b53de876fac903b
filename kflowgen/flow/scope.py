"""What a change touches (the teams whose experiments it changes, told from the paths two commits differ in) and what
the base it goes into vouches for (render --check found its overlays/ to be exactly what its specs render), with the
git questions both ask of the work tree: what the gate in scope (flow.scoped) needs beside main's side. A path
kflowgen cannot place is never out of scope: it sends the change to the whole gate."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from kflowgen import cache, survey
from kflowgen.flow import gitref
from kflowgen.specs import layout
from kflowgen.specs.experiment import EXPERIMENTS

TEAMS = "specs/teams"
# an index file that does not exist (in a folder that does not either): git reads it as an empty index
_NO_INDEX = os.path.join(tempfile.gettempdir(), f"kflowgen-no-index-{os.urandom(16).hex()}", "index")


def touched(paths: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """The teams whose experiments, spec files and generated files these paths (from the repository's folder, as git
    names them) change, the environments of those files, and the teams whose spec file (specs/teams/<team>.yaml)
    they change: a team's platform files are generated from its spec, so a change to them comes with one to it.
    Nothing at all when any path is another kind (the platform file, a served model, bases/, schemas/, a shared or
    platform overlay file, a file beside the teams' folders, anything outside specs/ and overlays/): a change
    kflowgen cannot scope to its teams. Names are as the paths give them: a team or an environment the specs do not
    define, or a spec file that does not define the team of its name, is the caller's to refuse."""
    teams: set[str] = set()
    envs: set[str] = set()
    specs: set[str] = set()
    platform: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if path.startswith(f"{EXPERIMENTS}/") and len(parts) > 3 and parts[2]:
            teams.add(parts[2])
        elif path.startswith(f"{TEAMS}/") and len(parts) == 3 and parts[2].endswith(".yaml") and len(parts[2]) > 5:
            specs.add(parts[2].removesuffix(".yaml"))
        elif parts[0] == layout.OVERLAYS and len(parts) > 5 and parts[2] == "teams" and parts[1] and parts[3] and \
                parts[4] in (layout.WORKLOADS_PART, layout.PLATFORM_PART):
            (teams if parts[4] == layout.WORKLOADS_PART else platform).add(parts[3])
            envs.add(parts[1])
        else:
            return set(), set(), set()
    if not platform <= specs:  # (a team's platform files changed, its spec not: render --check's to refuse, whole)
        return set(), set(), set()
    return teams | specs, envs, specs


class Change(NamedTuple):
    """How a path differs between two commits: its mode and blob id in each (ABSENT and NO_ID where it has none)."""

    old_mode: str
    new_mode: str
    old_id: str
    new_id: str


ABSENT, NO_ID = "000000", "0" * 40


def committed(root: Path, base: str, head: str = "HEAD") -> dict[str, Change] | None:
    """The paths that differ between two commits, below root's folder, and how (`git diff-tree`, which reads no file
    of the work tree: a rename is the two paths it joins, a folder replaced by a file every path of both); None when
    git cannot say, or for a ref that reads as an option. Without the index: diff-tree reads it first though it
    compares two trees (0.1 s alone, 0.2 to 0.3 s in a gate, for the 89 MB index of 10,000 teams), so it is pointed
    at a file that does not exist (an empty index)."""
    if gitref.option_like(base) or gitref.option_like(head):
        return None
    try:
        found = subprocess.run(["git", "-C", str(root), "diff-tree", "-r", "-z", "--no-renames", "--relative",
                                base, head, "--"], capture_output=True,
                               env={**os.environ, "GIT_INDEX_FILE": _NO_INDEX})
    except OSError:
        return None
    if found.returncode:
        return None
    fields = found.stdout.decode("utf-8", "surrogateescape").split("\0")
    out = {}
    for meta, path in zip(fields[0::2], fields[1::2]):  # ":<mode> <mode> <id> <id> <status>", then the path
        modes_ids = meta.lstrip(":").split(" ")
        if len(modes_ids) != 5 or not path:
            return None
        out[path] = Change(*modes_ids[:4])
    return out


# --- what a scoped gate takes from its base, besides the side validate keeps ----------------------------------

JUDGED = ("specs", "overlays", "bases", "schemas", ".github")  # the folders of what the gate reads of the work tree
# The work tree is HEAD's where the gate reads it, byte for byte: git's index is HEAD's and no tracked file differs
# from it on disk (anywhere in root's folder: a CRD file the platform names, say), and git lists no untracked or
# ignored file in those folders; no file is marked assume-unchanged or skip-worktree (git would not look at it), none
# is an attributes file (a filter or eol setting makes the bytes on disk differ from the blob), and no setting makes
# git compare less than it records or convert line ends (survey.git_trusted, and sparse checkout). FIFOs and sockets,
# which git does not list: the gate in scope looks for them in its folders (flow.scoped._special), render --check
# everywhere. Asked as four listings rather than `git status`, which does the same work one part after the other and
# sorts out ignored files (these six commands at 10,000 teams: 2.0 to 2.1 s, 3.1 to 3.2 s of the machine's time;
# with `git status` of these folders and of the other files, and two listings of the index, 2.2 to 2.25 s and 3.3
# to 3.6 s). A file whose stat data the index does not match but whose bytes are the blob's (touched) counts as
# changed: `git status` refreshes the index.
STATUS = [("diff-index", "--cached", "-z", "--name-only", "HEAD", "--", "."),
          ("diff-files", "-z", "--name-only", "--", "."),
          ("ls-files", "-z", "--others", "--", *JUDGED),  # (no ignore rules: an ignored file is listed too)
          ("ls-files", "-z", "-v"),
          ("config", "--get-regexp", r"^core\.(autocrlf|attributesfile|checkstat|trustctime|ignorestat|fsmonitor|"
           r"sparsecheckout)$"),
          ("rev-parse", "--git-path", "info/attributes", "--show-toplevel")]
# ls-files -v's tag of an assume-unchanged or skip-worktree entry, after the NUL that ends the entry before (a
# pattern that starts with a literal byte is searched for as fast as that byte: "(?:\A|\0)" took 0.47 s on the
# 42 MB listing of 10,000 teams, this 0.04 s), and at the start
_UNLOOKED, _FIRST = re.compile(rb"\0[a-zS] "), re.compile(rb"[a-zS] ")


def heads(root: Path, outs: list[tuple[bytes, int]]) -> bool:
    """Whether STATUS's answers (status() started them) say the work tree is HEAD's where the gate reads it."""
    (staged, c1), (changed, c2), (others, c3), (listed, c4), settings, paths = outs
    sparse = re.search(rb"(?mi)^core\.sparsecheckout( (true|yes|on|1))?$", settings[0])
    attributes = b"/.gitattributes\0" in listed or b" .gitattributes\0" in listed  # (ls-files -v: "H path\0")
    return (not (staged or changed or others or attributes or c1 or c2 or c3 or c4 or sparse)
            and settings[1] in (0, 1) and not _FIRST.match(listed) and not _UNLOOKED.search(listed)
            and survey.git_trusted(root, settings, paths))


def status(root: Path, behind: bool = True) -> list:
    """STATUS's commands, started (behind: at a lower priority, see survey.start; git stats every file on as many
    threads as there are cores, which would take them from the stages they run beside, when their answer is wanted
    last): read them with survey.results, or survey.finish or survey.stop them."""
    return survey.start([["git", "-C", str(root), *args] for args in STATUS], behind=behind)


def record_clean(root: Path, store: cache.Cache, outs: list[tuple[bytes, int]]) -> None:
    """After a render --check that found nothing: keep that HEAD's overlays/ is exactly what HEAD's specs render, by
    their tree ids, when the work tree is HEAD's, byte for byte, where the check read it (outs: STATUS's answers, see
    heads; a FIFO or socket, which git does not list, the check itself refused). A gate then vouches for a team folder
    a change leaves as it is on its base by this, without comparing its files."""
    trees = gitref.trees_at(root, "HEAD", ("specs", "overlays")) if store.folder and heads(root, outs) else None
    if trees and {"specs", "overlays"} <= trees.keys():
        store.put("drift-clean", _clean_key(trees["specs"], trees["overlays"]), b"")


def clean(store: cache.Cache, specs: str, overlays: str) -> bool:
    """Whether a render --check found these trees of specs/ and overlays/ (by id) to be exactly what they render."""
    return store.lookup("drift-clean", _clean_key(specs, overlays)) is not None


def _clean_key(specs: str, overlays: str) -> str:
    return cache.key("drift-clean", cache.code_digest(), specs, overlays)


def special(root: Path, folders: list[str]) -> list[str]:
    """FIFOs, sockets and devices in these folders of the work tree (git lists none: writer.plan's find does)."""
    out, todo = [], [f for f in folders if os.path.isdir(root / f) and not os.path.islink(root / f)]
    while todo:
        try:
            entries = os.scandir(root / todo.pop())
        except OSError:  # gone since it was listed: what is there is what git's listing said
            continue
        with entries:
            for entry in entries:  # (files first, and a path made only of a folder or a special file: a team's
                # workloads folder holds thousands of files)
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    continue
                rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
                (todo if entry.is_dir(follow_symlinks=False) else out).append(rel)
    return out
