"""Who reaches whom, judged by a policy engine kflowgen did not write: the NetworkPolicies Argo CD would apply in an
environment (kflowgen's, built by kustomize from the example repository, and the real Zero to JupyterHub chart's
for the hub, rendered by helm), with pods labelled as their makers label them (kflowgen's Job and Deployment
templates, the chart's hub and proxy Deployments, the notebook pods the real KubeSpawner makes), are given to cyclonus
(Kubernetes SIG Network's policy engine), which answers, connection by connection, whether it is allowed.

The truth tables below are written from the specs in plain words (specs/platform.yaml's network section, each
model's callers), not from the rendered policies."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT
from kflowgen.flow import pipeline
from kflowgen.build import build
from kflowgen.build import overlays_of
from kflowgen.options import Options
from test_jupyterhub import CHART, HELM, HUB_PYTHON, helm_template, hub_etc, platform_secret, probe

CYCLONUS = PROJECT / ".tools/bin/cyclonus"
pytestmark = pytest.mark.skipif(not (CYCLONUS.exists() and HELM.exists() and HUB_PYTHON.exists() and CHART.is_dir()),
                                reason="needs cyclonus (make tools-net), helm and the hub's Python (make tools-hub) "
                                       "and the chart in ../shared/upstream")


@dataclass
class Pod:
    namespace: str
    labels: dict[str, str]
    ports: dict[int, str] = field(default_factory=dict)  # port -> its name in the pod spec
    ip: str = ""


@dataclass
class World:
    policies: list[dict]
    namespaces: dict[str, dict[str, str]]  # namespace -> its labels, as the API server has them
    pods: dict[str, Pod]


def _template(obj: dict) -> dict:
    spec = obj["spec"]
    if "template" in spec:
        return spec["template"]
    if obj["kind"] == "TrainJob":  # its trainer pods: the runtime's template as kflowgen's runtimePatches entry patches it
        (step,) = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        return step["template"]["spec"]["template"]
    return next(iter(spec.get("pytorchReplicaSpecs", spec.get("tfReplicaSpecs", {})).values()))["template"]


def _pod(namespace: str, template: dict) -> Pod:
    ports = {p["containerPort"]: p.get("name", "") for c in template["spec"]["containers"] for p in c.get("ports", [])}
    return Pod(namespace, dict(template["metadata"].get("labels") or {}), ports)


def _world(env: str, tmp: Path) -> World:
    model, diags = pipeline.load(Options(PROJECT))
    assert model is not None, diags
    from kflowgen.targets import render
    files = render(model)
    built, diags = build(Options(PROJECT, 1), files, overlays_of(files, env))
    assert not diags, diags
    objs = [d for text in built.overlays.values() for d in yaml.safe_load_all(text) if d]
    hub = helm_template(files[f"overlays/{env}/jupyterhub/values.yaml"], tmp)
    policies = [o for o in objs + [{**d, "metadata": {**d["metadata"], "namespace": model.platform.hub_namespace}}
                                   for d in hub] if o["kind"] == "NetworkPolicy"]
    namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in objs if o["kind"] == "Namespace"}
    pods: dict[str, Pod] = {}
    for o in objs:
        if o["kind"] in ("Job", "PyTorchJob", "TFJob", "TrainJob"):  # a training pod of each kind and team
            pods.setdefault(f"{o['kind'].lower()}/{o['metadata']['namespace']}", _pod(o["metadata"]["namespace"],
                                                                                     _template(o)))
        elif o["kind"] == "Deployment":  # a model server
            pods[f"model/{o['metadata']['name']}"] = _pod(o["metadata"]["namespace"], _template(o))
    for d in hub:
        if d["kind"] == "Deployment" and d["metadata"]["name"] in ("hub", "proxy"):
            pods[d["metadata"]["name"]] = _pod(model.platform.hub_namespace, _template(d))
    # notebook pods, as the real KubeSpawner of the chart's hub image makes them for people of each team
    people = [[f"{t.name}-person", [g for g, _ in t.members][:1]] for t in model.teams_in(env)]
    answers = probe(hub_etc(hub, tmp, platform_secret()), people, tmp)
    for t in model.teams_in(env):
        manifest = next(iter(answers["people"][f"{t.name}-person"]["pods"].values()))
        pods[f"notebook/{t.name}"] = _pod(manifest["metadata"]["namespace"], manifest)
    # what the platform runs beside: DNS, the destinations of specs/platform.yaml's egress rules, the ingress
    # controller, and a pod of a namespace that is no team's
    pods["dns"] = Pod("kube-system", {"k8s-app": "kube-dns"}, {53: "dns"})
    pods["mlflow"] = Pod("mlflow", {"app": "mlflow"}, {5000: "http", 22: "ssh"})
    pods["devpi"] = Pod("artifacts", {"app": "devpi"}, {3141: "http"})
    pods["artifacts-other"] = Pod("artifacts", {"app": "registry-admin"}, {3141: "http"})
    pods["ingress-controller"] = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {443: "https"})
    pods["stranger"] = Pod("default", {"app": "stranger"}, {8080: "http"})
    for i, pod in enumerate(pods.values()):
        pod.ip = f"10.244.{i // 200}.{i % 200 + 10}"
    for pod in pods.values():
        # the API server labels every namespace with its name (kubernetes.io/metadata.name, immutable)
        namespaces.setdefault(pod.namespace, {})
    namespaces = {n: {**labels, "kubernetes.io/metadata.name": n} for n, labels in namespaces.items()}
    return World(policies, namespaces, pods)


def allowed(world: World, connections: list[tuple[str, str, int]], tmp: Path) -> list[bool]:
    """cyclonus's answer for each (source pod or IP, destination pod or IP, TCP port) (UDP for port 53)."""
    def end(name: str, port: int | None) -> dict:
        if name[0].isdigit():
            return {"IP": name}
        pod = world.pods[name]
        return {"Internal": {"PodLabels": pod.labels, "NamespaceLabels": world.namespaces[pod.namespace],
                             "Namespace": pod.namespace}, "IP": pod.ip}

    traffic = [{"Source": end(src, None), "Destination": end(dst, port), "Protocol": "UDP" if port == 53 else "TCP",
                "ResolvedPort": port,
                "ResolvedPortName": "" if dst[0].isdigit() else world.pods[dst].ports.get(port, "")}
               for src, dst, port in connections]
    (tmp / "traffic.json").write_text(json.dumps(traffic))
    (tmp / "policies.yaml").write_text(yaml.safe_dump({"apiVersion": "networking.k8s.io/v1",
                                                        "kind": "NetworkPolicyList", "items": world.policies}))
    out = subprocess.run([str(CYCLONUS), "analyze", "--mode", "query-traffic", "--policy-path",
                          str(tmp / "policies.yaml"), "--traffic-path", str(tmp / "traffic.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    answers = [line.split("|")[2].strip() for line in out.stdout.splitlines() if "IS ALLOWED?" in line]
    assert len(answers) == len(connections) and set(answers) <= {"TRUE", "FALSE"}, out.stdout[-2000:]
    return [a == "TRUE" for a in answers]


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    return _world("prod", tmp_path_factory.mktemp("prod"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return _world("dev", tmp_path_factory.mktemp("dev"))


def check(world: World, table: list[tuple[str, str, int, bool]], tmp: Path):
    answers = allowed(world, [(s, d, p) for s, d, p, _ in table], tmp)
    wrong = [f"{s} -> {d}:{p}: {'allowed' if got else 'denied'}, expected {'allowed' if want else 'denied'}"
             for (s, d, p, want), got in zip(table, answers) if got != want]
    assert not wrong, "\n".join(wrong)


# --- the truth tables ---------------------------------------------------------------------------------------------

def test_notebooks_and_the_hub_reach_each_other_and_nothing_else_does(prod, tmp_path):
    check(prod, [
        ("notebook/recsys", "hub", 8081, True),          # the notebook server reports to the hub (hub_connect_url)
        ("hub", "notebook/recsys", 8888, True),          # the hub checks on the server
        ("proxy", "notebook/recsys", 8888, True),        # the proxy routes the user's browser to it
        ("notebook/vision", "notebook/recsys", 8888, False),   # another team's notebook
        ("trainjob/nlp", "notebook/nlp", 8888, True),  # the team's own namespace
        ("trainjob/nlp", "notebook/recsys", 8888, False),
        ("stranger", "notebook/recsys", 8888, False),
        ("trainjob/nlp", "hub", 8081, False),          # only notebook servers talk to the hub
        ("notebook/recsys", "proxy", 8001, False),       # the proxy's API is the hub's alone
        ("notebook/recsys", "dns", 53, True),
    ], tmp_path)


def test_a_model_admits_its_team_its_callers_and_the_ingress_controller_only(prod, tmp_path):
    # recsys/ranker: callers [vision], exposed in prod; vision/resnet: no callers, not exposed
    check(prod, [
        ("notebook/recsys", "model/ranker", 8501, True),
        ("notebook/vision", "model/ranker", 8500, True),
        ("notebook/vision", "model/ranker", 8501, True),
        ("model/resnet", "model/ranker", 8501, True),        # any pod of a caller team
        ("ingress-controller", "model/ranker", 8501, True),
        ("trainjob/nlp", "model/ranker", 8501, False),     # nlp is not a caller
        ("notebook/nlp", "model/ranker", 8500, False),
        ("stranger", "model/ranker", 8501, False),
        ("notebook/vision", "model/ranker", 9090, False),    # callers reach the serving ports only
        ("notebook/vision", "model/resnet", 8501, True),     # its own team
        ("notebook/recsys", "model/resnet", 8501, False),    # no callers: its team only
        ("ingress-controller", "model/resnet", 8501, False),  # not exposed
        ("model/ranker", "notebook/vision", 8888, False),    # callers open nothing the other way
    ], tmp_path)


def test_pods_reach_exactly_the_platforms_egress_destinations_of_the_environment(prod, dev, tmp_path):
    for world in (prod, dev):
        check(world, [
            ("notebook/nlp", "mlflow", 5000, True),
            ("notebook/nlp", "mlflow", 22, False),           # the rule's ports only
            ("notebook/nlp", "devpi", 3141, True),
            ("notebook/nlp", "artifacts-other", 3141, False),  # the rule's pods only
            ("notebook/nlp", "10.20.3.4", 443, True),        # object-store: 10.20.0.0/16 on 443 and 9000
            ("notebook/nlp", "10.20.3.4", 9000, True),
            ("notebook/nlp", "10.21.0.1", 443, False),
            ("notebook/nlp", "stranger", 8080, False),
            ("notebook/nlp", "ingress-controller", 443, False),
        ], tmp_path)
    if "trainjob/nlp" in dev.pods:
        job = "trainjob/nlp"
    else:
        job = next(name for name, pod in dev.pods.items() if name.startswith("job/"))
    check(dev, [
        (job, "1.1.1.1", 443, True),          # internet-https: dev only, 443 only
        (job, "1.1.1.1", 80, False),
        (job, "10.1.2.3", 443, False),        # its except: private addresses
        (job, "169.254.169.254", 443, False),  # the cloud metadata service
    ], tmp_path)
    check(prod, [("trainjob/nlp", "1.1.1.1", 443, False)], tmp_path)


@pytest.mark.parametrize("ports", [[22, 80, 443, 5000, 8080, 8081, 8500, 8501, 8888]])
def test_no_team_reaches_another_teams_pods_but_the_models_it_calls(prod, tmp_path, ports):
    """Every pair of pods of two different teams, on common ports: allowed exactly where the destination is a model
    whose spec names the source's team among its callers, on TF Serving's ports."""
    model, _ = pipeline.load(Options(PROJECT))
    callers = {m.name: set(m.callers) for m in model.served}
    team_of = {name: pod.namespace for name, pod in prod.pods.items() if pod.namespace in
               {t.name for t in model.teams_in("prod")}}
    table = []
    for src, s_team in team_of.items():
        for dst, d_team in team_of.items():
            if s_team == d_team:
                continue
            for port in ports:
                served = dst.startswith("model/") and s_team in callers.get(dst.split("/", 1)[1], set())
                table.append((src, dst, port, served and port in (8500, 8501)))
    assert any(want for *_, want in table)  # the example has a caller: the table tests both answers
    check(prod, table, tmp_path)
