"""Start-up of the command line, a git ref's kflowgen against this checkout's, in the same run:
python bench/startup.py [--before main] [--runs 10].

Both versions are copied into one temporary folder (the ref's kflowgen/, bases/ and schemas/ with `git archive`, the
checkout's kflowgen/ as it is on disk), beside links to this checkout's tools/ and .tools/, so that both import from
the same file system and run the same kustomize. Each runs from its own folder as `python -m kflowgen`: `--help`,
`validate --help`, and `validate` on this repository with the result cache filled by one run first (the warm run a
pull request's gate starts with). Runs alternate between the versions, each first every other run; times are
medians of each process's wall clock and CPU time. Benchmarks assert nothing."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CASES = {"kflowgen --help": ["--help"], "kflowgen validate --help": ["validate", "--help"],
         "kflowgen validate (warm)": ["validate", "-C", str(PROJECT)]}


def seconds(folder: Path, args: list[str], env: dict) -> tuple[float, float]:
    """(wall clock, CPU time: user and system of the process and the children it waited for) of one run."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kflowgen", *args], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(args)} in {folder} exited {os.waitstatus_to_exitcode(status)}")
    return took, usage.ru_utime + usage.ru_stime


def checkout(folder: Path, ref: str | None) -> Path:
    """A folder to run a version of kflowgen from: the git ref's, or this checkout's working tree (ref None)."""
    folder.mkdir()
    if ref is None:
        shutil.copytree(PROJECT / "kflowgen", folder / "kflowgen", symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "-C", str(PROJECT), "archive", ref, "kflowgen", "bases", "schemas"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    for name in ("bases", "schemas", "tools", ".tools"):
        if not (folder / name).exists():
            (folder / name).symlink_to(PROJECT / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git ref of the version to compare with (default: main)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kflowgen-startup-") as tmp:
        versions = {args.before: checkout(Path(tmp) / "before", args.before),
                    "this checkout": checkout(Path(tmp) / "after", None)}
        env = {**os.environ, "KFLOWGEN_CACHE": str(Path(tmp) / "cache"),
               "KFLOWGEN_TOOLS": str((PROJECT / ".tools" / "bin").resolve())}
        for folder in versions.values():  # fill the cache, and compile each version's bytecode, once
            seconds(folder, CASES["kflowgen validate (warm)"], env)
        times = {(case, v): [] for case in CASES for v in versions}
        for i in range(args.runs):
            for case, argv in CASES.items():
                for v, folder in sorted(versions.items(), reverse=bool(i % 2)):  # each version first every other run
                    times[case, v].append(seconds(folder, argv, env))
    print(f"median of {args.runs} runs of each ({os.cpu_count()} cores): wall clock, and in brackets CPU time (user "
          "and system, the measure a busy machine disturbs least)")
    print(f"| command | {args.before} | this checkout | change |\n| --- | ---: | ---: | ---: |")
    for case in CASES:
        (old, old_cpu), (new, new_cpu) = ([statistics.median(x) for x in zip(*times[case, v])] for v in versions)
        print(f"| `{case}` | {old:.3f} s ({old_cpu:.3f} s) | {new:.3f} s ({new_cpu:.3f} s) | "
              f"{100 * (new - old) / old:+.0f}% ({100 * (new_cpu - old_cpu) / old_cpu:+.0f}%) |")

if __name__ == "__main__":
    main()
