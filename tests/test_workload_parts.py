"""A team of many experiments keeps which files each experiment made (targets.cached PARTS_FROM), so that a change
to one experiment renders that one: the rendered files are always those a cold render gives, and a kept list that
does not match what it names is never used."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import git
from kflowgen import cache
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.targets import cached, pieces, render, team
from kflowgen.targets.cached import render_cached

EXPERIMENTS = "specs/experiments/vision"


@pytest.fixture
def store(tmp_path):
    return cache.Cache(tmp_path / "cache")


@pytest.fixture
def repo(example_repo, monkeypatch):
    """The example with five more experiments of team vision in dev, and parts kept from two experiments on."""
    monkeypatch.setattr(cached, "PARTS_FROM", 2)
    text = (example_repo / EXPERIMENTS / "resnet-sweep.yaml").read_text("utf-8")
    for n in range(5):
        (example_repo / EXPERIMENTS / f"more-{n}.yaml").write_text(
            text.replace("name: resnet-sweep", f"name: more-{n}").replace("epochs: 10", f"epochs: {n + 1}"), "utf-8")
    return example_repo


@pytest.fixture
def rendered(monkeypatch) -> list[str]:
    """The experiments of team vision render_experiment is called for, by name."""
    calls: list[str] = []
    real = team.render_experiment

    def spy(e, t, p, env):
        if t.name == "vision":
            calls.append(e.name)
        return real(e, t, p, env)

    monkeypatch.setattr(team, "render_experiment", spy)
    return calls


def _render(repo: Path, store: cache.Cache, rendered: list[str]):
    """Render with the store (rendered: the experiments this render made) and check the files are a cold
    render's."""
    model, diags = pipeline.load(Options(repo))
    assert model is not None, diags
    rendered.clear()
    got = render_cached(model, Options(Path("."), 1, store))
    made = sorted(rendered)
    cold = render_cached(model, Options(Path("."), 1, cache.Cache(None)))
    want = render(model)
    assert got.files == want and list(got.files) == list(want) and got.ids == {p: cache.blob_id(d) for p, d in
                                                                               want.items()}
    assert got.origin == cold.origin
    rendered[:] = made
    return model


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new), "utf-8")


CHANGES = {  # what the pull request does -> the experiments rendered again (in dev, where they all run)
    "one experiment edited": (lambda r: _edit(r / EXPERIMENTS / "more-2.yaml", "epochs: 3", "epochs: 30"),
                              ["more-2"]),
    "one experiment added": (lambda r: (r / EXPERIMENTS / "more-9.yaml").write_text(
        (r / EXPERIMENTS / "more-0.yaml").read_text("utf-8").replace("name: more-0", "name: more-9"), "utf-8"),
                             ["more-9"]),
    "one experiment removed": (lambda r: (r / EXPERIMENTS / "more-4.yaml").unlink(), []),
    "one experiment renamed": (lambda r: _edit((r / EXPERIMENTS / "more-1.yaml").rename(
        r / EXPERIMENTS / "renamed.yaml"), "name: more-1", "name: renamed"), ["renamed"]),
    "the team file": (lambda r: _edit(r / "specs/teams/vision.yaml", "classification and detection",
                                      "classification, detection and segmentation"),
                      ["more-0", "more-1", "more-2", "more-3", "more-4", "resnet-sweep"]),
    "the platform file": (lambda r: (r / "specs/platform.yaml").write_text(
        (r / "specs/platform.yaml").read_text("utf-8") + "# a comment\n", "utf-8"),
                          ["more-0", "more-1", "more-2", "more-3", "more-4", "resnet-sweep"]),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_renders_again_only_the_experiments_it_changes(repo, store, rendered, change):
    """Each experiment's files come from the kept list where its spec file, the team's and the platform's are those
    it was rendered with; the rest are rendered, and the files are byte for byte a cold render's."""
    _render(repo, store, rendered)
    assert rendered == ["more-0", "more-1", "more-2", "more-3", "more-4", "resnet-sweep"]
    act, again = CHANGES[change]
    act(repo)
    _render(repo, store, rendered)
    assert rendered == sorted(again)
    _render(repo, store, rendered)
    assert rendered == []  # the team's unit from the cache


def _names(repo: Path) -> list[str]:
    return sorted(p.stem for p in (repo / EXPERIMENTS).glob("*.yaml"))


def _kept(model, store: cache.Cache) -> Path:
    return store._path("render", cached._workloads_key(model, "dev", "vision"))


def _rewritten(entry: Path, body: bytes) -> None:
    """An entry holding body under a checksum made to match: intact, as far as the checksum can tell."""
    entry.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def _other_bytes(entry: Path, store: cache.Cache, name: str) -> None:
    """The render entries the list names, intact, with other bytes (and their blob id) for one experiment's files:
    as if a later experiment had written over them."""
    unit = store._path("render", json.loads(entry.read_bytes().partition(b"\n")[2])[0])
    paths, sizes, ids, folders, _, digest = cached.unpack(unit.read_bytes().partition(b"\n")[2])
    assert pieces.pieced(digest)
    data = pieces.read(store, digest, sizes)
    for i, (path, d) in enumerate(zip(paths, data)):
        if f"/{name}.yaml" in d.decode("utf-8").splitlines()[0]:  # the header names the experiment's spec file
            data[i] = d + b"# another experiment's\n"
            ids[i] = cache.blob_id(data[i])
    digest, based, stored = pieces.put(store, paths, data, ids, {})
    assert stored
    _rewritten(unit, cached._index(paths, list(map(len, data)), ids, folders, based, digest))


def _without(entry: Path, store: cache.Cache, what: str) -> None:
    """The render entry the list names without its map of pieces, or without the pieces it names."""
    unit = store._path("render", json.loads(entry.read_bytes().partition(b"\n")[2])[0])
    digest = cached.unpack(unit.read_bytes().partition(b"\n")[2])[5]
    for d in [digest] if what == "map" else [d for d, *_ in pieces._map(store, digest)]:
        store._path("render", pieces.key(d)).unlink()


TAMPERED = {  # how the kept list is spoilt -> the experiments rendered again
    "damaged": (lambda entry, store: entry.write_bytes(entry.read_bytes().replace(b"more-3", b"more-8")), None),
    "another shape": (lambda entry, store: _rewritten(entry, b'{"more-3": []}'), None),
    "too few ids": (lambda entry, store: _rewritten(entry, entry.read_bytes().partition(b"\n")[2].replace(
        b'.yaml"], ["', b'.yaml"], ["0", "', 1)), None),
    "an experiment's files not those its render entry holds": (
        lambda entry, store: _other_bytes(entry, store, "more-3"), ["more-3"]),
    "its render entry's map of pieces gone": (lambda entry, store: _without(entry, store, "map"), None),
    "its render entry's pieces gone": (  # more-2 rendered, then the whole team: its other files are not there
        lambda entry, store: _without(entry, store, "pieces"), ["more-0", "more-1", "more-2", "more-3", "more-4",
                                                                 "resnet-sweep"]),
    "its render entry gone": (lambda entry, store: store._path(
        "render", json.loads(entry.read_bytes().partition(b"\n")[2])[0]).unlink(), None),
}


@pytest.mark.parametrize("how", TAMPERED)
def test_a_kept_list_that_does_not_match_is_not_used(repo, store, rendered, how):
    """A kept list that is damaged, of another shape, whose blob ids are not those of its render entry's files, or
    whose render entry is gone, gives no experiment's files: those are rendered again, and the files are a cold
    render's."""
    model = _render(repo, store, rendered)
    entry = _kept(model, store)
    assert entry.is_file()
    spoil, again = TAMPERED[how]
    spoil(entry, store)
    _edit(repo / EXPERIMENTS / "more-2.yaml", "epochs: 3", "epochs: 30")  # the team's unit is rendered again
    _render(repo, store, rendered)
    assert rendered == (_names(repo) if again is None else sorted(["more-2", *again]))


def test_a_small_team_keeps_no_list(repo, store, monkeypatch):
    """Below PARTS_FROM experiments, a team's unit is rendered whole: no list is kept."""
    monkeypatch.setattr(cached, "PARTS_FROM", 7)
    model = _render(repo, store, [])
    assert not _kept(model, store).exists()
    monkeypatch.setattr(cached, "PARTS_FROM", 6)
    (store.folder / "render").rename(store.folder / "old")
    model = _render(repo, store, [])
    assert _kept(model, store).is_file()


WORKLOADS = "overlays/dev/teams/vision/workloads"


def _pieces_of(store: cache.Cache, repo: Path) -> dict[str, set[str]]:
    """The keys of the pieces of team vision's unit in dev, as the cache holds it for the repository, and the folders
    of each one's files."""
    model, _ = pipeline.load(Options(repo))
    index = cached.unpack(store.lookup("render", cached._unit_keys(model, [("dev", "vision")])["dev", "vision"]))
    assert index is not None and pieces.pieced(index[5])
    edges = pieces.bounds(index[0])
    return {pieces.key(d): {p.rsplit("/", 1)[0] for p in index[0][a:b]}
            for (d, *_), a, b in zip(pieces._map(store, index[5]), edges, edges[1:])}


def test_a_pull_request_to_a_team_in_pieces_touches_only_the_pieces_it_changes(repo, store, monkeypatch):
    """A team's files kept in pieces (several here): a pull request that changes one experiment gets the report and
    diff a gate without the cache gives, and neither reads (but for the last byte, to know it is there) nor writes a
    piece of its workloads folder whose files it did not change (at 5,000 experiments the others are megabytes)."""
    monkeypatch.setattr(pieces, "EVERY", 3)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "main"]):
        git(repo, *args)
    assert pipeline.validate(Options(repo, store=store)).diagnostics == []  # main, as its CI leaves the cache
    before = _pieces_of(store, repo)
    _edit(repo / EXPERIMENTS / "more-2.yaml", "epochs: 3", "epochs: 30")
    assert not pipeline.render_to_disk(Options(repo), False).errors
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "more-2: more epochs")
    touched: dict[str, int] = {}  # key -> bytes read or written (a whole entry: -1)
    for name in ("read", "pieces", "put"):
        real = getattr(cache.Cache, name)
        monkeypatch.setattr(cache.Cache, name, lambda self, kind, k, *a, real=real, name=name: touched.update(
            {k: touched.get(k, 0) + sum(n for _, n in a[0]) if name == "pieces" else -1}) or real(self, kind, k, *a))
    warm = pipeline.gate(Options(repo, store=store), "HEAD~1")
    monkeypatch.undo()
    monkeypatch.setattr(cached, "PARTS_FROM", 2)
    monkeypatch.setattr(pieces, "EVERY", 3)
    after = _pieces_of(store, repo)
    kept = {k for k, folders in after.items() if k in before and folders == {WORKLOADS}}  # files not changed
    assert len(kept) > 2 and set(after) - set(before) and all(touched.get(k, 0) in (0, 1) for k in kept)
    assert {touched.get(k) for k in kept} == {1}  # each looked for (its last byte), none read whole nor written
    assert warm == pipeline.gate(Options(repo), "HEAD~1") and warm[1].changes


def test_a_units_files_are_read_from_the_pieces_that_hold_them(repo, store, monkeypatch):
    """A unit in pieces gives its files' bytes as rendered: all of them, one piece's, or some files' (as a diff reads
    the Jobs that differ) from the pieces that hold those alone."""
    monkeypatch.setattr(pieces, "EVERY", 3)
    model = _render(repo, store, [])
    want = render(model)
    paths, sizes, ids, _, _, digest = cached.unpack(store.lookup("render", cached._unit_keys(
        model, [("dev", "vision")])["dev", "vision"]))
    assert pieces.read(store, digest, sizes) == [want[p] for p in paths]
    edges, found = pieces.bounds(paths), pieces._map(store, digest)
    assert len(found) == len(edges) - 1 > 3
    for p, (a, b) in enumerate(zip(edges, edges[1:])):
        assert pieces.read(store, digest, sizes[a:b], p) == [want[rel] for rel in paths[a:b]]
    read: list[str] = []
    real = cache.Cache.pieces
    monkeypatch.setattr(cache.Cache, "pieces",
                        lambda self, kind, k, spans: read.append(k) or real(self, kind, k, spans))
    picks = [edges[1], edges[2] - 1, len(paths) - 1]  # the first and last file of the second piece, the last file
    assert pieces.spans(store, digest, sizes, picks) == [want[paths[n]] for n in picks]
    assert set(read) == {pieces.key(found[1][0]), pieces.key(found[-1][0])}
    assert pieces.spans(store, digest, sizes[:-1] + [sizes[-1] + 1], [len(paths) - 1]) is None  # past its piece


def _unit_index(model, store: cache.Cache) -> tuple:
    return cached.unpack(store.lookup("render", cached._unit_keys(model, [("dev", "vision")])["dev", "vision"]))


def test_a_piece_gone_from_the_cache_is_made_again_not_named(repo, store, rendered, monkeypatch):
    """A piece of files the change did not touch, gone from the cache: the team is rendered whole (the bytes of its
    files that piece held are gone with it) and the piece kept again, so that the new map names no missing piece."""
    monkeypatch.setattr(pieces, "EVERY", 3)
    model = _render(repo, store, rendered)
    paths, _, _, _, _, digest = _unit_index(model, store)
    edges = pieces.bounds(paths)
    gone = next(pieces.key(d) for (d, *_), a, b in zip(pieces._map(store, digest), edges, edges[1:])
                if all(p.startswith(WORKLOADS + "/") and "more-2" not in p for p in paths[a:b]))
    store._path("render", gone).unlink()
    _edit(repo / EXPERIMENTS / "more-2.yaml", "epochs: 3", "epochs: 30")
    model = _render(repo, store, rendered)
    assert rendered == sorted(["more-2", *_names(repo)])  # more-2, then the whole team
    paths, sizes, _, _, _, digest = _unit_index(model, store)
    assert store._path("render", gone).is_file() and pieces.read(store, digest, sizes) is not None


def test_a_team_whose_pieces_the_cache_lost_and_cannot_keep_is_rendered_again_once(repo, store, monkeypatch):
    """When a team's pieces are gone and the cache cannot keep them again (a read-only or full disk), its files are
    rendered again once, not once for each of its pieces asked for."""
    monkeypatch.setattr(pieces, "EVERY", 3)
    model = _render(repo, store, [])
    _, _, _, _, _, digest = _unit_index(model, store)
    for d, *_ in pieces._map(store, digest):
        store._path("render", pieces.key(d)).unlink()
    monkeypatch.setattr(cache.Cache, "put", lambda *a: False)
    units: list = []
    real = cached.unit
    monkeypatch.setattr(cached, "unit", lambda model, *u: units.append(u) or real(model, *u))
    got = render_cached(model, Options(Path("."), 1, store))
    assert dict(got.files.items()) == render(model) and units.count(("dev", "vision")) == 1


def test_an_empty_last_file_is_read_from_a_unit_in_pieces(store):
    """An empty file at the very end of a unit in pieces is read as empty (its start is the data's end)."""
    paths, data = ["a/x.yaml", "a/y.yaml", "a/z.yaml"], [b"x: 1\n", b"y: 2\n", b""]
    digest, based, stored = pieces.put(store, paths, data, [cache.blob_id(d) for d in data], {})
    assert stored and based == [] and pieces.pieced(digest)
    assert pieces.count(store, digest, "a") is None  # (an empty file is not counted apart: documents.count_files)
    assert pieces.spans(store, digest, list(map(len, data)), [2, 0]) == [b"", b"x: 1\n"]
