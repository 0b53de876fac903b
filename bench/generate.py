"""Generate a synthetic kflowgen repository of N teams in the shapes of the example specs (for benchmarks and
crash tests): python bench/generate.py DEST --teams 1000 [--experiments 10] [--models 1]."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

PLATFORM = """\
name: bench
repo: {{url: https://git.example.com/bench/gitops.git}}
kubernetesVersion: "1.34.0"
jupyterhub: {{auth: {{type: oidc, oidc: {{authorizeUrl: https://sso.example.com/auth, tokenUrl: https://sso.example.com/token, userdataUrl: https://sso.example.com/userinfo}}}}}}
registries: [registry.example.com/ml/, docker.io/tensorflow/]
storage: {{storageClass: nas-rwx}}
gpuTypes:
  a100: {{nodeSelector: {{nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}}}}
  t4: {{nodeSelector: {{nvidia.com/gpu.product: Tesla-T4}}}}
environments:
  dev: {{cluster: https://dev.k8s.example.com, capacity: {{gpu: {{a100: {gpus}, t4: {gpus}}}}}}}
  staging: {{cluster: https://staging.k8s.example.com, capacity: {{gpu: {{a100: {gpus}, t4: {gpus}}}}}}}
  prod: {{cluster: https://prod.k8s.example.com, capacity: {{gpu: {{a100: {gpus}, t4: {gpus}}}}}}}
{validation}"""

TEAM = """\
name: {name}
description: synthetic team {i}
owners: [owner-{i}@example.com]
members:
  - group: {name}-ds
  - group: {name}-leads
    role: admin
notebook:
  image: registry.example.com/ml/notebook:2026.{month}
  profiles:
    - {{name: cpu, cpu: 4, memory: 16Gi, guarantee: {{cpu: 1, memory: 4Gi}}, default: true}}
    - {{name: a100, cpu: 8, memory: 64Gi, gpu: {{type: a100, count: 1}}}}
storage: {{size: 500Gi}}
quota:
  dev: {{gpu: {{a100: 4, t4: 2}}, cpu: 64, memory: 512Gi}}
  staging: {{gpu: {{a100: 2, t4: 2}}, cpu: 32, memory: 256Gi}}
  prod: {{gpu: {{a100: 4, t4: 4}}, cpu: 128, memory: 1Ti}}
"""

EXPERIMENT = """\
team: {team}
name: exp-{j}
run: python train.py
workdir: projects/exp-{j}
hyperparameters: {{epochs: {j}}}
resources: {{gpu: {{type: a100, count: 1}}, cpu: 8, memory: 32Gi}}
environments: [dev]
"""

MODEL = """\
team: {team}
name: model-{j}
path: models/model-{j}
environments:
  staging: {{version: 2, cpu: 2, memory: 4Gi}}
  prod: {{version: 1, replicas: 2, cpu: 2, memory: 4Gi}}
"""


def generate(dest: Path, teams: int, experiments: int = 10, models: int = 1, crds: list[str] | None = None) -> Path:
    """Write specs/ and bases/ for a repository of `teams` teams; returns dest."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "specs" / "teams").mkdir(parents=True)
    validation = ""
    if crds:
        validation = "validation:\n  crds: [" + ", ".join(crds) + "]\n"
    (dest / "specs" / "platform.yaml").write_text(PLATFORM.format(gpus=8 * teams, validation=validation))
    for i in range(teams):
        name = f"team-{i:04d}"
        (dest / "specs" / "teams" / f"{name}.yaml").write_text(TEAM.format(name=name, i=i, month=10 + i % 3))
        if experiments:
            (dest / "specs" / "experiments" / name).mkdir(parents=True)
        for j in range(experiments):
            (dest / "specs" / "experiments" / name / f"exp-{j}.yaml").write_text(EXPERIMENT.format(team=name, j=j))
        if models:
            (dest / "specs" / "models" / name).mkdir(parents=True)
        for j in range(models):
            (dest / "specs" / "models" / name / f"model-{j}.yaml").write_text(MODEL.format(team=name, j=j))
    shutil.copytree(PROJECT / "bases", dest / "bases")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--models", type=int, default=1)
    parser.add_argument("--crds", action="append", default=[], help="validation.crds entry (repeatable)")
    args = parser.parse_args()
    generate(args.dest, args.teams, args.experiments, args.models, args.crds)


if __name__ == "__main__":
    main()
