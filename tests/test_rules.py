"""One-line tests for each cross-file rule: a pass and a fail, with the exact location."""
from __future__ import annotations

import pytest

from kflowgen import rules
from kflowgen.specs.loader import load_text
from kflowgen.specs.model import Model, platform_from, team_from

PLATFORM = """\
name: p
repo: {url: https://git.example.com/x.git}
kubernetesVersion: "1.34"
jupyterhub: {auth: {type: oidc, oidc: {authorizeUrl: https://a, tokenUrl: https://t, userdataUrl: https://u}}}
registries: [registry.example.com/ml/]
storage: {storageClass: nas}
gpuTypes:
  a100: {nodeSelector: {gpu: a100}}
  t4: {nodeSelector: {gpu: t4}}
environments:
  dev: {cluster: https://dev, capacity: {gpu: {a100: 4, t4: 4}}}
  prod: {cluster: https://prod, capacity: {gpu: {a100: 8}}}
"""

TEAM = """\
name: {name}
owners: [o@example.com]
notebook:
  image: {image}
  profiles:
    - {{name: cpu, cpu: 2, memory: 8Gi, default: true}}
    - {{name: gpu, cpu: 4, memory: 16Gi, gpu: {{type: a100, count: 1}}}}
storage: {{size: 100Gi}}
quota:
  dev: {{cpu: 8, memory: 32Gi, gpu: {{a100: 2}}}}
"""


def model(platform=PLATFORM, **teams):
    pspec, diags = load_text(platform, "specs/platform.yaml")
    assert not diags, diags
    p = platform_from(pspec)
    built = []
    for name, text in teams.items():
        spec, diags = load_text(text, f"specs/teams/{name}.yaml")
        assert not diags, diags
        built.append(team_from(spec, list(p.environments)))
    return Model(p, built)


def team(name="vision", image="registry.example.com/ml/nb:1", x=("", "")):
    """A team spec, with one text replacement x=(old, new) to plant a mistake."""
    text = TEAM.format(name=name, image=image)
    assert x[0] in text
    return text.replace(*x, 1) if x[0] else text


def found(rule, m):
    return [(d.code, d.path, d.line, d.col) for d in rules.RULES[rule](m)]


def test_every_rule_passes_a_good_model():
    assert rules.run(model(vision=team(), nlp=team("nlp"))) == []


@pytest.mark.parametrize("rule, teams, expected", [
    ("team-names", {"vision": team("vison")}, [("KF301", "specs/teams/vision.yaml", 1, 7)]),
    ("team-names", {"argocd": team("argocd")}, [("KF302", "specs/teams/argocd.yaml", 1, 7)]),
    ("team-names", {"kube-x": team("kube-x")}, [("KF302", "specs/teams/kube-x.yaml", 1, 7)]),
    ("environments-exist", {"v": team("v", x=("dev: {cpu", "stage: {cpu"))}, [("KF303", "specs/teams/v.yaml", 10, 3)]),
    ("gpu-types-exist", {"v": team("v", x=("type: a100", "type: h100"))}, [("KF304", "specs/teams/v.yaml", 7, 53)]),
    ("gpu-types-exist", {"v": team("v", x=("gpu: {a100: 2}", "gpu: {a10: 2}"))}, [("KF304", "specs/teams/v.yaml", 10, 37)]),
    ("profiles-fit-quota", {"v": team("v", x=("count: 1", "count: 3"))}, [("KF305", "specs/teams/v.yaml", 7, 66)]),
    ("profiles-fit-quota", {"v": team("v", x=("cpu: 4,", "cpu: 16,"))}, [("KF305", "specs/teams/v.yaml", 7, 24)]),
    ("profiles-fit-quota", {"v": team("v", x=("gpu, cpu", "gpu, default: true, cpu"))}, [("KF308", "specs/teams/v.yaml", 7, 28)]),
    ("profiles-fit-quota", {"v": team("v", x=("cpu: 2,", "cpu: 2, guarantee: {cpu: 3},"))}, [("KF309", "specs/teams/v.yaml", 6, 44)]),
    ("gpu-capacity", {"a": team("a", x=("a100: 2", "a100: 3")), "b": team("b")},
     [("KF306", "specs/platform.yaml", 11, 54)]),
    ("allowed-registries", {"v": team("v", image="docker.io/library/python:3.11")}, [("KF307", "specs/teams/v.yaml", 4, 10)]),
    ("storage-quota", {"v": team("v", x=("memory: 32Gi,", "memory: 32Gi, storage: 10Gi,"))}, [("KF310", "specs/teams/v.yaml", 10, 40)]),
])
def test_rule_fails_at_the_spec_line(rule, teams, expected):
    assert found(rule, model(**teams)) == expected


def test_capacity_for_unknown_gpu_type():
    m = model(PLATFORM.replace("{a100: 8}", "{a100: 8, h100: 2}"), v=team("v"))
    assert found("gpu-types-exist", m) == [("KF311", "specs/platform.yaml", 12, 59)]


def test_capacity_message_names_the_teams():
    m = model(a=team("a", x=("a100: 2", "a100: 3")), b=team("b"))
    (d,) = rules.RULES["gpu-capacity"](m)
    assert d.message == "dev: teams are promised 5 a100 GPUs but the cluster has 4 (a 3, b 2)"


@pytest.mark.parametrize("name", ["kubeflow", "kubeflow-system", "gpu-operator", "nvidia-gpu-operator", "kueue-system",
                                  "cert-manager", "monitoring", "ingress-nginx", "istio-system", "kserve", "default",
                                  "kube-flannel", "openshift-monitoring"])
def test_well_known_system_namespaces_are_reserved(name):
    assert found("team-names", model(**{name: team(name)})) == [("KF302", f"specs/teams/{name}.yaml", 1, 7)]


@pytest.mark.parametrize("reserved, name, hit", [("[infra-*]", "infra-x", True), ("[infra-*]", "infra", False),
                                                 ("[billing]", "billing", True), ("[billing]", "billing-2", False)])
def test_the_platform_reserves_its_own_namespaces(reserved, name, hit):
    m = model(PLATFORM.replace("registries:", f"reservedNamespaces: {reserved}\nregistries:"), **{name: team(name)})
    assert found("team-names", m) == ([("KF302", f"specs/teams/{name}.yaml", 1, 7)] if hit else [])


def test_profile_slugs_and_names_are_unique():
    # vision's profile "gpu-cpu" and team vision-gpu's profile "cpu" share the slug vision-gpu-cpu
    m = model(vision=team(x=("name: gpu,", "name: gpu-cpu,")), **{"vision-gpu": team("vision-gpu")})
    assert found("unique-generated-names", m) == [("KF314", "specs/teams/vision-gpu.yaml", 6, 14)]
    m = model(vision=team(x=("name: gpu,", "name: cpu,")))
    assert found("unique-generated-names", m) == [("KF314", "specs/teams/vision.yaml", 7, 14)]


def test_argocd_names_are_unique_across_environments():
    platform = PLATFORM.replace("  prod: {", "  dev-a: {cluster: https://dev-a, capacity: {gpu: {a100: 2}}}\n  prod: {")
    m = model(platform, **{"a-b": team("a-b"), "b": team("b", x=("dev: {cpu", "dev-a: {cpu"))})
    assert found("unique-generated-names", m) == [("KF315", "specs/teams/b.yaml", 1, 7)]


def _hub(auth: str) -> str:
    return PLATFORM.replace("jupyterhub: {auth: {type: oidc, oidc: {authorizeUrl: https://a, tokenUrl: https://t, "
                            "userdataUrl: https://u}}}", auth)


@pytest.mark.parametrize("auth, teams, expected", [
    ("jupyterhub: {namespace: hub}", {"v": team("v")}, [("KF340", "specs/platform.yaml", 4, 1)]),
    ("jupyterhub: {auth: {type: github}}", {"v": team("v")}, [("KF340", "specs/platform.yaml", 4, 27)]),
    ("jupyterhub: {auth: {type: oidc, oidc: {authorizeUrl: https://a, tokenUrl: https://t, userdataUrl: https://u}, "
     "github: {organizations: [x]}}}", {"v": team("v")}, [("KF340", "specs/platform.yaml", 4, 111)]),
    ("jupyterhub: {auth: {type: dummy}}", {"v": team("v")}, [("KF341", "specs/platform.yaml", 4, 27)]),
    ("jupyterhub: {auth: {type: github, github: {organizations: [acme]}}}",
     {"v": team("v", x=("owners:", "members: [{group: 'acme:v-ds'}, {group: v-ds}]\nowners:"))},
     [("KF340", "specs/teams/v.yaml", 2, 41)]),
    ("jupyterhub: {auth: {type: ldap, ldap: {server: l.example.com, userSearchBase: 'ou=p'}}}",
     {"v": team("v", x=("owners:", "members: [{group: 'cn=v,ou=g'}, {group: v-ds}]\nowners:"))},
     [("KF340", "specs/teams/v.yaml", 2, 41)]),
    ("jupyterhub: {auth: {type: oidc, allowedGroups: [guests], oidc: {authorizeUrl: https://a, tokenUrl: https://t, "
     "userdataUrl: https://u}}}", {"v": team("v")}, [("KF340", "specs/platform.yaml", 4, 49)]),
])
def test_hub_sign_in(auth, teams, expected):
    assert found("hub-sign-in", model(_hub(auth), **teams)) == expected
