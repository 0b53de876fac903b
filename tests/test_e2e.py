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
from e2e.cluster import GPU_TYPE_LABEL, HOLD_ENV
from e2e.procs import wait_until
from e2e.repo import kflowgen
from e2e.stack import PROJECT, Stack, missing_tools, queueing
from e2e.trainer import runtimes_of

pytestmark = pytest.mark.e2e


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
PLATFORM = yaml.safe_load((SOURCE / "specs" / "platform.yaml").read_text())
ENVS = tuple(PLATFORM["environments"])
QUEUED = tuple(env for env in ENVS if queueing(PLATFORM, env))  # where the stack runs Kueue's controller
TRAINER = bool(runtimes_of(PLATFORM))  # the stack runs Trainer's and JobSet's controllers on every cluster

MISSING = missing_tools(queues=bool(QUEUED))
if MISSING:
    pytest.skip(f"e2e tools not built: run `make tools-e2e` (missing: {', '.join(MISSING)})", allow_module_level=True)
HUB_MISSING = missing_tools(hub=True)
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


KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
GPU = "nvidia.com/gpu"


def _workloads(cp, jobs: list[dict]) -> dict[str, dict]:
    """Kueue's Workload of each Job (by Job name), found by the Workloads' owner references."""
    out = {}
    for ns in sorted({j["metadata"]["namespace"] for j in jobs}):
        names = {j["metadata"]["name"] for j in jobs if j["metadata"]["namespace"] == ns}
        for w in _items(cp, f"{KUEUE}/namespaces/{ns}/workloads"):
            for ref in w["metadata"].get("ownerReferences") or []:
                if ref["kind"] == "Job" and ref["name"] in names:
                    out[ref["name"]] = w
    return out


def _condition(w: dict, kind: str) -> dict:
    return next((c for c in (w.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def _all_succeeded(cp, jobs: list[dict], what: str, timeout: float = 120) -> dict[str, dict]:
    """The Workloads of these Jobs, once Kueue has marked every one Finished; each must say Succeeded. Kueue marks a
    Workload Finished when its Job's Complete condition comes, which the Job controller sets after the Job's succeeded
    count (once the pods are gone): right after every Job counts a success, some Workloads may not be Finished yet."""
    seen: dict = {}

    def finished() -> bool:
        seen["workloads"] = _workloads(cp, jobs)
        return (sorted(seen["workloads"]) == sorted(j["metadata"]["name"] for j in jobs)
                and all(_condition(w, "Finished").get("status") == "True" for w in seen["workloads"].values()))

    def ends() -> dict[str, tuple]:
        return {n: (_condition(w, "Finished").get("status"), _condition(w, "Finished").get("reason"),
                    _condition(w, "Finished").get("message")) for n, w in sorted(seen.get("workloads", {}).items())}

    wait_until(f"{what}: Kueue marks each of {len(jobs)} Workloads Finished", finished, timeout, interval=0.5,
               describe=lambda: json.dumps(ends(), indent=1))
    assert all(reason == "Succeeded" for _, reason, _ in ends().values()), (what, ends())
    return seen["workloads"]


def _admitted(w: dict) -> bool:
    """Admitted by Kueue and not finished: it holds quota now."""
    return _condition(w, "Admitted").get("status") == "True" and _condition(w, "Finished").get("status") != "True"


def _gpus(w: dict) -> int:
    """The GPUs a Workload was admitted with (Kueue's own accounting: status.admission)."""
    sets = ((w.get("status") or {}).get("admission") or {}).get("podSetAssignments") or []
    return sum(int((a.get("resourceUsage") or {}).get(GPU, 0)) for a in sets)


def _cluster_queue(cp, name: str) -> dict:
    r = cp.request("GET", f"{KUEUE}/clusterqueues/{name}")
    assert r.ok, r.message
    return r.body


def _reserved(cq: dict, flavor: str) -> tuple[int, int]:
    """(total, borrowed) GPUs of a flavor reserved in a ClusterQueue, as its status says."""
    for f in (cq.get("status") or {}).get("flavorsReservation") or []:
        if f["name"] == flavor:
            for r in f.get("resources") or []:
                if r["name"] == GPU:
                    return int(r.get("total", 0)), int(r.get("borrowed", 0))
    return 0, 0


def _gpu_quota(cq: dict, flavor: str) -> tuple[int, int]:
    """(nominalQuota, borrowingLimit) of a flavor's GPUs in a ClusterQueue's spec."""
    for group in cq["spec"]["resourceGroups"]:
        for f in group["flavors"]:
            for r in f["resources"] if f["name"] == flavor else []:
                if r["name"] == GPU:
                    return int(r["nominalQuota"]), int(r.get("borrowingLimit", 0))
    raise AssertionError((cq["metadata"]["name"], flavor))


def _synced_at(argocd, name: str, revision: str, timeout: float = 300, retried: bool = False) -> dict:
    """Ask Argo CD to look at Git now and wait until a sync attempt at `revision` has finished (Succeeded, or failed:
    Failed/Error, or Running with a retry scheduled); the Application. `retried`: wait through scheduled retries, for
    the sync's last word (an apply that failed for a moment on a loaded machine, say a webhook's timeout, is retried
    by the Applications' retry policy: the sync meant to succeed is judged by its end, not by its first attempt)."""
    argocd.refresh(name)
    seen: dict = {}

    def done() -> bool:
        app = argocd.applications().get(name) or {}
        op = (app.get("status") or {}).get("operationState") or {}
        seen["app"] = app
        return ((op.get("syncResult") or {}).get("revision") == revision and bool(op.get("finishedAt"))
                and not (retried and op.get("phase") == "Running"))

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
        if env in QUEUED:  # a queued trial may still be waiting for, or running on, quota another one gave back
            wait_until(f"{env}: every queued training Job finished", lambda: all(
                (cp.get(j).body.get("status") or {}).get("succeeded") == 1 for j in jobs), 300, interval=0.5)
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
        if env in QUEUED:  # Kueue admitted every trial (the Jobs were created suspended): each one's Workload finished
            workloads = _all_succeeded(cp, jobs, env)
            print(f"\n[kueue] {env}: {len(workloads)} Workloads admitted and finished, one per training Job")
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
    if QUEUED:
        print("[memory] Kueue's controller: " + ", ".join(f"{env} {rss[f'{env}/kueue'] / 1024:.0f} MiB" for env in QUEUED))
    if TRAINER:
        print("[memory] Trainer's and JobSet's controllers: " + ", ".join(
            f"{env} {rss[f'{env}/trainer'] / 1024:.0f} + {rss[f'{env}/jobset'] / 1024:.0f} MiB" for env in ENVS))


TRAINER_API = "/apis/trainer.kubeflow.org/v1alpha1"
JOBSET_API = "/apis/jobset.x-k8s.io/v1alpha2"


def _pod_spec_patch(trainjob: dict) -> dict:
    """The pod spec kflowgen patches into the runtime's `node` replicated job (nodeSelector, tolerations...)."""
    for patch in trainjob["spec"].get("runtimePatches") or []:
        for rj in ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec", {}).get(
                "replicatedJobs") or []:
            return rj["template"]["spec"]["template"]["spec"]
    return {}


@pytest.mark.skipif(not TRAINER, reason="the platform spec's distributed training is not Kubeflow Trainer's")
def test_a_distributed_experiment_runs_as_a_trainjob_on_its_nodes(stack, synced):
    """Each environment's TrainJobs (a distributed experiment, `workers: N`) run on Trainer's and JobSet's real
    controllers: where training is queued, Kueue admits the TrainJob (created suspended) as one Workload of N pods;
    Trainer makes its JobSet, JobSet the Jobs, kwok runs the N pods, each on a node of the experiment's GPU type;
    the JobSet and then the TrainJob are Complete."""
    gpu_types = stack.platform["gpuTypes"]
    ran = {}
    for env in ENVS:
        cp = stack.environments[env].cluster.cp
        trainjobs = [o for o in stack.repo.built(env) if o["kind"] == "TrainJob"]
        nodes = {n["metadata"]["name"]: n for n in _items(cp, "/api/v1/nodes")}
        for tj in trainjobs:
            ns, name = tj["metadata"]["namespace"], tj["metadata"]["name"]
            path = f"{TRAINER_API}/namespaces/{ns}/trainjobs/{name}"
            seen: dict = {}

            def complete() -> bool:
                seen["trainjob"] = cp.request("GET", path).body
                return _condition(seen["trainjob"], "Complete").get("status") == "True"

            wait_until(f"{env}: TrainJob {ns}/{name} Complete", complete, 300, interval=0.5,
                       describe=lambda: json.dumps((seen.get("trainjob") or {}).get("status"))[:1500] + "\n"
                       + stack.environments[env].cluster.procs.log("trainer"))
            live = seen["trainjob"]
            assert _condition(live, "Failed").get("status") != "True", (env, name, live["status"])
            workers = tj["spec"]["trainer"]["numNodes"]
            # Trainer's JobSet, owned by the TrainJob, completed by JobSet's controller
            r = cp.request("GET", f"{JOBSET_API}/namespaces/{ns}/jobsets/{name}")
            assert r.ok, (env, name, r.message)
            jobset = r.body
            assert [o["kind"] for o in jobset["metadata"].get("ownerReferences") or []] == ["TrainJob"], env
            assert _condition(jobset, "Completed").get("status") == "True", (env, name, jobset.get("status"))
            jobs = _items(cp, f"/apis/batch/v1/namespaces/{ns}/jobs?labelSelector=jobset.sigs.k8s.io/jobset-name={name}")
            assert jobs and all([o["kind"] for o in j["metadata"]["ownerReferences"]] == ["JobSet"] for j in jobs)
            pods = _items(cp, f"/api/v1/namespaces/{ns}/pods?labelSelector=jobset.sigs.k8s.io/jobset-name={name}")
            assert len(pods) == workers and all(p["status"]["phase"] == "Succeeded" for p in pods), \
                (env, name, [(p["metadata"]["name"], p["status"]["phase"]) for p in pods])
            selector = _pod_spec_patch(tj).get("nodeSelector") or {}
            want = next(t for t, g in gpu_types.items() if g["nodeSelector"].items() <= selector.items())
            on = sorted({nodes[p["spec"]["nodeName"]]["metadata"]["labels"][GPU_TYPE_LABEL] for p in pods})
            assert on == [want], (env, name, on)
            gpus = sum(int(c["resources"]["requests"].get(GPU, 0)) for p in pods for c in p["spec"]["containers"])
            assert gpus == workers * int(tj["spec"]["trainer"]["resourcesPerNode"]["requests"][GPU]), (env, gpus)
            if env in QUEUED:  # created suspended; Kueue admitted it whole: one Workload, all its pods, its GPUs
                assert tj["spec"].get("suspend") is True
                def owned() -> list[dict]:
                    return [w for w in _items(cp, f"{KUEUE}/namespaces/{ns}/workloads")
                            if any(ref["kind"] == "TrainJob" and ref["name"] == name
                                   for ref in w["metadata"].get("ownerReferences") or [])]

                wait_until(f"{env}: the Workload of {name} Finished", lambda: any(
                    _condition(w, "Finished").get("status") == "True" for w in owned()), 120, interval=0.5)
                workloads = owned()
                assert len(workloads) == 1, (env, name, len(workloads))
                w = workloads[0]
                assert sum(a["count"] for a in w["status"]["admission"]["podSetAssignments"]) == workers, \
                    (env, w["status"]["admission"])
                assert _gpus(w) == gpus, (env, w["status"]["admission"])
                print(f"\n[kueue] {env}: TrainJob {ns}/{name} admitted as one Workload of {workers} pods: "
                      f"{_condition(w, 'Finished').get('message', '')}")
            ran[f"{env}/{ns}/{name}"] = f"{workers} pods on {want}"
    print(f"\n[trainer] TrainJobs Complete: {ran}")
    if SOURCE == PROJECT:
        assert ran, "the example has a distributed experiment"


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
    app = _synced_at(argocd, "dev-nlp-workloads", good, timeout=240, retried=True)
    assert app["status"]["operationState"]["phase"] == "Succeeded", summary(app)
    argocd.wait_synced_healthy(["dev-nlp-workloads"], timeout=120)
    _timing("dev: tenancy refused by Argo CD, then reverted", time.monotonic() - t0)


SWEEP = """\
team: vision
name: resnet-wide
description: A grid wider than vision's staging quota (2 A100) runs at once
run: python train.py
workdir: projects/resnet
sweep:
  grid: {dropout: [0.1, 0.3, 0.5], lr: [0.01, 0.001]}
resources: {gpu: {type: a100, count: 1}, cpu: 8, memory: 32Gi}
environments: [staging]
"""


@example_only
def test_quota_a_sweep_wider_than_the_gpu_quota_waits_and_completes(stack, synced):
    """Where the platform queues nothing (staging): 6 one-A100 trials against vision's staging quota of 2: the
    ResourceQuota holds the excess pods back ("exceeded quota"), they start as earlier trials finish, and every trial
    completes; none fails."""
    t0 = time.monotonic()
    env = "staging"
    assert env not in QUEUED
    e, repo = stack.environments[env], stack.repo
    cp, argocd = e.cluster.cp, e.argocd
    (repo.path / "specs" / "experiments" / "vision" / "resnet-wide.yaml").write_text(SWEEP)
    revision = repo.commit("vision: resnet-wide, 6 trials")
    jobs = [j for j in repo.built(env) if j["kind"] == "Job" and j["metadata"]["name"].startswith("resnet-wide-")]
    assert len(jobs) == 6 and not any(j["spec"].get("suspend") for j in jobs)
    quota = _one(repo.built(env), "ResourceQuota", namespace="vision")
    hard = int(quota["spec"]["hard"]["requests.nvidia.com/gpu"])
    assert hard < len(jobs)
    app = _synced_at(argocd, f"{env}-vision-workloads", revision, retried=True)
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
    print(f"\n[result] {env}: 6 trials completed under a quota of {hard} A100; at most {most['gpus']} A100 in use at "
          f"once (sampled); {len(refused)} pod creations held back by the quota, e.g.: {refused[:1]}")
    assert refused
    assert most["gpus"] <= hard
    argocd.wait_synced_healthy([f"{env}-vision-workloads"], timeout=120)
    _timing(f"{env}: quota scenario", time.monotonic() - t0)


def _held_sweep(team: str, name: str, grid: str, held: bool = True) -> str:
    """A dev experiment of one-A100 trials; `held`: each trial's pod runs until the test releases it (e2e.cluster)."""
    return (f"team: {team}\nname: {name}\nrun: python train.py\nworkdir: projects/{name}\nsweep:\n  grid: {grid}\n"
            "resources: {gpu: {type: a100, count: 1}, cpu: 8, memory: 32Gi}\nenvironments: [dev]\n"
            + (f"env: {{{HOLD_ENV[0]}: {HOLD_ENV[1]}}}\n" if held else ""))


def _submit(stack, env: str, team: str, name: str, text: str) -> list[dict]:
    """Commit an experiment spec (rendered), wait for the team's Application to sync it; its Jobs as rendered."""
    repo = stack.repo
    (repo.path / "specs" / "experiments" / team / f"{name}.yaml").write_text(text)
    revision = repo.commit(f"{team}: {name}")
    jobs = [j for j in repo.built(env) if j["kind"] == "Job" and j["metadata"]["name"].startswith(f"{name}-")]
    assert jobs and all(j["spec"].get("suspend") is True for j in jobs), name  # queued: created suspended
    app = _synced_at(stack.environments[env].argocd, f"{env}-{team}-workloads", revision, retried=True)
    assert app["status"]["operationState"]["phase"] == "Succeeded", summary(app)
    return jobs


def _finish(e, jobs: list[dict], watch=None, timeout: float = 600) -> None:
    """Release the held pods of these Jobs (again and again: a Job readmitted after preemption makes new ones) until
    every Job succeeded; none may fail. `watch()` runs at every poll."""
    cp = e.cluster.cp

    def done() -> bool:
        if watch:
            watch()
        for ns, exp in {(j["metadata"]["namespace"], j["metadata"]["labels"]["kflowgen.dev/experiment"])
                        for j in jobs}:
            e.cluster.release(ns, f"kflowgen.dev/experiment={exp}")
        statuses = [cp.get(j).body.get("status") or {} for j in jobs]
        assert not any(s.get("failed") for s in statuses), statuses
        return all(s.get("succeeded") == 1 for s in statuses)

    wait_until(f"{len(jobs)} trials complete", done, timeout, interval=0.5, describe=e.argocd.describe)


@example_only
def test_kueue_admits_a_sweep_within_the_queue_and_the_rest_wait_suspended(stack, synced):
    """dev queues training: 9 one-A100 trials of vision, each holding its GPU until released, against vision's
    ClusterQueue (nominal 4 A100, borrowing up to 2 of the cohort's idle quota; nlp's 2 A100 are idle). Kueue admits
    exactly nominal + borrowing (its Workloads and the ClusterQueue's status say so, 2 of them borrowed), the other 3
    Jobs stay suspended with no pod; once released, trials finish, the waiting ones are admitted in turn, never more
    at once, and all 9 complete; none fails."""
    t0 = time.monotonic()
    env = "dev"
    assert env in QUEUED
    e = stack.environments[env]
    cp = e.cluster.cp
    cq = _one(stack.repo.built(env), "ClusterQueue", "vision")
    nominal, borrowing = _gpu_quota(cq, "gpu-a100")
    lender = _one(stack.repo.built(env), "ClusterQueue", "nlp")
    assert _gpu_quota(lender, "gpu-a100")[0] >= borrowing  # nlp's idle A100s cover vision's borrowing limit
    jobs = _submit(stack, env, "vision", "wide", _held_sweep("vision", "wide",
                                                              "{dropout: [0.1, 0.3, 0.5], lr: [0.1, 0.01, 0.001]}"))
    assert len(jobs) == 9 > nominal + borrowing
    seen: dict = {}

    def settled() -> bool:
        workloads = _workloads(cp, jobs)
        admitted = [n for n, w in workloads.items() if _admitted(w)]
        seen.update(workloads=workloads, admitted=admitted, status=_cluster_queue(cp, "vision").get("status") or {})
        return (len(workloads) == 9 and len(admitted) == nominal + borrowing
                and seen["status"].get("pendingWorkloads") == 9 - len(admitted)
                and _reserved({"status": seen["status"]}, "gpu-a100") == (nominal + borrowing, borrowing))

    wait_until("Kueue admits vision's trials up to its queue's limit", settled, 180, interval=0.5,
               describe=lambda: f"{seen.get('admitted')} {json.dumps(seen.get('status'))[:1500]}")
    assert sum(_gpus(seen["workloads"][n]) for n in seen["admitted"]) == nominal + borrowing
    running: dict = {}

    def admitted_run() -> bool:
        pods = _items(cp, "/api/v1/namespaces/vision/pods?labelSelector=kflowgen.dev/experiment=wide")
        running.update({p["metadata"]["labels"]["batch.kubernetes.io/job-name"]: p["spec"]["nodeName"] for p in pods
                        if p["status"].get("phase") == "Running"})
        return set(running) == set(seen["admitted"])

    wait_until("the admitted trials' pods running", admitted_run, 180, interval=0.5)
    nodes = {n["metadata"]["name"]: n["metadata"]["labels"][GPU_TYPE_LABEL] for n in _items(cp, "/api/v1/nodes")}
    assert {nodes[n] for n in running.values()} == {"a100"}, running
    for j in jobs:  # the admitted run on A100 nodes; the others wait suspended, without pods
        name = j["metadata"]["name"]
        live = cp.get(j).body
        pods = _items(cp, f"/api/v1/namespaces/vision/pods?labelSelector=batch.kubernetes.io/job-name={name}")
        if name in seen["admitted"]:
            assert live["spec"]["suspend"] is False, name
        else:
            assert live["spec"]["suspend"] is True and not pods, (name, pods)
            assert not (seen["workloads"][name].get("status") or {}).get("admission"), name  # no quota reserved
    print(f"\n[kueue] dev: vision's 9 trials: {len(seen['admitted'])} admitted ({nominal} nominal + {borrowing} "
          f"borrowed A100), {9 - len(seen['admitted'])} pending, suspended; ClusterQueue vision: "
          f"{json.dumps(seen['status'].get('flavorsReservation'))}")
    most = {"gpus": 0}

    def watch() -> None:
        gpus = sum(_gpus(w) for w in _workloads(cp, jobs).values() if _admitted(w))
        most["gpus"] = max(most["gpus"], gpus)
        assert gpus <= nominal + borrowing, gpus

    _finish(e, jobs, watch)
    _all_succeeded(cp, jobs, "dev: vision's sweep")
    print(f"[kueue] dev: all 9 completed, at most {most['gpus']} A100 admitted at once (sampled)")
    e.argocd.wait_synced_healthy(["dev-vision-workloads"], timeout=120)
    _timing("dev: Kueue admission scenario", time.monotonic() - t0)


@example_only
def test_kueue_lends_idle_gpus_and_reclaims_them_by_preemption(stack, synced):
    """vision runs 6 held one-A100 trials while nlp is idle: 4 on its own quota, 2 borrowed from nlp's idle A100s.
    Then nlp submits 2 held one-A100 trials: Kueue preempts 2 of vision's trials (reclaimWithinCohort: the platform's
    `reclaim: preempt`; Workload condition Preempted, reason InCohortReclamation), their Jobs are suspended again and
    their pods go, nlp's trials are admitted within nlp's nominal quota (both ClusterQueues' status: nothing
    borrowed); once nlp's trials are released and complete, vision's preempted trials are admitted again and all 6
    complete; no trial fails."""
    t0 = time.monotonic()
    env = "dev"
    e = stack.environments[env]
    cp = e.cluster.cp
    built = stack.repo.built(env)
    nominal, borrowing = _gpu_quota(_one(built, "ClusterQueue", "vision"), "gpu-a100")
    nlp_nominal, _ = _gpu_quota(_one(built, "ClusterQueue", "nlp"), "gpu-a100")
    assert _one(built, "ClusterQueue", "vision")["spec"]["preemption"]["reclaimWithinCohort"] == "Any"
    vision = _submit(stack, env, "vision", "lend", _held_sweep("vision", "lend", "{dropout: [0.1, 0.3, 0.5], "
                                                                                 "lr: [0.01, 0.001]}"))
    assert len(vision) == nominal + borrowing == 6
    state: dict = {}

    def borrowing_all() -> bool:
        state["vision"] = _workloads(cp, vision)
        state["status"] = _cluster_queue(cp, "vision").get("status") or {}
        return (sum(map(_admitted, state["vision"].values())) == len(vision)
                and _reserved({"status": state["status"]}, "gpu-a100") == (nominal + borrowing, borrowing))

    wait_until("vision's 6 trials admitted, 2 on borrowed A100s", borrowing_all, 180, interval=0.5,
               describe=lambda: json.dumps(state.get("status"))[:1500])
    print(f"\n[kueue] dev: vision borrows: {json.dumps(state['status'].get('flavorsReservation'))}")
    nlp = _submit(stack, env, "nlp", "reclaim", _held_sweep("nlp", "reclaim", "{lr: [0.01, 0.001]}"))
    assert len(nlp) == nlp_nominal == 2

    def reclaimed() -> bool:
        state["vision"], state["nlp"] = _workloads(cp, vision), _workloads(cp, nlp)
        state["status"] = {t: _cluster_queue(cp, t).get("status") or {} for t in ("vision", "nlp")}
        used = {t: sum(_gpus(w) for w in state[t].values() if _admitted(w)) for t in ("vision", "nlp")}
        assert used["vision"] <= nominal + borrowing and used["nlp"] <= nlp_nominal, used
        return (used == {"vision": nominal, "nlp": nlp_nominal}
                and _reserved({"status": state["status"]["vision"]}, "gpu-a100") == (nominal, 0)
                and _reserved({"status": state["status"]["nlp"]}, "gpu-a100") == (nlp_nominal, 0))

    wait_until("nlp's trials admitted on the A100s vision gives back", reclaimed, 300, interval=0.5,
               describe=lambda: json.dumps(state.get("status"))[:2000])
    preempted = {n: _condition(w, "Preempted") for n, w in state["vision"].items()
                 if _condition(w, "Preempted").get("status") == "True"}
    print(f"[kueue] dev: preempted for nlp: {sorted(preempted)}: "
          f"{sorted({(c['reason'], c.get('message', '')[:120]) for c in preempted.values()})}")
    assert len(preempted) == borrowing, preempted
    assert {c["reason"] for c in preempted.values()} == {"InCohortReclamation"}, preempted
    for j in vision:  # the preempted trials are stopped (suspended again, no pod), not failed
        name = j["metadata"]["name"]
        if name in preempted:
            assert cp.get(j).body["spec"]["suspend"] is True, name
            wait_until(f"{name}'s pods gone", lambda: not _items(
                cp, f"/api/v1/namespaces/vision/pods?labelSelector=batch.kubernetes.io/job-name={name}"), 120)
    _finish(e, nlp)  # nlp's trials end; vision's preempted ones are admitted again, on the A100s nlp leaves idle

    def watch() -> None:
        used = sum(_gpus(w) for w in _workloads(cp, vision).values() if _admitted(w))
        assert used <= nominal + borrowing, used

    _finish(e, vision, watch)
    _all_succeeded(cp, vision, "dev: vision's trials after the reclaim")
    print(f"[memory] dev: Kueue's controller after the scenarios: {stack.rss_kib()['dev/kueue'] / 1024:.0f} MiB")
    e.argocd.wait_synced_healthy(["dev-vision-workloads", "dev-nlp-workloads"], timeout=120)
    _timing("dev: Kueue borrowing and reclaim scenario", time.monotonic() - t0)


OTHER_QUEUE = {
    "apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"name": "other-queue", "namespace": "vision", "labels": {"kueue.x-k8s.io/queue-name": "nlp"}},
    "spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "train", "image": "registry.example.com/ml/vision-notebook:2026.11",
                        "command": ["python", "train.py"],
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi", GPU: "1"},
                                      "limits": {"cpu": "1", "memory": "1Gi", GPU: "1"}}}]}}}}


@example_only
def test_kueue_admits_nothing_for_a_queue_the_namespace_does_not_have(stack, synced):
    """A Job in vision's workloads folder naming the queue `nlp` (another team's name; vision has only `default`):
    kflowgen's gate refuses the file; committed around the gate, Argo CD creates it, Kueue's webhook suspends it and
    Kueue never admits it (its Workload says the LocalQueue does not exist): no pod runs. A revert prunes it."""
    t0 = time.monotonic()
    e, repo = stack.environments["dev"], stack.repo
    cp, argocd = e.cluster.cp, e.argocd
    path = repo.path / "overlays" / "dev" / "teams" / "vision" / "workloads" / "job.other-queue.yaml"
    path.write_text(yaml.safe_dump(OTHER_QUEUE, sort_keys=False))
    gate = kflowgen("validate", "-C", str(repo.path), cwd=repo.path, check=False)
    assert gate.returncode == 1 and "job.other-queue.yaml" in gate.stdout + gate.stderr, gate.stdout
    bad = repo.commit("vision: a Job on another queue, around the gate", render=False)
    app = _synced_at(argocd, "dev-vision-workloads", bad, retried=True)
    assert app["status"]["operationState"]["phase"] == "Succeeded", summary(app)  # a Job is a kind teams may sync
    seen: dict = {}

    def refused() -> bool:
        seen["workloads"] = _workloads(cp, [OTHER_QUEUE])
        w = seen["workloads"].get("other-queue")
        return bool(w) and "LocalQueue nlp doesn't exist" in _condition(w, "QuotaReserved").get("message", "")

    wait_until("Kueue says the LocalQueue does not exist", refused, 120, interval=0.5,
               describe=lambda: json.dumps(seen.get("workloads"))[:1500])
    w = seen["workloads"]["other-queue"]
    print(f"\n[kueue] dev: vision/other-queue: {_condition(w, 'QuotaReserved')}")
    assert not _admitted(w) and cp.get(OTHER_QUEUE).body["spec"]["suspend"] is True
    assert not _items(cp, "/api/v1/namespaces/vision/pods?labelSelector=batch.kubernetes.io/job-name=other-queue")
    repo.git("revert", "--no-edit", "HEAD")
    app = _synced_at(argocd, "dev-vision-workloads", repo.head(), retried=True)
    assert app["status"]["operationState"]["phase"] == "Succeeded", summary(app)
    wait_until("the Job pruned", lambda: cp.get(OTHER_QUEUE).status == 404, 120, interval=0.5)
    _timing("dev: Kueue refuses a queue the namespace does not have", time.monotonic() - t0)


def _deployment(cp, name: str, namespace: str) -> dict | None:
    r = cp.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    return r.body if r.ok else None


def _written(obj: dict) -> tuple:
    """What a sync would write of an object: its spec, labels, annotations, and who wrote each field when (managedFields
    but the status subresource's, which controllers update as pods come and go)."""
    meta = obj["metadata"]
    return (obj["spec"], meta.get("labels"), meta.get("annotations"),
            [f for f in meta.get("managedFields") or [] if f.get("subresource") != "status"])


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
    _synced_at(prod.argocd, "prod-recsys-workloads", revision, retried=True)
    for env in ("dev", "staging"):  # Argo CD compares them at the new commit and finds nothing to do
        _compared_at(stack.environments[env].argocd, f"{env}-recsys-workloads", revision)
    wait_until("prod's ranker Deployment serves staging's version", lambda: (
        (d := _deployment(prod.cluster.cp, "ranker", "recsys"))["spec"]["template"]["metadata"]["labels"][label]
        == staging_version and (d.get("status") or {}).get("updatedReplicas") == d["status"].get("replicas")
        and d["status"].get("availableReplicas", 0) >= 1 and d["status"].get("observedGeneration") == d["metadata"]
        ["generation"]), 300, interval=0.5, describe=prod.argocd.describe)
    after = _deployment(stack.environments["staging"].cluster.cp, "ranker", "recsys")
    assert after["metadata"]["generation"] == before["staging"]["metadata"]["generation"]
    assert _written(after) == _written(before["staging"])  # its status may move (pods' readiness), nothing else
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
    # kept (a pruned Job is a 404), and finished: Argo CD calls a Job Kueue has resumed Healthy before its pod ends
    wait_until("the kept Job finished", lambda: (e.cluster.cp.get(job).body.get("status") or {}).get("succeeded") == 1,
               120, interval=0.5, describe=lambda: json.dumps(e.cluster.cp.get(job).body)[:1500])
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
        present: dict[str, float] = {}  # when each was last seen still there (its GET's start)
        marked: dict[str, float] = {}  # first seen marked for deletion or gone (its GET's end)
        gone: dict[str, float] = {}
        argocd.refresh(f"{env}-root")

        def watch() -> bool:
            for part, (plural, name) in names.items():
                sent = time.monotonic()
                r = cp.request("GET", f"/apis/argoproj.io/v1alpha1/namespaces/argocd/{plural}/{name}")
                now = time.monotonic()
                if r.status == 404:
                    gone.setdefault(part, now)
                    marked.setdefault(part, now)
                elif r.ok:
                    present[part] = sent
                    if r.body["metadata"].get("deletionTimestamp"):
                        marked.setdefault(part, now)
            return len(gone) == len(names)

        wait_until(f"{env}: recsys's Applications and project pruned", watch, 300, interval=0.2,
                   describe=argocd.describe)
        print(f"\n[offboarding] {env}: " + ", ".join(
            f"{p} deleted +{marked[p] - t0:.1f}s (gone +{gone[p] - t0:.1f}s)" for p in sorted(names, key=marked.get)))
        # each part is deleted only once the one before it is gone: never seen marked before the one before it was
        # last seen there (each time is its own GET's, so one poll's reads cannot be taken for one instant)
        assert marked["platform"] > present.get("workloads", float("-inf")), (env, marked, present)
        assert marked["project"] > present.get("platform", float("-inf")), (env, marked, present)
        root = _synced_at(argocd, f"{env}-root", revision, retried=True)
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


def _left(pids: list[int], folder: Path, timeout: float = 30) -> tuple[list[int], list[str]]:
    """The stack's processes still alive and any process naming its folder, once none is left or after `timeout`: a
    killed process ends when the kernel gets to it, on a loaded machine a moment after the signal."""
    deadline = time.monotonic() + timeout
    while True:
        left = ([p for p in pids if _alive(p)], _mentioning(folder))
        if left == ([], []) or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_stop_leaves_no_process_and_no_folder(stack):
    """Runs after the scenarios: tear-down kills every process of the stack and removes its folder (the fixture's
    finalizer then has nothing left to do)."""
    pids, folder = stack.pids(), stack.folder
    assert pids and all(map(_alive, pids))
    stack.stop()
    assert not [p for p in pids if _alive(p)]  # stop() waits for the processes it started
    assert not folder.exists()
    assert _left(pids, folder) == ([], [])  # and what they started ends with them


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
        # etcd, apiserver, kcm, scheduler, kwok, redis, 2 argocd, JobSet and Trainer where the platform uses
        # Trainer, and Kueue where dev queues training
        assert len(pids) == 8 + 2 * TRAINER + ("dev" in QUEUED) and all(map(_alive, pids))
        proc.send_signal(sig)
        proc.wait(timeout=120)
        assert _left(pids, folder) == ([], [])  # the kernel's parent-death signal is asynchronous
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
