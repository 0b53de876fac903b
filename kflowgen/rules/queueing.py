"""KF348, KF349: where Kueue queues training, a team borrows only what the platform allows, and every trial fits the
team's queue: the quota less what the team's model servers keep (they are not queued), plus what it may borrow."""
from __future__ import annotations

from kflowgen.diagnostics import error
from kflowgen.specs import quantity
from kflowgen.targets.queueing import need, show, sizing, what

# The codes this module reports, with their titles (kflowgen.codes assembles every module's table)
CODES = {
    "KF348": "team borrowing where the platform queues nothing, allows no borrowing, or allows less",
    "KF349": "one trial does not fit the team's queue: its model servers keep the rest of the quota",
}


def check(model, experiments=None, whole: bool = True):
    """Findings about these experiments (all by default), and with whole about the teams' borrowing (rules.BY_TEAM)."""
    p = model.platform
    if whole:
        yield from _borrowing(model)
    if not any(p.queueing_in(env) for env in p.environments):
        return  # nothing else to check, and no experiment object made
    teams = {t.name: t for t in model.teams}
    for exp in model.experiments if experiments is None else experiments:
        team = teams.get(exp.team)
        if exp.archived or team is None or (exp.gpu_type and exp.gpu_type not in p.gpu_types) \
                or not quantity.valid(exp.cpu, millicores=True) or not quantity.valid(exp.memory):
            continue  # archived: nothing runs; otherwise KF320, KF323, KF204 say why
        for i, env in enumerate(exp.environments):
            if env in team.quota and p.queueing_in(env):
                yield from _fits(model, exp, team, env, i)


def _borrowing(model):
    p = model.platform
    for t in model.teams:
        for env, q in t.quota.items():
            if q.borrowing is None or env not in p.environments:
                continue  # KF303 for an environment the platform does not define
            at = t.source.at(f"/quota/{env}/borrowing")
            queueing = p.queueing_in(env)
            if queueing is None:
                yield error(t.source.path, at, "KF348", f"team {t.name} asks to borrow in {env}, where Kueue queues "
                            "nothing", f"remove quota.{env}.borrowing, or ask the platform team to turn on "
                            f"environments.{env}.queueing in {p.source.path}")
            elif q.borrowing > queueing.borrowing:
                allows = f"allows {queueing.borrowing}%" if queueing.borrowing else "allows no borrowing"
                yield error(t.source.path, at, "KF348", f"team {t.name} asks to borrow {q.borrowing}% in {env}, where "
                            f"the platform {allows}", f"remove quota.{env}.borrowing (the team then borrows what the "
                            f"platform allows), or lower it to at most {queueing.borrowing}%" if queueing.borrowing
                            else f"remove quota.{env}.borrowing, or ask the platform team to allow borrowing in "
                            f"environments.{env}.queueing")


def _fits(model, exp, team, env: str, i: int):
    """KF349 when one trial fits the team's quota (else KF324) but not its queue: Kueue would hold it forever."""
    served = [model.served[j] for j in model.members(team.name, env)[0]]
    s = sizing(model.platform, team, env, served)
    for res, n in need(exp).items():
        room = s.nominal[res] + s.borrowing[res]
        if n <= room or n > s.quota[res]:
            continue
        borrow = f", plus {show(res, s.borrowing[res])} it may borrow" if s.borrowing[res] else ""
        yield error(exp.source.path, exp.source.at(f"/environments/{i}"), "KF349",
                    f"{env}: one trial needs {show(res, n)} {what(res)} but team {team.name}'s queue admits at most "
                    f"{show(res, room)} (its quota {show(res, s.quota[res])}, less {show(res, s.reserved[res])} kept "
                    f"for its model servers{borrow}): Kueue would hold the trial forever",
                    f"lower resources, serve fewer replicas in {env}, or raise quota.{env} in {team.source.path}")
        return
