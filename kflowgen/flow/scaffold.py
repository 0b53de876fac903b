"""Scaffolding: the files `kflowgen init` and `kflowgen new team` write for a person to edit."""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

from kflowgen import __version__
from kflowgen.checks import codeowners
from kflowgen.diagnostics import Diagnostic, error
from kflowgen.tools import KUBECONFORM, KUSTOMIZE

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF701": "`kflowgen init` into a folder that already holds specs",
    "KF703": "`new experiment --from-notebook` run outside a kflowgen notebook",
    "KF705": "name given to `kflowgen new` that its spec would refuse",
}

PLATFORM = """\
# yaml-language-server: $schema=../schemas/platform.schema.json
# The ML platform, owned by the platform team: environments, GPU types, storage, JupyterHub.
name: {name}
repo:
  url: {repo_url}          # where Argo CD pulls this repository from
  revision: main
kubernetesVersion: "1.34.0"   # built manifests are validated against this version's schemas
argocd:
  namespace: argocd
  version: 3.6.2           # Applications and AppProjects are validated against this version's CRDs
jupyterhub:
  chartVersion: 4.4.0
  namespace: jupyterhub
  secret: jupyterhub-secrets # made by you outside Git, with the hub's secrets: see kflowgen's docs/notebooks-and-network.md, "Sign-in"
  auth:                    # who signs in; team owners and member groups are this provider's names
    type: oidc
    oidc:
      authorizeUrl: https://sso.example.com/realms/ml/protocol/openid-connect/auth
      tokenUrl: https://sso.example.com/realms/ml/protocol/openid-connect/token
      userdataUrl: https://sso.example.com/realms/ml/protocol/openid-connect/userinfo
      usernameClaim: email
    adminGroups: [ml-platform-admins]
registries:                # notebook and job images must come from one of these
  - registry.example.com/ml/
storage:
  storageClass: nas-rwx    # a ReadWriteMany StorageClass for the team NAS volumes
  mountPath: /workspace
gpuTypes:
  a100:
    displayName: NVIDIA A100 80GB
    nodeSelector:
      nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB
environments:              # each environment is one cluster that Argo CD syncs
  dev:
    cluster: https://dev.k8s.example.com
    capacity:
      gpu: {{a100: 4}}
    # queueing: {{enabled: true, borrowing: 50%}}   # queue training with Kueue (installed on the cluster): docs/queueing.md, "Queueing"
  staging:
    cluster: https://staging.k8s.example.com
    capacity:
      gpu: {{a100: 4}}
  prod:
    cluster: https://prod.k8s.example.com
    capacity:
      gpu: {{a100: 16}}
{validation}"""

TEAM = """\
# yaml-language-server: $schema=../../schemas/team.schema.json
# Team {name}. Field reference: docs/specs.md, "Spec reference", or hover in an editor with the YAML extension.
name: {name}
description: What the team works on
owners:                    # users who administer the team namespace
  - {owner}
members:                   # identity-provider groups; role is view, edit (default) or admin
  - group: {name}-members
notebook:
  image: {image}
  profiles:                # the server sizes members can pick in JupyterHub
    - name: cpu
      displayName: CPU, 2 cores
      cpu: 2
      memory: 8Gi
      default: true
    # - name: gpu
    #   displayName: One GPU
    #   cpu: 8
    #   memory: 64Gi
    #   gpu: {{type: {gpu}, count: 1}}   # needs GPU quota below
storage:
  size: 100Gi              # the team's shared NAS volume, mounted at the platform's mountPath
quota:                     # per environment; leave an environment out and the team is not there
{quota}"""

WORKFLOW = """\
# The pull-request gate: specs are validated, overlays built and checked, and drift fails the run.
name: kflowgen
on:
  pull_request:
  push:
    branches: [main]
permissions:
  contents: read
  pull-requests: write  # the gate's comment on the pull request, and nothing more
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0   # kflowgen diff renders the base branch too
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - uses: actions/setup-go@v5
        with:
          go-version: "1.26"
      - name: Install kflowgen and its pinned tools
        run: |
          pip install "kflowgen=={version}"   # the kflowgen that wrote this workflow
          kflowgen tools install   # kustomize {kustomize}, kubeconform {kubeconform}
      # kflowgen's result cache: runs on main start empty and save what they used; pull requests only read it.
      - name: Restore the result cache of main
        if: github.event_name == 'pull_request'
        uses: actions/cache/restore@v4
        with:
          path: ~/.cache/kflowgen
          key: kflowgen-results-${{{{ runner.os }}}}-${{{{ github.sha }}}}
          restore-keys: kflowgen-results-${{{{ runner.os }}}}-
      # one process: validate, render --check and the diff against the base, sharing the head's work; the
      # base comes from the cache when main's run validated it
      - name: Gate (validate, render --check, diff against the base branch)
        if: github.event_name == 'pull_request'
        env:
          BASE_REF: ${{{{ github.base_ref }}}}
        run: kflowgen gate --base "origin/$BASE_REF" --format github --markdown "$RUNNER_TEMP/kflowgen-gate.md"
      # the gate's verdict, findings and changes: into the job summary, and as one comment on the pull request,
      # edited in place on every push (not for pull requests from forks, whose token cannot write comments)
      - name: Job summary
        if: always() && github.event_name == 'pull_request'
        run: if [ -s "$RUNNER_TEMP/kflowgen-gate.md" ]; then cat "$RUNNER_TEMP/kflowgen-gate.md" >> "$GITHUB_STEP_SUMMARY"; fi
      - name: Comment on the pull request
        if: always() && github.event_name == 'pull_request' && github.event.pull_request.head.repo.full_name == github.repository
        env:
          GH_TOKEN: ${{{{ github.token }}}}
          PR: ${{{{ github.event.pull_request.number }}}}
        run: |
          body="$RUNNER_TEMP/kflowgen-gate.md"
          [ -s "$body" ] || exit 0
          id=$(gh api "repos/$GITHUB_REPOSITORY/issues/$PR/comments" --paginate --jq '.[] | select(.user.login == "github-actions[bot]" and (.body | startswith("<!-- kflowgen gate -->"))) | .id' | head -n 1)
          if [ -n "$id" ]; then
            gh api -X PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$id" -F "body=@$body" > /dev/null
          else
            gh api "repos/$GITHUB_REPOSITORY/issues/$PR/comments" -F "body=@$body" > /dev/null
          fi
      - name: Validate specs and built manifests
        if: github.event_name == 'push'
        run: kflowgen validate --format github
      - name: Generated overlays are up to date
        if: github.event_name == 'push'
        run: kflowgen render --check --format github
      - name: Save the result cache for the pull requests that follow
        if: github.event_name == 'push'
        uses: actions/cache/save@v4
        with:
          path: ~/.cache/kflowgen
          key: kflowgen-results-${{{{ runner.os }}}}-${{{{ github.sha }}}}
"""


CODEOWNERS = """\
# Who reviews what: replace @your-org with your GitHub organisation (or GitLab group) and the team names with yours,
# and turn on "Require review from Code Owners" for main. The last line that matches a path decides its owners.
# kflowgen's gate warns (KF317) when a team's experiments and models, or a platform-owned path, have no owner here.

# The platform team owns everything by default: the platform file, team files (members, profiles and quotas: a team
# must not raise its own quota), bases/, schemas/, .github/ and the generated overlays.
*                                       @your-org/ml-platform

# Each team reviews its own experiments and models, and the workloads they render to (`kflowgen new team` adds these).
"""


def _rel(target: Path, base: Path) -> str:
    return os.path.relpath(target.resolve(), base.resolve()).replace(os.sep, "/")


def init(dest: Path, crds: list[Path], jupyterhub_chart: Path | None) -> list[Diagnostic]:
    """Write a new GitOps repository. Refuses to touch a folder that already holds specs."""
    if (dest / "specs").exists():
        return [error(str(dest / "specs"), (0, 0), "KF701", "folder already holds specs",
                      "choose an empty folder for `kflowgen init`")]
    lines = []
    if crds or jupyterhub_chart:
        lines.append("validation:")
        if crds:
            lines.append("  crds:                    # your own CRDs (kflowgen ships Argo CD's and Kubeflow training's)")
            lines += [f"    - {_rel(c, dest)}" for c in crds]
        if jupyterhub_chart:
            lines.append(f"  jupyterhubChart: {_rel(jupyterhub_chart, dest)}")
    files = {
        "specs/platform.yaml": PLATFORM.format(name=dest.resolve().name.lower().replace("_", "-")[:63] or "ml-platform",
                                               repo_url="https://git.example.com/ml-platform/gitops.git",
                                               validation="\n".join(lines) + ("\n" if lines else "")),
        ".github/workflows/kflowgen.yaml": WORKFLOW.format(kustomize=KUSTOMIZE.version, kubeconform=KUBECONFORM.version,
                                                                   version=__version__),
        ".gitignore": ".kflowgen-swap-*/\n",  # only a render interrupted mid-swap leaves one
        ".github/CODEOWNERS": CODEOWNERS,
    }
    for kind in ("platform", "team"):
        files[f"schemas/{kind}.schema.json"] = resources.files("kflowgen").joinpath(
            "schemas", f"{kind}.schema.json").read_text("utf-8")
    bases = resources.files("kflowgen").joinpath("bases", "team")
    for item in sorted(bases.iterdir(), key=lambda i: i.name):
        files[f"bases/team/{item.name}"] = item.read_text("utf-8")
    for rel, text in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    return new_team(dest, "example", owner="admin@example.com")


def team_text(name: str, environments: list[str], registry: str, gpu: str, owner: str) -> str:
    image = f"{registry}{'' if registry.endswith('/') else '/'}minimal-notebook:2025-11-24"
    quota = "".join(f"  {env}:\n    cpu: 8\n    memory: 32Gi\n    # gpu: {{{gpu}: 1}}\n" for env in environments)
    return TEAM.format(name=name, owner=owner, image=image, gpu=gpu, quota=quota)


def bad_name(kind: str, name: str, where: str) -> list[Diagnostic]:
    """An error when `name` is not what the spec of `kind` (team, experiment, model) allows as its name: refused
    before a file is written that validate would then refuse."""
    from kflowgen.specs.schema import schema_text

    rule = json.loads(schema_text(kind))["properties"]["name"]
    if re.fullmatch(rule["pattern"].strip("^$"), name) and len(name) <= rule["maxLength"]:
        return []
    fixed = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[: rule["maxLength"]].rstrip("-")
    fixed = fixed if re.fullmatch(rule["pattern"].strip("^$"), fixed) else ""
    rules = rule["description"].split(";")[0].rstrip(".")
    return [error(where, (0, 0), "KF705", f"'{name}' is not {'an' if kind[0] in 'aeiou' else 'a'} {kind} name: {rules[0].lower()}{rules[1:]}",
                  f"try '{fixed}'" if fixed else "start with a lower-case letter")]


def _reserved(root: Path, name: str) -> str | None:
    """The reserved namespace or prefix a new team's name falls under (what validate's KF302 would say)."""
    from kflowgen.rules.teams import SYSTEM, reserved
    from kflowgen.specs.loader import load_file

    spec, _ = load_file(root, "specs/platform.yaml")
    data = spec.data if spec is not None and isinstance(spec.data, dict) else {}
    own = [(data.get(k) or {}).get("namespace", default) for k, default in (("argocd", "argocd"),
                                                                           ("jupyterhub", "jupyterhub"))]
    return reserved(name, (*SYSTEM, *own, "platform", "bootstrap", *(data.get("reservedNamespaces") or ())))


def new_team(root: Path, name: str, owner: str = "you@example.com") -> list[Diagnostic]:
    """Write specs/teams/NAME.yaml from the platform's environments, registries and GPU types."""
    from kflowgen.specs.loader import load_file

    if bad := bad_name("team", name, "specs/teams"):
        return bad
    target = root / "specs" / "teams" / f"{name}.yaml"
    reserved = _reserved(root, name)
    if reserved:
        return [error("specs/teams", (0, 0), "KF705", f"'{name}' is a system or platform namespace ({reserved})",
                      "choose another team name")]
    if target.exists():
        return [error(target.relative_to(root).as_posix(), (0, 0), "KF301", f"team '{name}' already exists",
                      "edit the existing file, or pick another name")]
    spec, diags = load_file(root, "specs/platform.yaml")
    if spec is None:
        return diags or [error("specs/platform.yaml", (0, 0), "KF101", "cannot read the platform file",
                               "run kflowgen validate to see why")]
    data = spec.data
    envs = list(data.get("environments", {})) or ["dev"]
    registry = (data.get("registries") or ["registry.example.com/ml/"])[0]
    gpu = next(iter(data.get("gpuTypes", {})), "a100")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(team_text(name, envs, registry, gpu, owner))
    found = codeowners.find(root)
    if found is not None:  # the team reviews its own experiments and models
        text = (root / found).read_text("utf-8")
        (root / found).write_text(text + ("" if text.endswith("\n") or not text else "\n")
                                  + codeowners.team_lines(text, name))
    return []


EXPERIMENT = """\
# yaml-language-server: $schema=../../../schemas/experiment.schema.json
# Experiment {name} of team {team}: runs `run` with the hyperparameters as key=value arguments, in the team's
# notebook image, from workdir on the team NAS. `kflowgen explain {path}` says what it becomes.
team: {team}
name: {name}
description: What this experiment tries
run: python train.py
workdir: {workdir}
{image}hyperparameters: {{epochs: 10}}
# sweep:                   # one Job per combination; names are stable
#   grid: {{lr: [0.01, 1e-3], dropout: [0.3, 0.5]}}
{resources}
environments: [{env}]
"""


def experiment_home(root: Path, team: str, name: str) -> tuple[str, dict, dict, list[Diagnostic]]:
    """Where experiment NAME of TEAM goes (refused if it exists), the platform's data and the team's quota."""
    from kflowgen.specs.loader import load_file

    rel = f"specs/experiments/{team}/{name}.yaml"  # a team such as ../x would write outside specs/experiments:
    diags = bad_name("team", team, "specs/teams") or bad_name("experiment", name, f"specs/experiments/{team}")
    if not diags and (root / rel).exists():
        diags = [error(rel, (0, 0), "KF321", f"experiment '{name}' of team '{team}' already exists",
                       "edit the existing file, or pick another name")]
    if not diags and not (root / "specs" / "teams" / f"{team}.yaml").is_file():
        diags = [error(rel, (0, 0), "KF320", f"team '{team}' has no spec in specs/teams/",
                       "create it with `kflowgen new team`")]
    spec, more = load_file(root, "specs/platform.yaml") if not diags else (None, [])
    team_spec, most = load_file(root, f"specs/teams/{team}.yaml") if spec else (None, [])
    return (rel, {}, {}, diags + more + most) if team_spec is None else \
        (rel, spec.data, team_spec.data.get("quota") or {}, [])


def new_experiment(root: Path, team: str, name: str, workdir: str = "projects/" + "{name}",
                   image: str | None = None, gpu: str | None = None) -> tuple[str, list[Diagnostic]]:
    """Write specs/experiments/TEAM/NAME.yaml; returns its path. gpu "TYPE:COUNT" (the notebook's) asks for that
    GPU in the first environment where the team has a quota of that type."""
    rel, platform, quota, diags = experiment_home(root, team, name)
    if diags:
        return rel, diags
    kind, _, count = (gpu or "").partition(":")
    env = next((e for e, q in quota.items() if kind and kind in ((q or {}).get("gpu") or {})), None)
    if env:
        resources = f"resources: {{cpu: 4, memory: 16Gi, gpu: {{type: {kind}, count: {count or 1}}}}}"
    else:
        env = next(iter(quota), "dev")
        example = next(iter(platform.get("gpuTypes", {})), "a100")
        resources = f"resources: {{cpu: 4, memory: 16Gi}}   # add gpu: {{type: {example}, count: 1}} for a GPU"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(EXPERIMENT.format(team=team, name=name, path=rel, workdir=workdir.format(name=name),
                                              image=f"image: {image}\n" if image else "", resources=resources,
                                              env=env))
    return rel, []


MODEL = """\
# yaml-language-server: $schema=../../../schemas/model.schema.json
# Model {name} of team {team}, served by TensorFlow Serving from the team NAS (a SavedModel per <path>/<N>/).
# Promote: `kflowgen promote {team}/{name} --from {env} --to <environment>`. Where the platform runs KServe,
# `backend: kserve` and `canary: 10%` beside `previous: <N>` roll out first (docs/serving.md, "Serving with KServe").
team: {team}
name: {name}
description: What this model answers
path: models/{name}
environments:
  {env}:
    version: 1
    cpu: 1
    memory: 2Gi
"""


def new_model(root: Path, team: str, name: str) -> tuple[str, list[Diagnostic]]:
    """Write specs/models/TEAM/NAME.yaml, served in the first environment where the team has a quota."""
    from kflowgen.specs.loader import load_file

    rel = f"specs/models/{team}/{name}.yaml"
    if bad := bad_name("team", team, "specs/teams") or bad_name("model", name, f"specs/models/{team}"):
        return rel, bad
    if (root / rel).exists():
        return rel, [error(rel, (0, 0), "KF330", f"model '{name}' of team '{team}' already exists",
                           "edit the existing file, or pick another name")]
    team_spec, diags = load_file(root, f"specs/teams/{team}.yaml")
    if team_spec is None:
        return rel, [error(rel, (0, 0), "KF331", f"team '{team}' has no spec in specs/teams/",
                           "create it with `kflowgen new team`")]
    env = next(iter(team_spec.data.get("quota") or {}), "dev")
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(MODEL.format(team=team, name=name, env=env))
    return rel, []


def from_notebook(environ: dict[str, str], cwd: Path) -> tuple[str | None, str | None, str | None, list[Diagnostic]]:
    """(team, image, workdir) from a running JupyterHub notebook, and an error naming what could not be found.
    KubeSpawner sets JUPYTER_IMAGE_SPEC; kflowgen's profiles set KFLOWGEN_TEAM, KFLOWGEN_WORKSPACE and, for a GPU
    profile, KFLOWGEN_GPU (TYPE:COUNT, read by the caller)."""
    team = environ.get("KFLOWGEN_TEAM")
    image = environ.get("JUPYTER_IMAGE_SPEC") or environ.get("JUPYTER_IMAGE")
    workspace = environ.get("KFLOWGEN_WORKSPACE", "/workspace")
    try:
        workdir = cwd.resolve().relative_to(Path(workspace).resolve()).as_posix()
    except ValueError:
        workdir = None
    missing = [what for what, value in (("KFLOWGEN_TEAM", team), ("JUPYTER_IMAGE_SPEC", image),
                                        (f"a current folder under {workspace}", workdir)) if not value]
    diags = [error("notebook", (0, 0), "KF703", f"not in a kflowgen notebook: no {', '.join(missing)}",
                   "run it in a JupyterHub notebook started from a kflowgen profile, inside your project folder on "
                   "the team NAS")] if missing else []
    return team, image, (None if workdir in (None, ".") else workdir), diags
