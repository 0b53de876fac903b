"""A long fuzz campaign over mutated copies of the example repository, with the generators and the property of
tests/test_fuzz.py driven by random.Random instead of hypothesis (known-bug inputs included).

    python bench/fuzz_campaign.py N [--seed S] [--workers W] [--no-large]
    python bench/fuzz_campaign.py --replay S:I [--keep DIR]     # rebuild mutant I of seed S, show what happens

Prints counts per outcome (ok, refused by error code, bugs grouped by signature with a replay command), load
times and the slowest input, then the time and peak memory (os.wait4 rusage of the child) of
`kflowgen validate` in a subprocess on the largest refused inputs: files above the 1 MiB limit and an alias bomb.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
sys.path.insert(0, str(PROJECT))

import test_fuzz as fz  # noqa: E402  (the generators and the property)

# Runs `kflowgen validate` and prints its exit code, wall and cpu seconds and peak RSS (KiB), then its output.
LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
p = subprocess.run([sys.executable, "-m", "kflowgen", "validate", "--format", "json", "-C", sys.argv[1]],
                   stdout=subprocess.PIPE)
seconds = time.perf_counter() - start
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([p.returncode, seconds, u.ru_utime + u.ru_stime, u.ru_maxrss]), flush=True)
sys.stdout.buffer.write(p.stdout)
"""
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None  # RAM: faster
HANG_SECONDS = 60  # a worker silent this long on one mutant is killed and the mutant counted as a hang


def build(seed: int, i: int) -> tuple[fz.Mutant, bool]:
    c = fz.RandomChooser(random.Random(f"{seed}:{i}"))
    m = fz.mutant(c)
    return m, c.coin(5)  # the CLI on about 5% (of the refused ones: check() runs it only when there are errors)


def signature(e: BaseException) -> str:
    """Group failures: exception type, kflowgen's innermost frame, the message without numbers and paths."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/kflowgen/" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].name}" if frames else ""
    msg = str(e).splitlines()[0] if str(e) else ""
    msg = re.sub(r"'?/(?:tmp|dev/shm)/[^' ]+'?", "<path>", msg)
    msg = re.sub(r"\d+", "N", msg)[:110]
    return f"{type(e).__name__}{where}: {msg}"


def run_one(seed: int, i: int, conn=None) -> dict:
    out: dict = {"i": i}
    try:
        m, cli_too = build(seed, i)
    except Exception as e:  # a generator bug, not kflowgen's
        return {**out, "status": "harness", "sig": "generator " + signature(e)}
    out.update(ops=m.ops, notes=[n[:200] for n in m.notes[:4]], size=m.size())
    if conn is not None:
        conn.send(("check", out))  # from here on a hang is kflowgen's (or the property's), not the generator's
    with tempfile.TemporaryDirectory(prefix="kflowgen-campaign-", dir=SCRATCH) as tmp:
        try:
            root = fz.write_mutant(m, Path(tmp))
        except Exception as e:  # noqa: BLE001 (e.g. a file name the file system refuses)
            return {**out, "status": "harness", "sig": "write " + signature(e)}
        start = time.perf_counter()
        try:
            o = fz.check(root, cli_too)
        except BaseException as e:  # noqa: BLE001 (everything that escapes is a finding)
            if isinstance(e, KeyboardInterrupt):
                raise
            known = fz.known_bug(e)
            sig = (f"[known: {known}] " if known else "[NEW] ") + signature(e)
            return {**out, "status": "bug", "sig": sig, "seconds": time.perf_counter() - start,
                    "trace": "".join(traceback.format_exception(e))[-3000:]}
    return {**out, "status": "ok" if o.ok else "refused", "codes": o.codes, "load": o.load_seconds,
            "seconds": o.seconds, "cli": o.cli}


def worker(seed: int, indices: list[int], conn) -> None:
    for i in indices:
        conn.send(("start", i))
        conn.send(("done", run_one(seed, i, conn)))
    conn.send(("end", None))


def campaign(n: int, seed: int, workers: int) -> list[dict]:
    ctx = mp.get_context("fork")
    results: list[dict] = []
    pending = {w: list(range(w, n, workers)) for w in range(workers)}
    procs = {}

    def launch(w):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=worker, args=(seed, pending[w], child), daemon=True)
        p.start()
        child.close()
        procs[w] = [p, parent, None, time.monotonic(), None]  # process, pipe, current index, since, checking

    for w in range(workers):
        if pending[w]:
            launch(w)
    started = time.monotonic()
    last_print = started
    while procs:
        for w, (p, conn, current, since, _) in list(procs.items()):
            while conn.poll():
                try:
                    kind, payload = conn.recv()
                except EOFError:
                    kind, payload = "eof", None
                if kind == "start":
                    procs[w][2], procs[w][3], procs[w][4] = payload, time.monotonic(), None
                elif kind == "check":
                    procs[w][4] = payload
                elif kind == "done":
                    results.append(payload)
                    pending[w].remove(payload["i"])
                    procs[w][2] = None
                else:  # end, or the worker died
                    if kind == "eof" and procs[w][2] is not None:
                        results.append({"i": procs[w][2], "status": "bug", "sig": f"worker died (exit {p.exitcode})"})
                        pending[w].remove(procs[w][2])
                    p.join()
                    del procs[w]
                    if kind == "eof" and pending[w]:
                        launch(w)
                    break
            if w in procs and procs[w][2] is not None and time.monotonic() - procs[w][3] > HANG_SECONDS:
                i = procs[w][2]
                p.kill()  # our own worker, by its process object
                p.join()
                checking = procs[w][4]
                if checking is None:
                    results.append({"i": i, "status": "harness", "sig": f"generator hang (over {HANG_SECONDS} s)"})
                else:
                    results.append({**checking, "status": "bug", "sig": f"hang (no result within {HANG_SECONDS} s)"})
                pending[w].remove(i)
                del procs[w]
                if pending[w]:
                    launch(w)
        time.sleep(0.01)
        if time.monotonic() - last_print > 30:
            last_print = time.monotonic()
            rate = len(results) / (last_print - started)
            print(f"  {len(results)}/{n} in {last_print - started:.0f} s ({rate:.1f}/s)", file=sys.stderr, flush=True)
    return sorted(results, key=lambda r: r["i"])


# ---- large refused inputs, through the real command line


def _large_inputs():
    """(name, mutant) pairs, made one at a time (the largest holds 256 MiB)."""
    team = "specs/teams/nlp.yaml"
    base = fz.BASE[team]

    def with_team(name, data):
        m = fz.Mutant(dict(fz.BASE), notes=[name])
        m.files[team] = data
        return name, m

    yield with_team("baseline: tiny refused file (BOM)", b"\xef\xbb\xbf" + base)
    yield with_team("exactly 1 MiB (accepted size): 1 MiB comment",
                    base + b"#" + b"x" * (fz.MAX_BYTES - len(base) - 2) + b"\n")
    yield with_team("1 MiB + 1 byte", base + b"#" + b"x" * (fz.MAX_BYTES - len(base) - 1) + b"\n")
    yield with_team("16 MiB file", base + b"#" + b"x" * (16 << 20) + b"\n")
    yield with_team("256 MiB file", base + b"#" + b"x" * (256 << 20) + b"\n")
    yield with_team("alias bomb, 12 levels (9^11 leaves if expanded)", base + fz._alias_bomb(12).encode())
    items = (fz.MAX_BYTES - len(base) - 100) // 3
    yield with_team(f"just under 1 MiB, {items} flow items (node limit)", base + b"x: [" + b"1, " * items + b"]\n")
    n = fz.MAX_NODES // 2 - 100
    yield with_team(f"{n} unknown keys (under the node limit)",
                    base + b"".join(b"extraKey%06d: 1\n" % i for i in range(n)))
    n = 40_000
    yield with_team(f"owners: {n} entries (under the node and size limits)",
                    base.replace(b"owners:\n", b"owners:\n" + b"".join(b"  - u%06d@example.com\n" % i
                                                                       for i in range(n))))
    yield with_team("1 MiB of '[' (nesting)", b"x: " + b"[" * (fz.MAX_BYTES - 10) + b"\n")


def measure(name: str, m: fz.Mutant) -> str:
    with tempfile.TemporaryDirectory(prefix="kflowgen-large-") as tmp:
        root = fz.write_mutant(m, Path(tmp))
        if fz.SHARED.is_dir():  # the platform's validation paths point at ../shared (only an accepted input gets there)
            (Path(tmp) / "shared").symlink_to(fz.SHARED, target_is_directory=True)
        size = max(len(e) for e in m.files.values() if isinstance(e, bytes))
        # A small launcher runs kflowgen and reports its child's rusage: a child forked from this (large) process
        # would count our pages in its ru_maxrss until it execs.
        with tempfile.TemporaryFile() as errfile:
            proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(root)], stdout=subprocess.PIPE,
                                  stderr=errfile, cwd=PROJECT)
            errfile.seek(0)
            err = errfile.read()
        head, _, out = proc.stdout.partition(b"\n")
        returncode, seconds, cpu, maxrss = json.loads(head)
        codes = ""
        try:
            doc = json.loads(out)
            codes = ",".join(sorted({d["code"] for d in doc["diagnostics"]}))[:60] + f" ({len(doc['diagnostics'])} diagnostics)"
        except ValueError:
            codes = f"no JSON; stderr: {err.decode(errors='replace')[-300:]!r}"
        return (f"  {name}: largest file {size:,} bytes; exit {returncode}, {seconds:.2f} s wall, "
                f"{cpu:.2f} s cpu, peak RSS {maxrss / 1024:.0f} MiB; {codes}")


# ---- report


def _revision() -> str:
    """The commit the campaign ran against, and whether kflowgen/ had uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kflowgen"], cwd=PROJECT, capture_output=True,
                               text=True)
        return head.stdout.strip() + (" with uncommitted changes in kflowgen/" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown revision"


def report(results: list[dict], seconds: float, args) -> None:
    n = len(results)
    status = Counter(r["status"] for r in results)
    print(f"campaign: {n} mutated repositories in {seconds:.0f} s ({args.workers} workers, seed {args.seed}, "
          f"{n / max(seconds, 1e-9):.1f}/s), kflowgen at {_revision()}")
    print("outcomes: " + ", ".join(f"{k} {status[k]}" for k in ("ok", "refused", "bug", "harness")))
    codes = Counter(code for r in results for code in r.get("codes", []))
    first = Counter(r["codes"][0] for r in results if r.get("codes"))
    print("refused, by error code (repositories showing it / showing it as the lowest code):")
    for code, count in sorted(codes.items()):
        print(f"  {code} {count:6d} / {first[code]:6d}")
    print(f"CLI runs (kflowgen validate --format json, in process): {sum(1 for r in results if r.get('cli'))}")
    ops = Counter(op for r in results for op in r.get("ops", []))
    print("mutations applied: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    bugs = [r for r in results if r["status"] in ("bug", "harness")]
    groups: dict[str, list[dict]] = {}
    for r in bugs:
        groups.setdefault(r["sig"], []).append(r)
    print(f"bugs and harness errors: {len(bugs)} in {len(groups)} groups")
    for sig, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        r = rs[0]
        print(f"  [{len(rs)}] {sig}")
        print(f"      first: #{r['i']} ({'; '.join(r.get('notes', []))[:300]})")
        print(f"      replay: python bench/fuzz_campaign.py --replay {args.seed}:{r['i']} --keep /tmp/kflowgen-replay")
    loads = sorted(r["load"] for r in results if "load" in r)
    if loads:
        print(f"load time: median {statistics.median(loads) * 1000:.1f} ms, p99 {loads[int(len(loads) * .99)] * 1000:.1f}"
              f" ms, max {loads[-1] * 1000:.0f} ms")
        slow = max((r for r in results if "seconds" in r), key=lambda r: r["seconds"])
        print(f"slowest input: #{slow['i']}, {slow.get('load', 0):.2f} s load, {slow['seconds']:.2f} s in all, "
              f"{slow.get('size', 0):,} bytes of files, {slow['status']} {slow.get('codes', '')}: "
              f"{'; '.join(slow.get('notes', []))[:300]}")
        for r in sorted((r for r in results if "seconds" in r), key=lambda r: -r["seconds"])[1:5]:
            print(f"  next: #{r['i']} {r['seconds']:.2f} s: {'; '.join(r.get('notes', []))[:160]}")


def replay(spec: str, keep: str | None) -> int:
    seed, i = (int(x) for x in spec.split(":"))
    m, cli_too = build(seed, i)
    print("mutations:", *m.notes, sep="\n  ")
    case = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="kflowgen-replay-"))
    if case.exists() and any(case.iterdir()):
        print(f"{case} is not empty", file=sys.stderr)
        return 2
    root = fz.write_mutant(m, case)
    print(f"repository: {root}")
    try:
        o = fz.check(root, cli_too)
        print(f"ok={o.ok} codes={o.codes} load={o.load_seconds:.3f}s")
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=1000, help="mutated repositories to run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-large", action="store_true", help="skip the large-input measurements")
    ap.add_argument("--replay", help="SEED:INDEX of one mutant to rebuild and check")
    ap.add_argument("--keep", help="with --replay: write the mutant here (an empty or new folder)")
    ap.add_argument("--json", help="also write every result to this file")
    args = ap.parse_args()
    if args.replay:
        return replay(args.replay, args.keep)
    start = time.monotonic()
    results = campaign(args.n, args.seed, args.workers)
    seconds = time.monotonic() - start
    report(results, seconds, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if not args.no_large:
        print("large refused inputs, `kflowgen validate --format json` in a subprocess (os.wait4 rusage):")
        for name, m in _large_inputs():
            print(measure(name, m), flush=True)
            del m
    return 1 if any(r["status"] == "bug" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
