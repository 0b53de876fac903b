"""End to end, with real Argo CD: the example repository's environments (or, with KFLOWGEN_E2E_REPO, a platform
team's own) bootstrapped the way the README tells a platform team to, on a local stack per environment (tests/e2e: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok's fake GPU nodes from specs/platform.yaml, Argo CD's repo-server and application-controller,
Redis), synced from a local git copy of the repository. Nothing is mocked: kwok only plays the kubelet.

Needs `make tools-e2e` (Argo CD, kube-scheduler, kwok; Redis from Debian's packages); without them every test here
skips and says what is missing. Timings are printed as `[timing]` lines (`pytest -s` shows them)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from e2e.argocd import summary, waiting_autoscalers
from e2e.cluster import GPU_TYPE_LABEL
from e2e.procs import wait_until
from e2e.repo import kflowgen
from e2e.stack import PROJECT, Stack, missing_tools

pytestmark = pytest.mark.e2e

MISSING = missing_tools()
if MISSING:
    pytest.skip(f"e2e tools not built: run `make tools-e2e` (missing: {', '.join(MISSING)})", allow_module_level=True)
HUB_MISSING = missing_tools(hub=True)


def _timing(name: str, seconds: float) -> None:
    print(f"\n[timing] {name}: {seconds:.1f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# The repository under test: the example, or a platform team's own (`KFLOWGEN_E2E_REPO=/path/to/repo make e2e`),
# before its first real rollout. The scenarios after the bootstrap edit the example's teams; on another repository
# they skip.
SOURCE = Path(os.environ.get("KFLOWGEN_E2E_REPO") or PROJECT).resolve()
ENVS = tuple(yaml.safe_load((SOURCE / "specs" / "platform.yaml").read_text())["environments"])
example_only = pytest.mark.skipif(SOURCE != PROJECT, reason=f"a scenario on the example's teams; {SOURCE} is another "
                                                            "repository")


@pytest.fixture(scope="module")
def stack():
    s = Stack(ENVS, source=SOURCE, hub=not HUB_MISSING)
    try:
        s.start()
        for k, v in s.timings.items():
            _timing(k, v)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def synced(stack):
    """Every environment bootstrapped as the README says (apply overlays/<env>/argocd once), and every Application
    Synced/Healthy; the names of the awaited Applications per environment."""
    t0 = time.monotonic()
    expected = {}
    for env in ENVS:
        apps = stack.bootstrap(env)
        expected[env] = sorted(a for a in apps if not (HUB_MISSING and a.endswith("-jupyterhub")))
    if HUB_MISSING:
        print(f"\n[note] the JupyterHub Applications are not awaited: {', '.join(HUB_MISSING)}")
    for env in ENVS:
        stack.environments[env].argocd.wait_synced_healthy(expected[env], timeout=900)
        _timing(f"{env}: bootstrap to every Application Synced/Healthy", time.monotonic() - t0)
    return expected


def _items(cp, path: str) -> list[dict]:
    r = cp.request("GET", path)
    assert r.ok, r.message
    return r.body["items"]


def _one(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])
             and namespace in (None, o["metadata"].get("namespace"))]
    assert len(found) == 1, (kind, name, namespace, len(found))
    return found[0]


def _synced_at(argocd, name: str, revision: str, timeout: float = 300) -> dict:
    """Ask Argo CD to look at Git now and wait until a sync attempt at `revision` has finished (Succeeded, or failed:
    Failed/Error, or Running with a retry scheduled); the Application."""
    argocd.refresh(name)
    seen: dict = {}

    def done() -> bool:
        app = argocd.applications().get(name) or {}
        op = (app.get("status") or {}).get("operationState") or {}
        seen["app"] = app
        return (op.get("syncResult") or {}).get("revision") == revision and bool(op.get("finishedAt"))

    wait_until(f"{name} synced at {revision[:8]}", done, timeout, interval=0.5, describe=argocd.describe)
    return seen["app"]


def _compared_at(argocd, name: str, revision: str, timeout: float = 120) -> None:
    """Ask Argo CD to look at Git now and wait until it has compared the Application with `revision` and found it
    Synced (nothing to apply: no sync operation runs then)."""
    argocd.refresh(name)
    wait_until(f"{name} compared at {revision[:8]}", lambda: (
        (st := argocd.applications()[name]["status"]["sync"])["revision"] == revision and st["status"] == "Synced"),
        timeout, interval=0.5, describe=argocd.describe)


def test_the_local_repository_differs_from_the_example_only_in_where_it_points(stack):
    """What Argo CD syncs is the example's rendered overlays, with only the repository URL, the cluster URLs (and the
    chart repository) of the platform spec pointing at the local stack."""
    changed = []
    for f in sorted((stack.repo.path / "overlays").rglob("*")):
        if not f.is_file():
            continue
        text = f.read_text()
        for old, new in stack.repo.changes.items():
            text = text.replace(new, old)
        original = SOURCE / f.relative_to(stack.repo.path)
        if not original.is_file() or original.read_text() != text:
            changed.append(str(f.relative_to(stack.repo.path)))
    assert not changed, changed
    assert sorted(p.relative_to(SOURCE) for p in (SOURCE / "overlays").rglob("*") if p.is_file()) == \
        sorted(p.relative_to(stack.repo.path) for p in (stack.repo.path / "overlays").rglob("*") if p.is_file())


def test_bootstrap_syncs_every_environment_and_runs_every_training_job_on_its_gpu_type(stack, synced):
    gpu_types = stack.platform["gpuTypes"]
    for env in ENVS:
        e = stack.environments[env]
        cp, argocd = e.cluster.cp, e.argocd
        apps = argocd.applications()
        for name, app in sorted(apps.items()):
            waiting = waiting_autoscalers(app)
            print(f"  {name}: {'/'.join(summary(app)[:2])}"
                  + (f" (only autoscaler(s) {', '.join(waiting)} waiting for metrics: no metrics server here)"
                     if waiting else ""))
        assert f"{env}-root" in synced[env], synced[env]

        # every Application and AppProject the root created is one kflowgen rendered, and nothing else
        rendered = {}
        for f in (stack.repo.path / "overlays" / env / "argocd").glob("*.yaml"):
            doc = yaml.safe_load(f.read_text())
            rendered[doc["metadata"]["name"]] = doc["kind"]
        assert sorted(apps) == sorted(n for n, k in rendered.items() if k == "Application"), env
        projects = [p["metadata"]["name"] for p in _items(cp, "/apis/argoproj.io/v1alpha1/namespaces/argocd/appprojects")]
        assert sorted(projects) == sorted(["default", *(n for n, k in rendered.items() if k == "AppProject")]), env

        # the training Jobs: all rendered ones exist, completed, each pod on a node of its Job's GPU type
        built = stack.repo.built(env)
        jobs = [o for o in built if o["kind"] == "Job"]
        nodes = {n["metadata"]["name"]: n for n in _items(cp, "/api/v1/nodes")}
        placed: dict[str, int] = {}
        for job in jobs:
            ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
            live = cp.get(job)
            assert live.ok, (env, ns, name, live.message)
            assert (live.body.get("status") or {}).get("succeeded") == 1, (env, ns, name, live.body.get("status"))
            pods = _items(cp, f"/api/v1/namespaces/{ns}/pods?labelSelector=batch.kubernetes.io/job-name={name}")
            assert pods and all(p["status"]["phase"] == "Succeeded" for p in pods), (env, ns, name)
            selector = job["spec"]["template"]["spec"].get("nodeSelector") or {}
            want = next((t for t, g in gpu_types.items() if g["nodeSelector"].items() <= selector.items()), "none")
            for pod in pods:
                node = nodes[pod["spec"]["nodeName"]]
                assert node["metadata"]["labels"][GPU_TYPE_LABEL] == want, (env, ns, name, node["metadata"]["name"])
                placed[want] = placed.get(want, 0) + 1
        held = [ev for ev in _items(cp, "/api/v1/events?fieldSelector=reason=FailedCreate")
                if "exceeded quota" in ev.get("message", "")]
        print(f"\n[result] {env}: {len(apps)} Applications synced; {len(jobs)} training Jobs completed; "
              f"pods per GPU type: {placed}; pod creations held back by quota: {len(held)}")
        if env == "dev" and SOURCE == PROJECT:
            assert jobs and {"a100", "t4"} <= set(placed), placed

        # the team namespaces, quotas and NAS claims are there, as the platform Applications made them
        for quota in (o for o in built if o["kind"] == "ResourceQuota"):
            team_ns = quota["metadata"]["namespace"]
            assert cp.request("GET", f"/api/v1/namespaces/{team_ns}").ok
            assert cp.get(quota).ok, (env, team_ns)
            claims = _items(cp, f"/api/v1/namespaces/{team_ns}/persistentvolumeclaims")
            assert claims and all(c["status"]["phase"] == "Bound" for c in claims), (env, team_ns)
        # every served model's Deployment is available
        for d in (o for o in built if o["kind"] == "Deployment"):
            live = cp.get(d).body
            assert (live.get("status") or {}).get("availableReplicas", 0) >= 1, (env, d["metadata"]["name"])
    rss = stack.rss_kib()
    print(f"\n[memory] stack RSS {sum(rss.values()) / 1024:.0f} MiB: "
          + ", ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(rss.items(), key=lambda kv: -kv[1])[:8]))


@example_only
def test_drift_a_hand_edit_in_the_cluster_is_reverted_by_self_heal(stack, synced):
    """Someone with kubectl raises vision's GPU quota in dev by hand: Argo CD puts back what Git says."""
    t0 = time.monotonic()
    e = stack.environments["dev"]
    cp = e.cluster.cp
    quota = _one(stack.repo.built("dev"), "ResourceQuota", namespace="vision")
    path = cp.path_of(quota)
    key = "requests.nvidia.com/gpu"
    want = quota["spec"]["hard"][key]
    r = cp.request("PATCH", path, {"spec": {"hard": {key: "64"}}}, content_type="application/merge-patch+json")
    assert r.ok and r.body["spec"]["hard"][key] == "64", r.message
    wait_until("self-heal restores vision's GPU quota", lambda: cp.request("GET", path).body["spec"]["hard"][key] == want,
               120, interval=0.5, describe=e.argocd.describe)
    _timing("dev: drift reverted by self-heal", time.monotonic() - t0)


# What a data scientist's pull request could add to her team's workloads folder if it went around kflowgen's gate:
# more quota, admin for everyone, an open network, a cluster-wide role, an object in another team's namespace.
HOSTILE = {
    "resourcequota.more.yaml": {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "more", "namespace": "nlp"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "64"}}},
    "rolebinding.everyone.yaml": {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "everyone", "namespace": "nlp"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]},
    "networkpolicy.allow-all.yaml": {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all", "namespace": "nlp"},
        "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}], "policyTypes": ["Ingress", "Egress"]}},
    "clusterrole.reader.yaml": {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "nlp-reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]},
    "configmap.in-vision.yaml": {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-nlp", "namespace": "vision"},
        "data": {"note": "written by team nlp"}},
}
REFUSALS = [
    "resource :ResourceQuota is not permitted in project dev-nlp",
    "resource rbac.authorization.k8s.io:RoleBinding is not permitted in project dev-nlp",
    "resource networking.k8s.io:NetworkPolicy is not permitted in project dev-nlp",
    "resource rbac.authorization.k8s.io:ClusterRole is not permitted in project dev-nlp",
    "namespace vision is not permitted in project 'dev-nlp'",
]


@example_only
def test_tenancy_argo_cd_refuses_what_a_team_folder_must_not_hold(stack, synced):
    """The second line of defence: files committed around kflowgen's gate into nlp's workloads folder are refused by
    nlp's AppProject, by Argo CD itself; nothing of them reaches the cluster; reverting the commit heals the team."""
    t0 = time.monotonic()
    e, repo = stack.environments["dev"], stack.repo
    cp, argocd = e.cluster.cp, e.argocd
    folder = repo.path / "overlays" / "dev" / "teams" / "nlp" / "workloads"  # a plain directory: Argo CD applies all
    for name, obj in HOSTILE.items():
        (folder / name).write_text(yaml.safe_dump(obj))
    bad = repo.commit("nlp: more quota, admin for all, open network, a ClusterRole, a ConfigMap in vision",
                      render=False)
    app = _synced_at(argocd, "dev-nlp-workloads", bad)
    op = app["status"]["operationState"]
    messages = [r.get("message", "") for r in op["syncResult"].get("resources") or []] + [op.get("message", "")]
    print(f"\n[refused] dev-nlp-workloads: {op['phase']}: {op.get('message')}")
    assert op["phase"] in ("Failed", "Running") and "not valid" in op["message"], op  # Running: a retry is due
    for refusal in REFUSALS:
        assert any(refusal in m for m in messages), (refusal, messages)
    for obj in HOSTILE.values():
        assert cp.get(obj).status == 404, obj["metadata"]
    # a revert makes the Application whole again, at its next retry (kflowgen's retry takes the latest revision)
    repo.git("revert", "--no-edit", "HEAD")
    good = repo.head()
    app = _synced_at(argocd, "dev-nlp-workloads", good, timeout=240)
    assert app["status"]["operationState"]["phase"] == "Succeeded", summary(app)
    argocd.wait_synced_healthy(["dev-nlp-workloads"], timeout=120)
    _timing("dev: tenancy refused by Argo CD, then reverted", time.monotonic() - t0)


SWEEP = """\
team: vision
name: resnet-wide
description: A grid wider than vision's dev quota (4 A100) runs at once
run: python train.py
workdir: projects/resnet
sweep:
  grid: {dropout: [0.1, 0.3, 0.5], lr: [0.01, 0.001]}
resources: {gpu: {type: a100, count: 1}, cpu: 8, memory: 32Gi}
environments: [dev]
"""


@example_only
def test_quota_a_sweep_wider_than_the_gpu_quota_waits_and_completes(stack, synced):
    """6 one-A100 trials against vision's dev quota of 4: the quota holds the excess pods back ("exceeded quota"),
    they start as earlier trials finish, and every trial completes; none fails."""
    t0 = time.monotonic()
    e, repo = stack.environments["dev"], stack.repo
    cp, argocd = e.cluster.cp, e.argocd
    (repo.path / "specs" / "experiments" / "vision" / "resnet-wide.yaml").write_text(SWEEP)
    revision = repo.commit("vision: resnet-wide, 6 trials")
    jobs = [j for j in repo.built("dev") if j["kind"] == "Job" and j["metadata"]["name"].startswith("resnet-wide-")]
    assert len(jobs) == 6
    quota = _one(repo.built("dev"), "ResourceQuota", namespace="vision")
    hard = int(quota["spec"]["hard"]["requests.nvidia.com/gpu"])
    assert hard < len(jobs)
    app = _synced_at(argocd, "dev-vision-workloads", revision)
    assert app["status"]["operationState"]["phase"] == "Succeeded", summary(app)
    most = {"gpus": 0}

    def all_done() -> bool:
        used = (cp.get(quota).body.get("status") or {}).get("used", {}).get("requests.nvidia.com/gpu", "0")
        most["gpus"] = max(most["gpus"], int(used))
        statuses = [cp.get(j).body.get("status") or {} for j in jobs]
        assert not any(s.get("failed") for s in statuses), statuses
        return all(s.get("succeeded") == 1 for s in statuses)

    wait_until("the 6 trials of resnet-wide complete", all_done, 600, interval=0.5, describe=argocd.describe)
    refused = [ev["message"] for ev in _items(cp, "/api/v1/namespaces/vision/events?fieldSelector=reason=FailedCreate")
               if "exceeded quota" in ev.get("message", "")]
    print(f"\n[result] dev: 6 trials completed under a quota of {hard} A100; at most {most['gpus']} A100 in use at "
          f"once (sampled); {len(refused)} pod creations held back by the quota, e.g.: {refused[:1]}")
    assert refused
    assert most["gpus"] <= hard
    argocd.wait_synced_healthy(["dev-vision-workloads"], timeout=120)
    _timing("dev: quota scenario", time.monotonic() - t0)


def _deployment(cp, name: str, namespace: str) -> dict | None:
    r = cp.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    return r.body if r.ok else None


@example_only
def test_promotion_changes_the_served_version_in_prod_only(stack, synced):
    """`kflowgen promote recsys/ranker --from staging --to prod` and a commit: after the sync, prod's ranker
    Deployment serves staging's version and is available; staging's is the same object as before; dev has none."""
    t0 = time.monotonic()
    repo = stack.repo
    before = {env: _deployment(stack.environments[env].cluster.cp, "ranker", "recsys") for env in ENVS}
    assert before["dev"] is None and before["staging"] and before["prod"]
    label = "kflowgen.dev/model-version"
    staging_version = before["staging"]["spec"]["template"]["metadata"]["labels"][label]
    assert before["prod"]["spec"]["template"]["metadata"]["labels"][label] != staging_version
    out = kflowgen("promote", "recsys/ranker", "--from", "staging", "--to", "prod", "-C", str(repo.path), cwd=repo.path)
    print(f"\n[promote] {out.stdout.strip()}")
    changed = repo.git("status", "--porcelain").split("\n")
    assert changed and all("/prod/" in line or "specs/models/recsys/ranker.yaml" in line
                           for line in changed if line.strip()), changed
    revision = repo.commit("recsys: promote ranker to prod", render=False)
    prod = stack.environments["prod"]
    _synced_at(prod.argocd, "prod-recsys-workloads", revision)
    for env in ("dev", "staging"):  # Argo CD compares them at the new commit and finds nothing to do
        _compared_at(stack.environments[env].argocd, f"{env}-recsys-workloads", revision)
    wait_until("prod's ranker Deployment serves staging's version", lambda: (
        (d := _deployment(prod.cluster.cp, "ranker", "recsys"))["spec"]["template"]["metadata"]["labels"][label]
        == staging_version and (d.get("status") or {}).get("updatedReplicas") == d["status"].get("replicas")
        and d["status"].get("availableReplicas", 0) >= 1 and d["status"].get("observedGeneration") == d["metadata"]
        ["generation"]), 300, interval=0.5, describe=prod.argocd.describe)
    after = _deployment(stack.environments["staging"].cluster.cp, "ranker", "recsys")
    assert after["metadata"]["generation"] == before["staging"]["metadata"]["generation"]
    assert after["metadata"]["resourceVersion"] == before["staging"]["metadata"]["resourceVersion"]
    assert _deployment(stack.environments["dev"].cluster.cp, "ranker", "recsys") is None
    prod.argocd.wait_synced_healthy(["prod-recsys-workloads"], timeout=120)
    _timing("promotion to prod", time.monotonic() - t0)


@example_only
def test_an_experiment_removed_keeps_its_jobs_and_an_empty_workloads_folder_syncs(stack, synced):
    """recsys's only dev experiment is deleted: its workloads folder is left with `nothing.yaml` (no object), which
    Argo CD syncs as an empty directory, Synced and Healthy; the finished Job stays (Prune=false: its results are
    kept) without making the Application OutOfSync (IgnoreExtraneous)."""
    t0 = time.monotonic()
    e, repo = stack.environments["dev"], stack.repo
    job = _one(repo.built("dev"), "Job", namespace="recsys")
    (repo.path / "specs/experiments/recsys/feature-stats.yaml").unlink()
    revision = repo.commit("recsys: feature-stats done")
    folder = repo.path / "overlays/dev/teams/recsys/workloads"
    assert [f.name for f in folder.iterdir()] == ["nothing.yaml"]
    _compared_at(e.argocd, "dev-recsys-workloads", revision)  # nothing to apply, nothing to prune
    e.argocd.wait_synced_healthy(["dev-recsys-workloads"], timeout=120)
    assert (e.cluster.cp.get(job).body.get("status") or {}).get("succeeded") == 1
    _timing("dev: experiment removed, empty workloads folder synced", time.monotonic() - t0)


@example_only
def test_offboarding_removes_a_team_in_order_and_leaves_its_namespace_fenced(stack, synced):
    """recsys leaves: its specs are deleted, the overlays re-rendered and committed. The root Application prunes
    in the reverse of the sync waves kflowgen writes: the workloads Application (and the team's model servers)
    first; then the platform Application; the AppProject last, so no Application is left stuck in deletion. Kept:
    the Namespace and the NAS claim (nothing lost), the training Jobs, and the quota, network policy and access
    (Delete=false), so what still runs stays fenced and the team can back up its NAS before a person deletes the
    namespace."""
    t0 = time.monotonic()
    repo = stack.repo
    before = {env: {o["kind"] for o in stack.repo.built(env) if o["metadata"].get("namespace") == "recsys"}
              for env in ENVS}
    for env in ENVS:  # a Job whose experiment went earlier is still there (kept), as are the others
        if _items(stack.environments[env].cluster.cp, "/apis/batch/v1/namespaces/recsys/jobs"):
            before[env].add("Job")
    for rel in ("specs/teams/recsys.yaml", "specs/experiments/recsys", "specs/models/recsys"):
        target = repo.path / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    revision = repo.commit("recsys leaves the platform")
    for env in ENVS:
        e = stack.environments[env]
        cp, argocd = e.cluster.cp, e.argocd
        names = {"workloads": ("applications", f"{env}-recsys-workloads"),
                 "platform": ("applications", f"{env}-recsys-platform"),
                 "project": ("appprojects", f"{env}-recsys")}
        marked: dict[str, float] = {}
        gone: dict[str, float] = {}
        argocd.refresh(f"{env}-root")

        def watch() -> bool:
            now = time.monotonic()
            for part, (plural, name) in names.items():
                r = cp.request("GET", f"/apis/argoproj.io/v1alpha1/namespaces/argocd/{plural}/{name}")
                if r.status == 404:
                    gone.setdefault(part, now)
                    marked.setdefault(part, now)
                elif r.ok and r.body["metadata"].get("deletionTimestamp"):
                    marked.setdefault(part, now)
            return len(gone) == len(names)

        wait_until(f"{env}: recsys's Applications and project pruned", watch, 300, interval=0.2,
                   describe=argocd.describe)
        print(f"\n[offboarding] {env}: " + ", ".join(
            f"{p} deleted +{marked[p] - t0:.1f}s (gone +{gone[p] - t0:.1f}s)" for p in sorted(names, key=marked.get)))
        # each part is deleted only once the one before it is gone
        assert marked["platform"] >= gone["workloads"], (env, marked, gone)
        assert marked["project"] >= gone["platform"], (env, marked, gone)
        root = _synced_at(argocd, f"{env}-root", revision)
        assert root["status"]["operationState"]["phase"] == "Succeeded", summary(root)
        argocd.wait_synced_healthy(timeout=120)
        for name, app in argocd.applications().items():
            assert "recsys" not in name and "DeletionError" not in summary(app)[2], (name, summary(app))
        # kept: the namespace and the NAS claim, and everything that fences it; gone: the model servers
        assert cp.request("GET", "/api/v1/namespaces/recsys").ok, env
        claims = _items(cp, "/api/v1/namespaces/recsys/persistentvolumeclaims")
        assert claims and all(c["status"]["phase"] == "Bound" for c in claims), env
        live = {kind: [o["metadata"]["name"] for o in _items(cp, path)] for kind, path in (
            ("ResourceQuota", "/api/v1/namespaces/recsys/resourcequotas"),
            ("NetworkPolicy", "/apis/networking.k8s.io/v1/namespaces/recsys/networkpolicies"),
            ("RoleBinding", "/apis/rbac.authorization.k8s.io/v1/namespaces/recsys/rolebindings"),
            ("Job", "/apis/batch/v1/namespaces/recsys/jobs"),
            ("Deployment", "/apis/apps/v1/namespaces/recsys/deployments"),
            ("Service", "/api/v1/namespaces/recsys/services"))}
        print(f"  {env}: left in namespace recsys: " + ", ".join(f"{k} {len(v)}" for k, v in live.items()))
        for kind in ("ResourceQuota", "NetworkPolicy", "RoleBinding", "Job"):
            assert bool(live[kind]) == (kind in before[env]), (env, kind, live[kind])
        assert not live["Deployment"] and not live["Service"], (env, live)
    _timing("offboarding recsys in every environment", time.monotonic() - t0)


def _mentioning(folder: Path) -> list[str]:
    """Live processes whose command line names the folder (a stack's children and what they started: git, helm)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmd and _alive(int(d.name)):
                out.append(f"{d.name}: {cmd[:200]}")
    return out


def test_stop_leaves_no_process_and_no_folder(stack):
    """Runs after the scenarios: tear-down kills every process of the stack and removes its folder (the fixture's
    finalizer then has nothing left to do)."""
    pids, folder = stack.pids(), stack.folder
    assert pids and all(map(_alive, pids))
    stack.stop()
    assert not [p for p in pids if _alive(p)]
    assert not folder.exists()
    assert not _mentioning(folder)


SCRIPT = """
import json, signal, sys, time
# Ctrl-C in a terminal raises KeyboardInterrupt; a shell that started the tests in the background (`cmd &`) makes
# SIGINT ignored for all it starts, so the default is set back here
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[1])
from e2e.stack import Stack
stack = Stack(("dev",), hub=False)
stack.start()
cp_dirs = [str(e.cluster.cp.kubeconfig.parent) for e in stack.environments.values()]
print(json.dumps({"pids": stack.pids(), "dir": str(stack.folder), "cp_dirs": cp_dirs}), flush=True)
try:
    time.sleep(600)
finally:
    stack.stop()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_no_process_left_when_the_tests_are_interrupted_or_killed(sig):
    """A stack (clusters and Argo CD, up, not bootstrapped) in a process that gets Ctrl-C, a CI timeout's SIGTERM
    or SIGKILL: every process of the stack ends (SIGKILL: by the parent-death signal; no cleanup runs then, so
    the folder stays and is removed here)."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=PROJECT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        started = json.loads(line)
        pids, folder = started["pids"], Path(started["dir"])
        assert len(pids) == 8 and all(map(_alive, pids))  # etcd, apiserver, kcm, scheduler, kwok, redis, 2 argocd
        proc.send_signal(sig)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 30  # the kernel's parent-death signal is asynchronous
        while [p for p in pids if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in pids if _alive(p)]
        assert not _mentioning(folder)
        folders = [folder, *map(Path, started["cp_dirs"])]
        if sig == signal.SIGKILL:
            for f in folders:
                shutil.rmtree(f, ignore_errors=True)
        else:
            assert not [f for f in folders if f.exists()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in [folder, *map(Path, started["cp_dirs"])] if "started" in locals() else []:
            shutil.rmtree(f, ignore_errors=True)
