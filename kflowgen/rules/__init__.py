"""Checks across spec files: each rule is a small module with a check(model) generator, registered here."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable

from kflowgen import cache
from kflowgen.diagnostics import Diagnostic
from kflowgen.specs.loader import SpecFile
from kflowgen.specs.model import Model
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
    "experiments": lambda m: experiments.check(m, m.experiments),
    "served-models": lambda m: serving.check(m, m.served),
    "hub-sign-in": hub.check,
    "network": network.check,
    "queueing": queueing.check,
    "distributed-training": distributed.check,
}


def run(model: Model) -> list[Diagnostic]:
    """Every rule, in registry order."""
    return [d for rule in RULES.values() for d in rule(model)]


def checked(model: Model, sources: list[SpecFile], store: cache.Cache) -> list[Diagnostic]:
    """run(model), cached. The rules read only the model, which is made from exactly these spec files (and the names
    of team files that did not load), so their findings are cached under all of those: the commands of one
    pull-request gate (validate, render --check, diff) run them once."""
    if not all(s.digest for s in sources):
        return run(model)
    k = cache.key("rules", cache.code_digest(), len(sources), *sorted(f"{s.path}:{s.digest}" for s in sources),
                  *sorted(model.unreadable))
    hit = store.get("rules", k)
    if hit is not None:
        return [Diagnostic(*d) for d in json.loads(hit)]
    found = run(model)
    store.put("rules", k, json.dumps([dataclasses.astuple(d) for d in found]).encode("utf-8"))
    return found
