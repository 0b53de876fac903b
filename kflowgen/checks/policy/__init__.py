"""Policies on built manifests (the gate's kube-linter): each rule is a small module with CODE, TITLE and a
check(obj, ctx) generator of (json pointer, message, hint), registered in POLICIES; run() makes Diagnostics."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from kflowgen import cache
from kflowgen.build import Built
from kflowgen.checks.objects import identity
from kflowgen.checks.policy import (
    applications,
    appprojects,
    cluster_scoped,
    gpu_limits,
    host_access,
    image_tags,
    inference_services,
    network,
    pod_security,
    queues,
    rbac,
    registries,
    resources,
    routes,
    runtimes,
    sync_options,
    team_namespace,
)
from kflowgen.checks.policy.appprojects import go_match
from kflowgen.checks.policy.context import Context
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.specs import layout
from kflowgen.specs.model import Model

__all__ = ["CODES", "Context", "POLICIES", "checked", "go_match", "run", "same_context_as"]

Finding = tuple[str, str, str]  # (json pointer, message, hint)


class Policy(Protocol):
    CODE: str
    TITLE: str

    def check(self, obj: dict, ctx: Context) -> Iterator[Finding]: ...


# name -> policy module, in code order
POLICIES: dict[str, Policy] = {
    "pod-security-restricted": pod_security,
    "requests-and-limits": resources,
    "gpu-limits-equal-requests": gpu_limits,
    "image-tag": image_tags,
    "allowed-registries": registries,
    "no-host-access": host_access,
    "team-namespace": team_namespace,
    "cluster-scoped-platform-only": cluster_scoped,
    "appproject-tenancy": appprojects,
    "keep-namespaces-and-volumes": sync_options,
    "application-project": applications,
    "rbac-bindings": rbac,
    "network-isolation": network,
    "exposed-routes": routes,
    "kueue-queues": queues,
    "trainjob-runtimes": runtimes,
    "inference-services": inference_services,
}

# Each policy declares its one code and title
CODES = {p.CODE: p.TITLE for p in POLICIES.values()}


def run(built: dict[str, list[dict]], ctx: Context, overlay_of: dict[str, str] | None = None) -> list[Diagnostic]:
    """Every policy over every object of every overlay; one error per finding, named by overlay and object. A policy
    with a check_overlay(objects, ctx) also judges each overlay as a whole (what must be there). With overlay_of,
    a key of `built` may be a part of an overlay (a file of a plain directory): judged in its overlay's context,
    named by its overlay, and not as a whole."""
    out: list[Diagnostic] = []
    whole = [p for p in POLICIES.values() if hasattr(p, "check_overlay")]
    for unit, objects in sorted(built.items()):
        overlay = (overlay_of or {}).get(unit, unit)
        octx = ctx.at(overlay)
        for obj in objects:
            for policy in POLICIES.values():
                for pointer, message, hint in policy.check(obj, octx):
                    out.append(error(overlay, (0, 0), policy.CODE, f"{identity(obj)}: {pointer}: {message}", hint))
        for policy in whole if unit == overlay else ():
            for _, message, hint in policy.check_overlay(objects, octx):
                out.append(error(overlay, (0, 0), policy.CODE, message, hint))
    return out


def checked(model: Model, env: str | None, built: Built, store: cache.Cache) -> list[Diagnostic]:
    """run() on the built overlays; an overlay that passed with the same output and context is not checked again.
    An overlay is judged in its environment's context (a policy reads only the part of its environment: ctx.env),
    made the first time one of that environment is judged (at 10,000 teams every environment's took 0.19 s, and the
    text of it that named it for the cache 0.08 s)."""
    fingerprint, every = _fingerprint(model, env, store)
    contexts: dict[str, Context] = {}

    def context(overlay: str) -> Context:
        if every is not None:  # (made to name the context: every environment's, used for all)
            return every
        place = layout.place(overlay)
        e = env or (place.env if place and place.env in model.platform.environments else "")
        if e not in contexts:
            contexts[e] = Context.from_model(model, e or None)
        return contexts[e]

    # every rule reads the overlay's path (team, environment, who owns it) and the platform context; kflowgen's
    # whole code, not only policy/, decides the verdict (rules import quantities and registry matching)
    keyed = cache.keyed("policy", cache.code_digest(), fingerprint)

    def key(overlay: str, unit: str) -> str:
        return keyed(overlay, unit, built.unit_digest(unit))

    passed = cache.Passes(store, "policy", cache.code_digest(), fingerprint)
    # an overlay that passed whole is not looked into; of the others, a plain directory's files one by one (a
    # one-file change re-judges that file only); an overlay passes whole once all its parts have passed
    # (by sha256: an unchanged overlay is not read; nor, in a group of overlays that passed, looked up one by one).
    # An overlay at a time: no key is kept for every unit (560,000 at 10,000 teams)
    digests = {o: built.digest(o) for o in built.overlays}
    found: list[tuple[str, list[Diagnostic]]] = []  # (unit, its findings)
    for overlay in passed.unpassed(digests):
        whole = keyed(overlay, overlay, digests[overlay])
        if passed.has(whole, overlay, whole=True):
            continue
        failed = False
        for unit in built.units([overlay], passed.unchanged):  # {unit: overlay}, no text read
            unit_key = whole if unit == overlay else key(overlay, unit)
            if unit != overlay and passed.has(unit_key, overlay):
                continue
            mine = run({unit: built.unit_objects(unit)}, context(overlay), {unit: overlay})
            if mine:
                found.append((unit, mine))
                failed = True
            else:
                passed.add(unit_key, overlay, whole=unit == overlay)
        if not failed:
            passed.add(whole, overlay, whole=True, listing=built.listing(overlay))
    passed.save()
    return [d for _, mine in sorted(found, key=lambda f: f[0]) for d in mine]


def _fingerprint(model: Model, env: str | None, store: cache.Cache) -> tuple[str, Context | None]:
    """What a verdict depends on besides kflowgen's code and the overlay: the context, named by its text (hashed: it
    names every team's namespaces and people; a quota is not in it, so a quota change judges nothing again). The
    name is kept under the platform file's and team specs' sha256 (the context is a function of them:
    Context.from_model), so that a run whose specs named it before makes no context but those it judges in; and
    the context, when it was made here to be named."""
    specs = [model.platform.source, *(t.source for t in model.teams)]
    k = _context_key(env, {s.path: s.digest for s in specs}) \
        if store.folder is not None and all(s.digest for s in specs) else None
    known = _named(store, k) if k else None
    if known is not None:
        return known, None
    whole = Context.from_model(model, env)
    fingerprint = cache.key(repr(whole))
    if k:
        store.put("policy-context", k, fingerprint.encode("ascii"))
    return fingerprint, whole


def same_context_as(model: Model, store: cache.Cache, before: dict[str, str]) -> bool:
    """Name this model's context (see _fingerprint) as the cache names that of the model of the same spec files but
    these, as they were before ({path: sha256}), for a caller who has found the two contexts the same (flow.scoped: a
    pull request that changes a team's quota; every environment's context at 10,000 teams takes 0.3 s to make and
    name). False when the cache does not name the earlier one (it was never judged)."""
    specs = {s.path: s.digest for s in [model.platform.source, *(t.source for t in model.teams)]}
    if store.folder is None or not all(specs.values()) or not before.keys() <= specs.keys():
        return False
    was = _named(store, _context_key(None, {**specs, **before}))
    if was is not None:
        store.put("policy-context", _context_key(None, specs), was.encode("ascii"))
    return was is not None


def _context_key(env: str | None, specs: dict[str, str]) -> str:
    """The key of the entry naming the context made of these spec files ({path: sha256}, in model order)."""
    return cache.key("policy context", cache.code_digest(), env or "", *(f"{p}:{d}" for p, d in specs.items()))


def _named(store: cache.Cache, k: str) -> str | None:
    known = store.lookup("policy-context", k)
    return known.decode("ascii", "replace") if known is not None and len(known) == 64 else None
