"""KF320-KF329, KF345, KF347, and the image and secret codes KF204, KF307, KF313, KF343: experiments name a real
team, environments, GPU type and image, fit the quota, and give unique Jobs."""
from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

from kflowgen.specs import quantity
from kflowgen.specs.hints import close
from kflowgen.diagnostics import error, warning
from kflowgen.specs.experiment import MAX_TRIALS, Experiment, Range, shell_syntax, split_arguments, sweep_size, trials
from kflowgen.targets.training import trial_name
from kflowgen.rules.gpus import misspelt
from kflowgen.rules.secrets import secret_looking
from kflowgen.rules.images import IMAGE_CODES, problems as image_problems

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF320": "experiment names a team that does not exist",
    "KF321": "experiment file path does not match its team and name, or two experiments share a name",
    "KF322": "experiment environment not defined, or the team has no quota there",
    "KF323": "experiment GPU type not defined in the platform file",
    "KF324": "one trial of an experiment does not fit the team's quota",
    "KF325": "a sweep's trials at once exceed the team's quota: trials will queue",
    "KF326": "sweep too large, empty range, or fewer distinct trials than asked",
    "KF327": "run is not a valid command line, uses shell syntax without shell: true, or splits the hyperparameters",
    "KF328": "two trials get the same Job name",
    "KF329": "TFJob is deprecated upstream",
    "KF345": "/dev/shm not below the pod's memory",
    "KF347": "an environment variable set both in env and in secrets",
}


class Part(NamedTuple):
    """What the rule finds in one experiment alone (part), apart from what it finds across experiments (across): a
    function of the experiment, its team's spec, the team names (for a team that does not exist) and the platform."""

    team: str
    name: str
    head: list  # KF321 of a path that does not match team and name: reported even when the name is taken
    rest: list  # its other findings, reported only when no experiment before it has its team and name
    jobs: list  # its trials' Job names, in trial order (none where the quota or the names cannot be checked)


def check(model, experiments: list[Experiment] | None = None, whole: bool = True):
    """Findings about these experiments (all by default); nothing else of the model is checked here (whole): each
    experiment's part, then what is wrong across them."""
    experiments = model.experiments if experiments is None else experiments
    teams = {t.name: t for t in model.teams}
    return across((exp.source, part(model, exp, teams)) for exp in experiments)


def across(parts):
    """The findings of experiments from their parts ((spec, Part), in model order): each experiment's own, KF321 for a
    team and name already taken (and nothing else of that experiment), KF328 for a Job name already taken."""
    seen: dict[tuple[str, str], str] = {}
    jobs: dict[tuple[str, str], str] = {}  # (team, Job name) -> spec path
    for src, found in parts:
        path = src.path
        yield from found.head
        if (found.team, found.name) in seen:
            yield error(path, src.at("/name"), "KF321", f"experiment '{found.name}' of team '{found.team}' is already "
                        f"defined in {seen[found.team, found.name]}", "give each experiment its own name")
            continue
        seen[found.team, found.name] = path
        yield from found.rest
        for name in found.jobs:
            if (found.team, name) in jobs:
                yield error(path, src.at("/sweep"), "KF328", f"two trials get the same Job name {name} "
                            f"(the other is in {jobs[found.team, name]})",
                            "each trial needs different values; '1' and 1 or a value listed twice give the same trial")
            jobs.setdefault((found.team, name), path)


def part(model, exp: Experiment, teams: dict) -> Part:
    """exp's Part; teams: {name: team} of the model."""
    src, path = exp.source, exp.source.path
    want = f"specs/experiments/{exp.team}/{exp.name}"
    head = []
    if path.rsplit(".", 1)[0] != want:
        head.append(error(path, src.at("/name"), "KF321", f"experiment '{exp.name}' of team '{exp.team}' is in "
                          f"{path}", f"move the file to {want}.yaml, or fix team and name"))
    jobs: list[str] = []
    return Part(exp.team, exp.name, head, list(_alone(model, exp, teams, jobs)), jobs)


def _alone(model, exp: Experiment, teams: dict, jobs: list[str]):
    """exp's findings but KF321 and KF328; its trials' Job names appended to jobs."""
    p = model.platform
    src, path = exp.source, exp.source.path
    if not exp.command:
        yield error(path, src.at("/run"), "KF327", f"run '{exp.run}' is not a command line",
                    "close every quote; a command is a program and its arguments, e.g. python train.py")
    elif not exp.shell and (syntax := shell_syntax(exp.run)):
        yield error(path, src.at("/run"), "KF327", f"run contains '{syntax}', which only a shell reads: without "
                    "one, the command would get it as a literal argument",
                    "add shell: true to run it with sh -c (hyperparameters still reach the command as arguments), "
                    "or write the command without it")
    elif exp.shell and (args := split_arguments(exp.run)):
        yield error(path, src.at("/run"), "KF327", f"run uses {args} where the hyperparameters must be \"$@\": "
                    "the shell would split their values at spaces and expand * in them",
                    'write "$@", with the double quotes')
    yield from secret_looking(exp.source, "/env", exp.env)
    for name in sorted(set(exp.env) & set(exp.secrets)):
        yield error(path, src.at(f"/secrets/{name}", key=True), "KF347", f"{name} is set both in env and in "
                    "secrets: the pod would get two values and Kubernetes keeps the last", f"remove {name} from "
                    "env or from secrets")
    if exp.shm and quantity.parse(exp.shm) >= quantity.parse(exp.memory):
        yield error(path, src.at("/shm"), "KF345", f"shm {exp.shm} is not below the pod's memory {exp.memory}: "
                    "/dev/shm is memory, and the training would have none left",
                    "lower shm, or raise resources.memory")
    for what, message, hint in image_problems(exp.image, p.registries) if exp.image else ():
        yield error(path, src.at("/image"), IMAGE_CODES[what], message,
                    hint + (", or leave image out for the team's notebook image" if what == "registry" else ""))
    if exp.workers > 1 and exp.framework == "tensorflow" and not p.trainer:  # on Trainer: KF350
        yield warning(path, src.at("/framework"), "KF329", "TFJob is deprecated upstream (Kubeflow Trainer v2 has "
                      "no TensorFlow runtime; Kueue no longer queues TFJobs by default)",
                      "use workers: 1 (a plain Job) or a PyTorchJob where you can")
    team = teams.get(exp.team)
    if team is None and exp.team not in model.unreadable:
        yield error(path, src.at("/team"), "KF320", f"team '{exp.team}' is not defined in specs/teams/",
                    f"{close(exp.team, teams)} (or add specs/teams/{exp.team}.yaml)")
    gpu_known = not exp.gpu_type or exp.gpu_type in p.gpu_types
    if not gpu_known:
        yield error(path, src.at("/resources/gpu/type"), "KF323",
                    f"GPU type '{exp.gpu_type}' is not defined in {p.source.path}", close(exp.gpu_type, p.gpu_types))
    sweep = list(_sweep(exp))
    yield from sweep
    for i, env in enumerate(exp.environments):
        if env not in p.environments:
            yield error(path, src.at(f"/environments/{i}"), "KF322", f"environment '{env}' is not defined in "
                        f"{p.source.path}", close(env, p.environments))
    if team is None or not gpu_known:
        return  # quota and Job names need the team and the GPU type
    if exp.archived:
        return  # nothing of it runs any more: no quota to fit, no Job to name
    runs = [] if sweep or not quantity.valid(exp.cpu, millicores=True) else trials(exp)  # KF204 says why not
    for i, env in enumerate(exp.environments):
        if env not in p.environments:
            continue
        elif env not in team.quota:  # (a position is looked up for a finding only: SpecFile.packed)
            yield error(path, src.at(f"/environments/{i}"), "KF322", f"team {team.name} has no quota in {env}",
                        f"add quota.{env} to {team.source.path}, or run in: {', '.join(team.quota)}")
        else:
            yield from _quota(exp, team.quota[env], env, len(runs), p.queueing_in(env) is not None,
                              misspelt(model, team.quota[env].gpu, exp.gpu_type))
    queued = bool(exp.environments) and p.queueing_in(exp.environments[0]) is not None  # as rendered there first
    jobs.extend(trial_name(exp, team, p, t, queued) for t in runs)


def _sweep(exp: Experiment):
    src, path = exp.source, exp.source.path
    if exp.grid and sweep_size(exp) > MAX_TRIALS:
        yield error(path, src.at("/sweep/grid"), "KF326", f"the grid has {sweep_size(exp)} trials, more than {MAX_TRIALS}",
                    "try fewer values, or a random sweep")
    if not exp.random:
        return
    ranges = [(name, _range_problem(r)) for name, r in exp.random.params.items() if isinstance(r, Range)]
    for name, (what, hint) in [(n, problem) for n, problem in ranges if problem]:
        yield error(path, src.at(f"/sweep/random/params/{name}"), "KF326", f"range of '{name}' {what}", hint)
    if not any(problem for _, problem in ranges) and (found := len(trials(exp))) < exp.random.trials:
        yield error(path, src.at("/sweep/random/trials"), "KF326", f"asks for {exp.random.trials} trials but the "
                    f"choices and whole-number ranges give only {found} different ones",
                    f"set trials: {found}, or add choices")


def _range_problem(r: Range) -> tuple[str, str] | None:
    if r.min >= r.max:
        return f"is empty: min {r.min} is not below max {r.max}", "make max larger than min"
    if r.log and r.min <= 0:
        return f"is on a log scale but starts at {r.min}", "a log scale needs min > 0"
    if r.integer and (r.min % 1 or r.max % 1):
        return f"is of whole numbers but has bounds {r.min} and {r.max}", "use whole numbers for min and max"
    return None


def _quota(exp: Experiment, q, env: str, n: int, queued: bool = False, misspelt_gpu: bool = False):
    """KF324 when one trial does not fit the quota; KF325 when the trials expected at once do not (where Kueue queues
    them, the waiting ones are suspended and their deadline has not started). misspelt_gpu: the quota lacks the GPU
    type because it misspells it (KF304 says so), so the GPUs are not checked."""
    src, path, w = exp.source, exp.source.path, exp.workers
    at_once = min(exp.parallelism or n, n)
    need = [("cpu", exp.cpu, quantity.parse(q.cpu), q.cpu, "/resources/cpu"),
            ("memory", exp.memory, quantity.parse(q.memory), q.memory, "/resources/memory")]
    if exp.gpu_type and not misspelt_gpu:
        have = q.gpu.get(exp.gpu_type, 0)
        need.append((exp.gpu_type, exp.gpu_count, Fraction(have), have, "/resources/gpu/count"))
    over = []
    for what, each, have, quota, at in need:
        one = quantity.parse(each) * w
        field = f"gpu.{what}" if what == exp.gpu_type else what
        shown = f"{_total(what, one)} {what} GPU(s)" if what == exp.gpu_type else f"{what} {_total(what, one)}"
        each = f"{w} workers x {each}" if w > 1 else f"{each}"
        if one > have:
            yield error(path, src.at(at), "KF324", f"one trial needs {shown}{f' ({each})' if w > 1 else ''} but team "
                        f"{exp.team}'s quota in {env} is {quota}",
                        f"lower resources, or raise quota.{env}.{field} in specs/teams/{exp.team}.yaml")
        elif one * at_once > have:
            over.append(f"{at_once} trials x {each} {what} = {_total(what, one * at_once)} {what} at once, "
                        f"team quota in {env} is {quota}")
    if over:
        yield warning(path, src.at("/parallelism" if exp.parallelism else "/sweep"), "KF325",
                      "; ".join(over) + ": trials will queue",
                      ("Kueue admits the others as running ones finish (a trial's deadline starts when it runs)"
                       if queued else "trials wait for running ones to finish (a deadline counts while they wait)")
                      + "; set parallelism to what fits to say you expect this, or ask for more quota")


def _total(what: str, amount: Fraction) -> str:
    if what == "memory":
        return f"{float(amount / 2**30):g}Gi"
    return str(amount.numerator) if amount.denominator == 1 else f"{float(amount):g}"

