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
    backend: str = "deployment"  # or "kserve"
    canary: int | None = None  # kserve: percent of requests `version` serves beside `previous`
    previous: int | None = None  # kserve, with canary: the version that serves the rest

    @property
    def max_pods(self) -> int:
        return self.autoscale.max_replicas if self.autoscale else self.replicas

    @property
    def canary_pods(self) -> int:
        """KServe v0.20's canary size: ceil(stable minReplicas x share), 0 without a canary."""
        return -(-self.replicas * self.canary // 100) if self.canary else 0

    @property
    def stable_pods(self) -> tuple[int, int]:
        """The fewest and most pods of the stable (previous) version: KServe v0.20 takes the canary's pods out of the
        stable minReplicas (at least 1); an autoscaler still scales it up to maxReplicas."""
        least = max(self.replicas - self.canary_pods, 1)
        return least, (self.autoscale.max_replicas if self.autoscale else least)

    @property
    def canary_share(self) -> tuple[Fraction, Fraction]:
        """The least and most share of requests the canary's pods get (Service endpoints are chosen evenly: KServe
        v0.20 routes no weights in Standard mode), from the stable version's most and fewest pods."""
        c = self.canary_pods
        least, most = self.stable_pods
        return Fraction(c, most + c), Fraction(c, least + c)


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
                            gpu["count"] if gpu else 0, auto, e.get("host"),
                            e.get("backend", d.get("backend", "deployment")),
                            int(e["canary"].rstrip("%")) if "canary" in e else None, e.get("previous"))
    return ServedModel(spec, d["team"], d["name"], d.get("description", ""), d["path"].rstrip("/"),
                       d.get("image"), envs, tuple(sorted(d.get("callers", ()))),
                       {k: (v["secret"], v["key"]) for k, v in sorted(d.get("secrets", {}).items())})


def pods(s: Serving) -> int:
    """The most server pods at once: all replicas (or maxReplicas) plus one surge pod during a rollout; with a KServe
    canary, the stable version's most pods plus its surge pod, and the canary's pods plus their surge (KServe v0.20
    gives the canary's Deployment the default 25% surge, rounded up)."""
    if s.backend == "kserve" and s.canary:
        c = s.canary_pods
        return s.stable_pods[1] + 1 + c + -(-c // 4)
    return s.max_pods + 1


def demand(m: ServedModel, env: str) -> dict[str, Fraction]:
    """The most a model's servers request at once in an environment (pods()), keyed like a quota: 'cpu', 'memory'
    (bytes) and 'gpu/<type>'."""
    s = m.environments[env]
    n = pods(s)
    out = {"cpu": n * quantity.parse(s.cpu), "memory": n * quantity.parse(s.memory)}
    if s.gpu_type:
        out[f"gpu/{s.gpu_type}"] = Fraction(n * s.gpu_count)
    return out
