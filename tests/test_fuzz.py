"""Fuzz the spec stages: mutated copies of the example repository's specs end in exit 0 with output that parses,
or in exit 1 with located diagnostics; never a traceback, a hang or a changed file.

A mutant starts from the project's own specs/ and bases/ and applies one to three mutations:

- text level (so YAML hazards are exercised): a value replaced by another type or a number that is huge,
  negative, zero or NaN-like, a key deleted, added (unknown) or duplicated, unicode (RTL, emoji, NUL, control
  characters, lone surrogates as escapes), deeper nesting, YAML syntax (tabs, anchors and aliases, an alias
  bomb, tags such as !!python/object, a second document, a BOM, directives, CRLF), truncation at a random byte,
  growth to near and above the 1 MiB limit;
- data level: the spec as kflowgen reads it, mutated as data and written back with yaml.safe_dump (in one of
  several styles), then possibly mutated again as text;
- field level: edge values for the fields the rules and the renderer compute with (sweep ranges, trials and
  seeds, workers, replicas, cpu and memory quantities, GPU counts and capacities, paths, images, namespaces);
- file level: renaming a team, experiment or model (alone, with its file, or everywhere it is referenced),
  deleting, copying or renaming spec files (unicode, newline and non-UTF-8 file names), links that stay in or
  leave the repository, a folder where a spec file is expected.

The property, for every mutant: `pipeline.load` raises nothing; each diagnostic names a spec file under specs/
with line >= 1 and col >= 1 (and a line inside the file), a code of kflowgen.diagnostics.CODES and a message;
with no error, `render.render(model)` succeeds and every rendered file parses with yaml.safe_load; nothing in
the repository changes. `kflowgen validate --format json` (in process, catch_exceptions=False) runs on a part of
the refused mutants, which stop before kustomize.

The generators draw through a Chooser: hypothesis drives them here (a short, derandomized run),
random.Random drives them in bench/fuzz_campaign.py (the long campaign), so both run the same mutations.
Every bug the campaign found has a minimal reproducer in test_found_bug (and test_found_bug_variants) that
asserts the correct behaviour. While a bug is open it is listed in KNOWN_BUGS (exception type and the kflowgen
function it escapes from): the property run passes over it and its reproducer is a strict xfail; once fixed,
the xfail passes, which fails the run until the entry moves to FIXED, where the reproducer is a regression test.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import PROJECT  # tests/ is on sys.path (pytest prepend mode; the campaign adds it)
from conftest import tree_hash as _tree_hash
from kflowgen import cli
from kflowgen.flow import pipeline
from kflowgen.codes import CODES
from kflowgen.specs.loader import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_text
from kflowgen.targets import render
from kflowgen.options import Options
from kflowgen.specs import discover

try:
    from yaml import CSafeLoader as _OutputLoader  # yaml.safe_load semantics, C speed
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _OutputLoader

PLATFORM = discover.PLATFORM
TIME_LIMIT = 20  # seconds one mutant may take before it counts as a hang

# Open kflowgen bugs the generators hit (found by bench/fuzz_campaign.py): name -> (exception types, the kflowgen
# functions it escapes from (innermost kflowgen frame), what is wrong). test_found_bug pins each one with a strict
# xfail; the property run passes over them. Example entry, as it was until commit 0a81228 fixed it:
#     "integer-as-float": (("TypeError", "AttributeError"),
#                          ("kflowgen/experiments.py:_random_trials", "rules/experiments.py:_total"),
#                          "JSON Schema's integer accepts 6.0: trials: 6.0 reaches range()"),
KNOWN_BUGS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {}
# Bugs the campaign found that are fixed; test_found_bug and test_found_bug_variants keep their reproducers as
# regression tests (exit 1 with located diagnostics, through the CLI too).
FIXED = {
    "int-digits": "an unquoted integer of more than 4300 digits: ValueError in loader._scalar (fixed in d106655: "
                  "KF204, whole numbers of at most 32 digits)",
    "int-sum": "a 4300-digit GPU quota plus another team's: ValueError in str() in the KF306 message (d106655)",
    "cpu-finer-than-1m": "cpu: 0.0001 in an experiment, a model or a quota: ValueError in quantity.cpu (d106655)",
    "symlink-loop": "a spec file that is a link loop: RuntimeError in pipeline._inside (d106655: KF312)",
    "integer-as-float": "trials: 6.0, workers: 2.0, replicas: 3.0 pass JSON Schema's integer as floats: TypeError "
                        "and AttributeError in the rules (fixed in 0a81228: integers must be ints)",
    "range-whole-numbers": "a random-sweep range with integer: true and max: 1e300: decimal.InvalidOperation in "
                           "rules/experiments._range_problem (0a81228: bounds within 1e15)",
    "quantity-digits": "quoted quantities without a length limit: memory \"<5000 digits>Gi\" -> ValueError in "
                       "quantity.parse, a 400-digit cpu -> OverflowError in render.hub_values, a 320-digit memory "
                       "-> OverflowError in rules/experiments._total (0a81228: maxLength and maximum)",
}


def known_bug(e: BaseException) -> str | None:
    """The KNOWN_BUGS entry an exception is, if any."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/kflowgen/" in f.filename]
    if not frames:
        return None
    where = "/".join(Path(frames[-1].filename).parts[-2:]) + ":" + frames[-1].name
    for name, (types, functions, _) in KNOWN_BUGS.items():
        if type(e).__name__ in types and where in functions:
            return name
    return None


# --------------------------------------------------------------------------------------------------------------
# The base repository and mutants


def _base_files() -> dict[str, bytes]:
    out = {}
    for top in ("specs", "bases"):
        for p in sorted((PROJECT / top).rglob("*")):
            if p.is_file():
                out[p.relative_to(PROJECT).as_posix()] = p.read_bytes()
    return out


BASE: dict[str, bytes] = _base_files()


@dataclass(frozen=True)
class Link:
    """A symbolic link in place of a spec file (git stores links)."""

    target: str


@dataclass(frozen=True)
class Folder:
    """A folder where a spec file is expected (named like one)."""


Entry = bytes | Link | Folder


@dataclass
class Mutant:
    files: dict[str, Entry]
    outside: dict[str, bytes] = field(default_factory=dict)  # beside the repository: targets of links leaving it
    notes: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)

    def specs(self) -> list[str]:
        return sorted(rel for rel, e in self.files.items() if rel.startswith("specs/") and isinstance(e, bytes))

    def size(self) -> int:
        return sum(len(e) for e in self.files.values() if isinstance(e, bytes))


def write_mutant(m: Mutant, case: Path) -> Path:
    """Write the mutant to case/repo (and its outside files to case/); returns the repository root."""
    root = case / "repo"
    root.mkdir(parents=True)
    for rel, data in sorted(m.outside.items()):
        (case / rel).parent.mkdir(parents=True, exist_ok=True)
        (case / rel).write_bytes(data)
    for rel, entry in sorted(m.files.items(), key=lambda kv: (isinstance(kv[1], Link), kv[0])):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(entry, Link):
            os.symlink(entry.target, path)
        elif isinstance(entry, Folder):
            path.mkdir(exist_ok=True)
            (path / "inside.yaml").write_bytes(BASE[PLATFORM])
        else:
            path.write_bytes(entry)
    return root


def as_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def as_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate written raw: not UTF-8, as an editor could not write it either
        return text.encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------------------------------------------
# Choosers: one interface, two drivers


class Chooser:
    """The only source of choices for the generators."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def pick(self, seq):
        return seq[self.integer(0, len(seq) - 1)]

    def coin(self, percent: int = 50) -> bool:
        return self.integer(0, 99) < percent


class RandomChooser(Chooser):
    def __init__(self, rng):
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class DataChooser(Chooser):
    def __init__(self, data):
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


# --------------------------------------------------------------------------------------------------------------
# Values: text, numbers, names, YAML fragments

POOLS: dict[str, list[str]] = {
    "ascii": list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_./@ "),
    "indicator": list(":#-?,[]{}&*!|>'\"%@`\\~=<"),
    "space": [" ", "\t", "  "],
    "control": ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x80", "\x9f"],
    "break": ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"],
    "rtl": ["\u202e", "\u200f", "\u202b", "\u2067", "\u061c", "שלום", "مرحبا"],
    "invisible": ["\u200b", "\u200d", "\ufeff", "\u2060", "\u00ad"],
    "emoji": ["😀", "👩\u200d💻", "🏳\ufe0f\u200d🌈", "🇩🇪", "🧑🏽", "\U0001f4a9"],
    "letters": ["é", "e\u0301", "ß", "İ", "ﬁ", "\u212a", "漢字", "ｆｕｌｌ", "а", "ǅ", "\u0336"],
    "special": ["\ufffe", "\uffff", "\ufffd", "\U0010ffff", "\ue000"],
    "surrogate": ["\ud800", "\udfff", "\udc80", "\ud83d"],
}
POOL_NAMES = sorted(POOLS)


def utext(c: Chooser, max_len: int = 12) -> str:
    """Short text from the hazard pools."""
    return "".join(c.pick(POOLS[c.pick(POOL_NAMES)]) for _ in range(c.integer(0, max_len)))


def yaml_double(s: str, escape_all: bool = False) -> str:
    """A double-quoted YAML scalar; characters YAML does not allow raw become escapes (lone surrogates too)."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif (o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or o in (0xFEFF, 0xFFFE, 0xFFFF, 0x2028, 0x2029)
              or (escape_all and o > 0x7E)):
            out.append(f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def quoted(c: Chooser, s: str) -> str:
    """s as YAML text in one of several styles, some of them invalid for some s (that is the point)."""
    style = c.pick(["double", "double", "escape-all", "raw-double", "single", "plain"])
    if style == "double":
        return yaml_double(s)
    if style == "escape-all":
        return yaml_double(s, escape_all=True)
    if style == "raw-double":
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "single":
        return "'" + s.replace("'", "''") + "'"
    return s


def huge_digits(c: Chooser) -> str:
    """Many decimal digits: around what int() converts (4300) and str() prints."""
    lengths = [20, 32, 33, 400, 4000, 4300, 4301, 5000, 20000]
    digits = "9" * c.pick(lengths)
    return c.pick(["", "-", "+"]) + digits


NUMBERS = ["0", "-0", "1", "-1", "+1", "2", "7", "42", "100", "255", "256", "65536", "2147483647", "2147483648",
           "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1" + "0" * 30, "0x10", "0o17",
           "0b101", "0x", "1_000", "0777", "007", "1:30", "-1:30", "190:20:30", "0.0", "-0.0", "0.5", "0.001", ".5",
           "5.", "1e-3", "1E3", "1e400", "-1e400", "1e-400", "1.7976931348623157e308", "4.9e-324", "6.02e23",
           ".nan", ".NaN", ".NAN", "nan", "NaN", ".inf", "-.inf", "+.inf", ".Inf", "inf", "Infinity",
           "1" + "0" * 400 + ".0", "0." + "0" * 400 + "1", "1e99999999999999999999", "0.0001", "1.0005", "0.0015"]


def number(c: Chooser) -> str:
    return huge_digits(c) if c.coin(10) else c.pick(NUMBERS)


SCALARS = ["true", "false", "True", "FALSE", "yes", "no", "No", "on", "off", "y", "n", "null", "~", "Null", "",
           "2024-01-01", "2024-1-1 10:00:00", "2001-12-14t21:59:43.10-05:00", "'quoted'", '"double"', "a: b",
           "- a", "#", "'", '"', "|", ">", "|-\n  text", "@at", "`tick", "%pct", "&", "*", "!", "? x", ": x"]
FLOWS = ["[]", "{}", "[1, 2]", "{a: 1}", "[[]]", "[{}]", "{a: [b, {c: d}]}", '["x", 1, true, null]', "[a, a]",
         "{a: 1, a: 2}", "{? [a]: b}", "[a: 1]", "{name: x}", "[,]", "{,}", "[a", "{a: 1"]
TAGS = ["!!str 5", "!!int 5", '!!int "x"', "!!int 0x_", "!!float 1", '!!float "1e400"', "!!bool true",
        '!!bool "yes"', "!!null ~", '!!null "x"', "!!binary aGk=", "!!timestamp 2024-01-01",
        "!!python/object/apply:os.system ['echo pwned']", "!!python/object:__main__.X {}", "!!python/name:os.system",
        "!!python/tuple [1, 2]", "!custom x", "!<tag:yaml.org,2002:str> x", "!<!> x", "! x", "!!set {a}",
        "!!omap [a: 1]", "!!map {a: 1}", "!!seq [1]", "!!merge x", "!!value x", "!e!x y"]


def literal(c: Chooser, flow: bool, indent: int) -> str:
    """YAML text for one value, of any type; block collections only outside flow context."""
    kind = c.pick(["number", "number", "scalar", "flow", "string", "long", "tagged", "anchor", "deep", "block"])
    if kind == "number":
        return number(c)
    if kind == "scalar":
        return c.pick(SCALARS)
    if kind == "flow":
        return c.pick(FLOWS)
    if kind == "string":
        return quoted(c, utext(c))
    if kind == "long":
        return yaml_double(c.pick(["x", "é", "😀", "a-", "9"]) * c.pick([64, 254, 1001, 4097, 70_000]))
    if kind == "tagged":
        return c.pick(TAGS)
    if kind == "anchor":
        return c.pick(["&a 1", "&a [1, 2]", "&a {x: 1}", "*a", "*undefined", "&a", "&a *a"])
    if kind == "deep":
        return nested_text(c, flow=True, indent=indent)
    if flow:
        return c.pick(FLOWS)
    pad = " " * indent
    return c.pick([f"\n{pad}- a\n{pad}- b", f"\n{pad}a: 1\n{pad}b: [2]", f"\n{pad}- - 1\n{pad}  - 2",
                   f"|\n{pad}line one\n{pad}line two", f">-\n{pad}folded\n{pad}text"])


def nested_text(c: Chooser, flow: bool, indent: int) -> str:
    depth = c.pick([2, MAX_DEPTH - 3, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 100, 10_000])
    if flow or depth > 200:
        if c.coin():
            return "[" * depth + "1" + "]" * depth
        return "{a: " * depth + "1" + "}" * depth
    lines = [""] + [" " * (indent + 2 * i) + "a:" for i in range(depth)]
    return "\n".join(lines) + " 1"


def new_name(c: Chooser, old: str, others: list[str]) -> str:
    """A new name for a team, experiment or model: valid, reserved, taken, too long or malformed."""
    return c.pick([
        old + "2", "a", "z9", "a-b", "ab", "x" * 30, "x" * 40, "x" * 41, "x" * 63, "x" * 64, "x" * 253, "a" * 1000,
        old.upper(), old + "-", "-" + old, "1" + old, old + "_x", old + ".x", "kube-system", "default",
        "kube-public", "kube-node-lease", "argocd", "jupyterhub", c.pick(others or [old]), "", " " + old, old + " ",
        old[:-1] + "\u0440", "ñlp", "../x", "x/y", utext(c),
    ])


def pyvalue(c: Chooser, depth: int = 0):
    """A Python value of any type yaml.safe_dump can write."""
    kind = c.pick(["int", "float", "bool", "null", "str", "numstr", "unicode", "long", "list", "dict"])
    if kind == "int":
        return c.pick([0, -1, 1, 2, 7, 100, 2**31, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**300])
    if kind == "float":
        return c.pick([0.0, -0.0, 0.5, 1e-3, 1e300, 1.7976931348623157e308, float("nan"), float("inf"),
                       float("-inf"), 2.5, 6.0, 1e-300, 5e-324, 0.0001, 1.0005])
    if kind == "bool":
        return c.coin()
    if kind == "null":
        return None
    if kind == "str":
        return c.pick(["", "x", "a-b", "Gi", "16Gi", "1Ti", "0.5", "500m", "-1", "6h", "0s", "30m", "1e3Gi",
                       "https://x", "registry.example.com/ml/x:1", "docker.io/x:latest", "python x.py", "a/b"])
    if kind == "numstr":  # strings a YAML 1.1 writer leaves plain but kflowgen may read as numbers
        return c.pick(["1e-3", "1e400", ".nan", "0777", "12", "1.0", "2024-01-01", "yes", "0x10", "1_000", "1:30"])
    if kind == "unicode":
        return utext(c, 20)
    if kind == "long":
        return c.pick(["x", "é", "😀", "a b "]) * c.pick([41, 64, 254, 1001, 4097, 70_000])
    if depth > 3:
        return None
    if kind == "list":
        return [pyvalue(c, depth + 1) for _ in range(c.integer(0, 3))]
    keys = [c.pick(["a", "name", "cpu", "", "x y", "\u202ename"]) if c.coin(80) else c.pick([1, True, None, 1.5])
            for _ in range(c.integer(0, 3))]
    return {k: pyvalue(c, depth + 1) for k in keys}


# --------------------------------------------------------------------------------------------------------------
# Where things are in a YAML text


class Node(NamedTuple):
    path: tuple
    key: bool  # a mapping key (else a value or item)
    kind: str  # scalar, map, seq
    start: int  # character offsets into the text
    end: int
    line: int  # 0-based
    col: int
    flow: bool


@functools.lru_cache(maxsize=512)
def structure(text: str) -> tuple[Node, ...]:
    """The nodes of a (small, parseable) YAML text with their character spans; () when it does not parse."""
    if len(text) > 65536:
        return ()
    nodes: list[Node] = []
    stack: list[list] = []  # [kind, flow, path, count, last key, node index]
    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):  # the pure parser: marks count characters
            if len(stack) > 40:  # deeper than specs go (and than the loader accepts): the outer nodes will do
                break
            if isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                is_key, path, flow = False, (), False
                if stack:
                    top = stack[-1]
                    if top[0] == "map":
                        is_key = top[3] % 2 == 0
                        if is_key:
                            top[4] = ev.value if isinstance(ev, yaml.ScalarEvent) else "?"
                        path = top[2] + (top[4],)
                    else:
                        path = top[2] + (top[3],)
                    top[3] += 1
                    flow = top[1]
                m = ev.start_mark
                if isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent)):
                    nodes.append(Node(path, is_key, "scalar", m.index, ev.end_mark.index, m.line, m.column, flow))
                else:
                    kind = "map" if isinstance(ev, yaml.MappingStartEvent) else "seq"
                    flow = flow or bool(ev.flow_style)
                    stack.append([kind, flow, path, 0, None, len(nodes)])
                    nodes.append(Node(path, is_key, kind, m.index, -1, m.line, m.column, flow))
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                top = stack.pop()
                nodes[top[5]] = nodes[top[5]]._replace(end=ev.end_mark.index)
    except yaml.YAMLError:
        pass
    return tuple(n for n in nodes if n.end >= n.start)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_col(text: str, index: int) -> tuple[int, int]:
    """0-based line and column of a character, with only newline as a line break (as text.split does; the
    YAML marks in Node also count CR, NEL, LS and PS)."""
    start = _line_start(text, index)
    return text.count("\n", 0, index), index - start


def _indent_at(text: str, index: int) -> int:
    start = _line_start(text, index)
    line = text[start:index]
    return len(line) - len(line.lstrip(" -"))


def _block_end(lines: list[str], i: int, col: int) -> int:
    """Index of the first line after line i's block (lines indented deeper than col, blanks and comments)."""
    j = i + 1
    while j < len(lines):
        stripped = lines[j].lstrip(" ")
        if stripped.strip() and not stripped.startswith("#") and len(lines[j]) - len(stripped) <= col:
            break
        j += 1
    return j


def where(path: tuple) -> str:
    """A path for the notes, shortened."""
    text = "/".join(repr(p) if not isinstance(p, (str, int)) or p == "" else str(p) for p in path) or "(top)"
    return text if len(text) <= 80 else text[:60] + f"...({len(path)} levels)"


def splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


# --------------------------------------------------------------------------------------------------------------
# Mutations. Each takes the chooser and the mutant, changes one spec file (or the file set), and notes what it did.

Op = Callable[[Chooser, Mutant], None]


def _pick_spec(c: Chooser, m: Mutant) -> str | None:
    specs = m.specs()
    return c.pick(specs) if specs else None


def _text_op(fn: Callable[[Chooser, str, str], tuple[str, str]]) -> Op:
    """Wrap a text -> text mutation of one spec file."""

    def op(c: Chooser, m: Mutant) -> None:
        rel = _pick_spec(c, m)
        if rel is None:
            return
        text, note = fn(c, as_text(m.files[rel]), rel)
        m.files[rel] = as_bytes(text)
        m.notes.append(f"{rel}: {note}")

    op.__name__ = fn.__name__
    return op


@_text_op
def t_value(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Replace a value (scalar or collection) with a value of another type."""
    values = [n for n in structure(text) if not n.key and n.path]
    if not values:
        return text + "\nextra: " + literal(c, False, 2) + "\n", "appended a value (no structure)"
    n = c.pick(values)
    new = literal(c, n.flow, _indent_at(text, n.start) + 2)
    return splice(text, n.start, n.end, new), f"value at {where(n.path)} -> {new[:60]!r}"


@_text_op
def t_number(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Replace a number (or any scalar) with a huge, negative, zero, NaN-like or YAML 1.1 number."""
    scalars = [n for n in structure(text) if not n.key and n.kind == "scalar" and n.path]
    numeric = [n for n in scalars if re.fullmatch(r"[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?", text[n.start:n.end])]
    if not (numeric or scalars):
        return text, "no scalar"
    n = c.pick(numeric or scalars)
    new = number(c)
    return splice(text, n.start, n.end, new), f"number at {where(n.path)} -> {new[:40]!r}"


@_text_op
def t_delete_key(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Delete a key (and its value): a required one often."""
    keys = [n for n in structure(text) if n.key]
    if not keys:
        lines = text.splitlines(keepends=True)
        if lines:
            del lines[c.integer(0, len(lines) - 1)]
        return "".join(lines), "deleted a line (no structure)"
    n = c.pick(keys)
    if n.flow:
        value_end = next((v.end for v in structure(text) if not v.key and v.path == n.path and v.start >= n.end),
                         n.end)
        tail = re.match(r"\s*,\s*", text[value_end:])
        return splice(text, n.start, value_end + (tail.end() if tail else 0), ""), f"deleted flow key {where(n.path)}"
    lines = text.split("\n")
    line, col = _line_col(text, n.start)
    j = _block_end(lines, line, col)
    prefix = lines[line][:col]
    if prefix.strip() and j < len(lines) and len(lines[j]) - len(lines[j].lstrip(" ")) == col:
        lines[line: j + 1] = [prefix + lines[j][col:]]  # '- key: v' followed by a sibling key: keep the '- '
    else:
        del lines[line: j]
    return "\n".join(lines), f"deleted key {where(n.path)}"


def _unknown_key(c: Chooser, siblings: list[str]) -> str:
    if siblings and c.coin(40):  # a typo of a real key: the did-you-mean path
        k = c.pick(siblings)
        i = c.integer(0, max(len(k) - 1, 0))
        return c.pick([k[:i] + k[i + 1:], k.upper(), k + "s", k[:i] + k[i:i + 2][::-1] + k[i + 2:], k + " ", "_" + k])
    return c.pick(["unknown", "x", "Name", "nmae", "namespace", "apiVersion", "kind", "spec", "metadata", "$schema",
                   "é", "😀", "a" * 300, quoted(c, utext(c)), '""', "'x y'", "1", "true", "~", "null", "[a]",
                   "{a: 1}", "? x", "<<"])


@_text_op
def t_add_key(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Add an unknown key to some mapping."""
    nodes = structure(text)
    maps = [n for n in nodes if n.kind == "map"]
    if not maps:
        return text + "\nunknown: 1\n", "appended an unknown key (no structure)"
    n = c.pick(maps)
    siblings = [str(k.path[-1]) for k in nodes if k.key and k.path[:-1] == n.path]
    key = _unknown_key(c, siblings)
    if n.flow:
        at = text.index("{", n.start) + 1 if "{" in text[n.start:n.end] else n.start
        new = f"{key}: {literal(c, True, 0)}, "
        return splice(text, at, at, new), f"unknown flow key {key[:40]!r} under {where(n.path)}"
    start = _line_start(text, n.start)
    col = n.start - start
    new = f"{' ' * col}{key}: {literal(c, False, col + 2)}\n"
    if text[start:n.start].strip():  # the mapping starts after '- ' on its line: add the key on the next line
        end = text.find("\n", n.start)
        at = len(text) if end < 0 else end + 1
        return splice(text, at, at, new), f"unknown key {key[:40]!r} under {where(n.path)}"
    return splice(text, start, start, new), f"unknown key {key[:40]!r} under {where(n.path)}"


@_text_op
def t_duplicate_key(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Write a key twice (the text level is the only place a duplicate can exist)."""
    keys = [n for n in structure(text) if n.key]
    if not keys:
        return text + "\nname: a\nname: b\n", "appended a duplicate key (no structure)"
    n = c.pick(keys)
    if n.flow:
        value = next((v for v in structure(text) if not v.key and v.path == n.path and v.start >= n.end), None)
        end = value.end if value else n.end
        return splice(text, n.start, n.start, text[n.start:end] + ", "), f"duplicate flow key {where(n.path)}"
    lines = text.split("\n")
    line, col = _line_col(text, n.start)
    j = _block_end(lines, line, col)
    block = lines[line: j]
    block[0] = " " * col + block[0][col:]
    place = c.pick(["after", "end"])
    if place == "end":
        k = j
        while k < len(lines) and (len(lines[k]) - len(lines[k].lstrip(" ")) >= col or not lines[k].strip()):
            if lines[k].strip() and len(lines[k]) - len(lines[k].lstrip(" ")) == col and lines[k].lstrip()[:2] == "- ":
                break
            k += 1
        j = k
    lines[j:j] = block
    return "\n".join(lines), f"duplicate key {where(n.path)} ({place})"


def _alias_bomb(levels: int) -> str:
    out = ['lol0: &a0 "lol"']
    for i in range(1, levels):
        out.append(f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(out) + "\n"


@_text_op
def t_syntax(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Inject YAML syntax hazards."""
    lines = text.split("\n")
    indented = [i for i, line in enumerate(lines) if line.startswith(" ")]
    keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*[-\w.]+:", line)]
    what = c.pick(["tab-indent", "tab-after-colon", "anchor-alias", "alias-bomb", "tag", "merge", "second-doc",
                   "directive", "doc-end", "bom", "bom-inside", "crlf", "cr", "explicit-key", "complex-key",
                   "non-string-key", "unterminated", "colon-space", "comment", "top-level", "block-scalar"])
    if what == "tab-indent" and indented:
        i = c.pick(indented)
        lines[i] = "\t" + lines[i].lstrip(" ")
    elif what == "tab-after-colon" and keyed:
        i = c.pick(keyed)
        lines[i] = re.sub(r": ", ":\t", lines[i], count=1)
    elif what == "anchor-alias":
        values = [n for n in structure(text) if not n.key and n.path and n.kind == "scalar"]
        if len(values) >= 2:
            a, b = sorted([c.pick(values), c.pick(values)], key=lambda n: n.start)
            if a.start != b.start:
                text = splice(text, b.start, b.end, "*x")
                return splice(text, a.start, a.start, "&x "), f"anchor at {where(a.path)}, alias at {where(b.path)}"
        return text + "\na: &x 1\nb: *x\n", "anchor and alias appended"
    elif what == "alias-bomb":
        return text.rstrip("\n") + "\n" + _alias_bomb(c.pick([2, 5, 9, 12])), "alias bomb appended"
    elif what == "tag":
        values = [n for n in structure(text) if not n.key and n.path]
        tag = c.pick(TAGS)
        if values:
            n = c.pick(values)
            return splice(text, n.start, n.end, tag), f"tag {tag!r} at {where(n.path)}"
        return text + f"\nx: {tag}\n", f"tag {tag!r} appended"
    elif what == "merge":
        lines.insert(c.integer(0, len(lines)), c.pick(["<<: {description: merged}", "<<: []", "<<: *a"]))
    elif what == "second-doc":
        return text + c.pick(["---\nname: x\n", "---\n", "\n...\n---\n{}\n", "--- |\n  text\n"]), "second document"
    elif what == "directive":
        return c.pick(["%YAML 1.1\n---\n", "%YAML 1.2\n---\n", "%YAML 2.0\n---\n", "%TAG !! tag:example.com,2000:\n---\n",
                       "%FOO bar\n---\n", "---\n", "--- \n"]) + text, "directive or document start"
    elif what == "doc-end":
        return text + c.pick(["...\n", "...\n...\n", "... # end\n"]), "document end marker"
    elif what == "bom":
        return "\ufeff" + text, "byte-order mark"
    elif what == "bom-inside":
        at = c.integer(0, len(text))
        return splice(text, at, at, "\ufeff"), f"BOM at char {at}"
    elif what == "crlf":
        return text.replace("\n", "\r\n"), "CRLF line ends"
    elif what == "cr":
        return text.replace("\n", "\r"), "CR line ends"
    elif what == "explicit-key":
        lines.insert(c.integer(0, len(lines)), c.pick(["? description\n: x", "? name", "? |\n  block key\n: v"]))
    elif what == "complex-key":
        lines.insert(c.integer(0, len(lines)), c.pick(["? [a, b]\n: 1", "[a, b]: c", "{a: 1}: b", "? {a: 1}\n: b"]))
    elif what == "non-string-key":
        lines.insert(c.integer(0, len(lines)), c.pick(["1: a", "true: b", "null: c", "~: d", ": e", "1.5: f",
                                                      "0x10: g", "yes: h", "2024-01-01: i", "'1': j", "!!int 3: k"]))
    elif what == "unterminated":
        at = c.integer(0, len(text))
        return splice(text, at, at, c.pick(['"', "'", "[", "{", "]", "}", "&", "*", "!", "|", ">", "%", "@", "`"])), \
            f"stray indicator at char {at}"
    elif what == "colon-space" and keyed:
        i = c.pick(keyed)
        lines[i] = c.pick([lines[i] + ": x", lines[i].replace(": ", ":", 1), lines[i] + " #c", lines[i] + "#c"])
    elif what == "comment":
        lines.insert(c.integer(0, len(lines)), "# " + utext(c, 30))
    elif what == "top-level":
        return c.pick(["", " ", "\n", "# only a comment\n", "~\n", "[]\n", "- a\n- b\n", "'a string'\n", "42\n",
                       "{}\n", "--- |\n  text\n", "!!map {}\n", "null\n"]), "top level replaced"
    elif what == "block-scalar" and keyed:
        i = c.pick(keyed)
        key = lines[i].split(":", 1)[0]
        lines[i] = key + ": " + c.pick(["|", "|-", "|+", ">", ">-", "|2", "|0", "|10", "|-1"])
        lines.insert(i + 1, " " * (len(key) - len(key.lstrip()) + 2) + utext(c, 20).replace("\n", " "))
    else:
        return text, f"{what}: nothing to change"
    return "\n".join(lines), what


@_text_op
def t_unicode(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Unicode and control characters: raw at a random place, or as the content of a value."""
    values = [n for n in structure(text) if not n.key and n.kind == "scalar" and n.path]
    if values and c.coin(60):
        n = c.pick(values)
        s = utext(c, 40)
        return splice(text, n.start, n.end, quoted(c, s)), f"value at {where(n.path)} -> {s[:40]!r}"
    at = c.integer(0, len(text))
    s = utext(c, 4) or "\x00"
    return splice(text, at, at, s), f"raw {s!r} at char {at}"


@_text_op
def t_deepen(c: Chooser, text: str, rel: str) -> tuple[str, str]:
    """Nest a value deeper (around the depth limit, and far beyond it)."""
    values = [n for n in structure(text) if not n.key and n.path]
    if not values:
        return text + "\ndeep: " + nested_text(c, True, 0) + "\n", "deep value appended"
    n = c.pick(values)
    new = nested_text(c, n.flow, _indent_at(text, n.start) + 2)
    return splice(text, n.start, n.end, new), f"nesting at {where(n.path)}, {new.count('[') + new.count('a:')} levels"


def t_truncate(c: Chooser, m: Mutant) -> None:
    """Cut a file at a random byte (maybe inside a UTF-8 sequence)."""
    rel = _pick_spec(c, m)
    if rel is None:
        return
    data = m.files[rel]
    at = c.integer(0, len(data))
    m.files[rel] = data[:at]
    m.notes.append(f"{rel}: truncated at byte {at} of {len(data)}")


def t_grow(c: Chooser, m: Mutant) -> None:
    """Grow a file to near or above the 1 MiB limit, with comments, one long value, many items or many keys."""
    rel = _pick_spec(c, m)
    if rel is None:
        return
    data = m.files[rel]
    target = c.pick([MAX_BYTES - 1, MAX_BYTES, MAX_BYTES + 1, MAX_BYTES - 4096, MAX_BYTES + 4096, 2 * MAX_BYTES,
                     MAX_BYTES // 2, 200_000])
    how = c.pick(["comment", "comment-multibyte", "long-value", "items", "keys", "flow-items"])
    room = target - len(data)
    if room <= 0:
        m.files[rel] = data[:target]
        m.notes.append(f"{rel}: cut to {target} bytes")
        return
    if how == "comment":
        pad = b"#" + b"x" * (room - 2) + b"\n" if room >= 2 else b"\n"
    elif how == "comment-multibyte":  # 4-byte characters: the limit falls inside one of them when not aligned
        unit = "😀".encode()
        pad = b"#" + unit * ((room - 2) // 4) + b"x" * ((room - 2) % 4) + b"\n" if room >= 2 else b"\n"
    elif how == "long-value":
        data = re.sub(rb"(?m)^description:[^\n]*\n", b"", data).rstrip(b"\n") + b"\n"  # replace, not duplicate
        head = b'description: "'
        pad = head + b"y" * max(target - len(data) - len(head) - 2, 0) + b'"\n'
    elif how == "items":
        n = max((room - 10) // 14, 1)
        pad = b"\nextraList:\n" + b"".join(b"  - u%06d@x.io\n" % (i % 1_000_000) for i in range(n))
    elif how == "flow-items":
        n = max((room - 16) // 3, 1)
        pad = b"\nextraFlow: [" + b"1, " * n + b"]\n"
    else:
        n = max((room - 2) // 16, 1)
        pad = b"\n" + b"".join(b"extraKey%06d: 1\n" % i for i in range(n))
    m.files[rel] = data + pad
    m.notes.append(f"{rel}: grown with {how} to {len(m.files[rel])} bytes (target {target})")


# ---- data level


def _paths(obj, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _set(obj, path, value):
    _get(obj, path[:-1])[path[-1]] = value


def dump(c: Chooser, data) -> str:
    """yaml.safe_dump in one of several styles."""
    style = c.pick(["block", "block", "default", "flow", "canonical", "wide"])
    kw: dict = {"sort_keys": c.coin(30), "allow_unicode": c.coin(70)}
    if style == "block":
        kw["default_flow_style"] = False
    elif style == "flow":
        kw["default_flow_style"] = True
    elif style == "canonical":
        kw["canonical"] = True
    elif style == "wide":
        kw.update(default_flow_style=False, width=10**6, indent=4)
    if c.coin(20):
        kw["explicit_start"] = True
    return yaml.safe_dump(data, **kw)


def d_mutate(c: Chooser, m: Mutant) -> None:
    """Read a spec as kflowgen does, change it as data, and write it back with yaml.safe_dump."""
    rel = _pick_spec(c, m)
    if rel is None:
        return
    data = _spec_data(m, rel)
    if not data:  # unreadable, or an empty mapping: nothing to change as data
        return t_value(c, m)
    paths = _paths(data)
    what = c.pick(["replace", "replace", "delete", "delete-top", "add", "number", "nest", "grow-list", "empty",
                   "swap", "none"])
    note = what
    if what == "replace":
        path = c.pick(paths[1:])
        _set(data, path, pyvalue(c))
        note = f"replaced {where(path)}"
    elif what in ("delete", "delete-top"):
        parents = [p for p in paths if isinstance(_get(data, p), dict) and _get(data, p)]
        parent = () if what == "delete-top" else c.pick(parents)
        key = c.pick(list(_get(data, parent)))
        del _get(data, parent)[key]
        note = f"deleted {where(parent + (key,))}"
    elif what == "add":
        parent = c.pick([p for p in paths if isinstance(_get(data, p), dict)])
        key = c.pick([_unknown_key(c, [str(k) for k in _get(data, parent)]).strip("'\""), 1, True, None, 1.5, ""])
        _get(data, parent)[key] = pyvalue(c)
        note = f"added {where(parent + (key,))}"
    elif what == "number":
        nums = [p for p in paths[1:] if isinstance(_get(data, p), (int, float))] or paths[1:]
        path = c.pick(nums)
        _set(data, path, c.pick([0, -1, -0.0, 10**30, 2**63, 1e300, float("nan"), float("inf"), 0.5, True, 1e-300,
                                 0.0001, 2.0, "9" * 400, "9" * 5000 + "Gi"]))
        note = f"number at {where(path)}"
    elif what == "nest":
        path = c.pick(paths[1:])
        value = _get(data, path)
        for _ in range(c.pick([1, 2, MAX_DEPTH - 2, MAX_DEPTH, MAX_DEPTH + 1, 60])):
            value = [value] if c.coin() else {"a": value}
        _set(data, path, value)
        note = f"nested {where(path)}"
    elif what == "grow-list":
        lists = [p for p in paths if isinstance(_get(data, p), list) and _get(data, p)]
        if lists:
            path = c.pick(lists)
            _get(data, path).extend(_get(data, path) * c.pick([1, 2, 300]))
            note = f"grew list {where(path)}"
    elif what == "empty":
        colls = [p for p in paths if isinstance(_get(data, p), (list, dict))]
        path = c.pick(colls)
        if path:
            _set(data, path, [] if isinstance(_get(data, path), list) else {})
        else:
            data = {}
        note = f"emptied {where(path)}"
    elif what == "swap":
        if len(paths) > 2:
            a, b = c.pick(paths[1:]), c.pick(paths[1:])
            if not (a[: len(b)] == b or b[: len(a)] == a):
                va, vb = _get(data, a), _get(data, b)
                _set(data, a, vb)
                _set(data, b, va)
                note = f"swapped {where(a)} and {where(b)}"
    m.files[rel] = as_bytes(dump(c, data))
    m.notes.append(f"{rel}: data {note}")


# Edge values for fields whose meaning the rules and the renderer depend on: each passes the schema, or nearly so.
BIG = [0, 1, -1, 2, 255, 256, 257, 2**31, 2**63, 10**30]
EDGES: dict[str, list[tuple[tuple, list]]] = {
    "experiments": [
        (("sweep", "random", "seed"), [0, -1, 2**64, 10**30, 1.5]),
        (("sweep", "random", "trials"), BIG),
        (("sweep", "random", "params", "learning_rate"),
         [{"min": 0, "max": 1e-3, "log": True}, {"min": -1, "max": 1, "log": True}, {"min": 1, "max": 1},
          {"min": 2, "max": 1}, {"min": 0.5, "max": 0.6, "integer": True}, {"min": 5, "max": 1, "integer": True},
          {"min": -1e308, "max": 1e308}, {"min": 1e-300, "max": 1e300, "log": True}, {"min": 0, "max": 10**30,
          "integer": True}, {"min": 1e308, "max": 1.7976931348623157e308, "log": True, "integer": True},
          {"min": 1, "max": 2, "log": True, "integer": True}, [None], [True, "true"], [1, 1.0], [{"a": 1}], [[1]],
          ["x" * 300], ["a b", "a=b", "--x", "$(id)", ""]]),
        (("sweep", "grid"), [{"a": [1] * 2}, {"a": list(range(256)), "b": list(range(256))}, {"a": [None, False]},
                             {"a": ["1", 1]}, {"a": [0.1, 0.10]}, {"": [1]}, {"a": []}, {"x" * 300: [1]},
                             {"a": ["é", "😀", "\u202e"]}, {"a": [1e-3, 0.001]}, {"lr": [1e-3], "l-r": [2]}]),
        (("hyperparameters",), [{}, {"": 1}, {"a b": 1}, {"x": None}, {"x": [1, 2]}, {"x": {"y": 1}}, {"x": "a b"},
                                {"x": "$(rm -rf /)"}, {"x": "\n"}, {"x": "x" * 5000}, {"KFLOWGEN_X": 1}]),
        (("run",), ["", " ", "'", 'python "unterminated', "a\x00b", "x" * 5000, "python\ttrain.py", "--help",
                    "python train.py; rm -rf /", "é 😀", "\\"]),
        (("env",), [{"A": None}, {"A": 1.5}, {"A": True}, {"KFLOWGEN_X": "y"}, {"": "x"}, {"A": "x" * 10000},
                    {"PATH": ""}, {"a-b": "x"}]),
        (("workers",), BIG), (("retries",), BIG), (("parallelism",), BIG),
        (("deadline",), ["999999d", "1s", "0s", "1000000d", "6H", "1.5h", 60]),
        (("resources", "cpu"), [0.001, 0.0015, 0.0001, "1m", "0m", "999999999", 10**30, 1e-300]),
        (("resources", "memory"), ["0", "1", "1.5Gi", "0.0001Ki", "999999999999Pi", "1e3", "1Gi "]),
        (("resources", "gpu", "count"), BIG), (("environments",), [[], ["dev", "dev"], ["nowhere"], ["prod"] * 3]),
        (("workdir",), ["/", ".", "..", "a/../b", "a/./b", "a//b", "é", "x" * 1024, " "]),
        (("framework",), ["tensorflow", "jax", ""]), (("argStyle",), ["argparse", "hydra", "docopt"]),
        (("image",), ["registry.example.com/ml/x:1", "registry.example.com/ml/x:latest", "registry.example.com/ml/x",
                      "evil.io/x:1", "registry.example.com/ml/x@sha256:" + "a" * 64, "REGISTRY.example.com/ml/x:1"]),
    ],
    "models": [
        (("environments", "prod", "version"), BIG), (("environments", "prod", "replicas"), BIG),
        (("environments", "prod", "autoscale"),
         [{"minReplicas": 5, "maxReplicas": 1, "targetCPUUtilization": 70}, {"minReplicas": 0, "maxReplicas": 0,
          "targetCPUUtilization": 0}, {"minReplicas": 1, "maxReplicas": 2**31, "targetCPUUtilization": 101}, {}]),
        (("environments", "prod", "cpu"), [0.001, 0.0001, 0.0015, "0m", 10**30]),
        (("environments", "prod", "gpu"), [{"type": "a100", "count": 2**31}, {"type": "t4", "count": 0},
                                          {"type": "h100", "count": 1}]),
        (("environments",), [{}, {"dev": {}}, {"nowhere": {"version": 1, "cpu": 1, "memory": "1Gi"}}]),
        (("path",), ["models/resnet/1", "/abs", "../x", "", "models/", "models//x", "é"]),
        (("image",), ["docker.io/tensorflow/serving:2.14.1", "docker.io/tensorflow/serving", "evil.io/x:1"]),
    ],
    "teams": [
        (("quota",), [{}, {"nowhere": {"cpu": 1, "memory": "1Gi"}}]),
        (("quota", "dev", "gpu"), [{}, {"a100": 0}, {"a100": 2**63}, {"h100": 1}, {"a100": -1}]),
        (("quota", "dev", "cpu"), [0, 0.0001, 10**30, "1m", 48.0005]),
        (("quota", "dev", "memory"), ["0", "1Ki", "999999999Pi"]), (("quota", "dev", "storage"), ["1Ki", "0"]),
        (("storage", "size"), ["0", "1Ki", "999999999Pi", "1Ti"]),
        (("owners",), [[], ["x"], ["a@b.c"] * 2, ["é@x.io"], ["x" * 300]]),
        (("members",), [[], [{"group": "g"}] * 2, [{"group": "g", "role": "owner"}], [{"group": ""}]]),
        (("notebook", "profiles"), [[], [{"name": "a", "displayName": "A", "cpu": 1, "memory": "1Gi", "default": True}] * 2]),
        (("notebook", "image"), ["registry.example.com/ml/x:latest", "quay.io/jupyter/x", "evil.io/x:1"]),
    ],
    "platform": [
        (("environments",), [{}, {"dev": {"cluster": "https://x", "capacity": {"gpu": {}}}}]),
        (("environments", "dev", "capacity", "gpu"), [{}, {"a100": 0}, {"a100": 2**63}, {"h100": 1}, {"a100": -1}]),
        (("environments", "dev", "cluster"), ["https://kubernetes.default.svc", "http://x", "https://", "x"]),
        (("gpuTypes",), [{}, {"a100": {"nodeSelector": {}}}, {"h100": {"nodeSelector": {"a": "b"}, "resource": "x"}}]),
        (("registries",), [[], [""], ["/"], ["registry.example.com"], ["a"] * 300]),
        (("kubernetesVersion",), ["1.0", "v1.34", "1.34.0.1", "2.0.0", "1.34", 1.34]),
        (("storage", "mountPath"), ["/", "//", "/a/../b", "relative", "/" + "x" * 5000]),
        (("argocd", "namespace"), ["jupyterhub", "default", "nlp", "kube-system"]),
        (("jupyterhub", "namespace"), ["argocd", "nlp", "default"]),
        (("repo", "url"), ["https://x", "git@github.com:x/y.git", "", "https://" + "x" * 5000]),
        (("name",), ["", "x" * 300, "é"]),
    ],
}


def op_edge(c: Chooser, m: Mutant) -> None:
    """Set a field the rules and the renderer depend on to an edge value (as data, written with safe_dump)."""
    rel = _pick_spec(c, m)
    if rel is None:
        return
    kind = rel.split("/")[1] if rel != PLATFORM else "platform"
    data = _spec_data(m, rel)
    if data is None or kind not in EDGES:
        return t_number(c, m)
    path, values = c.pick(EDGES[kind])
    value = c.pick(values)
    parent = data
    for p in path[:-1]:
        if not isinstance(parent.get(p), dict):
            parent[p] = {}
        parent = parent[p]
    parent[path[-1]] = value
    m.files[rel] = as_bytes(dump(c, data))
    m.notes.append(f"{rel}: edge {'/'.join(path)} = {repr(value)[:80]}")


# ---- names and files


def _spec_data(m: Mutant, rel: str):
    """The spec as kflowgen reads it (None when it does not read), for the data-level mutations."""
    entry = m.files.get(rel)
    if not isinstance(entry, bytes) or len(entry) > MAX_BYTES:
        return None
    try:
        text = entry.decode("utf-8")  # as load_file does: load_text never sees a lone surrogate
    except UnicodeDecodeError:
        return None
    spec, _ = load_text(text, rel)
    return spec.data if spec is not None and isinstance(spec.data, dict) else None


def file_stem(name: str) -> str:
    """A name usable in a file name: no '/', NUL or surrogate the file system cannot take, at most ~200 bytes."""
    stem = "".join("_" if ch in "/\x00" or ("\ud800" <= ch <= "\udfff" and not "\udc80" <= ch <= "\udcff") else ch
                   for ch in name)
    while len(os.fsencode(stem)) > 200:
        stem = stem[:-1]
    return stem or "_"


def _replace_field(text: str, key: str, value: str) -> str:
    """Set a top-level `key: value` line (text level, keeping the rest of the file)."""
    new, n = re.subn(rf"(?m)^{re.escape(key)}:[^\n]*", lambda _: f"{key}: {value}", text, count=1)
    return new if n else f"{key}: {value}\n" + text


def op_rename(c: Chooser, m: Mutant) -> None:
    """Rename a team, experiment or model: the name only, the name and its file, or everywhere (a consistent
    rename that should stay valid when the new name is)."""
    kinds = [rel for rel in m.specs() if rel.startswith(("specs/teams/", "specs/experiments/", "specs/models/"))]
    if not kinds:
        return
    rel = c.pick(kinds)
    data = _spec_data(m, rel)
    old = data.get("name") if data else None
    if not isinstance(old, str):
        old = Path(rel).stem
    others = sorted({Path(r).stem for r in kinds})
    new = new_name(c, old, others)
    how = c.pick(["name", "file", "everywhere"] if rel.startswith("specs/teams/") else ["name", "file"])
    text = _replace_field(as_text(m.files[rel]), "name", quoted(c, new) if c.coin(30) else yaml_double(new))
    m.notes.append(f"{rel}: renamed {old!r} -> {new!r} ({how})")
    if how == "name":
        m.files[rel] = as_bytes(text)
        return
    del m.files[rel]
    stem = file_stem(new)
    dest = f"{Path(rel).parent.as_posix()}/{stem}.yaml"
    m.files[dest] = as_bytes(text)
    if how == "everywhere":
        for other in list(m.specs()):
            if other.startswith(("specs/experiments/", "specs/models/")) and other.split("/")[2] == old:
                moved = as_text(m.files.pop(other))
                parts = other.split("/")
                parts[2] = stem
                m.files["/".join(parts)] = as_bytes(_replace_field(moved, "team", yaml_double(new)))


WEIRD_STEMS = ["x", "UPPER", "ñlp", "team 1", "😀", "a.b", ".", "-", "new\nline", "tab\there", "\udcff\udcfe",
               "x" * 250, "..", "semi;colon", "quote'\"", "back\\slash", "\u202eevil", "nlp.yaml", "\ufeffbom"]


def op_file(c: Chooser, m: Mutant) -> None:
    """Delete, copy or rename spec files; links in or out of the repository; a folder named like a spec."""
    specs = m.specs()
    if not specs:
        return
    rel = c.pick(specs)
    folder = Path(rel).parent.as_posix()
    what = c.pick(["delete", "copy", "rename", "move", "yml", "link-inside", "link-outside", "link-absolute",
                   "link-dangling", "link-loop", "link-loop-pair", "link-dir", "folder", "empty", "folder-link"])
    name = c.pick(WEIRD_STEMS)
    depth = rel.count("/")  # links are relative to the link's folder
    up = "../" * depth
    if what == "delete":
        del m.files[rel]
    elif what == "copy":
        m.files[f"{folder}/{name}.yaml"] = m.files[rel]
    elif what == "rename":
        m.files[f"{folder}/{name}.yaml"] = m.files.pop(rel)
    elif what == "move":
        dest = c.pick(["specs/teams/deeper/x.yaml", "specs/experiments/x.yaml", "specs/experiments/nlp/deep/x.yaml",
                       "specs/models/x.yaml", "specs/models/vision/a/b/c.yaml", "specs/x.yaml", "specs/teams/x.yml",
                       "specs/teams/x.YAML", "specs/experiments/ghost/x.yaml"])
        m.files[dest] = m.files.pop(rel)
        rel = dest
    elif what == "yml":
        m.files[rel[: -len(".yaml")] + ".yml" if rel.endswith(".yaml") else rel + ".yml"] = m.files[rel]
    elif what == "link-inside":
        target = c.pick([s for s in specs if s != rel] or specs)
        m.files[rel] = Link(up + target)
    elif what == "link-outside":
        m.outside["outside.yaml"] = m.files[rel]
        m.files[rel] = Link("../" + up + "outside.yaml")
    elif what == "link-absolute":
        m.files[rel] = Link(c.pick(["/etc/hostname", "/dev/null", "/nonexistent.yaml", "/"]))
    elif what == "link-dangling":
        m.files[rel] = Link("missing.yaml")
    elif what == "link-loop":
        m.files[rel] = Link(Path(rel).name)
    elif what == "link-loop-pair":
        m.files[rel] = Link("loop-b.yaml")
        m.files[f"{folder}/loop-b.yaml"] = Link(Path(rel).name)
    elif what == "link-dir":
        m.files[rel] = Link(".")
    elif what == "folder":
        m.files[f"{folder}/{name}.yaml"] = Folder()
    elif what == "empty":
        m.files[rel] = c.pick([b"", b"\n", b" ", b"# nothing\n", b"\xef\xbb\xbf", b"\x00"])
    elif what == "folder-link":  # specs/experiments itself a link out of the repository
        moved = {r: m.files.pop(r) for r in list(m.files) if r.startswith("specs/experiments/")}
        for r, e in moved.items():
            if isinstance(e, bytes):
                m.outside["outside-experiments/" + r[len("specs/experiments/"):]] = e
        m.files["specs/experiments"] = Link("../../outside-experiments")
    m.notes.append(f"{rel}: file {what}" + (f" ({name!r})" if what in ("copy", "rename", "folder") else ""))


# Each mutation with its weight. Growth to 1 MiB is rare: such a mutant takes up to seconds, the others milliseconds.
WEIGHTS: dict[Op, int] = {t_value: 3, t_number: 3, t_delete_key: 3, t_add_key: 3, t_duplicate_key: 2, t_syntax: 3,
                          t_unicode: 3, t_deepen: 2, t_truncate: 2, t_grow: 1, d_mutate: 6, op_edge: 4, op_rename: 2,
                          op_file: 2}
OPS: list[Op] = [op for op, weight in WEIGHTS.items() for _ in range(weight)]


TEAMS = sorted(Path(rel).stem for rel in BASE if rel.startswith("specs/teams/"))


def _slice(team: str) -> dict[str, Entry]:
    """The repository with one team: the platform, the team, its experiments and models, and bases/."""
    def keep(rel: str) -> bool:
        parts = rel.split("/")
        return (parts[0] != "specs" or rel == PLATFORM or rel == f"specs/teams/{team}.yaml"
                or (parts[1] in ("experiments", "models") and parts[2] == team))

    return {rel: e for rel, e in BASE.items() if keep(rel)}


def mutant(c: Chooser) -> Mutant:
    """A mutated copy of the example repository (all of it, or one team's slice: fewer files to read, so more
    mutants a second, while cross-team checks still get the whole one): one to three mutations of any kind."""
    m = Mutant(dict(BASE) if c.coin(40) else _slice(c.pick(TEAMS)))
    for _ in range(c.pick([1, 1, 1, 2, 2, 3])):
        op = c.pick(OPS)
        m.ops.append(op.__name__)
        op(c, m)
    return m


# --------------------------------------------------------------------------------------------------------------
# The property


def tree_hash(root: Path) -> str:
    """conftest.tree_hash, or for a file name that is not UTF-8 (where it raises UnicodeEncodeError) the same
    hash over os.fsencode'd names."""
    try:
        return _tree_hash(root)
    except UnicodeEncodeError:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file() and ".kflowgen" not in p.parts:
                h.update(os.fsencode(p.relative_to(root).as_posix()) + b"\0" + p.read_bytes() + b"\0")
        return h.hexdigest()


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    """Turn a hang (in Python code) into an exception; the campaign also kills workers that stop reporting."""
    def on_alarm(signum, frame):
        raise Hang(f"no result within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a line break


@dataclass
class Outcome:
    ok: bool
    codes: list[str]
    load_seconds: float
    seconds: float
    cli: bool = False


def check_diagnostic(root: Path, d, line_counts: dict[str, int]) -> None:
    """A diagnostic from the spec stages: a code, a message, and a place in a spec file."""
    assert d.code in CODES, d
    assert d.severity in ("error", "warning"), d
    assert isinstance(d.message, str) and d.message.strip(), d
    assert isinstance(d.path, str) and (d.path + "/").startswith("specs/"), f"not a spec path: {d}"
    assert d.line >= 1 and d.col >= 1, f"unlocated: {d}"
    assert os.path.lexists(root / d.path) or d.path == PLATFORM, f"names a file that does not exist: {d}"
    if d.path not in line_counts:
        target = root / d.path
        line_counts[d.path] = 0
        if target.is_file() and not target.is_symlink():
            line_counts[d.path] = len(_BREAKS.findall(target.read_bytes().decode("utf-8", "replace"))) + 1
    lines = line_counts[d.path]
    assert not lines or d.line <= lines + 1, f"line {d.line} past the end of a {lines}-line file: {d}"


def check(root: Path, cli_too: bool = False) -> Outcome:
    """Run the spec stages on a repository and assert the property; returns what happened."""
    before = tree_hash(root)
    start = time.perf_counter()
    with time_limit(TIME_LIMIT):
        model, diags = pipeline.load(Options(root))
        load_seconds = time.perf_counter() - start
        errors = [d for d in diags if d.severity == "error"]
        line_counts: dict[str, int] = {}
        for d in diags:
            check_diagnostic(root, d, line_counts)
        if errors:
            assert model is None, "a model despite errors"
        else:
            assert model is not None, "no model and no error"
            files = render(model)
            assert files, "nothing rendered"
            for rel, data in files.items():
                assert isinstance(data, bytes), rel
                try:
                    yaml.load(data.decode("utf-8"), Loader=_OutputLoader)
                except (yaml.YAMLError, UnicodeDecodeError) as e:
                    raise AssertionError(f"rendered {rel} does not parse: {e}") from e
        ran_cli = False
        if cli_too and errors:
            ran_cli = True
            result = CliRunner().invoke(cli.app, ["validate", "--format", "json", "-C", str(root)],
                                        catch_exceptions=False)
            assert result.exit_code == 1, (result.exit_code, result.output[-2000:])
            doc = json.loads(result.stdout)
            assert doc["errors"] == len({d for d in errors}), doc["errors"]
            shown = {(x["path"], x["line"], x["column"], x["code"]) for x in doc["diagnostics"]}
            assert shown == {(d.path, d.line, d.col, d.code) for d in diags}
            for x in doc["diagnostics"]:
                assert x["line"] >= 1 and x["column"] >= 1 and x["code"] in CODES and x["message"], x
    assert tree_hash(root) == before, "the repository changed"
    return Outcome(not errors, sorted({d.code for d in errors}), load_seconds, time.perf_counter() - start, ran_cli)


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_base_repository_is_valid(tmp_path):
    """The mutations start from a repository that loads and renders cleanly."""
    root = write_mutant(Mutant(dict(BASE)), tmp_path)
    outcome = check(root)
    assert outcome.ok and not outcome.codes


@settings(max_examples=150, derandomize=True, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(st.data())
def test_mutated_specs_end_clean(data):
    """Every mutant ends in a model that renders to parseable files, or in located diagnostics; no traceback."""
    c = DataChooser(data)
    m = mutant(c)
    cli_too = c.coin(15)
    with tempfile.TemporaryDirectory(prefix="kflowgen-fuzz-") as tmp:
        root = write_mutant(m, Path(tmp))
        try:
            check(root, cli_too)
        except Exception as e:
            if known_bug(e):
                return  # an open bug, pinned by test_found_bug[<its name>]
            e.add_note("mutations: " + "; ".join(m.notes))
            raise


def _refused(name: str) -> Mutant:
    """Hand-picked refused inputs, one per loader hazard."""
    m = Mutant(dict(BASE), notes=[name])
    team = "specs/teams/nlp.yaml"
    text = as_text(BASE[team])
    if name == "bom":
        m.files[team] = b"\xef\xbb\xbf" + BASE[team]
    elif name == "alias-bomb":
        m.files[team] = as_bytes(text + _alias_bomb(12))
    elif name == "too-large":
        m.files[team] = BASE[team] + b"#" + b"x" * MAX_BYTES + b"\n"
    elif name == "tab":
        m.files[team] = as_bytes(text.replace("\n  - bob", "\n\t- bob"))
    elif name == "duplicate-key":
        m.files[team] = as_bytes(text + "name: nlp\n")
    elif name == "python-tag":
        m.files[team] = as_bytes(text.replace("description: ", "description: !!python/object/apply:os.system ", 1))
    elif name == "too-deep":
        m.files[team] = as_bytes(text + "deep: " + "[" * 10_000 + "]" * 10_000 + "\n")
    elif name == "too-many-nodes":
        m.files[team] = as_bytes(text + "many: [" + "1, " * (MAX_NODES + 1) + "]\n")
    elif name == "second-document":
        m.files[team] = as_bytes(text + "---\nname: x\n")
    elif name == "truncated-utf8":
        m.files[team] = "description: é".encode()[:-1]
    return m


REFUSED = ["bom", "alias-bomb", "too-large", "tab", "duplicate-key", "python-tag", "too-deep", "too-many-nodes",
           "second-document", "truncated-utf8"]


@pytest.mark.parametrize("name", REFUSED)
def test_refused_inputs_through_the_cli(name, tmp_path):
    """`kflowgen validate --format json` on inputs the loader refuses: exit 1, located, nothing written."""
    root = write_mutant(_refused(name), tmp_path)
    outcome = check(root, cli_too=True)
    assert outcome.cli and not outcome.ok and outcome.codes


# Every bug the campaign found, with the smallest input that shows it. The test asserts the correct behaviour
# (exit 1 with located diagnostics, through the CLI too): a strict xfail while the bug is open (KNOWN_BUGS), an
# ordinary regression test once it is fixed (FIXED).

EXPERIMENT = "specs/experiments/nlp/bert-random.yaml"


def _found(name: str) -> Mutant:
    m = Mutant(dict(BASE), notes=[name])

    def edit(rel: str, old: bytes, new: bytes) -> None:
        assert old in m.files[rel], (rel, old)
        m.files[rel] = m.files[rel].replace(old, new, 1)

    if name == "int-digits":  # campaign: t_number (huge_digits) on any number
        edit("specs/teams/nlp.yaml", b"cpu: 48", b"cpu: " + b"9" * 5000)
    elif name == "int-sum":  # campaign: t_number on a GPU quota; nlp's dev A100 quota + vision's 4 has 4301 digits
        edit("specs/teams/nlp.yaml", b"{a100: 2,", b"{a100: " + b"9" * 4300 + b",")
    elif name == "cpu-finer-than-1m":  # campaign: t_number '4.9e-324' and op_edge 0.0015 on resources.cpu
        edit("specs/experiments/vision/resnet-sweep.yaml", b"cpu: 8", b"cpu: 0.0001")
    elif name == "symlink-loop":  # campaign: op_file link-loop (specs/teams/nlp.yaml -> nlp.yaml)
        m.files["specs/teams/nlp.yaml"] = Link("nlp.yaml")
    elif name == "integer-as-float":  # campaign: t_number '5.' on sweep.random.trials (TypeError: range(6.0))
        edit(EXPERIMENT, b"trials: 6", b"trials: 6.0")
    elif name == "range-whole-numbers":  # campaign: op_edge {min: 1e308, max: 1.8e308, log, integer} on a range
        edit(EXPERIMENT, b"{min: 0, max: 1000, integer: true}", b"{min: 0, max: 1e300, integer: true}")
    elif name == "quantity-digits":  # campaign: d_mutate number '9' * 5000 + 'Gi' on a memory
        edit("specs/teams/nlp.yaml", b"memory: 32Gi", b'memory: "' + b"9" * 5000 + b'Gi"')
    else:  # pragma: no cover
        raise KeyError(name)
    return m


def _mark(name: str):
    """A strict xfail while the bug is open (KNOWN_BUGS), nothing once it is fixed."""
    return [pytest.mark.xfail(reason=KNOWN_BUGS[name][2], strict=True)] if name in KNOWN_BUGS else []


@pytest.mark.parametrize("name", [pytest.param(k, id=k, marks=_mark(k)) for k in [*FIXED, *KNOWN_BUGS]])
def test_found_bug(name, tmp_path):
    root = write_mutant(_found(name), tmp_path)
    outcome = check(root, cli_too=True)
    assert not outcome.ok and outcome.codes


NINES = b'"' + b"9" * 400 + b'"'
VARIANTS = {  # other inputs of the same bugs, "<bug>:<what>" -> edits (file, old bytes, new bytes)
    "integer-as-float:trials-6e0": [(EXPERIMENT, b"trials: 6", b"trials: 6e0")],
    "integer-as-float:workers-2.0": [("specs/experiments/nlp/llm-finetune.yaml", b"workers: 2", b"workers: 2.0")],
    "integer-as-float:replicas-3.0": [("specs/models/vision/resnet.yaml", b"replicas: 3", b"replicas: 3.0")],
    "range-whole-numbers:log-1e308": [(EXPERIMENT, b"{min: 1e-5, max: 1e-3, log: true}",
                                       b"{min: 1e308, max: 1.7e308, log: true, integer: true}")],
    "quantity-digits:cpu-in-render": [("specs/teams/nlp.yaml", b"cpu: 4\n", b"cpu: " + NINES + b"\n"),
                                      ("specs/teams/nlp.yaml", b"cpu: 48", b"cpu: " + NINES),
                                      ("specs/teams/nlp.yaml", b"cpu: 192", b"cpu: " + NINES)],
    "quantity-digits:storage-size": [("specs/teams/nlp.yaml", b"size: 1Ti", b'size: "' + b"9" * 5000 + b'Ti"')],
    "quantity-digits:memory-total": [("specs/experiments/recsys/feature-stats.yaml", b"memory: 8Gi",
                                      b'memory: "' + b"9" * 320 + b'Gi"')],
}


@pytest.mark.parametrize("variant", [pytest.param(k, id=k, marks=_mark(k.split(":")[0])) for k in VARIANTS])
def test_found_bug_variants(variant, tmp_path):
    """Other inputs of the bugs found: each must end in exit 1 with a located error too."""
    m = Mutant(dict(BASE))
    for rel, old, new in VARIANTS[variant]:
        assert old in m.files[rel], (rel, old)
        m.files[rel] = m.files[rel].replace(old, new, 1)
    root = write_mutant(m, tmp_path)
    outcome = check(root, cli_too=True)
    assert not outcome.ok and outcome.codes


# Found by the campaign's large-input measurement, outside the fuzz property (exit 0 with parseable output):
# owners (and members) have no maxItems, so a team with 20,000 owners validates, and renders a RoleBinding of
# 1.6 MB (and JupyterHub values of 0.9 MB). The API server refuses objects over etcd's 1.5 MiB request limit, and
# Argo CD's default client-side apply already fails above 256 KiB (the last-applied annotation), about 3,300
# owners; Helm keeps a release (the hub's values) in a Secret of at most 1 MiB. `kflowgen validate` says ok (with
# 40,000 owners: 33 s and 2.1 GiB). The correct behaviour: refused at the spec, with a located error.
def test_oversized_team_is_refused(tmp_path):
    m = Mutant(dict(BASE))
    owners = b"".join(b"  - u%06d@example.com\n" % i for i in range(20_000))
    m.files["specs/teams/nlp.yaml"] = BASE["specs/teams/nlp.yaml"].replace(b"owners:\n", b"owners:\n" + owners)
    root = write_mutant(m, tmp_path)
    model, diags = pipeline.load(Options(root))
    assert model is None
    assert any(d.path == "specs/teams/nlp.yaml" and d.line >= 1 and d.severity == "error" for d in diags)
