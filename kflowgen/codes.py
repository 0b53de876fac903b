"""Every code kflowgen reports, with its one-line title, assembled from the modules that report them: each declares
its codes in a CODES table beside the checks that raise them, so a title is written once and a code has one owner.
The README's table and the SARIF reporter's rule list are checked against, or made from, this table."""
from __future__ import annotations

from types import ModuleType

from kflowgen import tools
from kflowgen.build import handkept, kustomize
from kflowgen.checks import codeowners, policy, verify
from kflowgen.checks.server import dryrun
from kflowgen.flow import determined, pipeline, promote, scaffold
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
    profiles,
    queueing,
    secrets,
    serving,
    storage,
    teams,
)
from kflowgen.specs import discover, loader, schema
from kflowgen.write import departures, writer

# In the order a run meets them: reading, schemas, checks across files, build and validation, disk, policy, the
# commands' own, tools
OWNERS: tuple[ModuleType, ...] = (
    loader, schema, discover, teams, environments, gpus, profiles, capacity, images, storage, names, codeowners,
    experiments, serving, promote, hub, network, secrets, queueing, distributed,
    kustomize, verify, dryrun, handkept, writer,
    departures, policy, scaffold, determined, pipeline, tools,
)


def assemble(owners: tuple[ModuleType, ...]) -> dict[str, str]:
    """{code: title} sorted by code; a code declared by two modules is a bug in kflowgen, raised at import."""
    table: dict[str, str] = {}
    owner: dict[str, str] = {}
    for module in owners:
        for code, title in module.CODES.items():
            if code in table:
                raise ValueError(f"{code} is declared by both {owner[code]} and {module.__name__}")
            table[code], owner[code] = title, module.__name__
    return dict(sorted(table.items()))


CODES: dict[str, str] = assemble(OWNERS)
