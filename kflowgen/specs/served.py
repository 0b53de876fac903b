"""Model specs, typed: how a model is served in each environment, and the most its servers ask for at once."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from kflowgen.specs import quantity
from kflowgen.specs.loader import SpecFile

MODELS = "specs/models"
DEFAULT_IMAGE = "docker.io/tensorflow/serving:2.19.1"
DEFAULT_GPU_IMAGE = "docker.io/tensorflow/serving:2.19.1-gpu"


@dataclass(frozen=True)
class Autoscale:
    min_replicas: int
    max_replicas: int
    target_cpu: int


@dataclass(frozen=True)
class Serving:
    """How a model is served in one environment."""

    env: str
    version: int
    replicas: int  # fixed replicas, or minReplicas when autoscaled
    cpu: object
    memory: str
    gpu_type: str | None
    gpu_count: int
    autoscale: Autoscale | None
    host: str | None = None  # exposed through the platform's ingress at this host

    @property
    def max_pods(self) -> int:
        return self.autoscale.max_replicas if self.autoscale else self.replicas


@dataclass(frozen=True)
class ServedModel:
    source: SpecFile
    team: str
    name: str
    description: str
    path: str  # relative to the team NAS, without a trailing '/'
    image: str | None  # explicit override; see image_for()
    environments: dict[str, Serving]
    callers: tuple[str, ...] = ()  # teams whose pods may call it, besides its own
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # variable -> (Secret, key), sorted

    def image_for(self, env: str) -> str:
        if self.image:
            return self.image
        return DEFAULT_GPU_IMAGE if self.environments[env].gpu_type else DEFAULT_IMAGE


def served_model_from(spec: SpecFile) -> ServedModel:
    d = spec.data
    envs = {}
    for env, e in d["environments"].items():
        a, gpu = e.get("autoscale"), e.get("gpu")
        auto = Autoscale(a["minReplicas"], a["maxReplicas"], a.get("targetCPUUtilization", 70)) if a else None
        envs[env] = Serving(env, e["version"], auto.min_replicas if auto else e.get("replicas", 1),
                            e.get("cpu", 1), e.get("memory", "2Gi"), gpu["type"] if gpu else None,
                            gpu["count"] if gpu else 0, auto, e.get("host"))
    return ServedModel(spec, d["team"], d["name"], d.get("description", ""), d["path"].rstrip("/"),
                       d.get("image"), envs, tuple(sorted(d.get("callers", ()))),
                       {k: (v["secret"], v["key"]) for k, v in sorted(d.get("secrets", {}).items())})


def demand(m: ServedModel, env: str) -> dict[str, Fraction]:
    """The most a model's servers request at once in an environment (all replicas plus one surge pod during a
    rollout), keyed like a quota: 'cpu', 'memory' (bytes) and 'gpu/<type>'."""
    s = m.environments[env]
    pods = s.max_pods + 1
    out = {"cpu": pods * quantity.parse(s.cpu), "memory": pods * quantity.parse(s.memory)}
    if s.gpu_type:
        out[f"gpu/{s.gpu_type}"] = Fraction(pods * s.gpu_count)
    return out
