"""One environment's local cluster: kflowgen's ControlPlane (etcd + kube-apiserver, started without its own
controller manager), and beside it, from its kubeconfig: a kube-controller-manager with the controllers Jobs, nodes,
volumes and Deployments need, kube-scheduler, kwok playing the kubelet of fake nodes made from the platform
spec's `gpuTypes` (labels from `nodeSelector`, taints matching `tolerations`) and the environment's GPU capacity, and,
where the platform queues training, Kueue's controller (e2e.kueue); where it trains with Kubeflow Trainer, Trainer's and
JobSet's controllers and its runtimes (e2e.trainer). Their webhook servers share one certificate per cluster.

A Job's pod on a fake node runs `job_seconds`, then succeeds; a pod whose container has the environment variable
`E2E_RUN=until-released` (an experiment's `env`, for scenarios that need trials to hold their GPUs) runs until the
test annotates it `e2e.kflowgen.dev/released` (see `release()`), then `job_seconds` more."""
from __future__ import annotations

import copy
import math
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kflowgen.checks.server import ControlPlane

from e2e.kueue import Kueue, make_certificate
from e2e.trainer import KUEUE_FRAMEWORK, Trainer, TrainerSetup
from e2e.procs import Processes, StackError, http_ok, wait_until
from kflowgen.checks.server.process import free_ports

# What kube-controller-manager runs here: enough for Jobs and their pods (job, pod GC, garbage collector for Argo CD's
# cascading deletes), nodes (node-lifecycle removes the not-ready taint the API server puts on new nodes), quota,
# namespaces, service accounts, volumes (static NAS volumes bind to the teams' claims) and Deployments (hub, serving).
CONTROLLERS = ",".join([
    "job-controller", "cronjob-controller", "garbage-collector-controller", "pod-garbage-collector-controller",
    "ttl-after-finished-controller", "node-lifecycle-controller", "namespace-controller", "resourcequota-controller",
    "serviceaccount-controller", "root-ca-certificate-publisher-controller", "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller", "persistentvolume-protection-controller",
    "deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller",
    "endpointslice-controller", "disruption-controller", "clusterrole-aggregation-controller",
])
KWOK_LABEL = ("type", "kwok")
GPU_TYPE_LABEL = "e2e.kflowgen.dev/gpu-type"  # which platform GPU type a fake node stands for ("none": CPU only)
HOLD_ENV = ("E2E_RUN", "until-released")  # a container environment variable: the pod runs until released
RELEASED = "e2e.kflowgen.dev/released"    # the pod annotation that releases it
# which pods kwok's pod-complete Stage completes: those not held; a copy of it, those held and released
HELD_VALUE = f'.spec.containers[].env[]? | select(.name == "{HOLD_ENV[0]}") | .value'
NOT_HELD = [{"key": HELD_VALUE, "operator": "DoesNotExist"}]
RELEASED_HELD = [{"key": HELD_VALUE, "operator": "In", "values": [HOLD_ENV[1]]},
                 {"key": f'.metadata.annotations["{RELEASED}"]', "operator": "Exists"}]


# kwok plays the cloud's load-balancer controller as it plays the kubelet: a Service of type LoadBalancer gets an
# address (loopback), as on a cluster with one; without it Argo CD holds such a Service, and its Application,
# Progressing for ever (the JupyterHub chart's proxy-public is one).
LOAD_BALANCER = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": "service-load-balancer"},
    "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Service"},
             "selector": {"matchExpressions": [
                 {"key": ".spec.type", "operator": "In", "values": ["LoadBalancer"]},
                 {"key": ".status.loadBalancer.ingress", "operator": "DoesNotExist"}]},
             "next": {"statusTemplate": "loadBalancer:\n  ingress:\n  - ip: 127.0.0.1\n    ipMode: VIP\n"}}}
# ... and the ingress controller's: an Ingress gets an address, as the platform's ingress controller gives it; Argo CD
# holds an Ingress without one Progressing (a model served under `host:` has one).
INGRESS = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": "ingress-address"},
    "spec": {"resourceRef": {"apiGroup": "networking.k8s.io/v1", "kind": "Ingress"},
             "selector": {"matchExpressions": [
                 {"key": ".status.loadBalancer.ingress", "operator": "DoesNotExist"}]},
             "next": {"statusTemplate": "loadBalancer:\n  ingress:\n  - ip: 127.0.0.1\n"}}}


@dataclass
class NodeSpec:
    name: str
    gpu_type: str  # "none" for CPU nodes
    labels: dict[str, str]
    taints: list[dict]
    resources: dict[str, str]

    def manifest(self) -> dict:
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {KWOK_LABEL[0]: KWOK_LABEL[1], "kubernetes.io/hostname": self.name,
                                        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                        GPU_TYPE_LABEL: self.gpu_type, **self.labels}},
                "spec": {"taints": self.taints} if self.taints else {},
                "status": {"capacity": self.resources, "allocatable": self.resources}}


def taints_for(tolerations: list[dict]) -> list[dict]:
    """The taints a GPU type's tolerations are written for (a toleration without a key tolerates everything and says
    nothing about the node)."""
    out = []
    for t in tolerations or []:
        if not t.get("key"):
            continue
        value = t.get("value", "") if t.get("operator", "Equal") == "Equal" else "present"
        for effect in ([t["effect"]] if t.get("effect") else ["NoSchedule"]):
            out.append({"key": t["key"], "value": value, "effect": effect})
    return out


def nodes_for(platform: dict, env: str, gpus_per_node: int = 4, cpu_nodes: int = 2) -> list[NodeSpec]:
    """Fake nodes for an environment: each GPU type's capacity in nodes of `gpus_per_node` GPUs (the last one with
    the rest), with the type's nodeSelector labels and taints; and CPU-only nodes without taints."""
    capacity = ((platform.get("environments") or {}).get(env) or {}).get("capacity", {}).get("gpu", {})
    host = {"cpu": "96", "memory": "1Ti", "pods": "110", "ephemeral-storage": "10Ti"}
    nodes = []
    for gpu_type, count in sorted(capacity.items()):
        spec = platform["gpuTypes"][gpu_type]
        resource = spec.get("resource", "nvidia.com/gpu")
        for i in range(math.ceil(count / gpus_per_node)):
            n = min(gpus_per_node, count - i * gpus_per_node)
            nodes.append(NodeSpec(f"{env}-{gpu_type}-{i}", gpu_type, dict(spec["nodeSelector"]),
                                  taints_for(spec.get("tolerations") or []), {**host, resource: str(n)}))
    for i in range(cpu_nodes):
        nodes.append(NodeSpec(f"{env}-cpu-{i}", "none", {}, [], dict(host)))
    return nodes


@dataclass
class Cluster:
    env: str
    folder: Path
    tools: Path                  # .tools/bin
    kwok_stages: Path            # the Stage files (.tools/share/kwok/stages.yaml)
    nodes: list[NodeSpec]
    job_seconds: float = 2.0     # how long a Job's pod runs before kwok completes it
    kueue_share: Path | None = None  # Kueue's CRD and webhook kustomizations (.tools/share/kueue/<v>): run Kueue
    trainer_setup: TrainerSetup | None = None  # run Trainer and JobSet (e2e.trainer)
    cp: ControlPlane | None = None
    procs: Processes | None = None
    kueue: Kueue | None = None
    trainer: Trainer | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cp.url

    def start(self) -> None:
        t0 = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.procs = Processes(self.folder)
        self.cp = ControlPlane(controller_manager=False, timeout=180)
        self.cp.start()
        self.timings["control plane"] = time.monotonic() - t0
        kubeconfig = str(self.cp.kubeconfig)
        sched_port, kwok_port = free_ports(2)
        self.procs.spawn("kube-controller-manager", [
            str(self.tools / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={CONTROLLERS}", "--leader-elect=false", "--secure-port=0",
            "--use-service-account-credentials=false", f"--root-ca-file={self.cp.ca_file}",
            "--node-monitor-grace-period=60s", "--concurrent-job-syncs=10"])
        self.procs.spawn("kube-scheduler", [
            str(self.tools / "kube-scheduler"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={sched_port}"])
        stages = self.folder / "kwok-stages.yaml"
        stages.write_text(self._stages())
        self.procs.spawn("kwok", [
            str(self.tools / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={stages}",
            f"--manage-nodes-with-label-selector={KWOK_LABEL[0]}={KWOK_LABEL[1]}", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok_port}", "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1"])
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # its self-signed serving certificate

        def scheduler_ok() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{sched_port}/healthz", context=insecure, timeout=2) as r:
                return r.status == 200

        self.procs.wait_ready("kube-controller-manager",
                              lambda: self.cp.request("GET", "/api/v1/namespaces/default/serviceaccounts/default").ok)
        self.procs.wait_ready("kube-scheduler", scheduler_ok)
        self.procs.wait_ready("kwok", lambda: http_ok(f"http://127.0.0.1:{kwok_port}/healthz"))
        for node in self.nodes:
            r = self.cp.create(node.manifest())
            if not r.ok:
                raise StackError(f"node {node.name}: {r.message}")
        wait_until(f"{len(self.nodes)} kwok nodes Ready and untainted", self._nodes_ready, 120,
                   describe=lambda: self.procs.log("kwok") + "\n" + self.procs.log("kube-controller-manager"))
        if self.kueue_share or self.trainer_setup:
            certs = self.folder / "certs"
            ca = make_certificate(certs)
        if self.trainer_setup:  # before Kueue, whose TrainJob integration needs the CRDs
            self.trainer = Trainer(self.cp, self.procs, self.folder / "trainer", self.tools, self.trainer_setup,
                                   certs, ca)
            self.trainer.start()
            self.timings.update(self.trainer.timings)
        if self.kueue_share:
            frameworks = ("batch/job", *((KUEUE_FRAMEWORK,) if self.trainer_setup else ()))
            self.kueue = Kueue(self.cp, self.procs, self.folder / "kueue", self.tools, self.kueue_share, certs, ca,
                               frameworks)
            self.kueue.start()
            self.timings.update(self.kueue.timings)
        self.timings["cluster"] = time.monotonic() - t0

    def _stages(self) -> str:
        """kwok's own Stages (nodes, pods), a Job pod's run time, held pods completed only once released (a copy of
        pod-complete), the cloud's load balancer, the ingress controller."""
        docs = [d for d in yaml.safe_load_all(self.kwok_stages.read_text()) if d] + [LOAD_BALANCER, INGRESS]
        for d in list(docs):
            if d.get("kind") == "Stage" and d["metadata"]["name"] == "pod-complete":
                if self.job_seconds > 0:
                    d["spec"]["delay"] = {"durationMilliseconds": int(self.job_seconds * 1000)}
                released = copy.deepcopy(d)
                released["metadata"]["name"] = "pod-complete-released"
                released["spec"]["selector"]["matchExpressions"] += RELEASED_HELD
                d["spec"]["selector"]["matchExpressions"] += NOT_HELD
                docs.append(released)
        return yaml.safe_dump_all(docs, sort_keys=False)

    def release(self, namespace: str, selector: str) -> int:
        """Annotate the running pods of `selector` that are held (E2E_RUN=until-released) as released: kwok completes
        them. The number annotated now (pods a Job makes later, e.g. after Kueue preempted and readmitted it, are
        held again until released)."""
        r = self.cp.request("GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector})
        n = 0
        for pod in r.body.get("items", []) if r.ok else []:
            if pod["status"].get("phase") != "Running" or RELEASED in (pod["metadata"].get("annotations") or {}):
                continue
            patched = self.cp.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}",
                                      {"metadata": {"annotations": {RELEASED: "true"}}},
                                      content_type="application/merge-patch+json")
            n += patched.ok
        return n

    def _nodes_ready(self) -> bool:
        r = self.cp.request("GET", "/api/v1/nodes", query={"labelSelector": "=".join(KWOK_LABEL)})
        items = r.body.get("items", []) if r.ok else []
        if len(items) != len(self.nodes):
            return False
        for n in items:
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
            if not ready or any(t["key"].startswith("node.kubernetes.io/") for t in n["spec"].get("taints", [])):
                return False
        return True

    def pids(self) -> list[int]:
        return (self.cp.pids() if self.cp else []) + (self.procs.pids() if self.procs else [])

    def stop(self) -> None:
        if self.procs:
            self.procs.stop()
        if self.cp:
            self.cp.stop()
