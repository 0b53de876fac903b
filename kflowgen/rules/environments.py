"""KF303: every environment a team names in its quota is defined in the platform file."""
from __future__ import annotations

import difflib

from kflowgen.diagnostics import error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF303": "environment not defined in the platform file",
}


def check(model):
    envs = list(model.platform.environments)
    for t in model.teams:
        for env in t.quota:
            if env not in envs:
                close = difflib.get_close_matches(env, envs, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"environments: {', '.join(envs)}"
                yield error(t.source.path, t.source.at(f"/quota/{env}", key=True), "KF303",
                            f"environment '{env}' is not defined in {model.platform.source.path}", hint)
