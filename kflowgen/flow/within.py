"""The gate of a pull request that changes only experiments of teams with many (and the Jobs they render), judged
experiment by experiment: what main's validate and render --check found of the teams' other experiments stands, and
only the changed experiments are read, checked, rendered and compared, as they are and as they were on main.

A team's experiments are apart from each other: each one's findings and files are a function of its spec file, its
team's and the platform's (rules.experiments.Part, targets.team.workloads_overlay), but for a name or a Job name two
of them share, which is looked for here (_taken). So the whole gate's result is main's, less what the changed
experiments made on main, plus what they make now; and the work tree is what they render when the two commits differ
by exactly that (git's diff of them; main's render --check vouched for main's files). Anything else, a finding in a
changed experiment's Jobs, or a workloads folder left with nothing else, and the change is judged by the team
(flow.scoped) or whole. The result is the whole gate's, to the byte (tests/test_within_gate.py
compares them)."""
from __future__ import annotations

from collections.abc import Callable

from kflowgen import cache, packed
from kflowgen.build import Built, build, listing_digest
from kflowgen.checks import codeowners, policy, verify
from kflowgen.diagnostics import Report
from kflowgen.flow import diff, gitref, scope as scopes
from kflowgen.flow.side import Facts, Gone, Side, sweeps_of
from kflowgen.options import Options
from kflowgen.report import summary
from kflowgen.specs import layout, read
from kflowgen.specs.discover import PLATFORM
from kflowgen.specs.experiment import EXPERIMENTS
from kflowgen.specs.model import Model, specs_of
from kflowgen.specs.read import Snapshot
from kflowgen.specs.served import MODELS
from kflowgen.targets.cached import Rendered
from kflowgen.targets.team import workloads_overlay
from kflowgen.targets.training import API
from kflowgen.write import writer

# Teams of fewer experiments than this are judged by the team (flow.scoped) or whole: rendering, checking and
# comparing all of a team's experiments then costs about what asking git about the changed ones does (docs/speed.md)
WITHIN_FROM = 200
FILE = "100644"  # the mode of a file kflowgen writes, in git
SPEC_MODES = (FILE, "100755", scopes.ABSENT)  # a spec file's, in git: a file (or none), not a link or a submodule
KINDS = tuple(kind.lower() for kind in API)  # a trial's file: <kind>.<its Job name>.yaml


def big(old: Side, teams: set[str]) -> bool:
    """Whether each of these teams had at least WITHIN_FROM experiment files on main (old: main's side)."""
    return all(sum(1 for p in old.specs if p.startswith(f"{EXPERIMENTS}/{t}/")) >= WITHIN_FROM for t in teams)


def judge(opts: Options, base: str, commits: tuple[str, str], teams: set[str], changes: dict[str, scopes.Change],
          old: Side, known: Facts, rules) -> tuple[Report, diff.DiffReport | None] | None:
    """The gate's report and diff when this change (changes: every path the two commits differ in, each in these
    teams' experiment folders or their workloads folders, scope.touched) is one judged here; None otherwise.
    rules(specs): what validate finds in these teams' experiment files of specs (read.Specs), as the gate by the
    team finds it (scoped._found); None when that gate would go whole."""
    root, (commit, head) = opts.root, commits
    specs = {p: c for p, c in changes.items() if p.startswith(f"{EXPERIMENTS}/")}
    if any(c.new_mode not in SPEC_MODES for c in specs.values()):
        return None  # (a link, whose target git keeps as its bytes, or a submodule: the whole gate refuses it)
    if any(c.old_mode != scopes.ABSENT and old.specs.get(p) != c.old_id for p, c in specs.items()):
        return None  # (main's side is not of the listing the commit has)
    with opts.timed("load"):
        both = _read(opts, head, teams, specs)
    if both is None:
        return None
    now, then = both
    model, was = now.model, then.model
    found = rules(now)  # (their files' findings, apart from main's of the others)
    if found is None:
        return None
    with opts.timed("render"):
        mine, made = _rendered(model, teams), _rendered(was, teams)
    if mine is None or made is None:
        return None
    (new, objects, ids), (gone, _, gone_ids) = mine, made
    folders = sorted({rel.rsplit("/", 1)[0] for rel in (*new, *gone)})
    with opts.timed("check"):
        sizes = _sizes(known, folders, new, gone)
        if sizes is None or not _as_rendered(changes, specs, gone_ids, ids) \
                or _taken(opts, commit, model, lambda p: p in old.specs and p not in specs, new, gone) \
                or scopes.special(root, [f"{layout.OVERLAYS}/{env}/teams/{t}" for env in old.envs
                                          for t in sorted(teams)]):
            return None
    report = Report(found)
    with opts.timed("validate"):
        report.extend(codeowners.check(root, model))
    rendered = Rendered(new, objects={rel: packed.pack(o) for rel, o in objects.items()}, ids=ids)
    with opts.timed("build"):
        built, failed = build(opts, rendered, [f for f in folders if any(rel.startswith(f"{f}/") for rel in new)])
    if failed:
        return None
    with opts.timed("verify"):
        job, _ = verify.manifests_job(root, model, built, opts.jobs, cache.default_folder(), opts.store)
        if job() or policy.checked(model, None, built, opts.store):
            return None  # (the whole gate says what, and of which file)
    report.extend(d for d in known.warnings if d.path not in specs and d.code not in codeowners.CODES)
    envs = list(model.platform.environments)
    with opts.timed("report"):
        counts: dict[str, int] = {}
        for overlay, n in sizes.items():
            env = overlay.split("/", 2)[1]
            counts[env] = counts.get(env, 0) + n
        report.summary = summary.summary(model, Built(counts=counts), envs, dict(known.tools))
        report.summary += [summary.drift({}, writer.Plan(), known.generated - len(gone) + len(new))]
    old.read = lambda wanted: gitref.blobs(gitref.literal(root), root, wanted)
    try:
        with opts.timed("compare"):
            side = _head(old, specs, (sweeps_of(was.experiments), sweeps_of(model.experiments)), new, ids, gone)
        return report, diff.diff_trees(opts, opts, base_label=base, head=side, base=old)
    except Gone:  # a text of the base the cache no longer holds: the whole gate makes the base again
        return None


def _read(opts: Options, head: str, teams: set[str], specs: dict[str, scopes.Change]
          ) -> tuple[read.Specs, read.Specs] | None:
    """The specs as they are, of the platform file, every team spec (the summary counts every team), these teams'
    served models and the changed experiments; and as they were on main, of the same but only these teams' specs
    (what renders the changed experiments: nothing else of specs/ differs between the commits, and at 10,000 teams
    every team spec is read once, not twice). None when git cannot give them."""
    listed = gitref.ls_tree(opts.root, head, [PLATFORM, scopes.TEAMS, *(f"{MODELS}/{t}" for t in sorted(teams))],
                            "-r")
    entries = gitref.entries(listed) if listed is not None else None
    if entries is None or not gitref.plain(entries):
        return None
    common = {p: oid.decode() for p, _, _, oid in entries}
    sides = [{p: c.new_id for p, c in specs.items() if c.new_mode != scopes.ABSENT},
             {p: c.old_id for p, c in specs.items() if c.old_mode != scopes.ABSENT}]
    wanted = {**common, **{f"{n}:{p}": i for n, ids in enumerate(sides) for p, i in ids.items()}}
    got = gitref.blobs(gitref.literal(opts.root), opts.root, wanted)
    if len(got) != len(wanted):
        return None
    out = []
    theirs = {f"{scopes.TEAMS}/{t}.yaml" for t in teams}
    for n, ids in enumerate(sides):
        shared = common if n == 0 else {p: i for p, i in common.items() if not p.startswith(f"{scopes.TEAMS}/")
                                         or p in theirs}
        files = {**{p: got[p] for p in shared}, **{p: got[f"{n}:{p}"] for p in ids}}
        found = read.read(opts, Snapshot(files, {**shared, **ids}))
        if found.model is None:
            return None
        out.append(found)
    return out[0], out[1]


def _rendered(model: Model, teams: set[str]) -> tuple[dict[str, bytes], dict[str, dict], dict[str, str]] | None:
    """What these experiments render in their teams' workloads folders: {path: bytes}, {path: object} and {path:
    git blob id} (not the file of nothing a folder gets when nothing else is there: _sizes). None when two of them
    render one file (the rules refused that already), or a spec file has no sha256 (its files are told apart by
    it)."""
    files: dict[str, bytes] = {}
    objects: dict[str, dict] = {}
    by_team: dict[str, list] = {}
    for e in model.experiments:
        if not e.source.digest:
            return None
        by_team.setdefault(e.team, []).append(e)
    mine = {t.name: t for t in model.teams if t.name in teams}
    if not by_team.keys() <= mine.keys():
        return None
    for name, exps in sorted(by_team.items()):
        for env in model.platform.environments:
            _, made, parts = workloads_overlay(model.platform, mine[name], [], exps, env)
            for part in parts.values():
                for rel, data in part.items():
                    if rel in files:
                        return None
                    files[rel], objects[rel] = data, made[rel]
    return files, objects, {rel: cache.blob_id(data) for rel, data in files.items()}


def _sizes(known: Facts, folders: list[str], new: dict[str, bytes], gone: dict[str, bytes]) -> dict[str, int] | None:
    """main's object count of each built overlay, with these workloads folders' counts less the objects the changed
    experiments made there on main (gone: a file each) and plus those they make now; None when such a folder is left
    with nothing else (the whole gate then wants its file of nothing, or one removed). (What the checks find in an
    overlay is an error, of which main had none: no finding of main's is on these folders.)"""
    sizes = dict(known.sizes)
    for f in folders:
        inside = f"{f}/"
        left = sizes.get(f, 0) - sum(rel.startswith(inside) for rel in gone)
        if left < 1:
            return None
        sizes[f] = left + sum(rel.startswith(inside) for rel in new)
    return sizes


def _as_rendered(changes: dict[str, scopes.Change], specs: dict, gone: dict[str, str], now: dict[str, str]) -> bool:
    """Whether the generated files the two commits differ in are exactly those the changed experiments render
    differently (gone: their files on main, now: theirs now, {path: blob id}), each as rendered: a file of main
    they no longer render is removed, and one they render now, a file (not a link), holds those bytes, and was
    not there on main unless they rendered it there (so no other file of main is replaced)."""
    expected = {rel: (gone.get(rel), now.get(rel)) for rel in gone.keys() | now.keys() if gone.get(rel) != now.get(rel)}
    generated = {p: c for p, c in changes.items() if p not in specs}
    if generated.keys() != expected.keys():
        return False
    for rel, (was, made) in expected.items():
        c = generated[rel]
        if c.old_id != (was or scopes.NO_ID) or (c.old_mode == scopes.ABSENT) != (was is None):
            return False
        if made is None and c.new_mode != scopes.ABSENT or made is not None and (c.new_mode, c.new_id) != (FILE, made):
            return False
    return True


def _taken(opts: Options, commit: str, model: Model, other: Callable[[str], bool], new: dict[str, bytes],
           gone: dict[str, bytes]) -> bool:
    """Whether a changed experiment's name or a Job name it gives may be one of another experiment (the rules' KF321
    and KF328 across a team's experiments, which the whole gate would say): its spec file under the other extension
    among the other experiment files (other(path): one of them; not a set of every spec path, 120,000 at 10,000
    teams), or on main a file of one of its Job names, of any kind, in any of its team's workloads folders, that it
    did not render there (gone: it did; the rules name a Job as it is rendered in the experiment's first environment,
    whose file main holds)."""
    for spec in specs_of(model.experiments):
        stem = spec.path.rsplit(".", 1)[0]
        if other(f"{stem}.yaml") or other(f"{stem}.yml"):
            return True
    envs = list(model.platform.environments)
    names = {(rel.split("/", 4)[3], rel.rsplit("/", 1)[1].split(".", 1)[1]) for rel in new}
    paths = [f"{layout.team_overlay(env, team, layout.WORKLOADS_PART)}/{kind}.{name}"
             for team, name in sorted(names) for env in envs for kind in KINDS]
    listed = gitref.ls_tree(opts.root, commit, paths, "--name-only") if paths else b""
    return listed is None or any(p not in gone for p in listed.decode("utf-8", "surrogateescape").split("\0") if p)


def _head(old: Side, specs: dict[str, scopes.Change], sweeps: tuple[set, set], new: dict[str, bytes],
          ids: dict[str, str], gone: dict[str, bytes]) -> Side:
    """The head as a side of the diff: main's, but for the changed experiments' spec files, sweeps and files (each
    changed workloads folder listed again, file by file, from main's listing: Gone when the cache no longer has
    it)."""
    head = Side(envs=list(old.envs), quotas=old.quotas, built=dict(old.built), values=dict(old.values),
                clusters=old.clusters, files=new, read=old.read)
    head.specs = {**{p: i for p, i in old.specs.items() if p not in specs},
                  **{p: c.new_id for p, c in specs.items() if c.new_mode != scopes.ABSENT}}
    head.sweeps = (old.sweeps - sweeps[0]) | sweeps[1]
    for folder in sorted({rel.rsplit("/", 1)[0] for rel in (*new, *gone)}):
        listed = old.listing(folder)
        if listed is None:
            raise Gone(folder)
        files = {rel: i for rel, i in listed.items() if rel not in gone}
        files.update((rel, i) for rel, i in ids.items() if rel.startswith(f"{folder}/"))
        head.listed[folder] = dict(sorted(files.items()))
        head.built[folder] = listing_digest(head.listed[folder])
    return head
