"""KF606: no pod reaches into its node (Pod Security baseline): no hostPath volume, no host network, PID or IPC
namespace, no privileged or Windows HostProcess container, no hostPort."""
from __future__ import annotations

from kflowgen.checks.objects import containers, pod_specs

CODE = "KF606"
TITLE = "pod uses host paths, host namespaces, host ports or privileged containers"

HINT = "a team pod must not reach into its node: remove the setting (use a PersistentVolumeClaim or a Service instead)"


def check(obj, ctx):
    for at, pod in pod_specs(obj):
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(field) is True:
                yield f"{at}/{field}", "must not be true", HINT
        if ((pod.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess") is True:
            yield f"{at}/securityContext/windowsOptions/hostProcess", "must not be true", HINT
        for i, vol in enumerate(pod.get("volumes") or []):
            if "hostPath" in vol:
                yield f"{at}/volumes/{i}/hostPath", f"hostPath volume '{vol.get('name', '?')}'", HINT
        for cat, c in containers(pod, at):
            sc = c.get("securityContext") or {}
            if sc.get("privileged") is True:
                yield f"{cat}/securityContext/privileged", "must not be true", HINT
            if (sc.get("windowsOptions") or {}).get("hostProcess") is True:
                yield f"{cat}/securityContext/windowsOptions/hostProcess", "must not be true", HINT
            for i, port in enumerate(c.get("ports") or []):
                if (port or {}).get("hostPort"):
                    yield f"{cat}/ports/{i}/hostPort", f"hostPort {port['hostPort']}", HINT
