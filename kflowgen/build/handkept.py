"""bases/: the hand-kept manifests every team's platform overlay builds on, checked before anything is built (KF409).
It holds only regular files and folders: a link could make a build read outside the repository (a scratch copy
follows it), and a FIFO would hang it. Every path its kustomization files name is a file or folder inside bases/: a
remote base (`https://...`, `git@...`, `file://...`) would make a pull request's CI fetch from anywhere, and build
something else tomorrow than what was reviewed today (the build cache keys on bases/ alone); `helmCharts` would run
helm and fetch a chart."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from kflowgen.diagnostics import Diagnostic, error
from kflowgen.specs.loader import special_kind

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF409": "bases/ holds a link or special file, or a kustomization there names a remote or outside path",
}

FOLDER = "bases"
KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# kustomization fields whose entries (or whose entries' `path`) name files or folders
LISTS = ("resources", "bases", "components", "crds", "patchesStrategicMerge", "configurations", "generators",
         "transformers", "validators")
ENTRY_PATHS = ("patches", "patchesJson6902", "replacements")
GENERATORS = ("configMapGenerator", "secretGenerator")
FIX = "keep bases/ self-contained: plain files and folders, referred to by relative paths inside bases/"


def check(root: Path) -> list[Diagnostic]:
    top = root / FOLDER
    if not top.is_dir() or top.is_symlink():
        return [] if not os.path.lexists(top) else [error(FOLDER, (1, 1), "KF409", "bases/ is not a plain folder", FIX)]
    out: list[Diagnostic] = []
    for dirpath, dirs, names in os.walk(top):  # links are not followed
        for name in sorted(dirs + names):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                out.append(error(rel, (1, 1), "KF409", "link inside bases/", FIX))
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                out.append(error(rel, (1, 1), "KF409", f"{special_kind(mode)} inside bases/", FIX))
            elif name in KUSTOMIZATIONS:
                out += _kustomization(root, path, rel)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
    return out


def _kustomization(root: Path, path: Path, rel: str) -> list[Diagnostic]:
    try:
        node = yaml.compose(path.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return [error(rel, (1, 1), "KF401", f"kustomization cannot be read: {e}")]
    if not isinstance(node, yaml.MappingNode):
        return []
    out = []
    for key, value in node.value:
        name = key.value
        if name == "helmCharts":
            out.append(error(rel, _at(key), "KF409", "helmCharts: a chart would be fetched and run by helm", FIX))
        for entry in _paths(name, value):
            text = entry.value
            if name in GENERATORS and "=" in text and "://" not in text:
                text = text.split("=", 1)[1]  # files: key=path
            why = _outside(root, path.parent, text)
            if why:
                out.append(error(rel, _at(entry), "KF409", f"{name}: '{entry.value}' {why}", FIX))
    return out


def _paths(name: str, value) -> list:
    """The scalar nodes of a field that name files or folders."""
    items = value.value if isinstance(value, yaml.SequenceNode) else []
    if name in LISTS:
        return [i for i in items if isinstance(i, yaml.ScalarNode)]
    if name in ENTRY_PATHS:
        return [v for i in items if isinstance(i, yaml.MappingNode) for k, v in i.value
                if k.value == "path" and isinstance(v, yaml.ScalarNode)]
    if name in GENERATORS:
        return [s for i in items if isinstance(i, yaml.MappingNode) for k, v in i.value if k.value in ("files", "envs")
                and isinstance(v, yaml.SequenceNode) for s in v.value if isinstance(s, yaml.ScalarNode)] + [
            v for i in items if isinstance(i, yaml.MappingNode) for k, v in i.value
            if k.value == "env" and isinstance(v, yaml.ScalarNode)]
    if name == "openapi" and isinstance(value, yaml.MappingNode):
        return [v for k, v in value.value if k.value == "path" and isinstance(v, yaml.ScalarNode)]
    return []


def _outside(root: Path, folder: Path, entry: str) -> str | None:
    """Why a named path is not a file or folder inside bases/, or None."""
    target = entry
    if "://" in target or target.startswith(("git@", "/", "~")) or "?ref=" in target:
        return "is remote or absolute"
    here = os.path.abspath(os.path.join(folder, target))
    bases = os.path.abspath(os.path.join(root, FOLDER))
    if not (here == bases or here.startswith(bases + os.sep)):
        return "is outside bases/"
    if not os.path.lexists(here):
        return "is not a file or folder of bases/ (remote bases are not allowed)"
    return None


def _at(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
