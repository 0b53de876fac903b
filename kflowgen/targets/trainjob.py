"""A distributed trial as a Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1, Trainer v2.3.0): the trial's
pod template, as training renders it for a Job, split into what the TrainJob API carries.

A TrainJob has no pod template. `spec.trainer` holds the image, command, arguments, environment, numNodes and
resourcesPerNode of the runtime's trainer step (the replicated Job and container named `node` in every runtime
Trainer ships); the rest (service account, the team NAS and /dev/shm, security contexts, GPU node selection and
tolerations, pull secrets, the pod's labels) goes in one `spec.runtimePatches` entry of kflowgen's, patching that
step's pod template. What the API has no field for: a working directory (the command starts in it through `sh -c
'cd -- "$0" && exec "$@"' <workdir> ...`, so the values are still never read by a shell), retries (the runtime's
JobSet failure policy decides), `automountServiceAccountToken` (the `runner` ServiceAccount of bases/team turns it off
for every pod), and the restart policy (the runtime's). The runtime named in `spec.runtimeRef` is the platform's
ClusterTrainingRuntime for the experiment's framework (`training.distributed.runtimes`).

Names: a TrainJob's name is its JobSet's, whose trainer Jobs are `<name>-node-0` and pods `<name>-node-0-<i>-<5
random>` (JobSet's placement.GenPodName), all DNS-1035 labels of at most 63 characters: name_budget leaves room for
that. Life cycle and queueing: as for every trial (kflowgen.targets.training)."""
from __future__ import annotations

API = "trainer.kubeflow.org/v1alpha1"
KIND = "TrainJob"
NODE = "node"  # the trainer step's replicated Job and container in Trainer's runtimes (Trainer's constants.Node)
RUNTIME_KIND = "ClusterTrainingRuntime"
GROUP = "trainer.kubeflow.org"
MANAGER = "kflowgen.dev/trial"  # kflowgen's runtimePatches entry (Kueue adds its own, kueue.x-k8s.io/manager)
IN_WORKDIR = 'cd -- "$0" && exec "$@"'  # `sh -c` this, the working directory, then the command: starts it there
POD_SUFFIX = 6  # "-" and the 5 random characters of a JobSet pod's name


def name_budget(workers: int) -> int:
    """The longest TrainJob name whose trainer pods `<name>-node-0-<workers - 1>-xxxxx` stay within 63 characters."""
    return 63 - len(f"-{NODE}-0-{workers - 1}") - POD_SUFFIX


def command(workdir: str, inner: list[str]) -> list[str]:
    """inner, started in workdir: the TrainJob API has no working directory. The shell reads only IN_WORKDIR; the
    directory and every word of inner reach `cd` and `exec` as positional parameters, never parsed."""
    return ["sh", "-c", IN_WORKDIR, workdir, *inner]


def spec(pod: dict, workers: int, processes: int, runtime: str, run: dict) -> dict:
    """A TrainJob's spec from a trial's pod template (training._pod: one container, the NAS and /dev/shm volumes),
    its node count, processes per node (one per GPU, else one), the ClusterTrainingRuntime, and `run`: deadline and
    suspend. The container's workingDir becomes part of the command."""
    pspec = pod["spec"]
    (c,) = pspec["containers"]
    trainer = {"image": c["image"], "command": command(c["workingDir"], c["command"]), "args": c["args"],
               "env": c["env"], "numNodes": workers, "resourcesPerNode": c["resources"], "numProcPerNode": processes}
    patched = {"serviceAccountName": pspec["serviceAccountName"], "volumes": pspec["volumes"],
               "containers": [{"name": NODE, "volumeMounts": c["volumeMounts"], "securityContext": c["securityContext"]}]}
    patched.update((k, pspec[k]) for k in ("imagePullSecrets", "securityContext", "nodeSelector", "tolerations")
                   if k in pspec)
    step = {"name": NODE, "template": {"spec": {"template": {"metadata": pod["metadata"], "spec": patched}}}}
    return {"runtimeRef": {"name": runtime, "apiGroup": GROUP, "kind": RUNTIME_KIND}, **run, "trainer": trainer,
            "runtimePatches": [{"manager": MANAGER,
                                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [step]}}}}]}
