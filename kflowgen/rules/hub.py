"""KF340, KF341: the hub's sign-in can work and lets in only the platform's people. The platform names an
authenticator with its settings (no sign-in at all would leave the chart's dummy one: anyone as anyone); groups
allowed to sign in are teams' groups; with GitHub a group is `<org>:<team-slug>` of an allowed organization, with LDAP
a group DN. The dummy authenticator is a warning (a local test cluster only)."""
from __future__ import annotations

from kflowgen.diagnostics import error, warning

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF340": "JupyterHub sign-in that cannot work: none, an incomplete authenticator, or groups it cannot name",
    "KF341": "JupyterHub sign-in with the dummy authenticator: anyone signs in as anyone",
}


def check(model):
    p = model.platform
    auth = p.hub.auth
    src = p.source
    if auth is None:
        yield error(src.path, src.at("/jupyterhub", key=True) if src.has("/jupyterhub") else (1, 1), "KF340",
                    "the hub has no sign-in (jupyterhub.auth): the chart's default lets anyone sign in as anyone",
                    "set jupyterhub.auth.type to github, oidc or ldap with its settings (docs/notebooks-and-network.md, \"Sign-in\")")
        return
    if auth.type == "dummy":
        yield warning(src.path, src.at("/jupyterhub/auth/type"), "KF341", "the dummy authenticator lets anyone sign in "
                      "as anyone, with any password, and see that person's team's notebooks and NAS",
                      "use it on a local test cluster only; set github, oidc or ldap for a real one")
    elif not src.has(f"/jupyterhub/auth/{auth.type}"):
        yield error(src.path, src.at("/jupyterhub/auth/type"), "KF340", f"jupyterhub.auth.type is {auth.type} but "
                    f"jupyterhub.auth.{auth.type} is missing", f"add jupyterhub.auth.{auth.type} with its settings")
    for other in ("github", "oidc", "ldap"):
        if other != auth.type and src.has(f"/jupyterhub/auth/{other}"):
            yield error(src.path, src.at(f"/jupyterhub/auth/{other}", key=True), "KF340",
                        f"jupyterhub.auth.{other} is given but the hub signs in with {auth.type}",
                        f"remove it, or set jupyterhub.auth.type to {other}")
    used = {g for t in model.teams for g, _ in t.members}
    for i, group in enumerate(auth.allowed_groups):
        if group not in used and group not in auth.admin_groups:
            yield error(src.path, src.at(f"/jupyterhub/auth/allowedGroups/{i}"), "KF340",
                        f"group '{group}' is a member group of no team: its people could sign in and see nothing",
                        "add it to a team's members, or remove it")
    yield from _group_names(model, auth)


def _group_names(model, auth):
    """Groups as the authenticator will name them."""
    orgs = set(auth.settings.get("organizations", ()))
    for t in model.teams:
        for i, (group, _) in enumerate(t.members):
            org, _, slug = group.partition(":")
            if auth.type == "github" and orgs and (not slug or org not in orgs):  # no orgs: reported above
                yield error(t.source.path, t.source.at(f"/members/{i}/group"), "KF340",
                            f"with GitHub sign-in a group is <organization>:<team-slug> of "
                            f"{', '.join(sorted(orgs))}, not '{group}'",
                            f"write the GitHub team, e.g. {sorted(orgs)[0] if orgs else 'acme'}:{t.name}")
            elif auth.type == "ldap" and "=" not in group:
                yield error(t.source.path, t.source.at(f"/members/{i}/group"), "KF340",
                            f"with LDAP sign-in a group is the group's DN, not '{group}'",
                            f"write it in full, e.g. cn={group},ou=groups,dc=example,dc=com")
