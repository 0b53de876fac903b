"""Where the specs are: every file named like a spec under specs/, and what its place makes it (the platform file, a
team, a model, an experiment); a file where kflowgen does not look, or a folder link that leaves the repository, is
reported rather than ignored."""
from __future__ import annotations

import os
from bisect import bisect_left
from itertools import repeat
from pathlib import Path

from kflowgen.diagnostics import Diagnostic, error
from kflowgen.survey import SPECS
from kflowgen.specs.experiment import EXPERIMENTS
from kflowgen.specs.served import MODELS

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF312": "spec path or file name escapes the repository",
    "KF316": "spec file in a folder kflowgen does not read",
}

PLATFORM = "specs/platform.yaml"


def _spec_paths(root: Path, snapshot: dict[str, bytes] | None = None,
                listed: list[tuple[str, str]] | None = None) -> list[str]:
    """Every file (or folder) named like a spec (.yaml, .yml) anywhere under specs/: where it is decides what it is
    (spec_files), and one where kflowgen does not look is reported, not ignored. listed: find's listing of specs/
    ((type, path) pairs, kflowgen.survey), which gives the same paths as walking the folder when it holds no link
    (a link is followed, or refused when it leaves the repository: then the folder is walked)."""
    if snapshot is not None:
        return sorted(rel for rel in snapshot if rel.startswith(SPECS + "/") and _named_like_a_spec(rel))
    if listed and listed[0] == ("d", SPECS):
        kinds, rels = zip(*listed)
        if "l" not in kinds:  # (a name of dots and the extension alone starts with a dot)
            return sorted(rel for rel in rels[1:] if rel.endswith((".yaml", ".yml"))
                          and ("/." not in rel or _named_like_a_spec(rel)))
    out, seen = [], set()
    top = os.path.realpath(root)
    for dirpath, dirs, names in os.walk(os.path.join(root, SPECS), followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree: walked once (its files are then refused if they leave the repo)
            dirs[:] = []
            continue
        seen.add(real)
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        out += [f"{rel}/{n}" for n in names + dirs if os.path.splitext(n)[1] in (".yaml", ".yml")]
        leaving = [d for d in dirs if not _within(top, os.path.realpath(os.path.join(dirpath, d)))]
        out += [f"{rel}/{d}/" for d in leaving if not os.path.splitext(d)[1] in (".yaml", ".yml")]
        dirs[:] = [d for d in dirs if d not in leaving]  # never walked: a link to / would walk the whole machine
    return sorted(out)


def _named_like_a_spec(rel: str) -> bool:
    """The path's extension (os.path.splitext's: a name of dots and the extension alone, such as `.yaml`, has none)
    is .yaml or .yml; without splitext's steps, as this is asked of every file under specs/."""
    return rel.endswith((".yaml", ".yml")) and rel.rpartition("/")[2].lstrip(".") not in ("yaml", "yml")


def _within(top: str, real: str) -> bool:
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _kind(rel: str) -> str:
    """What kflowgen reads a file under specs/ as: platform, team, model, experiment, stray (nowhere it looks), or
    outside (a folder link that leaves the repository, not walked)."""
    if rel.endswith("/"):
        return "outside"
    if rel == PLATFORM:
        return "platform"
    parts = rel.split("/")
    if len(parts) == 3 and parts[1] == "teams":
        return "team"
    if len(parts) > 2 and f"{parts[0]}/{parts[1]}" in (MODELS, EXPERIMENTS):
        return "model" if f"{parts[0]}/{parts[1]}" == MODELS else "experiment"
    return "stray"


def spec_files(root: Path, snapshot: dict[str, bytes] | None = None,
               listed: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """(path, kind) of every spec file load reads (from root, or among a snapshot's paths; listed: find's listing of
    specs/, see _spec_paths), and of every file named like a spec where kflowgen does not look (kind "stray"): the
    platform file first, then teams, models and experiments, each in path order."""
    paths = _spec_paths(root, snapshot, listed)  # in order: the paths under a folder are one run of them
    found: dict[str, list[str]] = {"platform": [], "team": [], "model": [], "experiment": [], "stray": [],
                                   "outside": []}
    at = 0
    for folder, kind in sorted(((MODELS, "model"), (EXPERIMENTS, "experiment"))):
        start, end = bisect_left(paths, folder + "/", at), bisect_left(paths, folder + "0", at)  # "0" follows "/"
        for rel in paths[at:start]:
            found[_kind(rel)].append(rel)
        inside = paths[start:end]
        if "/\0" in "\0".join([*inside, ""]):  # a folder link that leaves the repository: what each one is
            for rel in inside:
                found[_kind(rel)].append(rel)
        else:  # every file under the folder is of its kind (_kind): most often, thousands of them
            found[kind] += inside
        at = end
    for rel in paths[at:]:
        found[_kind(rel)].append(rel)
    return [(PLATFORM, "platform")] + [item for kind in ("team", "model", "experiment", "stray", "outside")
                                       for item in zip(found[kind], repeat(kind))]


def misplaced(wanted: list[tuple[str, str]]) -> list[Diagnostic]:
    """Findings for spec_files' strays and folder links that leave the repository."""
    return [_stray(rel) for rel, kind in wanted if kind == "stray"] + [
        error(rel.rstrip("/"), (1, 1), "KF312", "folder link that leaves the repository or loops",
              "replace the link with the folder itself") for rel, kind in wanted if kind == "outside"]


def _stray(rel: str) -> Diagnostic:
    return error(rel, (1, 1), "KF316", "kflowgen does not read spec files here, so this one would be ignored",
                 "the platform file is specs/platform.yaml, teams are specs/teams/<team>.yaml, experiments "
                 "specs/experiments/<team>/<name>.yaml and models specs/models/<team>/<name>.yaml")
