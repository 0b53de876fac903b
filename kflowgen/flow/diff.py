"""kflowgen diff: the two sides of a change (a git ref's and the working tree's), each loaded, rendered and built by
the same stages as every command, or recalled from the cache when that side was validated before; the built objects
are keyed by (environment, kind, namespace, name) and handed to report.changes, which says what changed. Quotas and
capacity come from the models, notebook images and profiles from the rendered JupyterHub values."""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

import yaml

from kflowgen import survey
from kflowgen.build import build, overlays_of, parse
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.flow import gitref
from kflowgen.flow.load import load_then, render_stage
from kflowgen.flow.side import Gone, Side, kustomize_id, listed_key, name, named, recall, remember, side, side_key
from kflowgen.options import Options
from kflowgen.report.changes import DiffReport, compare
from kflowgen.specs import layout
from kflowgen.specs.layout import LABEL_TEAM, is_directory_source
from kflowgen.specs.loader import SpecFile
from kflowgen.targets.files import Released

__all__ = ["DiffReport", "Side", "changed_paths", "diff_git", "diff_trees", "remember", "side", "side_key"]


def _side(opts: Options, label: str | None, snapshot: dict[str, bytes] | None = None, keep: bool = True
          ) -> tuple[Side, list[Diagnostic]]:
    if not (snapshot if snapshot is not None else (opts.root / "specs").is_dir()):
        return Side(), []  # e.g. the first commit: everything is new
    model, diags, rendered = load_then(opts, partial(render_stage, opts), snapshot)
    errors = [d for d in diags if d.severity == "error"]
    if model is None or rendered is None:
        return Side(), _tag(errors, label)
    with opts.timed("build"):
        built, errors = build(opts, rendered, overlays_of(rendered))
    with opts.timed("cache"):
        out = side(model, rendered.files, built, opts.root, snapshot)
        if keep and not errors:
            remember(opts, model, out, built.keys, rendered.units, head=label is None)
    return out, _tag(errors, label)


def _parse(side: Side, other: Side) -> None:
    """Objects and profiles of this side where its output differs from the other side's: an overlay or values file
    built to the same text on both sides holds the same objects, so it adds nothing to the diff and is not parsed.
    The work is proportional to what changed."""
    for overlay, digest in side.built.items():
        theirs = other.built.get(overlay)
        if theirs == digest:
            continue
        place = layout.place(overlay)
        if theirs is not None and is_directory_source(overlay):  # a file each: only the files that differ
            mine, others = side.listing(overlay), other.listing(overlay)
            if mine is not None and others is not None:  # by blob id, none of the same files read
                texts = side.parts(overlay, [rel for rel, i in mine.items() if others.get(rel) != i])
                objects = [obj for text in texts for obj in parse(text)]
            else:
                same = set(other.documents(theirs))
                objects = [obj for doc in side.documents(digest) if doc not in same for obj in parse(doc)]
        else:
            objects = side.given(digest) or parse(side.text(digest))
        for obj in objects:
            meta = obj.get("metadata", {})
            team = place.team or meta.get("labels", {}).get(LABEL_TEAM)
            side.objects[(place.env, obj["kind"], meta.get("namespace", ""), meta["name"])] = (team, obj)
    for env, digest in side.values.items():
        if other.values.get(env) != digest:
            for p in yaml.load(side.text(digest), Loader=yaml.CSafeLoader)["singleuser"]["profileList"]:
                team = p["kubespawner_override"]["namespace"]
                side.profiles[(env, team, p["slug"].removeprefix(f"{team}-"))] = p


def _tag(diags: list[Diagnostic], label: str | None) -> list[Diagnostic]:
    """Say which side a finding is about (a missing tool is the same on both)."""
    return [replace(d, message=f"{label}: {d.message}") if label and d.code != "KF901" else d for d in diags]


def diff_trees(base_opts: Options, head_opts: Options, base_label: str = "base",
               base_specs: dict[str, bytes] | None = None, head: Side | None = None, base: Side | None = None
               ) -> DiffReport:
    """Compare two checkouts (each with specs/ and bases/; the base's spec files may be given as their bytes
    instead, the head as the side already built, and the base as a side recalled from the cache). With a result
    cache, the side that has been loaded, rendered and built before (usually the base branch) comes from it."""
    diags: list[Diagnostic] = []
    if base is None:
        with base_opts.timed("base"):
            base, diags = _side(base_opts, base_label, base_specs)
    head, found = (head, []) if head is not None else _side(head_opts, None)
    if diags or found:
        return DiffReport(diagnostics=sorted(set(diags + found)))
    with head_opts.timed("compare"):
        _parse(base, head)
        _parse(head, base)
        return compare(base, head, _spec_changes(base, head))


def _spec_changes(base: Side, head: Side) -> dict[str, tuple[SpecFile | None, SpecFile | None]]:
    """{path: (the base's spec, the head's)} of every spec file that differs between the two sides, experiments,
    models and teams parsed (None where a side has none), the platform file by path only (both None): what the diff
    says a change happened because of."""
    paths = sorted(p for p in base.specs.keys() | head.specs.keys() if base.specs.get(p) != head.specs.get(p))
    typed = [p for p in paths if p.startswith(("specs/experiments/", "specs/models/", "specs/teams/"))]
    old, new = base.spec_files(typed), head.spec_files(typed)
    return {p: (old.get(p), new.get(p)) for p in paths}


def changed_paths(root: Path, base: str) -> set[str] | None:
    """The repository paths (from root) that differ between the git ref `base` and the working tree, untracked ones
    too: what a pull request changes. None when git cannot say, and for a ref that reads as an option
    (gitref.option_like)."""
    if gitref.option_like(base):
        return None
    try:
        runs = [subprocess.run(["git", "-C", str(root), *args], capture_output=True) for args in
                (["diff", "--name-only", "--relative", "-z", base, "--"], ["ls-files", "-z", "--others",
                                                                          "--exclude-standard"])]
    except OSError:
        return None
    if any(r.returncode for r in runs):
        return None
    return {p for r in runs for p in r.stdout.decode("utf-8", "surrogateescape").split("\0") if p}


def diff_git(opts: Options, base: str, head: Side | None = None, started: list | None = None) -> DiffReport:
    """Compare the git ref `base` with the working tree at root. When the base's spec files, bases/ and schemas/
    (named by their git blob ids, listed without reading them) were diffed or validated before by this kflowgen
    with this kustomize, the base side is recalled from the cache. Otherwise its spec files are read from git into
    memory (`git cat-file --batch`: writing thousands of small files costs far more); bases/ and schemas/, which
    kustomize and the CRD list read from disk, are extracted with `git archive`, and so is specs/ when it holds
    links. A head handed over (the gate's, released: see Files.release) whose files are no longer in the cache is
    made again, and not kept (the gate keeps no head)."""
    try:
        return _diff_git(opts, base, head, started)
    except Released:
        if head is None:
            raise
    head, found = _side(opts, None, keep=False)
    if found:
        return DiffReport(diagnostics=sorted(set(found)))
    return _diff_git(opts, base, head, None)


def _diff_git(opts: Options, base: str, head: Side | None, started: list | None) -> DiffReport:
    root = opts.root

    def git(*args: str, at: Path = root, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(at), *args], capture_output=True, **kw)

    with opts.timed("base"):
        listed = _base_listed(opts, git, base, started)
    if isinstance(listed, DiffReport):
        return listed
    top, tree, names, entries, recalled = listed
    if recalled is not None:
        recalled.read = lambda ids: gitref.blobs(git, top, ids)
        if head is None:  # made once, also for the case the recalled side turns out stale
            head, found = _side(opts, None)
            if found:  # a recalled side is free of errors: the head's are all there is to say
                return DiffReport(diagnostics=sorted(set(found)))
        try:
            return diff_trees(opts, opts, base_label=base, head=head, base=recalled)
        except Gone:
            pass
    with tempfile.TemporaryDirectory(prefix="kflowgen-diff-") as tmp:
        with opts.timed("base"):
            specs = gitref.spec_blobs(git, top, entries()) if "specs" in names else None
            paths = [p for p in ("specs", "bases", "schemas")
                     if p in names and not (p == "specs" and specs is not None)]
            if paths:
                archive = git("archive", "--format=tar", tree, "--", *paths, at=top)
                untar = subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, capture_output=True)
                if archive.returncode or untar.returncode:
                    msg = (archive.stderr or untar.stderr).decode(errors="replace").strip()
                    return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"cannot read {base}: {msg}")])
        return diff_trees(replace(opts, root=Path(tmp)), opts, base_label=base, base_specs=specs, head=head)


def _base_listed(opts: Options, git, base: str, started: list | None = None
                 ) -> DiffReport | tuple[Path, str, list[str], Callable[[], list | None], Side | None]:
    """The git ref's files (the folder above root, the tree, its top-level names and the listing of specs/, bases/
    and schemas/, parsed when called) and its side when the cache holds it; or the report of why git cannot say.
    started: gitref.started's commands, else they are started here. The side is found by the tree ids of the ref's
    specs/, bases/ and schemas/ where a run named it so (side.named), else by the key of their listing (named then)."""
    root, store = opts.root, opts.store
    (commit, bad), (where, _), (top_entries, _), (listing, unlisted) = survey.results(
        started or gitref.started(root, base))
    if bad:  # (asked again, for git's words)
        try:
            found = git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
        except OSError as e:
            return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"git could not run: {e}")])
        why = found.stderr.decode(errors="replace").strip()
        return DiffReport(diagnostics=[error("git", (0, 0), "KF902", f"'{base}' is not a commit in {root}"
                                             + (f" ({why})" if why else ""),
                                             "fetch the base branch first, e.g. git fetch origin main")])
    lines = where.decode("utf-8", "surrogateescape").split("\n")
    top, prefix = Path(lines[0].strip() or root), (lines[1:] or [""])[0].strip()  # root may be below the git top
    tree = f"{commit.decode().strip()}:{prefix}"  # (the commit the listing is of, whatever the ref names now)
    names, trees = gitref.top(top_entries)
    parsed: list = []

    def entries() -> list | None:
        if not parsed:
            parsed.append(None if unlisted else gitref.entries(listing))
        return parsed[0]

    builder = kustomize_id(root)
    if builder is None or "specs" not in names:
        return top, tree, names, entries, None
    k = named(store, builder, trees)
    if k is None and (ids := gitref.blob_ids(entries())) is not None:
        k = listed_key(ids, builder)
        name(store, builder, trees, k)
    return top, tree, names, entries, recall(store, k) if k else None
