"""Checks across spec files: each rule is a small module with a check(model) generator, registered here."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from ..diagnostics import Diagnostic
from ..model import Model
from . import capacity, environments, experiments, gpus, images, profiles, quantities, serving, storage, teams

Rule = Callable[[Model], Iterable[Diagnostic]]

# name -> rule; every rule names the codes it reports in its module docstring
RULES: dict[str, Rule] = {
    "cpu-millicores": quantities.check,
    "team-names": teams.check,
    "environments-exist": environments.check,
    "gpu-types-exist": gpus.check,
    "profiles-fit-quota": profiles.check,
    "gpu-capacity": capacity.check,
    "allowed-registries": images.check,
    "storage-quota": storage.check,
    "experiments": lambda m: experiments.check(m, m.experiments),
    "served-models": lambda m: serving.check(m, m.served),
}


def run(model: Model) -> list[Diagnostic]:
    """Every rule; when an amount is malformed (cpu finer than 1m), the rules that compute with it wait."""
    out: list[Diagnostic] = list(quantities.check(model))
    if out:
        return out
    for name, rule in RULES.items():
        if name != "cpu-millicores":
            out.extend(rule(model))
    return out
