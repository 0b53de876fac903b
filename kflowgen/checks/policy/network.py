"""KF613: a team namespace stays closed. Its platform overlay holds a default-deny NetworkPolicy (every pod, Ingress
and Egress, no rule), and no NetworkPolicy rule opens it to everything: a rule without peers (all sources or
destinations), an empty peer, a namespaceSelector that selects every namespace (another team labels its pods to
match), or an ipBlock of the whole address space, except the platform file's own egress rules (its network.egress,
which may allow 0.0.0.0/0 on a port, reviewed there). A base that removed default-deny, or added an allow-all policy,
would open every team namespace at once."""
from __future__ import annotations

import json

from kflowgen.checks.objects import ptr

CODE = "KF613"
TITLE = "team namespace without default-deny, or a network policy rule open to everything"

WHOLE = ("0.0.0.0/0", "::/0")


def _empty_selector(selector) -> bool:
    return isinstance(selector, dict) and not selector.get("matchLabels") and not selector.get("matchExpressions")


def _peers(rule: dict, at: str, direction: str):
    key = "from" if direction == "ingress" else "to"
    peers = rule.get(key)
    if not peers:
        yield at, f"has no '{key}': it admits every {'source' if direction == 'ingress' else 'destination'}", \
            f"name the pods or namespaces the rule is for in '{key}'"
        return
    for j, peer in enumerate(peers):
        peer = peer if isinstance(peer, dict) else {}
        where = f"{at}/{key}/{j}"
        cidr = (peer.get("ipBlock") or {}).get("cidr")
        if not peer:
            yield where, "is an empty peer", "name pods, namespaces or an address block"
        elif "namespaceSelector" in peer and _empty_selector(peer["namespaceSelector"]):
            yield where + "/namespaceSelector", "selects every namespace", \
                "select namespaces by label, e.g. kubernetes.io/metadata.name"
        elif cidr in WHOLE:
            yield where + "/ipBlock/cidr", f"is {cidr}: every address", "name the address blocks the pods need"


def check(obj, ctx):
    if obj.get("kind") != "NetworkPolicy":
        return
    spec = obj.get("spec") or {}
    declared = ctx.egress.get(ctx.env, ())
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(spec.get(direction) or []):
            if direction == "egress" and json.dumps(rule, sort_keys=True) in declared:
                continue  # one of the platform file's egress rules: the platform's decision, reviewed there
            yield from _peers(rule if isinstance(rule, dict) else {}, ptr("spec", direction, i), direction)


def _default_deny(obj) -> bool:
    spec = obj.get("spec") or {}
    return (obj.get("kind") == "NetworkPolicy" and _empty_selector(spec.get("podSelector"))
            and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or []) and not spec.get("ingress")
            and not spec.get("egress"))


def check_overlay(objects, ctx):
    """Overlay-wide: a team's platform overlay has default-deny."""
    if ctx.team is not None and ctx.platform_owned and not any(map(_default_deny, objects)):
        yield "", "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)", \
            "keep networkpolicy.default-deny.yaml in bases/team and in its kustomization"
