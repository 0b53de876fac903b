"""Names kflowgen gives things that share one space across teams and environments: notebook profile slugs (one hub
per environment) and Argo CD Applications and AppProjects (one Argo CD namespace, possibly one Argo CD for every
environment). The renderer names objects with these, and the rules check them for collisions with the same
functions, so the two can never disagree."""
from __future__ import annotations


def profile_slug(team: str, profile: str) -> str:
    """The JupyterHub profile slug of a team's notebook profile."""
    return f"{team}-{profile}"


def project(env: str, team: str) -> str:
    """A team's AppProject; the platform's own are project(env, 'bootstrap') and project(env, 'platform')."""
    return f"{env}-{team}"


def team_applications(env: str, team: str) -> tuple[str, str]:
    """A team's platform and workloads Applications."""
    return f"{env}-{team}-platform", f"{env}-{team}-workloads"


def shared_applications(env: str) -> tuple[str, str]:
    """An environment's app of apps and its JupyterHub Application."""
    return f"{env}-root", f"{env}-jupyterhub"


SHARED_PROJECTS = ("bootstrap", "platform")
