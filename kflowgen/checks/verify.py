"""Verifying built output: strict kubeconform over every built object, and the JupyterHub values against the chart."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from kflowgen import cache as results_cache, tools, upstream
from kflowgen.build import Built
from kflowgen.checks import schemas as kschemas
from kflowgen.checks import kubeconform as kubeconform_adapter, lean_yaml
from kflowgen.checks.prechecker import Prechecker
from kflowgen.diagnostics import Diagnostic, error, warning
from kflowgen.specs.model import Model

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF402": "built object fails strict schema validation",
    "KF403": "no schema for a built kind",
    "KF404": "generated JupyterHub values fail the chart's values schema",
    "KF407": "generated JupyterHub values not checked: no values schema for the pinned chart version",
    "KF408": "no CRDs for the pinned Argo CD version",
    "KF903": "CRD or chart file given in validation settings cannot be read",
}


def manifests(root: Path, model: Model, built: Built, jobs: int, cache: Path,
              store: results_cache.Cache | None = None) -> list[Diagnostic]:
    """kubeconform -strict on every overlay's output, against the pinned Kubernetes schemas and the CRD files.
    An overlay whose exact output already passed against the same schemas and validators is not checked again.
    An overlay whose objects the builder gave (built.parsed) and all pass the Prechecker, the same schemas
    compiled once in this process, does not need kubeconform; every other one goes to kubeconform."""
    return manifests_job(root, model, built, jobs, cache, store)[0]()


def manifests_job(root: Path, model: Model, built: Built, jobs: int, cache: Path,
                  store: results_cache.Cache | None = None) -> tuple[Callable[[], list[Diagnostic]], dict[str, str]]:
    """manifests() in two steps: this call finds what the cache and the prechecker pass; the function it returns
    runs kubeconform on the rest (it may run on another thread while this one does other work) and gives the
    findings. Also the validators' versions, {name: version}."""
    used: dict[str, str] = {}
    found = _manifests(root, model, built, jobs, cache, used, store)
    return (found if callable(found) else lambda: found), used


def _manifests(root: Path, model: Model, built: Built, jobs: int, cache: Path,
               used: dict[str, str], store: results_cache.Cache | None):
    kubeconform = tools.find("kubeconform", root)
    if isinstance(kubeconform, Diagnostic):
        return [kubeconform]
    used["kubeconform"] = kubeconform.version
    p = model.platform
    crds = crd_files(root, p)
    if crds and isinstance(crds[0], Diagnostic):
        return crds
    try:
        folder = kschemas.schema_dir(p.kubernetes_version, crds, cache)
    except kschemas.SchemaError as e:
        return [error(p.source.path, p.source.at("/kubernetesVersion"), "KF903", str(e))]
    store = store or results_cache.Cache(None)

    keyed = results_cache.keyed("kubeconform", kubeconform.version, folder.name, results_cache.code_digest())

    prechecker = Prechecker(folder)
    used["jsonschema-rs"] = prechecker.version()
    # A pass may be the prechecker's, on objects kflowgen-kbuild handed over: not trusted across versions of either
    # (code_digest names jsonschema-rs's).
    batch = tools.find_batch()
    passed = results_cache.Passes(store, "valid", kubeconform.version, folder.name, results_cache.code_digest(),
                                  tools.batch_version(batch) if batch else "no kflowgen-kbuild")
    # an overlay that passed whole is not looked into; of the others, a plain directory's files one by one (a
    # one-file change re-checks that file only); an overlay passes whole once all its parts have passed
    # (by sha256: an unchanged overlay is not read; nor, in a group of overlays that passed, looked up one by one).
    # An overlay at a time: what is kept for kubeconform is its units' keys, not every unit's (560,000 at 10,000 teams)
    digests = {o: built.digest(o) for o in built.overlays}
    todo: dict[str, str] = {}  # unit kubeconform is to read -> its key
    overlay_of: dict[str, str] = {}  # unit of todo -> its overlay
    whole: dict[str, str] = {}  # overlay of a unit of todo -> its key as a whole
    for overlay in passed.unpassed(digests):
        k = keyed(digests[overlay])
        if passed.has(k, overlay, whole=True):
            continue
        left = False
        for unit in built.units([overlay], passed.unchanged):  # {unit: overlay}, no text read
            unit_key = k if unit == overlay else keyed(built.unit_digest(unit))
            if unit != overlay and passed.has(unit_key, overlay):
                continue
            given = built.given(unit)  # objects the builder or renderer gave (not parsed here: kubeconform reads)
            if given is not None and all(map(prechecker.passes, given)):
                passed.add(unit_key, overlay)
            else:
                todo[unit], overlay_of[unit], left = unit_key, overlay, True
        if left:
            whole[overlay] = k
        else:
            passed.add(k, overlay, whole=True, listing=built.listing(overlay))
    if not todo:
        passed.save()
        return []
    return lambda: _kubeconform(kubeconform, folder, p, built, list(todo), todo, jobs, passed, overlay_of, whole)


def crd_files(root: Path, p) -> list[Path] | list[Diagnostic]:
    """The CRD files custom kinds are validated against (and installed from, for --server): those kflowgen ships for
    the platform's Argo CD version (and Kubeflow training), then the platform's own validation.crds, which win for a
    kind both define. Findings instead when a listed path is missing or unreadable, or when kflowgen ships no CRDs for
    the pinned Argo CD version and validation.crds does not give them."""
    paths = [root / c for c in p.crds]
    missing = [c for c, path in zip(p.crds, paths) if not path.exists()]
    if missing:
        return [error(p.source.path, p.source.at("/validation/crds"), "KF903",
                      f"CRD path '{m}' does not exist", "fix validation.crds in the platform file") for m in missing]
    try:
        own = kschemas.crd_files_in(paths)
        shipped = upstream.crd_files(p.argocd_version, bool(p.kserve_environments))
        if shipped is None and not {"Application", "AppProject"} <= kschemas.crd_kinds(own, "argoproj.io"):
            where = p.source.at("/argocd/version") if p.source.has("/argocd/version") else p.source.at("/argocd", key=True)
            return [error(p.source.path, where, "KF408", f"kflowgen ships the Argo CD CRDs of version "
                          f"{', '.join(upstream.ARGOCD)}, not {p.argocd_version}",
                          f"set argocd.version to {', '.join(upstream.ARGOCD)}, or add Argo CD {p.argocd_version}'s "
                          "manifests/crds/application-crd.yaml and appproject-crd.yaml to validation.crds")]
    except kschemas.SchemaError as e:
        return [error(p.source.path, p.source.at("/validation/crds"), "KF903", str(e))]
    return (shipped or upstream.training_crd_files() + upstream.serving_crd_files(bool(p.kserve_environments))) + own


def _kubeconform(kubeconform, folder: Path, p, built: Built, todo: list[str], keys: dict[str, str],
                 jobs: int, passed: results_cache.Passes, overlay_of: dict[str, str], whole: dict[str, str]
                 ) -> list[Diagnostic]:
    """kubeconform on the units todo (each unit's text read to be written, and let go); findings are named by the
    unit's overlay."""
    with tempfile.TemporaryDirectory(prefix="kflowgen-verify-") as tmp:
        files = {}
        for i, unit in enumerate(sorted(todo)):
            files[unit] = Path(tmp) / f"{i:05d}.yaml"
            text = built.text(unit)
            files[unit].write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        results = kubeconform_adapter.run(kubeconform, files, kschemas.kubeconform_args(folder), p.kubernetes_version, jobs)
    if isinstance(results, Diagnostic):
        return [results]
    found, failed = [], set()
    for r in results:
        if d := _diagnostic(r, built, overlay_of):
            found.append(d)
            failed.add(r["overlay"])
    for unit in todo:
        if unit not in failed:
            passed.add(keys[unit], overlay_of[unit])
    for overlay in {overlay_of[u] for u in todo} - {overlay_of[u] for u in failed}:
        passed.add(whole[overlay], overlay, whole=True, listing=built.listing(overlay))
    passed.save()
    return found


def _namespace(built: Built, unit: str, kind: str, name: str) -> str:
    """The namespace of a failing object, which kubeconform does not report (objects read only when something
    failed)."""
    for doc in built.unit_objects(unit):
        meta = doc.get("metadata") or {}
        if doc.get("kind") == kind and meta.get("name") == name:
            return meta.get("namespace", "")
    return ""


def _diagnostic(r: dict, built: Built, overlay_of: dict[str, str]) -> Diagnostic | None:
    status = r.get("status")
    if status in ("statusValid", "statusSkipped", "statusEmpty"):
        return None
    unit, kind, name = r["overlay"], r.get("kind", "?"), r.get("name", "?")
    overlay = overlay_of.get(unit, unit)
    ns = _namespace(built, unit, kind, name) if unit in overlay_of else ""
    ident = f"{kind} {ns + '/' if ns else ''}{name}"
    msg = r.get("msg", "")
    if status == "statusError" and "could not find schema" in msg:
        return error(overlay, (0, 0), "KF403", f"{ident}: no schema for {r.get('version', '')} {kind}",
                     "add the CRD file that defines it to validation.crds in the platform file")
    errs = r.get("validationErrors") or [{"path": "", "msg": msg}]
    text = "; ".join(f"{e.get('path') or '/'}: {e.get('msg')}" for e in errs)
    return error(overlay, (0, 0), "KF402", f"{ident}: {text}", "the generated object is invalid; report a kflowgen bug "
                 "if the specs did not ask for this")


def merge_values(defaults, override):
    """Helm's merge of user values over chart defaults: mappings merge, everything else replaces, null deletes. The
    result holds the override's own values where they replace (not copies: at 10,000 teams the generated values hold
    a list of 20,000 profiles), so neither is to be changed afterwards."""
    if not isinstance(defaults, dict) or not isinstance(override, dict):
        return override
    out = dict(defaults)  # the defaults' values are not changed either: each merged mapping is a new one
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_values(out.get(k), v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


HUB_CODES = ("KF404", "KF407")  # what hub_values reports of the values (KF903, of a chart it cannot read, is shared)


def hub_values(root: Path, model: Model, files: dict[str, bytes], envs: list[str],
               store: results_cache.Cache | None = None) -> list[Diagnostic]:
    """The generated values, merged over the chart's defaults, must pass the chart's values schema (as helm checks):
    the chart folder of validation.jupyterhubChart, else the chart kflowgen ships for the pinned version; without
    either, one warning says the values were not checked. A pass is cached under the values' exact bytes, the
    chart's values and schema, and kflowgen's code (with 1,000 teams an environment's values take a second)."""
    p = model.platform
    chart = _chart(root, p)
    if isinstance(chart, Diagnostic):
        return [chart]
    store = store or results_cache.Cache(None)
    chart_id = json.dumps([chart.values, chart.schema], sort_keys=True)
    validator, out = None, []
    # environments that hold the same teams hold one values file (one bytes object, see jupyterhub.values_file):
    # hashed and checked once, its findings given for each environment's file
    key_of = results_cache.PerObject(lambda data: results_cache.key("hub-values", results_cache.code_digest(),
                                                                    chart_id, data))
    found: dict[str, list[str]] = {}  # key -> the messages of its findings
    for env in envs:
        rel = f"overlays/{env}/jupyterhub/values.yaml"
        data = files[rel]
        k = key_of(data)
        if k not in found:
            if store.get("hub-values", k) == b"pass":
                found[k] = []
                continue
            if validator is None:
                import jsonschema  # only when some values are checked

                validator = jsonschema.validators.validator_for(chart.schema)(chart.schema)
            values = merge_values(chart.values, lean_yaml.load(data))
            found[k] = [f"/{'/'.join(map(str, e.absolute_path))}: {e.message} (against {chart.origin})" for e in
                        sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))]
            if not found[k]:
                store.put("hub-values", k, b"pass")
        out += [error(rel, (0, 0), "KF404", message, "the generated values do not fit the pinned chart; report a "
                      "kflowgen bug") for message in found[k]]
    return out


def _chart(root: Path, p) -> upstream.Chart | Diagnostic:
    if not p.jupyterhub_chart:
        shipped = upstream.chart(p.hub_chart_version)
        if shipped is not None:
            return shipped
        where = p.source.at("/jupyterhub/chartVersion") if p.source.has("/jupyterhub/chartVersion") else (1, 1)
        return warning(p.source.path, where, "KF407", f"the generated JupyterHub values were not checked against "
                       f"the chart's values schema: kflowgen ships the schema of chart {', '.join(upstream.JUPYTERHUB)}, "
                       f"not {p.hub_chart_version}", "set validation.jupyterhubChart to the chart's folder (helm pull "
                       f"jupyterhub/jupyterhub --version {p.hub_chart_version} --untar)")
    folder = root / p.jupyterhub_chart
    try:
        values = yaml.safe_load((folder / "values.yaml").read_text())
        schema_file = folder / "values.schema.json"
        schema = (json.loads(schema_file.read_text()) if schema_file.is_file()
                  else yaml.safe_load((folder / "values.schema.yaml").read_text()))
    except (OSError, ValueError, yaml.YAMLError) as e:
        return error(p.source.path, p.source.at("/validation/jupyterhubChart"), "KF903",
                     f"cannot read the JupyterHub chart's values and schema in '{p.jupyterhub_chart}': {e}")
    return upstream.Chart(values, schema, f"the chart in {p.jupyterhub_chart}")
