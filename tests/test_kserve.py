"""Serving with KServe (issue 21): the InferenceService kflowgen renders against KServe v0.20.0's own CRD and what its
controller does with it (read from the module: pkg/controller/v1beta1/inferenceservice), the version each predictor
serves read back by a protobuf parser, who reaches the predictor pods, the pods counted against quota, canaries
finished with `kflowgen promote --finish`, and the whole golden case through `kflowgen validate`."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import copy_repo, tree_hash
from kflowgen import upstream
from kflowgen.cli import app
from kflowgen.flow import pipeline
from kflowgen.flow.promote import finish
from kflowgen.options import Options
from kflowgen.specs import layout
from kflowgen.specs.served import pods
from kflowgen.targets import render
from kflowgen.targets.serving import render_model
from test_serving import _model_server_config_class, served

PROJECT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "kserve"


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def model():
    m, diags = pipeline.load(Options(GOLDEN))
    assert m is not None, diags
    return m


def files(model, team: str, name: str, env: str = "prod") -> dict[str, dict]:
    m = next(s for s in model.served if (s.team, s.name) == (team, name))
    return render_model(m, model.team(env, team), model.platform, env)


# --- against KServe v0.20.0's CRD ------------------------------------------------------------------------------

def _crd() -> dict:
    (path,) = upstream.serving_crd_files(True)
    return json.loads(path.read_bytes())


def test_the_shipped_crd_is_kserve_v0_20_0_with_canaries():
    crd = _crd()
    assert crd["spec"]["group"] == "serving.kserve.io" and crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    canary = spec["canary"]["items"]
    assert canary["required"] == ["predictor", "trafficPercent"]
    assert (canary["properties"]["trafficPercent"]["minimum"], canary["properties"]["trafficPercent"]["maximum"]) == (0, 100)
    # the canary's model container must be named (the stable one must not: KServe's webhook refuses it)
    assert canary["properties"]["predictor"]["properties"]["model"]["required"] == ["modelFormat", "name"]
    assert "required" not in spec["predictor"]["properties"]["model"]
    source = next(s for s in upstream.sources() if s["file"].startswith(upstream.KSERVE))
    assert (source["module"], source["version"]) == ("github.com/kserve/kserve", "v0.20.0")


def test_only_platforms_serving_with_kserve_install_its_crd():
    assert upstream.serving_crd_files(False) == []
    assert upstream.crd_files("3.6.2", kserve=True)[-1].name == "serving.kserve.io_inferenceservices.json"
    assert all(not p.name.startswith("serving.kserve.io") for p in upstream.crd_files("3.6.2"))


# --- what each predictor serves ---------------------------------------------------------------------------------

def _config(cm: dict):
    from google.protobuf import text_format

    msg = text_format.Parse(cm["data"]["models.config"], _model_server_config_class()())
    (config,) = msg.model_config_list.config
    return config.name, config.base_path, list(config.model_version_policy.specific.versions)


def test_previous_is_the_stable_predictor_and_version_the_canary_each_pinned(model):
    out = files(model, "shop", "recommender")
    isvc = out["inferenceservice.recommender.yaml"]
    stable, (canary,) = isvc["spec"]["predictor"], isvc["spec"]["canary"]
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                               "serving.kserve.io/autoscalerClass": "none"}
    assert (canary["trafficPercent"], canary["predictor"]["name"]) == (10, "v7")
    for predictor, version in ((stable, 6), (canary["predictor"], 7)):
        (volume,) = predictor["volumes"]
        cm = out[f"configmap.{volume['configMap']['name']}.yaml"]
        # the runtime mounts pvc://nas/<path> at /mnt/models; the config pins the version under it
        assert _config(cm) == ("recommender", "/mnt/models", [version])
        model_ = predictor["model"]
        assert model_["storageUri"] == "pvc://nas/models/recommender"
        assert model_["runtime"] == "kserve-tensorflow-serving" and model_["modelFormat"] == {"name": "tensorflow"}
        # appended to the runtime's args (--model_base_path=/mnt/models ...): TF Serving reads the config file instead
        assert model_["args"] == ["--model_config_file=/etc/tfserving/models.config"]
        assert {"name": "config", "mountPath": "/etc/tfserving", "readOnly": True} in model_["volumeMounts"]
        assert model_["readinessProbe"]["httpGet"] == {"path": "/v1/models/recommender", "port": 8080}
        assert predictor["labels"] == {layout.LABEL_VERSION: str(version)}
    assert stable["minReplicas"] == 10 and "minReplicas" not in canary["predictor"]
    assert canary["predictor"]["model"]["name"] == "kserve-container" and "name" not in stable["model"]
    # a canary sets no autoscaling (KServe's webhook refuses it): the canary's size comes from its share
    assert not {"maxReplicas", "scaleMetric", "scaleTarget", "autoScaling"} & set(canary["predictor"])


def test_without_a_canary_one_predictor_serves_version_and_an_autoscaler_sizes_it(model):
    out = files(model, "shop", "vision")
    isvc = out["inferenceservice.vision.yaml"]
    assert "canary" not in isvc["spec"] and isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    p = isvc["spec"]["predictor"]
    assert (p["minReplicas"], p["maxReplicas"], p["scaleMetric"], p["scaleTarget"]) == (1, 3, "cpu", 70)
    assert _config(out["configmap.vision-v3.yaml"]) == ("vision", "/mnt/models", [3])
    # a GPU server gets the -gpu image, as with the Deployment backend; runtimeVersion keeps its tag as written (KServe
    # would otherwise add -gpu to a GPU server's tag itself)
    assert (p["model"]["image"], p["model"]["runtimeVersion"]) == ("docker.io/tensorflow/serving:2.19.1-gpu",
                                                                   "2.19.1-gpu")
    assert p["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1" and p["tolerations"]


def test_a_digest_image_gets_no_runtime_version(model):
    model_ = files(model, "search", "ranker")["inferenceservice.ranker.yaml"]["spec"]["predictor"]["model"]
    assert "@sha256:" in model_["image"] and "runtimeVersion" not in model_


def test_a_version_change_without_a_canary_rolls_the_one_predictor():
    text = ("team: shop\nname: vision\npath: models/vision\nbackend: kserve\n"
            "environments:\n  prod: {version: 3}\n")
    m, diags = pipeline.load(Options(GOLDEN))
    before = served(text, "specs/models/shop/vision.yaml")
    after = served(text.replace("version: 3", "version: 4"), "specs/models/shop/vision.yaml")
    a, b = (render_model(x, m.team("prod", "shop"), m.platform, "prod") for x in (before, after))
    pa, pb = a["inferenceservice.vision.yaml"]["spec"]["predictor"], b["inferenceservice.vision.yaml"]["spec"]["predictor"]
    assert "name" not in pa and "name" not in pb  # the same Deployment (vision-predictor), rolled: no new one
    assert pa["volumes"] != pb["volumes"] and sorted(b) == sorted(k.replace("v3", "v4") for k in a)


# --- who reaches the predictor pods ------------------------------------------------------------------------------

def _pod_labels(isvc: dict, predictor: dict, name: str) -> dict[str, str]:
    """The labels KServe v0.20 gives a predictor pod (components/predictor.go buildObjectMeta: the runtime's, the
    InferenceService's, the predictor's, then its own; deployment_reconciler.go adds app)."""
    return {**isvc["metadata"]["labels"], **predictor.get("labels", {}),
            "serving.kserve.io/inferenceservice": isvc["metadata"]["name"], "component": "predictor",
            "app": f"isvc.{name}"}


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_callers_service_and_disruption_budget_select_stable_and_canary_pods(model, tmp_path):
    root = copy_repo(GOLDEN, tmp_path / "repo")
    shutil.copytree(PROJECT / "bases", root / "bases")
    rendered = render(model)
    out = files(model, "shop", "recommender")
    isvc = out["inferenceservice.recommender.yaml"]
    isvc["metadata"]["labels"].update(layout.labels("prod", "shop"))  # as placed in the workloads folder
    stable = _pod_labels(isvc, isvc["spec"]["predictor"], "recommender-predictor")
    canary = _pod_labels(isvc, isvc["spec"]["canary"][0]["predictor"], "recommender-v7-predictor")
    policy = yaml.safe_load(rendered["overlays/prod/teams/shop/platform/networkpolicy.model-recommender.yaml"]
                            .decode())
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 9000, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}]
    froms = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "search"}}} in froms
    service, pdb = out["service.recommender.yaml"], out["poddisruptionbudget.recommender.yaml"]
    for labels in (stable, canary):
        assert _selects(policy["spec"]["podSelector"]["matchLabels"], labels)
        assert _selects(service["spec"]["selector"], labels) and _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert labels[layout.LABEL_VERSION] == "7" and stable[layout.LABEL_VERSION] == "6"
    # callers keep the Deployment backend's address: <model>.<team>:8500 (gRPC) and :8501 (REST)
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8500, "grpc"), (8501, "http")]
    ports = {p["name"]: p["containerPort"] for p in isvc["spec"]["predictor"]["model"]["ports"]}
    assert ports == {"http": 8080, "grpc": 9000}
    # every team's pods may leave for model servers on the KServe ports too, where KServe serves (prod only)
    for env, expected in (("prod", [8500, 8501, 9000, 8080]), ("staging", [8500, 8501])):
        egress = yaml.safe_load(rendered[f"overlays/{env}/teams/search/platform/networkpolicy.allow-model-servers.yaml"]
                                .decode())
        assert [p["port"] for p in egress["spec"]["egress"][0]["ports"]] == expected


def test_cyclonus_lets_callers_and_the_ingress_controller_reach_stable_and_canary_pods_only(model, tmp_path):
    """The prod NetworkPolicies Argo CD would apply (built with bases/), judged by cyclonus, for predictor pods
    labelled as KServe labels them: shop/recommender (callers [search], exposed) and shop/vision (no callers)."""
    from test_network import CYCLONUS, Pod, World, allowed
    from kflowgen.build import build, overlays_of

    if not CYCLONUS.exists():
        pytest.skip("needs cyclonus (make tools-net)")
    root = copy_repo(GOLDEN, tmp_path / "repo")
    shutil.copytree(PROJECT / "bases", root / "bases")
    rendered = render(model)
    built, diags = build(Options(root, 1), rendered, overlays_of(rendered, "prod"))
    assert not diags, diags
    objs = [d for text in built.overlays.values() for d in yaml.safe_load_all(text) if d]
    namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in objs if o["kind"] == "Namespace"}
    pods = {}
    for o in objs:
        if o["kind"] == "InferenceService":
            name, spec = o["metadata"]["name"], o["spec"]
            predictors = [("stable", spec["predictor"], f"{name}-predictor")] + [
                ("canary", c["predictor"], f"{name}-{c['predictor']['name']}-predictor") for c in spec.get("canary", [])]
            for what, predictor, deployment in predictors:
                pods[f"{name}/{what}"] = Pod(o["metadata"]["namespace"], _pod_labels(o, predictor, deployment),
                                             {8080: "http", 9000: "grpc"})
    pods["search"] = Pod("search", {"app": "batch-scorer"})
    pods["shop"] = Pod("shop", {"app": "notebook"})
    pods["ingress-controller"] = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {443: "https"})
    pods["stranger"] = Pod("default", {"app": "stranger"})
    for i, pod in enumerate(pods.values()):
        pod.ip = f"10.244.0.{i + 10}"
        namespaces.setdefault(pod.namespace, {})
    namespaces = {n: {**labels, "kubernetes.io/metadata.name": n} for n, labels in namespaces.items()}
    world = World([o for o in objs if o["kind"] == "NetworkPolicy"], namespaces, pods)
    table = [
        ("search", "recommender/stable", 8080, True), ("search", "recommender/stable", 9000, True),
        ("search", "recommender/canary", 8080, True), ("search", "recommender/canary", 9000, True),
        ("search", "recommender/stable", 22, False),            # the serving ports only
        ("ingress-controller", "recommender/canary", 8080, True),  # exposed: the canary is behind the host too
        ("stranger", "recommender/stable", 8080, False), ("stranger", "recommender/canary", 9000, False),
        ("shop", "vision/stable", 8080, True),                  # its own team
        ("search", "vision/stable", 8080, False),               # no callers
        ("ingress-controller", "vision/stable", 8080, False),   # not exposed
    ]
    answers = allowed(world, [(a, b, port) for a, b, port, _ in table], tmp_path)
    assert [row for row, got in zip(table, answers) if got != row[3]] == []


def test_a_team_project_may_create_inference_services_only_where_kserve_serves(model):
    rendered = render(model)
    for env, expected in (("prod", True), ("staging", False)):
        project = yaml.safe_load(rendered[f"overlays/{env}/argocd/appproject.shop.yaml"].decode())
        kinds = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
        assert (("serving.kserve.io", "InferenceService") in kinds) is expected
        assert not {k for k in kinds if k[1] in ("ServingRuntime", "ClusterServingRuntime")}
        assert project["spec"]["clusterResourceWhitelist"] == []


# --- pods against quota -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env, replicas, expected_pods, share", [
    ("{version: 2}", 1, 2, None),                                          # one server and its surge pod
    ("{version: 2, replicas: 3}", 3, 4, None),
    ("{version: 2, previous: 1, canary: 10%, replicas: 10}", 10, 9 + 1 + 1 + 1, (Fraction(1, 10),) * 2),
    ("{version: 2, previous: 1, canary: 10%, replicas: 3}", 3, 2 + 1 + 1 + 1, (Fraction(1, 3),) * 2),
    ("{version: 2, previous: 1, canary: 50%, replicas: 8}", 8, 4 + 1 + 4 + 1, (Fraction(1, 2),) * 2),
    ("{version: 2, previous: 1, canary: 90%, replicas: 10}", 10, 1 + 1 + 9 + 3, (Fraction(9, 10),) * 2),
    # autoscaled: the stable version scales from minReplicas - canary pods up to maxReplicas, beside the canary
    ("{version: 2, previous: 1, canary: 25%, autoscale: {minReplicas: 4, maxReplicas: 8}}", 4, 8 + 1 + 1 + 1,
     (Fraction(1, 9), Fraction(1, 4))),
])
def test_kserve_pods_counted_against_quota(env, replicas, expected_pods, share):
    s = served(f"team: shop\nname: m\npath: models/m\nbackend: kserve\nenvironments:\n  prod: {env}\n",
               "specs/models/shop/m.yaml").environments["prod"]
    assert (s.replicas, pods(s)) == (replicas, expected_pods)
    if share:
        assert s.canary_share == share


def test_an_autoscaled_canary_says_the_range_of_its_share(tmp_path):
    root = copy_repo(GOLDEN, tmp_path / "repo")
    spec = root / "specs/models/search/ranker.yaml"
    spec.write_text(spec.read_text().replace("replicas: 2", "autoscale: {minReplicas: 4, maxReplicas: 8}"))
    code, out = run("validate", "-C", root, "--format", "text", "--env", "staging")  # prod's rules run all the same
    assert "prod: a 25% canary on 4 servers is 1 pod beside 3-8 of version 1: about 11% to 25% of requests reach " \
           "version 2 (KServe v0.20 splits requests by pods, not by weight)\n    fix: fixed replicas: 4 (or a " \
           "multiple) give exactly 25%; or accept about 11% to 25%" in out, out


# --- finishing a canary -------------------------------------------------------------------------------------------

SPEC = """\
team: shop
name: recommender
path: models/recommender
backend: kserve
environments:
  staging: {backend: deployment, version: 7}
  prod:
    version: 7
    previous: 6    # what prod served before
    canary: 10%
    replicas: 10
"""


def _repo(tmp_path: Path, text: str = SPEC) -> Path:
    spec = tmp_path / "specs/models/shop/recommender.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(text)
    return tmp_path


def test_finish_removes_the_canary_and_previous_lines_only(tmp_path):
    root = _repo(tmp_path)
    change, diags = finish(root, "shop", "recommender", "prod")
    assert diags == [] and (root / change.path).read_text() == SPEC  # nothing written yet: the caller writes
    assert change.data.decode() == SPEC.replace("    previous: 6    # what prod served before\n", "").replace(
        "    canary: 10%\n", "")
    assert change.message.endswith("shop/recommender prod: version 7 serves every request (was 10%, beside version 6)\n")
    assert "-    canary: 10%\n" in change.message


def test_finish_without_a_canary_changes_nothing_and_is_no_error(tmp_path):
    change, diags = finish(_repo(tmp_path), "shop", "recommender", "staging")
    assert diags == [] and change.data is None
    assert change.message == "shop/recommender staging: serves version 7 alone, no canary to finish: nothing to change\n"


def test_finish_refuses_a_canary_it_cannot_remove_in_place(tmp_path):
    text = SPEC.replace("    version: 7\n    previous: 6    # what prod served before\n    canary: 10%\n",
                        "    {version: 7, previous: 6, canary: 10%,\n     replicas: 10}\n").replace(
        "  prod:\n    {", "  prod: {").replace("    replicas: 10\n", "")
    change, diags = finish(_repo(tmp_path, text), "shop", "recommender", "prod")
    assert change is None and [(d.code, d.message) for d in diags] == [
        ("KF339", "cannot remove environments.prod.canary in place")]


def test_promote_finish_on_the_command_line(tmp_path):
    root = copy_repo(GOLDEN, tmp_path / "repo")
    shutil.copytree(PROJECT / "bases", root / "bases")
    assert run("render", "-C", root, "--format", "text")[0] == 0
    code, out = run("promote", "shop/recommender", "--finish", "prod", "-C", root)
    assert code == 0, out
    assert "-    previous: 6\n-    canary: 10%\n" in out
    assert "shop/recommender prod: version 7 serves every request (was 10%, beside version 6)\n" in out
    assert "0 added, 1 changed, 1 removed" in out  # the InferenceService; the version 6 ConfigMap goes
    isvc = yaml.safe_load((root / "overlays/prod/teams/shop/workloads/inferenceservice.recommender.yaml").read_text())
    assert "canary" not in isvc["spec"] and isvc["spec"]["predictor"]["volumes"][0]["configMap"]["name"] == "recommender-v7"
    assert run("render", "--check", "-C", root, "--format", "text")[0] == 0
    before = tree_hash(root)
    assert run("promote", "shop/recommender", "--finish", "prod", "-C", root) == (
        0, "shop/recommender prod: serves version 7 alone, no canary to finish: nothing to change\nkflowgen: ok\n")
    code, out = run("promote", "shop/recommender", "--finish", "prod", "--to", "prod", "-C", root)
    assert code == 2 and "give --from and --to, or --finish alone" in out
    assert tree_hash(root) == before


def test_a_finished_canary_reads_as_the_version_change_in_the_diff(tmp_path):
    import subprocess

    root = copy_repo(GOLDEN, tmp_path / "repo")
    shutil.copytree(PROJECT / "bases", root / "bases")
    assert run("render", "-C", root, "--format", "text")[0] == 0
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)
    assert run("promote", "shop/recommender", "--finish", "prod", "-C", root)[0] == 0
    code, out = run("diff", "--base", "HEAD", "-C", root, "--format", "text")
    # said by its cause (the model spec), not by the InferenceService, ConfigMap and Service it changes
    assert (code, out) == (0, "shop, prod: model recommender v6, canary v7 at 10% → v7 (10 replicas × 2 CPU, 4Gi)\n"
                              "kflowgen diff: 1 change in 1 environment\n")


# --- the whole case -------------------------------------------------------------------------------------------------

def test_the_golden_case_validates_with_kserve_s_crd_and_every_policy(tmp_path):
    """kustomize, kubeconform against the shipped CRD, the policies (KF618 among them) and the spec rules: one
    warning, KF363, for search/ranker's 25% canary on 2 servers."""
    root = copy_repo(GOLDEN, tmp_path / "repo")
    shutil.copytree(PROJECT / "bases", root / "bases")
    shutil.copytree(PROJECT / ".github", root / ".github", ignore=shutil.ignore_patterns("workflows"))
    (root / ".github/CODEOWNERS").write_text("* @acme/ml-platform\n")
    assert run("render", "-C", root, "--format", "text")[0] == 0
    code, out = run("validate", "-C", root, "--format", "text")
    warnings = [line for line in out.splitlines() if ": warning [" in line]
    assert code == 0 and [w.split(": warning ")[1][:7] for w in warnings if "KF317" not in w] == ["[KF363]"], out
    assert "prod     2 teams" in out


# --- what a hand-written InferenceService may not say (KF618) ---------------------------------------------------

@pytest.mark.parametrize("at", ["predictor", "transformer", "explainer"])
def test_a_request_logger_writing_to_storage_of_its_choosing_is_refused(model, at):
    """A component's `logger` makes KServe add its agent, which sends every request and response to `logger.url` or
    writes them to `logger.storage` with the credentials of a storage key or service account: storage credentials
    kflowgen does not check, like a model's `storage` (KF618)."""
    from kflowgen.checks import policy
    from kflowgen.checks.policy import Context
    rel = "overlays/prod/teams/search/workloads"
    (isvc,) = [obj for obj in files(model, "search", "ranker").values() if obj["kind"] == "InferenceService"]
    isvc["metadata"]["namespace"] = "search"  # as kustomize sets it
    ctx = Context.from_model(model)
    assert policy.run({rel: [isvc]}, ctx) == []
    isvc["spec"].setdefault(at, {})["logger"] = {
        "mode": "all", "url": "http://collector.search:8080",
        "storage": {"key": "other-bucket", "path": "/requests", "serviceAccountName": "s3-writer"}}
    found = [(d.code, d.message.split(": ", 1)[1].split(": ")[0]) for d in policy.run({rel: [isvc]}, ctx)]
    assert ("KF618", f"/spec/{at}/logger/storage") in found, found


@pytest.mark.parametrize("change, at", [
    (lambda p: p["model"].update(runtime="kserve-huggingfaceserver"), "/spec/predictor/model/runtime"),
    (lambda p: p["model"].pop("runtime"), "/spec/predictor/model/runtime"),  # KServe would pick one by model format
    (lambda p: p.update(huggingface=p.pop("model")), "/spec/predictor/huggingface"),
    (lambda p: p.update(sklearn={"storageUri": "pvc://nas/models/ranker"}), "/spec/predictor/sklearn"),
])
def test_a_predictor_serves_on_the_platform_s_serving_runtime_only(model, change, at):
    """The serving runtime is the model server's image, command and arguments: a predictor names the platform's
    ClusterServingRuntime (`kserve.runtime`), not another one the cluster has (KServe installs a dozen, some of which
    download models from the web), nor a framework field from which KServe picks a runtime itself (KF618)."""
    from kflowgen.checks import policy
    from kflowgen.checks.policy import Context
    rel = "overlays/prod/teams/search/workloads"
    (isvc,) = [obj for obj in files(model, "search", "ranker").values() if obj["kind"] == "InferenceService"]
    isvc["metadata"]["namespace"] = "search"
    ctx = Context.from_model(model)
    assert policy.run({rel: [isvc]}, ctx) == []
    for predictor in [isvc["spec"]["predictor"]] + [c["predictor"] for c in isvc["spec"].get("canary", [])]:
        change(predictor)
    found = [(d.code, d.message.split(": ", 1)[1].split(": ")[0]) for d in policy.run({rel: [isvc]}, ctx)]
    assert ("KF618", at) in found, found
    if isvc["spec"].get("canary"):
        assert ("KF618", at.replace("/spec/predictor", "/spec/canary/0/predictor")) in found, found
