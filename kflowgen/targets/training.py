"""Training: the Jobs, TrainJobs (or the legacy PyTorchJobs and TFJobs) an experiment's trials render to, and their
names. A trial of one worker is a batch/v1 Job; of more, a TrainJob where the platform runs Kubeflow Trainer v2
(`training.distributed.api: trainer`, kflowgen.targets.trainjob), else a PyTorchJob or a TFJob of the Training
Operator v1.

Life cycle of a training Job under Argo CD (README):
Kubernetes never lets a Job's pod template change, so kflowgen never changes a Job: each trial's Job name
ends in a hash of everything that decides what runs (kind, pod template, retries, deadline, trial values).
Change the command, a hyperparameter, the image or the resources and the trial gets a new Job, which
Argo CD creates; change only a description or a comment and nothing changes. Jobs have no
ttlSecondsAfterFinished: with a TTL Kubernetes deletes the finished Job, Argo CD's self-heal sees it missing
and runs the training again, for ever. Every Job carries `argocd.argoproj.io/sync-options: Prune=false,Delete=false`
(Delete=false: not even deleting the team's Application removes it) and
`argocd.argoproj.io/compare-options: IgnoreExtraneous`: when a Job leaves Git (changed or removed experiment)
Argo CD neither deletes it nor marks the team's Application out of sync, so the Job, its pods and their logs
stay until a team member deletes them (`kubectl delete jobs -l kflowgen.dev/experiment=<name>`; members have
`edit` in their namespace). Prune=confirm was considered and rejected: it holds the team's whole Application
(serving included) until an Argo CD admin confirms.
An archived experiment (`archived: true`) renders no Job: its Jobs leave Git, and the gate's comment and `explain`
give that command. A cleanup that Argo CD runs (a PostSync hook Job deleting them) was considered and not made: its
pod would need the API server, which the team's default-deny NetworkPolicy does not reach and whose address kflowgen
does not know, an image with kubectl, and a token with delete rights in every team namespace.

Where the platform queues training with Kueue (docs/queueing.md, "Queueing"), each Job also names its namespace's LocalQueue
and is created suspended: Kueue resumes it when the team's queue admits it.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import PurePosixPath

from kflowgen.specs import quantity
from kflowgen.specs.experiment import Experiment, passes_arguments, trials
from kflowgen.specs.quantity import DURATION_UNITS
from kflowgen.specs.layout import JOB_KEEP, LABEL_EXPERIMENT, LABEL_QUEUE, LABEL_TRIAL, LOCAL_QUEUE, PARAMETERS
from kflowgen.specs.model import Platform, Team
from kflowgen.targets import pods, queueing, trainjob

SERVICE_ACCOUNT = "runner"  # in every team namespace (bases/team)
NAS = "nas"  # the team's PersistentVolumeClaim
UID = 1000  # the notebooks' uid (Zero to JupyterHub's default), so files on the NAS have one owner
HASH_LEN = 8
NAME_MAX = 63  # a Job's name is copied into its pods' job-name label, which holds at most 63 characters
API = {"Job": "batch/v1", "PyTorchJob": "kubeflow.org/v1", "TFJob": "kubeflow.org/v1", trainjob.KIND: trainjob.API}
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


# --- names --------------------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return _NOT_ALNUM.sub("-", text.lower()).strip("-")


def _pair(key: str, value: str, short: bool) -> str:
    """lr + 0.01 -> lr0p01, optimizer + adam -> optimizer-adam; short: learning_rate -> lr, 10 characters of value."""
    if short:
        words = [w for w in re.split(r"[^A-Za-z0-9]+", key) if w]
        key = "".join(w[0] for w in words) if len(words) > 1 else key[:3]
        value = value[:10]
    key, value = _slug(key), _slug(value.replace(".", "p"))
    return key + ("-" if key and value[:1].isalpha() else "") + value


def job_name(experiment: str, trial: dict[str, str], digest: str, budget: int = NAME_MAX) -> str:
    """`<experiment>-<param><value>-...-<hash>`: a DNS-1035 label (so also DNS-1123) of at most `budget` characters.
    The readable part is shortened to fit; uniqueness comes from the hash of the trial's whole content."""
    room = budget - HASH_LEN - 1
    if room < 1:
        raise ValueError(f"name budget {budget} leaves no room before the hash")
    head = _slug(experiment)
    tail = "-".join(p for k, v in trial.items() if (p := _pair(k, v, False)))
    if tail and len(head) + 1 + len(tail) > room:  # abbreviate the parameters, then share the room
        tail = "-".join(p for k, v in trial.items() if (p := _pair(k, v, True)))
        head = head[: max(room // 2, room - 1 - len(tail))].rstrip("-")
    slug = "-".join(s for s in (head, tail) if s)
    if not slug[:1].isalpha():  # DNS-1035: the Services of PyTorchJob/TFJob pods must start with a letter
        slug = "x-" + slug if slug else "x"
    return f"{slug[:room].rstrip('-')}-{digest[:HASH_LEN]}"


def kind(exp: Experiment, p: Platform | None) -> str:
    """What a trial is: a Job for one worker; for more, a TrainJob where the platform runs Kubeflow Trainer, else (and
    for TensorFlow, which Trainer has no runtime for: the rules refuse it there) the Training Operator's kinds."""
    if exp.workers == 1:
        return "Job"
    if exp.framework == "tensorflow":
        return "TFJob"
    return trainjob.KIND if p is not None and p.trainer else "PyTorchJob"


def runtime(exp: Experiment, p: Platform) -> str:
    """The ClusterTrainingRuntime of a distributed experiment's framework ("" when the platform names none: KF350)."""
    return p.distributed.runtimes.get(exp.framework, "") if p.distributed else ""


def processes(exp: Experiment) -> int:
    """Processes per node of a TrainJob: one per GPU, else one."""
    return max(exp.gpu_count, 1)


def name_budget(exp: Experiment, p: Platform | None = None) -> int:
    """63 for a Job; less for PyTorchJob/TFJob, whose pods and Services are `<name>-worker-<i>`, and for a TrainJob,
    whose pods are `<name>-node-0-<i>-xxxxx`."""
    k = kind(exp, p)
    if k == "Job":
        return NAME_MAX
    return trainjob.name_budget(exp.workers) if k == trainjob.KIND else NAME_MAX - len(f"-worker-{exp.workers - 1}")


def content_hash(api_version: str, kind: str, spec: dict, trial: dict[str, str]) -> str:
    text = json.dumps({"apiVersion": api_version, "kind": kind, "spec": spec, "trial": trial},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- manifests ----------------------------------------------------------------------------------------------------


def command(exp: Experiment) -> list[str]:
    """The container's command: run's words, or with shell, `sh -c <run> <experiment>`, the arguments (the
    hyperparameters) being the shell's positional parameters: never read by the shell, they reach the command where
    run says "$@", at its end when it does not say."""
    if exp.shell:
        return ["sh", "-c", exp.run if passes_arguments(exp.run) else f'{exp.run} "$@"', exp.name]
    return list(exp.command)



def arguments(exp: Experiment, trial: dict[str, str]) -> list[str]:
    """Fixed hyperparameters and the trial's values (which win), sorted by name, in the chosen style."""
    prefix = "--" if exp.arg_style == "argparse" else ""
    return [f"{prefix}{k}={v}" for k, v in sorted({**exp.hyperparameters, **trial}.items())]


def _pod(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], tag: str | None, k: str) -> dict:
    labels = {LABEL_EXPERIMENT: exp.name, **({LABEL_TRIAL: tag} if tag else {})}
    amounts = {"cpu": quantity.cpu(exp.cpu), "memory": str(exp.memory)}
    if exp.gpu_type:
        amounts[p.gpu_types[exp.gpu_type].resource] = str(exp.gpu_count)  # GPUs: limit == request
    env = [{"name": "KFLOWGEN_EXPERIMENT", "value": exp.name},
           {"name": "KFLOWGEN_TRIAL", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{LABEL_TRIAL}']"}}}]
    shm, shm_mount = pods.shm_volume(exp.shm or p.shm)
    image = exp.image or team.image
    container = {
        "name": {"Job": "train", "PyTorchJob": "pytorch", "TFJob": "tensorflow", trainjob.KIND: trainjob.NODE}[k],
        "image": image, "command": command(exp), "args": arguments(exp, trial),
        "workingDir": str(PurePosixPath(p.mount_path, exp.workdir)),
        "env": env + [{"name": k, "value": v} for k, v in sorted(exp.env.items())] + [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for k, (secret, key) in exp.secrets.items()],
        "resources": {"requests": amounts, "limits": dict(amounts)},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": NAS, "mountPath": p.mount_path}, shm_mount],
    }
    spec: dict = {"serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False}
    if k == "Job":
        spec["restartPolicy"] = "Never"  # the Kubeflow kinds set it from their replica specs, a TrainJob's runtime
    spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": UID, "seccompProfile": {"type": "RuntimeDefault"}}
    if exp.gpu_type:
        spec["nodeSelector"] = dict(p.gpu_types[exp.gpu_type].node_selector)
        if p.gpu_types[exp.gpu_type].tolerations:
            spec["tolerations"] = pods.gpu_tolerations(p, exp.gpu_type)
    if pods.pull_secrets(p, [image]):
        spec["imagePullSecrets"] = pods.image_pull_secrets(p, [image])
    spec["containers"] = [container]
    spec["volumes"] = [{"name": NAS, "persistentVolumeClaim": {"claimName": NAS}}, shm]
    return {"metadata": {"labels": labels, "annotations": {PARAMETERS: json.dumps(trial, sort_keys=True)}}, "spec": spec}


def _spec(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], tag: str | None, queued: bool) -> dict:
    deadline = {"activeDeadlineSeconds": exp.deadline or p.default_deadline}  # no trial holds a GPU forever
    if queued:  # created suspended: Kueue resumes it when the team's queue admits it (the deadline starts then)
        deadline["suspend"] = True
    k = kind(exp, p)
    if k == "Job":  # no ttlSecondsAfterFinished: see the module docstring
        return {"backoffLimit": exp.retries, **deadline, "template": _pod(exp, team, p, trial, tag, k)}
    if k == trainjob.KIND:  # no retries: the runtime's JobSet failure policy decides (KF352 says so)
        return trainjob.spec(_pod(exp, team, p, trial, tag, k), exp.workers, processes(exp), runtime(exp, p), deadline)

    def replicas(n: int) -> dict:
        return {"replicas": n, "restartPolicy": "OnFailure", "template": _pod(exp, team, p, trial, tag, k)}

    # when the job ends, pods still running (holding GPUs) are deleted; finished pods stay, with their logs
    policy = {"cleanPodPolicy": "Running", "backoffLimit": exp.retries, **deadline}
    if k == "TFJob":
        return {"runPolicy": policy, "tfReplicaSpecs": {"Worker": replicas(exp.workers)}}
    return {"runPolicy": policy, "pytorchReplicaSpecs": {"Master": replicas(1), "Worker": replicas(exp.workers - 1)}}


# (experiment, team and platform spec files, trial) -> content hash: the rules name every trial's Job in the main
# process, and the render workers it forks afterwards find the hashes here instead of rendering each object twice.
# One entry per trial of the run (kflowgen runs one command a process).
_DIGESTS: dict[tuple, str] = {}


def trial_digest(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], queued: bool = False) -> str:
    """The hash of a trial's object rendered without its name and trial label, which carry it. A queued trial's
    differs (it is created suspended): turning queueing on gives every trial a new Job, since Kueue refuses a queue
    label added to a Job that already ran."""
    sources = (exp.source, team.source, p.source)
    key = (*(f"{s.path}:{s.digest}" for s in sources), queued, *trial.items()) if all(s.digest for s in sources) \
        else None
    digest = _DIGESTS.get(key) if key else None
    if digest is None:
        k = kind(exp, p)
        digest = content_hash(API[k], k, _spec(exp, team, p, trial, None, queued), trial)
        if key:
            _DIGESTS[key] = digest
    return digest


def trial_name(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], queued: bool = False) -> str:
    """The Job (or TrainJob, PyTorchJob, TFJob) name of a trial: manifest(...)["metadata"]["name"], without the
    object."""
    return job_name(exp.name, trial, trial_digest(exp, team, p, trial, queued), name_budget(exp, p))


def manifest(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], queued: bool = False) -> dict:
    """One trial's object. Its name and trial label carry the hash of the object rendered without them. Queued, it
    waits in its namespace's LocalQueue (Kueue's queue-name label), created suspended."""
    k = kind(exp, p)
    digest = trial_digest(exp, team, p, trial, queued)
    tag = digest[:HASH_LEN]
    meta = {"name": job_name(exp.name, trial, digest, name_budget(exp, p)),
            "labels": {LABEL_EXPERIMENT: exp.name, LABEL_TRIAL: tag, **({LABEL_QUEUE: LOCAL_QUEUE} if queued else {})},
            "annotations": {**JOB_KEEP, PARAMETERS: json.dumps(trial, sort_keys=True)}}
    return {"apiVersion": API[k], "kind": k, "metadata": meta, "spec": _spec(exp, team, p, trial, tag, queued)}


def render_experiment(exp: Experiment, team: Team, platform: Platform, env: str) -> dict[str, dict]:
    """{file name: object} for overlays/<env>/teams/<team>/workloads/; empty when the experiment does not run in env
    or is archived."""
    if env not in exp.environments or exp.archived:
        return {}
    queued = platform.queueing_in(env) is not None
    objs = (manifest(exp, team, platform, t, queued) for t in trials(exp))
    return dict(sorted((f"{o['kind'].lower()}.{o['metadata']['name']}.yaml", o) for o in objs))


def delete_command(exp: Experiment, team: Team, platform: Platform, env: str) -> str:
    """The command that deletes an experiment's Jobs, earlier trials included, from an environment's cluster."""
    return (f"kubectl --server {platform.environments[env].cluster} -n {team.namespace} delete "
            f"{kind(exp, platform).lower()}s -l {LABEL_EXPERIMENT}={exp.name}")


def explain(exp: Experiment, team: Team, platform: Platform, served=()) -> str:
    """What the experiment runs, where and on what, in plain words (served: the team's model specs, which keep part
    of its quota where trials are queued)."""
    runs = trials(exp)
    k = kind(exp, platform)
    # in the data scientist's words: machines, not pods, Jobs or nodes (the kind is said once, in brackets)
    what = {"Job": "one machine",
            "PyTorchJob": f"{exp.workers} machines together (a PyTorchJob of the legacy Training Operator)",
            "TFJob": f"{exp.workers} machines together (a TFJob, deprecated)",
            trainjob.KIND: f"{exp.workers} machines together (a Kubeflow Trainer TrainJob on runtime "
                           f"{runtime(exp, platform)}, {processes(exp)} process(es) per machine)"}[k]
    gpu_type = platform.gpu_types.get(exp.gpu_type or "")
    gpu = f"{exp.gpu_count} x {gpu_type.display_name if gpu_type else exp.gpu_type}" if exp.gpu_type else "no GPU"
    deadline = exp.deadline or platform.default_deadline
    unit = next(u for u in "dhms" if deadline % DURATION_UNITS[u] == 0)
    stop = f"stopped after {deadline // DURATION_UNITS[unit]}{unit}" + ("" if exp.deadline else " (the platform's default)")
    queued = [env for env in exp.environments if platform.queueing_in(env)]
    if exp.archived:
        return (f"Experiment {exp.name} of team {team.name} ({exp.source.path}) is archived: none of its {len(runs)} "
                "trial(s) is rendered any more, and its spec stays as the record of what ran.\n"
                "  Its earlier runs stay, with their logs, until someone deletes them; to delete them:\n"
                + "".join(f"    {delete_command(exp, team, platform, env)}\n" for env in exp.environments
                          if env in platform.environments))
    lines = [f"Experiment {exp.name} of team {team.name} ({exp.source.path}):",
             f"  {len(runs)} trial(s), each on {what}; each machine gets {gpu}, {exp.cpu} CPU and {exp.memory} memory.",
             f"  Image {exp.image or team.image}, run in {PurePosixPath(platform.mount_path, exp.workdir)} on the team NAS.",
             f"  A failed trial is retried {exp.retries} time(s); a trial is {stop}." if k != trainjob.KIND else
             f"  The runtime's failure policy decides retries; a trial is {stop}."]
    if k == trainjob.KIND:
        lines.insert(3, "  Each machine runs the command below in its working directory, with PET_NNODES, PET_NODE_RANK, "
                        "PET_MASTER_ADDR and PET_MASTER_PORT set for torchrun.")
    if len(queued) < len(exp.environments):
        lines[-1] += (" All trials are created at once" + (" where they are not queued" if queued else "")
                      + (f" (you expect {exp.parallelism} to run at a time);" if exp.parallelism else ";"))
        lines.append("  the team quota holds back those that do not fit until running ones finish.")
    for env in exp.environments:
        lines.append(f"  {env}: runs in team {team.name}'s space" +
                     ("" if team.namespace == team.name else f" ({team.namespace})"))
        if env in queued and (sized := queueing.sizing(platform, team, env, served)):
            lines += queueing.explain(exp, sized, len(runs))
    for state in sorted({env in queued for env in exp.environments}):
        where = "" if len(queued) in (0, len(exp.environments)) else \
            f" in {', '.join(e for e in exp.environments if (e in queued) == state)}"
        lines.append(f"  Trials{where} (name: command line):")
        for t in runs:
            name = trial_name(exp, team, platform, t, state)
            lines.append(f"    {name}: {shlex.join([*command(exp), *arguments(exp, t)])}")
    return "\n".join(lines) + "\n"
