"""The hub, run for real: the generated values go through the pinned Zero to JupyterHub chart (4.4.0) with the real
helm, as Argo CD renders it (no cluster), and the rendered hub configuration is loaded by the real JupyterHub and
KubeSpawner of the chart's hub image (tests/hubprobe.py, in .tools/hub), which then say who may start what, and what
pod they get. Needs `make tools-hub` and ../shared/upstream (the chart); skips without them."""
from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, UPSTREAM, copy_repo
from kflowgen.targets import jupyterhub
from kflowgen.flow import pipeline
from kflowgen.checks import policy
from kflowgen.targets import render
from kflowgen.options import Options

HELM = PROJECT / ".tools/bin/helm"
HUB_PYTHON = PROJECT / ".tools/hub/bin/python"
CHART = UPSTREAM / "jupyterhub-chart/jupyterhub"
PROBE = Path(__file__).with_name("hubprobe.py")
ENVS = ("dev", "staging", "prod")
pytestmark = pytest.mark.skipif(not (HELM.exists() and HUB_PYTHON.exists() and CHART.is_dir()),
                                reason="needs helm and the hub's Python (make tools-hub) and ../shared/upstream")


def helm_template(values: bytes, tmp_path: Path) -> list[dict]:
    """`helm template` as Argo CD runs it for the hub Application: release jupyterhub, the hub's namespace."""
    path = tmp_path / f"values-{secrets.token_hex(4)}.yaml"
    path.write_bytes(values)
    out = subprocess.run([str(HELM), "template", "jupyterhub", str(CHART), "--namespace", "jupyterhub",
                          "--kube-version", "1.34.0", "-f", str(path)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def rendered_files(root: Path) -> dict[str, bytes]:
    model, diags = pipeline.load(Options(root))
    assert model is not None, diags
    return render(model)


@pytest.fixture(scope="module")
def example() -> dict[str, bytes]:
    return rendered_files(PROJECT)


def _strip(doc: dict, ignore: list[dict]) -> dict:
    """doc without the fields an Application's ignoreDifferences names for it."""
    doc = json.loads(json.dumps(doc))
    for item in ignore:
        if (item["kind"], item["name"], item.get("group", "")) != (doc["kind"], doc["metadata"]["name"],
                                                                    doc["apiVersion"].rpartition("/")[0]):
            continue
        for pointer in item["jsonPointers"]:
            *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
            node = doc
            for p in parents:
                node = node.get(p, {})
            node.pop(last, None)
    return doc


def test_two_renders_differ_only_where_argo_cd_keeps_the_first(example, tmp_path):
    """Argo CD renders the chart with no cluster, so the chart's lookup of its Secret is empty. What it would render
    at random (the proxy's token and two checksums of it) is exactly what the Application tells Argo CD to keep as
    first created; everything else, cookie secret and encryption keys included, is the same on every render."""
    for env in ENVS:
        values = example[f"overlays/{env}/jupyterhub/values.yaml"]
        app = yaml.safe_load(example[f"overlays/{env}/argocd/application.jupyterhub.yaml"])
        ignore = app["spec"]["ignoreDifferences"]
        assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
        first, second = helm_template(values, tmp_path), helm_template(values, tmp_path)
        assert first != second  # the chart is random there
        assert [_strip(d, ignore) for d in first] == [_strip(d, ignore) for d in second]
        secret = next(d for d in first if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
        for key in ("hub.config.JupyterHub.cookie_secret", "hub.config.CryptKeeper.keys"):
            assert base64.b64decode(secret["data"][key]).decode() == jupyterhub.PLACEHOLDER


def test_helm_lint_strict_passes_for_every_environment(example, tmp_path):
    for env in ENVS:
        path = tmp_path / f"{env}.yaml"
        path.write_bytes(example[f"overlays/{env}/jupyterhub/values.yaml"])
        out = subprocess.run([str(HELM), "lint", "--strict", str(CHART), "-f", str(path)], capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def hub_etc(docs: list[dict], tmp_path: Path, secret: dict[str, str]) -> Path:
    """The files the hub pod mounts (ConfigMap hub, Secret hub, the platform's Secret), under one folder."""
    etc = tmp_path / f"etc-{secrets.token_hex(4)}"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hub")
    chart_secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
    for folder, items in (("config", {k: v.encode() for k, v in config["data"].items()}),
                          ("secret", {k: base64.b64decode(v) for k, v in chart_secret["data"].items()}),
                          ("existing-secret", {k: v.encode() for k, v in secret.items()})):
        (etc / folder).mkdir(parents=True)
        for key, data in items.items():
            (etc / folder / key).write_bytes(data)
    (etc / "jupyterhub_config.py").write_text(config["data"]["jupyterhub_config.py"])
    (etc / "z2jh.py").write_text(config["data"]["z2jh.py"].replace("/usr/local/etc/jupyterhub/", f"{etc}/"))
    return etc


def platform_secret(**extra: str) -> dict[str, str]:
    """What the platform puts in the Secret jupyterhub.secret names (docs/notebooks-and-network.md, "Sign-in")."""
    return {"hub.config.JupyterHub.cookie_secret": secrets.token_hex(32),
            "hub.config.CryptKeeper.keys": secrets.token_hex(32),
            "oauth-client-id": "kflowgen-hub", "oauth-client-secret": "not-in-git", **extra}


def probe(etc: Path, people: list, tmp_path: Path, sign_ins: dict | None = None) -> dict:
    kubeconfig = tmp_path / "kubeconfig"  # KubeSpawner makes an API client (it is never called)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: none\nclusters: [{name: none, cluster: "
                          "{server: 'https://127.0.0.1:1'}}]\nusers: [{name: none, user: {token: none}}]\n"
                          "contexts: [{name: none, context: {cluster: none, user: none}}]\n")
    out = subprocess.run([str(HUB_PYTHON), str(PROBE), str(etc), json.dumps(people), json.dumps(sign_ins or {})],
                         capture_output=True,
                         text=True, env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PEOPLE = [["alice@example.com", []], ["zoe", ["nlp-ds", "vision-ds"]], ["mallory", ["other"]], ["carl", ["recsys-ds"]]]


@pytest.fixture(scope="module")
def dev_hub(example, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    docs = helm_template(example["overlays/dev/jupyterhub/values.yaml"], tmp)
    return probe(hub_etc(docs, tmp, platform_secret()), PEOPLE, tmp)


def test_sign_in_is_the_platforms_oidc_provider_with_secrets_from_the_secret(dev_hub):
    assert dev_hub["authenticator"] == "oauthenticator.generic.GenericOAuthenticator"
    cfg = dev_hub["authenticator_config"]
    assert (cfg["client_id"], cfg["client_secret"]) == ("kflowgen-hub", "not-in-git")
    assert cfg["authorize_url"] == "https://sso.example.com/realms/acme/protocol/openid-connect/auth"
    assert (cfg["username_claim"], cfg["auth_state_groups_key"], cfg["manage_groups"]) == ("email", "oauth_user.groups",
                                                                                          True)
    assert cfg["admin_groups"] == ["ml-platform-admins"]
    assert cfg["allowed_groups"] == ["ml-auditors", "ml-platform-admins", "nlp-ds", "recsys-ds", "vision-ds",
                                     "vision-leads"]
    assert dev_hub["cookie_secret_bytes"] == 32 and dev_hub["crypt_keys"] == 1  # the Secret's, not the placeholders


def test_notebooks_reach_the_hub_by_its_fully_qualified_name(dev_hub):
    assert dev_hub["hub_api_url"] == "http://hub.jupyterhub.svc:8081/hub/api"
    pod = dev_hub["people"]["zoe"]["pods"]["nlp-t4"]
    assert pod["metadata"]["namespace"] == "nlp"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://hub.jupyterhub.svc:8081/hub/api"


def test_group_membership_decides_the_profiles_and_people_in_several_teams_get_one_default(dev_hub):
    people = dev_hub["people"]
    assert people["alice@example.com"]["profiles"] == [["vision-cpu", True], ["vision-a100", False]]
    assert people["zoe"]["profiles"] == [["nlp-t4", True], ["nlp-a100x2", False], ["vision-cpu", False],
                                         ["vision-a100", False]]
    assert people["carl"]["profiles"] == [["recsys-small", True], ["recsys-t4", False]]


def test_a_person_in_no_team_cannot_spawn_and_is_told_why(dev_hub):
    mallory = dev_hub["people"]["mallory"]
    assert mallory["profiles"] == [] and mallory["pods"] == {}
    status, message = mallory["refused"]
    assert status == 403 and message.startswith("mallory is in no team of acme-ml") and "ml-platform-admins" in message


def test_notebook_pods_keep_fs_group_and_pod_security_and_gpu_ones_stop_sooner(dev_hub):
    ctx = policy.Context((), {"dev": {}})
    for person in dev_hub["people"].values():
        for slug, pod in person["pods"].items():
            assert pod["spec"]["securityContext"]["fsGroup"] == 100, slug
            obj = {"apiVersion": "v1", "kind": "Pod", "metadata": pod["metadata"], "spec": pod["spec"]}
            assert list(policy.POLICIES["pod-security-restricted"].check(obj, ctx)) == [], slug
    a100 = dev_hub["people"]["alice@example.com"]["pods"]["vision-a100"]["spec"]["containers"][0]
    assert a100["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--ServerApp.shutdown_no_activity_timeout=1800" in a100["args"]
    cpu = dev_hub["people"]["alice@example.com"]["pods"]["vision-cpu"]["spec"]["containers"][0]
    assert not any("shutdown_no_activity_timeout" in a for a in cpu.get("args") or [])
    assert "--timeout=3600" in dev_hub["cull"]


@pytest.mark.parametrize("missing, why", [("hub.config.JupyterHub.cookie_secret", "hexadecimal"),
                                          ("oauth-client-id", "oauth-client-id not found")])
def test_a_hub_whose_secret_lacks_a_key_refuses_to_start(example, tmp_path, missing, why):
    """The placeholders in Git are never used in place of a secret: without the key, the hub does not start."""
    docs = helm_template(example["overlays/dev/jupyterhub/values.yaml"], tmp_path)
    secret = {k: v for k, v in platform_secret().items() if k != missing}
    report = probe(hub_etc(docs, tmp_path, secret), [], tmp_path)
    assert why in report.get("error", ""), report


def _variant(tmp_path: Path, auth: str, groups: dict[str, str]) -> dict[str, bytes]:
    root = copy_repo(PROJECT, tmp_path / "repo")
    platform = root / "specs/platform.yaml"
    text = platform.read_text()
    start, end = text.index("  auth:\n"), text.index("  cull:\n")
    platform.write_text(text[:start] + auth + text[end:])
    for team in ("vision", "nlp", "recsys"):
        spec = root / f"specs/teams/{team}.yaml"
        spec.write_text(_rename(spec.read_text(), groups))
    return rendered_files(root)


def _rename(text: str, groups: dict[str, str]) -> str:
    for old, new in groups.items():
        text = text.replace(f"group: {old}\n", f"group: '{new}'\n")
    return text


def test_oidc_sign_in_admits_exactly_the_teams_people_and_takes_admin_away(example, tmp_path):
    docs = helm_template(example["overlays/dev/jupyterhub/values.yaml"], tmp_path)
    cases = [["zoe", {"oauth_user": {"groups": ["vision-ds", "other"]}}],
             ["alice@example.com", {"oauth_user": {"groups": []}}],  # an owner, by name
             ["root", {"oauth_user": {"groups": ["ml-platform-admins"]}}],
             ["former-admin", {"oauth_user": {"groups": ["vision-ds"]}}],
             ["mallory", {"oauth_user": {"groups": ["other"]}}]]
    report = probe(hub_etc(docs, tmp_path, platform_secret()), [], tmp_path, {"oauth": cases})
    assert report["sign_ins"] == {
        "zoe": [["other", "vision-ds"], False, True], "alice@example.com": [[], False, True],
        "root": [["ml-platform-admins"], True, True], "former-admin": [["vision-ds"], False, True],
        "mallory": [["other"], False, False]}
    assert report["allow_existing_users"] is False  # a former member who signed in once is not let in again


def test_github_sign_in_takes_groups_from_github_teams(tmp_path):
    files = _variant(tmp_path, "  auth:\n    type: github\n    github: {organizations: [acme]}\n"
                               "    adminGroups: ['acme:ml-platform']\n",
                     {"vision-ds": "acme:vision-ds", "vision-leads": "acme:vision-leads", "ml-auditors": "acme:audit",
                      "nlp-ds": "acme:nlp-ds", "recsys-ds": "acme:recsys-ds"})
    docs = helm_template(files["overlays/dev/jupyterhub/values.yaml"], tmp_path)
    report = probe(hub_etc(docs, tmp_path, platform_secret()), [["zoe", ["acme:vision-ds"]]], tmp_path)
    assert report["authenticator"] == "oauthenticator.github.GitHubOAuthenticator"
    cfg = report["authenticator_config"]
    assert cfg["populate_teams_in_auth_state"] is True and "read:org" in cfg["scope"]
    assert report["github_groups"] == ["acme:vision-ds"]  # a GitHub team, as the teams name their groups
    assert report["people"]["zoe"]["profiles"] == [["vision-cpu", True], ["vision-a100", False]]


def test_ldap_sign_in_reads_the_bind_password_from_the_secret(tmp_path):
    dn = "cn={},ou=groups,dc=acme,dc=com"
    files = _variant(tmp_path, "  auth:\n    type: ldap\n    ldap:\n      server: ldap.acme.com\n"
                               "      userSearchBase: ou=people,dc=acme,dc=com\n"
                               "      lookupDnSearchUser: cn=hub,ou=apps,dc=acme,dc=com\n"
                               f"    adminGroups: ['{dn.format('admins')}']\n",
                     {g: dn.format(g) for g in ("vision-ds", "vision-leads", "ml-auditors", "nlp-ds", "recsys-ds")})
    docs = helm_template(files["overlays/dev/jupyterhub/values.yaml"], tmp_path)
    person = "uid={},ou=people,dc=acme,dc=com"
    directory = {"cn=hub,ou=apps,dc=acme,dc=com": {"cn": "hub", "userPassword": "bind-pw", "objectClass": "person"},
                 **{person.format(u): {"uid": u, "userPassword": "pw", "objectClass": "person"}
                    for u in ("zoe", "root", "mallory")},
                 dn.format("vision-ds"): {"cn": "vision-ds", "member": [person.format("zoe")],
                                          "objectClass": "groupOfNames"},
                 dn.format("admins"): {"cn": "admins", "member": [person.format("root")],
                                       "objectClass": "groupOfNames"}}
    logins = [["zoe", "pw"], ["root", "pw"], ["mallory", "pw"], ["zoe", "wrong"]]
    report = probe(hub_etc(docs, tmp_path, platform_secret(**{"ldap-bind-password": "bind-pw"})),
                   [["zoe", [dn.format("vision-ds")]]], tmp_path, {"ldap": {"directory": directory, "logins": logins}})
    assert report["sign_ins"] == {"zoe": None,  # the last login of zoe, with a wrong password
                                  "root": ["root", [dn.format("admins")], True], "mallory": None}
    good = probe(hub_etc(docs, tmp_path, platform_secret(**{"ldap-bind-password": "bind-pw"})), [], tmp_path,
                 {"ldap": {"directory": directory, "logins": [["zoe", "pw"]]}})
    assert good["sign_ins"] == {"zoe": ["zoe", [dn.format("vision-ds")], False]}
    assert report["authenticator"] == "ldapauthenticator.ldapauthenticator.LDAPAuthenticator"
    cfg = report["authenticator_config"]
    assert (cfg["server_address"], cfg["server_port"], str(cfg["tls_strategy"]).split(".")[-1]) == (
        "ldap.acme.com", 636, "on_connect")
    assert cfg["lookup_dn_search_password"] == "bind-pw" and report["post_auth_hook"]
    assert report["people"]["zoe"]["profiles"] == [["vision-cpu", True], ["vision-a100", False]]


def test_owners_written_in_capitals_see_their_profiles_and_spec_text_is_no_html(tmp_path):
    """JupyterHub lower-cases names; KubeSpawner's spawn page prints profile texts as HTML."""
    root = copy_repo(PROJECT, tmp_path / "repo")
    team = root / "specs/teams/vision.yaml"
    team.write_text(team.read_text().replace("alice@example.com", "Alice@Example.com")
                    .replace("displayName: CPU, 4 cores", "displayName: \"CPU <script>alert(1)</script>\""))
    values = rendered_files(root)["overlays/dev/jupyterhub/values.yaml"]
    docs = helm_template(values, tmp_path)
    report = probe(hub_etc(docs, tmp_path, platform_secret()), [["alice@example.com", []]], tmp_path)
    assert report["people"]["alice@example.com"]["profiles"] == [["vision-cpu", True], ["vision-a100", False]]
    profiles = yaml.safe_load(values)["singleuser"]["profileList"]
    assert "vision: CPU &lt;script&gt;alert(1)&lt;/script&gt;" in [p["display_name"] for p in profiles]
