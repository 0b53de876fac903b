"""Distributed experiments on Kubeflow Trainer v2 (issue 21): `workers: 4` renders a TrainJob of 4 nodes on the
platform's ClusterTrainingRuntime carrying everything a Job trial carries where the API allows it; the legacy
PyTorchJob stays behind the platform switch with a warning; the rules (KF350-KF352), the policy on runtimes (KF616) and
on the TrainJob's pods, and the tenancy of the new kinds. The API server's verdict is tests/test_server.py's."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT
from kflowgen.checks import policy
from kflowgen.checks.objects import CLUSTER_SCOPED, identity, pod_specs
from kflowgen.checks.policy import Context
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.specs import layout
from kflowgen.targets import render, training, trainjob

GOLDEN = PROJECT / "tests/golden/trainer/specs"
RECOMMENDED = "distributed: {api: trainer, runtimes: {pytorch: torch-distributed}}"


def repo(tmp_path: Path, edits: dict[str, tuple[str, str]] | None = None, files: dict[str, str] | None = None) -> Path:
    """The trainer golden case's specs (and the project's bases) in tmp_path, with (old, new) edits and extra files."""
    root = tmp_path / "repo"
    shutil.copytree(GOLDEN, root / "specs")
    shutil.copytree(PROJECT / "bases", root / "bases")
    for rel, (old, new) in (edits or {}).items():
        text = (root / rel).read_text()
        assert old in text, (rel, old)
        (root / rel).write_text(text.replace(old, new))
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def loaded(root: Path):
    model, diags = pipeline.load(Options(root))
    return model, [(d.path, d.severity, d.code, d.message, d.hint) for d in diags if d.code != "KF317"]


def trainjobs(model) -> dict[str, dict]:
    return {path: yaml.safe_load(data.decode().partition("\n")[2]) for path, data in render(model).items()
            if "/trainjob." in path}


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    model, diags = loaded(repo(tmp_path_factory.mktemp("golden")))
    assert model is not None and diags == [], diags
    return model


# --- what a TrainJob carries --------------------------------------------------------------------------------------

def test_workers_4_is_a_trainjob_of_4_nodes_on_the_platforms_runtime(golden):
    jobs = trainjobs(golden)
    assert len(jobs) == 4  # two trials, in lab and prod
    for path, job in jobs.items():
        assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
        assert job["spec"]["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                             "kind": "ClusterTrainingRuntime"}
        t = job["spec"]["trainer"]
        assert (t["numNodes"], t["numProcPerNode"]) == (4, 2)  # one process per GPU
        assert t["image"] == "registry.example.com/ml/notebook:1.0"
        amounts = {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"}
        assert t["resourcesPerNode"] == {"requests": amounts, "limits": amounts}
        assert t["args"][0] == "epochs=3" and t["args"][1] in ("lr=0.1", "lr=0.01")
        env = {e["name"]: e for e in t["env"]}
        assert env["NCCL_DEBUG"]["value"] == "INFO"
        assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
        assert job["spec"]["activeDeadlineSeconds"] == 12 * 3600
        assert "backoffLimit" not in json.dumps(job)  # no retries in the API: README says so
        (patch,) = job["spec"]["runtimePatches"]
        assert patch["manager"] == trainjob.MANAGER
        (step,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        assert step["name"] == "node"
        pod = step["template"]["spec"]["template"]
        assert pod["metadata"]["labels"] == {"kflowgen.dev/experiment": "pretrain",
                                             "kflowgen.dev/trial": job["metadata"]["labels"]["kflowgen.dev/trial"]}
        spec = pod["spec"]
        assert spec["serviceAccountName"] == "runner" and spec["imagePullSecrets"] == [{"name": "ml-pull"}]
        assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
        assert spec["volumes"] == [{"name": "nas", "persistentVolumeClaim": {"claimName": "nas"}},
                                   {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
        (c,) = spec["containers"]
        assert c["name"] == "node" and c["volumeMounts"] == [{"name": "nas", "mountPath": "/workspace"},
                                                              {"name": "shm", "mountPath": "/dev/shm"}]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert job["metadata"]["annotations"][layout.SYNC_OPTIONS] == "Prune=false,Delete=false"
        assert job["metadata"]["annotations"][layout.COMPARE_OPTIONS] == "IgnoreExtraneous"


def test_queued_only_where_kueue_queues(golden):
    for path, job in trainjobs(golden).items():
        queued = path.startswith("overlays/lab/")
        assert (job["metadata"]["labels"].get(layout.LABEL_QUEUE), job["spec"].get("suspend")) == \
            (("default", True) if queued else (None, None)), path


def test_the_command_starts_in_the_workdir_and_gets_exactly_the_values(golden, tmp_path):
    """The TrainJob API has no working directory: the command goes there itself, and no value is read by a shell."""
    job = next(iter(trainjobs(golden).values()))
    t = job["spec"]["trainer"]
    work = tmp_path / "workspace/projects/pretrain"
    work.mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/torchrun").write_text('#!/bin/sh\npwd\nfor a in "$@"; do echo "[$a]"; done\n')
    (tmp_path / "bin/torchrun").chmod(0o755)
    command = [w.replace("/workspace", str(tmp_path / "workspace")) for w in t["command"]]
    args = [*t["args"], "x=$(touch pwned); y", "z='*'"]
    out = subprocess.run([*command, *args], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    assert out.stdout.splitlines() == [str(work), "[train.py]", *(f"[{a}]" for a in args)]
    assert not (tmp_path / "pwned").exists() and not (work / "pwned").exists()


def test_a_shell_experiment_also_starts_in_the_workdir(tmp_path):
    model, diags = loaded(repo(tmp_path, {"specs/experiments/alpha/pretrain.yaml": (
        "run: torchrun train.py", "run: cd src && torchrun train.py \"$@\" > log\nshell: true")}))
    assert model is not None, diags
    t = next(iter(trainjobs(model).values()))["spec"]["trainer"]
    assert t["command"] == ["sh", "-c", trainjob.IN_WORKDIR, "/workspace/projects/pretrain", "sh", "-c",
                            'cd src && torchrun train.py "$@" > log', "pretrain"]


@pytest.mark.parametrize("workers", [2, 4, 10, 64])
def test_names_leave_room_for_the_jobset_pods(workers, tmp_path):
    """`<name>-node-0-<workers-1>-xxxxx` fits 63 characters, however long the experiment's name and values."""
    long = "a-very-long-experiment-name-going-on-and"
    assert len(long) == 40  # the longest the experiment schema allows
    spec = (f"team: alpha\nname: {long}\nrun: torchrun train.py\nworkdir: projects/x\nworkers: {workers}\n"
            "sweep: {grid: {learning_rate_warmup: [0.000001234567, 0.5], optimizer_name: [adamw-with-decay]}}\n"
            "resources: {cpu: 1, memory: 1Gi}\nenvironments: [prod]\n")
    model, diags = loaded(repo(tmp_path, files={f"specs/experiments/alpha/{long}.yaml": spec}))
    assert model is not None, diags
    names = [j["metadata"]["name"] for p, j in trainjobs(model).items() if f"/trainjob.{long[:10]}" in p]
    assert len(names) == 2 and all(len(f"{n}-node-0-{workers - 1}-abcde") <= 63 for n in names), names
    assert trainjob.name_budget(workers) == 63 - len(f"-node-0-{workers - 1}") - 6


def test_a_new_runtime_or_command_gives_new_trainjobs_and_a_description_does_not(golden, tmp_path):
    names = {j["metadata"]["name"] for j in trainjobs(golden).values()}
    for edits, same in (
            ({"specs/platform.yaml": ("pytorch: torch-distributed", "pytorch: torch-custom")}, False),
            ({"specs/experiments/alpha/pretrain.yaml": ("torchrun train.py", "torchrun train2.py")}, False),
            ({"specs/experiments/alpha/pretrain.yaml": ("workers: 4", "workers: 3")}, False),
            ({"specs/experiments/alpha/pretrain.yaml": ("team: alpha", "description: two rates\nteam: alpha")}, True),
            ({"specs/experiments/alpha/pretrain.yaml": ("workers: 4", "workers: 4\nretries: 0")}, True)):
        where = tmp_path / str(len(list(tmp_path.iterdir())))
        model, diags = loaded(repo(where, edits))
        assert model is not None, diags
        assert ({j["metadata"]["name"] for j in trainjobs(model).values()} == names) is same, edits


def test_explain_says_what_a_distributed_experiment_becomes(golden):
    exp = next(e for e in golden.experiments if e.name == "pretrain")
    text = training.explain(exp, golden.teams[0], golden.platform)
    assert ("2 trial(s), each on 4 machines together (a Kubeflow Trainer TrainJob on runtime torch-distributed, 2 "
            "process(es) per machine); each machine gets 2 x A100, 8 CPU and 64Gi memory.") in text
    assert "PET_NNODES" in text and "The runtime's failure policy decides retries" in text
    name = training.trial_name(exp, golden.teams[0], golden.platform, {"lr": "0.1"}, True)
    assert f"    {name}: torchrun train.py epochs=3 lr=0.1" in text


# --- the platform switch, and the rules ---------------------------------------------------------------------------

def test_a_platform_that_says_nothing_keeps_pytorchjob_with_a_warning_naming_the_line(tmp_path):
    root = repo(tmp_path, {"specs/platform.yaml": (f"  {RECOMMENDED}\n", "")})
    model, diags = loaded(root)
    assert model is not None
    assert {p.split("/")[-1].split(".")[0] for p in render(model) if "/workloads/" in p} == {"job", "pytorchjob"}
    (d,) = diags
    assert d[:3] == ("specs/platform.yaml", "warning", "KF351")
    assert "1 distributed experiment (specs/experiments/alpha/pretrain.yaml) renders the legacy PyTorchJob" in d[3]
    assert RECOMMENDED in d[4]


def test_the_legacy_switch_keeps_pytorchjob_and_tfjob_with_a_warning(tmp_path):
    root = repo(tmp_path, {"specs/platform.yaml": (RECOMMENDED, "distributed: {api: training-operator}")})
    model, diags = loaded(root)
    assert model is not None and [d[2] for d in diags] == ["KF351"]
    assert "Kubeflow Training Operator v1, which is maintained on release-1.9 only" in diags[0][3]
    assert layout.TRAINJOB not in layout.team_kinds(model.platform)


@pytest.mark.parametrize("edits, code, where, words", [
    ({"specs/platform.yaml": (", runtimes: {pytorch: torch-distributed}", "")}, "KF350",
     "specs/experiments/alpha/pretrain.yaml", "names no ClusterTrainingRuntime for pytorch"),
    ({"specs/experiments/alpha/pretrain.yaml": ("workers: 4", "workers: 4\nframework: tensorflow")}, "KF350",
     "specs/experiments/alpha/pretrain.yaml", "Kubeflow Trainer, which has no TensorFlow runtime"),
])
def test_a_trainjob_the_platform_cannot_run_is_a_located_error(tmp_path, edits, code, where, words):
    model, diags = loaded(repo(tmp_path, edits))
    assert model is None
    (d,) = [d for d in diags if d[1] == "error"]
    assert (d[0], d[2]) == (where, code) and words in d[3] and d[4]


def test_retries_on_a_trainjob_is_a_warning(tmp_path):
    model, diags = loaded(repo(tmp_path, {"specs/experiments/alpha/pretrain.yaml": ("workers: 4",
                                                                                    "workers: 4\nretries: 2")}))
    assert model is not None and [d[2] for d in diags] == ["KF352"]


# --- policy and tenancy -------------------------------------------------------------------------------------------

CTX = Context(("registry.example.com/ml/",), {"lab": {"alpha": "alpha", "beta": "beta"}},
              team_kinds=layout.TEAM_KINDS + (layout.TRAINJOB,), queueing=frozenset({"lab"}),
              runtimes=frozenset({"torch-distributed"}))
WORKLOADS = "overlays/lab/teams/alpha/workloads"


def findings(obj: dict, overlay: str = WORKLOADS, ctx: Context = CTX) -> list[tuple[str, str]]:
    """(code, pointer) of every policy finding on obj (not those on its overlay as a whole, such as KF613's)."""
    return [(d.code, d.message.split(": ")[1]) for d in policy.run({overlay: [obj]}, ctx)
            if d.message.startswith(identity(obj) + ": ")]


@pytest.fixture
def job(golden) -> dict:
    obj = next(j for p, j in trainjobs(golden).items() if p.startswith(f"{WORKLOADS}/"))
    obj["metadata"]["namespace"] = "alpha"
    return obj


def test_the_rendered_trainjob_passes_every_policy(job):
    assert findings(job) == []
    pods = list(pod_specs(job))
    assert len(pods) == 1 and pods[0][1]["containers"][0]["image"] == job["spec"]["trainer"]["image"]


def test_a_trainjob_on_a_runtime_the_platform_does_not_declare_is_refused(job):
    other = json.loads(json.dumps(job))
    other["spec"]["runtimeRef"]["name"] = "gpu-miner"
    assert findings(other) == [("KF616", "/spec/runtimeRef/name")]
    other["spec"]["runtimeRef"].update(name="torch-distributed", kind="TrainingRuntime")
    assert findings(other) == [("KF616", "/spec/runtimeRef")]


def test_a_trainjob_without_its_own_security_context_or_with_a_host_path_is_refused(job):
    bare = json.loads(json.dumps(job))
    del bare["spec"]["runtimePatches"]
    assert {c for c, p in findings(bare)} == {"KF601"}
    assert all(p.startswith("/spec/trainer/containers/0/securityContext/") for c, p in findings(bare))
    host = json.loads(json.dumps(job))
    spec = host["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]
    spec["volumes"].append({"name": "root", "hostPath": {"path": "/"}})
    assert [c for c, _ in findings(host)] == ["KF606"]
    big = json.loads(json.dumps(job))
    big["spec"]["trainer"]["image"] = "docker.io/evil/miner:1"
    assert sorted(c for c, _ in findings(big)) == ["KF605"]


def test_a_trainjob_waits_only_in_its_own_queue(job):
    other = json.loads(json.dumps(job))
    other["metadata"]["labels"][layout.LABEL_QUEUE] = "beta-queue"
    assert findings(other) == [("KF615", "/metadata/labels/kueue.x-k8s.io~1queue-name")]
    assert findings(job, ctx=Context(CTX.registries, CTX.teams, team_kinds=CTX.team_kinds,
                                     runtimes=CTX.runtimes)) == [("KF615", "/metadata/labels/kueue.x-k8s.io~1queue-name")]


RUNTIME = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime",
           "metadata": {"name": "torch-distributed", "namespace": "alpha"}, "spec": {"template": {"spec": {}}}}
CLUSTER_RUNTIME = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
                   "metadata": {"name": "torch-distributed"}, "spec": {"template": {"spec": {}}}}


def test_teams_create_trainjobs_but_never_a_runtime(job):
    assert findings(RUNTIME) == [("KF607", "/kind")]
    assert findings(CLUSTER_RUNTIME) == [("KF607", "/kind")]
    assert findings(CLUSTER_RUNTIME, "overlays/lab/teams/alpha/platform") == [("KF607", "/kind")]
    assert findings(CLUSTER_RUNTIME, "overlays/lab/queueing") == [("KF608", "/kind")]
    assert "ClusterTrainingRuntime" in CLUSTER_SCOPED
    legacy = Context(CTX.registries, CTX.teams, team_kinds=layout.TEAM_KINDS, queueing=CTX.queueing)
    assert ("KF607", "/kind") in findings(job, ctx=legacy)  # no TrainJob where the platform runs no Trainer
    project = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
               "metadata": {"name": "lab-alpha", "namespace": "argocd"},
               "spec": {"destinations": [{"server": "https://lab", "namespace": "alpha"}],
                        "clusterResourceWhitelist": [],
                        "namespaceResourceWhitelist": [{"group": "trainer.kubeflow.org", "kind": k} for k in
                                                       ("TrainJob", "TrainingRuntime", "ClusterTrainingRuntime")]}}
    assert findings(project, "overlays/lab/argocd") == [
        ("KF609", "/spec/namespaceResourceWhitelist/1/kind"), ("KF609", "/spec/namespaceResourceWhitelist/2/kind")]


def test_the_teams_project_allows_trainjob_and_its_application_leaves_what_trainer_and_kueue_write(golden):
    files = render(golden)
    for env, queued in (("lab", True), ("prod", False)):
        project = yaml.safe_load(files[f"overlays/{env}/argocd/appproject.alpha.yaml"].decode().partition("\n")[2])
        kinds = [(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]]
        assert layout.TRAINJOB in kinds and not set(layout.TRAINER_RUNTIMES) & set(kinds)
        app = yaml.safe_load(files[f"overlays/{env}/argocd/application.alpha-workloads.yaml"].decode()
                             .partition("\n")[2])
        ignored = [i for i in app["spec"]["ignoreDifferences"] if i["kind"] == "TrainJob"]
        assert ignored == [{"group": "trainer.kubeflow.org", "kind": "TrainJob",
                            "jsonPointers": ["/spec/runtimePatches", *(["/spec/suspend"] if queued else [])]}]
        assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_a_trainjob_added_under_overlays_by_hand_fails_the_gate(tmp_path, golden):
    """A pull request adding a TrainJob on another runtime, and a runtime of its own, to its workloads folder."""
    root = repo(tmp_path)
    files = render(pipeline.load(Options(root))[0])
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    folder = root / WORKLOADS
    job = yaml.safe_load(next(folder.glob("trainjob.*.yaml")).read_text())
    job["metadata"]["name"] = "extra"
    job["spec"]["runtimeRef"]["name"] = "gpu-miner"
    (folder / "trainjob.extra.yaml").write_text(yaml.safe_dump(job))
    (folder / "trainingruntime.mine.yaml").write_text(yaml.safe_dump(RUNTIME))
    report = pipeline.validate(Options(root))
    found = {(d.path, d.code) for d in report.errors}
    assert (f"{WORKLOADS}/trainjob.extra.yaml", "KF504") in found
    assert (f"{WORKLOADS}/trainingruntime.mine.yaml", "KF504") in found
