"""Regenerate kflowgen/upstream/: the upstream schemas kflowgen ships, and SOURCES.json, which names for each file the
upstream project, version, file, licence and the sha256 of both the upstream file and the file kept here.

    python tools/upstream/update.py [--jupyterhub-chart PATH]

CRDs come from the upstream projects' own Go modules at pinned versions (`go mod download -json MODULE@VERSION`: the
go command checks each module's hash against the checksum database and prints it, recorded here as `module_sum`);
the JupyterHub chart's values and values schema from the chart of the pinned release (`helm pull
jupyterhub/jupyterhub --version 4.4.0 --untar`, or the chart source at that tag). CRDs are kept as JSON without their
`description` texts (a third of their size; validation never reads them); nothing else changes. Run by kflowgen's
maintainers when a pinned version changes; tests/test_shipped_schemas.py checks the files against SOURCES.json. The go
command runs with the toolchain a module's go.mod asks for (pinned below), or the one GOTOOLCHAIN names when set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
OUT = PROJECT / "kflowgen" / "upstream"

# (folder under kflowgen/upstream, project, Go module, version, Go toolchain the module's go.mod asks for, files)
MODULES = [
    ("argo-cd/v3.6.2", "Argo CD", "github.com/argoproj/argo-cd/v3", "v3.6.2", "go1.27.0",
     ["manifests/crds/application-crd.yaml", "manifests/crds/appproject-crd.yaml"]),
    ("training-operator/v1.9.4", "Kubeflow Training Operator", "github.com/kubeflow/training-operator", "v1.9.4", None,
     ["manifests/base/crds/kubeflow.org_pytorchjobs.yaml", "manifests/base/crds/kubeflow.org_tfjobs.yaml"]),
    ("trainer/v2.3.0", "Kubeflow Trainer", "github.com/kubeflow/trainer/v2", "v2.3.0", None,
     [f"manifests/base/crds/trainer.kubeflow.org_{kind}.yaml"
      for kind in ("trainjobs", "trainingruntimes", "clustertrainingruntimes")]),
    ("kueue/v0.19.2", "Kueue", "sigs.k8s.io/kueue", "v0.19.2", None,
     [f"config/components/crd/bases/kueue.x-k8s.io_{kind}.yaml"
      for kind in ("resourceflavors", "cohorts", "clusterqueues", "localqueues")]),
    # the InferenceService only: kflowgen renders no ServingRuntime (a team may not make one; the platform installs
    # KServe's ClusterServingRuntimes with KServe itself)
    ("kserve/v0.20.0", "KServe", "github.com/kserve/kserve", "v0.20.0", None,
     ["config/crd/full/serving.kserve.io_inferenceservices.yaml"]),
]
CHART = ("jupyterhub/4.4.0", "Zero to JupyterHub", "4.4.0", ["values.yaml", "values.schema.json"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_descriptions(node):
    """node without `description` texts (a property named description has a schema, not a text, and stays)."""
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def dump(path: Path, doc) -> bytes:
    data = (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def download(module: str, version: str, toolchain: str | None) -> dict:
    # a GOTOOLCHAIN of your own (one you already have, at least the module's) wins over the pinned one
    env = dict(os.environ, GOFLAGS="-modcacherw", GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN") or toolchain or "local")
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], env=env, capture_output=True,
                         text=True, cwd="/")
    info = json.loads(out.stdout or "{}")
    if out.returncode or "Dir" not in info:
        raise SystemExit(f"go mod download {module}@{version} failed: {info.get('Error') or out.stderr}")
    return info


def licence(folder: Path) -> tuple[str, bytes]:
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (folder / name).is_file():
            return name, (folder / name).read_bytes()
    raise SystemExit(f"no licence file in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jupyterhub-chart", type=Path, default=PROJECT.parent / "shared/upstream/jupyterhub-chart",
                        help="folder holding the chart folder jupyterhub/ and LICENSE (default: ../shared/upstream/"
                             "jupyterhub-chart)")
    args = parser.parse_args()
    sources = []
    for folder, project, module, version, toolchain, files in MODULES:
        info = download(module, version, toolchain)
        mod = Path(info["Dir"])
        name, text = licence(mod)
        lic = OUT / "LICENSES" / f"{folder.split('/')[0]}.txt"
        lic.parent.mkdir(parents=True, exist_ok=True)
        lic.write_bytes(text)
        for rel in files:
            raw = (mod / rel).read_bytes()
            crds = [d for d in yaml.safe_load_all(raw) if isinstance(d, dict)]
            assert len(crds) == 1 and crds[0]["kind"] == "CustomResourceDefinition", rel
            crd = without_descriptions(crds[0])
            crd["metadata"] = {"name": crd["metadata"]["name"]}  # no build annotations
            kept = f"{folder}/{Path(rel).stem}.json"
            data = dump(OUT / kept, crd)
            sources.append({"file": kept, "project": project, "version": version, "module": module,
                            "module_sum": info["Sum"], "upstream_path": rel, "upstream_sha256": sha256(raw),
                            "licence": f"{lic.relative_to(OUT).as_posix()} (the module's {name}, Apache-2.0)",
                            "sha256": sha256(data), "changes": "JSON; description texts and annotations removed"})
    folder, project, version, files = CHART
    chart = args.jupyterhub_chart
    meta = yaml.safe_load((chart / "jupyterhub/Chart.yaml").read_text())
    if meta.get("version") not in (version, "0.0.1-set.by.chartpress"):
        raise SystemExit(f"{chart} holds chart version {meta.get('version')}, not {version}")
    lic = OUT / "LICENSES" / "zero-to-jupyterhub-k8s.txt"
    lic.write_bytes((chart / "LICENSE").read_bytes())
    for rel in files:
        raw = (chart / "jupyterhub" / rel).read_bytes()
        doc = yaml.safe_load(raw) if rel.endswith(".yaml") else json.loads(raw)
        kept = f"{folder}/{Path(rel).name.removesuffix('.yaml').removesuffix('.json')}.json"
        data = dump(OUT / kept, doc)
        sources.append({"file": kept, "project": project, "version": version,
                        "module": "helm chart jupyterhub (https://hub.jupyter.org/helm-chart/)", "module_sum": "",
                        "upstream_path": f"jupyterhub/{rel}", "upstream_sha256": sha256(raw),
                        "licence": "LICENSES/zero-to-jupyterhub-k8s.txt (BSD-3-Clause)", "sha256": sha256(data),
                        "changes": "JSON" if rel.endswith(".yaml") else "JSON, keys sorted"})
    (OUT / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n")
    print(f"wrote {len(sources)} files and SOURCES.json to {OUT.relative_to(PROJECT)}")


if __name__ == "__main__":
    main()
