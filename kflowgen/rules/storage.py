"""KF310: a team's storage quota holds at least its NAS volume."""
from __future__ import annotations

from kflowgen.specs import quantity
from kflowgen.diagnostics import error

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF310": "storage quota smaller than the team NAS",
}


def check(model):
    for t in model.teams:
        for env, q in t.quota.items():
            if env in model.platform.environments and quantity.parse(q.storage) < quantity.parse(t.storage_size):
                yield error(t.source.path, t.source.at(f"/quota/{env}/storage"), "KF310",
                            f"storage quota {q.storage} in {env} is smaller than the team NAS ({t.storage_size})",
                            f"raise quota.{env}.storage to at least {t.storage_size}")
