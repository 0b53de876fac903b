"""One YAML document read into Python objects from the parser's events, without the node graph yaml.load composes
first: the same objects (each scalar resolved and constructed as yaml.load's safe loader does), read in less time,
and without a peak several times their size (JupyterHub's values at 1,000 teams, 2.3 MB of YAML: 11 MiB of
objects, and 66 MiB while yaml.load composes them; ten times that at 10,000 teams). A document with anything else
(anchors, aliases, merge keys, tags other than the standard ones, a key that is a mapping or a list, more than one
document) is read by yaml.load."""
from __future__ import annotations

import yaml
from yaml.events import (DocumentEndEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent,
                         SequenceStartEvent, StreamEndEvent)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KIND = {MappingStartEvent: "tag:yaml.org,2002:map", SequenceStartEvent: "tag:yaml.org,2002:seq"}
# the tags a scalar is made under here (a collection's tag on a scalar, or any other, is yaml.load's to refuse)
_SCALAR = {f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "binary", "timestamp", "str")}


class _Other(Exception):
    """The document holds something read by yaml.load only."""


def load(data: bytes | str):
    """yaml.load(data, safe loader) of a one-document stream."""
    try:
        return _from_events(data)
    except _Other:
        return yaml.load(data, Loader=_LOADER)


def _from_events(data: bytes | str):
    loader = _LOADER(data)
    try:
        loader.get_event()  # the stream's start
        if loader.check_event(StreamEndEvent):
            return None  # no document (as yaml.load reads it)
        loader.get_event()  # the document's start
        made = loader.yaml_constructors
        stack: list[list] = []  # [mapping or list, the key read (a 1-tuple) or None]
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is ScalarEvent:
                tag = (event.tag if event.tag not in (None, "!")
                       else loader.resolve(yaml.ScalarNode, event.value, event.implicit))
                if event.anchor is not None or tag not in _SCALAR:  # (merge keys and value keys too)
                    raise _Other
                value = made[tag](loader, yaml.ScalarNode(tag, event.value, style=event.style))
            elif kind in _KIND:
                if event.anchor is not None or not event.implicit and event.tag != _KIND[kind]:
                    raise _Other
                stack.append([{} if kind is MappingStartEvent else [], None])
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value = stack.pop()[0]
            else:  # an alias
                raise _Other
            if not stack:
                break
            top = stack[-1]
            if type(top[0]) is list:
                top[0].append(value)
            elif top[1] is None:
                if isinstance(value, (dict, list)):
                    raise _Other
                top[1] = (value,)
            else:
                top[0][top[1][0]] = value
                top[1] = None
        if type(loader.get_event()) is not DocumentEndEvent or type(loader.get_event()) is not StreamEndEvent:
            raise _Other
        return value
    finally:
        loader.dispose()
