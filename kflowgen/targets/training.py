"""Training experiments: typed experiment specs, their trials, Job names, and the Jobs/PyTorchJobs/TFJobs they render to.

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
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import functools
import shlex
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from pathlib import PurePosixPath

from kflowgen.specs import quantity
from kflowgen.targets import pods
from kflowgen.specs.loader import SpecFile, pointer
from kflowgen.specs.model import Platform, Team

EXPERIMENTS = "specs/experiments"
LABEL_EXPERIMENT = "kflowgen.dev/experiment"
LABEL_TRIAL = "kflowgen.dev/trial"
PARAMETERS = "kflowgen.dev/trial-parameters"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"
KEEP = {SYNC_OPTIONS: "Prune=false,Delete=false", COMPARE_OPTIONS: "IgnoreExtraneous"}
SERVICE_ACCOUNT = "runner"  # in every team namespace (bases/team)
NAS = "nas"  # the team's PersistentVolumeClaim
UID = 1000  # the notebooks' uid (Zero to JupyterHub's default), so files on the NAS have one owner
HASH_LEN = 8
NAME_MAX = 63  # a Job's name is copied into its pods' job-name label, which holds at most 63 characters
MAX_TRIALS = 256
DIGITS = 4  # significant digits of a randomly drawn number
API = {"Job": "batch/v1", "PyTorchJob": "kubeflow.org/v1", "TFJob": "kubeflow.org/v1"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Range:
    min: Decimal
    max: Decimal
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class RandomSweep:
    seed: int
    trials: int
    params: dict[str, tuple[str, ...] | Range]  # by name, sorted


@dataclass(frozen=True)
class Experiment:
    source: SpecFile
    team: str
    name: str
    description: str
    run: str
    command: tuple[str, ...]  # shlex.split(run); empty when run does not split (a rule reports it)
    workdir: str
    hyperparameters: dict[str, str]  # sorted, values as written
    arg_style: str
    grid: dict[str, tuple[str, ...]]  # sorted by name, values as written and in file order
    random: RandomSweep | None
    parallelism: int | None
    cpu: object
    memory: str
    gpu_type: str | None
    gpu_count: int
    environments: tuple[str, ...]
    retries: int
    deadline: int | None  # seconds
    image: str | None
    env: dict[str, str]
    workers: int
    framework: str
    shell: bool = False
    shm: str | None = None  # /dev/shm size; None: the platform's
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # variable -> (Secret, key), sorted

    @property
    def kind(self) -> str:
        if self.workers == 1:
            return "Job"
        return "TFJob" if self.framework == "tensorflow" else "PyTorchJob"


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


@functools.lru_cache(maxsize=1024)  # teams repeat their commands across experiments
def _split(run: str) -> tuple[str, ...]:
    """The command line as words; empty when it does not split (an unclosed quote: a rule reports it)."""
    try:
        return tuple(shlex.split(run))
    except ValueError:
        return ()


def experiment_from(spec: SpecFile) -> Experiment:
    """The typed view of a schema-valid experiment spec; values that reach the command keep their spelling."""
    d = spec.data

    def scalars(parts, mapping) -> dict[str, str]:
        return {k: spec.raw.get(pointer([*parts, k]), _text(v)) for k, v in sorted(mapping.items())}

    def values(parts, items) -> tuple[str, ...]:
        return tuple(spec.raw.get(pointer([*parts, i]), _text(v)) for i, v in enumerate(items))

    sweep = d.get("sweep", {})
    grid = {k: values(["sweep", "grid", k], v) for k, v in sorted(sweep.get("grid", {}).items())}
    rnd = None
    if "random" in sweep:
        r = sweep["random"]
        params = {k: values(["sweep", "random", "params", k], p) if isinstance(p, list) else
                  Range(Decimal(str(p["min"])), Decimal(str(p["max"])), p.get("log", False), p.get("integer", False))
                  for k, p in sorted(r["params"].items())}
        rnd = RandomSweep(r["seed"], r["trials"], params)
    command = _split(d["run"])
    res = d["resources"]
    gpu = res.get("gpu")
    deadline = d.get("deadline")
    return Experiment(
        source=spec, team=d["team"], name=d["name"], description=d.get("description", ""), run=d["run"],
        command=command, workdir=d.get("workdir", ""), hyperparameters=scalars(["hyperparameters"], d.get("hyperparameters", {})),
        arg_style=d.get("argStyle", "hydra"), grid=grid, random=rnd, parallelism=d.get("parallelism"),
        cpu=res["cpu"], memory=res["memory"], gpu_type=gpu["type"] if gpu else None, gpu_count=gpu["count"] if gpu else 0,
        environments=tuple(d["environments"]), retries=d.get("retries", 0),
        deadline=int(deadline[:-1]) * _UNITS[deadline[-1]] if deadline else None, image=d.get("image"),
        env=scalars(["env"], d.get("env", {})), workers=d.get("workers", 1), framework=d.get("framework", "pytorch"),
        shell=bool(d.get("shell", False)), shm=d.get("shm"),
        secrets={k: (v["secret"], v["key"]) for k, v in sorted(d.get("secrets", {}).items())})


# --- trials -------------------------------------------------------------------------------------------------------

def sweep_size(exp: Experiment) -> int:
    """Trials the spec asks for (a grid's product, a random sweep's count), without expanding them."""
    if exp.grid:
        return math.prod(len(v) for v in exp.grid.values())
    return exp.random.trials if exp.random else 1


def trials(exp: Experiment) -> list[dict[str, str]]:
    """Each trial's sweep values by name. Grid: names sorted, values in file order. Random: fixed by the seed."""
    if exp.grid:
        if sweep_size(exp) > MAX_TRIALS:
            raise ValueError(f"grid of {exp.name} has {sweep_size(exp)} trials, more than {MAX_TRIALS}")
        return [dict(zip(exp.grid, combo)) for combo in itertools.product(*exp.grid.values())]
    if exp.random:
        return _random_trials(exp.random)
    return [{}]


def _random_trials(sweep: RandomSweep) -> list[dict[str, str]]:
    rng = random.Random(sweep.seed)  # never the global generator
    out: list[dict[str, str]] = []
    seen: set[tuple] = set()
    for _ in range(sweep.trials * 100):  # bounded: few choices may give fewer combinations than asked
        trial = {name: _draw(rng, p) for name, p in sweep.params.items()}
        if tuple(trial.items()) not in seen:
            seen.add(tuple(trial.items()))
            out.append(trial)
            if len(out) == sweep.trials:
                break
    return out


def _draw(rng: random.Random, p: tuple[str, ...] | Range) -> str:
    if isinstance(p, tuple):
        return p[rng.randrange(len(p))]
    if p.integer and not p.log:
        return str(rng.randint(int(p.min), int(p.max)))
    u = Decimal(rng.random())
    with localcontext(Context(prec=30)):  # decimal's ln/exp are correctly rounded: the same digits on every machine
        x = (p.min.ln() + u * (p.max.ln() - p.min.ln())).exp() if p.log else p.min + u * (p.max - p.min)
        if p.integer:
            return str(int(x.to_integral_value()))
        return format(float(x), f".{DIGITS}g")


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


def name_budget(exp: Experiment) -> int:
    """63 for a Job; less for PyTorchJob/TFJob, whose pods and Services are `<name>-worker-<i>`."""
    return NAME_MAX if exp.workers == 1 else NAME_MAX - len(f"-worker-{exp.workers - 1}")


def content_hash(api_version: str, kind: str, spec: dict, trial: dict[str, str]) -> str:
    text = json.dumps({"apiVersion": api_version, "kind": kind, "spec": spec, "trial": trial},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- manifests ----------------------------------------------------------------------------------------------------

_ALL_ARGS = re.compile(r'"\$(@|\{@\})"')
_ANY_ARGS = re.compile(r"\$(\{[@*#]?[@*]\}|[@*])")


def split_arguments(run: str) -> str | None:
    """With shell: the first $@ or $* that is not "$@": unquoted, the shell would split the values at spaces and
    expand * and ?; "$*" would join them into one. None if there is none."""
    rest = _ALL_ARGS.sub("", run)
    found = _ANY_ARGS.search(rest)
    return found.group(0) if found else None


def command(exp: Experiment) -> list[str]:
    """The container's command: run's words, or with shell, `sh -c <run> <experiment>`, the arguments (the
    hyperparameters) being the shell's positional parameters: never read by the shell, they reach the command where
    run says "$@", at its end when it does not say."""
    if exp.shell:
        return ["sh", "-c", exp.run if _ALL_ARGS.search(exp.run) else f'{exp.run} "$@"', exp.name]
    return list(exp.command)


_OPERATORS = set(";&|<>()`")


def shell_syntax(run: str) -> str | None:
    """The first shell syntax in a command line that, without a shell, would reach the program as a literal word:
    outside quotes ; & | < > ( ) and backquotes, and outside single quotes $NAME, ${...} and $(...). None if there is
    none. A backslash escapes the next character, as shlex reads it."""
    quote, i = None, 0
    while i < len(run):
        c = run[i]
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "\\":
            i += 1  # the next character is literal
        elif c == "$" and i + 1 < len(run) and (run[i + 1].isalpha() or run[i + 1] in "_{("):
            word = re.match(r"\$(\w+|\{[^}]*\}?|\()", run[i:])
            return word.group(0) + ("...)" if word.group(0) == "$(" else "")
        elif quote == '"':
            quote = None if c == '"' else quote
        elif c in "'\"":
            quote = c
        elif c in _OPERATORS:
            return run[i:i + 2] if run[i:i + 2] in ("&&", "||", ">>", "<<") else c
        i += 1
    return None


def arguments(exp: Experiment, trial: dict[str, str]) -> list[str]:
    """Fixed hyperparameters and the trial's values (which win), sorted by name, in the chosen style."""
    prefix = "--" if exp.arg_style == "argparse" else ""
    return [f"{prefix}{k}={v}" for k, v in sorted({**exp.hyperparameters, **trial}.items())]


def _pod(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], tag: str | None) -> dict:
    labels = {LABEL_EXPERIMENT: exp.name, **({LABEL_TRIAL: tag} if tag else {})}
    amounts = {"cpu": quantity.cpu(exp.cpu), "memory": str(exp.memory)}
    if exp.gpu_type:
        amounts[p.gpu_types[exp.gpu_type].resource] = str(exp.gpu_count)  # GPUs: limit == request
    env = [{"name": "KFLOWGEN_EXPERIMENT", "value": exp.name},
           {"name": "KFLOWGEN_TRIAL", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{LABEL_TRIAL}']"}}}]
    shm, shm_mount = pods.shm_volume(exp.shm or p.shm)
    image = exp.image or team.image
    container = {
        "name": {"Job": "train", "PyTorchJob": "pytorch", "TFJob": "tensorflow"}[exp.kind],
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
    if exp.kind == "Job":
        spec["restartPolicy"] = "Never"  # the Kubeflow kinds set it from their replica specs
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


def _spec(exp: Experiment, team: Team, p: Platform, trial: dict[str, str], tag: str | None) -> dict:
    deadline = {"activeDeadlineSeconds": exp.deadline or p.default_deadline}  # no trial holds a GPU forever
    if exp.kind == "Job":  # no ttlSecondsAfterFinished: see the module docstring
        return {"backoffLimit": exp.retries, **deadline, "template": _pod(exp, team, p, trial, tag)}

    def replicas(n: int) -> dict:
        return {"replicas": n, "restartPolicy": "OnFailure", "template": _pod(exp, team, p, trial, tag)}

    # when the job ends, pods still running (holding GPUs) are deleted; finished pods stay, with their logs
    policy = {"cleanPodPolicy": "Running", "backoffLimit": exp.retries, **deadline}
    if exp.kind == "TFJob":
        return {"runPolicy": policy, "tfReplicaSpecs": {"Worker": replicas(exp.workers)}}
    return {"runPolicy": policy, "pytorchReplicaSpecs": {"Master": replicas(1), "Worker": replicas(exp.workers - 1)}}


# (experiment, team and platform spec files, trial) -> content hash: the rules name every trial's Job in the main
# process, and the render workers it forks afterwards find the hashes here instead of rendering each object twice.
# One entry per trial of the run (kflowgen runs one command a process).
_DIGESTS: dict[tuple, str] = {}


def trial_digest(exp: Experiment, team: Team, p: Platform, trial: dict[str, str]) -> str:
    """The hash of a trial's object rendered without its name and trial label, which carry it."""
    sources = (exp.source, team.source, p.source)
    key = (*(f"{s.path}:{s.digest}" for s in sources), *trial.items()) if all(s.digest for s in sources) else None
    digest = _DIGESTS.get(key) if key else None
    if digest is None:
        digest = content_hash(API[exp.kind], exp.kind, _spec(exp, team, p, trial, None), trial)
        if key:
            _DIGESTS[key] = digest
    return digest


def trial_name(exp: Experiment, team: Team, p: Platform, trial: dict[str, str]) -> str:
    """The Job (or PyTorchJob, TFJob) name of a trial: manifest(...)["metadata"]["name"], without the object."""
    return job_name(exp.name, trial, trial_digest(exp, team, p, trial), name_budget(exp))


def manifest(exp: Experiment, team: Team, p: Platform, trial: dict[str, str]) -> dict:
    """One trial's object. Its name and trial label carry the hash of the object rendered without them."""
    api = API[exp.kind]
    digest = trial_digest(exp, team, p, trial)
    tag = digest[:HASH_LEN]
    meta = {"name": job_name(exp.name, trial, digest, name_budget(exp)),
            "labels": {LABEL_EXPERIMENT: exp.name, LABEL_TRIAL: tag},
            "annotations": {**KEEP, PARAMETERS: json.dumps(trial, sort_keys=True)}}
    return {"apiVersion": api, "kind": exp.kind, "metadata": meta, "spec": _spec(exp, team, p, trial, tag)}


def render_experiment(exp: Experiment, team: Team, platform: Platform, env: str) -> dict[str, dict]:
    """{file name: object} for overlays/<env>/teams/<team>/workloads/; empty when the experiment does not run in env."""
    if env not in exp.environments:
        return {}
    objs = (manifest(exp, team, platform, t) for t in trials(exp))
    return dict(sorted((f"{o['kind'].lower()}.{o['metadata']['name']}.yaml", o) for o in objs))


def explain(exp: Experiment, team: Team, platform: Platform) -> str:
    """What the experiment runs, where and on what, in plain words."""
    runs = trials(exp)
    kind = {"Job": "Kubernetes Job", "PyTorchJob": f"PyTorchJob of {exp.workers} pods",
            "TFJob": f"TFJob of {exp.workers} pods (deprecated)"}[exp.kind]
    gpu_type = platform.gpu_types.get(exp.gpu_type or "")
    gpu = f"{exp.gpu_count} x {gpu_type.display_name if gpu_type else exp.gpu_type}" if exp.gpu_type else "no GPU"
    deadline = exp.deadline or platform.default_deadline
    unit = next(u for u in "dhms" if deadline % _UNITS[u] == 0)
    stop = f"stopped after {deadline // _UNITS[unit]}{unit}" + ("" if exp.deadline else " (the platform's default)")
    lines = [f"Experiment {exp.name} of team {team.name} ({exp.source.path}):",
             f"  {len(runs)} trial(s), each a {kind}; each pod gets {gpu}, {exp.cpu} CPU and {exp.memory} memory.",
             f"  Image {exp.image or team.image}, run in {PurePosixPath(platform.mount_path, exp.workdir)} on the team NAS.",
             f"  A failed trial is retried {exp.retries} time(s); a trial is {stop}. All trials are created at once"
             + (f" (you expect {exp.parallelism} to run at a time);" if exp.parallelism else ";"),
             "  the team quota holds back those that do not fit until running ones finish."]
    for env in exp.environments:
        cluster = platform.environments[env].cluster if env in platform.environments else "an undefined cluster"
        lines.append(f"  {env}: namespace {team.namespace} on cluster {cluster}")
    lines.append("  Trials (Job name: command line):")
    for t in runs:
        name = trial_name(exp, team, platform, t)
        lines.append(f"    {name}: {shlex.join([*command(exp), *arguments(exp, t)])}")
    return "\n".join(lines) + "\n"
