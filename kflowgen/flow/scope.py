"""What a change touches, told from the paths it changes: the teams whose spec or overlay files it changes, the
environments whose shared files (argocd/, queueing/, the hub values) it changes, and whether it changes a file every
team's output depends on (the platform file, bases/, schemas/) or one kflowgen cannot place: then the whole
repository is in scope. A scoped gate judges what is in scope and takes the rest from the base the change goes
into, which was judged whole before; a path is never out of scope because it is unknown."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kflowgen import cache, survey
from kflowgen.flow import gitref
from kflowgen.specs import layout
from kflowgen.specs.experiment import EXPERIMENTS
from kflowgen.specs.served import MODELS

TEAMS = "specs/teams"
EVERY_TEAM = ("bases", "schemas")  # folders every team's build or check reads


@dataclass(frozen=True)
class Scope:
    """teams: by folder (specs/experiments/<team>/, specs/models/<team>/, overlays/<env>/teams/<team>/); team_files:
    changed files of specs/teams/, whose teams are named inside them (on both sides: a renamed team is two teams);
    envs: environments whose shared overlay files changed; outside: changed paths outside specs/, overlays/, bases/
    and schemas/ (an input only where the platform names it, such as a CRD file, or CODEOWNERS); whole: the first
    changed path that puts every team in scope, None when none does. Names are as the paths give them: a team or an
    environment the specs do not define is for the caller to refuse (the whole check reports such files)."""

    teams: frozenset[str] = frozenset()
    team_files: tuple[str, ...] = ()
    envs: frozenset[str] = frozenset()
    outside: tuple[str, ...] = ()
    whole: str | None = None


def scope(paths: Iterable[str]) -> Scope:
    """The scope of a change to these paths (from the repository's folder, as git names them)."""
    teams: set[str] = set()
    envs: set[str] = set()
    team_files: list[str] = []
    outside: list[str] = []
    whole = None
    for path in sorted(paths):
        parts = path.split("/")
        if parts[0] == layout.OVERLAYS:
            place = layout.place(path)
            if place is not None and place.team and len(parts) > 4:
                teams.add(place.team)
            elif place is not None and place.part and place.part != "teams" and len(parts) > 3:
                envs.add(place.env)
            else:  # overlays/<file>, overlays/<env>, a file beside the environment's folders or its teams
                whole = whole or path
        elif parts[0] == "specs":
            folder = "/".join(parts[:2])
            if folder in (EXPERIMENTS, MODELS) and len(parts) > 3 and parts[2]:
                teams.add(parts[2])
            elif folder == TEAMS and len(parts) == 3:
                team_files.append(path)
            else:  # the platform file, or one kflowgen does not read there: what discover reports
                whole = whole or path
        elif parts[0] in EVERY_TEAM:
            whole = whole or path
        else:
            outside.append(path)
    return Scope(frozenset(teams), tuple(team_files), frozenset(envs), tuple(outside), whole)


def committed(root: Path, base: str, head: str = "HEAD") -> list[str] | None:
    """The paths that differ between two commits, below root's folder (`git diff-tree`, which reads no file of the
    work tree: a rename is the two paths it joins, a folder replaced by a file every path of both); None when git
    cannot say, or for a ref that reads as an option."""
    if gitref.option_like(base) or gitref.option_like(head):
        return None
    try:
        found = subprocess.run(["git", "-C", str(root), "diff-tree", "-r", "-z", "--no-renames", "--name-only",
                                "--relative", base, head, "--"], capture_output=True)
    except OSError:
        return None
    if found.returncode:
        return None
    return [p for p in found.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


# --- what a scoped gate takes from its base, besides the side validate keeps ----------------------------------

JUDGED = ("specs", "overlays", "bases", "schemas", ".github")  # the folders of what the gate reads of the work tree
# The work tree is HEAD's where the gate reads it, byte for byte: git lists no change, untracked or ignored file in
# those folders, nor a change to a tracked file anywhere (a CRD file the platform names, say); no file there is
# marked assume-unchanged or skip-worktree (git would not look at it), none is an attributes file (a filter or eol
# setting makes the bytes on disk differ from the blob), and no setting makes git compare less than it records or
# convert line ends (survey.git_trusted, and sparse checkout). FIFOs and sockets, which git does not list: the gate in
# scope looks for them in its folders (flow.scoped._special), render --check everywhere.
STATUS = [("status", "--porcelain", "-z", "--untracked-files=all", "--ignored=matching", "--", *JUDGED),
          ("status", "--porcelain", "-z", "--untracked-files=no", "--", ".", *(f":(exclude){f}" for f in JUDGED)),
          ("ls-files", "-z", "-v", "--", *JUDGED),
          ("ls-files", "-z", "--", ":(glob)**/.gitattributes"),
          ("config", "--get-regexp", r"^core\.(autocrlf|attributesfile|checkstat|trustctime|ignorestat|fsmonitor|"
           r"sparsecheckout)$"),
          ("rev-parse", "--git-path", "info/attributes", "--show-toplevel")]
_UNLOOKED = re.compile(rb"(?:\A|\0)[a-zS] ")  # ls-files -v's tag of an assume-unchanged or skip-worktree entry


def heads(root: Path, outs: list[tuple[bytes, int]]) -> bool:
    """Whether STATUS's answers (status() started them) say the work tree is HEAD's where the gate reads it."""
    (changed, c1), (elsewhere, c2), (listed, c3), (attributes, c4), settings, paths = outs
    sparse = re.search(rb"(?mi)^core\.sparsecheckout( (true|yes|on|1))?$", settings[0])
    return (not (changed or elsewhere or attributes or c1 or c2 or c3 or c4 or sparse) and settings[1] in (0, 1)
            and not _UNLOOKED.search(listed) and survey.git_trusted(root, settings, paths))


def status(root: Path) -> list:
    """STATUS's commands, started behind (git stats every file on as many threads as there are cores, which would
    take them from the stages they run beside): read them with survey.results, or survey.finish them."""
    return survey.start([["git", "-C", str(root), *args] for args in STATUS], behind=True)


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
