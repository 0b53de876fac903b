"""Checks across spec files: each rule is a small module with a check(model) generator, registered here."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable

from kflowgen import cache
from kflowgen.diagnostics import Diagnostic
from kflowgen.specs.loader import SpecFile
from kflowgen.specs.model import Model, specs_of
from kflowgen.rules import (
    capacity,
    distributed,
    environments,
    experiments,
    gpus,
    hub,
    images,
    names,
    network,
    paths,
    profiles,
    quantities,
    queueing,
    serving,
    storage,
    teams,
)

Rule = Callable[[Model], Iterable[Diagnostic]]

# name -> rule; each rule module declares the codes it owns in CODES, and its docstring names every code it reports
RULES: dict[str, Rule] = {
    "quantities": quantities.check,
    "team-names": teams.check,
    "unique-generated-names": names.check,
    "clean-paths": paths.check,
    "environments-exist": environments.check,
    "gpu-types-exist": gpus.check,
    "profiles-fit-quota": profiles.check,
    "gpu-capacity": capacity.check,
    "allowed-registries": images.check,
    "storage-quota": storage.check,
    "experiments": experiments.check,
    "served-models": lambda m: serving.check(m, m.served),
    "hub-sign-in": hub.check,
    "network": network.check,
    "queueing": queueing.check,
    "distributed-training": distributed.check,
}


# Rules that check experiments team by team: rule(model, experiments, whole) finds what is wrong with those
# experiments, and with whole with the rest of the model; rule(model) checks everything. What such a rule finds in a
# team's experiments is a function of those experiments, the team's served models, the spec files of the team of
# that name (or, where there is none, whether its file did not load and which teams there are) and the platform
# file. checked() runs the rest of the model once and each team's experiments apart.
BY_TEAM = ("quantities", "clean-paths", "experiments", "queueing")


def run(model: Model, skip=()) -> list[Diagnostic]:
    """Every rule (but those named in skip), in registry order."""
    return [d for name, rule in RULES.items() if name not in skip for d in rule(model)]


def checked(model: Model, sources: list[SpecFile], store: cache.Cache) -> list[Diagnostic]:
    """run(model), cached. The rules read only the model, which is made from exactly these spec files (and the names
    of team files that did not load), so their findings are cached under all of those: the commands of one
    pull-request gate (validate, render --check, diff) run them once. When any spec changed, the rules of BY_TEAM
    check again only the teams whose inputs changed (a pull request to one team: that team's experiments)."""
    if not all(s.digest for s in sources):
        return run(model)
    k = cache.key("rules", cache.code_digest(), len(sources), *sorted(f"{s.path}:{s.digest}" for s in sources),
                  *sorted(model.unreadable))
    hit = store.get("rules", k)
    if hit is not None:
        return _decoded(hit)
    found = run(model, skip=BY_TEAM) + _by_team(model, store)
    store.put("rules", k, _encoded(found))
    return found


def _by_team(model: Model, store: cache.Cache) -> list[Diagnostic]:
    """The rules of BY_TEAM: on the rest of the model once, then on each team's experiments (those that name it, in
    model order), a team's findings cached under exactly what they are a function of. Where a team's experiments
    are not together in model order, the rules run on them all at once."""
    rules = [RULES[name] for name in BY_TEAM]
    out = [d for rule in rules for d in rule(model, [], True)]
    specs = specs_of(model.experiments)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        team = s.top("team")  # without decoding the rest of a spec from the cache
        if team in groups and groups[team][-1] != i - 1:
            return out + [d for rule in rules for d in rule(model, model.experiments, False)]
        groups.setdefault(team, []).append(i)
    p = model.platform
    keyed = cache.keyed("rules", *BY_TEAM, cache.code_digest(), f"{p.source.path}:{p.source.digest}")
    named: dict[str, list[str]] = {}
    for t in model.teams:
        named.setdefault(t.name, []).append(f"{t.source.path}:{t.source.digest}")
    served: dict[str, list[str]] = {}
    for s in specs_of(model.served):
        served.setdefault(s.top("team"), []).append(f"{s.path}:{s.digest}")
    every = sorted(named)
    memo = cache.Memo(store, "rules", *BY_TEAM, "by team")  # team's key -> how many findings (kept apart when any)
    for team, members in groups.items():
        own = named.get(team)
        k = keyed(team, *(own or ["no team", team in model.unreadable, *every]), "served", *served.get(team, []),
                  "experiments", *(f"{specs[i].path}:{specs[i].digest}" for i in members))
        known = memo.get(k)
        hit = None if known in (None, "0") else store.get("rules", k)
        if known == "0" or hit is not None:
            out += _decoded(hit) if hit is not None else []
            continue
        group = [model.experiments[i] for i in members]
        found = [d for rule in rules for d in rule(model, group, False)]
        if found:
            store.put("rules", k, _encoded(found))
        memo.put(k, str(len(found)))
        out += found
    memo.save()
    return out


def _encoded(found: list[Diagnostic]) -> bytes:
    return json.dumps([dataclasses.astuple(d) for d in found]).encode("utf-8")


def _decoded(body: bytes) -> list[Diagnostic]:
    return [Diagnostic(*d) for d in json.loads(body)]
