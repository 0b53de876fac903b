"""Queueing with Kueue, short of running Kueue's controller: the golden case (tests/golden/queueing) validates with
the real kustomize, the shipped Kueue CRDs and policy; the shipped CRDs give the verdicts of the independent upstream
copy in ../shared; one team quota becomes a ClusterQueue and a ResourceQuota that never refuses what Kueue admits;
explain says how many trials run at once; and hostile pull requests against a repository that queues (the example
with queueing on in dev) are refused by the gate, in tests/test_tenancy.py's style."""
from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import jsonschema_rs
import pytest
import yaml
from typer.testing import CliRunner

from conftest import PROJECT, UPSTREAM, copy_repo, mutations, tree_hash
from kflowgen import upstream
from kflowgen.checks import schemas as kschemas
from kflowgen.cli import app
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.specs import layout, quantity
from kflowgen.targets import render

GOLDEN = PROJECT / "tests/golden/queueing"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
KUEUE = "kueue.x-k8s.io/v1beta2"


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def codes(out: str) -> list[tuple[str, str]]:
    return [(line.split(": error ")[0], line.split("[")[1].split("]")[0]) for line in out.splitlines()
            if ": error [" in line]


def git(root: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True, text=True).stdout


# --- the golden case, built and checked ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """The golden case's specs with the project's bases/, as a repository of its own (not yet rendered)."""
    root = tmp_path_factory.mktemp("queueing") / "repo"
    shutil.copytree(GOLDEN / "specs", root / "specs")
    shutil.copytree(PROJECT / "bases", root / "bases")
    return root


@pytest.fixture(scope="module")
def golden_built(golden):
    done = pipeline.checked(Options.at(golden))
    assert done.built is not None, done.report.diagnostics
    return done


def test_the_golden_case_passes_validate(golden_built):
    errors = [d for d in golden_built.report.diagnostics if d.severity == "error"]
    assert errors == []
    kinds = {(o["apiVersion"], o["kind"]) for overlay in golden_built.built.overlays
             for o in golden_built.built.objects(overlay) if o["apiVersion"].startswith("kueue.")}
    assert kinds == {(KUEUE, k) for k in ("ResourceFlavor", "Cohort", "ClusterQueue", "LocalQueue")}


def _kueue_objects(done) -> list[dict]:
    return [o for overlay in sorted(done.built.overlays) for o in done.built.objects(overlay)
            if o["apiVersion"].startswith("kueue.")]


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="needs ../shared/upstream beside the project")
def test_shipped_kueue_crds_give_the_upstream_crds_verdicts(golden_built, tmp_path):
    """Every Kueue object of the golden case, and every single-point mutation of each, is valid against the shipped
    v0.19.2 CRDs exactly when it is against ../shared's copy (another commit of the project)."""
    objects = _kueue_objects(golden_built)
    ours = kschemas.schema_dir("1.34.0", upstream.training_crd_files(), tmp_path / "ours")
    theirs = kschemas.schema_dir("1.34.0", kschemas.crd_files_in([UPSTREAM / "crds/kueue.x-k8s.io"]),
                                 tmp_path / "theirs")

    def validator(folder, obj):
        path = next(p for p in kschemas.schema_paths(folder, obj["kind"], obj["apiVersion"]) if p.is_file())
        return jsonschema_rs.Draft202012Validator(json.loads(path.read_text()), validate_formats=False)

    samples = {o["kind"]: o for o in objects}  # one of each kind (the last: a ClusterQueue with three groups)
    verdicts = []
    for obj in samples.values():
        a, b = validator(ours, obj), validator(theirs, obj)
        verdicts += [(a.is_valid(m), b.is_valid(m)) for m in [obj, *mutations(obj)]
                     if isinstance(m, dict) and m.get("kind") == obj["kind"] and m.get("apiVersion") == KUEUE]
    assert len(verdicts) > 300 and verdicts[0] == (True, True)
    assert [i for i, (a, b) in enumerate(verdicts) if a != b] == []
    assert {a for a, _ in verdicts} == {True, False}


def _docs(files: dict[str, bytes], prefix: str) -> dict[str, dict]:
    """The object of every file under prefix (a file of no object, as an empty workloads folder's, left out)."""
    docs = {p: yaml.safe_load(data.decode().partition("\n")[2]) for p, data in files.items() if p.startswith(prefix)}
    return {p: d for p, d in docs.items() if d is not None}


def _amount(resource: str, value) -> Fraction:
    return quantity.parse(value) if resource in ("cpu", "memory") else Fraction(int(value))


def test_the_resource_quota_holds_everything_kueue_admits_and_every_model_server():
    """The rule, on the golden case: per team and resource, nominal quota + what the team's servers keep = its quota;
    and the ResourceQuota = nominal + borrowingLimit (what Kueue admits at most) + what the servers keep."""
    model, _ = pipeline.load(Options.at(GOLDEN))
    files = render(model)
    checked = 0
    for env in model.platform.environments:
        for team in model.teams_in(env):
            queue = _docs(files, f"{layout.queueing_folder(env)}/clusterqueue.{team.name}.yaml").popitem()[1]
            hard = _docs(files, f"{layout.team_overlay(env, team.name, 'platform')}/resourcequota").popitem()[1]
            admits: dict[str, Fraction] = {}
            for group in queue["spec"]["resourceGroups"]:
                for flavor in group["flavors"]:
                    for r in flavor["resources"]:
                        most = _amount(r["name"], r["nominalQuota"]) + _amount(r["name"], r["borrowingLimit"])
                        admits[r["name"]] = admits.get(r["name"], 0) + most
            servers = {"cpu": Fraction(0), "memory": Fraction(0), "nvidia.com/gpu": Fraction(0)}
            for m in model.served:
                if m.team == team.name and env in m.environments:
                    s = m.environments[env]
                    servers["cpu"] += (s.max_pods + 1) * quantity.parse(s.cpu)
                    servers["memory"] += (s.max_pods + 1) * quantity.parse(s.memory)
                    servers["nvidia.com/gpu"] += (s.max_pods + 1) * s.gpu_count
            for resource, most in admits.items():
                assert _amount(resource, hard["spec"]["hard"][f"requests.{resource}"]) == \
                    most + servers.get(resource, 0), (env, team.name, resource)
                checked += 1
    assert checked == 2 * 2 * 4  # two environments, two teams, cpu, memory and two GPU resources


def test_explain_says_how_many_trials_run_at_once_and_that_parallelism_is_no_limit():
    code, out = run("explain", GOLDEN / "specs/experiments/alpha/sweep.yaml", "-C", GOLDEN)
    assert code == 0, out
    assert ("    queued: at most 4 of the 6 trials run at once within the team's quota (a100 "
            "GPUs: 4); the others wait their turn, and each trial's deadline starts when it runs.\n") in out
    assert "    Up to 6 while other teams leave their quota idle (borrowing 50%)" in out
    assert "    parallelism 3 is what you expect, not a limit" in out
    assert "All trials are created at once" not in out  # lab queues them


def test_queued_jobs_carry_the_queue_label_and_are_created_suspended_and_argocd_leaves_suspend_to_kueue():
    model, _ = pipeline.load(Options.at(GOLDEN))
    files = render(model)
    jobs = [o for o in _docs(files, "overlays/").values() if o.get("kind") in ("Job", "PyTorchJob")]
    assert len(jobs) == 7
    for job in jobs:
        assert job["metadata"]["labels"][layout.LABEL_QUEUE] == layout.LOCAL_QUEUE
        assert (job["spec"] if job["kind"] == "Job" else job["spec"]["runPolicy"])["suspend"] is True
    app = _docs(files, "overlays/lab/argocd/application.alpha-workloads.yaml").popitem()[1]
    assert {"group": "batch", "kind": "Job", "jsonPointers": ["/spec/suspend"]} in app["spec"]["ignoreDifferences"]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]


# --- a repository that queues: hostile pull requests ----------------------------------------------------------------

@pytest.fixture
def repo(tmp_path) -> Path:
    """A git copy of the example repository, which queues training in dev (borrowing 50%), rendered and committed:
    a pull request's base."""
    root = copy_repo(PROJECT, tmp_path / "repo")
    platform = yaml.safe_load((root / "specs/platform.yaml").read_text())
    assert platform["environments"]["dev"]["queueing"] == {"enabled": True, "borrowing": "50%", "reclaim": "preempt"}
    assert not any(e.get("queueing") for env, e in platform["environments"].items() if env != "dev")
    code, out = run("render", "-C", root, "--format", "text")
    assert code == 0, out
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


def add_base(root: Path, name: str, text: str) -> None:
    (root / "bases/team" / name).write_text(text)
    kustomization = root / "bases/team/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + f"- {name}\n")


def test_the_example_with_queueing_on_passes_the_gate_and_owns_kueue_kinds_in_the_platform_project(repo):
    code, out = run("gate", "--base", "HEAD", "-C", repo, "--format", "text")
    assert code == 0, out
    projects = {p.name: yaml.safe_load(p.read_text()) for p in (repo / "overlays").glob("*/argocd/appproject.*.yaml")}
    for name, project in projects.items():
        kinds = {w["kind"] for w in project["spec"]["clusterResourceWhitelist"]}
        names = {w["kind"] for w in project["spec"]["namespaceResourceWhitelist"]}
        assert not {"LocalQueue", "ClusterQueue", "ResourceFlavor", "Cohort"} & names, name
        env = project["metadata"]["labels"][layout.LABEL_ENV]
        if project["metadata"]["name"] == f"{env}-platform":
            assert kinds == ({"Namespace", "ClusterQueue", "ResourceFlavor", "Cohort"} if env == "dev"
                             else {"Namespace"}), name
        else:
            assert kinds == set(), name


def test_a_base_queue_feeding_another_teams_cluster_queue_fails_the_gate(repo):
    """bases/team is built into every team's platform overlay: a LocalQueue there would put every team's Jobs (those
    naming it) in vision's queue, and exist where nothing queues."""
    add_base(repo, "localqueue.shared.yaml", f"apiVersion: {KUEUE}\nkind: LocalQueue\nmetadata: {{name: shared}}\n"
             "spec: {clusterQueue: vision}\n")
    code, out = run("gate", "--base", "HEAD", "-C", repo, "--format", "text")
    assert code == 1 and {c for _, c in codes(out)} == {"KF615"}, out
    assert "LocalQueue nlp/shared: /spec/clusterQueue: 'vision' is not team nlp's ClusterQueue" in out
    assert "LocalQueue vision/shared: /metadata/name: LocalQueue 'shared': a team namespace has one, 'default'" in out
    assert "LocalQueue recsys/shared: /kind: LocalQueue 'shared', but Kueue queues nothing in prod" in out


def test_a_base_cluster_queue_admitting_every_namespace_fails_the_gate(repo):
    add_base(repo, "clusterqueue.all.yaml", f"apiVersion: {KUEUE}\nkind: ClusterQueue\nmetadata: {{name: all}}\n"
             "spec: {namespaceSelector: {}, cohortName: platform}\n")
    code, out = run("validate", "-C", repo, "--format", "text")
    assert code == 1 and "[KF607] ClusterQueue" in out and "kueue.x-k8s.io/ClusterQueue may not be in team" in out


def test_a_cluster_queue_written_into_a_team_folder_or_the_queueing_folder_fails_every_gate(repo):
    for rel in ("overlays/dev/teams/nlp/workloads/clusterqueue.mine.yaml", "overlays/dev/queueing/clusterqueue.x.yaml"):
        (repo / rel).write_text(f"apiVersion: {KUEUE}\nkind: ClusterQueue\nmetadata: {{name: x}}\nspec: {{}}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pull request")
    before = tree_hash(repo)
    for args in (["gate", "--base", "HEAD~1"], ["validate"], ["render", "--check"], ["render"]):
        code, out = run(*args, "-C", repo, "--format", "text")
        assert (code, sorted(set(codes(out)))) == (1, [
            ("overlays/dev/queueing/clusterqueue.x.yaml:1:1", "KF504"),
            ("overlays/dev/teams/nlp/workloads/clusterqueue.mine.yaml:1:1", "KF504")]), (args, out)
    assert tree_hash(repo) == before


def test_a_job_edited_to_wait_in_another_teams_queue_fails_the_gate(repo):
    job = next((repo / "overlays/dev/teams/nlp/workloads").glob("job.*.yaml"))
    text = job.read_text()
    assert "kueue.x-k8s.io/queue-name: default\n" in text
    job.write_text(text.replace("kueue.x-k8s.io/queue-name: default\n", "kueue.x-k8s.io/queue-name: vision\n"))
    rel = job.relative_to(repo).as_posix()
    code, out = run("gate", "--base", "HEAD", "-C", repo, "--format", "text")
    assert code == 1 and codes(out) == [(rel + ":1:1", "KF501")], out


@pytest.mark.parametrize("old, new, line_of", [
    ("    cpu: 48\n", "    cpu: 48\n    borrowing: 80%\n", "borrowing: 80%"),  # more than the platform's 50%
    ("    cpu: 192\n", "    cpu: 192\n    borrowing: 10%\n", "borrowing: 10%"),  # prod queues nothing
])
def test_a_team_cannot_borrow_more_than_the_platform_allows(repo, old, new, line_of):
    spec = repo / "specs/teams/nlp.yaml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    line = next(i for i, t in enumerate(spec.read_text().splitlines(), 1) if line_of in t)
    code, out = run("gate", "--base", "HEAD", "-C", repo, "--format", "text")
    assert code == 1 and codes(out) == [(f"specs/teams/nlp.yaml:{line}:16", "KF348")], out
