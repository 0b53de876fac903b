"""A git ref's files, read without checking it out: the listing of its specs/, bases/ and schemas/ (`git ls-tree`,
by blob id, no file read) and the bytes of its blobs (one `git cat-file --batch`), for the base side of a diff."""
from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from kflowgen import survey
from kflowgen.specs.read import Snapshot

FOLDERS = ("specs", "bases", "schemas")  # what a diff side is made of, besides kflowgen's code


def option_like(ref: str) -> bool:
    """A ref that git would read as an option (`--output=<file>` makes git diff write a file): given to no git
    command but the check that refuses it (diff._base_listed's rev-parse --verify). No ref git makes starts so."""
    return ref.startswith("-")


def started(root: Path, base: str) -> list:
    """The git commands diff._base_listed reads, started now: the gate starts them before it checks the head, so that
    they run meanwhile. In root's folder of the ref's commit (`<commit>:./`), the ref resolved here once, so that all
    of them see one commit even if the ref moves meanwhile (a side found by its folders' tree ids is then the side of
    the listing beside them): the commit's check, the git top and root's place below it, the entries at root's folder
    (names and tree ids), and the listing of its specs/, bases/ and schemas/. For a ref that reads as an option (see
    option_like), or that names no commit, none is started: the check, run later, refuses it."""
    commit = None if option_like(base) else commit_of(root, base)
    if commit is None:  # (nothing is listed by a name that may name another commit by then; the check says why)
        return [(None, None)] * 4
    tree = f"{commit}:./"
    return survey.start([["git", "-C", str(root), *args] for args in (
        ("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"), ("rev-parse", "--show-toplevel", "--show-prefix"),
        ("ls-tree", "-z", "--full-tree", tree), ("ls-tree", "-r", "-z", "--full-tree", tree, "--", *FOLDERS))],
        behind=True)


def commit_of(root: Path, ref: str) -> str | None:
    """The commit a ref names now; None when it names none or git cannot say (never asked of an option_like ref)."""
    try:
        found = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                               capture_output=True, text=True)
    except OSError:
        return None
    return (found.stdout.strip() or None) if found.returncode == 0 else None


def trees_at(root: Path, commit: str, folders: tuple[str, ...] = FOLDERS) -> dict[str, str] | None:
    """The tree ids of these folders (specs/, bases/ and schemas/) in root's folder of a commit; None when git
    cannot say."""
    listed = ls_tree(root, commit, folders)
    return top(listed)[1] if listed is not None else None


def ids_at(root: Path, commit: str) -> dict[str, str] | None:
    """blob_ids of the files under specs/, bases/ and schemas/ in root's folder of a commit; None when git cannot say
    (or blob_ids gives None)."""
    listed = ls_tree(root, commit, FOLDERS, "-r")
    return blob_ids(entries(listed)) if listed is not None else None


def ls_tree(root: Path, commit: str, paths: Iterable[str], *flags: str) -> bytes | None:
    """`git ls-tree -z` (with flags, e.g. -r) of these paths, taken literally (a path is never a pattern), in root's
    folder of a commit; None when git cannot say."""
    try:
        run = subprocess.run(["git", "--literal-pathspecs", "-C", str(root), "ls-tree", "-z", *flags, "--full-tree",
                              f"{commit}:./", "--", *paths], capture_output=True)
    except OSError:
        return None
    return None if run.returncode else run.stdout


def top(listing: bytes) -> tuple[list[str], dict[str, str]]:
    """The names a tree's `git ls-tree -z` lists, and the tree id of each folder among them."""
    found = entries(listing)
    return [path for path, *_ in found], {path: oid.decode() for path, _, kind, oid in found if kind == b"tree"}


def entries(listing: bytes) -> list[tuple[str, bytes, bytes, bytes]]:
    """`git ls-tree -r -z` output as (path, mode, kind, object id) entries."""
    out = []
    for item in filter(None, listing.split(b"\0")):
        meta, _, path = item.partition(b"\t")
        mode, kind, oid = meta.split()
        out.append((path.decode("utf-8", "surrogateescape"), mode, kind, oid))
    return out


def plain(entries) -> bool:
    """Only files: no link (its target could be anything) and no submodule."""
    return all(kind == b"blob" and mode != b"120000" for _, mode, kind, _ in entries)


def blob_ids(entries) -> dict[str, str] | None:
    """{path: blob id} of the listed files; None when there is a link or a submodule among them (a side is then
    never recalled)."""
    if entries is None or not plain(entries):
        return None
    return {path: oid.decode() for path, _, _, oid in entries}


def spec_blobs(git, top: Path, entries) -> Snapshot | None:
    """{path: bytes} of every file under specs/ in a git tree's listing (entries), with their blob ids; None when
    there is a link or a submodule there, or no listing."""
    entries = [e for e in entries if e[0].startswith("specs/")] if entries is not None else None
    if entries is None or not plain(entries):
        return None
    found = cat(git, top, [(path, oid) for path, _, _, oid in entries])
    return Snapshot(found, blob_ids(entries)) if found is not None else None


def blobs(git, top: Path, ids: dict[str, str]) -> dict[str, bytes]:
    """{path: bytes} of these files by their git blob ids ({} when git cannot give them all)."""
    return cat(git, top, [(p, i.encode()) for p, i in ids.items()]) or {}


def cat(git, top: Path, wanted: list[tuple[str, bytes]]) -> dict[str, bytes] | None:
    """{path: bytes} of (path, blob id) pairs, read in one `git cat-file --batch`; None when one is not a blob."""
    batch = git("cat-file", "--batch", at=top, input=b"".join(oid + b"\n" for _, oid in wanted))
    out, pos, data = {}, 0, batch.stdout
    for path, oid in wanted:
        end = data.find(b"\n", pos)
        header = data[pos:end].split()
        if batch.returncode or end < 0 or len(header) != 3 or header[0] != oid or header[1] != b"blob":
            return None
        size = int(header[2])
        out[path] = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1  # the payload is followed by a newline
    return out


def literal(root: Path):
    """git in root's folder, called as gitref's readers call it (git(*args, at=folder, input=...)), its pathspecs
    taken literally (a path is never a pattern)."""
    return lambda *args, at=root, **kw: subprocess.run(["git", "--literal-pathspecs", "-C", str(at), *args],
                                                       capture_output=True, **kw)
