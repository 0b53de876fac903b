"""`kflowgen import determined`: a Determined AI experiment config becomes a kflowgen experiment spec, and every
field that does not carry over is said in words."""
from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import yaml

from kflowgen.diagnostics import Diagnostic, Report, error
from kflowgen.flow.load import load
from kflowgen.flow.scaffold import experiment_home
from kflowgen.options import Options
from kflowgen.rules.images import problems
from kflowgen.specs.loader import SpecFile, load_text, pointer

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF706": "Determined config that `import determined` cannot turn into an experiment",
    "KF707": "`import determined` cannot choose the team or GPU type on its own",
}

SEARCHERS = ("single", "grid", "random", "adaptive_asha")
RANGES = ("int", "double", "log")
MAX_TRIALS = 256  # the experiment schema's limit
# Determined fields with no kflowgen equivalent, and why (top level, then searcher, resources and environment keys)
DROPPED = {
    "bind_mounts": "the team NAS is mounted at {mount} in every trial: put the data there",
    "checkpoint_storage": "kflowgen keeps no checkpoints for you: write them on the team NAS, e.g. under "
                          "out/$KFLOWGEN_TRIAL",
    "records_per_epoch": "kflowgen does not count training length: your script stops when it is done",
    "min_validation_period": "your script validates when it chooses; no harness schedules it",
    "min_checkpoint_period": "your script checkpoints when it chooses; no harness schedules it",
    "resource_pool": "kflowgen places trials by GPU type, on the nodes the platform gives that type",
    "metric": "kflowgen reads no metrics and runs every trial: compare trials where your script reports them "
              "(e.g. MLflow)",
    "max_length": "kflowgen does not count training length: pass it as a hyperparameter your script reads",
    "max_time": "kflowgen does not count training length: pass it as a hyperparameter your script reads",
}
SEEN = {"name", "description", "entrypoint", "hyperparameters", "searcher", "resources", "environment",
        "max_restarts", "reproducibility", "/searcher/name", "/searcher/max_trials", "/searcher/max_concurrent_trials",
        "/searcher/smaller_is_better", "/resources/slots_per_trial", "/environment/image",
        "/environment/environment_variables"}


def _value_at(data: dict, parts: list[str]):
    value = data.get(parts[0])
    return value if len(parts) == 1 else value.get(parts[1]) if isinstance(value, dict) else None


def _slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return (name if name[:1].isalpha() else f"exp-{name}")[:40].rstrip("-")


def _number(x: float):
    if not -1e15 <= x <= 1e15:  # the experiment schema's limit
        raise OverflowError(x)
    return int(x) if float(x).is_integer() else float(f"{x:.4g}")


def _params(hps, prefix: str = "", path: tuple = ("hyperparameters",)):
    """(name, JSON pointer parts, value) of every hyperparameter; nested ones are named outer.inner."""
    for key, value in hps.items():
        if isinstance(value, dict) and "type" not in value:
            yield from _params(value, f"{prefix}{key}.", (*path, key))
        else:
            yield f"{prefix}{key}", (*path, key), value


def _grid(hp: dict) -> list:
    """The values Determined's grid searcher tries: count of them, evenly spaced (in the exponent for log)."""
    lo, hi, count = hp["minval"], hp["maxval"], hp["count"]
    if hp["type"] == "int" and count > hi - lo:
        return list(range(int(lo), int(hi) + 1))
    steps = [lo + (hi - lo) * i / (count - 1) for i in range(count)] if count > 1 else [lo]
    if hp["type"] == "int":
        return sorted({round(s) for s in steps})
    return [_number(float(hp.get("base", 10)) ** s if hp["type"] == "log" else s) for s in steps]


def _range(hp: dict) -> dict:
    if hp["type"] == "log":
        base = float(hp.get("base", 10))
        return {"min": _number(base ** hp["minval"]), "max": _number(base ** hp["maxval"]), "log": True}
    return {"min": _number(hp["minval"]), "max": _number(hp["maxval"]), **({"integer": True} if hp["type"] == "int"
                                                                         else {})}


def _hyperparameters(spec: SpecFile, searcher: str, say, bad) -> tuple[dict, dict]:
    """(constants, values to sweep: a list of choices, or a range for the random searcher)."""
    constants, swept = {}, {}
    hps = spec.data.get("hyperparameters") or {}
    for name, parts, hp in _params(hps if isinstance(hps, dict) else {}):
        where = pointer(parts)
        kind = hp.get("type") if isinstance(hp, dict) else None
        if isinstance(hp, (str, int, float, bool)) or kind == "const" and isinstance(hp.get("val"), (str, int, float)):
            constants[name] = hp["val"] if isinstance(hp, dict) else hp
        elif kind == "categorical" and isinstance(hp.get("vals"), list) and hp["vals"]:
            vals = [v for v in hp["vals"] if isinstance(v, (str, int, float, bool))]
            if len(vals) < len(hp["vals"]):
                say(where, f"hyperparameter {name}: only its text, number and true/false values carried over")
            swept[name] = list(dict.fromkeys(vals))
        elif kind in RANGES:
            wanted = ("minval", "maxval", *(["count"] if searcher == "grid" else []), *(["base"] if "base" in hp else []))
            missing = [k for k in wanted if not isinstance(hp.get(k), int if k == "count" else (int, float))
                       or isinstance(hp.get(k), bool)]
            try:
                if missing or not hp["minval"] <= hp["maxval"] or not 0 < hp.get("base", 10) or searcher == "grid" \
                        and not 0 < hp["count"] <= MAX_TRIALS:
                    raise ValueError
                swept[name] = _grid(hp) if searcher == "grid" else _range(hp)
            except (ValueError, OverflowError):
                bad(where, f"hyperparameter {name} of type {kind} needs a number for {', '.join(missing)}" if missing
                    else f"hyperparameter {name}: minval above maxval, base not above 0, a count not from 1 to "
                    f"{MAX_TRIALS}, or values too large",
                    "for the grid searcher: minval, maxval and count (how many evenly spaced values to try)"
                    if searcher == "grid" else "give minval and maxval")
        elif kind is not None and kind not in ("const", "categorical"):
            bad(f"{where}/type", f"hyperparameter {name} has type '{kind}', which Determined does not have",
                "use const, int, double, log or categorical")
        else:
            say(where, f"hyperparameter {name}: not carried over: kflowgen passes text, numbers and true/false")
    return constants, swept


def _run(spec: SpecFile, say, bad) -> str:
    entry = spec.data.get("entrypoint")
    if isinstance(entry, list) and all(isinstance(e, str) for e in entry):
        entry = shlex.join(entry)
    if not isinstance(entry, str) or not entry.strip():
        bad("/entrypoint", "no entrypoint: kflowgen needs the command that trains",
            "entrypoint: python3 train.py")
        return ""
    launcher = re.match(r"python3? -m determined\.launch\.\S+(\s+--?\S+)*\s+", entry)
    if launcher:
        say("/entrypoint", f"entrypoint: Determined's launcher '{launcher.group(0).strip()}' was dropped; kflowgen "
            "starts the command itself (workers > 1: a distributed run, start it with torchrun)")
        entry = entry[launcher.end():]
    trial = re.fullmatch(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)", entry.strip())
    if trial:
        say("/entrypoint", f"entrypoint {entry.strip()} is a Trial class, which only Determined's harness runs: run "
            f"is `python -m {trial.group(1)}`; give that module a main that trains")
        return f"python -m {trial.group(1)}"
    return entry.strip()


def _gpu(spec: SpecFile, platform: dict, gpu_type: str | None, bad) -> tuple[str | None, int]:
    """(GPU type, slots) from resources.slots_per_trial (Determined's default: 1)."""
    resources = spec.data.get("resources") if isinstance(spec.data.get("resources"), dict) else {}
    slots = resources.get("slots_per_trial", 1)
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 0:
        bad("/resources/slots_per_trial", f"slots_per_trial '{slots}' is not a number of GPUs", "write 0, 1, 2, ...")
        return None, 0
    types = list(platform.get("gpuTypes") or {})
    if slots == 0:
        return None, 0
    if gpu_type in types or gpu_type is None and len(types) == 1:
        return gpu_type or types[0], slots
    asked = f"--gpu-type {gpu_type} is not a GPU type of the platform" if gpu_type else (
        f"slots_per_trial {slots} asks for GPUs{'' if 'slots_per_trial' in resources else ' (Determined default)'} "
        "and the platform has " + ("no GPU types" if not types else "several GPU types"))
    bad("/resources/slots_per_trial", asked, f"choose one with --gpu-type: {', '.join(types)}" if types else
        "set resources.slots_per_trial: 0 for a CPU-only experiment", "KF707")
    return None, 0


def _choose(value, gpu: bool):
    """environment.image or environment_variables: one value, or one per device type (cpu, cuda, rocm)."""
    return value.get("cuda" if gpu else "cpu") if isinstance(value, dict) else value


def import_determined(root: Path, config: Path, team: str | None = None, name: str | None = None,
                      gpu_type: str | None = None) -> tuple[list[str], Report]:
    """Write specs/experiments/TEAM/NAME.yaml from a Determined experiment config: (notes in words on what did not
    carry over, the report). The written spec is validated with the rest of the repository; kept when it fails."""
    where = str(config)
    try:
        text = config.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], Report([error(where, (0, 0), "KF101", f"cannot read the Determined config: "
                                f"{getattr(e, 'strerror', None) or e}", "give the path of its .yaml file")])
    spec, diags = load_text(text, where)
    if spec is None:
        return [], Report(diags)
    notes: list[tuple[tuple[int, int], str]] = []
    errors: list[Diagnostic] = []

    def say(ptr: str, message: str) -> None:
        notes.append((spec.at(ptr, key=True), message))

    def bad(ptr: str, message: str, fix: str, code: str = "KF706") -> None:
        errors.append(error(where, spec.at(ptr), code, message, fix))

    data = spec.data
    teams = sorted(p.stem for p in (root / "specs" / "teams").glob("*.yaml"))
    if team is None and len(teams) != 1:
        return [], Report([error(where, (0, 0), "KF707", "which team runs it? the repository has "
                                + (f"{len(teams)} teams" if teams else "no team"), f"give --team: {', '.join(teams)}")])
    team = team or teams[0]
    name = name or _slug(data.get("name") or config.stem)
    if data.get("name") and name != data["name"]:
        say("/name", f"name '{data['name']}' is '{name}' here: kflowgen names are lower-case letters, digits and '-'")
    rel, platform, quota, diags = experiment_home(root, team, name)
    if diags:
        return [], Report(diags)
    for key in ("hyperparameters", "searcher", "resources", "environment", "reproducibility"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            bad(f"/{key}", f"{key} is not a mapping", f"write {key} as field: value lines, as Determined does")
    searcher = data.get("searcher") if isinstance(data.get("searcher"), dict) else {}
    method = searcher.get("name", "single")
    if method not in SEARCHERS:
        bad("/searcher/name", f"searcher '{method}' has no kflowgen equivalent",
            "use single, grid, random or adaptive_asha (imported as a random sweep)")
    constants, swept = _hyperparameters(spec, method, say, bad)
    run = _run(spec, say, bad)
    kind, slots = _gpu(spec, platform, gpu_type, bad)
    if errors:
        return [], Report(errors)

    out: dict = {"team": team, "name": name}
    if isinstance(data.get("description"), str):
        out["description"] = data["description"][:1000]
    out["run"] = run
    if re.search(r"[|&;<>$`]", run):
        out["shell"] = True
    out["workdir"] = f"projects/{name}"
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    image = _choose(environment.get("image"), slots > 0)
    if isinstance(image, str):
        why = problems(image, platform.get("registries") or [])
        if why:
            say("/environment/image", f"environment.image: not carried over: {why[0][1]}; the team's notebook image "
                "runs the trials (push yours to an allowed registry and set image:)")
        else:
            out["image"] = image
    if constants:
        out["hyperparameters"] = constants
    trials = 1
    if swept and method == "grid":
        out["sweep"] = {"grid": swept}
        trials = math.prod(len(v) for v in swept.values())
    elif swept:
        trials = 1 if method == "single" else searcher.get("max_trials")
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
            return [], Report([error(where, spec.at("/searcher"), "KF706", f"searcher {method} without max_trials",
                                    "add max_trials: how many trials to draw")])
        if trials > MAX_TRIALS:
            say("/searcher/max_trials", f"searcher.max_trials {trials} is {MAX_TRIALS} here, kflowgen's most trials "
                "in one experiment")
            trials = MAX_TRIALS
        seed = (data.get("reproducibility") or {}).get("experiment_seed", 0) if isinstance(
            data.get("reproducibility"), dict) else 0
        out["sweep"] = {"random": {"seed": seed if isinstance(seed, int) and seed >= 0 else 0, "trials": trials,
                                   "params": swept}}
        if method == "single":
            say("/searcher/name", "searcher single with ranged hyperparameters: one trial drawn at random, as "
                "Determined does")
    if method == "adaptive_asha":
        say("/searcher/name", f"searcher adaptive_asha: kflowgen runs every trial to the end, with no early "
            f"stopping: written as a random sweep of {trials} trials (max_trials); budget that many full runs")
    concurrent = searcher.get("max_concurrent_trials")
    if "sweep" in out and isinstance(concurrent, int) and 0 < concurrent < trials:
        out["parallelism"] = concurrent
    per_pod = max(d for d in range(1, 9) if slots % d == 0) if slots > 8 else slots
    out["resources"] = {"cpu": 4, "memory": "16Gi", **({"gpu": {"type": kind, "count": per_pod}} if kind else {})}
    if slots > per_pod:
        out["workers"] = slots // per_pod
        say("/resources/slots_per_trial", f"slots_per_trial {slots}: {slots // per_pod} workers of {per_pod} GPUs "
            "(a distributed run of that many machines; kflowgen puts at most 8 GPUs in one pod)")
    env = next((e for e, q in quota.items() if kind and kind in ((q or {}).get("gpu") or {})), None)
    out["environments"] = [env or next(iter(quota), "dev")]
    restarts = data.get("max_restarts")
    if isinstance(restarts, int) and not isinstance(restarts, bool) and restarts > 0:
        out["retries"] = min(restarts, 100)
    variables = _choose(environment.get("environment_variables"), slots > 0)
    pairs = [v.partition("=") for v in variables if isinstance(v, str)] if isinstance(variables, list) else []
    if pairs:
        out["env"] = {k: v for k, _, v in pairs}

    for ptr in spec.values:
        parts = ptr.split("/")[1:]
        if len(parts) == 1 and parts[0] not in SEEN or len(parts) == 2 and parts[0] in (
                "searcher", "resources", "environment") and ptr not in SEEN:
            why = DROPPED.get(parts[-1], "no kflowgen equivalent").format(
                mount=(platform.get("storage") or {}).get("mountPath", "/workspace"))
            shown = yaml.safe_dump(_value_at(data, parts), default_flow_style=True, width=1000).strip()
            shown = f" {shown.removesuffix(chr(10) + '...')}" if len(shown) < 60 else ""
            say(ptr, f"{'.'.join(parts)}{shown}: not carried over: {why}")
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(
        f"# yaml-language-server: $schema=../../../schemas/experiment.schema.json\n# Experiment {name} of team {team}, "
        f"imported from the Determined config {config.name}.\n# `kflowgen explain {rel}` says what it becomes.\n"
        + yaml.safe_dump(out, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True))
    _, found = load(Options.at(root))
    rep = Report([d for d in found if d.path == rel])
    rep.summary.append(f"wrote {rel}, which does not validate yet: fix what is listed above" if rep.errors else
                       f"wrote {rel}: copy your code to its workdir on the team NAS (hyperparameters reach your "
                       f"command as key=value arguments), check cpu and memory, then run `kflowgen explain {rel}` "
                       "and `kflowgen validate`")
    return [f"{where}:{line}:{col}: {text}" for (line, col), text in sorted(notes)], rep
