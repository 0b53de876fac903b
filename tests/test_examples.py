"""Example folders: every invalid/<CODE>-<slug>/ fails `kflowgen validate` with exactly its expected.txt, at least one
error, and a `fix:` line under every finding (the README promises one); every valid/<slug>/ loads cleanly.

Each example is a set of files laid over a copy of examples/base/ (a small valid repository), in the style of
check-jsonschema's positive/negative folders. Control files at the top of an example folder:

    expected.txt   exact stdout of `kflowgen validate --format text -C <copy>` (regenerate: pytest --update-golden)
    remove.txt     base files to delete, one repository-relative path per line
    symlinks.txt   links to create, one `link -> target` per line (git-friendly: no committed symlinks)
    outside/       files placed beside the copy, not inside it (targets for links that leave the repository)
    xfail.txt      a known kflowgen bug that makes this example fail; the reason is the file's first line. The
                   test is a strict xfail: once the bug is fixed, regenerate with --update-golden and delete
                   xfail.txt (the then-passing example fails the run until you do).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tree_hash  # tests/ is on sys.path: pytest imports tests/conftest.py in prepend mode
from kflowgen import cli
from kflowgen.flow import pipeline
from kflowgen.codes import CODES
from kflowgen.options import Options

EXAMPLES = Path(__file__).resolve().parent / "examples"
BASE = EXAMPLES / "base"
CONTROL = {"expected.txt", "remove.txt", "symlinks.txt", "xfail.txt"}
DIAGNOSTIC = re.compile(r"^specs/[^:]+:\d+:\d+: (error|warning) \[KF\d{3}\] ")
TALLY = re.compile(r"^kflowgen: [1-9]\d* errors?, \d+ warnings?$")

# Codes of the spec stages (KF1xx, KF2xx, KF3xx) that no invalid example can show through `validate`,
# each with the reason (KF312 is reached through a link made from symlinks.txt).
UNREACHABLE: dict[str, str] = {
    "KF337": "only `kflowgen promote` reports it (model to promote not found): tests/test_serving.py",
    "KF338": "only `kflowgen promote` reports it (environment not in the model spec): tests/test_serving.py",
    "KF339": "only `kflowgen promote` and `kflowgen archive` report it (cannot write the spec in place): "
             "tests/test_serving.py, test_cli.py",
    "KF317": "a warning, reported once every spec loads (an example needs an error to fail, and a spec error stops "
             "the check): tests/test_codeowners.py",
}


def _folders(kind: str) -> list[Path]:
    return sorted(p for p in (EXAMPLES / kind).iterdir() if p.is_dir())


def _params(kind: str) -> list:
    params = []
    for folder in _folders(kind):
        marks = []
        if (folder / "xfail.txt").is_file():
            reason = (folder / "xfail.txt").read_text("utf-8").splitlines()[0]
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        params.append(pytest.param(folder, id=folder.name, marks=marks))
    return params


def make_repo(example: Path, tmp_path: Path) -> Path:
    """Copy base to tmp_path/repo and lay the example over it; returns the repository root."""
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    if (example / "remove.txt").is_file():
        for rel in (example / "remove.txt").read_text("utf-8").split():
            (root / rel).unlink()
    for src in sorted(example.rglob("*")):
        rel = src.relative_to(example)
        if not src.is_file() or (len(rel.parts) == 1 and rel.name in CONTROL):
            continue
        dest = tmp_path.joinpath(*rel.parts[1:]) if rel.parts[0] == "outside" else root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
    if (example / "symlinks.txt").is_file():
        for line in (example / "symlinks.txt").read_text("utf-8").splitlines():
            if line.strip():
                link, target = (s.strip() for s in line.split("->"))
                (root / link).parent.mkdir(parents=True, exist_ok=True)
                (root / link).symlink_to(target)
    return root


@pytest.mark.parametrize("example", _params("invalid"))
def test_invalid_example(example: Path, tmp_path: Path, update_golden: bool):
    root = make_repo(example, tmp_path)
    before = tree_hash(root)
    result = CliRunner().invoke(cli.app, ["validate", "--format", "text", "-C", str(root)])
    expected_file = example / "expected.txt"
    if update_golden:
        expected_file.write_bytes(result.stdout.encode("utf-8"))
    expected = expected_file.read_bytes().decode("utf-8") if expected_file.is_file() else "(no expected.txt)\n"
    lines = result.stdout.splitlines()
    located = [ln for ln in lines[:-1] if not ln.startswith("    fix: ")]
    fixed = [ln for ln, after in zip(lines, lines[1:] + [""]) if DIAGNOSTIC.match(ln) and after.startswith("    fix: ")]
    actual = {
        "exit code": result.exit_code,
        "crashed": result.exception is not None and not isinstance(result.exception, SystemExit),
        "stdout": result.stdout,
        "traceback": "Traceback" in result.output,
        "lines without file:line:col": [ln for ln in located if not DIAGNOSTIC.match(ln)],
        "findings without a fix": [ln for ln in located if DIAGNOSTIC.match(ln) and ln not in fixed],
        "errors": sum(" error [KF" in ln for ln in located) > 0,
        "ends with the tally": bool(lines) and bool(TALLY.match(lines[-1])),
        "tree hash": tree_hash(root),
    }
    assert actual == {
        "exit code": 1,
        "crashed": False,
        "stdout": expected,
        "traceback": False,
        "lines without file:line:col": [],
        "findings without a fix": [],
        "errors": True,
        "ends with the tally": True,
        "tree hash": before,
    }, result.output


@pytest.mark.parametrize("example", _params("valid"))
def test_valid_example(example: Path, tmp_path: Path):
    root = make_repo(example, tmp_path)
    model, diags = pipeline.load(Options(root))
    assert diags == [] and model is not None


def test_base_is_valid():
    model, diags = pipeline.load(Options(BASE))
    assert diags == [] and [t.name for t in model.teams] == ["nlp", "vision"]


def test_every_spec_code_has_an_invalid_example():
    names = [f.name for f in _folders("invalid")]
    spec_codes = [c for c in CODES if c[2] in "123"]
    missing = [c for c in spec_codes if c not in UNREACHABLE and not any(n.startswith(c + "-") for n in names)]
    assert missing == []


def test_every_invalid_example_is_named_after_a_code_it_reports():
    bad = []
    for folder in _folders("invalid"):
        if (folder / "xfail.txt").is_file():
            continue
        code = folder.name.split("-", 1)[0]
        expected = (folder / "expected.txt").read_text("utf-8") if (folder / "expected.txt").is_file() else ""
        if code not in CODES or f"[{code}]" not in expected:
            bad.append(folder.name)
    assert bad == []
