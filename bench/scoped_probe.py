"""bench/scoped_probe.py BASE [PIN], run in a repository with HEAD checked out: the time of each stage a scoped gate
(commit mode) would run on HEAD against BASE, composed from kflowgen's own stages over a partial model (the platform,
every team spec, and the experiments and served models of the teams in scope only), the scope's units and the shared
units rendered, their overlays built and verified, and the base side found. A measurement of the design (branch
scoped-gate), not a gate: the drift it prints compares whole shared folders with the scope's part of them, and the
shared folders are built from that part only. PIN: a kflowgen source folder whose code digest keys the cache (a
cache made by other code). Prints the stages' times in ms on stdout, what was loaded and kflowgen's timings on
stderr."""
import sys, time, subprocess
t0 = time.perf_counter()
sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))
import hashlib
from pathlib import Path
from kflowgen import cache
if len(sys.argv) > 2:
    package = Path(sys.argv[2]) / 'kflowgen'
    h = hashlib.sha256(' '.join(f'{m} {cache.dist_version(m)}' for m in cache.LIBRARIES).encode() + b'\0')
    for p in sorted(package.rglob('*.py')) + sorted((package / 'schemas').glob('*.json')):
        h.update(p.relative_to(package).as_posix().encode() + b'\0' + p.read_bytes() + b'\0')
    d = h.hexdigest(); cache.code_digest = lambda: d
from kflowgen.flow import pipeline, gitref, diff as diffmod
from kflowgen.flow.scope import scope, committed
from kflowgen.flow.load import load_then, render_stage
from kflowgen.options import Options
from kflowgen.specs.read import Snapshot
from kflowgen.targets import cached, units as all_units
from kflowgen.build import build, overlays_of
from kflowgen.checks import verify
from kflowgen.specs import layout
import gc; gc.disable()
T = {'imports': time.perf_counter() - t0}
def lap(name, t): T[name] = time.perf_counter() - t; return time.perf_counter()
base = sys.argv[1]; root = Path('.').resolve()
opts = Options.at(root, None, True, None, True, None)
t = time.perf_counter()
paths = committed(root, base); sc = scope(paths)
t = lap('scope', t)
# the head's spec files in scope, from git (commit mode): ls-tree, then cat-file
folders = ['specs/platform.yaml', 'specs/teams'] + [f'specs/{k}/{x}' for x in sorted(sc.teams) for k in ('experiments', 'models')]
ls = subprocess.run(['git', 'ls-tree', '-r', '-z', 'HEAD', '--', *folders], capture_output=True).stdout
ents = gitref.entries(ls)
git = lambda *a, at=root, **kw: subprocess.run(['git', '-C', str(at), *a], capture_output=True, **kw)
found = gitref.cat(git, root, [(p, oid) for p, _, _, oid in ents])
snap = Snapshot(found, gitref.blob_ids(ents))
t = lap('head specs from git', t)
wanted = None
def scoped_units(model):
    us = all_units(model)
    return [u for u in us if not u[1] or u[1] in sc.teams]
cached.units = scoped_units
model, diags, rendered = load_then(opts, lambda m: render_stage(opts, m), snap)
t = lap('load+rules+render', t)
print('findings', len(diags), 'teams', len(model.teams), 'experiments', len(model.experiments), 'files', len(rendered.files), file=sys.stderr)
# drift, commit mode: the scope's and shared folders' blob ids at HEAD against the rendered ids
envs = list(model.platform.environments)
dfold = [f'overlays/{e}/teams/{x}' for e in envs for x in sorted(sc.teams)] + [f'overlays/{e}/{p}' for e in envs for p in ('argocd', 'queueing', 'jupyterhub')]
ls2 = subprocess.run(['git', 'ls-tree', '-r', '-z', 'HEAD', '--', *dfold], capture_output=True).stdout
ids = gitref.blob_ids(gitref.entries(ls2))
drift = {p for p in set(ids) | set(rendered.ids) if ids.get(p) != rendered.ids.get(p)}
t = lap('drift', t)
print('drift', sorted(drift)[:5], file=sys.stderr)
ovs = overlays_of(rendered)
built, bd = build(opts, rendered, ovs)
t = lap('build', t)
hub = verify.hub_values(root, model, rendered.files, envs, opts.store)
found = pipeline._verified(opts, model, None, built, dict(built.tools), hub)
t = lap('verify', t)
print('verify findings', len(found), 'overlays', len(ovs), file=sys.stderr)
started = gitref.started(root, base)
listed = diffmod._base_listed(opts, git, base, started)
t = lap('base side', t)
T['total'] = time.perf_counter() - t0
print(' '.join(f'{k} {1000*v:.0f}' for k, v in T.items())); print(' '.join(opts.timings.lines()).replace('timings: ', ''), file=sys.stderr)
