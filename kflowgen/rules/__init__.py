"""Checks across spec files: each rule is a small module with a check(model) generator, registered here."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from kflowgen.diagnostics import Diagnostic
from kflowgen.specs.model import Model
from kflowgen.rules import (
    capacity,
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
    serving,
    storage,
    teams,
)

Rule = Callable[[Model], Iterable[Diagnostic]]

# name -> rule; every rule names the codes it reports in its module docstring
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
}


def run(model: Model) -> list[Diagnostic]:
    """Every rule, in registry order."""
    return [d for rule in RULES.values() for d in rule(model)]
