"""Benchmark kflowgen against the baseline pipeline a user would otherwise run, in the same run, on the same
generated repositories: python bench/run.py --teams 10 100 1000 [--big-team 50 5000] [--repeat 3] [--no-baseline].

Rows per size: the baseline (`kustomize build` of every overlay, as many in parallel as kflowgen uses, then one
`kubeconform -strict` over all output), kflowgen validate cold (--no-cache), kflowgen validate warm (cache
filled by main's CI run: validate, then render --check), and the pull-request gate on a one-team change rendered
and committed on a branch of the generated git repository (rendered without the cache, as on its author's machine:
the gate finds only what main's run left, as in CI): `kflowgen gate --base main` (one process), and the
same checks as three commands (`validate`, `render --check`, `diff --base main`). Times are medians; peak memory is the largest of the measured processes' own maximum resident sets.
Benchmarks assert nothing."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

from generate import generate  # noqa: E402

from kflowgen import cache, tools, upstream
from kflowgen.checks import schemas as kschemas
from kflowgen.build import build, overlays_of
from kflowgen.flow import pipeline
from kflowgen.options import Options
from kflowgen.targets.cached import render_cached

KFLOWGEN = [sys.executable, "-m", "kflowgen"]
CRDS = upstream.crd_files("3.6.2")  # what kflowgen validates against: the baseline gets the same schemas


# A small launcher runs the measured commands (JSON on its stdin: [[argv, stdout path], ...], jobs at a time) and
# reports the wall seconds of all, the largest peak resident set (KiB) and how many failed (or the one exit status):
# a child forked from this process (large, once it has counted a repository's objects) would count this process's
# pages in its own ru_maxrss until it execs, so every peak would read at least this process's size.
LAUNCHER = """
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
commands = json.load(sys.stdin)
def one(command):
    with open(command[1], "wb") as out:
        proc = subprocess.Popen(command[0], stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss, os.waitstatus_to_exitcode(status)
start = time.monotonic()
with ThreadPoolExecutor(max_workers=int(sys.argv[1])) as pool:
    done = list(pool.map(one, commands))
codes = [code for _, code in done if code]
print(json.dumps([time.monotonic() - start, max(peak for peak, _ in done),
                  codes[0] if len(done) == 1 and codes else len(codes)]))
"""


def run_all(commands: list[tuple[list[str], str]], jobs: int, env: dict | None = None) -> tuple[float, float, int]:
    """Each (argv, stdout path), jobs at a time, under the launcher: (seconds, the largest peak MiB, how many failed;
    for one command, its exit status). What the steps before wrote (a render, a commit, a cache filled) is flushed to
    disk first, so that its write-back does not land inside the measured commands (it made one gate in three 0.1 s
    slower at one team of 5,000 experiments)."""
    os.sync()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, str(jobs)], input=json.dumps(commands).encode(), env=env,
                          stdout=subprocess.PIPE, check=True)
    seconds, peak_kib, code = json.loads(done.stdout)
    return seconds, peak_kib / 1024, code


def measure(argv: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """(seconds, peak MiB of that process, exit status), its output dropped."""
    return run_all([(argv, os.devnull)], 1, env)


def baseline(root: Path, jobs: int, schema_args: list[str]) -> tuple[float, float, int]:
    """kustomize build per overlay (jobs at a time) into files, then kubeconform -strict on all of them and on the
    plain directories Argo CD syncs as they are (overlays/<env>/argocd, queueing, each team's workloads)."""
    kustomize, kubeconform = tools.find("kustomize"), tools.find("kubeconform")
    overlays = sorted(p.parent for p in (root / "overlays").rglob("kustomization.yaml"))
    out = Path(tempfile.mkdtemp(prefix="bench-built-"))
    built_seconds, peak, failed = run_all([([*kustomize.argv, str(overlay)], str(out / f"{i:06d}.yaml"))
                                           for i, overlay in enumerate(overlays)], jobs)
    # directory sources (Argo CD's objects, Kueue's queues, every team's workloads): their files as they are
    plain = sorted(str(d) for pattern in ("*/argocd", "*/queueing", "*/teams/*/workloads")
                   for d in (root / "overlays").glob(pattern))
    seconds, kc_peak, code = measure([*kubeconform.argv, "-strict", "-summary", "-n", str(jobs), *schema_args,
                                      str(out), *plain])
    shutil.rmtree(out)
    return built_seconds + seconds, max(peak, kc_peak), failed or code


def count_objects(root: Path, store: cache.Cache) -> int:
    jobs = os.cpu_count() or 1
    opts = Options(root, jobs, store)
    model, _ = pipeline.load(opts)
    rendered = render_cached(model, opts)
    built, _ = build(opts, rendered, overlays_of(rendered.files))
    return sum(built.counts.values())


FAILED: list[str] = []


def row(name, teams, objects, runs, base_median=None, itself=False):
    """One table row; ratio against base_median (the baseline row is its own: itself), empty without one."""
    secs = statistics.median(r[0] for r in runs)
    if any(r[2] for r in runs):
        FAILED.append(f"{teams} teams: {name}")
    peak = max(r[1] for r in runs)
    base_median = secs if itself else base_median
    ratio = f"{secs / base_median:.2f}" if base_median else ""
    ok = "ok" if all(r[2] == 0 for r in runs) else "FAILED"
    print(f"| {teams!s:>5} | {name:<28} | {objects:>7} | {secs:>8.2f} | {objects / secs:>9.0f} | {peak:>8.0f} | "
          f"{ratio:>6} | {ok} |", flush=True)
    return secs


def main_run(validate: list[str], root: Path, env: dict) -> None:
    """What main's CI run leaves in the cache (.github/workflows/gate.yaml): validate, then render --check, which
    keeps that main's overlays/ is what its specs render (a pull request's gate in scope needs both)."""
    for argv in (validate, [*KFLOWGEN, "render", "--check", "-C", str(root)]):
        if measure(argv, env)[2]:
            sys.exit(f"bench: {' '.join(argv)} failed on main")


def _committed(root: Path, env: dict) -> Path:
    """root rendered and committed on branch main, as a repository's main is."""
    subprocess.run([*KFLOWGEN, "render", "-C", str(root)], check=True, capture_output=True, env=env)
    for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=bench", "-c", "user.email=bench@example.com",
                                                "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(root), *git], check=True, capture_output=True)
    return root


def team_change(root: Path, env: dict, i: int, team: str = "team-0001") -> None:
    """The pull request's i-th commit: the team's CPU quota changed, rendered as its author does, on their machine
    (nothing of it reaches the cache CI restores), and committed on the branch checked out."""
    team = root / "specs" / "teams" / f"{team}.yaml"
    team.write_text(team.read_text().replace("cpu: 128,", f"cpu: {129 + i},").replace(
        f"cpu: {128 + i},", f"cpu: {129 + i},"))
    subprocess.run([*KFLOWGEN, "render", "--no-cache", "-C", str(root)], check=True, capture_output=True, env=env)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit",
                    "-qam", f"pr {i}"], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teams", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the kustomize+kubeconform baseline (it alone takes tens of minutes at 10,000 "
                             "teams); the ratio column is then empty")
    parser.add_argument("--big-team", type=int, nargs="*", default=[],
                        help="also one team of N one-trial experiments each (N Jobs in one workloads folder): cold "
                             "validate and a one-experiment PR gate; ratios against the first size given")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kflowgen-bench-"))
    cache_dir = work / "cache"
    env = {**os.environ, "KFLOWGEN_CACHE": str(cache_dir), "CI": "true"}
    schema_args = kschemas.kubeconform_args(kschemas.schema_dir(
        "1.34.0", CRDS, work / "schemas"))
    print(f"kflowgen benchmark: {args.jobs} jobs, median of {args.repeat}, "
          f"kustomize {tools.find('kustomize').version}, kubeconform {tools.find('kubeconform').version}")
    print("| teams | pipeline                     | objects |  seconds | objects/s | peak MiB |  ratio | result |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for teams in args.teams:
        root = _committed(generate(work / f"repo-{teams}", teams, args.experiments, 1), env)
        objects = count_objects(root, cache.Cache(cache_dir))
        base = None if args.no_baseline else row("baseline kustomize+kubeconform", teams, objects,
                                                 [baseline(root, args.jobs, schema_args) for _ in range(args.repeat)],
                                                 itself=True)
        validate = [*KFLOWGEN, "validate", "-C", str(root), "--jobs", str(args.jobs)]
        cold = []
        for _ in range(args.repeat):
            shutil.rmtree(cache_dir, ignore_errors=True)
            cold.append(measure([*validate, "--no-cache"], env))
        row("kflowgen validate, cold", teams, objects, cold, base)
        main_run(validate, root, env)  # fill the cache
        row("kflowgen validate, warm", teams, objects, [measure(validate, env) for _ in range(args.repeat)], base)
        # the pull request: a one-team change, rendered and committed on a branch, checked out as CI checks it out
        git_run = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run([*git_run, "checkout", "-q", "-b", "pr"], check=True, capture_output=True)
        gate, three = [], []
        for i in range(args.repeat):
            team_change(root, env, i)
            gate.append(measure([*KFLOWGEN, "gate", "--base", "main", "-C", str(root)], env))
            steps = [measure(validate, env), measure([*KFLOWGEN, "render", "--check", "-C", str(root)], env),
                     measure([*KFLOWGEN, "diff", "--base", "main", "-C", str(root)], env)]
            three.append((sum(s[0] for s in steps), max(s[1] for s in steps), next((s[2] for s in steps if s[2]), 0)))
        row("PR gate: kflowgen gate", teams, objects, gate, base)
        row("PR gate: 3 commands", teams, objects, three, base)
        moved = []
        for i in range(args.repeat):  # main moved on since the cache was made: its new commit was never validated
            subprocess.run([*git_run, "checkout", "-q", "main"], check=True, capture_output=True)
            team_change(root, env, i, team=f"team-{2 + i:04d}")
            subprocess.run([*git_run, "checkout", "-q", "pr"], check=True, capture_output=True)
            subprocess.run([*git_run, "merge", "-q", "--no-edit", "main"], check=True, capture_output=True)
            moved.append(measure([*KFLOWGEN, "gate", "--base", "main", "-C", str(root)], env))
        row("PR gate, main moved on", teams, objects, moved, base)
    first: dict[str, float] = {}
    for n in args.big_team:
        root = _committed(generate(work / f"big-{n}", 1, n, 0), env)
        objects = count_objects(root, cache.Cache(cache_dir))
        validate = [*KFLOWGEN, "validate", "-C", str(root), "--jobs", str(args.jobs)]
        cold = []
        for _ in range(args.repeat):
            shutil.rmtree(cache_dir, ignore_errors=True)
            cold.append(measure([*validate, "--no-cache"], env))
        label = f"1x{n}"
        first.setdefault("cold", statistics.median(r[0] for r in cold))
        row("one big team: validate, cold", label, objects, cold, first["cold"])
        main_run(validate, root, env)  # fill the cache, as main's CI run leaves it
        git_run = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run([*git_run, "checkout", "-q", "-b", "pr"], check=True, capture_output=True)
        spec = root / "specs" / "experiments" / "team-0000" / "exp-0.yaml"
        gate = []
        for i in range(args.repeat):  # the pull request: one experiment's hyperparameter changed
            spec.write_text(spec.read_text().replace(f"epochs: {i}", f"epochs: {i + 1}"))
            subprocess.run([*KFLOWGEN, "render", "--no-cache", "-C", str(root)], check=True, capture_output=True,
                           env=env)
            # (-A: the experiment's Job is renamed, a new file, as a pull request commits it)
            subprocess.run([*git_run, "add", "-A"], check=True, capture_output=True)
            subprocess.run([*git_run, "commit", "-qm", f"pr {i}"], check=True, capture_output=True)
            gate.append(measure([*KFLOWGEN, "gate", "--base", "main", "-C", str(root)], env))
        first.setdefault("gate", statistics.median(r[0] for r in gate))
        row("one big team: PR gate, 1 exp", label, objects, gate, first["gate"])
    shutil.rmtree(work, ignore_errors=True)
    if FAILED:
        sys.exit("bench: failed runs: " + "; ".join(FAILED))


if __name__ == "__main__":
    main()
