"""Diagnostics: every outcome a stage reports is a value, never a print; the list of error codes."""
from __future__ import annotations

from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"

# Every code kflowgen can report, with a one-line title. The README's table is checked against this.
CODES: dict[str, str] = {
    # reading spec files
    "KF101": "file cannot be read or is not valid YAML",
    "KF102": "duplicate key in a mapping",
    "KF103": "anchor, alias or tag that specs do not allow",
    "KF104": "file is not exactly one YAML mapping",
    "KF105": "file too large or nested too deeply",
    "KF106": "mapping key that is not a plain string",
    "KF107": "unquoted yes/no/on/off: a boolean to YAML 1.1 tools",
    "KF108": "unquoted number with a leading zero or colons: octal or base 60 to YAML 1.1 tools",
    "KF109": "unquoted date: a timestamp to YAML 1.1 tools",
    # spec schemas
    "KF201": "unknown field",
    "KF202": "required field missing",
    "KF203": "wrong type",
    "KF204": "value not allowed (pattern, range or choice)",
    # checks across spec files
    "KF301": "team name does not match its file name, or two teams share a name",
    "KF302": "team name is reserved for a system namespace",
    "KF303": "environment not defined in the platform file",
    "KF304": "GPU type not defined in the platform file",
    "KF305": "notebook profile does not fit the team's quota",
    "KF306": "team quotas exceed the environment's GPU capacity",
    "KF307": "image not from an allowed registry",
    "KF308": "more than one default notebook profile",
    "KF309": "guarantee larger than the limit",
    "KF310": "storage quota smaller than the team NAS",
    "KF311": "GPU capacity given for a GPU type the platform does not define",
    "KF312": "spec path or file name escapes the repository",
    "KF313": "image tagged latest or not pinned",
    "KF314": "two notebook profiles get the same JupyterHub slug (a repeated name, or another team's)",
    "KF315": "two teams' Argo CD Applications or AppProjects get the same name",
    "KF316": "spec file in a folder kflowgen does not read",
    "KF317": "CODEOWNERS does not give a team's or the platform's files to reviewers",
    # experiments
    "KF320": "experiment names a team that does not exist",
    "KF321": "experiment file path does not match its team and name, or two experiments share a name",
    "KF322": "experiment environment not defined, or the team has no quota there",
    "KF323": "experiment GPU type not defined in the platform file",
    "KF324": "one trial of an experiment does not fit the team's quota",
    "KF325": "a sweep's trials at once exceed the team's quota: trials will queue",
    "KF326": "sweep too large, empty range, or fewer distinct trials than asked",
    "KF327": "run is not a valid command line, uses shell syntax without shell: true, or splits the hyperparameters",
    "KF328": "two trials get the same Job name",
    "KF329": "TFJob is deprecated upstream",
    # served models
    "KF330": "model spec not at specs/models/<team>/<name>.yaml, or two models of a team share a name",
    "KF331": "model's team not defined",
    "KF332": "model served in an environment the platform does not define or where its team has no quota",
    "KF333": "model's GPU type not defined, or the environment has too few of them",
    "KF334": "model servers do not fit the team's quota",
    "KF335": "model server image not from an allowed registry",
    "KF336": "serving settings that contradict each other, or a path that ends in a version folder",
    "KF337": "model to promote not found",
    "KF338": "environment to promote from or to not in the model spec",
    "KF339": "promotion changes nothing or cannot be written",
    # the hub
    "KF340": "JupyterHub sign-in that cannot work: none, an incomplete authenticator, or groups it cannot name",
    "KF341": "JupyterHub sign-in with the dummy authenticator: anyone signs in as anyone",
    # network reach, secrets, pods
    "KF342": "network egress or ingress settings that cannot work, or that reach a team namespace",
    "KF343": "a literal value that looks like a credential (use a Secret)",
    "KF344": "model callers or exposure that cannot work: an unknown team, or a host outside the domain or taken",
    "KF345": "/dev/shm not below the pod's memory",
    "KF346": "pull secret for a registry the platform does not list",
    "KF347": "an environment variable set both in env and in secrets",
    # building and validating manifests
    "KF401": "kustomize build failed",
    "KF402": "built object fails strict schema validation",
    "KF403": "no schema for a built kind",
    "KF404": "generated JupyterHub values fail the chart's values schema",
    "KF405": "built object rejected by the API server (server-side dry-run)",
    "KF406": "API server warning for a built object (server-side dry-run)",
    "KF407": "generated JupyterHub values not checked: no values schema for the pinned chart version",
    "KF408": "no CRDs for the pinned Argo CD version",
    "KF409": "bases/ holds a link or special file, or a kustomization there names a remote or outside path",
    # policy on built manifests
    "KF601": "pod template does not meet Pod Security restricted",
    "KF602": "container without cpu and memory requests and limits",
    "KF603": "GPU or other extended resource whose limit differs from its request",
    "KF604": "image without a tag or digest, tagged latest, or not an image reference",
    "KF605": "built object runs an image not from an allowed registry",
    "KF606": "pod uses host paths, host namespaces, host ports or privileged containers",
    "KF607": "object in a team overlay outside the team's namespace, or of a kind the overlay may not hold",
    "KF608": "object outside the team overlays that is not an Argo CD Application or AppProject, or is cluster-scoped",
    "KF609": "AppProject wider than the team or platform it is for",
    "KF610": "Namespace or PersistentVolumeClaim that Argo CD could prune or delete",
    "KF611": "Application in the default project, or a team Application deploying outside its namespace or syncing "
             "another folder",
    "KF612": "RBAC binding to cluster-admin, to a system user or group, or to another team's people or service accounts",
    "KF613": "team namespace without default-deny, or a network policy rule open to everything",
    "KF614": "Ingress of another class than the platform's, or a host outside the environment's domain",
    # drift and disk
    "KF501": "generated file differs from what the specs render",
    "KF502": "generated file missing",
    "KF503": "generated file no longer produced by any spec",
    "KF504": "file, link or special file inside overlays/ that kflowgen did not write",
    "KF505": "a removed team's namespace and data stay on the cluster until a person deletes them",
    # tools and environment
    "KF901": "required tool not found",
    "KF902": "tool failed to run",
    "KF903": "CRD or chart file given in validation settings cannot be read",
    "KF904": "the repository cannot be written (disk full, permissions): nothing was changed",
}


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding. `path` is a repository-relative file, or an overlay and object identity for built manifests."""

    path: str
    line: int
    col: int
    code: str
    message: str
    severity: str = ERROR
    hint: str = ""

    def location(self) -> str:
        return f"{self.path}:{self.line}:{self.col}" if self.line else self.path


def error(path: str, pos: tuple[int, int], code: str, message: str, hint: str = "") -> Diagnostic:
    assert code in CODES, code
    return Diagnostic(path, pos[0], pos[1], code, message, ERROR, hint)


def warning(path: str, pos: tuple[int, int], code: str, message: str, hint: str = "") -> Diagnostic:
    assert code in CODES, code
    return Diagnostic(path, pos[0], pos[1], code, message, WARNING, hint)


@dataclass
class Report:
    """What a command found: diagnostics plus facts for the summary. Exit code 1 on any error."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def extend(self, diags) -> None:
        self.diagnostics.extend(diags)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def sorted(self) -> list[Diagnostic]:
        return sorted(set(self.diagnostics))
