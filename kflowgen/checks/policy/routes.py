"""KF614: an exposed model's Ingress uses the platform's IngressClass and hosts in the environment's domain, so that a
team cannot route another team's or the platform's host names to its own service, nor pick another controller."""
from __future__ import annotations

from kflowgen.checks.objects import ptr

CODE = "KF614"
TITLE = "Ingress of another class than the platform's, or a host outside the environment's domain"


def check(obj, ctx):
    if obj.get("kind") != "Ingress":
        return
    spec = obj.get("spec") or {}
    if spec.get("ingressClassName") != ctx.ingress_class:
        yield "/spec/ingressClassName", f"is '{spec.get('ingressClassName')}', not the platform's " \
            f"'{ctx.ingress_class}'", "expose models through the platform's ingress controller"
    domain = ctx.domains.get(ctx.env)
    for i, rule in enumerate(spec.get("rules") or []):
        host = str((rule or {}).get("host", ""))
        if not domain or not (host == domain or host.endswith("." + domain)):
            yield ptr("spec", "rules", i, "host"), f"'{host}' is not in {ctx.env}'s domain {domain or '(none)'}", \
                "use a host in the environment's domain"
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate((tls or {}).get("hosts") or []):
            if not domain or not (host == domain or str(host).endswith("." + domain)):
                yield ptr("spec", "tls", i, "hosts", j), f"'{host}' is not in {ctx.env}'s domain " \
                    f"{domain or '(none)'}", "use a host in the environment's domain"
    if spec.get("defaultBackend"):
        yield "/spec/defaultBackend", "catches every host", "route one host"
