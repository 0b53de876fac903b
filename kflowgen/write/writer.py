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

import ctypes
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kflowgen import cache, parallel
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.targets.emit import is_generated
from kflowgen.specs.loader import special_kind

OWNED = "overlays"  # the folder kflowgen owns: every generated file lives here
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


def _listed(path: str) -> bool:
    """_existing lists it: a file or a link, not a folder (a tracked file may have become one)."""
    return os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path))


def _existing(root: Path) -> tuple[list[str], list[str], list[str]]:
    """Every regular file, every link (a link to a folder is listed, not walked into), and every FIFO, socket or
    device (listed apart: never opened) under overlays/."""
    out, links, special, todo, top = [], [], [], [OWNED], str(root)
    while todo:
        rel = todo.pop()
        try:
            entries = os.scandir(os.path.join(top, rel))
        except OSError:
            continue
        with entries:
            for entry in entries:
                path = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    todo.append(path)
                else:
                    (out if entry.is_file(follow_symlinks=False) else links if entry.is_symlink() else
                     special).append(path)
    return sorted(out), sorted(links), sorted(special)


_GIT = (("ls-files", "-z", "-s", "-t", "-v", "--", OWNED),
        ("diff-files", "-z", "--relative", "--name-only", "--", OWNED),
        ("config", "--get-regexp", r"^core\.(autocrlf|attributesfile|checkstat|trustctime|ignorestat|fsmonitor)$"),
        ("rev-parse", "--git-path", "info/attributes", "--show-toplevel"))
# every entry under overlays/ but folders, with its type: what git does not track (untracked and ignored files) is
# what find lists and git does not; git lists no FIFO, socket or device; and a run that only lists (validate) needs
# nothing else
_FIND = ("find", OWNED, "!", "-type", "d", "-printf", "%y %p\\0")


def survey(root: Path, git: bool = True) -> list:
    """Start the commands plan() reads, so they run while kflowgen loads and renders: git's (with git) and a find
    listing of overlays/; output goes to temporary files, so a command never waits for a reader."""
    runs = []
    for argv in [*(["git", "-C", str(root), *args] for args in (_GIT if git else ())), list(_FIND)]:
        out = tempfile.TemporaryFile()
        try:
            runs.append((subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL,
                                          cwd=root if argv[0] == "find" else None), out))
        except OSError:
            out.close()
            runs.append((None, None))
    return runs


def finish(started: list | None) -> None:
    """Wait for what survey() started when its answer is not wanted any more."""
    for run, out in started or []:
        if run is not None:
            run.wait()
            out.close()


def _results(started: list) -> list[tuple[bytes, int]]:
    """(output, exit status) of each command survey() started, once they are done."""
    outs = []
    for run, out in started:
        if run is None:
            outs.append((b"", 1))
            continue
        code = run.wait()
        out.seek(0)
        outs.append((out.read(), code))
        out.close()
    return outs


def _listing(found: tuple[bytes, int]) -> tuple[list[str], list[str], list[str]] | None:
    """find's listing as _existing gives it ([files], [links], [FIFOs, sockets, devices]); None when find failed (no
    overlays/, or a find without -printf): then _existing walks the folder."""
    out, code = found
    if code:
        return None
    kinds: dict[str, list[str]] = {"f": [], "l": [], "": []}
    for item in out.decode("utf-8", "surrogateescape").split("\0"):
        if item:
            kind, _, rel = item.partition(" ")
            kinds.get(kind, kinds[""]).append(rel)
    return sorted(kinds["f"]), sorted(kinds["l"]), sorted(kinds[""])


def _vouched(root: Path, outs: list | None = None, listing: tuple | None = None
             ) -> tuple[dict[str, str], list[str], list[str]] | None:
    """What git says of overlays/ without reading its files: ({path: blob id} of tracked files whose bytes on disk
    are exactly that blob, [every other path git lists there: changed, deleted, untracked, ignored, links], [FIFOs,
    sockets and devices, which git does not list (find's), and submodules, which it lists as one entry]).

    git compares each tracked file's size, times and inode with those its index recorded when it last read the
    file, and reads the file when that cannot decide (a file changed within the index's own timestamp). Files
    marked assume-unchanged or skip-worktree are not vouched for. None, and every file is read, when git cannot
    say: not a work tree, line-ending conversion (core.autocrlf), any attributes file (a filter or an eol setting
    makes the bytes on disk differ from the blob), or settings under which git compares less than its index records
    (core.checkStat=minimal, core.trustctime=false, core.ignoreStat) or asks a file-system monitor; and when find
    could not list the special files."""
    if outs is None:
        outs = _results(survey(root))
        listing = _listing(outs.pop())
    if listing is None:
        return None
    (listed, ok1), (changed, ok2), (settings, _), (paths, ok5) = outs
    if ok1 or ok2 or ok5:
        return None
    core = dict((line.split(" ", 1) + [""])[:2] for line in settings.decode("utf-8", "replace").lower().splitlines())
    on = {k: v not in ("false", "no", "off", "0") for k, v in core.items()}  # git's booleans; a bare key is true
    if (on.get("core.autocrlf") or core.get("core.checkstat") == "minimal"
            or not on.get("core.trustctime", True) or on.get("core.ignorestat") or on.get("core.fsmonitor")):
        return None  # git would compare fewer stat fields, or ask a monitor: read the files instead
    info, top = paths.decode("utf-8", "surrogateescape").splitlines()[:2]
    user = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "git", "attributes")
    here, top = Path(os.path.realpath(root)), os.path.realpath(top)
    folders = [here, *here.parents][:len(here.relative_to(top).parts) + 1] if here.is_relative_to(top) else [here]
    if (core.get("core.attributesfile") or any(os.path.exists(f) for f in (os.path.join(root, info), user))
            or any((f / ".gitattributes").exists() for f in folders)):
        return None
    dirty = set(changed.decode("utf-8", "surrogateescape").split("\0")) - {""}
    vouched: dict[str, str] = {}
    others: list[str] = []
    tracked: set[str] = set()
    gitlinks: set[str] = set()  # submodules: their files are the other repository's, and Argo CD checks them out
    for item in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
        meta, _, rel = item.partition("\t")
        tag, mode, oid, stage = meta.split(" ")
        tracked.add(rel)
        if mode == "160000":
            gitlinks.add(rel)
            continue
        if tag == "H" and stage == "0" and mode in ("100644", "100755") and rel not in dirty:
            vouched[rel] = oid
        else:
            others.append(rel)
    others += [rel for rel in (*listing[0], *listing[1]) if rel not in tracked]  # untracked and ignored
    others += dirty - set(others) - set(vouched)
    if any(rel.endswith("/") or not rel.startswith(OWNED + "/") or rel.endswith("/.gitattributes")
           for rel in [*vouched, *others, *gitlinks]):
        return None  # a nested repository, overlays/ itself a link, or attributes inside overlays/
    return vouched, sorted(set(others) - gitlinks), sorted({*listing[2], *gitlinks})


def same(path: str, data: bytes) -> bool:
    """The file at path holds exactly data."""
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:  # e.g. a folder where the file belongs
        return False


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


_COMPARING: tuple[str, dict[str, bytes]] | None = None  # (root, files) that forked comparers see


def _same_batch(rels: list[str]) -> list[bool]:
    assert _COMPARING is not None
    top, files = _COMPARING
    return [same(os.path.join(top, rel), files[rel]) for rel in rels]


def _same_folder_batch(folders: list[tuple[str, list[str]]]) -> list[bool]:
    assert _COMPARING is not None
    top, files = _COMPARING
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
    global _COMPARING
    items = list(folders.items())
    _COMPARING = str(root), files
    try:
        return {folder for (folder, _), ok in zip(items, parallel.fan_out(_same_folder_batch, items, jobs)) if ok}
    finally:
        _COMPARING = None


def plan(root: Path, files: dict[str, bytes], jobs: int = 1, ask_git: bool = False, started: list | None = None,
         compare: bool = True) -> Plan:
    """How disk differs from the rendered files; files on disk are compared on `jobs` processes when many. With
    ask_git, a file git vouches for (see _vouched) is compared by its blob id instead of being read. Without compare,
    only what is on disk and not rendered is looked at (removed, foreign and special files; nothing is read but the
    first bytes of those). A link is always foreign, even where a generated file belongs: kflowgen writes none."""
    global _COMPARING
    p = Plan()
    outs = _results(started) if started is not None else _results(survey(root)) if ask_git else []
    listing = _listing(outs.pop()) if outs else None
    known = _vouched(root, outs, listing) if ask_git and len(outs) == len(_GIT) else None
    if known is None:
        regular, found_links, p.special = listing or _existing(root)
        existing, vouched, links = sorted([*regular, *found_links]), {}, set(found_links)
    else:
        vouched, others, p.special = known
        special = set(p.special)  # a FIFO where git has a file is listed by both: never opened
        existing = sorted([*vouched, *(rel for rel in others
                                       if rel not in special and _listed(os.path.join(root, rel)))])
        links = {rel for rel in others if os.path.islink(os.path.join(root, rel))}
    present = set(existing) - links
    both = [rel for rel in files if rel in present and rel not in vouched] if compare else []
    _COMPARING = str(root), files
    try:
        same = dict(zip(both, parallel.fan_out(_same_batch, both, jobs)))
    finally:
        _COMPARING = None
    same.update((rel, cache.blob_id(files[rel]) == vouched[rel]) for rel in files if rel in vouched and compare)
    for rel in files if compare else ():
        if rel in links:
            continue  # foreign, below
        if rel not in present:
            p.added.append(rel)
        elif not same[rel]:
            p.changed.append(rel)
        else:
            p.unchanged.append(rel)
    for rel in existing:
        if rel in links:
            p.foreign.append(rel)
        elif rel not in files:
            (p.removed if is_generated(_head(root / rel)) else p.foreign).append(rel)
    return p


def check(root: Path, files: dict[str, bytes], jobs: int = 1, started: list | None = None, compare: bool = True
          ) -> tuple[Plan, list[Diagnostic]]:
    """The drift gate: one diagnostic per file that differs from what the specs render, and per file under overlays/
    that kflowgen did not write. In a git work tree, files git vouches for are not read (see _vouched; `started`:
    what survey() started earlier). Without compare (validate), only files kflowgen did not write are reported: a
    file with kflowgen's header that the specs no longer render is drift, render --check's (and the gate's) to refuse."""
    with locked(root, exclusive=False):
        p = plan(root, files, jobs, ask_git=True, started=started, compare=compare)
    fix = "run `kflowgen render` and commit the result"
    diags = [error(r, (1, 1), "KF502", "generated file is missing", fix) for r in p.added]
    diags += [error(r, (1, 1), "KF501", "generated file differs from what the specs render", fix) for r in p.changed]
    if compare:  # validate leaves stale generated files to render --check: before a render they are expected
        diags += [error(r, (1, 1), "KF503", "generated file is no longer produced by any spec", fix) for r in p.removed]
    return p, diags + strays(root, p)


def strays(root: Path, p: Plan) -> list[Diagnostic]:
    """Errors for what is under overlays/ and kflowgen did not write: Argo CD syncs these folders as they are, so a
    hand-written file there (an AppProject in overlays/<env>/argocd, a ClusterRoleBinding in a team folder, a second
    kustomization file) would reach a cluster without passing kflowgen's checks."""
    fix = ("delete it: everything under overlays/ is rendered from specs/, and a platform's own manifests belong in "
           "bases/ (README, \"Hand-kept manifests\")")
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
