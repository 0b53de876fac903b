"""Experiment specs, typed: the values a data scientist wrote (spelled as written, for the command line), the trials
a sweep expands to, and what the command line says to a shell."""
from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
import shlex
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext

from kflowgen.specs.loader import SpecFile, pointer
from kflowgen.specs.quantity import seconds

EXPERIMENTS = "specs/experiments"
MAX_TRIALS = 256
DIGITS = 4  # significant digits of a randomly drawn number


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
    archived: bool = False  # done: no Job is rendered any more; the spec stays as the record of what ran


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
    return Experiment(
        source=spec, team=d["team"], name=d["name"], description=d.get("description", ""), run=d["run"],
        command=command, workdir=d.get("workdir", ""), hyperparameters=scalars(["hyperparameters"], d.get("hyperparameters", {})),
        arg_style=d.get("argStyle", "hydra"), grid=grid, random=rnd, parallelism=d.get("parallelism"),
        cpu=res["cpu"], memory=res["memory"], gpu_type=gpu["type"] if gpu else None, gpu_count=gpu["count"] if gpu else 0,
        environments=tuple(d["environments"]), retries=d.get("retries", 0),
        deadline=seconds(d.get("deadline")), image=d.get("image"),
        env=scalars(["env"], d.get("env", {})), workers=d.get("workers", 1), framework=d.get("framework", "pytorch"),
        shell=bool(d.get("shell", False)), shm=d.get("shm"),
        secrets={k: (v["secret"], v["key"]) for k, v in sorted(d.get("secrets", {}).items())},
        archived=bool(d.get("archived", False)))


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


ALL_ARGUMENTS = re.compile(r'"\$(@|\{@\})"')
ANY_ARGUMENTS = re.compile(r"\$(\{[@*#]?[@*]\}|[@*])")


def unquoted(run: str) -> str:
    """run with every single-quoted part blanked: the shell expands nothing in it, so a "$@" there is literal text.
    A backslash outside single quotes keeps the next character from opening or closing a quote, as in sh."""
    out, quote, i = [], None, 0
    while i < len(run):
        c = run[i]
        if quote == "'":
            quote = None if c == "'" else quote
            out.append(" ")
        elif c == "\\" and i + 1 < len(run):
            out.append(" ")  # an escaped character is never part of "$@"
            out.append(" ")
            i += 1
        elif c == quote:
            quote = None
            out.append(c)
        elif quote is None and c in "'\"":
            quote = c
            out.append(" " if c == "'" else c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def passes_arguments(run: str) -> bool:
    """With shell: run says "$@" where the shell expands it (not inside single quotes)."""
    return bool(ALL_ARGUMENTS.search(unquoted(run)))


def split_arguments(run: str) -> str | None:
    """With shell: the first $@ or $* that is not "$@": unquoted, the shell would split the values at spaces and
    expand * and ?; "$*" would join them into one. None if there is none."""
    rest = ALL_ARGUMENTS.sub("", unquoted(run))
    found = ANY_ARGUMENTS.search(rest)
    return found.group(0) if found else None

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
