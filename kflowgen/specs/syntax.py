"""What a YAML syntax error means in a spec, and the fix: a tab, a missing space after ':', a line indented wrong
(most often: under a key that already has a value, or between the columns of the keys above it), an unclosed
bracket. The reader (kflowgen.specs.loader) reports it as KF101."""
from __future__ import annotations

import re

import yaml

from kflowgen.diagnostics import Diagnostic, error

_CONTENT = re.compile(r"^( *)(\S.*)$")  # a line with something on it: its indent and its text
_KEY = re.compile(r"^(?:- +)?([^\s:#'\"{}\[\],][^:#]*?):(?: +(\S.*))?$")  # `key: value`, `key:`, `- key: value`


def error_of(e: yaml.MarkedYAMLError, text: str, path: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = (e.problem or e.context or "invalid YAML").strip()
    if e.context and e.context_mark and e.problem and (e.context_mark.line, e.context_mark.column) != (
            mark.line, mark.column):
        what += f" ({e.context.strip()} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
    lines = text.splitlines()
    before = lines[pos[0] - 2] if 2 <= pos[0] <= len(lines) + 1 else ""
    indented = _indentation(lines, pos, what)
    if mark is not None and text[mark.index: mark.index + 1] == "\t":
        hint = "indent with spaces; YAML does not allow tabs"
    elif re.search(r"^\s*[-\w.]+:[^\s/:]", before):
        hint = f"put a space after the ':' on line {pos[0] - 1}"
    elif indented:
        pos, hint = indented
    elif "mapping values are not allowed" in what:
        hint = "quote a value that contains ': ', or put the nested mapping on its own indented lines"
    elif "expected <block end>" in what or "did not find expected key" in what:
        hint = "keys of one mapping must start in the same column; list items under a key start with '- '"
    elif "flow" in what:
        hint = "close every '[' and '{' you open"
    else:
        hint = "check the indentation and quoting around this line"
    return error(path, pos, "KF101", f"invalid YAML: {what}", hint)


def _indentation(lines: list[str], pos: tuple[int, int], what: str) -> tuple[tuple[int, int], str] | None:
    """(where the misplaced line starts, the fix) when the error comes from a line indented wrong, else None."""
    if not 1 <= pos[0] <= len(lines) or not (m := _CONTENT.match(lines[pos[0] - 1])):
        return None
    indent, here = len(m[1]), m[2]
    above = [(n, len(c[1]), c[2]) for n in range(pos[0] - 1, 0, -1)
             if (c := _CONTENT.match(lines[n - 1])) and not c[2].startswith("#")]
    if not above:
        return None
    start, word = (pos[0], indent + 1), _first(here)
    line, col, prev = above[0]
    key = _KEY.match(prev)
    if "mapping values are not allowed" in what and col < indent and key and key[2] \
            and not key[2].startswith(("|", ">")) and _KEY.match(here) and pos[1] - 1 <= indent + len(here.split(":")[0]):
        parent = _KEY.match(above[1][2]) if len(above) > 1 and above[1][1] == col else None
        if parent and not parent[2]:  # `notebook:`, then `image: x` in its column, then `profiles:` indented
            return (line, col + 1), (f"'{key[1]}' is not indented under '{parent[1]}' (line {above[1][0]}), which "
                                     f"has no value: start '{key[1]}' in column {indent + 1}, like '{word}' below it")
        return start, (f"'{word}' is indented under '{key[1]}' (line {line}), which already has a value: start "
                       f"'{word}' in column {col + 1}, like '{key[1]}'")
    if "expected <block end>" in what or "did not find expected key" in what:
        deeper = []  # lines of the block the misplaced one is inside: indented more than it, up to one indented less
        for n, c, t in above:
            if c < indent:
                break
            deeper.append((n, c, t))
        if deeper and all(c != indent for _, c, _ in deeper):
            n, c, t = min(deeper, key=lambda x: (x[1], -x[0]))
            return start, (f"'{word}' starts in column {indent + 1}; start it in column {c + 1}, like '{_first(t)}' "
                           f"on line {n}: keys of one mapping, and the items of one list, start in the same column")
    return None


def _first(text: str) -> str:
    """The key or list item a line starts with, as a reader would name it."""
    k = _KEY.match(text)
    shown = ("- " if text.startswith("-") else "") + k[1] if k else text
    return shown if len(shown) <= 40 else shown[:37] + "..."
