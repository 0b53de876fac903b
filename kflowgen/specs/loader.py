"""Reading spec files: strict YAML (1.2 core types, no aliases, no tags, no duplicate keys) with a line:col for every value."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kflowgen.diagnostics import Diagnostic, error
from kflowgen.specs import syntax

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF101": "file cannot be read or is not valid YAML",
    "KF102": "duplicate key in a mapping",
    "KF103": "anchor, alias or tag that specs do not allow",
    "KF104": "file is not exactly one YAML mapping",
    "KF105": "file too large or nested too deeply",
    "KF106": "mapping key that is not a plain string",
    "KF107": "unquoted yes/no/on/off: a boolean to YAML 1.1 tools",
    "KF108": "unquoted number with a leading zero or colons: octal or base 60 to YAML 1.1 tools",
    "KF109": "unquoted date: a timestamp to YAML 1.1 tools",
}

try:  # the C parser is ~7x faster; the pure one gives the same events
    from yaml import CSafeLoader as _Parser
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Parser

_UNREADABLE = "make it a file you can read (check its permissions), or remove it"
MAX_BYTES = 1 << 20  # a spec is a few hundred bytes; 1 MiB is generous
MAX_DEPTH = 32
MAX_NODES = 50_000
MAX_NUMBER = 32  # digits of a whole number: far beyond any quota, and far below Python's int-from-text limit

_CORE = "tag:yaml.org,2002:"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
# Plain scalars that YAML 1.1 readers (PyYAML, many CI scripts) take differently from YAML 1.2: refused so a
# spec means the same thing to every tool that reads it.
_YAML11_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_NUMBER = re.compile(r"^(?:[-+]?0[0-9_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$")
_YAML11_DATE = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}.*)?$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


# Top-level values of a spec that the model's order and index, and the diff, ask of every experiment and served model
# (SpecFile.top): a spec from the cache keeps them apart, so an unchanged one's other values are never decoded.
TOP = ("team", "name", "environments", "sweep", "workers")
_ANY = object()  # no default given


@dataclass(eq=False)
class SpecFile:
    """A parsed spec: its data, and where each JSON pointer's key and value sit in the file (1-based line, col)."""

    path: str  # repository-relative, with '/'
    data: object
    values: dict[str, tuple[int, int]] = field(default_factory=dict)
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # plain scalars as written (`1e-3` stays `1e-3`)
    digest: str = ""  # sha256 of the file's bytes: what the result cache keys rendered output on
    packed: str | tuple[bytes, int, int] | None = None  # values and keys as JSON text (or where a cache entry holds
    # them: entry, start, end; see cached; the entry's bytes, or a packed.Span of them set aside in a first run of
    # many), unpacked when first asked (specs from the cache: most are never asked
    # where something is, and thousands of position tables cost time to decode and to pass between processes)

    @classmethod
    def cached(cls, path: str, digest: str, top: dict, entry: bytes, start: int, raw: int, positions: int,
               end: int) -> SpecFile:
        """A spec from a cache entry (kflowgen.specs.entry): its TOP values now; its data, raw and positions decoded
        from the entry's bytes (the JSON of [path, data] from start, of raw, then of [pointers], [value line, column,
        key line, column of each] up to end) when first asked for, and data and raw then plain attributes."""
        spec = cls.__new__(cls)
        spec.__dict__ = {"path": path, "values": {}, "keys": {}, "digest": digest, "packed": (entry, positions, end),
                         "_top": top, "_data": (entry, start, raw), "_raw": (entry, raw, positions)}
        return spec

    def set_aside(self, place) -> None:
        """A spec from a cache entry (cached): what is not decoded yet is read from place(entry) instead of the entry's
        bytes (anything sliced as those bytes are: a packed.Span of them set aside)."""
        for name in ("_data", "_raw", "packed"):
            held = self.__dict__.get(name)
            if type(held) is tuple and type(held[0]) is bytes:
                self.__dict__[name] = (place(held[0]), *held[1:])

    def __getattr__(self, name: str):
        """data or raw of a spec from the cache, decoded when first asked for (see cached)."""
        lazy = self.__dict__.get("_" + name) if name in ("data", "raw") else None
        if lazy is None:
            raise AttributeError(name)
        entry, start, end = lazy
        try:
            value = json.loads(entry[start:end])
        except ValueError as e:
            raise ValueError(f"{self.path}: its result in the cache is damaged ({e}); remove the cache folder") \
                from None
        if name == "data":
            if (type(value) is not list or len(value) != 2 or value[0] != self.path or type(value[1]) is not dict
                    or {k: value[1][k] for k in TOP if k in value[1]} != self.__dict__["_top"]):
                raise ValueError(f"{self.path}: its result in the cache is not this file's; remove the cache folder")
            value = value[1]
        elif type(value) is not dict:
            raise ValueError(f"{self.path}: its result in the cache is damaged; remove the cache folder")
        self.__dict__[name] = value
        del self.__dict__["_" + name]
        return value

    def top(self, key: str, default=_ANY):
        """data[key] (or data.get(key, default)) of a top-level key: for a key in TOP, without decoding the rest of
        a spec from the cache."""
        found = self.__dict__["_top"] if key in TOP and "_data" in self.__dict__ else self.data
        return found[key] if default is _ANY else found.get(key, default)

    def _unpack(self) -> None:
        packed = self.packed
        if type(packed) is tuple:  # in a cache entry (see cached)
            entry, start, end = packed
            try:
                pointers, numbers = json.loads(entry[start:end])
                at = iter(numbers)
                found = list(zip(pointers, at, at, at, at))
                if len(found) != len(pointers) or len(numbers) != 4 * len(pointers):
                    raise ValueError("not four numbers for each pointer")
            except (ValueError, TypeError) as e:
                raise ValueError(f"{self.path}: its positions in the cache are damaged ({e}); remove the cache "
                                 "folder") from None
            self.values.update((p, (line, col)) for p, line, col, _, _ in found if line)
            self.keys.update((p, (line, col)) for p, _, _, line, col in found if line)
            self.packed = None
        elif packed is not None:
            values, keys = json.loads(packed)
            self.values.update((k, tuple(v)) for k, v in values.items())
            self.keys.update((k, tuple(v)) for k, v in keys.items())
            self.packed = None

    def has(self, pointer: str) -> bool:
        """A value sits at this pointer (asked of the data while the positions are packed: every value has one)."""
        if self.packed is None:
            return pointer in self.values
        node = self.data
        for part in pointer.split("/")[1:] if pointer else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and str(int(part)) == part and int(part) < len(node):
                node = node[int(part)]
            else:
                return False
        return True

    def at(self, pointer: str, key: bool = False) -> tuple[int, int]:
        """Position of a pointer's value (or key); falls back to the closest parent that has one."""
        self._unpack()
        table = self.keys if key else self.values
        while True:
            if pointer in table:
                return table[pointer]
            if pointer in self.values:
                return self.values[pointer]
            if not pointer:
                return (1, 1)
            pointer = pointer.rsplit("/", 1)[0]

    def __eq__(self, other) -> bool:
        if not isinstance(other, SpecFile):
            return NotImplemented
        self._unpack()
        other._unpack()
        return ((self.path, self.data, self.values, self.keys, self.raw, self.digest)
                == (other.path, other.data, other.values, other.keys, other.raw, other.digest))

    __hash__ = None  # mutable, like the dataclass it was


def pointer(parts) -> str:
    return "".join(map(_step, parts))


def _step(part) -> str:
    """One JSON pointer step: "/" and the part, escaped (RFC 6901)."""
    part = str(part)
    return "/" + (part.replace("~", "~0").replace("/", "~1") if "~" in part or "/" in part else part)


def _scalar(value: str, tag: str | None, plain: bool):
    if tag in (None, "!") and not plain:
        return value
    if tag is None:
        if _NULL.match(value):
            return None
        if _BOOL.match(value):
            return value.lower() == "true"
        if _INT.match(value):
            return int(value, 0) if value[:2] in ("0o", "0x") else int(value)
        if _FLOAT.match(value):
            if "inf" in value.lower() or "nan" in value.lower():
                return value  # .inf and .nan stay text: no spec field wants them
            number = float(value)
            return number if math.isfinite(number) else value
        return value
    kind = tag[len(_CORE):]
    if kind == "str":
        return value
    return _scalar(value, None, True) if kind in ("int", "float", "bool", "null") else value


class _Refused(Exception):
    def __init__(self, diag: Diagnostic):
        self.diag = diag


def load_text(text: str, path: str) -> tuple[SpecFile | None, list[Diagnostic]]:
    """Parse one spec document. Returns (spec, []) or (None or partial spec, diagnostics)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None, [error(path, (1, 1), "KF105", f"file is larger than {MAX_BYTES // 1024} KiB",
                            "a spec is a short file; split it or remove generated content")]
    spec = SpecFile(path, None)
    diags: list[Diagnostic] = []
    try:
        events = yaml.parse(text, Loader=_Parser)
        spec.data = _document(events, spec, diags)
    except _Refused as r:
        return None, [r.diag]
    except yaml.MarkedYAMLError as e:
        return None, [syntax.error_of(e, text, path)]
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, DEL, other controls)
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        return None, [error(path, (line, col), "KF101", f"character U+{e.character:04X} is not allowed in YAML",
                            "remove it, or write it as an escape inside a double-quoted string")]
    except yaml.YAMLError as e:
        return None, [error(path, (1, 1), "KF101", f"invalid YAML: {e}", "check the indentation and quoting")]
    return (None if diags else spec), diags


def read_file(root: Path, rel: str) -> tuple[bytes | None, list[Diagnostic]]:
    """A spec's bytes, read no further than the size limit. Only a regular file is read: a FIFO, socket or device is
    refused at once (opening without blocking, then asking what was opened), never waited on."""
    try:
        fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        return None, [error(rel, (1, 1), "KF101", f"cannot read file: {e.strerror}", _UNREADABLE)]
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return None, [error(rel, (1, 1), "KF101", "cannot read file: Is a directory",
                                "a folder's name must not end in .yaml or .yml under specs/: rename it")]
        if not stat.S_ISREG(mode):
            return None, [error(rel, (1, 1), "KF101", f"not a regular file but {special_kind(mode)}",
                                "a spec is a plain YAML file; remove this one")]
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_BYTES + 1), []  # never more: a 256 MiB "spec" costs nothing to refuse
    except OSError as e:
        return None, [error(rel, (1, 1), "KF101", f"cannot read file: {e.strerror}", _UNREADABLE)]
    finally:
        os.close(fd)


def special_kind(mode: int) -> str:
    """What a file that is neither a regular file, a folder nor a link is, in words."""
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")


def load_file(root: Path, rel: str) -> tuple[SpecFile | None, list[Diagnostic]]:
    raw, diags = read_file(root, rel)
    return (None, diags) if raw is None else load_bytes(raw, rel)


def load_bytes(raw: bytes, rel: str) -> tuple[SpecFile | None, list[Diagnostic]]:
    if len(raw) > MAX_BYTES:
        return None, [error(rel, (1, 1), "KF105", f"file is larger than {MAX_BYTES // 1024} KiB",
                            "a spec is a short file; split it or remove generated content")]
    if raw.startswith(b"\xef\xbb\xbf"):
        return None, [error(rel, (1, 1), "KF101", "file starts with a byte-order mark", "save the file as UTF-8 without BOM")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return None, [error(rel, (line, col), "KF101", f"file is not valid UTF-8 (byte 0x{raw[e.start]:02x})",
                            "save the file as UTF-8")]
    spec, diags = load_text(text, rel)
    if spec is not None:
        spec.digest = hashlib.sha256(raw).hexdigest()
    return spec, diags


def _document(events, spec: SpecFile, diags: list[Diagnostic]):
    it = iter(events)
    next(it)  # StreamStart
    ev = next(it)
    if isinstance(ev, yaml.StreamEndEvent):
        raise _Refused(error(spec.path, (1, 1), "KF104", "file is empty", "a spec is one YAML mapping"))
    counter = [0]
    data = _node(next(it), it, spec, diags, "", False, 0, counter)
    ev = next(it)  # DocumentEnd
    ev = next(it)
    if not isinstance(ev, yaml.StreamEndEvent):
        m = ev.start_mark
        raise _Refused(error(spec.path, (m.line + 1, m.column + 1), "KF104",
                             "file holds more than one YAML document", "keep one spec per file; remove the '---'"))
    if not isinstance(data, dict):
        raise _Refused(error(spec.path, (1, 1), "KF104", "the file's top level is not a mapping",
                             "a spec is a mapping of field: value lines"))
    return data


def _yaml11(value: str, spec: SpecFile, pos: tuple[int, int], diags: list[Diagnostic]) -> None:
    if _YAML11_BOOL.match(value):
        diags.append(error(spec.path, pos, "KF107", f"'{value}' is true/false to YAML 1.1 tools but text to kflowgen",
                           f'quote it ("{value}") for text, or write true or false'))
    elif _YAML11_NUMBER.match(value):
        what = "a base-60 number" if ":" in value else "an octal number"
        diags.append(error(spec.path, pos, "KF108", f"'{value}' is {what} to YAML 1.1 tools, not what it reads as here",
                           f'quote it ("{value}") for text, or write the number without a leading zero or colons'))
    elif _YAML11_DATE.match(value):
        diags.append(error(spec.path, pos, "KF109", f"'{value}' is a date to YAML 1.1 tools, not text",
                           f'quote it: "{value}"'))


def _node(ev, it, spec: SpecFile, diags, here: str, key: bool, depth: int, counter: list[int]):
    """The value of the node that starts with event ev; positions and raw texts recorded in spec under their JSON
    pointers (here is the node's own; a key's are not kept)."""
    counter[0] += 1
    pos = (ev.start_mark.line + 1, ev.start_mark.column + 1)
    if depth > MAX_DEPTH:
        raise _Refused(error(spec.path, pos, "KF105", f"values are nested more than {MAX_DEPTH} levels deep",
                             "a spec needs a few levels; flatten the structure"))
    if counter[0] > MAX_NODES:
        raise _Refused(error(spec.path, pos, "KF105", f"file has more than {MAX_NODES} values",
                             "a spec is a short file; split it or remove generated content"))
    if isinstance(ev, yaml.AliasEvent):
        raise _Refused(error(spec.path, pos, "KF103", f"alias '*{ev.anchor}' is not allowed in specs",
                             "write the value out in full"))
    if getattr(ev, "anchor", None):
        raise _Refused(error(spec.path, pos, "KF103", f"anchor '&{ev.anchor}' is not allowed in specs",
                             "write the value out in full; specs do not use anchors and aliases"))
    tag = getattr(ev, "tag", None)
    if tag not in (None, "!") and not (tag.startswith(_CORE) and tag[len(_CORE):] in
                                       ("str", "int", "float", "bool", "null", "map", "seq")):
        shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
        raise _Refused(error(spec.path, pos, "KF103", f"tag '{shown}' is not allowed in specs",
                             "remove the tag; values are plain strings, numbers, booleans, lists and mappings"))
    if not key:
        spec.values[here] = pos
    if isinstance(ev, yaml.ScalarEvent):
        if not ev.style:
            if not key:
                spec.raw[here] = ev.value
            if tag is None and not (key and ev.value in "yYnN"):
                _yaml11(ev.value, spec, pos, diags)  # (a key named n or y is common and a string to PyYAML too)
            if len(ev.value) > MAX_NUMBER and _INT.match(ev.value):
                diags.append(error(spec.path, pos, "KF204", f"number {ev.value[:12]}... has {len(ev.value)} characters",
                                   f"specs take numbers of at most {MAX_NUMBER} characters"))
                return ev.value
        return _scalar(ev.value, None if tag == "!" else tag, ev.implicit[0] and not ev.style)
    if isinstance(ev, yaml.SequenceStartEvent):
        out = []
        while not isinstance(ev := next(it), yaml.SequenceEndEvent):
            out.append(_node(ev, it, spec, diags, f"{here}/{len(out)}", False, depth + 1, counter))
        return out
    if isinstance(ev, yaml.MappingStartEvent):
        out: dict = {}
        first: dict[str, tuple[int, int]] = {}
        while not isinstance(kev := next(it), yaml.MappingEndEvent):
            kpos = (kev.start_mark.line + 1, kev.start_mark.column + 1)
            name = _node(kev, it, spec, diags, here, True, depth + 1, counter)
            if not isinstance(name, str):
                if isinstance(kev, yaml.ScalarEvent):
                    shown = kev.value or "(empty)"
                    raise _Refused(error(spec.path, kpos, "KF106", f"key '{shown}' is read as "
                                         f"{'empty' if name is None else 'true/false' if isinstance(name, bool) else 'a number'}, not as text",
                                         f"quote the key: \"{kev.value}\""))
                raise _Refused(error(spec.path, kpos, "KF106", "a key must be a single name, not a list or mapping",
                                     "write the key as one plain name"))
            at = here + _step(name)
            spec.keys[at] = kpos
            value = _node(next(it), it, spec, diags, at, False, depth + 1, counter)
            if name in first:
                diags.append(error(spec.path, kpos, "KF102",
                                   f"key '{name}' appears twice (first at line {first[name][0]})",
                                   "keep one of them; YAML would silently use the last"))
                continue
            first[name] = kpos
            out[name] = value
        return out
    raise _Refused(error(spec.path, pos, "KF101", "unexpected YAML event"))  # pragma: no cover
