"""Training experiments: spec parsing, trials, Job names, rendered Jobs (run for real, validated by kubeconform), rules."""
from __future__ import annotations

import dataclasses

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kflowgen import codes
from kflowgen.targets import emit
from kflowgen.checks import schemas as kschemas
from kflowgen.specs import schema as specschema
from kflowgen.specs import experiment as E, layout
from kflowgen.targets import training as X
from kflowgen.specs.loader import SpecFile, load_bytes, load_file, load_text
from kflowgen.specs.model import Model, platform_from, team_from
from kflowgen.rules import experiments as rule

PROJECT = Path(__file__).resolve().parents[1]
UPSTREAM_CRDS = PROJECT.parent / "shared" / "upstream" / "crds" / "kubeflow.org"
UPSTREAM_TRAINER_CRDS = PROJECT.parent / "shared" / "upstream" / "crds" / "trainer.kubeflow.org"
KUBECONFORM = PROJECT / ".tools" / "bin" / "kubeconform"
KUSTOMIZE = PROJECT / ".tools" / "bin" / "kustomize"
EXAMPLES = sorted(p.relative_to(PROJECT).as_posix() for p in (PROJECT / "specs" / "experiments").rglob("*.yaml"))
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

def _model() -> Model:
    platform = platform_from(load_file(PROJECT, "specs/platform.yaml")[0])
    teams = [team_from(load_file(PROJECT, f"specs/teams/{t}.yaml")[0], list(platform.environments))
             for t in ("nlp", "recsys", "vision")]
    return Model(platform, teams)


MODEL = _model()
TEAMS = {t.name: t for t in MODEL.teams}
LEGACY = dataclasses.replace(MODEL, platform=dataclasses.replace(MODEL.platform, distributed=None))  # says nothing


def example(rel: str) -> E.Experiment:
    spec, diags = load_file(PROJECT, rel)
    assert not diags
    return E.experiment_from(spec)


def parse(text: str, path: str = "specs/experiments/vision/x.yaml") -> E.Experiment:
    spec, diags = load_text(text, path)
    assert not diags and not specschema.validate("experiment", spec), specschema.validate("experiment", spec)
    return E.experiment_from(spec)


def render_all(exp: E.Experiment, env: str = "dev") -> list[dict]:
    return list(X.render_experiment(exp, TEAMS[exp.team], MODEL.platform, env).values())


BASE = "team: vision\nname: x\nrun: python train.py\nresources: {cpu: 1, memory: 1Gi}\nenvironments: [dev]\n"


# --- schema -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", EXAMPLES)
def test_example_specs_are_schema_valid(rel):
    spec, diags = load_file(PROJECT, rel)
    assert diags == [] and specschema.validate("experiment", spec) == []


def test_every_schema_field_has_a_title_and_description():
    schema = json.loads(specschema.schema_text("experiment"))

    def walk(node, where):
        for name, sub in node.get("properties", {}).items():
            if where != "then":
                assert sub.get("title") and sub.get("description"), f"{where}.{name}"
            walk(sub, f"{where}.{name}")
        for key in ("additionalProperties", "items", "propertyNames"):
            if isinstance(node.get(key), dict) and "$ref" not in node[key]:
                assert node[key].get("description"), f"{where}.{key}"
                walk(node[key], where)
        for sub in node.get("oneOf", []):
            walk(sub, where)

    walk(schema, "experiment")
    walk(schema["then"], "then")
    for name, sub in schema["$defs"].items():
        assert sub.get("title") and sub.get("description"), name


@pytest.mark.parametrize("extra, code, pos", [
    ("workdir: ../other\n", "KF204", (6, 10)),
    ("workdir: /etc\n", "KF204", (6, 10)),
    ("workdir: a/../../b\n", "KF204", (6, 10)),
    ("env: {KFLOWGEN_TRIAL: x}\n", "KF204", (6, 7)),
    ("env: {1X: x}\n", "KF204", (6, 7)),
    ("deadline: 2w\n", "KF204", (6, 11)),
    ("hyperparams: {lr: 1}\n", "KF201", (6, 1)),
    ("sweep: {grid: {a: [1]}, random: {seed: 1, trials: 1, params: {b: [1]}}}\n", "KF204", (6, 8)),
    ("sweep: {}\n", "KF204", (6, 8)),
    ("sweep: {grid: {lr: []}}\n", "KF204", (6, 20)),
    ("sweep: {random: {seed: 1, trials: 300, params: {lr: [1]}}}\n", "KF204", (6, 35)),
    ("framework: tensorflow\n", "KF202", (1, 1)),
    ("framework: tensorflow\nworkers: 1\n", "KF204", (7, 10)),
    ("argStyle: click\n", "KF204", (6, 11)),
])
def test_schema_refuses(extra, code, pos):
    assert (code, pos) in schema_problems(BASE + extra)


def test_schema_refuses_a_pod_without_memory():
    assert schema_problems(BASE.replace(", memory: 1Gi", "")) == [("KF202", (4, 1))]


def schema_problems(text: str) -> list[tuple]:
    spec, _ = load_text(text, "specs/experiments/vision/x.yaml")
    return [(d.code, (d.line, d.col)) for d in specschema.validate("experiment", spec)]


# --- parsing ------------------------------------------------------------------------------------------------------

def test_values_keep_their_spelling():
    exp = parse(BASE + "hyperparameters: {lr: 1e-3, dropout: 0.50, fp16: true, tag: '007', n: 0x10, name: adam}\n"
                       "sweep: {grid: {wd: [1.0e-4, 0.10, 3]}}\nenv: {THREADS: '08'}\n")
    assert exp.hyperparameters == {"dropout": "0.50", "fp16": "true", "lr": "1e-3", "n": "0x10", "name": "adam",
                                   "tag": "007"}
    assert exp.grid == {"wd": ("1.0e-4", "0.10", "3")}
    assert exp.env == {"THREADS": "08"}


@pytest.mark.parametrize("field, value, expected", [
    ("deadline", "30m", 1800), ("deadline", "6h", 21600), ("deadline", "2d", 172800), ("deadline", "45s", 45),
])
def test_deadline_in_seconds(field, value, expected):
    assert parse(BASE + f"{field}: {value}\n").deadline == expected


@pytest.mark.parametrize("extra, kind, budget, trainer_kind, trainer_budget", [
    ("", "Job", 63, "Job", 63), ("workers: 2\n", "PyTorchJob", 54, "TrainJob", 63 - len("-node-0-1-xxxxx")),
    ("workers: 11\n", "PyTorchJob", 53, "TrainJob", 63 - len("-node-0-10-xxxxx")),
    ("workers: 3\nframework: tensorflow\n", "TFJob", 54, "TFJob", 54),  # no TensorFlow on Trainer: KF350
])
def test_kind_and_name_budget(extra, kind, budget, trainer_kind, trainer_budget):
    """On the legacy Training Operator (a platform without training.distributed), and on Kubeflow Trainer (MODEL's)."""
    exp = parse(BASE + extra)
    assert (X.kind(exp, LEGACY.platform), X.name_budget(exp, LEGACY.platform)) == (kind, budget)
    assert (X.kind(exp, MODEL.platform), X.name_budget(exp, MODEL.platform)) == (trainer_kind, trainer_budget)


def test_run_that_does_not_split_gives_no_command():
    assert parse(BASE.replace("python train.py", "'python \"train.py'")).command == ()


# --- trials -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sweep, expected", [
    ("", [{}]),
    ("sweep: {grid: {lr: [0.01, 1e-3], dropout: [0.3, 0.50]}}\n",
     [{"dropout": "0.3", "lr": "0.01"}, {"dropout": "0.3", "lr": "1e-3"},
      {"dropout": "0.50", "lr": "0.01"}, {"dropout": "0.50", "lr": "1e-3"}]),
    ("sweep: {grid: {opt: [sgd, adam, lamb]}}\n", [{"opt": "sgd"}, {"opt": "adam"}, {"opt": "lamb"}]),
])
def test_grid_trials_in_order(sweep, expected):
    assert E.trials(parse(BASE + sweep)) == expected


def test_random_trials_are_fixed_by_the_seed():
    # Pinned: these values are part of the Job names; a change here re-runs every random sweep.
    assert E.trials(example("specs/experiments/nlp/bert-random.yaml")) == [
        {"batch_size": "32", "learning_rate": "0.0007866", "warmup_steps": "404"},
        {"batch_size": "16", "learning_rate": "1.396e-05", "warmup_steps": "548"},
        {"batch_size": "16", "learning_rate": "5.387e-05", "warmup_steps": "59"},
        {"batch_size": "16", "learning_rate": "1.188e-05", "warmup_steps": "444"},
        {"batch_size": "32", "learning_rate": "1.379e-05", "warmup_steps": "92"},
        {"batch_size": "32", "learning_rate": "1.313e-05", "warmup_steps": "579"},
    ]


def test_random_trials_stay_in_range_and_do_not_touch_the_global_generator():
    import random
    random.seed(1)
    before = random.random()
    random.seed(1)
    exp = parse(BASE + "sweep: {random: {seed: 3, trials: 50, params: {lr: {min: 1e-6, max: 1e-2, log: true}, "
                       "bs: {min: 8, max: 512, log: true, integer: true}, p: {min: 0.1, max: 0.9}}}}\n")
    runs = E.trials(exp)
    assert random.random() == before
    assert len(runs) == 50 and runs == E.trials(exp)
    for t in runs:
        assert 1e-6 <= float(t["lr"]) <= 1e-2 and 8 <= int(t["bs"]) <= 512 and 0.1 <= float(t["p"]) <= 0.9
    assert sum(float(t["lr"]) < 1e-4 for t in runs) > 10  # log scale: small values are as likely as large ones
    other = E.trials(E.experiment_from(SpecFile(exp.source.path, {
        **exp.source.data, "sweep": {"random": {**exp.source.data["sweep"]["random"], "seed": 4}}})))
    assert other != runs


def test_choices_only_sweep_stops_at_the_distinct_combinations():
    exp = parse(BASE + "sweep: {random: {seed: 1, trials: 10, params: {a: [x, z], b: [1, 2]}}}\n")
    assert sorted(map(str, E.trials(exp))) == sorted(map(str, [{"a": a, "b": b} for a in "xz" for b in "12"]))


@pytest.mark.parametrize("style, expected", [
    ("hydra", ["dropout=0.3", "epochs=10", "lr=1e-3"]),
    ("argparse", ["--dropout=0.3", "--epochs=10", "--lr=1e-3"]),
])
def test_arguments_sorted_and_trial_values_win(style, expected):
    exp = parse(BASE + f"argStyle: {style}\nhyperparameters: {{lr: 0.1, epochs: 10}}\n")
    assert X.arguments(exp, {"lr": "1e-3", "dropout": "0.3"}) == expected


# --- names --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("experiment, trial, budget, expected", [
    ("resnet-sweep", {"dropout": "0.3", "lr": "1e-3"}, 63, "resnet-sweep-dropout0p3-lr1e-3-0123abcd"),
    ("resnet-sweep", {}, 63, "resnet-sweep-0123abcd"),
    ("bert", {"optimizer": "adam"}, 63, "bert-optimizer-adam-0123abcd"),
    ("bert", {"learning_rate": "0.0007866", "batch_size": "32", "warmup_steps": "404"}, 40,
     "bert-lr0p0007866-bs32-ws404-0123abcd"),
    ("a" * 40, {"learning_rate": "0.1"}, 54, "a" * 39 + "-lr0p1-0123abcd"),
    ("1st", {}, 63, "x-1st-0123abcd"),
    ("Ünïcode Näme!", {"ß": "∞"}, 63, "n-code-n-me-0123abcd"),
    ("", {"": ""}, 12, "x-0123abcd"),
])
def test_job_names(experiment, trial, budget, expected):
    name = X.job_name(experiment, trial, "0123abcd" + "f" * 56, budget)
    assert name == expected and len(name) <= budget and DNS_1035.match(name)


def test_example_names_are_pinned():
    # A name is a contract: changing the naming scheme, or what every pod gets (as the /dev/shm volume and the
    # default deadline did in 0.x: README, "Upgrading"), makes Argo CD create every Job again. So does turning
    # queueing on (docs/queueing.md, "Queueing"), as the example did for dev: these are the queued Jobs' names.
    assert [o["metadata"]["name"] for o in render_all(example("specs/experiments/vision/resnet-sweep.yaml"))] == [
        "resnet-sweep-dropout0p3-lr0p01-6753564d", "resnet-sweep-dropout0p3-lr1e-3-1680e926",
        "resnet-sweep-dropout0p5-lr0p01-12a01367", "resnet-sweep-dropout0p5-lr1e-3-3d2e67d2"]


@settings(max_examples=300, deadline=None)
@given(experiment=st.text(max_size=120), values=st.lists(st.dictionaries(st.text(max_size=40), st.text(max_size=40),
                                                                         max_size=6), max_size=8),
       budget=st.integers(min_value=12, max_value=63))
def test_any_input_gives_valid_unique_stable_names(experiment, values, budget):
    trials = list({json.dumps(t, sort_keys=True): t for t in values}.values())
    digests = [X.content_hash("batch/v1", "Job", {}, t) for t in trials]
    names = [X.job_name(experiment, t, d, budget) for t, d in zip(trials, digests)]
    assert all(DNS_1035.match(n) and len(n) <= budget for n in names)
    assert len(set(names)) == len(names)
    assert names == [X.job_name(experiment, t, d, budget) for t, d in zip(trials, digests)]


NAMES = st.from_regex(r"\A[a-z]([-a-z0-9]{0,38}[a-z0-9])?\Z", fullmatch=True)
PARAMS = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z", fullmatch=True)
VALUES = st.lists(st.one_of(st.text(max_size=60), st.integers().map(str)), min_size=1, max_size=3, unique=True)


@settings(max_examples=60, deadline=None)
@given(name=NAMES, grid=st.dictionaries(PARAMS, VALUES, min_size=1, max_size=3),
       workers=st.sampled_from([1, 2, 64]))
def test_rendered_sweeps_have_valid_unique_stable_names(name, grid, workers):
    data = {"team": "vision", "name": name, "run": "python train.py", "resources": {"cpu": 1, "memory": "1Gi"},
            "environments": ["dev"], "sweep": {"grid": grid}, "workers": workers}
    exp = E.experiment_from(SpecFile(f"specs/experiments/vision/{name}.yaml", data))
    names = [o["metadata"]["name"] for o in render_all(exp)]
    assert len(names) == E.sweep_size(exp) == len(set(names))
    assert all(DNS_1035.match(n) and len(n) <= X.name_budget(exp) for n in names)
    assert names == [o["metadata"]["name"] for o in render_all(exp)]


def test_names_do_not_depend_on_the_process(tmp_path):
    script = ("from pathlib import Path\nfrom kflowgen.specs.loader import load_file\nfrom kflowgen.targets import training as X\nfrom kflowgen.specs import experiment as E\n"
              "from kflowgen.specs.model import platform_from, team_from\nr = Path(%r)\n"
              "p = platform_from(load_file(r, 'specs/platform.yaml')[0])\n"
              "for rel in %r:\n    e = E.experiment_from(load_file(r, rel)[0])\n"
              "    t = team_from(load_file(r, f'specs/teams/{e.team}.yaml')[0], list(p.environments))\n"
              "    print(*X.render_experiment(e, t, p, e.environments[0]))\n") % (str(PROJECT), EXAMPLES)
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("0", "12345")}
    here = "".join(" ".join(X.render_experiment(e, TEAMS[e.team], MODEL.platform, e.environments[0])) + "\n"
                   for e in map(example, EXAMPLES))
    assert outputs == {here}


# --- rendering ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", EXAMPLES)
def test_trial_names_are_the_rendered_names_and_hashes_are_remembered_per_spec_file(rel, monkeypatch):
    monkeypatch.setattr(X, "_DIGESTS", {})
    exp = example(rel)
    team = TEAMS[exp.team]
    names = [X.trial_name(exp, team, MODEL.platform, t) for t in E.trials(exp)]
    assert len(X._DIGESTS) == len(names) and exp.source.digest
    assert names == [X.manifest(exp, team, MODEL.platform, t)["metadata"]["name"] for t in E.trials(exp)]
    monkeypatch.setattr(X, "_DIGESTS", {})
    assert names == [X.manifest(exp, team, MODEL.platform, t)["metadata"]["name"] for t in E.trials(exp)]
    # the same experiment from other bytes (one more comment) is hashed again, under its own key
    changed, _ = load_bytes((PROJECT / rel).read_bytes() + b"# changed\n", rel)
    again = E.experiment_from(changed)
    assert again.source.digest not in ("", exp.source.digest)
    [X.trial_name(again, team, MODEL.platform, t) for t in E.trials(again)]
    assert len(X._DIGESTS) == 2 * len(names)


def test_example_experiments_render():
    files = {(rel, env): X.render_experiment(e, TEAMS[e.team], MODEL.platform, env)
             for rel in EXAMPLES for e in [example(rel)] for env in MODEL.platform.environments}
    counts = {k: sorted({o["kind"] for o in v.values()}) + [len(v)] for k, v in files.items() if v}
    assert counts == {
        ("specs/experiments/nlp/bert-random.yaml", "dev"): ["Job", 6],
        ("specs/experiments/nlp/llm-finetune.yaml", "dev"): ["TrainJob", 1],
        ("specs/experiments/nlp/llm-finetune.yaml", "prod"): ["TrainJob", 1],
        ("specs/experiments/recsys/feature-stats.yaml", "dev"): ["Job", 1],
        ("specs/experiments/recsys/feature-stats.yaml", "staging"): ["Job", 1],
        ("specs/experiments/vision/resnet-sweep.yaml", "dev"): ["Job", 4],
    }
    for objs in files.values():
        for file, obj in objs.items():
            assert file == f"{obj['kind'].lower()}.{obj['metadata']['name']}.yaml"
            assert list(obj) == ["apiVersion", "kind", "metadata", "spec"] and "namespace" not in obj["metadata"]


def pods(obj: dict) -> list[dict]:
    if obj["kind"] == "Job":
        return [obj["spec"]["template"]]
    key = "pytorchReplicaSpecs" if obj["kind"] == "PyTorchJob" else "tfReplicaSpecs"
    return [r["template"] for r in obj["spec"][key].values()]


TF = BASE.replace("vision", "nlp") + "workers: 3\nframework: tensorflow\n"


ONE_POD = [r for r in EXAMPLES if X.kind(example(r), MODEL.platform) != "TrainJob"]  # TrainJob: tests/test_trainjob.py


@pytest.mark.parametrize("exp", [example(r) for r in ONE_POD] + [parse(TF, "specs/experiments/nlp/x.yaml")],
                         ids=[*ONE_POD, "tfjob"])
def test_every_pod_is_restricted_sized_and_on_the_nas(exp):
    team, p = TEAMS[exp.team], MODEL.platform
    for obj in render_all(exp, exp.environments[0]):
        trial = obj["metadata"]["labels"][layout.LABEL_TRIAL]
        for pod in pods(obj):
            spec, (c,) = pod["spec"], pod["spec"]["containers"]
            assert pod["metadata"]["labels"] == {layout.LABEL_EXPERIMENT: exp.name, layout.LABEL_TRIAL: trial}
            assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"] == {
                "type": "RuntimeDefault"}
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
            assert c["resources"]["requests"] == c["resources"]["limits"]
            assert {"cpu", "memory"} <= set(c["resources"]["limits"])
            if exp.gpu_type:
                assert c["resources"]["limits"]["nvidia.com/gpu"] == str(exp.gpu_count)
                assert spec["nodeSelector"] == p.gpu_types[exp.gpu_type].node_selector
                assert spec.get("tolerations", []) == list(p.gpu_types[exp.gpu_type].tolerations)
            else:
                assert "nodeSelector" not in spec and "tolerations" not in spec
            shm = {"medium": "Memory", "sizeLimit": exp.shm or p.shm}
            assert spec["volumes"] == [{"name": "nas", "persistentVolumeClaim": {"claimName": "nas"}},
                                       {"name": "shm", "emptyDir": shm}]
            assert c["volumeMounts"] == [{"name": "nas", "mountPath": p.mount_path},
                                         {"name": "shm", "mountPath": "/dev/shm"}]
            assert c["workingDir"] == f"{p.mount_path}/{exp.workdir}".rstrip("/")
            assert c["image"] == (exp.image or team.image) and c["command"] == X.command(exp)
            image = exp.image or team.image
            assert spec.get("imagePullSecrets", []) == [{"name": s} for entry, s in p.pull_secrets.items()
                                                        if image.startswith(entry)]
            assert [e for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})] == [
                {"name": k, "valueFrom": {"secretKeyRef": {"name": s, "key": key}}} for k, (s, key) in exp.secrets.items()]
            assert (spec["serviceAccountName"], spec["automountServiceAccountToken"]) == ("runner", False)
            assert c["name"] == {"Job": "train", "PyTorchJob": "pytorch", "TFJob": "tensorflow"}[obj["kind"]]
            assert spec.get("restartPolicy") == ("Never" if obj["kind"] == "Job" else None)
        if obj["kind"] != "Job":
            key = "pytorchReplicaSpecs" if obj["kind"] == "PyTorchJob" else "tfReplicaSpecs"
            replicas = obj["spec"][key]
            assert sum(r["replicas"] for r in replicas.values()) == exp.workers
            assert {r["restartPolicy"] for r in replicas.values()} == {"OnFailure"}


def test_the_command_receives_exactly_the_spec_values(tmp_path):
    (tmp_path / "train.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    exp = parse(BASE + "hyperparameters: {epochs: 10, model: resnet50}\nsweep:\n  grid: {dropout: [0.3, 0.5], lr: "
                "[0.01, 1e-3]}\n")
    c = render_all(exp)[1]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "train.py"]
    out = subprocess.run([sys.executable, *c["command"][1:], *c["args"]], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == ["dropout=0.3", "epochs=10", "lr=1e-3", "model=resnet50"]


def _run_in_sh(c: dict, tmp_path: Path, trial: str) -> subprocess.CompletedProcess:
    """The container's command and args through the real sh, with `python` this interpreter."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "python").unlink(missing_ok=True)
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "KFLOWGEN_TRIAL": trial}
    return subprocess.run([*c["command"], *c["args"]], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_a_shell_command_gets_the_values_as_arguments_and_runs_every_step(tmp_path):
    (tmp_path / "train.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    (tmp_path / "evaluate.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    job = render_all(example("specs/experiments/vision/resnet-sweep.yaml"))[1]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:2] == ["sh", "-c"]
    out = _run_in_sh(c, tmp_path, "t1")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        ["dropout=0.3", "epochs=10", "lr=1e-3", "model=resnet50"], ["--report", "out/t1"]]


@pytest.mark.parametrize("run", ["python train.py", 'python train.py "$@"', 'python train.py "${@}" && true'])
def test_shell_hyperparameter_values_are_never_read_by_the_shell(tmp_path, run):
    """Values a sweep makes (or a reviewer missed) with shell syntax in them reach the script as they are, once."""
    (tmp_path / "train.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    hostile = ["$(touch pwned)", "`touch pwned`", "; touch pwned", "a b", "*", "'", '"$HOME"']
    exp = parse(BASE.replace("run: python train.py", f"run: {json.dumps(run)}") + "shell: true\nsweep:\n  grid: {v: "
                + json.dumps(hostile) + "}\n")
    for job in render_all(exp):
        c = job["spec"]["template"]["spec"]["containers"][0]
        out = _run_in_sh(c, tmp_path, "t")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[0]) == c["args"] and len(c["args"]) == 1
    assert not (tmp_path / "pwned").exists()


def test_a_single_quoted_dollar_at_is_text_and_the_values_still_reach_the_script(tmp_path):
    """'"$@"' is literal text to sh, not where the values go: they are added at the end, never dropped."""
    (tmp_path / "train.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    run = """python train.py --tag '"$@"'"""
    exp = parse(BASE.replace("run: python train.py", f"run: {json.dumps(run)}") + "shell: true\n"
                + "sweep: {grid: {lr: ['0.1']}}\n")
    c = render_all(exp)[0]["spec"]["template"]["spec"]["containers"][0]
    out = _run_in_sh(c, tmp_path, "t")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0]) == ["--tag", '"$@"', "lr=0.1"] == ["--tag", '"$@"', *c["args"]]
    assert E.split_arguments(run) is None and E.passes_arguments(run) is False


def test_an_escaped_dollar_at_is_an_unquoted_one():
    assert E.split_arguments('python train.py \\"$@\\"') == "$@"
    assert E.passes_arguments('python train.py \\"$@\\"') is False


def test_argparse_style_reaches_an_argparse_script(tmp_path):
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "finetune.py").write_text(
        "import argparse, json\np = argparse.ArgumentParser()\np.add_argument('--config')\n"
        "p.add_argument('--epochs', type=int)\np.add_argument('--batch_size', type=int)\n"
        "p.add_argument('--learning_rate', type=float)\np.add_argument('--warmup_steps', type=int)\n"
        "print(json.dumps(vars(p.parse_args())))\n")
    job = render_all(example("specs/experiments/nlp/bert-random.yaml"))[0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    out = subprocess.run([sys.executable, *c["command"][1:], *c["args"]], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    trial = json.loads(job["metadata"]["annotations"][layout.PARAMETERS])
    assert json.loads(out.stdout) == {"config": "configs/bert-base.yaml", "epochs": 3,
                                      "batch_size": int(trial["batch_size"]),
                                      "learning_rate": float(trial["learning_rate"]),
                                      "warmup_steps": int(trial["warmup_steps"])}


@pytest.mark.skipif(not (KUBECONFORM.is_file() and KUSTOMIZE.is_file() and UPSTREAM_CRDS.is_dir()),
                    reason="kustomize, kubeconform or the Kubeflow CRDs are missing")
def test_workloads_overlays_build_and_pass_strict_kubeconform(tmp_path):
    """Each team's dev workloads folder, as the renderer will write it, through the real kustomize and kubeconform:
    on Kubeflow Trainer (the example's platform), and llm-finetune also as the legacy PyTorchJob."""
    exps = [example(r) for r in EXAMPLES] + [parse(TF, "specs/experiments/nlp/tf.yaml")]
    legacy = dataclasses.replace(example("specs/experiments/nlp/llm-finetune.yaml"), name="llm-legacy")
    built, count = [], 0
    for team in TEAMS.values():
        folder = tmp_path / "overlays" / "dev" / "teams" / team.name / "workloads"
        folder.mkdir(parents=True)
        files = {n: o for e in exps if e.team == team.name for n, o in X.render_experiment(e, team, MODEL.platform,
                                                                                           "dev").items()}
        if team.name == legacy.team:
            files.update(X.render_experiment(legacy, team, LEGACY.platform, "dev"))
        for name, obj in files.items():
            (folder / name).write_bytes(emit.document(obj, ["specs/experiments/..."]))
        (folder / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": team.namespace,
            "labels": [{"pairs": {"kflowgen.dev/team": team.name}, "includeSelectors": False}],
            "resources": sorted(files)}))
        out = subprocess.run([str(KUSTOMIZE), "build", str(folder)], capture_output=True, text=True, check=True)
        built.append(out.stdout)
        count += len(files)
    (tmp_path / "built.yaml").write_text("---\n".join(built))
    schemas = kschemas.schema_dir("1.34.0", kschemas.crd_files_in([UPSTREAM_CRDS, UPSTREAM_TRAINER_CRDS]), tmp_path)
    out = subprocess.run([str(KUBECONFORM), "-strict", "-summary", "-output", "json",
                          *kschemas.kubeconform_args(schemas), str(tmp_path / "built.yaml")], capture_output=True, text=True)
    report = json.loads(out.stdout)
    assert out.returncode == 0, report
    assert report["summary"] == {"valid": count, "invalid": 0, "errors": 0, "skipped": 0}
    docs = [d for d in yaml.safe_load_all("---\n".join(built)) if d]
    assert {d["kind"] for d in docs} == {"Job", "TrainJob", "PyTorchJob", "TFJob"} and len(docs) == count
    assert all(d["metadata"]["namespace"] == d["metadata"]["labels"]["kflowgen.dev/team"] for d in docs)


def test_explain_says_what_runs_where():
    exp = example("specs/experiments/vision/resnet-sweep.yaml")
    text = X.explain(exp, TEAMS["vision"], MODEL.platform)
    assert "4 trial(s), each on one machine; each machine gets 1 x NVIDIA A100 80GB, 8 CPU and 32Gi memory." in text
    assert "dev: runs in team vision's space\n" in text
    assert ("resnet-sweep-dropout0p3-lr1e-3-1680e926: sh -c 'python train.py \"$@\" && python evaluate.py --report "
            '"out/$KFLOWGEN_TRIAL"\' resnet-sweep dropout=0.3 epochs=10 lr=1e-3 model=resnet50') in text
    assert "/workspace/projects/resnet" in text and "retried 1 time(s); a trial is stopped after 12h" in text


# --- life cycle ---------------------------------------------------------------------------------------------------

def test_jobs_have_no_ttl_and_are_never_pruned_by_a_commit():
    for rel in EXAMPLES:
        exp = example(rel)
        for obj in render_all(exp, exp.environments[0]):
            assert "ttlSecondsAfterFinished" not in json.dumps(obj)
            annotations = obj["metadata"]["annotations"]
            assert annotations["argocd.argoproj.io/sync-options"] == "Prune=false,Delete=false"
            assert annotations["argocd.argoproj.io/compare-options"] == "IgnoreExtraneous"


SOURCE = (PROJECT / "specs/experiments/vision/resnet-sweep.yaml").read_text()


def names_of(text: str) -> list[str]:
    spec, diags = load_text(text, "specs/experiments/vision/resnet-sweep.yaml")
    assert not diags and not specschema.validate("experiment", spec)
    return [o["metadata"]["name"] for o in render_all(E.experiment_from(spec))]


@pytest.mark.parametrize("old, new", [
    ("run: python train.py", "run: python train2.py"),
    ("{epochs: 10,", "{epochs: 20,"),
    ("{epochs: 10,", "{epochs: 10.0,"),  # spelled differently: the script sees another argument
    ("workdir: projects/resnet", "workdir: projects/resnet-v2"),
    ("environments: [dev]", "environments: [dev]\nimage: registry.example.com/ml/vision-notebook:2026.12"),
    ("cpu: 8", "cpu: 6"),
    ("memory: 32Gi", "memory: 48Gi"),
    ("retries: 1", "retries: 2"),
    ("deadline: 12h", "deadline: 1d"),
    ("environments: [dev]", "environments: [dev]\nenv: {SEED: 1}"),
])
def test_a_change_to_what_runs_gives_every_trial_a_new_job(old, new):
    assert old in SOURCE
    before, after = names_of(SOURCE), names_of(SOURCE.replace(old, new))
    assert not set(before) & set(after)


@pytest.mark.parametrize("old, new", [
    ("description: ResNet-50", "description: A ResNet-50"),
    ("# A grid sweep", "# The grid sweep"),
    ("{epochs: 10, model: resnet50}", "{model: resnet50, epochs: 10}"),
    ("environments: [dev]", "environments: [dev, staging]"),
    ("hyperparameters: {epochs: 10, model: resnet50}", "hyperparameters:\n  epochs: 10\n  model: resnet50"),
])
def test_a_change_to_nothing_that_runs_keeps_the_jobs(old, new):
    assert old in SOURCE
    assert names_of(SOURCE) == names_of(SOURCE.replace(old, new))


def test_adding_a_grid_value_keeps_the_existing_trials():
    after = names_of(SOURCE.replace("lr: [0.01, 1e-3]", "lr: [0.01, 1e-3, 1e-4]"))
    assert set(names_of(SOURCE)) < set(after) and len(after) == 6


# --- rules --------------------------------------------------------------------------------------------------------

def problems(*texts: str, paths=("specs/experiments/vision/x.yaml",)) -> list[tuple]:
    exps = [parse(t, p) for t, p in zip(texts, paths)]
    return sorted((d.code, d.line, d.col, d.severity) for d in rule.check(MODEL, exps))


def messages(text: str, path: str = "specs/experiments/vision/x.yaml") -> list[str]:
    return [f"{d.code} {d.message} | {d.hint}" for d in rule.check(MODEL, [parse(text, path)])]


def test_example_experiments_pass_every_rule():
    assert list(rule.check(MODEL, [example(r) for r in EXAMPLES])) == []


@pytest.mark.parametrize("text, path, problem", [
    (BASE.replace("team: vision", "team: visoin"), "specs/experiments/visoin/x.yaml", ("KF320", 1, 7, "error")),
    (BASE, "specs/experiments/nlp/x.yaml", ("KF321", 2, 7, "error")),
    (BASE, "specs/experiments/vision/y.yaml", ("KF321", 2, 7, "error")),
    (BASE.replace("[dev]", "[dev, qa]"), None, ("KF322", 5, 21, "error")),
    (BASE.replace("vision", "nlp").replace("[dev]", "[staging]"), "specs/experiments/nlp/x.yaml",
     ("KF322", 5, 16, "error")),
    (BASE.replace("cpu: 1,", "gpu: {type: h100, count: 1}, cpu: 1,"), None, ("KF323", 4, 25, "error")),
    (BASE.replace("cpu: 1,", "cpu: 65,"), None, ("KF324", 4, 18, "error")),
    (BASE.replace("cpu: 1,", "gpu: {type: a100, count: 5}, cpu: 1,"), None, ("KF324", 4, 38, "error")),
    (BASE.replace("cpu: 1,", "gpu: {type: t4, count: 1}, cpu: 1,"), None, ("KF324", 4, 36, "error")),
    (BASE.replace("vision", "nlp").replace("cpu: 1,", "gpu: {type: a100, count: 2}, cpu: 1,") + "workers: 2\n",
     "specs/experiments/nlp/x.yaml", ("KF324", 4, 38, "error")),
    (BASE.replace("cpu: 1,", "gpu: {type: a100, count: 1}, cpu: 1,") + "sweep: {grid: {lr: [1, 2, 3, 4, 5]}}\n",
     None, ("KF325", 6, 8, "warning")),
    (BASE + "sweep: {grid: {lr: [1, 2]}}\nparallelism: 2\ndeadline: 1h\nimage: docker.io/library/python:3.12\n", None,
     ("KF307", 9, 8, "error")),
    (BASE + "sweep: {grid: {a: [" + ", ".join(map(str, range(17))) + "], b: [" + ", ".join(map(str, range(17)))
     + "]}}\n", None, ("KF326", 6, 15, "error")),
    (BASE + "sweep: {random: {seed: 1, trials: 2, params: {lr: {min: 1, max: 1}}}}\n", None, ("KF326", 6, 51, "error")),
    (BASE + "sweep: {random: {seed: 1, trials: 2, params: {lr: {min: 0, max: 1, log: true}}}}\n", None,
     ("KF326", 6, 51, "error")),
    (BASE + "sweep: {random: {seed: 1, trials: 2, params: {n: {min: 0.5, max: 9, integer: true}}}}\n", None,
     ("KF326", 6, 50, "error")),
    (BASE + "sweep: {random: {seed: 1, trials: 5, params: {a: [x, z]}}}\n", None, ("KF326", 6, 35, "error")),
    (BASE.replace("python train.py", "'python \"train.py'"), None, ("KF327", 3, 6, "error")),
    (BASE.replace("python train.py", "python train.py > log"), None, ("KF327", 3, 6, "error")),
    (BASE.replace("python train.py", "python train.py --out $OUT"), None, ("KF327", 3, 6, "error")),
    (BASE.replace("python train.py", "cd src && python train.py"), None, ("KF327", 3, 6, "error")),
    (BASE.replace("python train.py", "python train.py $@") + "shell: true\n", None, ("KF327", 3, 6, "error")),
    (BASE.replace("python train.py", "'python train.py \"$*\"'") + "shell: true\n", None, ("KF327", 3, 6, "error")),
    (BASE.replace("python train.py", "'python train.py ${@}'") + "shell: true\n", None, ("KF327", 3, 6, "error")),
    (BASE + "shm: 1Gi\n", None, ("KF345", 6, 6, "error")),
    (BASE + "env: {HF_TOKEN: hf_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f}\n", None, ("KF343", 6, 17, "warning")),
    (BASE + "env: {X: 1}\nsecrets: {X: {secret: s, key: k}}\n", None, ("KF347", 7, 11, "error")),
    (BASE + "sweep: {grid: {a: [1, '1']}}\n", None, ("KF328", 6, 8, "error")),
])
def test_rule_finds(text, path, problem):
    assert problem in problems(text, paths=(path or "specs/experiments/vision/x.yaml",))


def test_a_tfjob_is_deprecated_on_the_legacy_training_operator_and_refused_on_trainer():
    exp = parse(BASE.replace("vision", "nlp") + "workers: 2\nframework: tensorflow\n", "specs/experiments/nlp/x.yaml")
    legacy = sorted((d.code, d.line, d.col, d.severity) for d in rule.check(LEGACY, [exp]))
    assert ("KF329", 7, 12, "warning") in legacy
    assert "KF329" not in [d.code for d in rule.check(MODEL, [exp])]  # KF350 instead: tests/test_trainjob.py


@pytest.mark.parametrize("text, path", [
    (BASE, "specs/experiments/vision/x.yaml"),
    (BASE.replace("vision", "nlp").replace("[dev]", "[dev, prod]"), "specs/experiments/nlp/x.yaml"),
    (BASE.replace("cpu: 1,", "gpu: {type: a100, count: 1}, cpu: 1,") + "sweep: {grid: {lr: [1, 2, 3, 4]}}\n", None),
    (BASE + "image: quay.io/jupyter/scipy-notebook:2025-11-24\n", None),
    (BASE + "sweep: {random: {seed: 1, trials: 4, params: {a: [x, z], b: [1, 2]}}}\n", None),
    (BASE + "sweep: {random: {seed: 1, trials: 9, params: {n: {min: 1, max: 9, integer: true}}}}\n", None),
    (BASE.replace("vision", "nlp") + "workers: 2\n", "specs/experiments/nlp/x.yaml"),
    (BASE.replace("python train.py", "python train.py --note '$HOME; a > b'"), None),  # quoted: literal words
    (BASE.replace("python train.py", "python train.py --x=a\\;b"), None),
    (BASE.replace("python train.py", "'cd src && python train.py \"$@\" > \"$KFLOWGEN_TRIAL.log\"'") + "shell: true\n",
     None),
    (BASE + "shm: 512Mi\nenv: {HF_HOME: /workspace/.cache, WANDB_MODE: offline}\n"
     "secrets: {HF_TOKEN: {secret: hf, key: token}}\n", None),
])
def test_rule_passes(text, path):
    assert problems(text, paths=(path or "specs/experiments/vision/x.yaml",)) == []


def test_rule_messages_say_what_and_how():
    [gpu] = messages(BASE.replace("cpu: 1,", "gpu: {type: a10, count: 1}, cpu: 1,"))
    assert gpu == "KF323 GPU type 'a10' is not defined in specs/platform.yaml | did you mean 'a100'?"
    [team] = messages(BASE.replace("team: vision", "team: visoin"), "specs/experiments/visoin/x.yaml")
    assert team == "KF320 team 'visoin' is not defined in specs/teams/ | did you mean 'vision'? (or add specs/teams/visoin.yaml)"
    [queue] = messages(BASE.replace("cpu: 1,", "gpu: {type: a100, count: 1}, cpu: 1,")
                       + "sweep: {grid: {lr: [1, 2, 3, 4, 5, 6, 7, 8]}}\n")
    assert queue.startswith("KF325 8 trials x 1 a100 = 8 a100 at once, team quota in dev is 4: trials will queue |")
    [fit] = messages(BASE.replace("vision", "nlp").replace("cpu: 1,", "cpu: 40,") + "workers: 2\n",
                     "specs/experiments/nlp/x.yaml")
    assert fit.startswith("KF324 one trial needs cpu 80 (2 workers x 40) but team nlp's quota in dev is 48 |")


def test_two_experiments_with_one_name():
    assert ("KF321", 2, 7, "error") in problems(BASE, BASE, paths=("specs/experiments/vision/x.yaml",) * 2)


def test_parallelism_says_how_many_run_at_once():
    gpu = BASE.replace("cpu: 1,", "gpu: {type: a100, count: 1}, cpu: 1,") + "sweep: {grid: {lr: [1, 2, 3, 4, 5, 6]}}\n"
    assert problems(gpu + "parallelism: 4\n") == []
    assert problems(gpu + "parallelism: 5\n") == [("KF325", 7, 14, "warning")]


def test_codes_are_in_the_range_given_to_this_feature():
    assert {c for c in codes.CODES if c.startswith("KF32")} == {f"KF32{i}" for i in range(10)}
