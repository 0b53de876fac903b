"""Serving: rendered TF Serving objects (golden), the model config read back by a real protobuf parser, strict
kubeconform and kustomize checks, one-scalar promotion, and the serving rules (one line per case)."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kflowgen.checks import schemas as kschemas
from kflowgen.specs import schema as specschema
from kflowgen.write import writer
from kflowgen.targets.emit import dump
from kflowgen.specs.loader import load_file, load_text
from kflowgen.specs.model import Model, platform_from, team_from
from kflowgen.flow.promote import promote
from kflowgen.rules import serving as serving_rule
from kflowgen.specs.served import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, ServedModel, served_model_from
from kflowgen.targets.serving import model_config, render_model

PROJECT = Path(__file__).resolve().parents[1]
TOOLS = PROJECT / ".tools" / "bin"
KUBECONFORM = str(TOOLS / "kubeconform") if (TOOLS / "kubeconform").is_file() else shutil.which("kubeconform")
KUSTOMIZE = str(TOOLS / "kustomize") if (TOOLS / "kustomize").is_file() else shutil.which("kustomize")
TF_REGISTRY = "docker.io/tensorflow/"

def platform(tf_registry: bool = True):
    spec, diags = load_file(PROJECT, "specs/platform.yaml")
    assert not diags
    p = platform_from(spec)
    assert TF_REGISTRY in p.registries  # the example platform allows the default serving images
    return p if tf_registry else dataclasses.replace(p, registries=tuple(r for r in p.registries if r != TF_REGISTRY))


def world(tf_registry: bool = True) -> Model:
    p = platform(tf_registry)
    teams = [team_from(load_file(PROJECT, rel.relative_to(PROJECT).as_posix())[0], list(p.environments))
             for rel in sorted((PROJECT / "specs" / "teams").glob("*.yaml"))]
    return Model(p, teams)


def team(model: Model, name: str):
    return next(t for t in model.teams if t.name == name)


def served(text: str, path: str = "specs/models/recsys/ranker.yaml") -> ServedModel:
    spec, diags = load_text(text, path)
    assert diags == [] and specschema.validate("model", spec) == []
    return served_model_from(spec)


RESNET = """\
team: vision
name: resnet
path: models/resnet/
environments:
  staging: {version: 2, cpu: 4, memory: 16Gi, gpu: {type: a100, count: 1}}
  prod: {version: 1, replicas: 3, cpu: 8, memory: 32Gi, gpu: {type: a100, count: 1}}
"""
RANKER = """\
team: recsys
name: ranker
path: models/ranker
environments:
  staging: {version: 4}
  prod:
    version: 3
    cpu: 500m
    memory: 1Gi
    autoscale: {minReplicas: 2, maxReplicas: 5}
"""

GOLDEN_RESNET_STAGING = '''\
# configmap.resnet-config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: resnet-config
  labels:
    app.kubernetes.io/name: resnet
    app.kubernetes.io/component: model-server
    kflowgen.dev/model: resnet
data:
  models.config: |
    model_config_list {
      config {
        name: 'resnet'
        base_path: '/workspace/models/resnet'
        model_platform: 'tensorflow'
        model_version_policy {
          specific {
            versions: 2
          }
        }
      }
    }
# deployment.resnet.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: resnet
  labels:
    app.kubernetes.io/name: resnet
    app.kubernetes.io/component: model-server
    kflowgen.dev/model: resnet
spec:
  replicas: 1
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      app.kubernetes.io/name: resnet
      kflowgen.dev/model: resnet
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/name: resnet
        app.kubernetes.io/component: model-server
        kflowgen.dev/model: resnet
        kflowgen.dev/model-version: "2"
        kflowgen.dev/team: vision
      annotations:
        kflowgen.dev/config-sha256: 8c0b7a5f742efba5ab959f53b203e5ef15bb7c1d77597cabbfd58868f61d219b
    spec:
      serviceAccountName: runner
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        seccompProfile:
          type: RuntimeDefault
      nodeSelector:
        nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB
      tolerations:
      - key: nvidia.com/gpu
        operator: Exists
        effect: NoSchedule
      containers:
      - name: tfserving
        image: docker.io/tensorflow/serving:2.19.1-gpu
        command:
        - /usr/bin/tensorflow_model_server
        args:
        - --port=8500
        - --rest_api_port=8501
        - --model_config_file=/etc/tfserving/models.config
        ports:
        - name: grpc
          containerPort: 8500
          protocol: TCP
        - name: http
          containerPort: 8501
          protocol: TCP
        startupProbe:
          tcpSocket:
            port: grpc
          periodSeconds: 10
          failureThreshold: 60
        readinessProbe:
          httpGet:
            path: /v1/models/resnet
            port: http
          periodSeconds: 10
          failureThreshold: 3
        livenessProbe:
          tcpSocket:
            port: grpc
          periodSeconds: 20
          failureThreshold: 3
        resources:
          requests:
            cpu: "4"
            memory: 16Gi
            nvidia.com/gpu: "1"
          limits:
            cpu: "4"
            memory: 16Gi
            nvidia.com/gpu: "1"
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop:
            - ALL
        volumeMounts:
        - name: config
          mountPath: /etc/tfserving
          readOnly: true
        - name: nas
          mountPath: /workspace/models/resnet
          subPath: models/resnet
          readOnly: true
      volumes:
      - name: config
        configMap:
          name: resnet-config
      - name: nas
        persistentVolumeClaim:
          claimName: nas
          readOnly: true
# service.resnet.yaml
apiVersion: v1
kind: Service
metadata:
  name: resnet
  labels:
    app.kubernetes.io/name: resnet
    app.kubernetes.io/component: model-server
    kflowgen.dev/model: resnet
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: resnet
    kflowgen.dev/model: resnet
  ports:
  - name: grpc
    port: 8500
    targetPort: grpc
    protocol: TCP
  - name: http
    port: 8501
    targetPort: http
    protocol: TCP
'''


# --- rendering ------------------------------------------------------------------------------------------------

def rendered(text: str, env: str) -> dict[str, dict]:
    w = world()
    m = served(text, f"specs/models/{yaml.safe_load(text)['team']}/x.yaml")
    return render_model(m, team(w, m.team), w.platform, env)


def test_golden_gpu_model_in_staging():
    files = rendered(RESNET, "staging")
    assert "".join(f"# {name}\n{dump(obj)}" for name, obj in files.items()) == GOLDEN_RESNET_STAGING


def test_replicas_add_a_disruption_budget():
    files = rendered(RESNET, "prod")
    assert list(files) == ["configmap.resnet-config.yaml", "deployment.resnet.yaml", "service.resnet.yaml",
                           "poddisruptionbudget.resnet.yaml"]
    assert files["deployment.resnet.yaml"]["spec"]["replicas"] == 3
    assert files["poddisruptionbudget.resnet.yaml"]["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "resnet", "kflowgen.dev/model": "resnet"}}}


def test_cpu_model_defaults():
    files = rendered(RANKER, "staging")
    assert list(files) == ["configmap.ranker-config.yaml", "deployment.ranker.yaml", "service.ranker.yaml"]
    pod = files["deployment.ranker.yaml"]["spec"]["template"]["spec"]
    assert files["deployment.ranker.yaml"]["spec"]["replicas"] == 1
    assert pod["containers"][0]["image"] == DEFAULT_IMAGE and "nodeSelector" not in pod
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                                 "limits": {"cpu": "1", "memory": "2Gi"}}


def test_autoscale_adds_an_hpa_and_leaves_replicas_to_it():
    files = rendered(RANKER, "prod")
    assert "replicas" not in files["deployment.ranker.yaml"]["spec"]  # Argo CD would otherwise fight the HPA
    assert "poddisruptionbudget.ranker.yaml" in files
    assert files["horizontalpodautoscaler.ranker.yaml"]["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ranker"},
        "minReplicas": 2, "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                              "averageUtilization": 70}}}]}
    res = files["deployment.ranker.yaml"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "500m", "memory": "1Gi"}


def test_image_override_wins_over_the_gpu_default():
    m = served(RESNET.replace("path:", "image: registry.example.com/ml/tfs:2.19.1-gpu\npath:"),
               "specs/models/vision/resnet.yaml")
    assert m.image_for("staging") == "registry.example.com/ml/tfs:2.19.1-gpu"
    assert served(RESNET, "specs/models/vision/resnet.yaml").image_for("prod") == DEFAULT_GPU_IMAGE


def test_version_changes_roll_pods_but_never_the_selector():
    before = rendered(RANKER, "prod")
    after = rendered(RANKER.replace("version: 3", "version: 4"), "prod")
    dep_a, dep_b = before["deployment.ranker.yaml"]["spec"], after["deployment.ranker.yaml"]["spec"]
    assert dep_a["selector"] == dep_b["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "ranker", "kflowgen.dev/model": "ranker"}}
    assert before["service.ranker.yaml"]["spec"]["selector"] == after["service.ranker.yaml"]["spec"]["selector"]
    assert dep_a["template"]["metadata"]["annotations"] != dep_b["template"]["metadata"]["annotations"]
    assert dep_b["template"]["metadata"]["labels"]["kflowgen.dev/model-version"] == "4"
    assert before["configmap.ranker-config.yaml"] != after["configmap.ranker-config.yaml"]
    unchanged = {"service.ranker.yaml", "poddisruptionbudget.ranker.yaml", "horizontalpodautoscaler.ranker.yaml"}
    assert {k for k in before if before[k] == after[k]} == unchanged


def _model_server_config_class():
    """ModelServerConfig and the messages it needs, with the field names and numbers of tensorflow_serving's
    config/model_server_config.proto and sources/storage_path/file_system_storage_path_source.proto."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto

    def field(name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
        f = F(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
        return f

    pkg = ".tensorflow.serving"
    policy = descriptor_pb2.DescriptorProto(name="ServableVersionPolicy")
    policy.nested_type.add(name="Latest").field.append(field("num_versions", 1, F.TYPE_UINT32))
    policy.nested_type.add(name="All")
    policy.nested_type.add(name="Specific").field.append(field("versions", 1, F.TYPE_INT64, F.LABEL_REPEATED))
    policy.oneof_decl.add(name="policy_choice")
    for name, number, msg in (("latest", 100, "Latest"), ("all", 101, "All"), ("specific", 102, "Specific")):
        policy.field.append(field(name, number, F.TYPE_MESSAGE,
                                  type_name=f"{pkg}.FileSystemStoragePathSourceConfig.ServableVersionPolicy.{msg}",
                                  oneof=0))
    source = descriptor_pb2.DescriptorProto(name="FileSystemStoragePathSourceConfig")
    source.nested_type.append(policy)
    config = descriptor_pb2.DescriptorProto(name="ModelConfig")
    config.field.extend([field("name", 1, F.TYPE_STRING), field("base_path", 2, F.TYPE_STRING),
                         field("model_platform", 4, F.TYPE_STRING),
                         field("model_version_policy", 7, F.TYPE_MESSAGE,
                               type_name=f"{pkg}.FileSystemStoragePathSourceConfig.ServableVersionPolicy")])
    config_list = descriptor_pb2.DescriptorProto(name="ModelConfigList")
    config_list.field.append(field("config", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, f"{pkg}.ModelConfig"))
    server = descriptor_pb2.DescriptorProto(name="ModelServerConfig")
    server.oneof_decl.add(name="config")
    server.field.append(field("model_config_list", 1, F.TYPE_MESSAGE, type_name=f"{pkg}.ModelConfigList", oneof=0))
    fdp = descriptor_pb2.FileDescriptorProto(name="tensorflow_serving/config/model_server_config.proto",
                                             package="tensorflow.serving", syntax="proto3",
                                             message_type=[source, config, config_list, server])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.ModelServerConfig"))


@pytest.mark.parametrize("text, env, name, base, version", [
    (RESNET, "staging", "resnet", "/workspace/models/resnet", 2),
    (RANKER, "prod", "ranker", "/workspace/models/ranker", 3),
])
def test_model_config_parses_as_model_server_config(text, env, name, base, version):
    from google.protobuf import text_format

    msg = text_format.Parse(rendered(text, env)[f"configmap.{name}-config.yaml"]["data"]["models.config"],
                            _model_server_config_class()())
    assert msg.WhichOneof("config") == "model_config_list"
    (config,) = msg.model_config_list.config
    assert (config.name, config.base_path, config.model_platform) == (name, base, "tensorflow")
    assert config.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(config.model_version_policy.specific.versions) == [version]


def test_model_config_is_mounted_where_the_server_reads_it():
    files = rendered(RESNET, "staging")
    c = files["deployment.resnet.yaml"]["spec"]["template"]["spec"]["containers"][0]
    mount = next(v for v in c["volumeMounts"] if v["name"] == "config")
    assert f"--model_config_file={mount['mountPath']}/models.config" in c["args"]
    nas = next(v for v in c["volumeMounts"] if v["name"] == "nas")
    assert nas["readOnly"] is True and nas["mountPath"] == "/workspace/models/resnet"
    assert "base_path: '/workspace/models/resnet'" in files["configmap.resnet-config.yaml"]["data"]["models.config"]


def all_rendered() -> list[tuple[str, str, dict[str, dict]]]:
    """(team, env, files) for every example model spec and environment."""
    w = world()
    out = []
    for rel in sorted((PROJECT / "specs" / "models").glob("*/*.yaml")):
        spec, diags = load_file(PROJECT, rel.relative_to(PROJECT).as_posix())
        assert not diags and specschema.validate("model", spec) == []
        m = served_model_from(spec)
        out += [(m.team, env, render_model(m, team(w, m.team), w.platform, env)) for env in m.environments]
    return out


def kubeconform(folder: Path, text: str) -> dict:
    cmd = [KUBECONFORM, "-strict", "-summary", "-output", "json", *kschemas.kubeconform_args(folder)]
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def schemas(tmp_path_factory) -> Path:
    return kschemas.schema_dir("1.34.0", [], tmp_path_factory.mktemp("cache"))


@pytest.mark.skipif(KUBECONFORM is None, reason="kubeconform not found")
def test_rendered_objects_pass_strict_kubeconform(schemas):
    docs = [obj for _, _, files in all_rendered() for obj in files.values()]
    kinds = {d["kind"] for d in docs}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress"}
    report = kubeconform(schemas, "".join("---\n" + dump(d) for d in docs))
    assert report["summary"] == {"valid": len(docs), "invalid": 0, "errors": 0, "skipped": 0}


@pytest.mark.skipif(KUBECONFORM is None or KUSTOMIZE is None, reason="kustomize or kubeconform not found")
def test_workloads_overlay_builds_keeps_selectors_and_validates(tmp_path, schemas):
    """As the overlay will use them: namespace and team labels from a kustomization, selectors untouched."""
    for team_name, env, files in all_rendered():
        folder = tmp_path / env / team_name
        folder.mkdir(parents=True)
        for name, obj in files.items():
            (folder / name).write_text(dump(obj))
        (folder / "kustomization.yaml").write_text(dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": team_name,
            "labels": [{"pairs": {"app.kubernetes.io/managed-by": "kflowgen", "kflowgen.dev/team": team_name},
                        "includeSelectors": False}], "resources": list(files)}))
        built = subprocess.run([KUSTOMIZE, "build", str(folder)], capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, built.stderr
        objs = list(yaml.safe_load_all(built.stdout))
        assert {o["metadata"]["namespace"] for o in objs} == {team_name}
        for o in objs:
            if o["kind"] == "Deployment":
                assert o["spec"]["selector"] == files[f"deployment.{o['metadata']['name']}.yaml"]["spec"]["selector"]
        assert kubeconform(schemas, built.stdout)["summary"]["valid"] == len(files)


# --- schema -----------------------------------------------------------------------------------------------------

def schema_problems(text: str) -> list[tuple[str, int, int]]:
    spec, diags = load_text(text, "specs/models/recsys/ranker.yaml")
    assert diags == []
    return [(d.code, d.line, d.col) for d in specschema.validate("model", spec)]


HEAD = "team: recsys\nname: ranker\npath: models/ranker\nenvironments:\n"


@pytest.mark.parametrize("text, expected", [
    (RANKER, []),
    (RESNET, []),
    (HEAD + "  prod: {version: 0}\n", [("KF204", 5, 19)]),
    (HEAD + "  prod: {version: '3'}\n", [("KF203", 5, 19)]),
    (HEAD + "  prod: {version: 3, replica: 2}\n", [("KF201", 5, 22)]),
    (HEAD + "  prod: {version: 3, gpu: {type: t4}}\n", [("KF202", 5, 22)]),
    (HEAD + "  prod: {version: 3, memory: lots}\n", [("KF204", 5, 30)]),
    (HEAD + "  prod: {}\n", [("KF202", 5, 3)]),
    (HEAD.replace("models/ranker", "../other/ranker") + "  prod: {version: 1}\n", [("KF204", 3, 7)]),
    (HEAD.replace("models/ranker", "/nas/ranker") + "  prod: {version: 1}\n", [("KF204", 3, 7)]),
    (HEAD.replace("models/ranker", "models/./ranker") + "  prod: {version: 1}\n", [("KF204", 3, 7)]),
    ("image: tensorflow/serving\n" + HEAD + "  prod: {version: 1}\n", [("KF204", 1, 8)]),
    (HEAD.replace("ranker\n", "a" * 41 + "\n", 1) + "  prod: {version: 1}\n", [("KF204", 2, 7)]),
    (HEAD + "  Prod: {version: 1}\n", [("KF204", 5, 3)]),
])
def test_schema(text, expected):
    assert schema_problems(text) == expected


# --- rules ------------------------------------------------------------------------------------------------------

def problems(*specs: tuple[str, str], tf_registry: bool = True) -> list[tuple[str, str, int, int]]:
    """(code, file name, line, col) the serving rules report for model specs given as (path, text)."""
    models = [served(text, path) for path, text in specs]
    return [(d.code, d.path.rsplit("/", 1)[-1], d.line, d.col)
            for d in serving_rule.check(world(tf_registry), models)]


R = "specs/models/recsys/ranker.yaml"


def one(env_lines: str, head: str = HEAD, path: str = R, **kw):
    return problems((path, head + env_lines), **kw)


def example_specs() -> list[tuple[str, str]]:
    return [(p.relative_to(PROJECT).as_posix(), p.read_text())
            for p in sorted((PROJECT / "specs" / "models").glob("*/*.yaml"))]


def test_examples_pass():
    specs = example_specs()
    assert len(specs) == 2
    assert problems(*specs) == []


def test_examples_need_the_tensorflow_registry_in_the_platform():
    specs = example_specs()
    assert [c for c, *_ in problems(*specs, tf_registry=False)] == ["KF335", "KF335"]


@pytest.mark.parametrize("env_lines, expected", [
    ("  staging: {version: 1}\n  prod: {version: 2, replicas: 3, cpu: 4, memory: 8Gi}\n", []),
    ("  qa: {version: 1}\n", [("KF332", "ranker.yaml", 5, 3)]),
    ("  staging: {version: 1, gpu: {type: h100, count: 1}}\n", [("KF333", "ranker.yaml", 5, 37)]),
    ("  staging: {version: 1, gpu: {type: t4, count: 9}}\n",
     [("KF333", "ranker.yaml", 5, 37)]),  # no quota can hold it: KF306 keeps quotas within capacity
    ("  staging: {version: 1, gpu: {type: t4, count: 1}}\n", []),  # 2 T4 with the rollout pod: the quota is 2
    ("  staging: {version: 1, replicas: 2, gpu: {type: t4, count: 1}}\n", [("KF334", "ranker.yaml", 5, 3)]),
    ("  staging: {version: 1, replicas: 4, cpu: 4}\n", [("KF334", "ranker.yaml", 5, 3)]),
    ("  staging: {version: 1, replicas: 3, cpu: 4}\n", []),
    ("  prod: {version: 1, replicas: 3, memory: 100Gi}\n", [("KF334", "ranker.yaml", 5, 3)]),
    ("  prod: {version: 1, cpu: 1, autoscale: {minReplicas: 2, maxReplicas: 64}}\n", [("KF334", "ranker.yaml", 5, 3)]),
    ("  prod: {version: 1, replicas: 2, autoscale: {minReplicas: 2, maxReplicas: 3}}\n",
     [("KF336", "ranker.yaml", 5, 22)]),
    ("  prod: {version: 1, autoscale: {minReplicas: 4, maxReplicas: 3}}\n", [("KF336", "ranker.yaml", 5, 47)]),
])
def test_rules(env_lines, expected):
    assert one(env_lines) == expected


def test_team_without_quota_in_the_environment():
    head = HEAD.replace("recsys", "nlp")
    assert one("  staging: {version: 1}\n  prod: {version: 1}\n", head, "specs/models/nlp/ranker.yaml") == [
        ("KF332", "ranker.yaml", 5, 3)]


def test_unknown_team():
    head = HEAD.replace("recsys", "recsis")
    assert one("  prod: {version: 1}\n", head, "specs/models/recsis/ranker.yaml") == [("KF331", "ranker.yaml", 1, 7)]


@pytest.mark.parametrize("path", ["specs/models/recsys/other.yaml", "specs/models/vision/ranker.yaml",
                                  "specs/models/ranker.yaml"])
def test_file_must_match_team_and_name(path):
    assert one("  prod: {version: 1}\n", path=path) == [("KF330", path.rsplit("/", 1)[-1], 2, 7)]


def test_two_models_of_a_team_share_a_name():
    text = HEAD + "  prod: {version: 1}\n"
    assert problems((R, text), (R.replace(".yaml", ".yml"), text)) == [("KF330", "ranker.yml", 2, 7)]


def test_models_of_a_team_fit_its_quota_together():
    a = ("specs/models/recsys/ranker.yaml", HEAD + "  staging: {version: 1, replicas: 3, cpu: 2}\n")
    b = ("specs/models/recsys/scorer.yaml",
         HEAD.replace("ranker", "scorer") + "  staging: {version: 1, replicas: 3, cpu: 3}\n")
    assert problems(a) == [] and problems(b) == []
    assert problems(a, b) == [("KF334", "scorer.yaml", 5, 3)]
    (d,) = serving_rule.check(world(), [served(t, p) for p, t in (a, b)])
    assert d.message == ("staging: servers of team recsys request 20 cpu (ranker 8, scorer 12; replicas or "
                         "maxReplicas plus one pod during a rollout) but the team's staging quota is 16")


def test_quota_message_with_millicores_and_memory():
    (cpu,) = serving_rule.check(world(), [served(HEAD + "  staging: {version: 1, replicas: 10, cpu: 1500m}\n")])
    assert "request 16500m cpu (ranker 16500m;" in cpu.message and cpu.message.endswith("staging quota is 16")
    (mem,) = serving_rule.check(world(), [served(HEAD + "  staging: {version: 1, replicas: 2, memory: 24Gi}\n")])
    assert "request 72Gi memory" in mem.message and mem.hint.startswith("lower replicas")
    assert "raise quota.staging.memory in specs/teams/recsys.yaml" in mem.hint


def test_image_registries():
    image = "image: ghcr.io/someone/serving:2.19.1\n"
    assert one("  prod: {version: 1}\n", image + HEAD) == [("KF335", "ranker.yaml", 1, 8)]
    assert one("  prod: {version: 1}\n", "image: registry.example.com/ml/serving:2.19.1\n" + HEAD) == []
    (d,) = serving_rule.check(world(tf_registry=False), [served(HEAD + "  prod: {version: 1}\n")])
    assert (d.code, d.message) == ("KF335", f"image '{DEFAULT_IMAGE}' (the default) is not from an allowed registry")
    assert "add docker.io/tensorflow/ to registries in specs/platform.yaml" in d.hint


def test_path_that_names_a_version_is_a_warning():
    text = HEAD.replace("models/ranker", "models/ranker/3") + "  prod: {version: 3}\n"
    (d,) = serving_rule.check(world(), [served(text)])
    assert (d.code, d.severity, d.line, d.col) == ("KF336", "warning", 3, 7)


# --- promotion --------------------------------------------------------------------------------------------------

SPEC = """\
# yaml-language-server: $schema=../../../schemas/model.schema.json
team: recsys   # owners: carol
name: ranker
path: "models/ranker"
environments:
  staging:
    version: 12   # candidate
    cpu: 2
  prod: {version: 9, replicas: 2}   # pinned by the release review
"""


def repo(tmp_path: Path, text: str = SPEC, name: str = "ranker.yaml") -> Path:
    folder = tmp_path / "specs" / "models" / "recsys"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(text.encode())
    return tmp_path


def spec_bytes(root: Path) -> bytes:
    return (root / "specs/models/recsys/ranker.yaml").read_bytes()


def promoted(root: Path, *args) -> tuple[str, list]:
    """promote() in memory, then its spec written as the writer writes it (the CLI writes it with the overlays, or
    nothing: tests/test_cli.py); the message and findings."""
    change, diags = promote(root, *args)
    if change is None:
        return "", diags
    assert spec_bytes(root) != change.data  # promote itself writes nothing
    writer.replace_file(root / change.path, change.data)
    return change.message, diags


def test_promote_changes_only_the_version_scalar(tmp_path):
    root = repo(tmp_path)
    out, diags = promoted(root, "recsys", "ranker", "staging", "prod")
    assert diags == []
    assert spec_bytes(root) == SPEC.replace("{version: 9,", "{version: 12,").encode()
    assert out == (
        "--- a/specs/models/recsys/ranker.yaml\n+++ b/specs/models/recsys/ranker.yaml\n@@ -6,4 +6,4 @@\n"
        "   staging:\n     version: 12   # candidate\n     cpu: 2\n"
        "-  prod: {version: 9, replicas: 2}   # pinned by the release review\n"
        "+  prod: {version: 12, replicas: 2}   # pinned by the release review\n"
        "recsys/ranker prod: version 9 -> 12\n")
    assert sorted(p.name for p in (root / "specs/models/recsys").iterdir()) == ["ranker.yaml"]  # no temp file left


def test_promote_back_and_keep_crlf_and_missing_final_newline(tmp_path):
    text = SPEC.replace("\n", "\r\n").rstrip("\r\n")
    root = repo(tmp_path, text)
    out, diags = promoted(root, "recsys", "ranker", "prod", "staging")
    assert diags == [] and out.endswith("recsys/ranker staging: version 12 -> 9\n")
    assert spec_bytes(root) == text.replace("version: 12 ", "version: 9 ").encode()


def test_promote_keeps_the_file_mode(tmp_path):
    root = repo(tmp_path)
    (root / "specs/models/recsys/ranker.yaml").chmod(0o640)
    assert promoted(root, "recsys", "ranker", "staging", "prod")[1] == []
    assert (root / "specs/models/recsys/ranker.yaml").stat().st_mode & 0o777 == 0o640


def refused(root: Path, *args) -> tuple[str, int, int, str]:
    before = spec_bytes(root)
    out, diags = promoted(root, *args)
    assert out == "" and len(diags) == 1 and spec_bytes(root) == before
    d = diags[0]
    return d.code, d.line, d.col, d.message


def test_promote_already_equal_changes_nothing_and_is_no_error(tmp_path):
    root = repo(tmp_path, SPEC.replace("version: 9", "version: 12"))
    before = spec_bytes(root)
    change, diags = promote(root, "recsys", "ranker", "staging", "prod")
    assert diags == [] and change.data is None and spec_bytes(root) == before
    assert change.message == "recsys/ranker prod: already serves version 12, as staging does: nothing to change\n"


@pytest.mark.parametrize("src, dst, missing", [("staging", "qa", "qa"), ("stagin", "prod", "stagin")])
def test_promote_environment_missing(tmp_path, src, dst, missing):
    code, line, col, message = refused(repo(tmp_path), "recsys", "ranker", src, dst)
    assert (code, line, col, message) == ("KF338", 5, 1, f"model recsys/ranker is not served in '{missing}'")


@pytest.mark.parametrize("team_name, model, hint", [
    ("recsys", "rankr", "did you mean 'ranker'?"), ("nlp", "ranker", "no models in specs/models/nlp/"),
    ("recsys", "../ranker", "names are lower-case letters, digits and '-'"),
])
def test_promote_unknown_model(tmp_path, team_name, model, hint):
    root = repo(tmp_path)
    out, diags = promoted(root, team_name, model, "staging", "prod")
    assert out == "" and [(d.code, d.hint) for d in diags] == [("KF337", hint)]


def test_promote_refuses_an_invalid_spec(tmp_path):
    root = repo(tmp_path, SPEC.replace("cpu: 2", "cpu: two"))
    assert refused(root, "recsys", "ranker", "staging", "prod")[:3] == ("KF204", 8, 10)


def test_promote_then_render_rolls_only_prod(tmp_path):
    root = repo(tmp_path, (PROJECT / "specs/models/recsys/ranker.yaml").read_text())
    w = world()
    before = served_model_from(load_file(root, "specs/models/recsys/ranker.yaml")[0])
    out, diags = promoted(root, "recsys", "ranker", "staging", "prod")
    assert diags == [] and out.endswith("recsys/ranker prod: version 3 -> 4\n")
    after = served_model_from(load_file(root, "specs/models/recsys/ranker.yaml")[0])
    assert after.environments["prod"].version == before.environments["staging"].version
    assert model_config(after, w.platform, "staging") == model_config(before, w.platform, "staging")
    assert model_config(after, w.platform, "prod") != model_config(before, w.platform, "prod")
