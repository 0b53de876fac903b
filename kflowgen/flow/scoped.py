"""The gate of a pull request that changes only some teams' experiments and spec files (and their generated files),
judged in scope: the platform, every team spec and those teams' experiments and models are loaded from HEAD, their
units rendered, their folders and every file those units write checked for drift, their overlays built and checked;
everything else is taken from the base, which main's validate kept (its side and facts, flow.side) and main's render
--check found to render exactly (scope.clean). A team spec's change is judged in scope when the team, alone, makes the
same shared files and policies' context as it was (a quota; not its people, profiles or environments: _stays); what
is found in the platform file and every team spec is then found again. The result is the whole gate's, to the byte
(tests/test_scoped_gate.py compares them); any case this does not cover gives None, and the whole gate runs. A
change to experiments of teams of many (and to what they render) is judged experiment by experiment first
(flow.within), in a repository of any number of teams."""
from __future__ import annotations

import hashlib
from pathlib import Path

from kflowgen import ahead, cache, rules, survey
from kflowgen.build import Built, build, overlays_of
from kflowgen.checks import codeowners, policy, verify
from kflowgen.checks.policy import Context
from kflowgen.diagnostics import Diagnostic, Report
from kflowgen.flow import diff, gitref, scope as scopes, within
from kflowgen.flow.side import Facts, Gone, Side, facts, kustomize_id, named, recall
from kflowgen.options import Options
from kflowgen.report import summary
from kflowgen.specs import layout, read
from kflowgen.specs.experiment import EXPERIMENTS
from kflowgen.specs.model import Model, Platform, Team, specs_of
from kflowgen.specs.read import Snapshot
from kflowgen.specs.discover import PLATFORM
from kflowgen.specs.served import MODELS
from kflowgen.targets.cached import render_cached
from kflowgen.targets import shared_unit, units
from kflowgen.targets.emit import is_generated
from kflowgen.write import writer
from kflowgen.write.departures import CODES as DEPARTURES, offboarding

# A gate in scope saves recalling every other team and costs asking git more (the work tree's status, the scope's
# folders listed): with fewer other teams than this, the whole gate is as fast or faster (a repository of one team of
# 5,000 experiments: 0.39 to 0.40 s whole against 0.48 to 0.52 s in scope; of 300 teams: 0.33 to 0.40 s against
# 0.33 to 0.36 s; of 1,000 teams: 0.65 to 0.85 s against 0.53 to 0.57 s; see docs/speed.md)
SCOPED_FROM = 200
# Findings whose inputs span every team: a gate in scope cannot tell them from the teams it loads (a model's host or
# callers, KF344; the platform file's warning naming every team's distributed experiments of a legacy kind, KF351),
# and of those, the ones the experiments of a change can make (see _found)
ACROSS_TEAMS, OF_EXPERIMENTS = {"KF344", "KF351"}, {"KF351"}


def gate(opts: Options, base: str, listing: list | None = None) -> tuple[Report, diff.DiffReport | None] | None:
    """The gate's report and diff, judged in scope; None when this change is not one a gate in scope covers (timed
    as the stage "scope": what finding that out cost, whichever gate then runs). listing: git's listing of the base
    the whole gate reads (gitref.started), stopped once the change is found to be in scope (and started again,
    in place, when it then goes whole)."""
    status: list = []
    judged = None
    try:
        judged = _in_scope(opts, base, status, [] if listing is None else listing)
    finally:  # (git's listings, not wanted when the gate is not judged in scope, are stopped, not waited for)
        (survey.finish if judged is not None else survey.stop)(status)
    if judged is None and listing == []:
        listing += gitref.started(opts.root, base)
    return judged


def _in_scope(opts: Options, base: str, status: list, listing: list) -> tuple[Report, diff.DiffReport | None] | None:
    root, store = opts.root, opts.store
    with opts.timed("scope"):
        if store.folder is None:
            return None
        builder = kustomize_id(root)
        commit = None if gitref.option_like(base) else gitref.commit_of(root, base)
        head = gitref.commit_of(root, "HEAD")  # (resolved once: every question below is of these two commits)
        trees = gitref.trees_at(root, commit, (*gitref.FOLDERS, "overlays")) if commit and head else None
        if builder is None or not trees \
                or not scopes.clean(store, trees.get("specs", ""), trees.get("overlays", "")):
            return None
        k = named(store, builder, {f: trees[f] for f in gitref.FOLDERS if f in trees})
        changes = (scopes.committed(root, commit, head) or {}) if k else {}
        teams, envs, specs = scopes.touched(changes)
        others = (gitref.ls_tree(root, head, [scopes.TEAMS], "-r", "--name-only") or b"").count(b"\0") - len(teams)
        few = others < SCOPED_FROM
        # (main's side, recalled here only to ask whether a change beside few teams is to big teams' experiments,
        # judged experiment by experiment: flow.within; else after git's status started, beside it: 0.4 s at 10,000
        # teams)
        old = recall(store, k) if teams and not specs and few else None
        big = old is not None and within.big(old, teams)
        if not teams or few and not big:
            return None
        # (the base comes from main's side: its listing, started for the whole gate, would only take a core)
        survey.stop(listing)
        listing.clear()
        # whether the work tree is HEAD's (git stats every file: 2 s at 10,000 teams, 3.1 s of CPU, mostly the
        # kernel's) is asked now, beside all the gate in scope does, and read last (_scoped); at the same
        # priority as this process: it is what the gate waits for longest
        status += scopes.status(root, behind=False)
    ahead.drop(opts.early, root, True)  # (the specs are read from git)
    return _scoped(opts, base, (commit, head), (teams, specs), (envs, changes), k, status, old, (big, few))


def _scoped(opts: Options, base: str, commits: tuple[str, str], touched: tuple[set[str], set[str]],
            changed_in: tuple[set[str], dict], k: str, status: list, old: Side | None, sizes: tuple[bool, bool]
            ) -> tuple[Report, diff.DiffReport | None] | None:
    root, store, (teams, changed), (envs, changes), (big, few) = opts.root, opts.store, touched, changed_in, sizes
    with opts.timed("base"):
        old, known = old or recall(store, k), facts(store, k)
    if old is None or known is None or any(d.code in ACROSS_TEAMS for d in known.warnings):
        return None  # (a side a diff made from git: no validate of the base found what the whole gate would)
    if big or not few and not changed and within.big(old, teams):  # (experiment by experiment, else by the team)
        judged = within.judge(opts, base, commits, teams, changes, old, known,
                              lambda specs: _found(opts, specs, teams, set(), known))
        if judged is not None:
            return _worktree(root, commits[1], status, judged)
    if few:  # (too few other teams for the gate by the team: whole)
        return None
    snapshot = _specs_at(root, commits[1], teams)
    if snapshot is None:
        return None
    with opts.timed("load"):
        specs = read.read(opts, snapshot)
    model = specs.model
    if model is None or not _stays(opts, snapshot, model, old, changed):
        return None  # (asked before the rules, which take 0.35 s at 10,000 teams when a team spec changed)
    found = _found(opts, specs, teams, changed, known)
    if found is None or not teams <= {t.name for t in model.teams} or not envs <= set(model.platform.environments) \
            or set(model.platform.environments) != set(old.envs):
        return None  # (a change the rules refuse: the whole gate says so, with every finding)
    with opts.timed("render"):  # (not the shared units: their files are the base's, _stays)
        rendered = render_cached(model, opts, [u for u in units(model) if u[1] in teams])
    return _worktree(root, commits[1], status, _judged(opts, base, commits, touched, model, found, rendered, old,
                                                      known))


def _worktree(root: Path, head: str, status: list, judged):
    """What was judged, when the work tree is HEAD's where the gate reads it and HEAD has not moved meanwhile; None
    otherwise. (git's answers, last: what was judged is thrown away when the work tree is not HEAD's, and git's look
    at every file, 2 s at 10,000 teams, runs beside all of it.)"""
    if judged is None or not scopes.heads(root, survey.results(status)) or gitref.commit_of(root, "HEAD") != head:
        return None
    return judged


def _found(opts: Options, specs: read.Specs, teams: set[str], changed: set[str], known: Facts
           ) -> list[Diagnostic] | None:
    """What validate finds in these teams' experiment files and, when team specs changed, in the platform file, every
    team spec and the changed teams' models (everything else it finds, the base's validate found: see _kept): the
    load's findings there, and the rules' on a model of the platform, the team specs the teams' experiments and
    models name (every team spec, when one changed) and those experiments and models (what the rules find in a team's
    experiment and model files is a function of these alone, and what they find in the platform and team spec files
    of those and every team spec: tests/test_team_locality.py; the rules on every team spec take 0.35 to 0.45 s at
    10,000 teams; the other teams' parts of the rules that look at a team's specs apart, which those teams' served
    models, not loaded, are part of, come from the cache by those models' sha256 in main's facts). None when one is
    an error or spans teams, or when the rules find what these experiments make across teams (OF_EXPERIMENTS; what
    else they find outside these files, of a model of fewer teams, is not what validate finds, and not used)."""
    model = specs.model
    named = teams | {s.top("team") for seq in (model.experiments, model.served) for s in specs_of(seq)}
    own = [t for t in model.teams if t.name in named]
    if changed or {t.name for t in own} != named:  # (a team no spec defines: its findings name every team)
        own = model.teams
    part = Model(model.platform, own, model.served, model.experiments, model.unreadable, model.inputs)
    sources = [model.platform.source, *(t.source for t in own), *specs_of(model.served), *specs_of(model.experiments)]
    served: dict[str, list[str]] | None = None
    if changed:
        served = {t.name: [] for t in model.teams if t.name not in teams}
        for path, digest in known.served.items():
            served.get(path.split("/", 3)[2], []).append(f"{path}:{digest}")
    with opts.timed("validate"):
        ruled = rules.checked(part, sources, opts.store, served)
    if ruled is None:
        return None
    found = [d for d in specs.diagnostics + ruled if _ours(d.path, teams, changed)]
    if any(d.severity == "error" or d.code in ACROSS_TEAMS for d in found) or any(d.code in OF_EXPERIMENTS
                                                                                   for d in ruled):
        return None
    return found


def _judged(opts: Options, base: str, commits: tuple[str, str], touched: tuple[set[str], set[str]], model,
            found: list[Diagnostic], rendered, old: Side, known: Facts) -> tuple[Report, diff.DiffReport | None] | None:
    root, envs, (commit, head), (teams, changed) = opts.root, list(model.platform.environments), commits, touched
    folders = [f"{layout.OVERLAYS}/{env}/teams/{t}" for env in envs for t in sorted(teams)]
    report = Report(list(found))
    with opts.timed("validate"):
        report.extend(codeowners.check(root, model))
    with opts.timed("check"):
        with writer.locked(root, exclusive=False):  # (as writer.check: no render swaps overlays/ meanwhile)
            checked = _drift(root, head, rendered, folders)
        before = gitref.ls_tree(root, commit, folders, "-r", "--name-only")
    if checked is None or before is None:
        return None
    plan, drifted = checked
    inside = tuple(f"{f}/" for f in folders)
    if any(not rel.startswith(inside) for rel in (*plan.changed, *plan.added)):
        return None  # (a team's file outside its folders, its Argo CD or Kueue file, differs: built whole)
    report.extend(drifted)
    if changed:
        report.extend(offboarding(model, envs))
    overlays = [o for o in overlays_of(rendered) if o.startswith(inside)]
    with opts.timed("build"):
        built, failed = build(opts, rendered, overlays)
    report.extend(failed)
    report.extend(d for d in known.warnings if _kept(d, teams, changed))
    if not failed:
        with opts.timed("verify"):
            job, _ = verify.manifests_job(root, model, built, opts.jobs, cache.default_folder(), opts.store)
            report.extend(job() + policy.checked(model, None, built, opts.store))
    with opts.timed("report"):
        if not report.errors:
            counts: dict[str, int] = {}
            for o, n in [*((o, n) for o, n in known.sizes.items() if o not in built.sizes), *built.sizes.items()]:
                env = o.split("/", 2)[1]
                counts[env] = counts.get(env, 0) + n
            report.summary = summary.summary(model, Built(counts=counts), envs, dict(known.tools))
        mine = sum(1 for rel in rendered.files if rel.startswith(inside))
        report.summary += [summary.drift(rendered.files, plan, known.generated - before.count(b"\0") + mine)]
    if failed:  # (as the whole gate: no diff of a head that does not build)
        return report, None
    with opts.timed("compare"):
        head = diff.side(model, rendered.files, built, root, None)
        theirs = tuple(f"{kind}/{t}/" for t in teams for kind in (EXPERIMENTS, MODELS))
        head.specs = {**{p: i for p, i in old.specs.items() if not p.startswith(theirs)}, **head.specs}
        head.sweeps = {s for s in old.sweeps if s[0] not in teams} | head.sweeps
        head.values = dict(old.values)  # (not rendered: the base's, _stays)
        for overlay, digest in old.built.items():
            head.built.setdefault(overlay, digest)
    old.read = lambda ids: gitref.blobs(gitref.literal(root), root, ids)
    try:
        return report, diff.diff_trees(opts, opts, base_label=base, head=head, base=old)
    except Gone:  # a text of the base the cache no longer holds: the whole gate makes the base again
        return None


def _specs_at(root: Path, commit: str, teams: set[str]) -> Snapshot | None:
    """A commit's platform file, team specs, and the experiments and served models of these teams, read from git."""
    folders = ["specs/platform.yaml", "specs/teams"] + [f"{kind}/{t}" for t in sorted(teams)
                                                       for kind in (EXPERIMENTS, MODELS)]
    listed = gitref.ls_tree(root, commit, folders, "-r")
    entries = gitref.entries(listed) if listed is not None else None
    if entries is None or not gitref.plain(entries):
        return None
    found = gitref.cat(gitref.literal(root), root, [(p, oid) for p, _, _, oid in entries])
    return Snapshot(found, gitref.blob_ids(entries)) if found is not None else None


def _drift(root: Path, head: str, rendered, folders: list[str]) -> tuple[writer.Plan, list[Diagnostic]] | None:
    """render --check's findings (writer.findings) in these folders and in every other file rendered here (the shared
    files, and the teams' files outside their folders), from the head commit's listing of them (the work tree is it):
    a rendered file missing or different, and in the folders a generated file no spec renders and what kflowgen did
    not write (a link, a submodule, a hand-written file). None when git cannot list them."""
    inside = tuple(f"{f}/" for f in folders)
    outside = [rel for rel in rendered.files if not rel.startswith(inside)]
    listed = gitref.ls_tree(root, head, [*folders, *outside], "-r")
    if listed is None:
        return None
    here = {path: (mode, oid.decode()) for path, mode, _, oid in gitref.entries(listed)}
    p = writer.Plan()
    for rel in rendered.files:
        mode, oid = here.get(rel, (None, None))
        if mode in (None, SUBMODULE):
            p.added.append(rel)
        elif mode != LINK:  # (a link is foreign, below)
            mine = rendered.ids.get(rel) or cache.blob_id(rendered.files[rel])
            (p.unchanged if oid == mine else p.changed).append(rel)
    for rel, (mode, _) in sorted(here.items()):
        if mode == SUBMODULE:
            p.special.append(rel)
        elif mode == LINK or rel not in rendered.files:
            generated = mode != LINK and is_generated(writer.first_bytes(root / rel))
            (p.removed if generated else p.foreign).append(rel)
    p.special = sorted({*p.special, *scopes.special(root, folders)})
    return p, writer.findings(root, p)


def _stays(opts: Options, snapshot: Snapshot, model: Model, old: Side, changed: set[str]) -> bool:
    """Whether each team whose spec changed is still the team its file names, and what it adds to what all teams share
    is as it was: alone, as it was and as it is, it makes the same shared files (targets.shared_unit: the hub's
    values, the Argo CD bootstrap) and the same policies' context (each environment's teams, their namespaces and
    people; not a quota): alike. A team's part of those is its own, whatever other teams there are
    (tests/test_team_locality.py), so every shared file is then the base's, to the byte, and no other team's overlay
    is judged otherwise (policy.same_context_as); and the team is in the same environments (one left or joined: the
    whole gate's)."""
    if not changed:
        return True
    paths = {f"{scopes.TEAMS}/{t}.yaml" for t in changed}
    mine = sorted((t for t in model.teams if t.name in changed), key=lambda t: t.name)
    if {t.source.path for t in mine} != paths or len(mine) != len(changed) or not all(map(old.specs.get, paths)):
        return False  # (a team added, renamed, or removed: the whole gate says what that does)
    ids = {p: old.specs[p] for p in paths}
    before = gitref.blobs(gitref.literal(opts.root), opts.root, ids)
    if len(before) != len(ids):
        return False
    was = read.read(opts, Snapshot({PLATFORM: snapshot[PLATFORM], **before}, {PLATFORM: snapshot.ids[PLATFORM], **ids}))
    if was.model is None or [t.name for t in was.model.teams] != [t.name for t in mine]:
        return False
    if not all(alike(was.model.platform, then, model.platform, now) for then, now in zip(was.model.teams, mine)):
        return False
    return policy.same_context_as(model, opts.store, {p: hashlib.sha256(b).hexdigest() for p, b in before.items()})


def alike(p: Platform, then: Team, p2: Platform, now: Team) -> bool:
    """Whether a team, alone, makes the same shared files and policies' context as it was and as it is (with the
    platform as it was and is: the same file)."""
    a, b = Model(p, [then]), Model(p2, [now])
    return repr(Context.from_model(a)) == repr(Context.from_model(b)) and all(
        shared_unit(p, a.teams_in(e), e).files == shared_unit(p2, b.teams_in(e), e).files for e in p.environments)


LINK, SUBMODULE = b"120000", b"160000"


def _experiment_of(path: str, teams: set[str]) -> bool:
    """A file in these teams' folders of experiments."""
    parts = path.split("/")
    return path.startswith(f"{EXPERIMENTS}/") and len(parts) > 3 and parts[2] in teams


def _ours(path: str, teams: set[str], changed: set[str]) -> bool:
    """A spec file whose findings this gate makes: these teams' experiments and, when team specs changed (changed),
    the platform file, everything under specs/teams/ and the changed teams' models."""
    parts = path.split("/")
    return _experiment_of(path, teams) or bool(changed) and (
        path == PLATFORM or path.startswith(f"{scopes.TEAMS}/")
        or path.startswith(f"{MODELS}/") and len(parts) > 3 and parts[2] in changed)


def _kept(d: Diagnostic, teams: set[str], changed: set[str]) -> bool:
    """A base finding this gate does not make again: on a spec file but those it judges (_ours: what is found in the
    others does not depend on any experiment, nor on another team's spec, tests/test_team_locality.py; the one finding
    that does, KF351, sends the gate whole), on an overlay outside these teams' folders, on the hub values (the
    base's, to the byte: _stays), or about a team leaving (the teams whose specs changed stay where they are:
    _stays). Not CODEOWNERS' (this gate checks it again: it covers every spec file)."""
    if d.code in codeowners.CODES:
        return False
    if d.path.startswith(f"{survey.SPECS}/"):
        return not _ours(d.path, teams, changed)
    if d.code in DEPARTURES or d.code in verify.HUB_CODES:
        return True
    place = layout.place(d.path)
    return place is not None and place.team not in teams

