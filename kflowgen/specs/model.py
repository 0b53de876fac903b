"""The model: typed, defaulted views of schema-valid specs, each keeping its SpecFile for locations."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kflowgen.specs.experiment import Experiment
from kflowgen.specs.loader import SpecFile
from kflowgen.specs.quantity import seconds
from kflowgen.specs.served import ServedModel


@dataclass(frozen=True)
class GpuType:
    name: str
    resource: str
    node_selector: dict[str, str]
    display_name: str
    tolerations: tuple[dict, ...] = ()  # of the type's nodes' taints


@dataclass(frozen=True)
class Queueing:
    """Kueue in an environment: on or off; how much more than its quota a team's trials may use of other teams' idle
    quota (a whole percentage of its quota); and how lent quota comes back ("preempt" or "wait")."""

    enabled: bool
    borrowing: int = 0
    reclaim: str = "preempt"


@dataclass(frozen=True)
class Distributed:
    """How experiments with more than one worker run: api "trainer" (Kubeflow Trainer v2: a TrainJob on the
    ClusterTrainingRuntime named for the experiment's framework in runtimes) or "training-operator" (the legacy
    Kubeflow Training Operator v1: PyTorchJob, TFJob)."""

    api: str
    runtimes: dict[str, str] = field(default_factory=dict)  # framework -> ClusterTrainingRuntime name


TRAINER, TRAINING_OPERATOR = "trainer", "training-operator"


@dataclass(frozen=True)
class KServe:
    """KServe in an environment: on or off, and the ClusterServingRuntime TensorFlow models run on."""

    enabled: bool
    runtime: str = "kserve-tensorflow-serving"


@dataclass(frozen=True)
class Environment:
    name: str
    cluster: str
    gpu_capacity: dict[str, int]
    domain: str | None = None  # exposed models' hosts end in it
    queueing: Queueing | None = None  # as written, on or off (Platform.queueing_in: only when on)
    kserve: KServe | None = None  # as written, on or off (Platform.kserve_in: only when on)


@dataclass(frozen=True)
class EgressRule:
    """A destination every team's pods may reach: pods of a namespace (with labels), or an address block."""

    name: str
    ports: tuple[int, ...]
    namespace: str | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    cidr: str | None = None
    excepted: tuple[str, ...] = ()
    environments: tuple[str, ...] | None = None  # None: all


@dataclass(frozen=True)
class IngressController:
    class_name: str
    namespace: str
    pod_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HubAuth:
    """How people sign in to the hub: the authenticator type, its settings as the platform file gives them (keys as
    written there), the admin groups and the extra groups allowed to sign in."""

    type: str
    settings: dict
    admin_groups: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hub:
    """The JupyterHub of every environment: chart, namespace, the Secret made outside Git, sign-in, idle culling (in
    seconds; max_age None: never) and image pre-pulling."""

    chart_version: str = "4.4.0"
    chart_repo: str = "https://hub.jupyter.org/helm-chart/"
    namespace: str = "jupyterhub"
    secret: str = "jupyterhub-secrets"
    auth: HubAuth | None = None
    cull_timeout: int = 3600
    gpu_timeout: int = 1800
    max_age: int | None = None
    pre_pull: bool = False


@dataclass(frozen=True)
class Platform:
    source: SpecFile
    name: str
    repo_url: str
    revision: str
    kubernetes_version: str
    argocd_namespace: str
    argocd_version: str
    registries: tuple[str, ...]
    storage_class: str
    mount_path: str
    gpu_types: dict[str, GpuType]
    environments: dict[str, Environment]
    crds: tuple[str, ...]
    jupyterhub_chart: str | None
    reserved_namespaces: tuple[str, ...] = ()  # the platform's own, besides rules.teams.SYSTEM
    hub: Hub = field(default_factory=Hub)
    pull_secrets: dict[str, str] = field(default_factory=dict)  # registry entry -> Secret
    egress: tuple[EgressRule, ...] = ()
    ingress: IngressController | None = None
    default_deadline: int = 86400  # seconds, for trials whose experiment gives none
    shm: str = "1Gi"
    distributed: Distributed | None = None  # None: not written (the legacy Training Operator, with a warning)

    def queueing_in(self, env: str) -> Queueing | None:
        """The environment's queueing settings when Kueue queues training there, else None."""
        e = self.environments.get(env)
        return e.queueing if e and e.queueing and e.queueing.enabled else None

    @property
    def trainer(self) -> bool:
        """Distributed experiments are TrainJobs (Kubeflow Trainer v2), not the legacy PyTorchJob and TFJob."""
        return self.distributed is not None and self.distributed.api == TRAINER

    def kserve_in(self, env: str) -> KServe | None:
        """The environment's KServe settings when models may be served by KServe there, else None."""
        e = self.environments.get(env)
        return e.kserve if e and e.kserve and e.kserve.enabled else None

    @property
    def kserve_environments(self) -> tuple[str, ...]:
        return tuple(e for e in self.environments if self.kserve_in(e))

    def egress_in(self, env: str) -> tuple[EgressRule, ...]:
        return tuple(r for r in self.egress if r.environments is None or env in r.environments)

    @property
    def hub_namespace(self) -> str:
        return self.hub.namespace

    @property
    def hub_chart_version(self) -> str:
        return self.hub.chart_version

    @property
    def hub_chart_repo(self) -> str:
        return self.hub.chart_repo


@dataclass(frozen=True)
class Profile:
    name: str
    display_name: str
    description: str
    default: bool
    cpu: object
    memory: str
    cpu_guarantee: object
    memory_guarantee: str
    gpu_type: str | None
    gpu_count: int


@dataclass(frozen=True)
class Quota:
    cpu: object
    memory: str
    storage: str
    gpu: dict[str, int]
    borrowing: int | None = None  # percent of the quota; None: the platform's queueing.borrowing


@dataclass(frozen=True)
class Team:
    source: SpecFile
    name: str
    description: str
    owners: tuple[str, ...]
    members: tuple[tuple[str, str], ...]  # (group, role)
    image: str
    profiles: tuple[Profile, ...]
    storage_size: str
    quota: dict[str, Quota]  # by environment, in the platform's environment order
    offboarding: bool = False  # step 1 of leaving: its people only read, its notebooks mount the NAS read-only

    @property
    def namespace(self) -> str:
        return self.name


@dataclass
class Model:
    platform: Platform
    teams: list[Team] = field(default_factory=list)
    served: list[ServedModel] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)  # team names whose spec failed to load: no follow-on errors
    inputs: dict[str, str] = field(default_factory=dict, compare=False)  # spec path -> git blob id of its bytes
    _by_team: dict | None = field(default=None, repr=False, compare=False)
    _in_env: dict = field(default_factory=dict, repr=False, compare=False)  # env -> {name: team}, as teams_in
    _by_team_env: dict | None = field(default=None, repr=False, compare=False)  # (team, env) -> members there

    def team(self, env: str, name: str) -> Team:
        """The team of that name in an environment (looked up in an index built once per environment)."""
        return self._teams_in(env)[name]

    def _members(self) -> dict[str, tuple[list[int], list[int]]]:
        """team -> positions of its served models and experiments in model order, from their specs' `team` (the
        same as the objects'), indexed once: a lookup per team stays linear, and makes no object."""
        if self._by_team is None:
            self._by_team = {}
            for which, seq in enumerate((self.served, self.experiments)):
                for i, spec in enumerate(specs_of(seq)):
                    self._by_team.setdefault(spec.top("team"), ([], []))[which].append(i)
        return self._by_team

    def members(self, team: str, env: str | None = None) -> tuple[list[int], list[int]]:
        """Positions in served and experiments of a team's served models and experiments (those in env, when
        given: `environments` of the spec, as of the object), indexed by team and environment in one pass."""
        if env is None:
            return self._members().get(team, ([], []))
        if self._by_team_env is None:
            index: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
            for which, seq in enumerate((self.served, self.experiments)):
                for i, spec in enumerate(specs_of(seq)):
                    owner = spec.top("team")  # without decoding the rest of a spec from the cache
                    for e in spec.top("environments"):
                        found = index.get((owner, e))
                        if found is None:
                            index[owner, e] = found = ([], [])
                        if not found[which] or found[which][-1] != i:  # an environment named twice: once
                            found[which].append(i)
            self._by_team_env = index
        return self._by_team_env.get((team, env), ([], []))

    def teams_in(self, env: str) -> list[Team]:
        """Teams present in an environment (a name defined twice counts once: the rules report the copy)."""
        return list(self._teams_in(env).values())

    def _teams_in(self, env: str) -> dict[str, Team]:
        """{name: team} of teams_in, in its order, indexed once per environment."""
        if env not in self._in_env:
            index: dict[str, Team] = {}
            for t in self.teams:
                if env in t.quota and t.name not in index:
                    index[t.name] = t
            self._in_env[env] = index
        return self._in_env[env]


def platform_from(spec: SpecFile) -> Platform:
    d = spec.data
    hub = d.get("jupyterhub", {})
    validation = d.get("validation", {})
    gpus = {name: GpuType(name, g.get("resource", "nvidia.com/gpu"), dict(sorted(g["nodeSelector"].items())),
                          g.get("displayName", name.upper()), tuple(g.get("tolerations", ())))
            for name, g in d["gpuTypes"].items()}
    envs = {name: Environment(name, e["cluster"], {g: int(n) for g, n in e["capacity"]["gpu"].items()},
                              e.get("domain"), _queueing(e.get("queueing")),
                              KServe(bool(e["kserve"]["enabled"]), e["kserve"].get("runtime", "kserve-tensorflow-serving"))
                              if "kserve" in e else None)
            for name, e in d["environments"].items()}
    network, training = d.get("network", {}), d.get("training", {})
    ingress = network.get("ingress")
    return Platform(
        source=spec, name=d["name"], repo_url=d["repo"]["url"], revision=d["repo"].get("revision", "main"),
        kubernetes_version=_version(d["kubernetesVersion"]),
        argocd_namespace=d.get("argocd", {}).get("namespace", "argocd"),
        argocd_version=d.get("argocd", {}).get("version", "3.6.2").lstrip("v"),
        registries=tuple(d["registries"]), storage_class=d["storage"]["storageClass"],
        mount_path=d["storage"].get("mountPath", "/workspace"), gpu_types=gpus, environments=envs,
        crds=tuple(validation.get("crds", ())), jupyterhub_chart=validation.get("jupyterhubChart"),
        reserved_namespaces=tuple(d.get("reservedNamespaces", ())),
        hub=_hub(hub),
        pull_secrets=dict(d.get("pullSecrets", {})),
        egress=tuple(EgressRule(r["name"], tuple(r["ports"]), r.get("namespace"), dict(r.get("podLabels", {})),
                                r.get("cidr"), tuple(r.get("except", ())),
                                tuple(r["environments"]) if "environments" in r else None)
                     for r in network.get("egress", ())),
        ingress=IngressController(ingress["className"], ingress["namespace"], dict(ingress.get("podLabels", {})))
        if ingress else None,
        default_deadline=seconds(training.get("deadline", "24h")), shm=training.get("shm", "1Gi"),
        distributed=_distributed(training.get("distributed")),
    )


def _distributed(d: dict | None) -> Distributed | None:
    if d is None:
        return None
    return Distributed(d["api"], dict(sorted(d.get("runtimes", {}).items())))


def _hub(d: dict) -> Hub:
    auth = d.get("auth")
    cull = d.get("cull", {})
    return Hub(
        chart_version=d.get("chartVersion", "4.4.0"), chart_repo=d.get("chartRepo", "https://hub.jupyter.org/helm-chart/"),
        namespace=d.get("namespace", "jupyterhub"), secret=d.get("secret", "jupyterhub-secrets"),
        auth=HubAuth(auth["type"], dict(auth.get(auth["type"], {})), tuple(auth.get("adminGroups", ())),
                     tuple(auth.get("allowedGroups", ()))) if auth else None,
        cull_timeout=seconds(cull.get("timeout", "1h")), gpu_timeout=seconds(cull.get("gpuTimeout", "30m")),
        max_age=seconds(cull.get("maxAge")), pre_pull=bool(d.get("prePull", False)))


def _queueing(d: dict | None) -> Queueing | None:
    if d is None:
        return None
    return Queueing(bool(d["enabled"]), percent(d.get("borrowing", "0%")), d.get("reclaim", "preempt"))


def percent(text: str) -> int:
    """'50%' -> 50 (the schemas' percent pattern)."""
    return int(text.rstrip("%"))


def _version(v: str) -> str:
    parts = v.lstrip("v").split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def team_from(spec: SpecFile, env_order: list[str]) -> Team:
    d = spec.data
    profiles = []
    for p in d["notebook"]["profiles"]:
        g = p.get("guarantee", {})
        gpu = p.get("gpu")
        profiles.append(Profile(
            name=p["name"], display_name=p.get("displayName", p["name"]), description=p.get("description", ""),
            default=bool(p.get("default", False)), cpu=p["cpu"], memory=p["memory"],
            cpu_guarantee=g.get("cpu", p["cpu"]), memory_guarantee=g.get("memory", p["memory"]),
            gpu_type=gpu["type"] if gpu else None, gpu_count=int(gpu["count"]) if gpu else 0))
    rank = {e: i for i, e in enumerate(env_order)}
    quota = {env: Quota(q["cpu"], q["memory"], q.get("storage", d["storage"]["size"]),
                        {g: int(n) for g, n in q.get("gpu", {}).items()},
                        percent(q["borrowing"]) if "borrowing" in q else None)
             for env, q in sorted(d["quota"].items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))}
    return Team(
        source=spec, name=d["name"], description=d.get("description", ""), owners=tuple(d["owners"]),
        members=tuple((m["group"], m.get("role", "edit")) for m in d.get("members", [])),
        image=d["notebook"]["image"], profiles=tuple(profiles), storage_size=d["storage"]["size"], quota=quota,
        offboarding=bool(d.get("offboarding", False)))


class Deferred(Sequence):
    """Objects (experiments, served models) made from their spec files when first asked for: a run whose renders
    come from the cache never makes the thousands it loaded. In model order: (team, name, path)."""

    def __init__(self, specs: list[SpecFile], make: Callable[[SpecFile], object]):
        self.specs = sorted(specs, key=lambda s: (s.top("team"), s.top("name"), s.path))
        self._make = make
        self._made: dict[int, object] = {}

    def _get(self, i: int):
        if i not in self._made:
            self._made[i] = self._make(self.specs[i])
        return self._made[i]

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in range(len(self.specs))[i]]
        return self._get(range(len(self.specs))[i])

    def __iter__(self):
        return (self._get(i) for i in range(len(self.specs)))

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, Deferred)) else NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))


def specs_of(seq) -> list[SpecFile]:
    return seq.specs if isinstance(seq, Deferred) else [o.source for o in seq]
