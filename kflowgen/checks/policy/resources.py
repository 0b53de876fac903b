"""KF602: every container (init containers too) requests and limits cpu and memory, so the team ResourceQuota
and the scheduler see what it uses."""
from __future__ import annotations

from kflowgen.checks.objects import all_containers

CODE = "KF602"
TITLE = "container without cpu and memory requests and limits"


def check(obj, ctx):
    for at, c in all_containers(obj, ("initContainers", "containers")):
        res = c.get("resources") or {}
        for field in ("requests", "limits"):
            given = res.get(field) or {}
            for resource in ("cpu", "memory"):
                if resource not in given:
                    yield f"{at}/resources/{field}/{resource}", f"no {resource} {field[:-1]}", \
                        f"set resources.{field}.{resource} on container '{c.get('name', '?')}'"
