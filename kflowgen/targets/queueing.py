"""Queueing with Kueue where the platform turns it on for an environment: the environment's ResourceFlavors (one per
GPU type, one for cpu and memory) and Cohort, and each team's ClusterQueue (overlays/<env>/queueing: cluster-scoped,
platform-owned) and LocalQueue (in its platform overlay); and how one team quota is shared between them and the
team's ResourceQuota (sizing), so that the ResourceQuota never refuses a pod Kueue admitted (kueue#1403, #696)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from kflowgen.specs import layout, quantity
from kflowgen.specs.model import Platform, Team
from kflowgen.specs.served import demand

API = "kueue.x-k8s.io/v1beta2"
DEFAULT_FLAVOR = "default"  # cpu and memory: every node


def flavor(gpu_type: str) -> str:
    """A GPU type's ResourceFlavor: `gpu-<type>`, never the default flavor's name whatever the type is called."""
    return f"gpu-{gpu_type}"


@dataclass(frozen=True)
class Sizing:
    """One team's quota in an environment where Kueue queues training, by resource ('cpu' in cores, 'memory' in bytes,
    'gpu/<type>'): the quota; what the team's model servers keep of it (reserved: replicas or maxReplicas, plus one pod
    for a rollout: they are not queued); what its ClusterQueue admits trials within (nominal: quota less reserved);
    how much more its trials may borrow of other teams' idle quota (borrowing: the percentage of the quota, GPUs at
    most what the cluster has beyond the quota). The ResourceQuota is quota + borrowing: every server and everything
    Kueue can admit for the team fit in it at once."""

    quota: dict[str, Fraction]
    reserved: dict[str, Fraction]
    nominal: dict[str, Fraction]
    borrowing: dict[str, Fraction]
    percent: int  # the team's borrowing percentage (the platform's, or the team's own when lower)

    @property
    def ceiling(self) -> dict[str, Fraction]:
        """What the team's ResourceQuota holds, by resource: quota + borrowing."""
        return {r: a + self.borrowing[r] for r, a in self.quota.items()}


def sizing(p: Platform, t: Team, env: str, served=()) -> Sizing | None:
    """The team's Sizing in env (served: its model specs, those in env count), or None where queueing is off or the
    team has no quota."""
    queueing = p.queueing_in(env)
    if queueing is None or env not in t.quota:
        return None
    q = t.quota[env]
    amounts = {"cpu": quantity.parse(q.cpu), "memory": quantity.parse(q.memory),
               **{f"gpu/{g}": Fraction(q.gpu.get(g, 0)) for g in p.gpu_types}}
    reserved = dict.fromkeys(amounts, Fraction(0))
    for m in served:
        if env in m.environments:
            for res, n in demand(m, env).items():
                if res in reserved:  # an unknown GPU type is the rules' (KF333)
                    reserved[res] += n
    reserved = {r: min(n, amounts[r]) for r, n in reserved.items()}  # servers over the quota are KF334
    percent = min(queueing.borrowing, queueing.borrowing if q.borrowing is None else q.borrowing)
    capacity = p.environments[env].gpu_capacity
    borrowing = {}
    for r, a in amounts.items():
        share = a * percent / 100
        if r == "cpu":
            borrowing[r] = Fraction(math.ceil(share * 1000), 1000)
        elif r == "memory":
            borrowing[r] = Fraction(math.ceil(share))
        else:
            borrowing[r] = Fraction(min(math.ceil(share), max(capacity.get(r[4:], 0) - int(a), 0)))
    return Sizing(amounts, reserved, {r: a - reserved[r] for r, a in amounts.items()}, borrowing, percent)


def show(resource: str, amount: Fraction) -> str:
    """An amount of a Sizing resource as a manifest writes it."""
    if resource == "cpu":
        return quantity.show_cpu(amount)
    return quantity.show_bytes(amount) if resource == "memory" else str(int(amount))


def gpu_resources(p: Platform) -> dict[str, list[str]]:
    """GPU types by the extended resource they are requested as, in the platform's order."""
    out: dict[str, list[str]] = {}
    for g in p.gpu_types.values():
        out.setdefault(g.resource, []).append(g.name)
    return out


# --- the environment's: overlays/<env>/queueing ------------------------------------------------------------------

def _object(kind: str, name: str, env: str, spec: dict, team: str | None = None) -> dict:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, "labels": layout.labels(env, team)},
            "spec": spec}


def shared(p: Platform, env: str) -> dict[str, tuple[dict, list[str]]]:
    """The flavors and the Cohort of an environment where queueing is on (else nothing), by path. A GPU type's flavor
    selects its nodes (its nodeSelector) and gives its pods its tolerations; the Cohort has no quota of its own (its
    members lend to each other: kueue#5289)."""
    if p.queueing_in(env) is None:
        return {}
    base, src = layout.queueing_folder(env), [p.source.path]
    docs = {f"{base}/resourceflavor.{DEFAULT_FLAVOR}.yaml": (_object("ResourceFlavor", DEFAULT_FLAVOR, env, {}), src)}
    for g in p.gpu_types.values():
        spec: dict = {"nodeLabels": dict(g.node_selector)}
        if g.tolerations:
            spec["tolerations"] = [dict(t) for t in g.tolerations]
        docs[f"{base}/resourceflavor.{flavor(g.name)}.yaml"] = (_object("ResourceFlavor", flavor(g.name), env, spec), src)
    docs[f"{base}/cohort.{layout.COHORT}.yaml"] = (_object("Cohort", layout.COHORT, env, {}), src)
    return dict(sorted(docs.items()))


# --- a team's ---------------------------------------------------------------------------------------------------

def team(p: Platform, t: Team, env: str, served=()) -> dict[str, tuple[dict, list[str]]]:
    """The team's ClusterQueue in overlays/<env>/queueing (nothing where queueing is off), by path."""
    s = sizing(p, t, env, served)
    if s is None:
        return {}
    src = [t.source.path, p.source.path] + [m.source.path for m in served if env in m.environments]
    name = layout.cluster_queue(t.name)
    return {f"{layout.queueing_folder(env)}/clusterqueue.{name}.yaml": (cluster_queue(p, t, env, s), src)}


def cluster_queue(p: Platform, t: Team, env: str, s: Sizing) -> dict:
    """Only the team's namespace may use it (kubernetes.io/metadata.name is set by the API server); trials are admitted
    within nominal quota, and beyond it up to borrowingLimit while the Cohort has idle quota. Where no team of the
    environment may borrow, none lends either (lendingLimit 0)."""
    queueing = p.queueing_in(env)
    lends = queueing.borrowing > 0

    def resource(name: str, key: str) -> dict:
        out = {"name": name, "nominalQuota": show(key, s.nominal[key]), "borrowingLimit": show(key, s.borrowing[key])}
        if not lends:
            out["lendingLimit"] = "0"
        return out

    groups = [{"coveredResources": ["cpu", "memory"],
               "flavors": [{"name": DEFAULT_FLAVOR, "resources": [resource("cpu", "cpu"), resource("memory", "memory")]}]}]
    for gpu_resource, types in gpu_resources(p).items():
        groups.append({"coveredResources": [gpu_resource],
                       "flavors": [{"name": flavor(g), "resources": [resource(gpu_resource, f"gpu/{g}")]} for g in types]})
    reclaim = "Any" if lends and queueing.reclaim == "preempt" else "Never"
    spec = {"cohortName": layout.COHORT,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.namespace}},
            "queueingStrategy": "BestEffortFIFO",  # a trial too large for now does not hold smaller ones back
            "preemption": {"reclaimWithinCohort": reclaim, "withinClusterQueue": "Never"},
            "resourceGroups": groups}
    return _object("ClusterQueue", layout.cluster_queue(t.name), env, spec, t.name)


def local_queue(t: Team) -> dict:
    """The one LocalQueue of a team namespace, in its platform overlay (the kustomization sets namespace and labels).
    Named `default`, Kueue's default LocalQueue name: a Job made by hand in the namespace without the queue label is
    queued there too; and a Job's label can only ever name a LocalQueue of its own namespace."""
    return {"apiVersion": API, "kind": "LocalQueue", "metadata": {"name": layout.LOCAL_QUEUE},
            "spec": {"clusterQueue": layout.cluster_queue(t.name)}}


# --- what a queued experiment gets ---------------------------------------------------------------------------------

def need(exp) -> dict[str, Fraction]:
    """What one trial of an experiment asks of a Sizing, by resource: all its pods (a PyTorchJob's are one workload,
    admitted together)."""
    out = {"cpu": quantity.parse(exp.cpu) * exp.workers, "memory": quantity.parse(exp.memory) * exp.workers}
    if exp.gpu_type:
        out[f"gpu/{exp.gpu_type}"] = Fraction(exp.gpu_count * exp.workers)
    return out


def at_once(wants: dict[str, Fraction], room: dict[str, Fraction]) -> tuple[int, str]:
    """How many trials that each want `wants` fit in `room` together, and the resource that limits them."""
    return min((int(room.get(r, 0) // n), r) for r, n in wants.items() if n)


def what(resource: str) -> str:
    """A Sizing resource in words: 'cpu', 'memory', 'a100 GPUs'."""
    return f"{resource[4:]} GPUs" if resource.startswith("gpu/") else resource


def explain(exp, s: Sizing, trials: int) -> list[str]:
    """Lines for `kflowgen explain`: how many of an experiment's trials run at once where Kueue queues them."""
    wants = need(exp)
    n, limit = at_once(wants, s.nominal)
    kept = f", after the {show(limit, s.reserved[limit])} its model servers keep" if s.reserved[limit] else ""
    room = f"the team's quota ({what(limit)}: {show(limit, s.nominal[limit])}{kept})"
    lines = ["    queued: " + (
        f"all {trials} trial(s) fit {room} at once; each waits its turn while the team's other trials hold it."
        if n >= trials else f"at most {n} of the {trials} trials run at once within {room}; the others wait "
        "their turn, and each trial's deadline starts when it runs." if n else
        f"no trial fits {room}: trials wait for other teams' idle quota.")]
    if s.percent and n < trials:
        more, _ = at_once(wants, {r: a + s.borrowing[r] for r, a in s.nominal.items()})
        if more > n:
            lines.append(f"    Up to {min(more, trials)} while other teams leave their quota idle (borrowing "
                         f"{s.percent}%); a borrowed trial may be stopped and queued again when they need it back.")
    if exp.parallelism:
        lines.append(f"    parallelism {exp.parallelism} is what you expect, not a limit: the queue limits the team's "
                     "trials together, not one experiment's.")
    return lines
