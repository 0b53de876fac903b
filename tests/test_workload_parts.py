"""A team of many experiments keeps which files each experiment made (targets.cached PARTS_FROM), so that a change
to one experiment renders that one: the rendered files are always those a cold render gives, and a kept list that
does not match what it names is never used."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kflowgen import cache
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.targets import cached, render, team
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
    data = cached._sliced(store.lookup("render", cached.data_key(digest)), sizes)
    for i, (path, d) in enumerate(zip(paths, data)):
        if f"/{name}.yaml" in d.decode("utf-8").splitlines()[0]:  # the header names the experiment's spec file
            data[i] = d + b"# another experiment's\n"
            ids[i] = cache.blob_id(data[i])
    index, body = cached._pack(paths, data, ids, folders)
    store.put("render", cached.data_key(hashlib.sha256(body).hexdigest()), body)
    _rewritten(unit, index)


TAMPERED = {  # how the kept list is spoilt -> the experiments rendered again
    "damaged": (lambda entry, store: entry.write_bytes(entry.read_bytes().replace(b"more-3", b"more-8")), None),
    "another shape": (lambda entry, store: _rewritten(entry, b'{"more-3": []}'), None),
    "too few ids": (lambda entry, store: _rewritten(entry, entry.read_bytes().partition(b"\n")[2].replace(
        b'.yaml"], ["', b'.yaml"], ["0", "', 1)), None),
    "an experiment's files not those its render entry holds": (
        lambda entry, store: _other_bytes(entry, store, "more-3"), ["more-3"]),
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
