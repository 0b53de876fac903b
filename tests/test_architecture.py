"""The shape of the codebase, checked: stages import only stages below them (no cycle), no module is too long to
read, every error code has one owner and one title, and the command line starts without loading the stages."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import kflowgen
from kflowgen import codes

PACKAGE = Path(kflowgen.__file__).parent

# Lowest first: a module may import from its own layer or a lower one, never from a higher one.
LAYERS = (
    ("kflowgen", "kflowgen.diagnostics", "kflowgen.options", "kflowgen.parallel", "kflowgen.cache",
     "kflowgen.survey", "kflowgen.ahead", "kflowgen.tools", "kflowgen.upstream"),
    ("kflowgen.specs",),
    ("kflowgen.targets",),
    ("kflowgen.rules",),
    ("kflowgen.write",),
    ("kflowgen.build",),
    ("kflowgen.checks",),
    ("kflowgen.report",),
    ("kflowgen.flow",),
    ("kflowgen.codes",),
    ("kflowgen.cli", "kflowgen.__main__"),
)
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """kflowgen modules that `name` imports anywhere in its body (function-level imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                found.add(target)
    return found


def layer(name: str) -> int:
    best = max((p for ps in LAYERS for p in ps if name == p or name.startswith(p + ".")), key=len)
    return next(i for i, ps in enumerate(LAYERS) if best in ps)


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_is_in_a_layer():
    assert [m for m in GRAPH if not any(m == p or m.startswith(p + ".") for ps in LAYERS for p in ps)] == []


def test_stages_import_only_stages_below():
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps if layer(d) > layer(m))
    assert upward == []


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_module_is_short(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


# --- error codes ------------------------------------------------------------------------------------------------

LITERAL = re.compile(r'"(KF\d{3})"')


def test_every_code_kflowgen_reports_has_a_title():
    used = {c for path in modules().values() for c in LITERAL.findall(path.read_text())}
    assert sorted(used - set(codes.CODES)) == []


@pytest.mark.parametrize("owner", codes.OWNERS, ids=lambda m: m.__name__)
def test_a_module_declares_codes_it_reports(owner):
    """The owner of a code raises it: its own source names it (a policy module, its CODE)."""
    path = Path(owner.__file__)
    sources = [path] if path.name != "__init__.py" else sorted(path.parent.glob("*.py"))
    text = "\n".join(p.read_text() for p in sources)
    assert owner.CODES and [c for c in owner.CODES if f'"{c}"' not in text] == []


def test_a_code_declared_twice_is_refused():
    a, b = ModuleType("a"), ModuleType("b")
    a.CODES, b.CODES = {"KF998": "x", "KF999": "y"}, {"KF999": "z"}
    assert codes.assemble((a,)) == {"KF998": "x", "KF999": "y"}
    with pytest.raises(ValueError, match="KF999 is declared by both a and b"):
        codes.assemble((a, b))


def test_titles_are_written_once():
    """No title is written as a string in two modules: the table is assembled, never copied."""
    texts = {m: p.read_text() for m, p in modules().items()}
    copies = {code: [m for m, t in texts.items() if f'"{title}"' in t] for code, title in codes.CODES.items()}
    assert {c: ms for c, ms in copies.items() if len(ms) > 1} == {}


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists the packages by hand: a new subpackage missing there is missing from a user's install."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, path in modules().items() if path.name == "__init__.py"}
    assert sorted(packages - listed) == []


# --- start-up ---------------------------------------------------------------------------------------------------

# What a command imports inside it, never the command line itself: the stages, YAML, JSON Schema, the kustomize
# and kubeconform runners, progress bars, process pools.
STAGES = ("kflowgen.specs", "kflowgen.targets", "kflowgen.rules", "kflowgen.write", "kflowgen.build",
          "kflowgen.checks", "kflowgen.flow", "kflowgen.codes", "kflowgen.tools", "kflowgen.cache", "yaml",
          "jsonschema", "jsonschema_rs", "multiprocessing", "concurrent.futures")
HEAVY = STAGES + ("rich",)


def loaded_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after running statement, from this checkout."""
    code = f"import json, sys\ntry:\n    {statement}\nexcept SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def of(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in names if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_importing_the_command_line_loads_no_stage():
    assert of(loaded_after("import kflowgen.cli"), HEAVY) == []


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["gate", "--help"], ["version"]])
def test_help_loads_no_stage(argv):
    """`kflowgen --help` and a command's help load none of them (typer draws its help with rich, so rich may)."""
    assert of(loaded_after(f"from kflowgen.cli import app; app({argv!r})"), STAGES) == []


def test_the_start_up_check_sees_a_stage_when_one_is_loaded():
    assert of(loaded_after("import kflowgen.cli, kflowgen.flow.pipeline"), HEAVY) != []
