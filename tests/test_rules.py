"""One-line tests for each cross-file rule: a pass and a fail, with the exact location. Every spec a case builds
passes its schema, so each planted mistake is one only the rule stands in front of; each table row plants one.
Sections: teams and the platform, hub sign-in, network, experiments, served models, and the cross-checks that every
code a rule module can report has a failing row and every rule a clean one."""
from __future__ import annotations

import inspect
import re

import pytest

from kflowgen import cache, rules
from kflowgen.rules import capacity as capacity_rule, distributed as distributed_rule, environments as environments_rule
from kflowgen.rules import experiments as experiments_rule
from kflowgen.rules import gpus as gpus_rule, hub as hub_rule, images as images_rule, names as names_rule
from kflowgen.rules import network as network_rule, paths as paths_rule, profiles as profiles_rule
from kflowgen.rules import quantities as quantities_rule, queueing as queueing_rule, secrets, serving as serving_rule
from kflowgen.rules import storage as storage_rule
from kflowgen.rules import teams as teams_rule
from kflowgen.specs import schema
from kflowgen.specs.experiment import experiment_from
from kflowgen.specs.loader import load_text
from kflowgen.specs.model import Deferred, Model, platform_from, team_from
from kflowgen.specs.served import served_model_from

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


def spec(kind, text, path):
    """A spec as the pipeline gives it to the rules: it loads and passes its schema (so the rule under test is what
    stands between the planted mistake and a render)."""
    loaded, diags = load_text(text, path)
    assert not diags, diags
    assert schema.validate(kind, loaded) == [], schema.validate(kind, loaded)
    return loaded


def model(platform=PLATFORM, *, experiments=None, served=None, unreadable=(), **teams):
    """The model of a platform, teams (name -> text; a name with a '.' is the file name, e.g. "vision.yml"),
    experiments and served models (path under specs/experiments/ or specs/models/ -> text), ordered as
    specs.read orders them. unreadable: team names whose spec did not load."""
    p = platform_from(spec("platform", platform, "specs/platform.yaml"))
    built = [team_from(spec("team", text, f"specs/teams/{name if '.' in name else name + '.yaml'}"),
                       list(p.environments)) for name, text in teams.items()]
    return Model(p, sorted(built, key=lambda t: (t.name, t.source.path)),
                 Deferred([spec("model", t, f"specs/models/{rel}") for rel, t in (served or {}).items()],
                          served_model_from),
                 Deferred([spec("experiment", t, f"specs/experiments/{rel}") for rel, t in (experiments or {}).items()],
                          experiment_from),
                 unreadable=set(unreadable))


def team(name="vision", image="registry.example.com/ml/nb:1", x=("", "")):
    """A team spec, with one text replacement x=(old, new) to plant a mistake."""
    text = TEAM.format(name=name, image=image)
    assert x[0] in text
    return text.replace(*x, 1) if x[0] else text


def platform(x=("", ""), extra=""):
    """The platform file, with one text replacement x=(old, new) and lines added at its end."""
    assert x[0] in PLATFORM
    return (PLATFORM.replace(*x, 1) if x[0] else PLATFORM) + extra


def found(rule, m):
    if rule in rules.BY_TEAM or rule in rules.LOCAL:  # checked team by team (as rules.checked does), the rules find
        # exactly the same, each finding once
        whole = rules.run(m, skip=set(rules.RULES) - {*rules.BY_TEAM, *rules.LOCAL})
        assert sorted(rules._by_team(m, cache.Cache(None)) + rules._local(m, cache.Cache(None))) == sorted(whole)
    return [(d.code, d.path, d.line, d.col) for d in rules.RULES[rule](m)]


def test_every_rule_passes_a_good_model():
    assert rules.run(model(vision=team(), nlp=team("nlp"))) == []


CASES = [
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
     [("KF306", "specs/teams/b.yaml", 10, 43)]),  # at the quota that takes the sum over, in file-name order
    ("allowed-registries", {"v": team("v", image="docker.io/library/python:3.11")}, [("KF307", "specs/teams/v.yaml", 4, 10)]),
    ("storage-quota", {"v": team("v", x=("memory: 32Gi,", "memory: 32Gi, storage: 10Gi,"))}, [("KF310", "specs/teams/v.yaml", 10, 40)]),
]


@pytest.mark.parametrize("rule, teams, expected", CASES)
def test_rule_fails_at_the_spec_line(rule, teams, expected):
    assert found(rule, model(**teams)) == expected


def test_capacity_for_unknown_gpu_type():
    m = model(PLATFORM.replace("{a100: 8}", "{a100: 8, h100: 2}"), v=team("v"))
    assert found("gpu-types-exist", m) == [("KF311", "specs/platform.yaml", 12, 59)]


def test_capacity_message_says_what_is_free_and_what_to_type():
    m = model(a=team("a", x=("a100: 2", "a100: 3")), b=team("b"))
    (d,) = rules.RULES["gpu-capacity"](m)
    assert (d.path, d.message, d.hint) == (
        "specs/teams/b.yaml", "quota of 2 a100 GPUs in dev does not fit: dev has 4 a100; other teams already take 3 "
        "(a 3); 1 free", "lower quota.dev.gpu.a100 to 1, or ask the platform team to raise "
        "environments.dev.capacity.gpu.a100 in specs/platform.yaml")


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


HUB_CASES = [
    ("jupyterhub: {namespace: hub}", {"v": team("v")}, [("KF340", "specs/platform.yaml", 4, 1)]),
    ("jupyterhub: {auth: {type: github}}", {"v": team("v")}, [("KF340", "specs/platform.yaml", 4, 27)]),
    ("jupyterhub: {auth: {type: github}}",  # the missing settings once, not again at every member group
     {"v": team("v", x=("owners:", "members: [{group: 'acme:v'}]\nowners:"))}, [("KF340", "specs/platform.yaml", 4, 27)]),
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
]


@pytest.mark.parametrize("auth, teams, expected", HUB_CASES)
def test_hub_sign_in(auth, teams, expected):
    assert found("hub-sign-in", model(_hub(auth), **teams)) == expected


# --- teams and the platform -------------------------------------------------------------------------------------------

P, T = "specs/platform.yaml", "specs/teams/v.yaml"
HUB = "jupyterhub: {auth: {type: oidc, oidc: {authorizeUrl: https://a, tokenUrl: https://t, userdataUrl: https://u}}}"
EGRESS = "network: {{egress: [{}]}}\n".format
DEV_X = ("  prod: {", "  dev-x: {cluster: https://dev-x, capacity: {gpu: {a100: 0}}}\n  prod: {")


def v(**kw):
    return {"v": team("v", **kw)}


PLATFORM_CASES = [
    # quantities: zero amounts and cpu finer than a millicore, in each place a team gives one
    ("quantities", PLATFORM, v(x=("cpu: 2,", "cpu: 0m,")), [("KF204", T, 6, 24)]),
    ("quantities", PLATFORM, v(x=("memory: 16Gi", "memory: 0Gi")), [("KF204", T, 7, 35)]),
    ("quantities", PLATFORM, v(x=("cpu: 2,", "cpu: 2, guarantee: {cpu: 0.0005},")), [("KF204", T, 6, 44)]),
    ("quantities", PLATFORM, v(x=("cpu: 2,", "cpu: 2, guarantee: {memory: 0Mi},")), [("KF204", T, 6, 47)]),
    ("quantities", PLATFORM, v(x=("size: 100Gi", "size: 0Gi")), [("KF204", T, 8, 17)]),
    ("quantities", PLATFORM, v(x=("dev: {cpu: 8", "dev: {cpu: 0m")), [("KF204", T, 10, 14)]),
    ("quantities", PLATFORM, v(x=("dev: {cpu: 8", "dev: {cpu: 8.0001")), [("KF204", T, 10, 14)]),
    ("quantities", PLATFORM, v(x=("memory: 32Gi,", "memory: '0',")), [("KF204", T, 10, 25)]),
    ("quantities", PLATFORM, v(x=("memory: 32Gi,", "memory: 32Gi, storage: 0Gi,")), [("KF204", T, 10, 40)]),
    ("quantities", PLATFORM, v(x=("cpu: 2,", "cpu: 1m,")), []),
    # team-names: the same team in two files, names reserved by the platform file's own settings
    # the first file owns the name (one named after the team, then by path); the others are blamed
    ("team-names", PLATFORM, {"vision": team(), "vision.yml": team()}, [("KF301", "specs/teams/vision.yml", 1, 7)]),
    ("team-names", PLATFORM, {"a": team("a"), "b": team("a")}, [("KF301", "specs/teams/b.yaml", 1, 7)]),
    ("team-names", platform(("{auth:", "{namespace: ml-hub, auth:")), {"ml-hub": team("ml-hub")},
     [("KF302", "specs/teams/ml-hub.yaml", 1, 7)]),
    ("team-names", platform(extra="argocd: {namespace: gitops}\n"), {"gitops": team("gitops")},
     [("KF302", "specs/teams/gitops.yaml", 1, 7)]),
    ("team-names", PLATFORM, {"bootstrap": team("bootstrap")}, [("KF302", "specs/teams/bootstrap.yaml", 1, 7)]),
    ("team-names", PLATFORM, {"kubeflowx": team("kubeflowx")}, []),  # kubeflow-* is a prefix with its '-'
    # unique-generated-names
    ("unique-generated-names", PLATFORM, v(x=("count: 1}}\n", "count: 1}}\n    - {name: cpu, cpu: 1, memory: 1Gi}\n")),
     [("KF314", T, 8, 14)]),
    ("unique-generated-names", platform(DEV_X), {"x-bootstrap": team("x-bootstrap")},
     [("KF315", "specs/teams/x-bootstrap.yaml", 1, 7)]),  # dev-x-bootstrap is the platform's project in dev-x
    ("unique-generated-names", PLATFORM, {"vision": team(x=("name: gpu,", "name: gpu-cpu,")),
                                          "vision-gpu": team("vision-gpu", x=("dev: {cpu", "prod: {cpu"))}, []),
    # clean-paths: the NAS mount path
    ("clean-paths", platform(("nas}", "nas, mountPath: /workspace/../etc}")), v(), [("KF204", P, 6, 41)]),
    ("clean-paths", platform(("nas}", "nas, mountPath: /nas/ml}")), v(), []),
    # environments-exist, gpu-types-exist
    ("environments-exist", PLATFORM, v(x=("quota:\n", "quota:\n  qa: {cpu: 1, memory: 1Gi}\n")), [("KF303", T, 10, 3)]),
    ("environments-exist", PLATFORM, v(x=("dev: {cpu", "prod: {cpu")), []),
    ("gpu-types-exist", platform(("{a100: 4, t4: 4}", "{a100: 4, v100: 4}")), v(), [("KF311", P, 11, 57)]),
    ("gpu-types-exist", PLATFORM, v(x=("type: a100", "type: t4")), []),
    # profiles-fit-quota: a guarantee, memory, a GPU type the quota lacks, a second environment
    ("profiles-fit-quota", PLATFORM, v(x=("cpu: 4,", "cpu: 10, guarantee: {cpu: 9},")), [("KF305", T, 7, 45)]),
    ("profiles-fit-quota", PLATFORM, v(x=("memory: 16Gi", "memory: 40Gi")), [("KF305", T, 7, 35)]),
    ("profiles-fit-quota", PLATFORM, v(x=("type: a100", "type: t4")), [("KF305", T, 7, 64)]),
    ("profiles-fit-quota", PLATFORM, v(x=("quota:\n", "quota:\n  prod: {cpu: 3, memory: 32Gi, gpu: {a100: 2}}\n")),
     [("KF305", T, 7, 24)]),
    ("profiles-fit-quota", PLATFORM, v(x=("memory: 8Gi,", "memory: 8Gi, guarantee: {memory: 9Gi},")),
     [("KF309", T, 6, 60)]),
    ("profiles-fit-quota", PLATFORM, v(x=("cpu: 4,", "cpu: 8,")), []),  # all of the quota
    ("profiles-fit-quota", PLATFORM, v(x=("quota:\n", "quota:\n  qa: {cpu: 1, memory: 1Gi}\n")), []),  # KF303's
    # gpu-capacity: a GPU type the environment has no capacity line for
    ("gpu-capacity", PLATFORM, v(x=("quota:\n", "quota:\n  prod: {cpu: 8, memory: 32Gi, gpu: {t4: 1}}\n")),
     [("KF306", T, 10, 42)]),
    # a misspelt GPU type is reported once, as itself (KF304, KF311): not as the type it meant missing from a quota
    ("profiles-fit-quota", PLATFORM, v(x=("gpu: {a100: 2}", "gpu: {a10: 2}")), []),
    ("gpu-capacity", platform(("{a100: 4, t4: 4}", "{a10: 4, t4: 4}")), v(), []),
    ("gpu-capacity", PLATFORM, {"a": team("a"), "b": team("b")}, []),  # 2 + 2 of the 4 A100s
    # allowed-registries: registry entries and notebook images
    ("allowed-registries", platform(("ml/]", "ml/, registry.example.com/../]")), v(), [("KF204", P, 5, 40)]),
    ("allowed-registries", PLATFORM, v(image="registry.example.com/ml//nb:1"), [("KF204", T, 4, 10)]),
    ("allowed-registries", PLATFORM, v(image="registry.example.com/ml/nb:latest"), [("KF313", T, 4, 10)]),
    ("allowed-registries", PLATFORM, v(image="registry.example.com/mlx/nb:1"), [("KF307", T, 4, 10)]),
    ("allowed-registries", PLATFORM, v(image="docker.io/library/python:latest"),
     [("KF313", T, 4, 10), ("KF307", T, 4, 10)]),
    ("allowed-registries", PLATFORM, v(image="registry.example.com/ml/nb@sha256:" + "a" * 64), []),
    ("storage-quota", PLATFORM, v(x=("memory: 32Gi,", "memory: 32Gi, storage: 100Gi,")), []),
    # hub-sign-in
    ("hub-sign-in", platform((HUB + "\n", "")), v(), [("KF340", P, 1, 1)]),
    ("hub-sign-in", platform((HUB, "jupyterhub: {auth: {type: github, github: {organizations: [acme, beta]}}}")),
     v(x=("owners:", "members: [{group: 'acme:v'}, {group: 'other:v'}]\nowners:")), [("KF340", T, 2, 38)]),
    ("hub-sign-in", platform(("type: oidc,", "type: oidc, adminGroups: [admins], allowedGroups: [admins, v-ds],")),
     v(x=("owners:", "members: [{group: v-ds}]\nowners:")), []),
    # network: egress rules and pull secrets
    ("network", platform(extra=EGRESS("{name: dns, ports: [53], namespace: kube-system}, "
                                      "{name: dns, ports: [53], cidr: 10.0.0.0/8}")), v(), [("KF342", P, 13, 77)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [53], namespace: kube-system, cidr: 10.0.0.0/8}")), v(),
     [("KF342", P, 13, 20)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [53]}")), v(), [("KF342", P, 13, 20)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [443], namespace: v}")), v(), [("KF342", P, 13, 55)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [443], cidr: 10.0.0.0/8, podLabels: {app: x}}")), v(),
     [("KF342", P, 13, 73)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [443], namespace: kube-system, except: [10.1.0.0/16]}")), v(),
     [("KF342", P, 13, 76)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [443], cidr: 10.0.0.1/8}")), v(), [("KF342", P, 13, 50)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [443], cidr: 10.0.0.0/8, except: [10.1.0.0/33]}")), v(),
     [("KF342", P, 13, 71)]),
    ("network", platform(extra=EGRESS("{name: a, ports: [443], cidr: 10.0.0.0/8, environments: [dev, stage]}")), v(),
     [("KF342", P, 13, 82)]),
    ("network", platform(extra="pullSecrets: {quay.io/: quay-pull}\n"), v(), [("KF346", P, 13, 15)]),
    ("network", platform(extra="pullSecrets: {registry.example.com/ml/: pull}\n" + EGRESS(
        "{name: dns, ports: [53], namespace: kube-system, podLabels: {k8s-app: kube-dns}}, "
        "{name: s3, ports: [443], cidr: 10.0.0.0/8, except: [10.1.0.0/16], environments: [prod]}")), v(), []),
]


@pytest.mark.parametrize("rule, platform_text, teams, expected", PLATFORM_CASES)
def test_platform_and_team_rules(rule, platform_text, teams, expected):
    assert found(rule, model(platform_text, **teams)) == expected


# --- experiments ------------------------------------------------------------------------------------------------------

X = "specs/experiments/vision/x.yaml"
EXP = "team: vision\nname: x\nrun: python train.py\nresources: {cpu: 1, memory: 1Gi}\nenvironments: [dev]\n"
A100 = ("cpu: 1", "gpu: {type: a100, count: 1}, cpu: 1")
GRID_289 = "sweep: {{grid: {{a: {0}, b: {0}}}}}\n".format(list(range(17)))


def exp(x=("", ""), extra=""):
    """The experiment vision/x (1 cpu, 1Gi, in dev), with one text replacement and lines added at its end."""
    assert x[0] in EXP
    return (EXP.replace(*x, 1) if x[0] else EXP) + extra


def rnd(trials, params):
    return f"sweep: {{random: {{seed: 1, trials: {trials}, params: {{{params}}}}}}}\n"


EXPERIMENT_CASES = [
    ("experiments", exp(), []),
    ("experiments", {"visoin/x.yaml": exp(("team: vision", "team: visoin"))},
     [("KF320", "specs/experiments/visoin/x.yaml", 1, 7)]),
    ("experiments", {"vision/x.yaml": exp(), "vision/x.yml": exp()}, [("KF321", X.replace(".yaml", ".yml"), 2, 7)]),
    ("experiments", {"vision/x.yaml": exp(), "vision/y.yaml": exp()},  # a copy not renamed: elsewhere, and twice
     [("KF321", "specs/experiments/vision/y.yaml", 2, 7), ("KF321", "specs/experiments/vision/y.yaml", 2, 7)]),
    ("experiments", exp(("[dev]", "[dev, stage]")), [("KF322", X, 5, 21)]),
    ("experiments", exp(("[dev]", "[prod]")), [("KF322", X, 5, 16)]),
    ("experiments", exp(("cpu: 1", "gpu: {type: v100, count: 1}, cpu: 1")), [("KF323", X, 4, 25)]),
    ("experiments", exp(("memory: 1Gi", "memory: 40Gi")), [("KF324", X, 4, 29)]),
    ("experiments", exp(("memory: 1Gi", "memory: 40Gi"), "archived: true\n"), []),  # archived: nothing runs
    ("experiments", exp(("memory: 1Gi", "memory: 20Gi"), "sweep: {grid: {lr: [1, 2]}}\narchived: true\n"), []),
    ("experiments", exp(("cpu: 1", "gpu: {type: t4, count: 1}, cpu: 1")), [("KF324", X, 4, 36)]),
    ("experiments", exp(("cpu: 1", "cpu: 3"), "workers: 3\n"), [("KF324", X, 4, 18)]),
    ("experiments", exp(("memory: 1Gi", "memory: 20Gi"), "sweep: {grid: {lr: [1, 2]}}\n"), [("KF325", X, 6, 8)]),
    ("experiments", exp(A100, "sweep: {grid: {lr: [1, 2, 3]}}\nparallelism: 3\n"), [("KF325", X, 7, 14)]),
    ("experiments", exp(A100, "sweep: {grid: {lr: [1, 2, 3]}}\nparallelism: 2\n"), []),
    ("experiments", exp(extra=GRID_289), [("KF326", X, 6, 15)]),
    ("experiments", exp(extra=rnd(2, "lr: {min: 2, max: 1}")), [("KF326", X, 6, 51)]),
    ("experiments", exp(extra=rnd(2, "lr: {min: -1, max: 1, log: true}")), [("KF326", X, 6, 51)]),
    ("experiments", exp(extra=rnd(2, "n: {min: 1, max: 9.5, integer: true}")), [("KF326", X, 6, 50)]),
    ("experiments", exp(extra=rnd(3, "opt: [adam, sgd]")), [("KF326", X, 6, 35)]),
    ("experiments", exp(extra=rnd(3, "opt: [adam, sgd, lamb]")), []),
    ("experiments", exp(("python train.py", "python train.py --name 'it")), [("KF327", X, 3, 6)]),
    ("experiments", exp(("python train.py", "python train.py | tee log")), [("KF327", X, 3, 6)]),
    ("experiments", exp(("python train.py", "python train.py $*"), "shell: true\n"), [("KF327", X, 3, 6)]),
    ("experiments", exp(("python train.py", "'python train.py \"$@\" > log'"), "shell: true\n"), []),
    ("experiments", exp(extra="sweep: {grid: {amp: [true, 'true']}}\n"), [("KF328", X, 6, 8)]),
    ("experiments", exp(("cpu: 1", "cpu: 2"), "workers: 2\nframework: tensorflow\n"), [("KF329", X, 7, 12)]),
    ("experiments", exp(extra="env: {DB_PASSWORD: hunter2hunter2}\n"), [("KF343", X, 6, 20)]),
    ("experiments", exp(extra="env: {GH: ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f}\n"), [("KF343", X, 6, 11)]),
    ("experiments", exp(extra="env: {DB_PASSWORD: short, LOG_LEVEL: debug}\n"), []),
    ("experiments", exp(extra="env: {HF_TOKEN: x}\nsecrets: {HF_TOKEN: {secret: hf, key: token}}\n"),
     [("KF347", X, 7, 11)]),
    ("experiments", exp(extra="shm: 2Gi\n"), [("KF345", X, 6, 6)]),
    ("experiments", exp(extra="shm: 1023Mi\n"), []),
    ("experiments", exp(extra="image: registry.example.com/ml/../x:1\n"), [("KF204", X, 6, 8)]),
    ("experiments", exp(extra="image: registry.example.com/ml/train:latest\n"), [("KF313", X, 6, 8)]),
    ("experiments", exp(extra="image: quay.io/ml/train:1\n"), [("KF307", X, 6, 8)]),
    ("quantities", exp(("cpu: 1", "cpu: 0.0005")), [("KF204", X, 4, 18)]),
    ("quantities", exp(("memory: 1Gi", "memory: 0Mi")), [("KF204", X, 4, 29)]),
    ("clean-paths", exp(extra='workdir: "src\\tx"\n'), [("KF204", X, 6, 10)]),
    ("clean-paths", exp(extra="workdir: projects/resnet\n"), []),
]


@pytest.mark.parametrize("rule, experiments, expected", EXPERIMENT_CASES)
def test_experiment_rules(rule, experiments, expected):
    specs = experiments if isinstance(experiments, dict) else {"vision/x.yaml": experiments}
    assert found(rule, model(vision=team(), experiments=specs)) == expected


# --- served models ----------------------------------------------------------------------------------------------------

M = "specs/models/vision/m.yaml"
SRV = "team: vision\nname: m\npath: models/m\nenvironments:\n  dev: {version: 1}\n"
SERVING = platform(("ml/]", "ml/, docker.io/tensorflow/]"))  # the default serving images are allowed
INGRESS = "network: {ingress: {className: nginx, namespace: ingress-nginx}}\n"
INGRESS_ONLY = SERVING + INGRESS  # no domain for dev
EXPOSED = SERVING.replace("https://dev,", "https://dev, domain: dev.example.com,") + INGRESS
KSERVED = SERVING.replace("{a100: 4, t4: 4}}}", "{a100: 4, t4: 4}}, kserve: {enabled: true}}")


def srv(dev="", extra="", head="", x=("", "")):
    """The model vision/m, served in dev with `{version: 1, <dev>}`, with lines added before and after, and one
    text replacement."""
    assert x[0] in SRV
    text = (SRV.replace(*x, 1) if x[0] else SRV).replace("{version: 1}", f"{{version: 1{', ' + dev if dev else ''}}}")
    return head + text + extra


MODEL_CASES = [
    ("served-models", SERVING, srv(), []),
    ("served-models", EXPOSED, srv("host: m.dev.example.com", "callers: [nlp]\n"), []),
    ("served-models", EXPOSED, srv("host: dev.example.com"), []),  # the domain itself is in the domain
    ("served-models", SERVING, {"vision/m.yaml": srv(), "vision/m2.yaml": srv()},  # a copy not renamed
     [("KF330", "specs/models/vision/m2.yaml", 2, 7), ("KF330", "specs/models/vision/m2.yaml", 2, 7)]),
    ("served-models", SERVING, {"visoin/m.yaml": srv(x=("team: vision", "team: visoin"))},
     [("KF331", "specs/models/visoin/m.yaml", 1, 7)]),
    ("served-models", SERVING, srv(extra="  stage: {version: 1}\n"), [("KF332", M, 6, 3)]),
    ("served-models", SERVING, srv(extra="  prod: {version: 1}\n"), [("KF332", M, 6, 3)]),
    ("served-models", SERVING, srv("gpu: {type: v100, count: 1}"), [("KF333", M, 5, 33)]),
    ("served-models", SERVING, srv("gpu: {type: t4, count: 5}"), [("KF333", M, 5, 33)]),
    ("served-models", SERVING, srv("replicas: 2, gpu: {type: a100, count: 1}"), [("KF334", M, 5, 3)]),
    ("served-models", SERVING, srv("replicas: 3, cpu: 2"), []),  # 4 pods with the rollout's: all 8 cpu
    ("served-models", SERVING, srv("autoscale: {minReplicas: 1, maxReplicas: 7}, memory: 4Gi"), []),
    ("served-models", SERVING, srv("autoscale: {minReplicas: 1, maxReplicas: 8}, memory: 4Gi"),
     [("KF334", M, 5, 3), ("KF334", M, 5, 3)]),  # 9 pods: over both the cpu and the memory quota
    ("served-models", SERVING, {"vision/m.yaml": srv("replicas: 3"),
                                "vision/scorer.yaml": srv("replicas: 4", x=("name: m", "name: scorer"))},
     [("KF334", "specs/models/vision/scorer.yaml", 5, 3)]),  # 4 + 5 pods of 1 cpu: each fits, together over 8
    ("served-models", SERVING, srv(head="image: quay.io/ml/serving:1\n"), [("KF335", M, 1, 8)]),
    ("served-models", PLATFORM, srv(), [("KF335", M, 5, 3)]),  # the default image, at the environment using it
    ("served-models", SERVING, srv(head="image: registry.example.com/ml/../serving:1\n"), [("KF204", M, 1, 8)]),
    ("served-models", SERVING, srv(head="image: registry.example.com/ml/serving:latest\n"), [("KF313", M, 1, 8)]),
    ("served-models", SERVING, srv(x=("models/m", "models/m/007")), [("KF336", M, 3, 7)]),
    ("served-models", SERVING, srv("replicas: 2, autoscale: {minReplicas: 2, maxReplicas: 3}"), [("KF336", M, 5, 21)]),
    ("served-models", SERVING, srv("autoscale: {minReplicas: 3, maxReplicas: 2}"), [("KF336", M, 5, 46)]),
    ("served-models", SERVING, srv(extra="callers: [nlp, visoin]\n"), [("KF344", M, 6, 16)]),
    ("served-models", SERVING, srv("host: m.dev.example.com"), [("KF344", M, 5, 27)]),  # no ingress controller
    ("served-models", INGRESS_ONLY, srv("host: m.dev.example.com"), [("KF344", M, 5, 27)]),  # no domain for dev
    ("served-models", EXPOSED, srv("host: m.example.com"), [("KF344", M, 5, 27)]),
    ("served-models", EXPOSED, srv("host: m.xdev.example.com"), [("KF344", M, 5, 27)]),
    ("served-models", EXPOSED, {"vision/m.yaml": srv("host: m.dev.example.com"),
                                "vision/scorer.yaml": srv("host: m.dev.example.com", x=("name: m", "name: scorer"))},
     [("KF344", "specs/models/vision/scorer.yaml", 5, 27)]),
    ("quantities", SERVING, srv("cpu: 0m"), [("KF204", M, 5, 26)]),
    ("quantities", SERVING, srv("memory: 0Gi"), [("KF204", M, 5, 29)]),
    ("quantities", SERVING, srv("cpu: 0.0001"), [("KF204", M, 5, 26)]),
    ("clean-paths", SERVING, srv(x=("models/m", "models/m.v1/_cache")), []),
    # KServe: where the platform has it, canaries counted by their pods (vision's dev quota: 8 cpu)
    ("served-models", KSERVED, srv("backend: kserve"), []),
    ("served-models", SERVING, srv("backend: kserve"), [("KF360", M, 5, 30)]),
    ("served-models", SERVING, srv(head="backend: kserve\n"), [("KF360", M, 1, 10)]),
    ("served-models", KSERVED, srv("backend: kserve, previous: 2, canary: 50%, replicas: 2"), []),  # 1 pod each
    ("served-models", KSERVED, srv("backend: kserve, previous: 2, canary: 50%, replicas: 3, cpu: 2"),
     [("KF363", M, 5, 59), ("KF334", M, 5, 3)]),  # 1 + 2 pods (2 of 3 requests) and a surge each: 10 cpu
    ("served-models", SERVING, srv("replicas: 3, cpu: 2"), []),  # the same servers without a canary: 8 cpu
    ("served-models", KSERVED, srv("backend: kserve, previous: 2, canary: 100%"), [("KF361", M, 5, 59)]),
    ("served-models", KSERVED, srv("backend: kserve, canary: 10%, replicas: 10"), [("KF362", M, 5, 46)]),
    ("served-models", KSERVED, srv("previous: 2, canary: 50%, replicas: 2"), [("KF362", M, 5, 42)]),
    ("served-models", KSERVED, srv("backend: kserve, previous: 1, canary: 50%, replicas: 2"), [("KF362", M, 5, 48)]),
    ("served-models", KSERVED, srv("backend: kserve, previous: 2"), [("KF362", M, 5, 38)]),
]


@pytest.mark.parametrize("rule, platform_text, served, expected", MODEL_CASES)
def test_served_model_rules(rule, platform_text, served, expected):
    specs = served if isinstance(served, dict) else {"vision/m.yaml": served}
    assert found(rule, model(platform_text, vision=team(), nlp=team("nlp"), served=specs)) == expected


# --- queueing ---------------------------------------------------------------------------------------------------------

QUEUED = SERVING.replace("{a100: 4, t4: 4}}}", "{a100: 4, t4: 4}}, queueing: {enabled: true, borrowing: 50%}}")
VISION = "specs/teams/vision.yaml"
ONE_A100 = srv("gpu: {type: a100, count: 1}")  # one server and one more in a rollout: vision's 2 dev A100s
TWO_A100 = exp(("cpu: 1", "gpu: {type: a100, count: 2}, cpu: 1"))


def borrows(percent, name="vision"):
    return team(name, x=("gpu: {a100: 2}", f"gpu: {{a100: 2}}, borrowing: {percent}"))


QUEUEING_CASES = [
    ("queueing", QUEUED, {"vision": borrows("25%")}, {"vision/x.yaml": TWO_A100}, {}, []),
    ("queueing", SERVING, {"vision": borrows("25%")}, {}, {}, [("KF348", VISION, 10, 58)]),  # queueing off
    ("queueing", QUEUED.replace("enabled: true", "enabled: false"), {"vision": borrows("0%")}, {}, {},
     [("KF348", VISION, 10, 58)]),  # turned off: the team's setting would do nothing
    ("queueing", QUEUED, {"vision": borrows("60%")}, {}, {}, [("KF348", VISION, 10, 58)]),
    ("queueing", QUEUED.replace(", borrowing: 50%", ""), {"vision": borrows("10%")}, {}, {}, [("KF348", VISION, 10, 58)]),
    ("queueing", QUEUED, {"vision": team()}, {"vision/x.yaml": TWO_A100}, {"vision/m.yaml": ONE_A100},
     [("KF349", X, 5, 16)]),  # the servers keep both A100s; borrowing gives 1
    ("queueing", QUEUED, {"vision": team()}, {"vision/x.yaml": exp(A100)}, {"vision/m.yaml": ONE_A100}, []),
    ("queueing", SERVING, {"vision": team()}, {"vision/x.yaml": TWO_A100}, {"vision/m.yaml": ONE_A100}, []),  # not queued
]


@pytest.mark.parametrize("rule, platform_text, teams, experiments, served, expected", QUEUEING_CASES)
def test_queueing_rules(rule, platform_text, teams, experiments, served, expected):
    assert found(rule, model(platform_text, **teams, experiments=experiments, served=served)) == expected


# --- distributed experiments: Kubeflow Trainer or the legacy Training Operator ----------------------------------------

TRAINER = PLATFORM + "training: {distributed: {api: trainer, runtimes: {pytorch: torch-distributed}}}\n"
TWO = exp(extra="workers: 2\n")

DISTRIBUTED_CASES = [
    ("distributed-training", TRAINER, {"vision/x.yaml": TWO}, []),
    ("distributed-training", PLATFORM, {"vision/x.yaml": exp()}, []),  # nothing distributed: no warning
    ("distributed-training", TRAINER.replace(", runtimes: {pytorch: torch-distributed}", ""), {"vision/x.yaml": TWO},
     [("KF350", X, 6, 10)]),
    ("distributed-training", TRAINER, {"vision/x.yaml": exp(extra="workers: 2\nframework: tensorflow\n")},
     [("KF350", X, 7, 12)]),
    ("distributed-training", PLATFORM, {"vision/x.yaml": TWO}, [("KF351", "specs/platform.yaml", 1, 1)]),
    ("distributed-training", PLATFORM + "training: {distributed: {api: training-operator}}\n", {"vision/x.yaml": TWO},
     [("KF351", "specs/platform.yaml", 13, 31)]),
    ("distributed-training", TRAINER, {"vision/x.yaml": TWO + "retries: 1\n"}, [("KF352", X, 7, 10)]),
]


@pytest.mark.parametrize("rule, platform_text, experiments, expected", DISTRIBUTED_CASES)
def test_distributed_training_rules(rule, platform_text, experiments, expected):
    assert found(rule, model(platform_text, vision=team(), experiments=experiments)) == expected


# --- a team whose spec did not load -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, kind, path, text, expected", [
    ("experiments", "experiments", "visoin/x.yaml", exp(("team: vision", "team: visoin")), []),
    ("experiments", "experiments", "visoin/x.yaml", exp(("team: vision", "team: visoin"), "image: quay.io/x/y:1\n"),
     [("KF307", "specs/experiments/visoin/x.yaml", 6, 8)]),  # what does not need the team is still checked
    ("served-models", "served", "visoin/m.yaml", srv(x=("team: vision", "team: visoin")), []),
    ("served-models", "served", "visoin/m.yaml",
     srv(head="image: quay.io/ml/serving:1\n", x=("team: vision", "team: visoin")),
     [("KF335", "specs/models/visoin/m.yaml", 1, 8)]),
    ("served-models", "served", "vision/m.yaml", srv(extra="callers: [visoin]\n"), []),
])
def test_a_team_whose_spec_did_not_load_gets_no_follow_on_findings(rule, kind, path, text, expected):
    assert found(rule, model(SERVING, vision=team(), **{kind: {path: text}}, unreadable={"visoin"})) == expected


# --- every rule, every code -------------------------------------------------------------------------------------------

# The codes each rule can report: what its module's source names, and what it reports through images.CODES and
# secrets.secret_looking. test_rule_sources_name_no_other_codes keeps this honest when a rule gains a code.
RULE_CODES = {
    "quantities": {"KF204"},
    "team-names": {"KF301", "KF302"},
    "unique-generated-names": {"KF314", "KF315"},
    "clean-paths": {"KF204"},
    "environments-exist": {"KF303"},
    "gpu-types-exist": {"KF304", "KF311"},
    "profiles-fit-quota": {"KF305", "KF308", "KF309"},
    "gpu-capacity": {"KF306"},
    "allowed-registries": {"KF204", "KF307", "KF313"},
    "storage-quota": {"KF310"},
    "experiments": {"KF204", "KF307", "KF313", *(f"KF32{i}" for i in range(10)), "KF343", "KF345", "KF347"},
    "served-models": {"KF204", "KF313", *(f"KF33{i}" for i in range(7)), "KF344", *(f"KF36{i}" for i in range(4))},
    "hub-sign-in": {"KF340", "KF341"},
    "network": {"KF342", "KF346"},
    "queueing": {"KF348", "KF349"},
    "distributed-training": {"KF350", "KF351", "KF352"},
}
MODULES = {"quantities": quantities_rule, "team-names": teams_rule, "unique-generated-names": names_rule,
           "clean-paths": paths_rule, "environments-exist": environments_rule, "gpu-types-exist": gpus_rule,
           "profiles-fit-quota": profiles_rule, "gpu-capacity": capacity_rule, "allowed-registries": images_rule,
           "storage-quota": storage_rule, "experiments": experiments_rule, "served-models": serving_rule,
           "hub-sign-in": hub_rule, "network": network_rule, "queueing": queueing_rule,
           "distributed-training": distributed_rule}


def _rows():
    """(rule, expected) of every table row above that is expected to pass."""
    tables = [(CASES, lambda r: (r[0], r[-1])), (HUB_CASES, lambda r: ("hub-sign-in", r[-1])),
              (PLATFORM_CASES, lambda r: (r[0], r[-1])), (EXPERIMENT_CASES, lambda r: (r[0], r[-1])),
              (MODEL_CASES, lambda r: (r[0], r[-1])), (QUEUEING_CASES, lambda r: (r[0], r[-1])),
              (DISTRIBUTED_CASES, lambda r: (r[0], r[-1]))]
    for table, pick in tables:
        for row in table:
            if not getattr(row, "marks", ()):
                yield pick(getattr(row, "values", row))


def literal_codes(module) -> set[str]:
    def named(m):
        return set(re.findall(r'"(KF\d{3})"', inspect.getsource(m)))

    src = inspect.getsource(module)
    codes = named(module)
    if "IMAGE_CODES[" in src:
        codes |= {images_rule.IMAGE_CODES["reference"], images_rule.IMAGE_CODES["latest"]}
    if "secret_looking(" in src:
        codes |= named(secrets)
    return codes


def test_the_tables_know_every_rule():
    assert set(RULE_CODES) == set(MODULES) == set(rules.RULES)


@pytest.mark.parametrize("rule", sorted(rules.RULES))
def test_rule_sources_name_no_other_codes(rule):
    assert literal_codes(MODULES[rule]) <= RULE_CODES[rule]


@pytest.mark.parametrize("rule", sorted(rules.RULES))
def test_every_code_of_a_rule_has_a_failing_row_and_the_rule_a_clean_one(rule):
    rows = [expected for name, expected in _rows() if name == rule]
    assert {code for expected in rows for code, *_ in expected} == RULE_CODES[rule]
    assert [] in rows


def full_model():
    """Every kind of spec and setting, each within what the rules allow."""
    platform_text = (SERVING.replace("https://dev,", "https://dev, domain: dev.example.com,")
                     + "pullSecrets: {registry.example.com/ml/: pull}\n"
                     + "network: {ingress: {className: nginx, namespace: ingress-nginx}, egress: [{name: dns, "
                       "ports: [53], namespace: kube-system}, {name: s3, ports: [443], cidr: 10.0.0.0/8, "
                       "except: [10.1.0.0/16]}]}\n")
    experiment = exp(A100, "sweep: {grid: {lr: [1, 2]}}\nimage: registry.example.com/ml/t:1\nworkdir: projects/x\n"
                           "env: {LOG_LEVEL: debug}\nshm: 512Mi\n")
    return model(platform_text, vision=team(x=("owners:", "members: [{group: v-ds}]\nowners:")), nlp=team("nlp"),
                 experiments={"vision/x.yaml": experiment},
                 served={"vision/m.yaml": srv("host: m.dev.example.com, replicas: 2", "callers: [nlp]\n")})


@pytest.mark.parametrize("rule", sorted(rules.RULES))
def test_every_rule_passes_a_model_with_every_kind_of_spec(rule):
    assert found(rule, full_model()) == []


@pytest.mark.parametrize("quota, codes", [
    ("gpu: {a10: 2}", ["KF304"]),  # a misspelt a100: the root cause alone
    ("gpu: {t4: 2}", ["KF305", "KF324", "KF334"]),  # a real type: a100 is missing, and every rule needing it says so
])
def test_a_misspelt_gpu_type_is_reported_as_itself_not_as_what_follows(quota, codes):
    m = model(SERVING, vision=team(x=("gpu: {a100: 2}", quota)), experiments={"vision/x.yaml": exp(A100)},
              served={"vision/m.yaml": srv("gpu: {type: a100, count: 1}")})
    assert sorted(d.code for d in rules.run(m)) == codes
