"""KF611: no Application uses the permissive `default` project (an empty project is `default` too), and a team's
Application (project `<env>-<team>`) deploys only to the team's namespace and syncs only the team's own workloads
folder, from one source (an Application in a team's project that synced another folder would apply whatever is there
with the team's permissions)."""
from __future__ import annotations

CODE = "KF611"
TITLE = ("Application in the default project, or a team Application deploying outside its namespace or syncing "
         "another folder")


def check(obj, ctx):
    if obj.get("kind") != "Application":
        return
    spec = obj.get("spec") or {}
    project = spec.get("project") or "default"
    if project == "default":
        yield "/spec/project", "uses the default project, which allows everything", \
            "use the platform project or the team's own project"
    teams = ctx.team_namespaces
    team = ctx.team_of_project(project)
    if team is None:
        return
    ns = (spec.get("destination") or {}).get("namespace", "")
    if ns != teams[team]:
        yield "/spec/destination/namespace", f"'{ns}' is not team {team}'s namespace '{teams[team]}'", \
            f"an Application of project {project} deploys only to {teams[team]}"
    folder = f"overlays/{ctx.env}/teams/{team}/workloads"
    if "sources" in spec:
        yield "/spec/sources", "a team Application has several sources", f"sync only {folder}"
    path = str((spec.get("source") or {}).get("path", "")).strip("/")
    if "sources" not in spec and path != folder:
        yield "/spec/source/path", f"'{path}' is not team {team}'s workloads folder", f"sync only {folder}"
