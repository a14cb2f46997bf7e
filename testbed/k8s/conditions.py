"""Status conditions (``status.conditions``) set as upstream's ``podutil.UpdatePodCondition``
does: a condition's ``lastTransitionTime`` moves only when its status changes."""

from __future__ import annotations

from typing import Mapping


def with_condition(status: Mapping | None, cond: dict, now: str) -> dict:
    """*status* with condition *cond* set (lastTransitionTime kept if the status is unchanged)."""
    status = dict(status or {})
    conds = [dict(c) for c in status.get("conditions") or []]
    for c in conds:
        if c.get("type") == cond["type"]:
            same = c.get("status") == cond["status"]
            c.update(cond)
            c["lastTransitionTime"] = c.get("lastTransitionTime") if same and c.get("lastTransitionTime") else now
            break
    else:
        conds.append(dict(cond, lastProbeTime=None, lastTransitionTime=now))
    status["conditions"] = conds
    return status


def scheduled(status: Mapping | None, now: str) -> dict:
    """*status* with ``PodScheduled=True`` (no reason or message left from an Unschedulable try),
    as a binding sets it."""
    status = with_condition(status, {"type": "PodScheduled", "status": "True"}, now)
    for c in status["conditions"]:
        if c["type"] == "PodScheduled":
            c.pop("reason", None)
            c.pop("message", None)
    return status
