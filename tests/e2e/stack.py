"""The whole local stack: per environment a cluster (e2e.cluster) and an Argo CD (e2e.argocd); one local git copy
of the repository (e2e.repo) that every environment's Argo CD syncs; optionally the JupyterHub chart's Helm
repository. `Stack.start()` brings it up and bootstraps each environment as the README tells a platform team to;
`Stack.stop()` tears everything down (also from atexit and on SIGTERM/SIGHUP; see e2e.procs)."""
from __future__ import annotations

import atexit
import json
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from e2e import kueue, procs, trainer
from e2e.argocd import ArgoCD
from e2e.cluster import Cluster, nodes_for
from e2e.repo import HelmRepo, LocalRepo, make

PROJECT = Path(__file__).resolve().parents[2]
TOOLS = PROJECT / ".tools" / "bin"
KWOK_STAGES = PROJECT / ".tools" / "share" / "kwok" / "stages.yaml"
KUEUE_SHARE = PROJECT / ".tools" / "share" / "kueue" / kueue.VERSION
JOBSET_SHARE = PROJECT / ".tools" / "share" / "jobset" / trainer.JOBSET_VERSION
TRAINER_SHARE = PROJECT / ".tools" / "share" / "trainer" / trainer.TRAINER_VERSION
SHARED_CHART = PROJECT.parent / "shared" / "upstream" / "jupyterhub-chart" / "jupyterhub"
# the training APIs' CRDs on every cluster (a cluster add-on); Trainer's controller runs where the platform uses it
TRAINING_CRDS = [PROJECT / "kflowgen" / "upstream" / name for name in ("training-operator", "trainer")]
TRAINER_CRDS = PROJECT / "kflowgen" / "upstream" / "trainer" / trainer.TRAINER_VERSION
NEEDED = ("argocd", "kube-scheduler", "kwok", "kueue", "jobset", "trainer-controller-manager", "etcd", "kube-apiserver",
          "kube-controller-manager", "kustomize")


def queueing(platform: dict, env: str) -> bool:
    """Whether the platform spec queues training with Kueue in env (then the stack runs Kueue's controller there)."""
    return bool((((platform.get("environments") or {}).get(env) or {}).get("queueing") or {}).get("enabled"))


def missing_tools(hub: bool = False, queues: bool = False) -> list[str]:
    """What `make tools-e2e` (and, for the hub, `make tools-hub`) has not provided; empty when all is there. `queues`:
    some environment runs Kueue, which also needs a private mount namespace (e2e.kueue)."""
    out = [name for name in NEEDED if not (TOOLS / name).is_file()]
    for shared in (KWOK_STAGES, KUEUE_SHARE / "crd" / "kustomization.yaml", KUEUE_SHARE / "webhook" / "kustomization.yaml",
                   JOBSET_SHARE / "crd" / "kustomization.yaml", JOBSET_SHARE / "webhook" / "kustomization.yaml",
                   TRAINER_SHARE / "webhook" / "kustomization.yaml", TRAINER_SHARE / "runtimes" / "kustomization.yaml"):
        if not shared.is_file():
            out.append(str(shared.relative_to(PROJECT)))
    if queues and (problem := kueue.mount_namespace_problem()):
        out.append(problem)
    if not shutil.which("redis-server"):
        out.append("redis-server (apt-get install -y redis-server)")
    if not shutil.which("git"):
        out.append("git")
    if hub:
        if not (TOOLS / "helm").is_file():
            out.append("helm (make tools-hub)")
        if not (SHARED_CHART / "Chart.yaml").is_file():
            out.append(f"the JupyterHub chart in {SHARED_CHART}")
    return out


@dataclass
class Environment:
    name: str
    cluster: Cluster
    argocd: ArgoCD
    applications: list[str] = field(default_factory=list)


class Stack:
    def __init__(self, envs: tuple[str, ...] = ("dev",), source: Path = PROJECT, hub: bool = True,
                 job_seconds: float = 2.0, gpus_per_node: int = 4):
        self.envs, self.source, self.hub, self.job_seconds = envs, source, hub, job_seconds
        self.gpus_per_node = gpus_per_node
        self.folder: Path | None = None
        self.environments: dict[str, Environment] = {}
        self.repo: LocalRepo | None = None
        self.helm: HelmRepo | None = None
        self.platform: dict = {}
        self.timings: dict[str, float] = {}

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        procs.install_signal_handlers()
        t0 = time.monotonic()
        self.folder = Path(tempfile.mkdtemp(prefix="kflowgen-e2e-"))
        atexit.register(self.stop)  # a Ctrl-C or SIGTERM outside the caller's try/finally still removes the folder
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise

    def _start(self, t0: float) -> None:
        self.platform = yaml.safe_load((self.source / "specs" / "platform.yaml").read_text())
        runtimes = trainer.runtimes_of(self.platform)
        setup = trainer.TrainerSetup(JOBSET_SHARE, TRAINER_SHARE, TRAINER_CRDS, runtimes) if runtimes else None
        for env in self.envs:
            cluster = Cluster(env, self.folder / env, TOOLS, KWOK_STAGES,
                              nodes_for(self.platform, env, self.gpus_per_node), self.job_seconds,
                              KUEUE_SHARE if queueing(self.platform, env) else None, setup)
            argocd = ArgoCD(env, None, self.folder / env / "argocd", TOOLS,  # type: ignore[arg-type]
                            namespace=(self.platform.get("argocd") or {}).get("namespace", "argocd"))
            self.environments[env] = Environment(env, cluster, argocd)
            cluster.start()
            argocd.cp = cluster.cp
        self.timings["clusters up"] = time.monotonic() - t0
        if self.hub:
            self.helm = HelmRepo(SHARED_CHART, self.folder / "helm-repo", TOOLS / "helm")
        self.repo = make(self.source, self.folder / "repo",
                         {env: e.cluster.url for env, e in self.environments.items()},
                         self.helm.url if self.helm else None)
        self.timings["repository rendered and committed"] = time.monotonic() - t0 - self.timings["clusters up"]
        for env, e in self.environments.items():
            self._platform_prerequisites(env, e)
            e.argocd.prepare(env, e.cluster.url)  # the controller exits when argocd-cm is missing
            e.argocd.start()
        self.timings["bring-up"] = time.monotonic() - t0

    def _platform_prerequisites(self, env: str, e: Environment) -> None:
        """What the README says the platform makes outside Git, before the first sync: the training operators'
        CRDs (a cluster add-on; Trainer itself and its runtimes are the cluster's, e2e.trainer), the team NAS (a StorageClass and one volume per team claim, bound to it in
        advance, as a static NFS export would be), and the hub's Secret."""
        cp = e.cluster.cp
        names = []
        for f in sorted(f for folder in TRAINING_CRDS for f in folder.glob("*/*.json")):
            crd = json.loads(f.read_text())
            assert cp.apply(crd).ok, f
            names.append(crd["metadata"]["name"])
        cp.wait_established(names)
        claims = [o for o in self.repo.built(env) if o.get("kind") == "PersistentVolumeClaim"]
        hub = self.platform.get("jupyterhub") or {}
        if self.helm:  # the chart's hub database claim, which a real cluster's default StorageClass would provision
            db = yaml.safe_load((SHARED_CHART / "values.yaml").read_text())["hub"]["db"]["pvc"]
            claims.append({"metadata": {"namespace": hub.get("namespace", "jupyterhub"), "name": "hub-db-dir"},
                           "spec": {"accessModes": db["accessModes"], "resources": {"requests": {"storage":
                                                                                                  db["storage"]}}}})
        for pvc in claims:
            ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
            spec = pvc["spec"]
            sc = spec.get("storageClassName")
            if sc:
                r = cp.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
                              "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
                              "reclaimPolicy": "Retain"})
                assert r.ok, r.message
            r = cp.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{env}-{ns}-{name}"},
                          "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                                   "accessModes": spec["accessModes"], "storageClassName": sc or "",
                                   "persistentVolumeReclaimPolicy": "Retain",
                                   "claimRef": {"namespace": ns, "name": name},
                                   "nfs": {"server": "127.0.0.1", "path": f"/nas/{ns}/{name}"}}})
            assert r.ok, r.message
        if hub.get("secret"):
            hub_ns = hub.get("namespace", "jupyterhub")
            assert cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": hub_ns}}).ok
            assert cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": hub["secret"],
                                                                              "namespace": hub_ns},
                             "stringData": {"hub.config.JupyterHub.cookie_secret": secrets.token_hex(32),
                                            "hub.config.CryptKeeper.keys": secrets.token_hex(32),
                                            "oauth-client-id": "kflowgen-e2e",
                                            "oauth-client-secret": "kflowgen-e2e"}}).ok

    def bootstrap(self, env: str) -> list[str]:
        """The README's bootstrap of an environment: apply overlays/<env>/argocd once."""
        e = self.environments[env]
        e.applications = e.argocd.bootstrap(self.repo.path / "overlays" / env / "argocd")
        return e.applications

    def rss_kib(self) -> dict[str, int]:
        out = {}
        for env, e in self.environments.items():
            for part in (e.cluster.procs, e.argocd.procs):
                if part:
                    out.update({f"{env}/{k}": v for k, v in part.rss_kib().items()})
            if e.cluster.cp:
                for pid, name in zip(e.cluster.cp.pids(), ("etcd", "kube-apiserver")):
                    out[f"{env}/{name}"] = procs._tree_rss(pid)
        return out

    def pids(self) -> list[int]:
        out = []
        for e in self.environments.values():
            out += e.cluster.pids() + e.argocd.procs.pids()
        return out

    def stop(self) -> None:
        for e in reversed(list(self.environments.values())):
            e.argocd.stop()
            e.cluster.stop()
        if self.helm:
            self.helm.stop()
            self.helm = None
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            atexit.unregister(self.stop)
