"""ReplicaSet and Deployment controllers against a MemoryStore, with a fake kubelet that
marks pods Running/Ready (or not) and finalizes deleted ones."""

from __future__ import annotations

import threading

import pytest

from testbed.controllers import ControllerManager, wait_for
from testbed.k8s import workloads as wl

from .helpers import node


def deployment(name="web", replicas=3, image="testbed/echo:v1", strategy=None):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"containers": [{"name": "web", "image": image}]}}}}
    if strategy:
        d["spec"]["strategy"] = strategy
    return d


class FakeKubelet:
    """Pods bound to a node become Running and (unless listed in ``unready``) Ready; deleted
    pods are removed for good; records the largest number of pods and the fewest ready ones."""

    def __init__(self, store):
        self.store = store
        self.unready: set[str] = set()
        self.stop = threading.Event()
        self.w = store.watch("Pod")
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        for ev in self.w:
            p = ev["object"]
            m = p["metadata"]
            if ev["type"] == "DELETED":
                continue
            if m.get("deletionTimestamp"):
                try:
                    self.store.delete("Pod", m["namespace"], m["name"], grace_seconds=0)
                except Exception:  # noqa: BLE001
                    pass
                continue
            st = p.get("status") or {}
            if p["spec"].get("nodeName") and st.get("phase") != "Running":
                ready = "False" if m["name"].rsplit("-", 2)[0] in self.unready else "True"
                p["status"] = {"phase": "Running", "podIP": "10.244.0.9",
                               "conditions": [{"type": "Ready", "status": ready}]}
                try:
                    self.store.update_status(p)
                except Exception:  # noqa: BLE001
                    pass

    def close(self):
        self.w.stop()


@pytest.fixture
def cluster(store):
    store.create(node("n1"))
    cm = ControllerManager(store, {"controllers": ["scheduler", "replicaset", "deployment"], "seed": 1}).start()
    assert cm.wait_synced(5)
    k = FakeKubelet(store)
    yield store, k
    k.close()
    cm.stop()


def pods_of(store, app="web"):
    return [p for p in store.list("Pod", "default")[0] if (p["metadata"].get("labels") or {}).get("app") == app]


def dep_done(store, name="web", replicas=None):
    def check(ds):
        for d in ds:
            if d["metadata"]["name"] == name and wl.rollout_status(d)[1] and \
                    (replicas is None or (d.get("status") or {}).get("availableReplicas", 0) == replicas):
                return d
        return None
    return wait_for(store, "Deployment", check, timeout=10)


def test_replicaset_creates_adopts_releases_and_deletes(cluster):
    store, _ = cluster
    orphan = store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "x"}},
                           "spec": {"containers": [{"name": "c", "image": "i"}]}})
    # informers of different kinds race (as upstream's do): let the orphan settle (scheduled,
    # running: two more Pod events through the controller's pod watch) before its owner appears
    wait_for(store, "Pod", lambda ps: [p for p in ps if p["metadata"]["name"] == "orphan"
                                       and (p.get("status") or {}).get("phase") == "Running"])
    rs = store.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "x"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"}},
                                "template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    wait_for(store, "ReplicaSet", lambda rss: [r for r in rss if r["status"].get("readyReplicas") == 3])
    pods = pods_of(store, "x")
    assert len(pods) == 3
    names = {p["metadata"]["name"] for p in pods}
    assert "orphan" in names  # adopted instead of creating a third
    for p in pods:
        (ref,) = p["metadata"]["ownerReferences"]
        assert ref["uid"] == rs["metadata"]["uid"] and ref["controller"] is True
        if p["metadata"]["name"] != "orphan":
            assert p["metadata"]["name"].startswith("x-") and len(p["metadata"]["name"]) == 7
    # release: relabel a pod; the RS lets it go and makes a new one
    victim = next(p for p in pods if p["metadata"]["name"] != "orphan")
    store.patch("Pod", "default", victim["metadata"]["name"], {"metadata": {"labels": {"app": "other"}}})
    wait_for(store, "Pod", lambda ps: len([p for p in ps if p["metadata"]["labels"].get("app") == "x"
                                           and not p["metadata"].get("deletionTimestamp")]) == 3)
    released = store.get("Pod", "default", victim["metadata"]["name"])
    assert not released["metadata"].get("ownerReferences")
    # scale down, then delete the ReplicaSet: its pods go
    store.patch("ReplicaSet", "default", "x", {"spec": {"replicas": 1}})
    wait_for(store, "Pod", lambda ps: len([p for p in ps if p["metadata"]["labels"].get("app") == "x"]) == 1)
    store.delete("ReplicaSet", "default", "x")
    wait_for(store, "Pod", lambda ps: not [p for p in ps if p["metadata"]["labels"].get("app") == "x"])


def test_deployment_rolls_out_within_bounds_and_records_revisions(cluster):
    store, kubelet = cluster
    store.create(deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    d = dep_done(store, replicas=3)
    assert d["metadata"]["annotations"][wl.REVISION] == "1"
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True" and conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    # watch the pods during the update: never more than 4 active, never fewer than 3 ready
    seen = {"max_active": 0, "min_ready": 3}
    w = store.watch("Pod")
    cache = {p["metadata"]["name"]: p for p in pods_of(store)}

    def observe():
        for ev in w:
            p = ev["object"]
            if ev["type"] == "DELETED":
                cache.pop(p["metadata"]["name"], None)
            else:
                cache[p["metadata"]["name"]] = p
            active = [q for q in cache.values() if wl.is_active(q)]
            seen["max_active"] = max(seen["max_active"], len(active))
            seen["min_ready"] = min(seen["min_ready"], sum(1 for q in active if wl.is_ready(q)))
    t = threading.Thread(target=observe, daemon=True)
    t.start()
    cur = store.get("Deployment", "default", "web")
    cur["spec"]["template"]["spec"]["containers"][0]["image"] = "testbed/echo:v2"
    store.update(cur)
    d = wait_for(store, "Deployment", lambda ds: [x for x in ds if x["metadata"].get("annotations", {}).get(
        wl.REVISION) == "2" and wl.rollout_status(x)[1] and x["status"].get("updatedReplicas") == 3], timeout=10)[0]
    wait_for(store, "Pod", lambda ps: len(ps) == 3 and all(
        p["spec"]["containers"][0]["image"] == "testbed/echo:v2" for p in ps))
    w.stop()
    t.join(2)
    assert seen["max_active"] <= 4 and seen["min_ready"] >= 3, seen
    rss = {r["metadata"]["name"]: r for r in store.list("ReplicaSet", "default")[0]}
    assert len(rss) == 2
    revs = sorted((wl.revision_of(r), r["spec"]["replicas"]) for r in rss.values())
    assert revs == [(1, 0), (2, 3)]
    for r in rss.values():
        h = r["metadata"]["labels"][wl.HASH_LABEL]
        assert r["metadata"]["name"] == f"web-{h}" and r["spec"]["selector"]["matchLabels"][wl.HASH_LABEL] == h


def test_rollout_is_gated_on_readiness(cluster):
    store, kubelet = cluster
    store.create(deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    d = dep_done(store, replicas=3)
    old_rs = d["metadata"]["annotations"]
    # the new version never becomes ready: exactly one surge pod, all three old ones stay
    kubelet.unready.add("web")
    cur = store.get("Deployment", "default", "web")
    cur["spec"]["template"]["spec"]["containers"][0]["image"] = "testbed/echo:broken"
    store.update(cur)
    wait_for(store, "Pod", lambda ps: len(ps) == 4 and sum(1 for p in ps if p["spec"]["containers"][0]["image"]
                                                          == "testbed/echo:broken") == 1)
    d = wait_for(store, "Deployment", lambda ds: [x for x in ds if x["status"].get("updatedReplicas") == 1])[0]
    assert wl.rollout_status(d)[0].endswith("1 out of 3 new replicas have been updated...")
    assert d["status"]["availableReplicas"] == 3 and old_rs


def test_recreate_scales_old_to_zero_before_the_new_one(cluster):
    store, _ = cluster
    store.create(deployment(strategy={"type": "Recreate"}))
    dep_done(store, replicas=3)
    seen = []
    all_v2_seen = threading.Event()
    w = store.watch("Pod")

    def observe():
        for ev in w:
            p = ev["object"]
            seen.append((ev["type"], p["spec"]["containers"][0]["image"]))
            if sum(1 for typ, img in seen if typ == "ADDED" and img.endswith("v2")) == 3:
                all_v2_seen.set()
    t = threading.Thread(target=observe, daemon=True)
    t.start()
    cur = store.get("Deployment", "default", "web")
    cur["spec"]["template"]["spec"]["containers"][0]["image"] = "testbed/echo:v2"
    store.update(cur)
    wait_for(store, "Deployment", lambda ds: [x for x in ds if x["status"].get("updatedReplicas") == 3
                                              and x["status"].get("availableReplicas") == 3
                                              and x["metadata"]["annotations"][wl.REVISION] == "2"], timeout=10)
    assert all_v2_seen.wait(10)  # the observer may lag behind the store: wait for it, then stop
    w.stop()
    t.join(2)
    first_v2 = next(i for i, (typ, img) in enumerate(seen) if typ == "ADDED" and img.endswith("v2"))
    v1_deleted = [i for i, (typ, img) in enumerate(seen) if typ == "DELETED" and img.endswith("v1")]
    assert len(v1_deleted) == 3 and max(v1_deleted) < first_v2


def test_scale_and_cascade_delete(cluster):
    store, _ = cluster
    store.create(deployment(replicas=2))
    dep_done(store, replicas=2)
    store.patch("Deployment", "default", "web", {"spec": {"replicas": 0}})
    wait_for(store, "Pod", lambda ps: not pods_of(store))
    store.patch("Deployment", "default", "web", {"spec": {"replicas": 4}})
    dep_done(store, replicas=4)
    assert len(store.list("ReplicaSet", "default")[0]) == 1
    store.delete("Deployment", "default", "web")
    wait_for(store, "ReplicaSet", lambda rss: not rss)
    wait_for(store, "Pod", lambda ps: not pods_of(store))
