"""CODEOWNERS: who a pull request asks to review which files. The gate warns (KF317) when a team's experiments and
models, or the platform-owned files (the platform file, team files with their quotas, bases/, schemas/, the CI
workflows), would reach main with no owner asked: CODEOWNERS with branch protection is what keeps a data scientist's
pull request from changing what only the platform team may change, and one team from approving another's."""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from kflowgen.diagnostics import Diagnostic, warning

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF317": "CODEOWNERS does not give a team's or the platform's files to reviewers",
}

# Where GitHub (first three, in its order of preference) and GitLab look for the file.
LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")
# Platform-owned paths: a file in each must have an owner.
PLATFORM = ("specs/platform.yaml", "specs/teams/", "bases/", "schemas/", ".github/workflows/", "overlays/")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Rule:
    line: int
    pattern: str
    owners: tuple[str, ...]


def parse(text: str) -> list[Rule]:
    """The rules of a CODEOWNERS file, in file order (the last rule that matches a path decides its owners)."""
    rules = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split("#", 1)[0].split() if " #" in line else line.split()
        rules.append(Rule(n, words[0].replace("\\#", "#"), tuple(words[1:])))
    return rules


def _regex(pattern: str) -> re.Pattern:
    """A CODEOWNERS pattern (gitignore-like, as GitHub reads it) as a regular expression over file paths."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    folder = pattern.endswith("/")
    body = pattern.strip("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    last = body.rsplit("/", 1)[-1]
    # a folder (or a plain name, which may be one) owns everything below it; `docs/*` only what is directly in docs
    tail = "/.*" if folder else "" if _GLOB.search(last) else "(?:/.*)?"
    return re.compile(("^" if anchored else "^(?:.*/)?") + "".join(out) + tail + "$", re.DOTALL)


class Owners:
    """Answers "who owns this path" for many paths: rules without wildcards are looked up by the path's folders
    (a thousand teams' rules cost a dictionary lookup each), the others are matched one by one."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.anchored: dict[str, list[int]] = {}  # literal path -> rule indexes
        self.names: dict[str, list[int]] = {}  # literal name matched at any depth -> rule indexes
        self.globs: list[tuple[int, re.Pattern]] = []
        for i, rule in enumerate(rules):
            p = rule.pattern
            if _GLOB.search(p):
                self.globs.append((i, _regex(p)))
            elif p.startswith("/") or "/" in p.rstrip("/"):
                self.anchored.setdefault(p.strip("/"), []).append(i)
            else:
                self.names.setdefault(p.rstrip("/"), []).append(i)

    def rule(self, path: str) -> Rule | None:
        """The rule that decides path's owners (the last one matching), or None."""
        parts = path.split("/")
        best = -1
        for depth in range(1, len(parts) + 1):
            here = "/".join(parts[:depth])
            for i in self.anchored.get(here, ()):
                if depth < len(parts) or not self.rules[i].pattern.endswith("/"):
                    best = max(best, i)
            for i in self.names.get(parts[depth - 1], ()):
                if depth < len(parts) or not self.rules[i].pattern.endswith("/"):
                    best = max(best, i)
        for i, rx in reversed(self.globs):
            if i <= best:
                break
            if rx.match(path):
                best = i
                break
        return self.rules[best] if best >= 0 else None


def find(root: Path) -> str | None:
    for rel in LOCATIONS:
        if os.path.lexists(root / rel):
            return rel
    return None


MAX_BYTES = 3 * 2**20  # GitHub ignores a CODEOWNERS file of 3 MB or more


def read(root: Path, rel: str) -> str | None:
    """The file's text, or None when it is not a regular file or too large (opened without blocking, read no further
    than the limit)."""
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES)
        return None if len(data) >= MAX_BYTES else data.decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def check(root: Path, model) -> list[Diagnostic]:
    """KF317 warnings: no CODEOWNERS (or one GitHub would ignore); a platform-owned path, this file itself or a team
    file (its quota) whose owners are not the platform file's; a team's experiments or models without a line of
    their own (falling to the platform's, or shared with another team)."""
    rel = find(root)
    platform = model.platform.source.path
    if rel is None:
        return [warning(platform, (1, 1), "KF317", "no CODEOWNERS file: a pull request asks nobody in particular to "
                        "review specs, quotas or bases", "add .github/CODEOWNERS giving specs/platform.yaml, "
                        "specs/teams/, bases/, schemas/ and .github/ to the platform team and each "
                        "specs/experiments/<team>/ and specs/models/<team>/ to that team (`kflowgen init` writes one)")]
    text = read(root, rel)
    if text is None:
        return [warning(rel, (1, 1), "KF317", f"{rel} is not a plain file under 3 MB: GitHub ignores it, so a pull "
                        "request asks nobody in particular to review", "keep CODEOWNERS a plain text file")]
    owners = Owners(parse(text))
    platform_rule = owners.rule(PLATFORM[0])
    if platform_rule is None or not platform_rule.owners:
        return [warning(rel, (platform_rule.line, 1) if platform_rule else (1, 1), "KF317",
                        f"no owner for {PLATFORM[0]} in {rel}: a pull request changing it asks nobody to review",
                        f"add a line: /{PLATFORM[0]} @<your platform team>")]
    team_files = [(f"specs/teams/{t.source.path.rsplit('/', 1)[1]}", t) for t in model.teams]
    probes = [(path + "x" if path.endswith("/") else path, path) for path in PLATFORM[1:]] + [
        (rel, rel), *((path, path) for path, _ in team_files)]
    for folder in ("bases/", "schemas/", ".github/workflows/"):  # and what is there now
        probes += [(f.relative_to(root).as_posix(), folder) for f in sorted((root / folder).rglob("*"))[:1000]
                   if f.is_file()]
    out, said = [], set()
    for probe, path in probes:
        rule = owners.rule(probe)
        if path not in said and (rule is None or set(rule.owners) != set(platform_rule.owners)):
            said.add(path)
            out.append(warning(rel, (rule.line, 1) if rule else (1, 1), "KF317", f"{path} is not owned by "
                               f"{' '.join(platform_rule.owners)}, who own {PLATFORM[0]}, in {rel}: "
                               + ("nobody is asked to review it" if rule is None or not rule.owners else
                                  f"{' '.join(rule.owners)} can approve changes to it alone"),
                               f"give /{path} to {' '.join(platform_rule.owners)}"))
    deciding: dict[int, set[str]] = {}  # rule line -> teams whose folders it decides
    bare: dict[str, list[str]] = {}
    for t in model.teams:
        for folder in (f"specs/experiments/{t.name}/", f"specs/models/{t.name}/"):
            rule = owners.rule(folder + "x.yaml")
            if rule is None or not rule.owners or rule is platform_rule:
                bare.setdefault(t.name, []).append(folder)
            else:
                deciding.setdefault(rule.line, set()).add(t.name)
    for t in model.teams:
        shared = [line for line, teams in deciding.items() if t.name in teams and len(teams) > 1]
        folders = bare.get(t.name, [])
        if folders or shared:
            why = (f"{' and '.join(folders)} {'have' if len(folders) > 1 else 'has'} no owner of their own in {rel}"
                   if folders else f"line {min(shared)} of {rel} gives its folders to the same owners as other "
                   "teams' folders")
            out.append(warning(t.source.path, t.source.at("/name"), "KF317",
                               f"{why}: team {t.name} is not asked to review changes to its experiments and models",
                               "; ".join(f"add a line: /{folder} @<team {t.name}>" for folder in
                                         folders or (f"specs/experiments/{t.name}/", f"specs/models/{t.name}/"))))
    return out


def team_lines(text: str, team: str) -> str:
    """CODEOWNERS lines giving a new team its experiments, models and workloads, for an owner in the organisation the
    file already names (or a placeholder)."""
    org = next((o.split("/", 1)[0] for rule in parse(text) for o in rule.owners if o.startswith("@") and "/" in o),
               "@your-org")
    owner = f"{org}/{team}"
    return "".join(f"{pattern:<40}{owner}\n" for pattern in (f"/specs/experiments/{team}/", f"/specs/models/{team}/",
                                                               f"/overlays/*/teams/{team}/workloads/"))
