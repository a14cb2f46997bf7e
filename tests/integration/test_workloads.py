"""Workloads end to end (needs root): kubelet lifecycle and probes, ReplicaSets and Deployments
behind a Service with kube-proxy in iptables mode; traffic from a pod through the ClusterIP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from testbed.kubectl import workloads as ops
from testbed import netns, state
from testbed.kubelet.plan import log_path
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.k8s import workloads as wl
from testbed.scenario import parse

from .netutil import uniq

pytestmark = pytest.mark.root

CLUSTER = uniq("wl")
BACKOFF = {"testbed.io/restart-backoff-seconds": "0.3"}


def deployment(image="testbed/echo:v1"):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}, "annotations": BACKOFF},
                                  "spec": {"terminationGracePeriodSeconds": 10, "containers": [{
                                      "name": "web", "image": image,
                                      "ports": [{"name": "http", "containerPort": 8080}],
                                      "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                                                         "periodSeconds": 1, "failureThreshold": 1}}]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
CLIENT = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
          "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "testbed/echo:v1"}]}}


@pytest.fixture(scope="module")
def wc():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": CLUSTER},
           "spec": {"nodes": 2, "proxyMode": "iptables"}, "manifests": [SERVICE, CLIENT, deployment()]}
    c = Cluster.up(parse(doc))
    try:
        with c.api() as api:
            rolled_out(api)
            yield c, api
    finally:
        c.down()


# --- helpers ------------------------------------------------------------------------------


def rolled_out(api, revision: str | None = None, timeout: float = 30.0) -> dict:
    def check(ds):
        for d in ds:
            if d["metadata"]["name"] == "web" and wl.rollout_status(d)[1] and \
                    d["status"].get("availableReplicas") == d["spec"]["replicas"] and \
                    (revision is None or d["metadata"]["annotations"].get(wl.REVISION) == revision):
                return d
        return None
    return wait_for(api, "Deployment", check, timeout=timeout)


def web_pods(api, active_only: bool = True) -> list[dict]:
    items, _ = api.list("Pod", "default", label_selector="app=web")
    return [p for p in items if not active_only or wl.is_active(p)]


def endpoints(api) -> dict[str, dict]:
    items, _ = api.list("EndpointSlice", "default", label_selector="kubernetes.io/service-name=web")
    return {e["addresses"][0]: e["conditions"] for s in items for e in s.get("endpoints") or []}


def wait_endpoints(api, pred, timeout: float = 15.0):
    return wait_for(api, "EndpointSlice", lambda _: pred(endpoints(api)), namespace="default", timeout=timeout)


def get(ip: str, path: str, port: int = 80, timeout: float = 2.0) -> str:
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"bad answer {head[:40]!r}")
    return body.decode()


class Traffic:
    """Steady requests from the client pod to the Service's ClusterIP: one connection per
    request, no retries; every failure is recorded."""

    def __init__(self, c: Cluster, ip: str):
        self.ns = c.netns_of("pod/client")
        self.ip = ip
        self.stop = threading.Event()
        self.ok: list[str] = []
        self.failed: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=lambda: netns.run_in(self.ns, self._run), daemon=True)

    def wait_ok(self, n: int, timeout: float = 10.0) -> None:
        """Block until *n* more requests have succeeded."""
        with self.cond:
            goal = len(self.ok) + n
            assert self.cond.wait_for(lambda: len(self.ok) >= goal, timeout), (len(self.ok), self.failed[:3])

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                v = get(self.ip, "/version")
                with self.cond:
                    self.ok.append(v)
                    self.cond.notify_all()
            except OSError as exc:
                self.failed.append(f"{time.monotonic():.3f} {exc}")
            self.stop.wait(0.004)  # pacing (about 200 requests/s), not waiting for a state

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def cluster_ip(api) -> str:
    return api.get("Service", "default", "web")["spec"]["clusterIP"]


def versions_through_service(c, api, n: int = 12) -> set[str]:
    ip = cluster_ip(api)
    return netns.run_in(c.netns_of("pod/client"), lambda: {get(ip, "/version") for _ in range(n)})


def proxies_synced(c, api, timeout: float = 15.0) -> None:
    """Wait until every node's kube-proxy has applied the Service's current EndpointSlices in a
    successful sync (its metrics file names the resourceVersions it applied)."""
    items, _ = api.list("EndpointSlice", "default", label_selector="kubernetes.io/service-name=web")
    rv = max(int(s["metadata"]["resourceVersion"]) for s in items)
    paths = [os.path.join(state.directory(c.name), f"proxy-{n.name}.json") for n in c.plan.nodes]

    def synced() -> bool:
        for path in paths:
            try:
                with open(path) as f:
                    m = json.load(f)
            except (OSError, ValueError):
                return False
            if int(m["applied_resource_versions"].get("EndpointSlice", 0)) < rv or \
                    not (m.get("last_sync") or {}).get("ok"):
                return False
        return True
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not synced():  # the proxies publish progress only through this file: poll it briefly
        assert time.monotonic() < deadline, f"kube-proxies did not apply EndpointSlice rv {rv} in {timeout}s"
        tick.wait(0.02)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True)


# --- tests ----------------------------------------------------------------------------------


def test_deployment_behind_service(wc):
    c, api = wc
    pods = web_pods(api)
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["name"].startswith("web-") and p["status"]["phase"] == "Running"
        conds = {x["type"]: x["status"] for x in p["status"]["conditions"]}
        assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                         "ContainersReady": "True", "PodScheduled": "True"}
        (cs,) = p["status"]["containerStatuses"]
        assert cs["ready"] and cs["started"] and "running" in cs["state"] and cs["restartCount"] == 0
    ips = {p["status"]["podIP"] for p in pods}
    wait_endpoints(api, lambda eps: {ip for ip, cond in eps.items() if cond["ready"]} == ips)
    proxies_synced(c, api)
    assert versions_through_service(c, api) == {"v1"}
    out = cli("get", "deploy", "-c", CLUSTER)
    assert out.stdout.split("\n")[1].split()[:4] == ["web", "3/3", "3", "3"], out.stdout


def test_readiness_failure_leaves_the_endpoints_and_returns(wc):
    c, api = wc
    pod = web_pods(api)[0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    res = cli("readiness", f"pod/{name}", "--fail", "-c", CLUSTER)
    assert res.returncode == 0, res.stderr
    wait_endpoints(api, lambda eps: eps.get(ip) == {"ready": False, "serving": False, "terminating": False})
    p = api.get("Pod", "default", name)
    assert {x["type"]: x["status"] for x in p["status"]["conditions"]}["Ready"] == "False"
    assert p["status"]["phase"] == "Running" and p["status"]["containerStatuses"][0]["ready"] is False
    ops.set_readiness(api, f"pod/{name}", True)
    wait_endpoints(api, lambda eps: eps.get(ip, {}).get("ready") is True)
    rolled_out(api)


def test_killed_container_restarts_and_deleted_pod_is_replaced(wc):
    c, api = wc
    pod = web_pods(api)[1]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    res = cli("kill", f"pod/{name}", "-c", CLUSTER)
    assert res.returncode == 0 and res.stdout.strip() == f"pod/{name} killed", res
    p = wait_for(api, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == name
                                         and x["status"]["containerStatuses"][0]["restartCount"] == 1
                                         and x["status"]["containerStatuses"][0]["ready"]], timeout=15)[0]
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error"
    wait_endpoints(api, lambda eps: eps.get(ip, {}).get("ready") is True)
    # a deleted pod is replaced by the ReplicaSet
    victim = web_pods(api)[2]["metadata"]["name"]
    assert cli("delete", "pod", victim, "-c", CLUSTER).returncode == 0
    got = wait_for(api, "Pod", lambda ps: (lambda act: act if len(act) == 3 and victim not in
                                           {x["metadata"]["name"] for x in act} else None)(
        [x for x in ps if x["metadata"].get("labels", {}).get("app") == "web" and wl.is_active(x)]), timeout=15)
    assert len(got) == 3
    rolled_out(api)
    wait_for(api, "Pod", lambda ps: victim not in {x["metadata"]["name"] for x in ps}, timeout=15)


def test_rolling_update_under_traffic_has_no_failed_request(wc):
    c, api = wc
    rolled_out(api)
    wait_endpoints(api, lambda eps: len(eps) == 3 and all(x["ready"] for x in eps.values()))
    proxies_synced(c, api)
    with Traffic(c, cluster_ip(api)) as t:
        t.wait_ok(50)  # traffic flows before the update
        res = cli("set", "image", "deploy/web", "web=testbed/echo:v2", "-c", CLUSTER)
        assert res.returncode == 0, res.stderr
        res = cli("rollout", "status", "deploy/web", "--timeout", "60", "-c", CLUSTER)
        assert res.returncode == 0 and res.stdout.strip().endswith('deployment "web" successfully rolled out'), res
        # every old pod has gone through preStop and is removed
        wait_for(api, "Pod", lambda ps: (lambda web: len(web) == 3 and all(
            x["spec"]["containers"][0]["image"].endswith(":v2") for x in web))(
            [x for x in ps if x["metadata"].get("labels", {}).get("app") == "web"]), timeout=30)
        t.wait_ok(50)
    assert t.failed == [], f"{len(t.failed)} failed requests of {len(t.ok) + len(t.failed)}: {t.failed[:5]}"
    assert {"v1", "v2"} <= set(t.ok) and set(t.ok[-20:]) == {"v2"}
    d = rolled_out(api, "2")
    assert d["status"]["updatedReplicas"] == 3


def test_rollout_undo_returns_to_the_previous_version(wc):
    c, api = wc
    rolled_out(api, "2")
    res = cli("rollout", "undo", "deploy", "web", "-c", CLUSTER)
    assert res.returncode == 0 and res.stdout.strip() == "deployment.apps/web rolled back", res
    rolled_out(api, "3")
    wait_for(api, "Pod", lambda ps: (lambda web: len(web) == 3 and all(
        x["spec"]["containers"][0]["image"].endswith(":v1") for x in web))(
        [x for x in ps if x["metadata"].get("labels", {}).get("app") == "web"]), timeout=30)
    wait_endpoints(api, lambda eps: len(eps) == 3 and all(x["ready"] for x in eps.values()))
    proxies_synced(c, api)
    assert versions_through_service(c, api) == {"v1"}
    hist = cli("rollout", "history", "deploy/web", "-c", CLUSTER).stdout.splitlines()
    assert hist[:2] == ["deployment.apps/web", "REVISION  CHANGE-CAUSE"]
    assert [line.split()[0] for line in hist[2:]] == ["2", "3"]  # revision 1 became 3
    (rs1,) = [r for r in ops.replicasets_of(api, api.get("Deployment", "default", "web"))
              if wl.revision_of(r) == 3]
    assert rs1["metadata"]["annotations"][wl.REVISION_HISTORY] == "1"


def test_scale_to_zero_and_back(wc):
    c, api = wc
    assert cli("scale", "deploy", "web", "--replicas", "0", "-c", CLUSTER).returncode == 0
    wait_for(api, "Pod", lambda ps: not [x for x in ps if x["metadata"].get("labels", {}).get("app") == "web"],
             timeout=20)
    wait_endpoints(api, lambda eps: eps == {})
    d = rolled_out(api)
    assert d["spec"]["replicas"] == 0 and not d["status"].get("replicas")
    assert cli("scale", "deploy/web", "--replicas", "3", "-c", CLUSTER).returncode == 0
    rolled_out(api)
    ips = {p["status"]["podIP"] for p in web_pods(api)}
    wait_endpoints(api, lambda eps: {ip for ip, x in eps.items() if x["ready"]} == ips and len(ips) == 3)


def test_recreate_leaves_a_gap(wc):
    c, api = wc
    rolled_out(api)
    history: list[tuple[str, set[str]]] = []
    w = api.watch("Pod", "default", api.list("Pod", "default")[1], label_selector="app=web")
    live: dict[str, str] = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in web_pods(api, False)}

    def follow():
        for ev in w:
            p = ev["object"]
            if ev["type"] == "DELETED":
                live.pop(p["metadata"]["name"], None)
            else:
                live[p["metadata"]["name"]] = p["spec"]["containers"][0]["image"]
            history.append((ev["type"], set(live.values())))
    t = threading.Thread(target=follow, daemon=True)
    t.start()
    dep = api.get("Deployment", "default", "web")
    dep["spec"]["strategy"] = {"type": "Recreate"}
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "testbed/echo:v3"
    api.update(dep)
    rolled_out(api, "4")
    wait_for(api, "Pod", lambda ps: len([x for x in ps if x["spec"]["containers"][0]["image"].endswith(":v3")
                                         and wl.is_ready(x)]) == 3, timeout=20)
    w.stop()
    t.join(5)
    # no moment with old and new pods together; a moment with no pod at all: the gap
    assert all(not ({"testbed/echo:v1", "testbed/echo:v3"} <= images) for _, images in history), history
    assert any(images == set() for _, images in history), history
    wait_endpoints(api, lambda eps: len(eps) == 3 and all(x["ready"] for x in eps.values()))
    proxies_synced(c, api)
    assert versions_through_service(c, api) == {"v3"}


def test_pod_lifecycle_processes_init_hooks_and_probes(wc):
    c, api = wc

    def pod(name, containers, policy="Always", init=None, grace=None, **ann):
        spec = {"restartPolicy": policy, "containers": containers}
        if init:
            spec["initContainers"] = init
        if grace is not None:
            spec["terminationGracePeriodSeconds"] = grace
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": {**BACKOFF, **ann}},
                "spec": spec}

    sh = lambda name, script, **kw: {"name": name, "image": "busybox", "command": ["sh", "-c", script], **kw}  # noqa
    api.create(pod("job-ok", [sh("main", "echo hello $GREETING from $HOSTNAME; ip -4 -o addr show eth0 | awk '{print $4}'",
                                 env=[{"name": "GREETING", "value": "hi"}])], "Never",
                   init=[sh("first", "echo init done")]))
    api.create(pod("job-fail", [sh("main", "exit 3")], "Never"))
    api.create(pod("crash", [sh("main", "echo crashing; exit 1")], "Always"))
    api.create(pod("live", [{"name": "web", "image": "testbed/echo:v1", "ports": [{"containerPort": 8080}],
                             "livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1,
                                               "failureThreshold": 2}}]))
    api.create(pod("stubborn", [sh("main", "trap 'echo got TERM' TERM; while true; do sleep 0.1; done")], grace=1))

    def phase(name, want):
        return wait_for(api, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == name
                                                and x.get("status", {}).get("phase") == want], timeout=20)[0]
    ok = phase("job-ok", "Succeeded")
    assert ok["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    logs = cli("logs", "pod/job-ok", "--cluster", CLUSTER).stdout.splitlines()
    # env honoured; the process ran in the pod's netns (its eth0 has the pod's address)
    assert logs == ["hello hi from job-ok", f"{ok['status']['podIP']}/24"]
    assert cli("logs", "job-ok", "--container", "first", "-c", CLUSTER).stdout == "init done\n"
    failed = phase("job-fail", "Failed")
    assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    crash = wait_for(api, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == "crash" and (
        x["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 2 and
        "waiting" in x["status"]["containerStatuses"][0]["state"]], timeout=20)[0]
    cs = crash["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and "back-off" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    row = [line for line in cli("get", "pods", "-c", CLUSTER).stdout.splitlines() if line.startswith("crash ")][0]
    assert row.split()[1:3] == ["0/1", "CrashLoopBackOff"], row
    live = wait_for(api, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == "live" and
                                            (x["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0)
                                            >= 1], timeout=20)[0]
    assert live["status"]["phase"] == "Running"
    evs, _ = api.list("Event", "default")
    assert any(e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == "live" and
               e["message"].startswith("Liveness probe failed") for e in evs)
    # SIGTERM is ignored: SIGKILL after the 1 s grace period, then the pod is gone
    phase("stubborn", "Running")
    t0 = time.monotonic()
    api.delete("Pod", "default", "stubborn")
    assert api.get("Pod", "default", "stubborn")["metadata"]["deletionGracePeriodSeconds"] == 1
    wait_for(api, "Pod", lambda ps: "stubborn" not in {x["metadata"]["name"] for x in ps}, timeout=10)
    took = time.monotonic() - t0
    assert 0.9 <= took < 5, took
    with open(log_path(CLUSTER, "default", "stubborn", "main")) as f:  # it did get the SIGTERM first
        assert "got TERM" in f.read()
    for name in ("job-ok", "job-fail", "crash", "live"):
        api.delete("Pod", "default", name)
    wait_for(api, "Pod", lambda ps: not {"job-ok", "job-fail", "crash", "live"} & {x["metadata"]["name"] for x in ps},
             timeout=15)


def test_poststart_and_prestop_hooks_run_in_order(wc, tmp_path):
    c, api = wc
    trace = tmp_path / "trace"
    trace.touch()
    sh = ["sh", "-c"]
    api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hooked"},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [{
                    "name": "main", "image": "busybox",
                    "command": sh + [f"trap 'echo TERM >> {trace}; exit 0' TERM; while true; do sleep 0.1; done"],
                    "lifecycle": {"postStart": {"exec": {"command": sh + [f"echo postStart >> {trace}"]}},
                                  "preStop": {"exec": {"command": sh + [f"echo preStop >> {trace}"]}}}}]}})
    # a container counts as started once its postStart hook has completed (as upstream reports it)
    wait_for(api, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == "hooked"
                                     and (x.get("status", {}).get("containerStatuses") or [{}])[0].get("started")],
             timeout=20)
    assert trace.read_text().splitlines() == ["postStart"]
    api.delete("Pod", "default", "hooked")
    wait_for(api, "Pod", lambda ps: "hooked" not in {x["metadata"]["name"] for x in ps}, timeout=20)
    # preStop ran before the container was told to stop, and it stopped on SIGTERM (not SIGKILL)
    assert trace.read_text().splitlines() == ["postStart", "preStop", "TERM"]


def test_container_processes_get_the_runtimes_umask(wc):
    c, api = wc
    api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "umask"},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "image": "busybox", "command": ["sh", "-c", "umask"]}]}})
    wait_for(api, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == "umask"
                                     and x.get("status", {}).get("phase") == "Succeeded"], timeout=20)
    with open(log_path(CLUSTER, "default", "umask", "main")) as f:
        assert f.read().split() == ["0022"]  # not the control-plane daemon's 0077
    api.delete("Pod", "default", "umask")
