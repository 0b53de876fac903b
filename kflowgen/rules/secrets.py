"""KF343: a literal environment variable value in a spec that looks like a credential (a known token format, or a
long random-looking value in a variable named like a secret). Specs are read by everyone with the repository:
credentials belong in a Kubernetes Secret of the team's namespace, named under `secrets:`. A warning, since a
look is not proof."""
from __future__ import annotations

import math
import re

from kflowgen.diagnostics import warning

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF343": "a literal value that looks like a credential (use a Secret)",
}

# Prefixes of well-known credential formats (GitHub, GitLab, Slack, AWS, Hugging Face, OpenAI/Anthropic-style keys,
# W&B keys are 40 hex: caught by the entropy test), and JWTs.
KNOWN = re.compile(r"^(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}|xox[abprs]-[\w-]{10,}|"
                   r"A(KIA|SIA)[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,}|sk-[\w-]{20,}|eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+)$")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)


def _random_looking(value: str) -> bool:
    """At least 20 characters of letters, digits and a few symbols, with the spread of a random string."""
    if len(value) < 20 or not re.fullmatch(r"[A-Za-z0-9+/=_\-.]+", value):
        return False
    counts = {c: value.count(c) for c in set(value)}
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5


def secret_looking(spec, at: str, env: dict[str, str]):
    for name, value in sorted(env.items()):
        value = str(value)
        if KNOWN.match(value) or (SECRET_NAME.search(name) and (_random_looking(value) or len(value) >= 8)):
            yield warning(spec.path, spec.at(f"{at}/{name}"), "KF343", f"{name} holds what looks like a credential, "
                          "written in Git where everyone with the repository reads it",
                          f"put it in a Secret of your team's namespace (kubectl create secret generic <name> "
                          f"--from-literal=<key>=...) and name it under secrets: {name}: {{secret: <name>, key: "
                          "<key>}; then revoke this one")
