"""The writer, the only code that changes the repository: compare rendered files with disk, or write them.

Everything under overlays/ is kflowgen's: a hand-written file, a link or a special file there is an error, and a
write refuses to run while one is there (Argo CD would apply it unreviewed). A write builds the complete new overlays
tree in a temporary folder beside it (unchanged files are hard links, so only changed files cost anything) and then
swaps the two folders in one atomic step
(renameat2 RENAME_EXCHANGE on Linux). Killed at any moment, the repository holds either the old tree or the
new one; a leftover temporary folder is removed by the next run. Writes in one repository take turns, and wait for
runs that read overlays/ where it is (see locked), so a run never removes another's temporary folder as a leftover
and never swaps the tree under a build.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kflowgen import cache, parallel, survey as listings
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.targets.emit import is_generated
from kflowgen.specs.loader import special_kind
from kflowgen.survey import OWNED, survey

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF501": "generated file differs from what the specs render",
    "KF502": "generated file missing",
    "KF503": "generated file no longer produced by any spec",
    "KF504": "file, link or special file inside overlays/ that kflowgen did not write",
    "KF904": "the repository cannot be written (disk full, permissions): nothing was changed",
}

SCRATCH = ".kflowgen-swap-"


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # generated files no spec produces any more
    foreign: list[str] = field(default_factory=list)  # hand-written files and links inside the owned folder: errors
    unchanged: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)  # FIFOs, sockets, devices: never opened, errors

    @property
    def strays(self) -> bool:
        """Something under overlays/ that kflowgen did not write: Argo CD could apply it unreviewed."""
        return bool(self.foreign or self.special)

    @property
    def drift(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def same(path: str, data: bytes) -> bool:
    """The file at path holds exactly data."""
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:  # e.g. a folder where the file belongs
        return False


def first_bytes(path: Path) -> bytes:
    """The first bytes of a file, where kflowgen's header would be (targets.emit.is_generated)."""
    with open(path, "rb") as f:
        return f.read(64)


def _same_batch(state: tuple[str, dict[str, bytes]], rels: list[str]) -> list[bool]:
    top, files = state
    return [same(os.path.join(top, rel), files[rel]) for rel in rels]


def _same_folder_batch(state: tuple[str, dict[str, bytes]], folders: list[tuple[str, list[str]]]) -> list[bool]:
    top, files = state
    return [_same_folder(top, folder, rels, files) for folder, rels in folders]


def _same_folder(top: str, folder: str, rels: list[str], files: dict[str, bytes]) -> bool:
    try:
        with os.scandir(os.path.join(top, folder)) as entries:
            present = {e.name: e.is_file(follow_symlinks=False) for e in entries}
    except OSError:
        return False
    return (all(present.values()) and sorted(present) == sorted(r.rsplit("/", 1)[1] for r in rels)
            and all(same(os.path.join(top, r), files[r]) for r in rels))


def same_folders(root: Path, folders: dict[str, list[str]], files: dict[str, bytes], jobs: int = 1) -> set[str]:
    """The folders ({folder: the rendered files that belong in it}) that hold exactly those files as regular files,
    byte for byte, and nothing else; compared on `jobs` processes when many."""
    items = list(folders.items())
    found = parallel.fan_out(_same_folder_batch, items, jobs, state=(str(root), files))
    return {folder for (folder, _), ok in zip(items, found) if ok}


def plan(root: Path, files: dict[str, bytes], jobs: int = 1, ask_git: bool = False, started: list | None = None,
         compare: bool = True, ids: dict[str, str] | None = None) -> Plan:
    """How disk differs from the rendered files; files on disk are compared on `jobs` processes when many. With
    ask_git, a file git vouches for (see survey.vouched) is compared by its blob id instead of being read: the id
    `ids` gives (blob ids of rendered files, computed by kflowgen from exactly these bytes when it rendered them:
    Rendered.ids), else the id of the rendered bytes, computed here; and when git's and find's listings, each as a
    whole, say that overlays/ holds exactly the rendered files (survey.holds_exactly), neither is split into
    entries. Without compare, only what is on disk and not rendered is looked at (removed, foreign and special
    files; nothing is read but the first bytes of those). A link is always foreign, even where a generated file
    belongs: kflowgen writes none."""
    p = Plan()
    outs = listings.results(started) if started is not None else listings.results(survey(root)) if ask_git else []
    if (ask_git and compare and ids and len(outs) == listings.GIT + 1
            and listings.holds_exactly(root, outs[:-1], outs[-1], files, ids)):
        p.unchanged = list(files)  # overlays/ holds exactly the rendered files, as git has them (the usual case)
        return p
    found = listings.find_output(outs.pop()) if outs else None
    known = listings.vouched(root, outs, found) if ask_git else None
    if known is None:
        regular, found_links, p.special = listings.find_listing(found) or listings.existing(root)
        existing, vouched, links = sorted([*regular, *found_links]), {}, set(found_links)
    else:
        vouched, others, p.special = known
        if vouched and len(next(iter(vouched.values()))) != 40:  # a SHA-256 repository: its blob ids are not
            vouched, others = {}, [*vouched, *others]  # kflowgen's (SHA-1), so its files are read and compared
        special = set(p.special)  # a FIFO where git has a file is listed by both: never opened
        existing = [*vouched, *(rel for rel in others
                                if rel not in special and listings.listed(os.path.join(root, rel)))]  # sorted below,
        # where it is walked (when something on disk is not rendered)
        links = {rel for rel in others if os.path.islink(os.path.join(root, rel))}
    present = set(existing) - links  # every file git vouches for is in it
    names = files.keys()
    if compare:
        unvouched = names - vouched.keys()  # rendered files that are read, if on disk (none in a clean work tree)
        both = [rel for rel in files if rel in unvouched and rel in present] if unvouched else []
        differ = {rel for rel, ok in zip(both, parallel.fan_out(_same_batch, both, jobs, state=(str(root), files)))
                  if not ok}
        ids = ids or {}
        if ids != vouched:  # else every file git vouches for has the rendered file's blob id: none is hashed
            differ.update(rel for rel, oid in vouched.items()
                          if rel in files and (ids.get(rel) or cache.blob_id(files[rel])) != oid)
        if differ or any(rel not in present for rel in unvouched):
            for rel in files:
                if rel in links:
                    continue  # foreign, below
                if rel not in present:
                    p.added.append(rel)
                elif rel in differ:
                    p.changed.append(rel)
                else:
                    p.unchanged.append(rel)
        else:  # the usual case (no rendered file differs, is missing or is a link), without a step per file
            p.unchanged = list(files)
    if links or not names >= present:
        for rel in sorted(existing):
            if rel in links:
                p.foreign.append(rel)
            elif rel not in files:
                (p.removed if is_generated(first_bytes(root / rel)) else p.foreign).append(rel)
    return p


def check(root: Path, files: dict[str, bytes], jobs: int = 1, started: list | None = None, compare: bool = True,
          ids: dict[str, str] | None = None) -> tuple[Plan, list[Diagnostic]]:
    """The drift gate: one diagnostic per file that differs from what the specs render, and per file under overlays/
    that kflowgen did not write. In a git work tree, files git vouches for are not read (see _vouched; `started`:
    what survey() started earlier), but compared by blob id (`ids`: see plan). Without compare (validate), only
    files kflowgen did not write are reported: a file with kflowgen's header that the specs no longer render is
    drift, render --check's (and the gate's) to refuse."""
    with locked(root, exclusive=False):
        p = plan(root, files, jobs, ask_git=True, started=started, compare=compare, ids=ids)
    return p, findings(root, p, compare)


def findings(root: Path, p: Plan, compare: bool = True) -> list[Diagnostic]:
    """check's findings of a plan (made by plan(), or from another listing of the same files)."""
    fix = "run `kflowgen render` and commit the result"
    diags = [error(r, (1, 1), "KF502", "generated file is missing", fix) for r in p.added]
    diags += [error(r, (1, 1), "KF501", "generated file differs from what the specs render", fix) for r in p.changed]
    if compare:  # validate leaves stale generated files to render --check: before a render they are expected
        diags += [error(r, (1, 1), "KF503", "generated file is no longer produced by any spec", fix) for r in p.removed]
    return diags + strays(root, p)


def strays(root: Path, p: Plan) -> list[Diagnostic]:
    """Errors for what is under overlays/ and kflowgen did not write: Argo CD syncs these folders as they are, so a
    hand-written file there (an AppProject in overlays/<env>/argocd, a ClusterRoleBinding in a team folder, a second
    kustomization file) would reach a cluster without passing kflowgen's checks."""
    fix = ("delete it: everything under overlays/ is rendered from specs/, and a platform's own manifests belong in "
           "bases/ (docs/reviewer.md, \"Hand-kept manifests\")")
    out = [error(r, (1, 1), "KF504", "link inside overlays/, which kflowgen owns: kflowgen writes no links", fix)
           for r in p.foreign if os.path.islink(root / r)]
    out += [error(r, (1, 1), "KF504", "hand-written file inside overlays/, which kflowgen owns: Argo CD would apply "
                  "it without kflowgen's checks", fix) for r in p.foreign if not os.path.islink(root / r)]
    out += [error(r, (1, 1), "KF504", f"{_special_kind(root / r)} inside overlays/, which kflowgen owns", fix)
            for r in p.special]
    return out


def _special_kind(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "a Git submodule"  # listed by git, not checked out
    return "a Git submodule" if stat.S_ISDIR(mode) else special_kind(mode)


def write(root: Path, files: dict[str, bytes], jobs: int = 1, edits: dict[str, bytes] | None = None
          ) -> tuple[Plan, list[Diagnostic]]:
    """Make overlays/ hold exactly the rendered files, atomically; another write in the same repository waits until
    this one is done. Nothing is written while overlays/ holds a file kflowgen did not write (see strays). edits:
    spec files the rendered files were made from and that are not on disk yet (a promotion), each written atomically
    just before the overlays are swapped in."""
    with locked(root):
        return _write(root, files, jobs, edits or {})


@contextmanager
def locked(root: Path, exclusive: bool = True):
    """A lock on the repository folder (flock): exclusive for a write, shared for a run that reads overlays/ where
    it is (render --check, a build in place). A run that has to wait says so once on stderr. The lock ends with the
    process, even killed, and forked workers do not keep it (parallel.NOT_INHERITED); nothing is created in the
    repository. Where the folder cannot be locked (no flock, or a network file system that refuses it on a folder),
    runs do not take turns, as before there was a lock."""
    try:
        import fcntl
        fd = os.open(root, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    parallel.NOT_INHERITED.add(fd)
    try:
        _acquire(fcntl, fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, root)
        yield
    finally:
        parallel.NOT_INHERITED.discard(fd)
        os.close(fd)


def _acquire(fcntl, fd: int, mode: int, root: Path) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        print(f"kflowgen: waiting for another kflowgen {'run in' if mode == fcntl.LOCK_EX else 'writing'} {root}",
              file=sys.stderr)
    except OSError:
        return
    try:
        fcntl.flock(fd, mode)
    except OSError:
        pass


def _write(root: Path, files: dict[str, bytes], jobs: int, edits: dict[str, bytes]) -> tuple[Plan, list[Diagnostic]]:
    """All or nothing: the new tree is staged completely first, then the edited specs are replaced, then the tree is
    swapped in. A failure (a full disk, a permission) before the swap leaves the repository as it was: staged files
    are removed and edited specs get their old bytes back."""
    _clean_leftovers(root)
    p = plan(root, files, jobs)
    if p.strays:  # written nothing: the person removes them first (nothing is lost)
        return p, strays(root, p)
    new: Path | None = None
    replaced: dict[str, bytes] = {}
    where = OWNED
    try:
        if p.drift:
            new = Path(tempfile.mkdtemp(prefix=SCRATCH, dir=root))
            staged = new / OWNED
            staged.mkdir()
            for rel in p.unchanged:  # hard links: no bytes copied
                _link(root / rel, new / rel)
            for rel in p.added + p.changed:
                (new / rel).parent.mkdir(parents=True, exist_ok=True)
                (new / rel).write_bytes(files[rel])
        for rel, data in sorted(edits.items()):
            where = rel
            old = (root / rel).read_bytes()
            replace_file(root / rel, data)
            replaced[rel] = old
        where = OWNED
        if new is not None:
            if (root / OWNED).exists():
                _exchange(new / OWNED, root / OWNED)  # the scratch folder now holds the old tree
            else:
                os.rename(new / OWNED, root / OWNED)
            _fsync_dir(root)
    except OSError as e:
        for rel, old in replaced.items():
            replace_file(root / rel, old)
        return p, [error(where, (1, 1), "KF904", f"cannot write {where}: {e.strerror or e}; nothing was changed",
                         "free disk space or fix the permissions, then run the command again")]
    finally:
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
    return p, []


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _clean_leftovers(root: Path) -> None:
    for leftover in root.glob(SCRATCH + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step. Where the kernel or libc cannot, fall back to two renames (a crash between
    them leaves the old tree in the scratch folder, and overlays/ missing until the next render)."""
    import ctypes  # (only render writes: the other commands do not load it)

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        if ctypes.get_errno() not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename it over path, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
