"""The build stage: every overlay Argo CD syncs, built with the pinned kustomize (kflowgen-kbuild where it is: many
overlays a process) over the rendered files, with builds cached by their inputs. The built objects of each overlay
are parsed once, when first asked for, and travel with the build."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import yaml

from kflowgen import cache, parallel, tools
from kflowgen.build import handkept
from kflowgen.build.views import Parts, Texts
from kflowgen.build.kustomize import kustomize_batch, kustomize_build
from kflowgen.diagnostics import Diagnostic
from kflowgen.documents import count_files as _count_files, count_objects
from kflowgen.options import Options
from kflowgen.packed import Packed, Spill, pack, unpacked
from kflowgen.specs import layout
from kflowgen.specs.layout import is_directory_source
from kflowgen.targets import pieces
from kflowgen.targets.cached import Rendered
from kflowgen.write import writer


class BuildLost(cache.Lost):
    """A build the index vouched for is neither in the cache nor made again to the same text."""


class Made(NamedTuple):
    """An overlay built now whose text the cache took, known by its text's sha256 and its object count."""

    digest: str
    count: int


@dataclass(frozen=True)
class Built:
    """Built manifests per overlay, and per-environment object counts."""

    overlays: Mapping[str, str] = field(default_factory=dict)  # overlay -> its built YAML
    counts: dict[str, int] = field(default_factory=dict)  # environment -> objects built
    tools: dict[str, str] = field(default_factory=dict)
    rebuilt: int = 0  # overlays built by kustomize in this run (the rest came from the cache)
    keys: dict[str, str] = field(default_factory=dict)  # overlay -> its entry in the build cache
    # overlay -> its objects: given by the builder (built now by kflowgen-kbuild) or the renderer (plain directories
    # rendered now), kept packed (kflowgen.packed), else parsed from the YAML when first asked for (objects())
    parsed: dict[str, list] | Packed = field(default_factory=dict)
    # a plain directory -> its files, [(path, text)], and each file's object where the renderer gave it, packed
    # (None: none)
    parts: Parts = field(default_factory=lambda: Parts({}, {}))
    part_objects: Mapping[str, bytes | None] = field(default_factory=dict)  # (the renderer's map, as part_ids)
    digests: dict[str, str] = field(default_factory=dict)  # overlay -> what it is known by (digest)
    # a rendered file -> its git blob id, as the renderer computed it (asked only for a plain directory's files: the
    # render's own map, not a copy of its part, which was 20 MB at 10,000 teams)
    part_ids: Mapping[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # overlay -> objects built (counts: their sums by environment)
    listings: dict[str, dict[str, str] | None] = field(default_factory=dict, init=False, repr=False)  # (listing())

    def digest(self, overlay: str) -> str:
        """The sha256 of an overlay's built YAML (what schema and policy passes and the diff know it by); of a plain
        directory one render unit wrote all of, the sha256 of its files' paths and blob ids (listing_digest)."""
        found = self.digests.get(overlay)
        return found if found is not None else cache.text_digest(self.overlays[overlay])

    def unit_digest(self, unit: str) -> str:
        """What a unit's text is known by (see units): a plain directory's file by the git blob id the renderer
        computed from its bytes (not read, nor hashed again), anything else by its text's sha256."""
        found = self.part_ids.get(unit)
        if found is not None:
            return f"blob {found}"
        text = self.text(unit)
        return cache.text_digest(text if isinstance(text, str) else text.decode("utf-8"))

    def objects(self, overlay: str) -> list[dict]:
        """An overlay's objects: parsed from its YAML at most once; given by the builder or the renderer, unpacked
        anew for each caller (kflowgen.packed)."""
        if overlay not in self.parsed:
            self.parsed[overlay] = parse(self.overlays[overlay])
        return self.parsed[overlay]

    def units(self, overlays=None, passed: Callable[[str, dict[str, str] | None], set[str]] | None = None
              ) -> dict[str, str]:
        """What the schema and policy checks take one at a time, {unit: its overlay}, of every overlay or of those
        given: a kustomize overlay whole, each file of a plain directory alone (one Job changed among a team's
        thousands: one file). A unit's text is read when a check asks for it (text()), and not held: most are known
        by their blob ids and judged by the objects the renderer gave (every file's bytes held at once were what
        a validate with an empty cache held most of at its peak). passed(overlay, listing): the files of a plain
        directory (listing: {path: blob id}) that passed already (cache.Passes.unchanged): left out, unread."""
        out: dict[str, str] = {}
        for overlay in self.overlays if overlays is None else overlays:
            if overlay not in self.parts:
                out[overlay] = overlay
                continue
            skip = passed(overlay, self.listing(overlay)) if passed else None
            out.update(dict.fromkeys([rel for rel in self.parts.paths(overlay) if not skip or rel not in skip],
                                     overlay))
        return out

    def text(self, unit: str) -> str | bytes:
        """A unit's text (see units): a kustomize overlay's built YAML, a plain directory's file as its rendered bytes
        (decoded only by a check that reads them)."""
        return self.overlays[unit] if unit in self.overlays else self.parts.file(unit)

    def listing(self, overlay: str) -> dict[str, str] | None:
        """{path: git blob id} of a plain directory's files as the build read them (the render computed the ids);
        None for a kustomize overlay, or when a file has no id. Made once (the checks and the diff each ask)."""
        if overlay not in self.listings:
            rels = self.parts.paths(overlay) if overlay in self.parts else None
            ids = [self.part_ids.get(rel) for rel in rels] if rels is not None else [None]
            self.listings[overlay] = None if None in ids else dict(zip(rels, ids))
        return self.listings[overlay]

    def given(self, unit: str) -> list[dict] | None:
        """A unit's objects when the builder or the renderer gave them (not parsed here), else None."""
        if unit in self.overlays:
            return self.parsed.get(unit)
        if unit in self.part_objects:
            return unpacked(self.part_objects[unit])
        return None

    def unit_objects(self, unit: str) -> list[dict]:
        found = self.given(unit)
        return found if found is not None else (self.objects(unit) if unit in self.overlays else parse(self.text(unit)))


def parse(text: str | bytes) -> list[dict]:
    """The objects of a built YAML stream (as `kustomize build` prints it)."""
    return [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if isinstance(d, dict)]


def overlays_of(files: Mapping[str, bytes] | Rendered, env: str | None = None, team: str | None = None) -> list[str]:
    """The folders Argo CD syncs: kustomize overlays (a kustomization.yaml) and plain directories of manifests."""
    if isinstance(files, Rendered):
        files, folders = files.files, files.folders.keys()
    else:
        folders = {p.rsplit("/", 1)[0] for p in files}  # each folder looked at once, not once per file
    out = sorted(f for f in folders if f"{f}/kustomization.yaml" in files or is_directory_source(f))
    if env:
        out = [o for o in out if o.startswith(f"overlays/{env}/")]
    if team:
        out = [o for o in out if o.startswith(f"overlays/{env}/teams/{team}/")]
    return out


def overlay_keys(root: Path, rendered: Rendered, overlays: list[str], tool: tools.Tool) -> dict[str, str]:
    """A cache key per overlay: its files, the hand-kept bases it may reference, and the kustomize version.
    A change to any base changes the key of every overlay that uses bases/ (all are rebuilt)."""
    bases = cache.tree_digest(root / "bases")
    builder = builder_id(tool)
    by_overlay = {o: rendered.folders.get(o, []) for o in overlays}
    out = {}
    files, origin = rendered.files, rendered.origin
    keyed = cache.keyed(builder)  # the shared part hashed once
    for overlay, rels in by_overlay.items():
        # the overlay's files are those of this folder among the unit's files of this digest, or named one by one
        parts: list = (["unit", overlay, origin[overlay]] if overlay in origin
                       else [x for rel in sorted(rels) for x in (rel, files[rel])])
        if (overlay in rendered.based if overlay in origin and rendered.based is not None
                else any(b"bases/" in files[rel] for rel in rels)):  # the unit's entry says, else its files
            parts.append(bases)
        out[overlay] = keyed(*parts)
    return out


def builder_id(tool: tools.Tool) -> str:
    """What builds overlays: kustomize's version, run as kubectl kustomize or kustomize, in kflowgen-kbuild or not."""
    batch = tools.find_batch()
    return " ".join([tool.version, tool.argv[0] if tool.argv[0] == "kubectl" else "kustomize",
                     tools.batch_version(batch) if batch and tool.argv[0] != "kubectl" else "process"])


def build(opts: Options, rendered: Rendered | dict[str, bytes], overlays: list[str]) -> tuple[Built, list[Diagnostic]]:
    """kustomize build of the given overlays over the rendered files, in a scratch copy (the repository is untouched).
    Overlays whose inputs and kustomize version match a cached build are not built again."""
    rendered = rendered if isinstance(rendered, Rendered) else Rendered(dict(rendered))
    root, files, store, jobs = opts.root, rendered.files, opts.store, opts.jobs
    kustomize = tools.find("kustomize", root)
    if isinstance(kustomize, Diagnostic):
        return Built(), [kustomize]
    refused = handkept.check(root)  # links, special files, remote bases: nothing is built from such a bases/
    if refused:
        return Built(), refused
    diags: list[Diagnostic] = []
    parsed = Packed()
    plain = directory_listing(files, [o for o in overlays if is_directory_source(o)], rendered.folders)
    # what Argo CD reads from a plain directory: its files' texts, one document each (decoded when first asked for)
    parts = Parts(files, plain)
    for folder, rels in plain.items():  # their objects, when the renderer gave them all
        if rendered.objects and all(rel in rendered.objects for rel in rels):
            parsed.of_files(folder, [rendered.objects[rel] for rel in rels])
    keys = overlay_keys(root, rendered, [o for o in overlays if o not in plain], kustomize)
    # what earlier builds gave, "sha256 objects" of the output, by build key; a plain directory's by its folder and
    # the cache entry of the unit that rendered all its files (rendered.origin), else by its text's sha256
    index = cache.Memo(store, "build", "index")
    plain_key = cache.keyed("plain", cache.code_digest())  # how a folder's files make its text is kflowgen's code
    # (a folder several units write, such as overlays/<env>/argocd: by its files' paths and blob ids, so that an
    # unchanged one is not read)
    whole = {o: plain_key(o, rendered.origin[o]) if o in rendered.origin
             else plain_key(o, "ids", "\0".join(f"{rel}\0{rendered.ids[rel]}" for rel in rels))
             for o, rels in plain.items() if o in rendered.origin or all(rel in rendered.ids for rel in rels)}
    indexed = {o: found.split(" ") for o, k in [*keys.items(), *whole.items()] if (found := index.get(k)) is not None}
    # a plain directory one unit wrote all of is known by its files' paths and blob ids (listing_digest), not by its
    # text's sha256: one Job changed among a team's thousands is not joined into one text, hashed and counted
    listed = {o for o in plain if o in rendered.units}  # (as a kept diff side names it: by that unit)
    results: dict[str, str | Diagnostic] = {o: parts.text(o) for o in plain if o not in indexed and o not in listed}
    unread = [o for o in keys if o not in indexed]
    for overlay, hit in zip(unread, store.read_many("build", [keys[o] for o in unread], text=True)):
        if hit is not None:
            results[overlay] = hit
    if store.folder is not None:
        hits = sum(o in results for o in unread) + sum(o in indexed for o in keys)
        store.count(True, hits)
        store.count(False, len(keys) - hits)
    todo = [o for o in overlays if o not in results and o not in indexed and o not in listed]

    def run(at: Path, group: list[str], tick, hold) -> dict[str, str | Made | Diagnostic]:
        batch = tools.find_batch() if kustomize.argv[0] != "kubectl" else None
        if not batch:
            return kustomize_build(kustomize, at, group, jobs, tick, hold)
        texts, objects = kustomize_batch(batch, at, group, jobs, tick, with_objects=True, keep=packer, hold=hold)
        for overlay, data in objects.items():
            parsed.put(overlay, data)
        return texts

    def cached(overlay: str, text: str, held: bool) -> str | Made:
        """A text built now, put in the cache as it arrives; unless held, only its digest and object count once the
        cache took it (read again when asked for: load)."""
        took = store.put("build", keys[overlay], text.encode("utf-8"))
        return text if held or not took else Made(cache.text_digest(text, remember=False), count_objects(text))

    def make(todo: list[str], tick=lambda: None, held: bool = True) -> dict[str, str | Made | Diagnostic]:
        hold = partial(cached, held=held)
        # An overlay whose folder already holds exactly the rendered files (the usual case: render --check passes)
        # is built where it is (writer.same_folders); the others from a scratch copy of the rendered files.
        # The repository is not written.
        with writer.locked(root, exclusive=False):  # no render swaps the tree between the comparison and the build
            same = writer.same_folders(root, {o: rendered.folders.get(o, []) for o in todo}, files, jobs)
            in_place = [o for o in todo if o in same]
            results_now = run(root, in_place, tick, hold) if in_place else {}
        elsewhere = sorted(set(todo) - set(in_place))
        if elsewhere:
            with tempfile.TemporaryDirectory(prefix="kflowgen-build-") as tmp:
                scratch = Path(tmp)
                if (root / "bases").is_dir():
                    shutil.copytree(root / "bases", scratch / "bases", symlinks=False)
                for overlay in elsewhere:
                    (scratch / overlay).mkdir(parents=True)
                    for rel in rendered.folders.get(overlay, []):
                        (scratch / rel).write_bytes(files[rel])
                results_now.update(run(scratch, elsewhere, tick, hold))
        return results_now

    # a build of many overlays (the first run, or the first after upgrading kustomize or kflowgen) holds no text the
    # cache or the rendered files give again: the checks know overlays by their digests and the builder's objects
    many = len(todo) >= parallel.PARALLEL_FROM
    packer = Spill().pack if many else pack  # (kflowgen-kbuild's objects set aside as they arrive)
    if todo:
        # (so that, in a build of many, every overlay's text is not held at once, as they arrive)
        results.update(make(todo, opts.progress(len(todo), "kustomize build") if opts.progress else lambda: None,
                            held=not many))
    texts: dict[str, str] = {}
    digests: dict[str, str] = {}
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for overlay in overlays:
        env = layout.place(overlay).env
        if overlay in indexed:
            digests[overlay], n = indexed[overlay]
            sizes[overlay] = int(n)
            counts[env] = counts.get(env, 0) + int(n)
            continue
        result = results[overlay] if overlay not in listed else ""
        if isinstance(result, Diagnostic):
            diags.append(result)
            continue
        if isinstance(result, Made):  # read again (load) when asked for: not held
            digests[overlay] = result.digest
            index.put(keys[overlay], f"{result.digest} {result.count}")
            sizes[overlay] = result.count
            counts[env] = counts.get(env, 0) + result.count
            continue
        if overlay in listed:
            digests[overlay] = digest = listing_digest({rel: rendered.ids[rel] for rel in plain[overlay]})
        elif many and overlay in plain:  # read again (load) when asked for: not held
            digests[overlay] = digest = cache.text_digest(result, remember=False)
        else:
            texts[overlay] = result
            digests[overlay] = digest = cache.text_digest(result)
        k = keys.get(overlay) or whole.get(overlay) or digest
        found = index.get(k)
        n = (int(found.split(" ")[1]) if found is not None and found.startswith(digest)
             else sum(rendered.objects[rel] is not None for rel in plain[overlay])  # (the renderer's: one a file)
             if overlay in listed and overlay in parsed
             else (pieces.count(store, rendered.pieced.get(overlay), overlay)  # (kept with its unit's pieces)
                   or _count_files([files[rel] for rel in plain[overlay]])) if overlay in listed
             else count_objects(result))
        index.put(k, f"{digest} {n}")
        sizes[overlay] = n
        counts[env] = counts.get(env, 0) + n
    index.save()

    def load(overlay: str, raw: bool = False) -> str | bytes:
        """A build the index vouched for: from the cache, else made again, and the same text either way (a plain
        directory's from the rendered files, raw: as their bytes, not decoded)."""
        if overlay in plain:
            data = parts.data(overlay)
            if overlay in listed:  # its files, which the render checks against their blob ids, by the digest vouched
                if listing_digest({rel: rendered.ids[rel] for rel in plain[overlay]}) != digests[overlay]:
                    raise BuildLost(f"the build index names other files for {overlay} than were rendered: delete the "
                                    f"result cache ({store.folder}) and run again")
            elif hashlib.sha256(data).hexdigest() != digests[overlay]:
                raise BuildLost(f"the build of {overlay} did not build to the same text again: delete the result "
                                f"cache ({store.folder}) and run again")
            return data if raw else data.decode("utf-8")
        text = store.text("build", keys[overlay])
        if text is None:
            made = make([overlay]).get(overlay)
            text = made if isinstance(made, str) else None
        if text is None or cache.text_digest(text) != digests[overlay]:
            raise BuildLost(f"the build of {overlay} is not in the cache any more and did not build to the same "
                            f"text again: delete the result cache ({store.folder}) and run again")
        return text.encode("utf-8") if raw else text

    order = [o for o in overlays if o in digests]
    return Built(Texts(order, texts, load), counts, {"kustomize": kustomize.version}, len(todo), keys, parsed, parts,
                 rendered.objects, digests, rendered.ids, sizes), diags


def directory_files(files: dict[str, bytes], folder: str) -> list[str]:
    """The files Argo CD reads from a plain directory source: every .yaml file in it (not below it), in name order."""
    return directory_listing(files, [folder])[folder]


def directory_listing(files: Mapping[str, bytes], folders: list[str], by_folder: dict[str, list[str]] | None = None
                      ) -> dict[str, list[str]]:
    """directory_files of each folder, in one pass over the files (a team's workloads folder is one of thousands),
    or from the files of each folder (by_folder: Rendered.folders)."""
    if by_folder is None:
        by_folder = {f: [] for f in folders}
        for rel in files:
            if (folder := rel.rpartition("/")[0]) in by_folder:
                by_folder[folder].append(rel)
    return {f: sorted(rel for rel in by_folder.get(f, ()) if rel.endswith(".yaml")) for f in folders}


def listing_digest(ids: dict[str, str]) -> str:
    """What a plain directory's files are known by, file by file: the sha256 of their paths and blob ids, in order
    (git's blob ids name the bytes, so this names the folder's text as surely as the text's own sha256)."""
    return hashlib.sha256("\0".join(f"{rel}\0{i}" for rel, i in ids.items()).encode()).hexdigest()
