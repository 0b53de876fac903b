"""KF303: every environment a team names in its quota is defined in the platform file."""
from __future__ import annotations

from kflowgen.diagnostics import error
from kflowgen.specs.hints import close

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF303": "environment not defined in the platform file",
}


def check(model):
    envs = list(model.platform.environments)
    for t in model.teams:
        for env in t.quota:
            if env not in envs:
                yield error(t.source.path, t.source.at(f"/quota/{env}", key=True), "KF303",
                            f"environment '{env}' is not defined in {model.platform.source.path}",
                            close(env, envs, "environments"))
