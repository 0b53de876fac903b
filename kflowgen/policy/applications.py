"""KF611: no Application uses the permissive `default` project (an empty project is `default` too), and a team's
Application (project `<env>-<team>`) deploys only to the team's namespace."""
from __future__ import annotations

CODE = "KF611"
TITLE = "Application in the default project, or a team Application deploying outside its namespace"


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
    ns = (spec.get("destination") or {}).get("namespace", "")
    if team is not None and ns != teams[team]:
        yield "/spec/destination/namespace", f"'{ns}' is not team {team}'s namespace '{teams[team]}'", \
            f"an Application of project {project} deploys only to {teams[team]}"
