"""KF314, KF315: generated names that share one space across teams are unique. A notebook profile's slug is the key of
the hub's access map (two equal slugs gave one team's owners another team's profile, namespace and NAS); Argo CD's
Applications and AppProjects share Argo CD's namespace, possibly across environments (team a-b in dev and team b in
an environment dev-a would share a project)."""
from __future__ import annotations

from kflowgen.specs import layout
from kflowgen.diagnostics import error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF314": "two notebook profiles get the same JupyterHub slug (a repeated name, or another team's)",
    "KF315": "two teams' Argo CD Applications or AppProjects get the same name",
}


def _profiles(model):
    for t in model.teams:
        first: dict[str, int] = {}
        for i, prof in enumerate(t.profiles):
            if prof.name in first:
                yield error(t.source.path, t.source.at(f"/notebook/profiles/{i}/name"), "KF314",
                            f"profile '{prof.name}' is already profile {first[prof.name] + 1} of team {t.name}",
                            "give each profile of a team its own name")
            first.setdefault(prof.name, i)
    clashes: dict[tuple, tuple] = {}  # (team, index) -> (environments, other team, profile)
    for env in model.platform.environments:
        owner: dict[str, tuple] = {}
        for t in model.teams_in(env):
            for i, prof in enumerate(t.profiles):
                other = owner.setdefault(layout.profile_slug(t.name, prof.name), (t, prof))
                if other[0] is not t:
                    clashes.setdefault((t.source.path, i), ([], t, *other))[0].append(env)
    for (_, i), (envs, t, other, other_prof) in clashes.items():
        prof = t.profiles[i]
        yield error(t.source.path, t.source.at(f"/notebook/profiles/{i}/name"), "KF314",
                    f"profile '{prof.name}' of team {t.name} gets the JupyterHub slug "
                    f"'{layout.profile_slug(t.name, prof.name)}' in {' and '.join(envs)}, as profile "
                    f"'{other_prof.name}' of team {other.name} does",
                    "rename the profile; the hub tells profiles apart by slug only")


def _argocd(model):
    """One finding per team whose Argo CD names someone else has (teams named like the platform's own projects are
    KF302's)."""
    owner: dict[tuple[str, str], str] = {}  # (kind, name) -> who has it
    for env in model.platform.environments:
        for team in layout.SHARED_PROJECTS:
            owner[("AppProject", layout.project(env, team))] = f"the platform's {team} project in {env}"
        for app in layout.shared_applications(env):
            owner[("Application", app)] = f"the platform's Application {app}"
    reported: set[str] = set()
    for env in model.platform.environments:
        for t in model.teams_in(env):
            names = [("AppProject", layout.project(env, t.name))]
            names += [("Application", app) for app in layout.team_applications(env, t.name)]
            for kind, name in names:
                who = f"team {t.name} in {env}"
                other = owner.setdefault((kind, name), who)
                if other != who and t.name not in layout.SHARED_PROJECTS and t.source.path not in reported:
                    reported.add(t.source.path)
                    yield error(t.source.path, t.source.at("/name"), "KF315",
                                f"Argo CD {kind} '{name}' of {who} is also that of {other}",
                                "rename the team (or the environment) so that <environment>-<team> is unique")


def check(model):
    yield from _profiles(model)
    yield from _argocd(model)
