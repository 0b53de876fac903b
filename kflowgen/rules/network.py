"""KF342, KF346: the platform's network and pull-secret settings can work and keep teams apart. An egress rule names
one destination (a namespace, or an address block), never a team's namespace (teams reach each other only through a
model's callers), with environments the platform defines; exposing models needs a domain per environment. A pull
secret belongs to a registry entry of `registries`."""
from __future__ import annotations

import ipaddress

from kflowgen.diagnostics import error
from kflowgen.specs.loader import pointer
from kflowgen.specs.hints import close

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF342": "network egress or ingress settings that cannot work, or that reach a team namespace",
    "KF346": "pull secret for a registry the platform does not list",
}


def check(model):
    p = model.platform
    src = p.source
    teams = {t.name for t in model.teams}
    seen: set[str] = set()
    for i, r in enumerate(p.egress):
        at = f"/network/egress/{i}"
        if r.name in seen:
            yield error(src.path, src.at(f"{at}/name"), "KF342", f"egress rule '{r.name}' is given twice",
                        "give each rule its own name")
        seen.add(r.name)
        if bool(r.namespace) == bool(r.cidr):
            yield error(src.path, src.at(at), "KF342", f"egress rule '{r.name}' names "
                        f"{'both a namespace and a cidr' if r.namespace else 'neither a namespace nor a cidr'}",
                        "give one destination per rule: namespace (and podLabels), or cidr (and except)")
        if r.namespace in teams:
            yield error(src.path, src.at(f"{at}/namespace"), "KF342", f"egress rule '{r.name}' reaches team "
                        f"{r.namespace}'s namespace: every team's pods could reach it",
                        "let teams reach a team's model through the model's callers instead")
        if r.pod_labels and not r.namespace:
            yield error(src.path, src.at(f"{at}/podLabels"), "KF342", "podLabels need a namespace",
                        "add namespace, or remove podLabels")
        if r.excepted and not r.cidr:
            yield error(src.path, src.at(f"{at}/except"), "KF342", "except needs a cidr", "add cidr, or remove except")
        for j, block in enumerate([r.cidr, *r.excepted] if r.cidr else []):
            try:
                ipaddress.ip_network(block, strict=True)
            except ValueError as e:
                where = f"{at}/cidr" if j == 0 else f"{at}/except/{j - 1}"
                yield error(src.path, src.at(where), "KF342", f"'{block}' is not an address block: {e}",
                            "write the network address and prefix, e.g. 10.20.0.0/16")
        for j, env in enumerate(r.environments or ()):
            if env not in p.environments:
                yield error(src.path, src.at(f"{at}/environments/{j}"), "KF342", f"environment '{env}' is not "
                            "defined", close(env, p.environments))
    for entry in p.pull_secrets:
        if entry not in p.registries:
            yield error(src.path, src.at(pointer(["pullSecrets", entry]), key=True), "KF346", f"'{entry}' is not an entry of "
                        "registries", f"use one of: {', '.join(p.registries)}")
