"""Run by the hub's own Python (.tools/hub: the chart's hub image packages), not by the test suite's: the real
JupyterHub loads the chart's jupyterhub_config.py as the hub pod does, and real KubeSpawner objects are asked what
each person may start and what pod they would get.

    python hubprobe.py ETC PEOPLE_JSON  -> JSON on stdout

ETC is laid out as the hub pod mounts it (jupyterhub_config.py, z2jh.py, config/, secret/, existing-secret/), with
z2jh.py's /usr/local/etc/jupyterhub/ already pointing at ETC. PEOPLE_JSON is [[name, [groups...]], ...]. A failure to
load the configuration is reported as {"error": ...}, as the hub would refuse to start."""
from __future__ import annotations

import asyncio
import json
import os
import sys


class _Group:
    def __init__(self, name):
        self.name = name


class _User:
    """What KubeSpawner reads of a user."""

    def __init__(self, name, groups):
        self.name, self.escaped_name, self.id, self.url = name, name, 1, f"/user/{name}/"
        self.groups = [_Group(g) for g in groups]


async def _person(app, name, groups):
    from jupyterhub.utils import maybe_future
    from kubespawner import KubeSpawner

    spawner = KubeSpawner(user=_User(name, groups), hub=app.hub, config=app.config, _mock=True)
    profiles = await maybe_future(spawner.profile_list(spawner))
    out = {"profiles": [[p["slug"], bool(p.get("default"))] for p in profiles]}
    try:
        spawner.run_pre_spawn_hook()
        out["refused"] = None
    except Exception as e:  # noqa: BLE001 - what the hub would show
        out["refused"] = [getattr(e, "status_code", None), getattr(e, "log_message", None) or str(e)]
    out["form"] = bool(await spawner.get_options_form())
    out["pods"] = {}
    for slug, _ in out["profiles"]:
        spawner = KubeSpawner(user=_User(name, groups), hub=app.hub, config=app.config, _mock=True)
        spawner.user_options = {"profile": slug}
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        manifest = spawner.api.api_client.sanitize_for_serialization(pod)
        manifest["metadata"]["namespace"] = spawner.namespace
        out["pods"][slug] = manifest
    return out


async def _oauth_sign_ins(authenticator, cases):
    """What the authenticator makes of each provider answer: (groups, admin, allowed)."""
    out = {}
    for name, auth_state in cases:
        model = await authenticator._apply_managed_groups({"name": name, "admin": None, "auth_state": auth_state})
        out[name] = [sorted(model.get("groups") or []), model.get("admin"),
                     bool(await authenticator.check_allowed(name, model))]
    return out


async def _ldap_sign_ins(authenticator, directory, cases):
    """Sign-ins through the real LDAPAuthenticator against an in-memory directory (ldap3's MOCK_SYNC strategy), with
    the post-auth hook JupyterHub runs: (name, groups, admin) or None when refused."""
    import ldap3

    server = ldap3.Server("directory")

    def connection(userdn, password):
        conn = ldap3.Connection(server, user=userdn, password=password, client_strategy=ldap3.MOCK_SYNC)
        for dn, attributes in directory.items():
            conn.strategy.add_entry(dn, attributes)
        return conn if conn.bind() else None

    authenticator.get_connection = connection
    out = {}
    for name, password in cases:
        model = await authenticator.get_authenticated_user(None, {"username": name, "password": password})
        out[name] = None if model is None else [model["name"], sorted(model.get("groups") or []), model.get("admin")]
    return out


def main() -> None:
    etc, people = sys.argv[1], json.loads(sys.argv[2])
    sign_ins = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    # what Kubernetes and the chart give the hub container
    os.environ.update(POD_NAMESPACE="jupyterhub", HELM_RELEASE_NAME="jupyterhub", HUB_SERVICE_PORT="8081",
                      PROXY_API_SERVICE_PORT="8001", CONFIGPROXY_AUTH_TOKEN="from-the-chart-secret")
    from jupyterhub.app import JupyterHub

    app = JupyterHub()
    try:
        app.load_config_file(os.path.join(etc, "jupyterhub_config.py"))
        app.init_hub()
        authenticator = app.authenticator_class(parent=app)
        from jupyterhub.crypto import CryptKeeper

        keeper = CryptKeeper.instance(parent=app)  # the hub validates its keys when it first encrypts
    except Exception as e:  # noqa: BLE001 - the hub would not start
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    c = app.config
    report = {
        "authenticator": f"{type(authenticator).__module__}.{type(authenticator).__name__}",
        "authenticator_config": {k: (sorted(v) if isinstance(v, (set, frozenset)) else v)
                                 for k, v in authenticator.trait_values().items()
                                 if k in ("client_id", "client_secret", "allowed_users", "allowed_groups",
                                          "admin_groups", "manage_groups", "authorize_url", "token_url",
                                          "userdata_url", "username_claim", "auth_state_groups_key", "scope",
                                          "populate_teams_in_auth_state", "enable_auth_state", "server_address",
                                          "server_port", "tls_strategy", "lookup_dn_search_password")
                                 and not callable(v)},
        "groups_key_callable": callable(getattr(authenticator, "auth_state_groups_key", None)),
        "post_auth_hook": callable(getattr(authenticator, "post_auth_hook", None)),
        "hub_api_url": app.hub.api_url,
        "cookie_secret_bytes": len(app.cookie_secret),
        "crypt_keys": len(keeper.keys),
        "services": [s["name"] for s in c.JupyterHub.services],
        "cull": next((s["command"] for s in c.JupyterHub.services if s["name"] == "jupyterhub-idle-culler"), None),
        "people": {},
    }
    for name, groups in people:
        report["people"][name] = asyncio.run(_person(app, name, groups))
    if "oauth" in sign_ins:
        report["sign_ins"] = asyncio.run(_oauth_sign_ins(authenticator, sign_ins["oauth"]))
    if "ldap" in sign_ins:
        report["sign_ins"] = asyncio.run(_ldap_sign_ins(authenticator, sign_ins["ldap"]["directory"],
                                                        sign_ins["ldap"]["logins"]))
    report["allow_existing_users"] = getattr(authenticator, "allow_existing_users", None)
    if isinstance(authenticator.auth_state_groups_key if hasattr(authenticator, "auth_state_groups_key") else None,
                  type(lambda: 0)):
        report["github_groups"] = authenticator.auth_state_groups_key(
            {"teams": [{"organization": {"login": "acme"}, "slug": "vision-ds"}]})
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
