"""Issue 23, the gate costs what the pull request changes: a team whose findings are not in the cache is checked in
parts, only its experiments that changed; what the rules of BY_TEAM find is, in the same order, what they find on
the team's experiments whole."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kflowgen import cache, rules
from kflowgen.options import Options
from kflowgen.rules import experiments
from kflowgen.specs import read
from kflowgen.specs.model import specs_of

VISION = "specs/experiments/vision"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("KFLOWGEN_CACHE", str(tmp_path / "cache"))
    return cache.Cache(tmp_path / "cache")


@pytest.fixture
def repo(example_repo) -> Path:
    """The example repository with vision's sweep copied to three more experiments of the team (a, b, c)."""
    sweep = (example_repo / VISION / "resnet-sweep.yaml").read_text("utf-8")
    for name in "abc":
        write(example_repo, f"{VISION}/{name}.yaml", sweep.replace("name: resnet-sweep", f"name: {name}"))
    return example_repo


@pytest.fixture
def checked(monkeypatch) -> list[str]:
    """The paths of the experiments whose part the experiments rule makes, in the order made; every team checked in
    parts, however few its experiments."""
    monkeypatch.setattr(rules, "PARTS_FROM", 1)
    seen: list[str] = []
    split = rules.PARTED[experiments.check]

    def part(model, exp, teams):
        seen.append(exp.source.path)
        return split[0](model, exp, teams)

    monkeypatch.setitem(rules.PARTED, experiments.check, (part, split[1]))
    return seen


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text, "utf-8")


def edit(root: Path, rel: str, old: str, new: str) -> None:
    text = (root / rel).read_text("utf-8")
    assert old in text
    write(root, rel, text.replace(old, new, 1))


def whole(model) -> list:
    """What the rules of BY_TEAM find with each team's experiments checked whole, in the order _by_team reports."""
    by_team = [rules.RULES[name] for name in rules.BY_TEAM]
    out = [d for rule in by_team for d in rule(model, [], True)]
    for team in dict.fromkeys(s.top("team") for s in specs_of(model.experiments)):
        group = [e for e in model.experiments if e.team == team]
        out += [d for rule in by_team for d in rule(model, group, False)]
    return out


def gate(root: Path, store, checked: list[str], whole_too: tuple[str, ...] = ()) -> list:
    """_by_team on the specs read with the cache, checked against a cold run (no cache, every team whole); the
    Experiment objects made are those of the experiments checked (and those of the paths whole_too: of teams checked
    whole)."""
    checked.clear()
    model = read.read(Options(root, store=store)).model
    found = rules._by_team(model, store)
    parted = list(checked)
    cold = read.read(Options(root)).model
    assert found == whole(cold) == rules._by_team(cold, cache.Cache(None))
    checked[:] = parted
    made = {model.experiments.specs[i].path for i in model.experiments._made}
    assert made == {*checked, *whole_too} and len(checked) == len(set(checked))
    return found


def vision(found) -> set:
    return {d.code for d in found if d.path.startswith(VISION)}


def test_a_changed_experiment_is_the_one_checked_again(repo, store, checked):
    gate(repo, store, checked)
    assert len(checked) == 7  # the first run checks every experiment
    assert gate(repo, store, checked) == gate(repo, store, checked) and checked == []  # unchanged: from the team's entry
    edit(repo, f"{VISION}/b.yaml", "cpu: 8,", "cpu: 80,")  # over the quota
    assert vision(gate(repo, store, checked)) == {"KF324"} and checked == [f"{VISION}/b.yaml"]
    write(repo, f"{VISION}/d.yaml", (repo / VISION / "a.yaml").read_text().replace("name: a", "name: d"))
    gate(repo, store, checked)
    assert checked == [f"{VISION}/d.yaml"]  # added
    (repo / VISION / "b.yaml").unlink()
    assert vision(gate(repo, store, checked)) == set() and checked == []  # removed: every part from the entry
    (repo / VISION / "c.yaml").rename(repo / VISION / "e.yaml")
    assert vision(gate(repo, store, checked)) == {"KF321"} and checked == [f"{VISION}/e.yaml"]  # c in e.yaml
    edit(repo, f"{VISION}/e.yaml", "name: c", "name: e")
    gate(repo, store, checked)
    assert checked == [f"{VISION}/e.yaml"]  # renamed


def test_a_name_taken_twice_is_reported_at_the_later_one_only(repo, store, checked):
    gate(repo, store, checked)
    write(repo, f"{VISION}/a.yml", (repo / VISION / "a.yaml").read_text().replace("cpu: 8,", "cpu: 80,"))
    found = gate(repo, store, checked)
    assert checked == [f"{VISION}/a.yml"]
    assert [(d.path, d.code) for d in found if d.path.endswith("a.yml")] == [(f"{VISION}/a.yml", "KF321")]
    edit(repo, f"{VISION}/a.yaml", "epochs: 10", "epochs: 11")  # the earlier one changes: still the later one
    assert [(d.path, d.code) for d in gate(repo, store, checked) if d.path.endswith("a.yml")] == [
        (f"{VISION}/a.yml", "KF321")] and checked == [f"{VISION}/a.yaml"]
    (repo / VISION / "a.yaml").unlink()  # a.yml is a again: its own findings (KF324), no part made for it
    assert vision(gate(repo, store, checked)) == {"KF324"} and checked == []


def test_a_job_name_taken_twice_is_reported_whichever_experiment_changes(repo, store, checked, monkeypatch):
    """Job names carry the hash of the trial's object, which holds the experiment's name: two experiments share one
    only by a hash collision, which Job names made of the trial's values alone stand in for here."""
    monkeypatch.setattr(experiments, "trial_name", lambda exp, team, p, t, queued=False:
                        "job-" + "-".join(f"{k}{v}" for k, v in t.items()).replace(".", ""))
    found = gate(repo, store, checked)
    twice = [d for d in found if d.code == "KF328"]
    assert len(twice) == 12 and {d.path for d in twice} == {f"{VISION}/{n}.yaml" for n in ("b", "c", "resnet-sweep")}
    edit(repo, f"{VISION}/a.yaml", "dropout: [0.3, 0.5]", "dropout: [0.2, 0.4]")  # a's trials differ: b's first
    found = gate(repo, store, checked)
    assert checked == [f"{VISION}/a.yaml"] and {d.path for d in found if d.code == "KF328"} == {
        f"{VISION}/{n}.yaml" for n in ("c", "resnet-sweep")}
    edit(repo, f"{VISION}/c.yaml", "dropout: [0.3, 0.5]", "dropout: [0.2, 0.4]")  # c's trials are a's
    found = gate(repo, store, checked)
    assert checked == [f"{VISION}/c.yaml"] and {d.path for d in found if d.code == "KF328"} == {
        f"{VISION}/{n}.yaml" for n in ("c", "resnet-sweep")}
    other = {d.path: d.message.rsplit(" ", 1)[1] for d in found if d.code == "KF328"}
    assert other == {f"{VISION}/c.yaml": f"{VISION}/a.yaml)", f"{VISION}/resnet-sweep.yaml": f"{VISION}/b.yaml)"}


@pytest.mark.parametrize("what", ["team", "platform", "served model"])
def test_a_change_to_what_every_experiment_of_the_team_reads_checks_them_all(repo, store, checked, what):
    gate(repo, store, checked)
    rel, old, new = {"team": ("specs/teams/vision.yaml", "cpu: 64", "cpu: 16"),
                     "platform": ("specs/platform.yaml", "queueing:", "queueing:  # trials queue"),
                     "served model": ("specs/models/vision/resnet.yaml", "replicas: 3", "replicas: 2")}[what]
    edit(repo, rel, old, new)
    found = gate(repo, store, checked)
    every = sorted(s.path for s in specs_of(read.read(Options(repo)).model.experiments))
    assert sorted(checked) == (every if what == "platform" else [f"{VISION}/{n}.yaml" for n in
                                                                  ("a", "b", "c", "resnet-sweep")])
    assert vision(found) == ({"KF325"} if what == "team" else set())  # 4 trials of 8 cpu at once in 16


def test_an_experiment_of_a_team_that_does_not_exist(repo, store, checked):
    gate(repo, store, checked)
    edit(repo, f"{VISION}/a.yaml", "team: vision", "team: visio")
    assert {d.code for d in gate(repo, store, checked) if d.path.endswith("a.yaml")} == {"KF320", "KF321"}
    assert checked == [f"{VISION}/a.yaml"]
    edit(repo, f"{VISION}/b.yaml", "team: vision", "team: visio")  # visio's other experiment
    gate(repo, store, checked)
    assert checked == [f"{VISION}/b.yaml"]
    team = (repo / "specs/teams/vision.yaml").read_text()  # the team now exists: its experiments checked again
    write(repo, "specs/teams/visio.yaml", team.replace("name: vision", "name: visio"))
    found = gate(repo, store, checked)
    assert sorted(checked) == [f"{VISION}/a.yaml", f"{VISION}/b.yaml"] and "KF320" not in {d.code for d in found}


def parts_entries(store) -> list[Path]:
    """The entries of vision's parts."""
    return [e for e in (store.folder / "rules").rglob("*")
            if e.is_file() and e.read_bytes()[65:].startswith(b'{"specs/experiments/vision/')]


def reshaped(body: bytes) -> list[bytes]:
    """Intact entries of other shapes than _in_parts writes."""
    rows = json.loads(body)
    ref = next(iter(rows))
    out = [b"[]", b"{}x", json.dumps({ref: rows[ref][:-1]}).encode()]
    for r, rule in enumerate(rules.BY_TEAM):
        row = json.loads(body)
        if rule == "experiments":
            row[ref][r][4] = [1]  # a Job name not a string
        else:
            row[ref][r] = [["x", "1", 1, "KF204", "m", "error", ""]]  # a line not a number
        out.append(json.dumps(row).encode())
    return out


@pytest.mark.parametrize("how", ["damaged", *(f"reshaped-{n}" for n in range(7))])
def test_an_entry_of_parts_damaged_or_of_another_shape_is_not_used(repo, store, checked, how):
    gate(repo, store, checked)
    (entry,) = parts_entries(store)
    body = entry.read_bytes()[65:]
    if how == "damaged":
        entry.write_bytes(entry.read_bytes().replace(b'"vision"', b'"visioN"', 1))  # not its checksum
    else:
        other = reshaped(body)[int(how.split("-")[1])]
        entry.write_bytes(hashlib.sha256(other).hexdigest().encode() + b"\n" + other)
        assert store.lookup("rules", entry.name) == other  # intact
    edit(repo, f"{VISION}/a.yaml", "epochs: 10", "epochs: 11")
    gate(repo, store, checked)
    assert sorted(checked) == sorted(f"{VISION}/{n}.yaml" for n in ("a", "b", "c", "resnet-sweep"))
    assert parts_entries(store)[0].read_bytes()[65:] != body  # written again, whole


def test_an_entry_of_parts_holds_the_teams_experiments_now_and_is_written_only_when_one_was_checked(repo, store,
                                                                                                    checked):
    gate(repo, store, checked)
    (entry,) = parts_entries(store)
    (repo / VISION / "b.yaml").unlink()
    gate(repo, store, checked)
    assert checked == [] and parts_entries(store) == [entry] and len(json.loads(entry.read_bytes()[65:])) == 4
    edit(repo, f"{VISION}/a.yaml", "epochs: 10", "epochs: 11")
    gate(repo, store, checked)
    rows = json.loads(entry.read_bytes()[65:])
    assert sorted(ref.split(":")[0] for ref in rows) == [f"{VISION}/{n}.yaml" for n in ("a", "c", "resnet-sweep")]


def test_a_team_of_fewer_experiments_than_parts_are_kept_for_is_checked_whole(repo, store, checked, monkeypatch):
    monkeypatch.setattr(rules, "PARTS_FROM", 4)  # vision has 4 experiments, nlp 2, recsys 1
    small = ("specs/experiments/nlp/bert-random.yaml", "specs/experiments/nlp/llm-finetune.yaml",
             "specs/experiments/recsys/feature-stats.yaml")
    gate(repo, store, checked, whole_too=small)
    assert sorted(checked) == [f"{VISION}/{n}.yaml" for n in ("a", "b", "c", "resnet-sweep")]
    (entry,) = parts_entries(store)
    assert [e for e in (store.folder / "rules").rglob("*") if e.is_file() and e.read_bytes()[65:66] == b"{"] == [entry]
    nlp = small[0]
    edit(repo, nlp, "team: nlp", "team: nlq")  # nlq and nlp checked whole, no part made
    assert {d.code for d in gate(repo, store, checked, whole_too=small[:2]) if d.path == nlp} == {"KF320", "KF321"} and checked == []
