"""KF330-KF336, KF344, KF360-KF363, and the image and secret codes KF204, KF313, KF343: served models belong to a
known team, run where the team has quota (and KServe, for backend: kserve), fit it, use allowed images, and roll out
canaries that KServe can run."""
from __future__ import annotations

from fractions import Fraction
from functools import partial
from math import gcd

from kflowgen.specs import quantity
from kflowgen.specs.hints import close
from kflowgen.diagnostics import error, warning
from kflowgen.specs.served import MODELS, ServedModel, demand
from kflowgen.rules.gpus import misspelt
from kflowgen.rules.images import IMAGE_CODES, problems

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF330": "model spec not at specs/models/<team>/<name>.yaml, or two models of a team share a name",
    "KF331": "model's team not defined",
    "KF332": "model served in an environment the platform does not define or where its team has no quota",
    "KF333": "model's GPU type not defined, or the environment has too few of them",
    "KF334": "model servers do not fit the team's quota",
    "KF335": "model server image not from an allowed registry",
    "KF336": "serving settings that contradict each other, or a path that ends in a version folder",
    "KF344": "model callers or exposure that cannot work: an unknown team, or a host outside the domain or taken",
    "KF360": "model served by KServe in an environment where the platform has no KServe",
    "KF361": "canary share outside 1-99%",
    "KF362": "canary that cannot roll out: no previous version, the same version, or not on KServe",
    "KF363": "canary share that KServe's pods cannot give: the share of requests it gets instead",
}

def check(model, served: list[ServedModel]):
    """The rule on these served models (the model's own, as rules.RULES runs it)."""
    teams = {t.name: t for t in model.teams}
    yield from _own(model, served, teams)
    yield from _reach(model, served, teams)


def local(model, teams: list, served: list[ServedModel]):
    """What check finds in the served models of one team name (served), given the team specs of that name (teams):
    all but what is found across teams (across)."""
    yield from _own(model, served, {t.name: t for t in teams})


def across(model):
    """What check finds across teams: callers that are no team, a host taken twice."""
    return _reach(model, model.served, {t.name: t for t in model.teams})


def _own(model, served: list[ServedModel], teams: dict):
    """Each model's own findings, and each team's servers against its quota (teams: the team specs by name, at
    least those the models name)."""
    p = model.platform
    seen: dict[tuple[str, str], str] = {}
    usage: dict[tuple[str, str], list[tuple[ServedModel, dict[str, Fraction]]]] = {}
    for m in served:
        src, at = m.source.path, m.source.at
        folder, _, stem = src.removeprefix(MODELS + "/").rpartition("/")
        stem = stem.rsplit(".", 1)[0]
        if (folder, stem) != (m.team, m.name):
            yield error(src, at("/name"), "KF330", f"model '{m.team}/{m.name}' is in {src}",
                        f"move it to {MODELS}/{m.team}/{m.name}.yaml, or change team and name to match the file")
        if (m.team, m.name) in seen:
            yield error(src, at("/name"), "KF330", f"model '{m.name}' of team {m.team} is already defined in "
                        f"{seen[m.team, m.name]}", "give each model one spec file and a name unique in its team")
        seen.setdefault((m.team, m.name), src)
        if m.path.rsplit("/", 1)[-1].isdigit():
            yield warning(src, at("/path"), "KF336", f"path '{m.path}' ends in a version folder",
                          f"give the folder that holds the numbered versions, e.g. {m.path.rsplit('/', 1)[0]}")
        for image in sorted({m.image_for(env) for env in m.environments}):
            first = next(env for env in m.environments if m.image_for(env) == image)
            for what, message, hint in problems(image, p.registries):
                where = at("/image") if m.image else at(f"/environments/{first}", key=True)
                if what == "registry":
                    message = f"image '{image}'{'' if m.image else ' (the default)'} is not from an allowed registry"
                    if not m.image:
                        hint = (f"add {image.rsplit('/', 1)[0]}/ to registries in {p.source.path}, or set image: "
                                "to a mirror in an allowed registry")
                yield error(src, where, "KF335" if what == "registry" else IMAGE_CODES[what], message, hint)
        team = teams.get(m.team)
        if team is None and m.team in model.unreadable:
            continue  # its team spec has errors of its own
        if team is None:
            yield error(src, at("/team"), "KF331", f"team '{m.team}' is not defined in specs/teams/",
                        close(m.team, dict.fromkeys(t.name for t in model.teams)))
        for env, s in m.environments.items():
            here = f"/environments/{env}"
            auto = s.autoscale
            if auto and "replicas" in m.source.data["environments"][env]:
                yield error(src, at(f"{here}/replicas", key=True), "KF336", f"{env}: replicas and autoscale are both "
                            "given", "remove replicas; autoscale sets the range")
            if auto and auto.min_replicas > auto.max_replicas:
                yield error(src, at(f"{here}/autoscale/minReplicas"), "KF336",
                            f"{env}: minReplicas {auto.min_replicas} is above maxReplicas {auto.max_replicas}",
                            "lower minReplicas or raise maxReplicas")
            if env not in p.environments:
                yield error(src, at(here, key=True), "KF332",
                            f"environment '{env}' is not defined in {p.source.path}", close(env, p.environments))
                continue
            canary_ok = yield from _canary(m, env, s, p)
            if s.gpu_type and s.gpu_type not in p.gpu_types:
                yield error(src, at(f"{here}/gpu/type"), "KF333", f"{env}: GPU type '{s.gpu_type}' is not defined "
                            f"in {p.source.path}", close(s.gpu_type, p.gpu_types))
                continue
            capacity = p.environments[env].gpu_capacity
            if s.gpu_type and capacity.get(s.gpu_type, 0) < s.gpu_count and not misspelt(model, capacity, s.gpu_type):
                yield error(src, at(f"{here}/gpu/type"), "KF333",
                            f"{env}: the cluster has {p.environments[env].gpu_capacity.get(s.gpu_type, 0)} "
                            f"{s.gpu_type} GPUs, fewer than one server needs ({s.gpu_count})",
                            "choose a GPU type the environment has, or serve the model elsewhere")
                continue  # no quota can hold it either: KF306 keeps quotas within capacity
            if team is None:
                continue
            if env not in team.quota:
                yield error(src, at(here, key=True), "KF332", f"team {team.name} has no quota in {env}",
                            f"add quota.{env} to {team.source.path}, or serve the model in: {', '.join(team.quota)}")
                continue
            if canary_ok:  # a canary's pods are counted from its share: none to count when the share is wrong
                usage.setdefault((team.name, env), []).append((m, demand(m, env)))
    for (name, env), uses in usage.items():
        yield from _fit(model, teams[name], env, uses)


def _canary(m: ServedModel, env: str, s, p):
    """KF360-KF363 for one environment of a model; returns whether its canary (if any) can be counted."""
    src, at, here = m.source.path, m.source.at, f"/environments/{env}"
    written = m.source.data["environments"][env]
    if s.backend == "kserve" and not p.kserve_in(env):
        where = at(f"{here}/backend") if "backend" in written else at("/backend")
        enabled = p.environments[env].kserve is not None
        yield error(src, where, "KF360", f"{env}: the platform serves no model with KServe there",
                    f"serve it with backend: deployment in {env}, or ask the platform team to set "
                    f"environments.{env}.kserve{'.enabled: true' if enabled else ': {enabled: true}'} "
                    f"in {p.source.path} (with KServe installed on that cluster)")
    if "previous" in written and "canary" not in written:
        yield error(src, at(f"{here}/previous", key=True), "KF362", f"{env}: previous without canary: version "
                    f"{s.version} serves every request", "remove previous, or give a canary share, e.g. canary: 10%")
    if s.canary is None:
        return True
    ok = True
    if not 0 < s.canary < 100:
        ok = False
        yield error(src, at(f"{here}/canary"), "KF361", f"{env}: canary {s.canary}% is outside 1-99%",
                    f"to serve version {s.version} alone, remove canary and previous: kflowgen promote "
                    f"{m.team}/{m.name} --finish {env}" if s.canary >= 100
                    else "give the share of requests version should serve beside previous, e.g. canary: 10%; or "
                    "remove canary and previous")
    if s.backend != "kserve":
        ok = False
        yield error(src, at(f"{here}/canary"), "KF362", f"{env}: a canary needs backend: kserve (the Deployment "
                    "backend serves one version)", f"set backend: kserve in {env}, or remove canary and previous")
    if s.previous is None:
        ok = False
        yield error(src, at(f"{here}/canary"), "KF362", f"{env}: canary without a previous version: nothing serves "
                    f"the other {100 - s.canary}% of requests" if 0 < s.canary < 100 else
                    f"{env}: canary without a previous version",
                    f"add previous: <the version {env} serves now>, or remove canary to serve version {s.version} alone")
    elif s.previous == s.version:
        ok = False
        yield error(src, at(f"{here}/previous"), "KF362", f"{env}: previous is version {s.version} too: the canary "
                    "would test nothing", "set version to the new version, previous to the one served now")
    if ok:
        least, most = s.canary_share
        if least != most or least != Fraction(s.canary, 100):
            c, (fewest, many) = s.canary_pods, s.stable_pods
            got = f"{_pct(least)}" if least == most else f"{_pct(least)} to {_pct(most)}"
            pods_of = (f"{c} of {c + fewest} pods" if fewest == many
                       else f"{c} {'pod' if c == 1 else 'pods'} beside {fewest}-{many} of version {s.previous}")
            exact = 100 // gcd(s.canary, 100)
            yield warning(src, at(f"{here}/canary"), "KF363", f"{env}: a {s.canary}% canary on {s.replicas} "
                          f"{'server' if s.replicas == 1 else 'servers'} is {pods_of}: about {got} of requests reach "
                          f"version {s.version} (KServe v0.20 splits requests by pods, not by weight)",
                          f"{'fixed ' if s.autoscale else ''}replicas: {exact} (or a multiple) give exactly "
                          f"{s.canary}%; or accept about {got}")
    return ok


def _pct(share: Fraction) -> str:
    return f"{round(share * 100)}%"


def _reach(model, served, teams):
    """KF344: callers are teams; a host is exposed only where the platform has an ingress controller and a domain for
    the environment, ends in that domain, and is no other model's."""
    p = model.platform
    hosts: dict[tuple[str, str], str] = {}
    for m in served:
        src, at = m.source.path, m.source.at
        for caller in m.callers:
            if caller not in teams and caller not in model.unreadable:
                yield error(src, at(f"/callers/{m.source.data['callers'].index(caller)}"), "KF344",
                            f"caller '{caller}' is not a team", close(caller, teams))
        for env, s in m.environments.items():
            if not s.host or env not in p.environments:
                continue
            where = partial(at, f"/environments/{env}/host")  # looked up for a finding only
            domain = p.environments[env].domain
            if p.ingress is None:
                yield error(src, where(), "KF344", f"{env}: the platform has no ingress controller to expose models "
                            "through", f"remove host, or ask the platform team to set network.ingress in {p.source.path}")
            elif not domain:
                yield error(src, where(), "KF344", f"{env}: the platform gives no domain for exposed models",
                            f"remove host, or ask the platform team to set environments.{env}.domain")
            elif not (s.host == domain or s.host.endswith("." + domain)):
                yield error(src, where(), "KF344", f"{env}: host '{s.host}' is not in the environment's domain {domain}",
                            f"use a host ending in .{domain}, e.g. {m.name}.{m.team}.{domain}")
            other = hosts.setdefault((env, s.host), f"{m.team}/{m.name}")
            if other != f"{m.team}/{m.name}":
                yield error(src, where(), "KF344", f"{env}: host '{s.host}' is already model {other}'s",
                            "give each exposed model its own host")


def _fit(model, team, env: str, uses):
    """Report each quota resource the team's servers in env exceed, once, at the model that crosses the limit."""
    q = team.quota[env]
    limits = {"cpu": quantity.parse(q.cpu), "memory": quantity.parse(q.memory),
              **{f"gpu/{g}": Fraction(n) for g, n in q.gpu.items()}}
    spelled = {"cpu": str(q.cpu), "memory": str(q.memory), **{f"gpu/{g}": str(n) for g, n in q.gpu.items()}}
    for res in sorted({r for _, d in uses for r in d} - {f"gpu/{g}" for g in model.platform.gpu_types
                                                          if misspelt(model, q.gpu, g)}):
        total, parts = Fraction(0), []
        for m, d in uses:
            if res not in d:
                continue
            total += d[res]
            parts.append(f"{m.name} {_show(res, d[res])}")
            if total > limits.get(res, 0):
                what = res.replace("gpu/", "") + (" GPUs" if res.startswith("gpu/") else "")
                key = res.replace("/", ".")
                yield error(m.source.path, m.source.at(f"/environments/{env}", key=True), "KF334",
                            f"{env}: servers of team {team.name} request {_show(res, total)} {what} "
                            f"({', '.join(parts)}; replicas or maxReplicas plus one pod during a rollout"
                            f"{', and a canary its own pods' if any(m.environments[env].canary for m, _ in uses) else ''}) "
                            f"but the team's {env} quota is {spelled.get(res, '0')}",
                            f"lower replicas or the size per server, or raise quota.{env}.{key} in {team.source.path}")
                break

def _show(res: str, value: Fraction) -> str:
    if res == "memory":
        for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20)):
            if (value / size).denominator == 1:
                return f"{value // size}{unit}"
        return str(int(value))
    if res == "cpu" and value.denominator != 1:
        return f"{round(value * 1000)}m"
    return str(int(value))
