"""KF601: every pod template meets Pod Security `restricted` (the six controls beyond baseline), init and ephemeral
containers included. hostPath volumes are KF606's (baseline), so one volume gives one finding."""
from __future__ import annotations

from kflowgen.checks.objects import containers, pod_specs

CODE = "KF601"
TITLE = "pod template does not meet Pod Security restricted"

VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SECCOMP = {"RuntimeDefault", "Localhost"}
HINT = ("restricted needs allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser not 0, seccompProfile "
        "RuntimeDefault, capabilities drop [ALL], and only the volume types " + ", ".join(sorted(VOLUMES)))


def check(obj, ctx):
    for at, pod in pod_specs(obj):
        psc = pod.get("securityContext") or {}
        pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
        if psc.get("runAsNonRoot") is False:
            yield f"{at}/securityContext/runAsNonRoot", "must not be false", HINT
        if psc.get("runAsUser") == 0:
            yield f"{at}/securityContext/runAsUser", "must not be 0 (root)", HINT
        if pod_seccomp is not None and pod_seccomp not in SECCOMP:
            yield f"{at}/securityContext/seccompProfile/type", f"'{pod_seccomp}' is not RuntimeDefault or Localhost", HINT
        for cat, c in containers(pod, at):
            sc = c.get("securityContext") or {}
            where = f"{cat}/securityContext"
            if sc.get("allowPrivilegeEscalation") is not False:
                yield f"{where}/allowPrivilegeEscalation", "must be false", HINT
            if sc.get("runAsNonRoot") is False or ("runAsNonRoot" not in sc and "runAsNonRoot" not in psc):
                yield f"{where}/runAsNonRoot", "must be true (here or in the pod's securityContext)", HINT
            if sc.get("runAsUser") == 0:
                yield f"{where}/runAsUser", "must not be 0 (root)", HINT
            seccomp = (sc.get("seccompProfile") or {}).get("type")
            if (seccomp or pod_seccomp) is None or seccomp is not None and seccomp not in SECCOMP:
                yield f"{where}/seccompProfile/type", \
                    f"is {seccomp or 'unset'}: must be RuntimeDefault or Localhost (here or in the pod)", HINT
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                yield f"{where}/capabilities/drop", "must include ALL", HINT
            for i, cap in enumerate(caps.get("add") or []):
                if cap != "NET_BIND_SERVICE":
                    yield f"{where}/capabilities/add/{i}", f"'{cap}': only NET_BIND_SERVICE may be added", HINT
        for i, vol in enumerate(pod.get("volumes") or []):
            for kind in sorted(set(vol) - {"name"} - VOLUMES - {"hostPath"}):
                yield f"{at}/volumes/{i}/{kind}", f"volume type {kind} is not allowed", HINT
