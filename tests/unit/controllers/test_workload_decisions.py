"""The ReplicaSet/Deployment decisions step by step (pure functions of testbed.k8s.workloads)."""

from __future__ import annotations

import pytest

from testbed.k8s import workloads as wl


def test_fenceposts_round_surge_up_and_unavailable_down():
    assert wl.resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert wl.resolve_fenceposts("25%", "25%", 3) == (1, 0)
    assert wl.resolve_fenceposts(0, 0, 3) == (0, 1)          # both zero: unavailable 1
    assert wl.resolve_fenceposts("0%", "0%", 3) == (0, 1)
    assert wl.resolve_fenceposts(2, "50%", 5) == (2, 2)
    assert wl.resolve_fenceposts("100%", 0, 4) == (4, 0)


def test_template_hash_ignores_the_hash_label_and_changes_with_the_template():
    t1 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "testbed/echo:v1"}]}}
    t2 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "testbed/echo:v2"}]}}
    h1 = wl.template_hash(t1)
    assert h1 == wl.template_hash({**t1, "metadata": {"labels": {"app": "web", wl.HASH_LABEL: "x"}}})
    assert h1 != wl.template_hash(t2) and h1 != wl.template_hash(t1, 1)
    assert set(h1) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert wl.templates_equal(t1, {**t1, "metadata": {"labels": {"app": "web", wl.HASH_LABEL: h1}}})


class Sim:
    """RS spec replicas and their available pods; pods of a scaled-up RS become available
    one tick later (readiness gating); scaled-down pods stop counting at once."""

    def __init__(self, desired, surge, unavailable, old_replicas):
        self.desired, self.surge, self.unavailable = desired, surge, unavailable
        self.spec = {"old": old_replicas, "new": 0}
        self.avail = {"old": old_replicas, "new": 0}
        self.created = {"old": "2024-01-01T00:00:00Z", "new": "2024-01-02T00:00:00Z"}

    def views(self):
        return (wl.RSView("new", self.spec["new"], self.avail["new"], self.created["new"]),
                [wl.RSView("old", self.spec["old"], self.avail["old"], self.created["old"])])

    def step(self):
        new, olds = self.views()
        changes = wl.rolling_step(self.desired, self.surge, self.unavailable, new, olds)
        for name, n in changes.items():
            self.spec[name] = n
            self.avail[name] = min(self.avail[name], n)
        return changes

    def tick(self):  # the kubelet made the pods ready
        for k in self.spec:
            self.avail[k] = self.spec[k]

    def check(self):
        total = self.spec["new"] + self.spec["old"]
        available = self.avail["new"] + self.avail["old"]
        assert total <= self.desired + self.surge, (self.spec, self.avail)
        assert available >= self.desired - self.unavailable, (self.spec, self.avail)


@pytest.mark.parametrize("desired,surge,unavail", [(3, 1, 0), (3, 0, 1), (10, 3, 2), (4, 2, 2), (5, 1, 1),
                                                    (1, 1, 0), (10, "25%", "25%"), (7, "50%", "0%")])
def test_rolling_update_respects_surge_and_unavailability_at_every_step(desired, surge, unavail):
    s, u = wl.resolve_fenceposts(surge, unavail, desired)
    sim = Sim(desired, s, u, desired)
    sim.check()
    steps = 0
    while (sim.spec["new"], sim.avail["new"], sim.spec["old"]) != (desired, desired, 0):
        changes = sim.step()
        sim.check()  # right after the controller acted
        if not changes:
            sim.tick()  # nothing to do until pods become ready
            sim.check()
        steps += 1
        assert steps < 100, "the rollout does not converge"
    assert sim.step() == {}


def test_rolling_update_3_surge_1_unavailable_0_step_by_step():
    sim = Sim(3, 1, 0, 3)
    assert sim.step() == {"new": 1}     # surge: 4 pods
    assert sim.step() == {}             # the new pod is not available: nothing may go
    sim.tick()
    assert sim.step() == {"old": 2}     # it is: one old pod goes
    assert sim.step() == {"new": 2}
    assert sim.step() == {}
    sim.tick()
    assert sim.step() == {"old": 1}
    assert sim.step() == {"new": 3}
    sim.tick()
    assert sim.step() == {"old": 0}
    assert sim.step() == {}


def test_unhealthy_old_pods_are_scaled_down_first():
    # 3 desired, old RS has 3 pods of which 1 is not available; unavailable budget 1
    changes = wl.rolling_step(3, 0, 1, wl.RSView("new", 0, 0, "b"), [wl.RSView("old", 3, 2, "a")])
    assert changes == {"old": 2}  # the unhealthy pod; the two available ones must stay


def test_scaling_the_new_replicaset_down_and_a_plain_scale():
    assert wl.rolling_step(2, 1, 0, wl.RSView("new", 3, 3), []) == {"new": 2}
    assert wl.rolling_step(5, 1, 1, wl.RSView("new", 3, 3), []) == {"new": 5}
    assert wl.rolling_step(0, 0, 0, wl.RSView("new", 3, 3), []) == {"new": 0}


def test_recreate_steps():
    old = wl.RSView("old", 3, 3, pods=3)
    assert wl.recreate_step(3, None, [old]) == ({"old": 0}, False)
    old = wl.RSView("old", 0, 0, pods=2)  # terminating pods still exist: wait (the gap)
    assert wl.recreate_step(3, None, [old]) == ({}, False)
    old = wl.RSView("old", 0, 0, pods=0)
    assert wl.recreate_step(3, None, [old]) == ({}, True)
    assert wl.recreate_step(3, wl.RSView("new", 0, 0), [old]) == ({"new": 3}, False)
    assert wl.recreate_step(3, wl.RSView("new", 3, 3), [old]) == ({}, False)


def pod(name, node="n1", phase="Running", ready=True, restarts=0, created="2024-01-01T00:00:00Z"):
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"restartCount": restarts}]}}


def test_pods_to_delete_order():
    pods = [pod("ready-old"), pod("ready-new", created="2024-01-02T00:00:00Z"), pod("unready", ready=False),
            pod("pending", phase="Pending", ready=False), pod("unscheduled", node=None, phase="Pending", ready=False),
            pod("crashy", restarts=5)]
    names = [p["metadata"]["name"] for p in wl.pods_to_delete(pods, 6)]
    assert names == ["unscheduled", "pending", "unready", "crashy", "ready-new", "ready-old"]
    assert [p["metadata"]["name"] for p in wl.pods_to_delete(pods, 2)] == ["unscheduled", "pending"]


def test_rollout_status_messages():
    d = {"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
         "status": {"observedGeneration": 1}}
    assert wl.rollout_status(d) == ("Waiting for deployment spec update to be observed...", False)
    d["status"] = {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 4, "availableReplicas": 3}
    assert wl.rollout_status(d)[0] == ('Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas '
                                       'have been updated...')
    d["status"].update(updatedReplicas=3)
    assert wl.rollout_status(d)[0] == ('Waiting for deployment "web" rollout to finish: 1 old replicas are '
                                       'pending termination...')
    d["status"].update(replicas=3, availableReplicas=2)
    assert wl.rollout_status(d)[0] == ('Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas '
                                       'are available...')
    d["status"].update(availableReplicas=3)
    assert wl.rollout_status(d) == ('deployment "web" successfully rolled out', True)
