"""kube-proxy in nftables mode through a real cluster: what a sync writes, a restart under
traffic, a rejected transaction. (Service behaviour in this mode is covered by
``test_kube_proxy.py``, which runs over every mode.)

Waits are on watches and on the proxies' metrics/journal files (inotify), never fixed sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading

import pytest

from testbed import netns
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.proxy import status as proxy_status
from testbed.proxy.nftables import mode as nft_mode
from testbed.scenario import parse

pytestmark = pytest.mark.root

HTTP = 8080
PORTS = [{"name": "http", "containerPort": HTTP}]


def pod(name: str, node: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "testbed/echo", "ports": PORTS}]}}


def svc(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


@pytest.fixture(scope="module")
def lab():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "nftproxy"},
           "spec": {"nodes": 2, "externals": 0, "proxyMode": "nftables",
                    "proxy": {"minSyncPeriod": "50ms", "syncPeriod": "2s"}},
           "manifests": [pod("web-1", "node1", app="web"), pod("web-2", "node2", app="web"),
                         pod("one-1", "node2", app="one"), pod("cl-1", "node1", role="client"),
                         svc("web", "web"), svc("one", "one"), svc("other", "web")]}
    c = Cluster.up(parse(doc))
    try:
        api = c.api()
        slices = [slice_with(api, n, {c.pod(p).ip for p in pods})
                  for n, pods in (("web", ("web-1", "web-2")), ("one", ("one-1",)), ("other", ("web-1", "web-2")))]
        proxy_status.wait_programmed(c.name, slices, ["node1", "node2"], 10)
        yield c, api
        api.close()
    finally:
        c.down()


def slice_with(api, service: str, ips: set[str]) -> dict:
    def done(items):
        mine = [s for s in items if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == service]
        got = {a for s in mine for e in s.get("endpoints") or [] for a in e["addresses"]}
        return max(mine, key=lambda s: int(s["metadata"]["resourceVersion"])) if mine and got == ips else None
    return wait_for(api, "EndpointSlice", done, namespace="default", timeout=10)


def journal(c: Cluster, node: str) -> list[str]:
    with open(nft_mode.rules_file(c.name, node)) as f:
        return nft_mode.segments(f.read())


def http(c: Cluster, src: str, ip: str, timeout: float = 2.0) -> str:
    def go():
        with socket.create_connection((ip, 80), timeout=timeout) as s:
            s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1].decode()
    return netns.run_in(c.netns_of(src), go)


def test_partial_sync_writes_only_the_changed_service(lab):
    c, api = lab
    before = len(journal(c, "node1"))
    api.create(pod("one-2", "node1", app="one"))
    wait_for(api, "Pod", lambda ps: any(p["metadata"]["name"] == "one-2" and (p.get("status") or {}).get("podIP")
                                        for p in ps), namespace="default", timeout=10)
    sl = slice_with(api, "one", {c.pod("one-1").ip, c.pod("one-2").ip})
    m = proxy_status.wait_programmed(c.name, [sl], ["node1"], 10)["node1"]
    assert m["last_sync"]["ok"] and not m["last_sync"]["full"]
    # written as netlink batches, none of them handed to nft
    assert m["nftables"]["runner"] == "netlink" and m["nftables"]["runner_fallbacks"] == 0
    segs = journal(c, "node1")
    assert len(segs) > before
    tx = segs[-1]
    # every object the transaction names belongs to default/one (stale deletes aside)
    touched = set(re.findall(r"(?:chain|rule) ip kube-proxy (\S+)", tx))
    assert touched and all("default/one/tcp/http" in name for name in touched), tx
    assert "default/web/" not in tx and "default/other/" not in tx
    assert f"dnat to {c.pod('one-2').ip}:{HTTP}" in tx
    assert "add element" not in tx      # the ClusterIP's map element did not change
    assert {http(c, "pod/cl-1", api.get("Service", "default", "one")["spec"]["clusterIP"]) for _ in range(20)} \
        == {"one-1", "one-2"}
    assert proxy_status.check_rules(c.name, "node/node1") == []


def test_restart_takes_the_table_over_without_a_failed_request(lab):
    c, api = lab
    ip = api.get("Service", "default", "web")["spec"]["clusterIP"]
    old = proxy_status.proxy_metrics(c.name, "node1")["node1"]
    stop = threading.Event()
    results: list[str | BaseException] = []

    def traffic():
        while not stop.is_set():
            try:
                results.append(http(c, "pod/cl-1", ip))
            except OSError as exc:
                results.append(exc)
    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        proxy_status.wait_metrics(c.name, lambda _: len(results) >= 5 or None, timeout=10, what="traffic")
        os.kill(old["pid"], signal.SIGKILL)      # the daemon's supervisor starts a new proxy
        ms = proxy_status.wait_metrics(
            c.name, lambda m: m if m["node1"]["pid"] != old["pid"] and (m["node1"].get("last_sync") or {}).get("ok")
            else None, timeout=15, what="a new kube-proxy on node1")
        n = len(results)
        proxy_status.wait_metrics(c.name, lambda _: len(results) >= n + 5 or None, timeout=10, what="traffic")
    finally:
        stop.set()
        t.join(10)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed and set(results) == {"web-1", "web-2"}, failed[:3]
    new = ms["node1"]
    assert new["full_syncs_total"] == 1 and new["sync_failures_total"] == 0
    assert proxy_status.check_rules(c.name, "node/node1") == []


def test_rejected_transaction_is_retried_as_a_full_sync(lab):
    c, api = lab
    other = api.get("Service", "default", "other")
    cip = other["spec"]["clusterIP"]
    before = proxy_status.proxy_metrics(c.name, "node2")["node2"]
    # Someone removes the Service's map element behind the proxy's back: the partial sync that
    # deletes the Service deletes that element too, and the kernel rejects the transaction.
    c.exec("node/node2", ["nft", "delete", "element", "ip", "kube-proxy", "service-ips",
                          f"{{ {cip} . tcp . 80 }}"], check=True)
    api.delete("Service", "default", "other")
    failed = proxy_status.wait_metrics(
        c.name, lambda m: m["node2"] if m["node2"]["sync_failures_total"] > before["sync_failures_total"] else None,
        timeout=10, what="a failed sync on node2")
    assert failed["partial_restore_failures_total"] >= 1
    assert "No such file or directory" in failed["last_sync"]["error"]
    after = proxy_status.wait_metrics(
        c.name, lambda m: m["node2"] if m["node2"]["full_syncs_total"] > before["full_syncs_total"]
        and m["node2"]["last_sync"]["ok"] else None, timeout=15, what="the full resync on node2")
    assert after["last_sync"]["full"]
    # Events are posted by the proxy's event thread: wait for it on the watch
    wait_for(api, "Event", lambda es: [e for e in es if e["reason"] == "SyncFailed" and e["source"]["host"] == "node2"
                                       and e["message"].startswith("nft transaction failed (partial sync)")] or None,
             namespace="default", timeout=10)
    assert proxy_status.check_rules(c.name, "node/node2") == []
    text = c.exec("node/node2", ["nft", "list", "table", "ip", "kube-proxy"], check=True).stdout
    assert cip not in text
