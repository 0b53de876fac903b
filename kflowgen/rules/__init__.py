"""Checks across spec files: each rule is a small module with a check(model) generator, registered here."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable

from kflowgen import cache
from kflowgen.diagnostics import Diagnostic
from kflowgen.specs.loader import SpecFile
from kflowgen.specs.model import Model, specs_of
from kflowgen.rules import (
    capacity,
    distributed,
    environments,
    experiments,
    gpus,
    hub,
    images,
    names,
    network,
    paths,
    profiles,
    quantities,
    queueing,
    serving,
    storage,
    teams,
)

Rule = Callable[[Model], Iterable[Diagnostic]]

# name -> rule; each rule module declares the codes it owns in CODES, and its docstring names every code it reports
RULES: dict[str, Rule] = {
    "quantities": quantities.check,
    "team-names": teams.check,
    "unique-generated-names": names.check,
    "clean-paths": paths.check,
    "environments-exist": environments.check,
    "gpu-types-exist": gpus.check,
    "profiles-fit-quota": profiles.check,
    "gpu-capacity": capacity.check,
    "allowed-registries": images.check,
    "storage-quota": storage.check,
    "experiments": experiments.check,
    "served-models": lambda m: serving.check(m, m.served),  # (LOCAL knows it by this function)
    "hub-sign-in": hub.check,
    "network": network.check,
    "queueing": queueing.check,
    "distributed-training": distributed.check,
}


# Rules that check experiments team by team: rule(model, experiments, whole) finds what is wrong with those
# experiments, and with whole with the rest of the model; rule(model) checks everything. What such a rule finds in a
# team's experiments is a function of those experiments, the team's served models, the spec files of the team of
# that name (or, where there is none, whether its file did not load and which teams there are) and the platform
# file. checked() runs the rest of the model once and each team's experiments apart; a team of many experiments whose
# findings are not cached is checked in parts, each experiment apart from the others (PARTED), an experiment's parts
# cached under its file and what else they are a function of (_in_parts).
BY_TEAM = ("quantities", "clean-paths", "experiments", "queueing")


# Rules that look at each team's own specs apart from other teams': local(model, teams, served) finds what the rule
# finds in the team specs and the served models of one team name, a function of those specs, the platform file and,
# where no team spec has that name, whether one did not load and which teams there are; across(model) what it finds
# across teams (None: nothing). For quantities and clean-paths, which BY_TEAM checks in experiments: the team specs
# and served models (and the platform file).
# checked() runs each team's part apart, cached under exactly those inputs: a pull request to one team checks that
# team's specs again, not every team's.
LOCAL = {"served-models": (RULES["served-models"], serving.local, serving.across),
         "profiles-fit-quota": (profiles.check, profiles.local, None),
         "quantities": (quantities.check, quantities.local, None),
         "clean-paths": (paths.check, paths.local, paths.across)}


def run(model: Model, skip=()) -> list[Diagnostic]:
    """Every rule (but those named in skip), in registry order."""
    return [d for name, rule in RULES.items() if name not in skip for d in rule(model)]


def checked(model: Model, sources: list[SpecFile], store: cache.Cache, served: dict[str, list[str]] | None = None
            ) -> list[Diagnostic] | None:
    """run(model), cached. The rules read only the model, which is made from exactly these spec files (and the names
    of team files that did not load), so their findings are cached under all of those: the commands of one
    pull-request gate (validate, render --check, diff) run them once. When any spec changed, the rules of BY_TEAM
    check again only the teams whose inputs changed (a pull request to one team: that team's experiments).
    served: {team: "path:sha256" of each of its served models} for teams whose models the model does not hold (a
    gate in scope of a change to team specs: flow.scoped): their parts of LOCAL come from the cache, under those;
    None when one is not there (it cannot be made without them)."""
    k, found = recalled(model, sources, store, served)
    return found if found is not None else made(model, store, k, served)


def recalled(model: Model, sources: list[SpecFile], store: cache.Cache, served: dict[str, list[str]] | None = None
             ) -> tuple[str | None, list[Diagnostic] | None]:
    """checked's cache key for exactly these spec files (None when a spec has no sha256: not cached), and its
    findings when the cache holds them (counted as a hit or a miss); made(model, store, key) when it does not."""
    if not all(s.digest for s in sources):
        return None, None
    k = cache.key("rules", cache.code_digest(), len(sources), *sorted(f"{s.path}:{s.digest}" for s in sources),
                  *sorted(model.unreadable), *(["served", *(f"{t}:{r}" for t in sorted(served) for r in served[t])]
                                               if served is not None else []))
    hit = store.get("rules", k)
    return k, (_decoded(hit) if hit is not None else None)


def made(model: Model, store: cache.Cache, k: str | None, served: dict[str, list[str]] | None = None
         ) -> list[Diagnostic] | None:
    """What checked finds when the cache does not hold it under k (recalled's key), kept there."""
    if k is None:
        return run(model) if served is None else None
    local = _local(model, store, served)
    if local is None:
        return None
    found = run(model, skip=(*BY_TEAM, *LOCAL)) + _by_team(model, store) + local
    store.put("rules", k, _encoded(found))
    return found


def _local(model: Model, store: cache.Cache, served: dict[str, list[str]] | None = None) -> list[Diagnostic] | None:
    """The rules of LOCAL: what they find across teams, then each team name's part, cached under its inputs (see
    LOCAL) when every spec has a digest; quantities' part in the team specs and served models alone. served: see
    checked (None returned when such a team's part is not in the cache)."""
    if any(RULES[name] is not rule for name, (rule, _, _) in LOCAL.items()):  # a rule replaced (a test's spy)
        return None if served is not None else [
            d for name in LOCAL for d in (RULES[name](model, [], True) if name in BY_TEAM else RULES[name](model))]
    out = [d for _, _, across in LOCAL.values() if across for d in across(model)]
    named: dict[str, list] = {}
    for t in model.teams:
        named.setdefault(t.name, []).append(t)
    specs = specs_of(model.served)
    every = sorted(named)
    p = model.platform
    keep = bool(p.source.digest) and all(t.source.digest for t in model.teams) and all(s.digest for s in specs)
    given = served or {}
    keyed = cache.keyed("rules", "local", *LOCAL, cache.code_digest(), f"{p.source.path}:{p.source.digest}")
    memo = cache.Memo(store, "rules", *LOCAL, "local")  # team's key -> how many findings (kept apart when any)
    for team in sorted({*named, *(s.top("team") for s in specs)}):
        teams, at = named.get(team, []), model.members(team)[0]
        k = None
        if keep:
            context = (team, *([f"{t.source.path}:{t.source.digest}" for t in teams] if teams
                                else ["no team", team in model.unreadable, *every]))
            k = keyed(*context, "served", *(given[team] if team in given else
                                            (f"{specs[i].path}:{specs[i].digest}" for i in at)))
            hit = _recalled(memo, store, k)
            if hit is not None:
                out += hit
                continue
        if team in given:
            return None  # (its models are not here to check)
        found = [d for _, local, _ in LOCAL.values() for d in local(model, teams, [model.served[i] for i in at])]
        if k is not None:
            _kept(memo, store, k, found)
        out += found
    memo.save()
    return out


def _by_team(model: Model, store: cache.Cache) -> list[Diagnostic]:
    """The rules of BY_TEAM: on the rest of the model once, then on each team's experiments (those that name it, in
    model order), a team's findings cached under exactly what they are a function of. Where a team's experiments
    are not together in model order, the rules run on them all at once. A team whose findings are not in the cache
    is checked in parts (_in_parts): only its experiments that changed."""
    rules = [RULES[name] for name in BY_TEAM]
    out = [d for name in BY_TEAM if name not in LOCAL for d in RULES[name](model, [], True)]  # (see _local)
    specs = specs_of(model.experiments)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        team = s.top("team")  # without decoding the rest of a spec from the cache
        if team in groups and groups[team][-1] != i - 1:
            return out + [d for rule in rules for d in rule(model, model.experiments, False)]
        groups.setdefault(team, []).append(i)
    p = model.platform
    platform = f"{p.source.path}:{p.source.digest}"
    keyed = cache.keyed("rules", *BY_TEAM, cache.code_digest(), platform)
    keyed_parts = cache.keyed("rules", "parts", *BY_TEAM, cache.code_digest(), platform)
    named: dict[str, list[str]] = {}
    for t in model.teams:
        named.setdefault(t.name, []).append(f"{t.source.path}:{t.source.digest}")
    served: dict[str, list[str]] = {}
    for s in specs_of(model.served):
        served.setdefault(s.top("team"), []).append(f"{s.path}:{s.digest}")
    every = sorted(named)
    teams = {t.name: t for t in model.teams}
    parted = all(rule in PARTED for rule in rules)  # else a rule was replaced (a test's spy): run teams whole
    memo = cache.Memo(store, "rules", *BY_TEAM, "by team")  # team's key -> how many findings (kept apart when any)
    for team, members in groups.items():
        own = named.get(team)
        # what a team's findings are a function of besides its experiments: the served models for queueing's KF349
        context = (team, *(own or ["no team", team in model.unreadable, *every]), "served", *served.get(team, []))
        k = keyed(*context, "experiments", *(f"{specs[i].path}:{specs[i].digest}" for i in members))
        hit = _recalled(memo, store, k)
        if hit is not None:
            out += hit
            continue
        found = None
        if parted and len(members) >= PARTS_FROM:
            found = _in_parts(model, store, keyed_parts(*context), [(i, specs[i]) for i in members], teams)
        if found is None:
            group = [model.experiments[i] for i in members]
            found = [d for rule in rules for d in rule(model, group, False)]
        _kept(memo, store, k, found)
        out += found
    memo.save()
    return out


def _recalled(memo: cache.Memo, store: cache.Cache, k: str) -> list[Diagnostic] | None:
    """The findings kept under k (none, when the memo says 0: no entry of their own), or None when not kept."""
    known = memo.get(k)
    if known == "0":
        return []
    hit = None if known is None else store.get("rules", k)
    return None if hit is None else _decoded(hit)


def _kept(memo: cache.Memo, store: cache.Cache, k: str, found: list[Diagnostic]) -> None:
    """Keep found under k: how many in the memo, and the findings in an entry of their own when there are any."""
    if found:
        store.put("rules", k, _encoded(found))
    memo.put(k, str(len(found)))


# The rules of BY_TEAM by how they split into what each experiment alone gives (its part) and what is found across
# a team's experiments: the experiments rule (experiments.part and experiments.across: KF321 for a name taken twice,
# KF328 for a Job name taken twice), and the rules that look at one experiment at a time (an experiment's part: its
# findings, those of the rule on the experiments whose path they name).
PARTED = {experiments.check: (experiments.part, experiments.across), quantities.check: None, paths.check: None,
          queueing.check: None}
# Teams of at least this many experiments are checked in parts, their parts kept in the cache; smaller ones whole.
# A team's entry of parts costs a file written on every run that checks the team (0.3-0.5 ms) and 4 KB of disk,
# and a team of fewer experiments is checked whole in under 5 ms: measured at 1,000 teams of 10 experiments, parts
# for every team made a cold validate 0.25-0.5 s slower (of 22-29 s) and its cache 4 MB larger (1,000 entries), for
# nothing a gate would notice; at 5,000 experiments in a team they make a one-experiment change cost 0.07 s instead
# of 0.6 s.
PARTS_FROM = 50


def _in_parts(model: Model, store: cache.Cache, k: str, members: list[tuple[int, SpecFile]],
              teams: dict) -> list[Diagnostic] | None:
    """The findings of the rules of BY_TEAM in a team's experiments (members: their positions in model order and
    their specs) from each experiment's parts, one per rule: those of an experiment whose path and sha256 are in the
    team's entry of parts (k: its context, see _by_team) come from there, without making the Experiment object; the
    others' are made, and the entry is then written again with the parts of the team's experiments now. None when a
    rule said to look at one experiment at a time reports on another file."""
    refs = [f"{s.path}:{s.digest}" for _, s in members]
    keep = store.folder is not None and all(s.digest for _, s in members)  # a spec made in a test has no digest
    rows, parts = _recall_parts(store, k) if keep else ({}, {})
    todo = [(i, ref) for (i, _), ref in zip(members, refs) if ref not in parts]
    made = _parts(model, [model.experiments[i] for i, _ in todo], teams)
    if made is None:
        return None
    parts.update(zip((ref for _, ref in todo), made))
    found: list[Diagnostic] = []
    for r, rule in enumerate(BY_TEAM):
        split = PARTED[RULES[rule]]
        if split is None:
            found += [d for ref in refs for d in parts[ref][r]]
        else:
            found += split[1]((s, parts[ref][r]) for (_, s), ref in zip(members, refs))
    if keep and todo:
        store.put("rules", k, json.dumps({ref: rows[ref] if ref in rows else _part_row(parts[ref]) for ref in refs},
                                         separators=(",", ":")).encode("utf-8"))
    return found


def _parts(model: Model, exps: list, teams: dict) -> list[list] | None:
    """Each experiment's parts, one per rule of BY_TEAM (see PARTED); None as _in_parts says."""
    out: list[list] = [[] for _ in exps]
    at = {e.source.path: n for n, e in enumerate(exps)}
    for rule in BY_TEAM:
        check = RULES[rule]
        split = PARTED[check]
        if split is not None:
            for n, e in enumerate(exps):
                out[n].append(split[0](model, e, teams))
            continue
        for part in out:
            part.append([])
        for d in check(model, exps, False) if exps else ():
            if d.path not in at:
                return None
            out[at[d.path]][-1].append(d)
    return out


def _part_row(parts: list) -> list:
    """An experiment's parts as JSON values: findings as lists of their fields, experiments.Part as a list."""
    return [[p.team, p.name, _rows(p.head), _rows(p.rest), p.jobs] if isinstance(p, experiments.Part) else _rows(p)
            for p in parts]


def _rows(found: list[Diagnostic]) -> list:
    return [[d.path, d.line, d.col, d.code, d.message, d.severity, d.hint] for d in found]


def _recall_parts(store: cache.Cache, k: str) -> tuple[dict[str, list], dict[str, list]]:
    """A team's entry as {path:sha256 of an experiment: its parts as _part_row wrote them} and {the same: its parts};
    an entry of another shape gives none (not used)."""
    body = store.lookup("rules", k)
    try:
        rows = json.loads(body) if body else {}
    except ValueError:
        return {}, {}
    if type(rows) is not dict:
        return {}, {}
    out = {}
    for ref, row in rows.items():
        parts = _part_of(row)
        if parts is None:
            return {}, {}
        out[ref] = parts
    return rows, out


def _part_of(row) -> list | None:
    """_part_row's parts again, or None for a row of another shape."""
    if type(row) is not list or len(row) != len(BY_TEAM):
        return None
    parts = []
    for name, p in zip(BY_TEAM, row):
        if name != "experiments":
            found = _found(p)
        elif type(p) is list and len(p) == 5 and type(p[0]) is str and type(p[1]) is str and type(p[4]) is list \
                and all(type(j) is str for j in p[4]):
            head, rest = _found(p[2]), _found(p[3])
            found = None if head is None or rest is None else experiments.Part(p[0], p[1], head, rest, p[4])
        else:
            found = None
        if found is None:
            return None
        parts.append(found)
    return parts


def _found(rows) -> list[Diagnostic] | None:
    if type(rows) is not list:
        return None
    out = []
    for d in rows:
        if type(d) is not list or len(d) != 7 or type(d[1]) is not int or type(d[2]) is not int \
                or not all(type(d[j]) is str for j in (0, 3, 4, 5, 6)):
            return None
        out.append(Diagnostic(*d))
    return out


def _encoded(found: list[Diagnostic]) -> bytes:
    return json.dumps([dataclasses.astuple(d) for d in found]).encode("utf-8")


def _decoded(body: bytes) -> list[Diagnostic]:
    return [Diagnostic(*d) for d in json.loads(body)]
