"""Kubeflow Trainer's and JobSet's real controllers for one environment's local cluster, as the platform installs Trainer
with its runtimes on each cluster: the binaries of `make tools-e2e` (Trainer v2.3.0's
`cmd/trainer-controller-manager`, and JobSet at the version Trainer's go.mod requires), run out of cluster against
the cluster's kubeconfig. A TrainJob becomes a JobSet (Trainer), the JobSet its Jobs (JobSet), the Jobs their pods
(kube-controller-manager), which kwok runs on the fake nodes.

What their install manifests would make, from the modules (copied to .tools/share by `make tools-e2e`): JobSet's CRD
and its webhook configurations (JobSet's kustomizations config/components/crd and webhook), Trainer's webhook
configurations (manifests/base/webhook; its CRDs are the ones kflowgen ships, kflowgen/upstream/trainer), each
webhook's `clientConfig.service` made a loopback URL with the CA of the cluster's certificate (e2e.kueue), and the
ClusterTrainingRuntimes the platform spec names (`training.distributed.runtimes`, from manifests/base/runtimes).

Both controllers: leader election off, their own certificate management off (their webhook servers serve the
cluster's certificate on 127.0.0.1), health and metrics on loopback ports. Trainer has no setting for its webhook
certificate folder: it reads controller-runtime's default, `$TMPDIR/k8s-webhook-server/serving-certs`, so its TMPDIR
is its folder here. Each controller is ready when its /readyz says so (which waits for its webhook server) and its
webhook server answers with the certificate; only then are its webhook configurations applied."""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from kflowgen.checks.server import ControlPlane
from kflowgen.checks.server.process import free_ports

from e2e.kueue import apply, https_answers, kustomize_built, to_url
from e2e.procs import Processes, StackError

TRAINER_VERSION = "v2.3.0"
JOBSET_VERSION = "v0.12.0"  # the version Trainer v2.3.0's go.mod requires
KUEUE_FRAMEWORK = "trainer.kubeflow.org/trainjob"


@dataclass
class TrainerSetup:
    """Where the stack finds what it installs: the shares of `make tools-e2e`, Trainer's CRDs (shipped by kflowgen),
    and the runtimes the platform spec names."""
    jobset_share: Path   # .tools/share/jobset/<version>: crd/, webhook/
    trainer_share: Path  # .tools/share/trainer/<version>: webhook/, runtimes/
    trainer_crds: Path   # kflowgen/upstream/trainer/<version>/*.json
    runtimes: tuple[str, ...]


def runtimes_of(platform: dict) -> tuple[str, ...]:
    """The ClusterTrainingRuntimes the platform spec's Trainer uses (training.distributed.runtimes), or () when its
    distributed training is not Trainer's."""
    distributed = (platform.get("training") or {}).get("distributed") or {}
    if distributed.get("api") != "trainer":
        return ()
    return tuple(sorted(set((distributed.get("runtimes") or {}).values())))


def _ready(health: int, webhook: int, ca: bytes) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
        return r.status == 200 and https_answers(webhook, ca)


def _webhook_configurations(objects: list[dict], prefix: str = "") -> list[dict]:
    """The webhook configurations of a component, named as its release names them (JobSet's install prefixes
    `jobset-`: unprefixed, JobSet's `mutating-webhook-configuration` and Kueue's are one object, and Kueue's entry
    `mjobset.kb.io` replaces JobSet's, so JobSets go undefaulted)."""
    out = [o for o in objects if o["kind"].endswith("WebhookConfiguration")]
    for o in out:
        o["metadata"]["name"] = prefix + o["metadata"]["name"]
    return out


class Trainer:
    """One environment's JobSet and Trainer controllers; their processes are the cluster's (`procs`), stopped with
    them."""

    def __init__(self, cp: ControlPlane, procs: Processes, folder: Path, tools: Path, setup: TrainerSetup,
                 certs: Path, ca: bytes):
        self.cp, self.procs, self.folder, self.tools, self.setup = cp, procs, folder, tools, setup
        self.certs, self.ca = certs, ca
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        t0 = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._jobset()
        self.timings["jobset"] = time.monotonic() - t0
        t1 = time.monotonic()
        self._trainer()
        self.timings["trainer"] = time.monotonic() - t1

    def _jobset(self) -> None:
        health, metrics, webhook = free_ports(3)
        share = self.setup.jobset_share
        crds = to_url(kustomize_built(self.tools, share / "crd"), webhook, self.ca)
        hooks = _webhook_configurations(to_url(kustomize_built(self.tools, share / "webhook"), webhook, self.ca),
                                        "jobset-")
        for crd in crds:
            apply(self.cp, crd, "JobSet")
        self.cp.wait_established([c["metadata"]["name"] for c in crds])
        config = {
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
            "metrics": {"bindAddress": f"127.0.0.1:{metrics}", "certDir": str(self.certs)},
            "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(self.certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
        }
        config_file = self.folder / "jobset.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.procs.spawn("jobset", [str(self.tools / "jobset"), f"--config={config_file}",
                                    f"--kubeconfig={self.cp.kubeconfig}", "--zap-log-level=info"])
        self.procs.wait_ready("jobset", lambda: _ready(health, webhook, self.ca), 180)
        for obj in hooks:
            apply(self.cp, obj, "JobSet")

    def _trainer(self) -> None:
        health, metrics, webhook = free_ports(3)
        share = self.setup.trainer_share
        crds = [json.loads(f.read_text()) for f in sorted(self.setup.trainer_crds.glob("*.json"))]
        for crd in to_url(crds, webhook, self.ca):
            apply(self.cp, crd, "Trainer")
        self.cp.wait_established([c["metadata"]["name"] for c in crds])
        hooks = _webhook_configurations(to_url(kustomize_built(self.tools, share / "webhook"), webhook, self.ca))
        runtimes = {}
        for f in sorted((share / "runtimes").glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "ClusterTrainingRuntime":
                    runtimes[doc["metadata"]["name"]] = doc
        missing = [name for name in self.setup.runtimes if name not in runtimes]
        if missing:
            raise StackError(f"Trainer {TRAINER_VERSION} ships no ClusterTrainingRuntime {', '.join(missing)} "
                             f"(in {share / 'runtimes'}: {', '.join(sorted(runtimes))})")
        config = {
            "apiVersion": "config.trainer.kubeflow.org/v1alpha1", "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
            "metrics": {"bindAddress": f"127.0.0.1:{metrics}", "secureServing": False},
            "webhook": {"host": "127.0.0.1", "port": webhook},
            "leaderElection": {"leaderElect": False},
            "certManagement": {"enable": False},
        }
        config_file = self.folder / "trainer.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        # controller-runtime's default webhook certificate folder, under TMPDIR
        serving = self.folder / "tmp" / "k8s-webhook-server" / "serving-certs"
        serving.mkdir(parents=True)
        for f in ("tls.crt", "tls.key"):
            shutil.copy(self.certs / f, serving / f)
        self.procs.spawn("trainer", [str(self.tools / "trainer-controller-manager"), f"--config={config_file}",
                                     f"--kubeconfig={self.cp.kubeconfig}", "--zap-log-level=info"],
                         env={**os.environ, "TMPDIR": str(self.folder / "tmp")})
        self.procs.wait_ready("trainer", lambda: _ready(health, webhook, self.ca), 180)
        for obj in hooks:
            apply(self.cp, obj, "Trainer")
        for name in self.setup.runtimes:  # through Trainer's validating webhook, as the platform's install would
            apply(self.cp, runtimes[name], "Trainer")
