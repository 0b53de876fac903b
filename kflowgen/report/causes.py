"""Why a change happened, from the spec files that differ between the two sides of a diff: a model promoted, added,
changed or no longer served (with its replicas and resources); an experiment's Jobs added, removed, archived or re-run
because fields of its spec (or its team's, the platform's) changed; a team starting or ending its offboarding. Lines
without their "team, env: ", which report.changes adds."""
from __future__ import annotations

from kflowgen.specs.layout import LABEL_EXPERIMENT
from kflowgen.specs.loader import SpecFile, pointer
from kflowgen.specs.served import served_model_from


def plural(kind: str, n: int) -> str:
    return kind if n == 1 else kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


def experiment(env: str, team: str, exp: str, found: dict[str, list], pair, base, head, specs: dict) -> str:
    """The line (without its "team, env: ") for an experiment's Jobs added and removed in an environment, said by
    its cause: the experiment added, removed, archived or restored (its spec's `archived`), or re-run because fields
    of its spec changed (pair: its (base, head) specs when the spec differs), or because its team's or the
    platform's spec did."""
    added, removed = found["added"], found["removed"]
    kind, namespace = (added or removed)[0][1:3]
    word = "sweep" if (team, exp) in head.sweeps | base.sweeps else "experiment"
    cluster = head.clusters.get(env) or base.clusters.get(env)
    delete = (f"kubectl{f' --server {cluster}' if cluster else ''} -n {namespace} delete {kind.lower()}s "
              f"-l {LABEL_EXPERIMENT}={exp}")
    one = len(removed) == 1
    kept = (f"{'stays' if one else 'stay'} in the cluster (Argo CD: Prune=false); to delete "
            f"{'it' if one else 'them'}: {delete}")
    jobs = f"{len(removed)} {plural(kind, len(removed))} {'leaves' if one else 'leave'} Git and"
    old, new = pair or (None, None)

    def runs(spec) -> bool:
        return spec is not None and env in spec.data.get("environments", ()) and not spec.data.get("archived")

    if pair and runs(new) and not runs(old):
        how = ("added" if old is None else "restored from the archive" if old.data.get("archived")
               else f"now runs in {env}")
        text = f"{word} {exp} {how} ({_count(len(added), 'trial')})"
    elif pair and runs(old) and not runs(new):
        how = ("removed" if new is None else "archived" if new.data.get("archived") else f"no longer runs in {env}")
        text = f"{word} {exp} {how}: its {jobs} {kept}"
    else:
        why = _fields(old, new, _experiment_field) if pair else _because(team, specs)
        because = f" because {why}" if why else ""
        if added and removed:
            text = (f"{word} {exp} re-run{because} ({_count(len(added), 'trial')}; the previous {len(removed)} kept "
                    "until the experiment is archived)")
        elif added:
            text = f"{word} {exp}: {_count(len(added), 'trial')} added{because}"
        else:
            text = f"{word} {exp}: {_count(len(removed), 'trial')} removed{because}; their {jobs} {kept}"
    return text


def _experiment_field(parts: list) -> str | None:
    if parts[0] in ("team", "name", "description", "environments", "archived"):
        return None  # said otherwise, or nothing that runs
    if parts[0] == "hyperparameters":  # epochs 10 → 20
        return ".".join(map(str, parts[1:]))
    if parts[:2] in (["sweep", "grid"], ["sweep", "random"]) and len(parts) > 2:  # grid dropout [0.3] → [0.3, 0.5]
        rest = parts[3:] if parts[2] == "params" and len(parts) > 3 else parts[2:]
        return f"{parts[1]} " + ".".join(map(str, rest))
    return ".".join(map(str, parts))


def _because(team: str, specs: dict) -> str:
    """The team's or platform's spec files that differ, when the experiment's own does not."""
    found = [p for p in specs if p in (f"specs/teams/{team}.yaml", f"specs/teams/{team}.yml", "specs/platform.yaml")]
    return f"{' and '.join(sorted(found))} changed" if found else ""


def model_lines(specs: dict):
    """((env, team, model), its line, read first) for every environment where a model spec that differs serves
    differently: promoted (with its replicas and resources), added, changed otherwise, or no longer served (read
    first)."""
    for path, (old, new) in sorted(specs.items()):
        if not path.startswith("specs/models/") or not (old or new):
            continue
        a, b = (served_model_from(spec) if spec else None for spec in (old, new))
        m = b or a
        for env in dict.fromkeys([*(a.environments if a else {}), *(b.environments if b else {})]):
            sa, sb = (x.environments.get(env) if x else None for x in (a, b))
            text, danger = None, False
            if sa and sb:
                if _serves(sa) != _serves(sb):
                    shape = _shape(sb) if _shape(sa) == _shape(sb) else f"{_shape(sa)} → {_shape(sb)}"
                    text = f"model {m.name} {_serves(sa)} → {_serves(sb)} ({shape})"
                    more = _fields(old, new, _model_field(env, skip=SHAPE))
                    text += f"; {more}" if more else ""
                elif fields := _fields(old, new, _model_field(env)):
                    text = f"model {m.name} v{sb.version}: {fields}"
            elif sb:
                text = f"model {m.name} {_serves(sb)} {'added' if a is None else 'starts serving'} ({_shape(sb)})"
            elif sa:
                text = (f"model {m.name} stops serving in {env} (was {_serves(sa)}, {_shape(sa)})"
                        + ("" if b else ": its spec is removed"))
                danger = True
            if text:
                yield (env, m.team, m.name), text, danger


def offboarding_lines(specs: dict):
    """((env, team), its line, read first) for every environment of a team whose offboarding (step 1 of leaving)
    starts or ends."""
    for path, (old, new) in sorted(specs.items()):
        if not path.startswith("specs/teams/") or old is None or new is None:
            continue
        was, now = (bool(s.data.get("offboarding")) for s in (old, new))
        team = new.data["name"]
        for env in (new.data.get("quota", {}) if was != now else ()):
            text = (f"{team} is being offboarded (step 1 of 2): its owners and members only read (ClusterRole view), "
                    "its notebooks mount the NAS read-only" if now else
                    f"{team} is no longer being offboarded: its owners and members have their roles again, its "
                    "notebooks write the NAS")
            yield (env, team), text, now


SHAPE = ("version", "canary", "previous", "replicas", "cpu", "memory", "gpu", "autoscale")  # said by _shape and _serves


def _serves(s) -> str:
    """'v4', or with a KServe canary 'v3, canary v4 at 10%'."""
    return f"v{s.previous}, canary v{s.version} at {s.canary}%" if s.canary else f"v{s.version}"


def _shape(s) -> str:
    """'2 replicas × 4 CPU, 16Gi, 1 a100' (or '2–6 replicas' when autoscaled)."""
    replicas = (f"{s.autoscale.min_replicas}–{s.autoscale.max_replicas} replicas" if s.autoscale
                else _count(s.replicas, "replica"))
    return f"{replicas} × {s.cpu} CPU, {s.memory}" + (f", {s.gpu_count} {s.gpu_type}" if s.gpu_type else "")


def _model_field(env: str, skip: tuple[str, ...] = ()):
    def name(parts: list) -> str | None:
        if parts[0] in ("team", "name", "description"):
            return None
        if parts[0] == "environments":
            if len(parts) < 3 or parts[1] != env or parts[2] in skip:
                return None
            parts = parts[2:]
        return ".".join(map(str, parts))
    return name


def _fields(old: SpecFile | None, new: SpecFile | None, name, most: int = 3) -> str:
    """'epochs 10 → 20, lr 0.01 → 0.001': the values that differ between two specs, as written, by the name
    name(json path parts) gives them (None: not said); at most `most`, then how many more."""
    sides = [{}, {}]
    for spec, out in zip((old, new), sides):
        if spec is not None:
            _flat(spec, spec.data, [], out)
    said = []
    for parts in dict.fromkeys([*sides[0], *sides[1]]):
        shown = name(list(parts))
        a, b = (side.get(parts, "unset") for side in sides)
        if shown is not None and a != b:
            said.append(f"{shown} {_cut(a)} → {_cut(b)}")
    return ", ".join(said[:most]) + (f" and {len(said) - most} more" if len(said) > most else "")


def _cut(value: str, most: int = 60) -> str:
    """A value as written, at most `most` characters of it: one long value does not push the other changes out of
    the pull-request comment."""
    return value if len(value) <= most else value[:most - 1] + "…"


def _flat(spec: SpecFile, node, parts: list, out: dict) -> None:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            _flat(spec, v, [*parts, k], out)
    else:
        out[tuple(parts)] = _shown(spec, parts, node)


def _shown(spec: SpecFile, parts: list, value) -> str:
    """A value as the spec writes it (a plain scalar's spelling kept: 1e-3 stays 1e-3)."""
    written = spec.raw.get(pointer(parts))
    if written is not None:
        return written
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(spec, [*parts, i], v) for i, v in enumerate(value)) + "]"
    return "{}" if isinstance(value, dict) else str(value)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"
