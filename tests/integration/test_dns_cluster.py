"""Cluster DNS in a running cluster: the coredns add-on, pods' resolvers, ConfigMap reload,
a bad Corefile, scaling to zero, ExternalName end to end, and cleanup of /etc/netns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed import exec, netns
from testbed.controllers.base import wait_for
from testbed.inotify import IN_MODIFY, DirWatch
from testbed.kubelet.etcfiles import ETC_NETNS
from testbed.verify import model
from testbed.verify.runner import Verifier

from .netutil import uniq

pytestmark = pytest.mark.root
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _coredns(api) -> list[dict]:
    items, _ = api.list("Pod", "kube-system", label_selector={"k8s-app": "kube-dns"})
    return items


def _verify(c, checks_yaml: list[dict]):
    checks, problems = model.validate(checks_yaml)
    assert not problems, problems
    return Verifier(c, checks).run()


def _ttl(c) -> str:
    """The TTL of one answer through kube-dns (kube-proxy picks a replica per connection)."""
    out = c.exec("pod/client", ["dig", "+tcp", "+noall", "+answer", "@10.96.0.10",
                                "partner.default.svc.cluster.local", "CNAME"], timeout=10).stdout.split()
    return out[1] if len(out) > 1 else ""


def _reloaded(log: str) -> bool:
    text = open(log).read()
    at = text.find("plugin/reload: Running configuration SHA512 changed")
    return at >= 0 and "plugin/ready: synced" in text[at:]


def test_dns_lifecycle():
    from testbed.cluster import Cluster

    c = Cluster.up(os.path.join(REPO, "scenarios", "dns-externalname.yaml"), name=uniq("dnsc"))
    try:
        query = [{"name": "partner", "from": "pod/client", "dns": {"name": "partner", "type": "A"},
                  "expect": {"answers": ["client.ext.testbed.", "172.20.10.100"]}}]
        [r] = _verify(c, query)
        assert r.ok, r.failure_text()

        # the add-on is ordinary objects
        with c.api() as api:
            assert api.get("Service", "kube-system", "kube-dns")["spec"]["clusterIP"] == "10.96.0.10"
            assert api.get("Deployment", "kube-system", "coredns")["spec"]["replicas"] == 2

        # the server runs in its pod's sandbox: of the state directory it sees the API socket
        # and its own configMap volume, nothing else (no store, no other pod's files, no logs)
        with c.api() as api:
            name = _coredns(api)[0]["metadata"]["name"]
        res = subprocess.run([sys.executable, "-m", "testbed.cli", "exec", "-c", c.name, f"pod/kube-system/{name}",
                              "--", "find", "/run/testbed", "-type", "f", "-o", "-type", "s"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        seen = res.stdout.split()
        own = os.path.join("/run/testbed", c.name, "pods", f"kube-system_{name}", "volumes", "config-volume")
        assert sorted(seen) == [os.path.join("/run/testbed", c.name, "api.sock"), os.path.join(own, "Corefile")]

        # ExternalName end to end: curl by the Service's name reaches the external client
        ext = c.netns_of("external/client")
        srv = exec.popen([sys.executable, "-m", "http.server", "8000", "--bind", "172.20.10.100"], netns=ext,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            out = c.exec("pod/client", ["curl", "-sS", "--retry", "20", "--retry-connrefused", "--retry-delay", "0",
                                        "-o", "/dev/null", "-w", "%{http_code} %{remote_ip}", "http://partner:8000/"],
                         timeout=30)
            assert out.stdout.strip() == "200 172.20.10.100", out
        finally:
            srv.kill()
            srv.wait()
        assert "172.20.10.100" in c.exec("pod/client", ["getent", "hosts", "client.ext.testbed"]).stdout

        # a DNS failure is observable: coredns scaled to 0 -> the query times out; back -> resolves
        with c.api() as api:
            api.patch("Deployment", "kube-system", "coredns", {"spec": {"replicas": 0}})
            wait_for(api, "Pod", lambda items: not any(p["metadata"].get("labels", {}).get("k8s-app") == "kube-dns"
                                                       for p in items), namespace="kube-system", timeout=30)
        [r] = _verify(c, [{**query[0], "expect": {"rcode": "timeout"}}])
        assert r.ok, r.failure_text()
        with c.api() as api:
            api.patch("Deployment", "kube-system", "coredns", {"spec": {"replicas": 2}})
        [r] = _verify(c, query)  # settles: waits for the rollout
        assert r.ok, r.failure_text()

        # the kubelet rewrites the Corefile on a ConfigMap change; reload follows (ttl 30 -> 7)
        with c.api() as api:
            names = [p["metadata"]["name"] for p in _coredns(api)]
            dirs = [os.path.join("/run/testbed", c.name, "pods", f"kube-system_{n}", "volumes", "config-volume")
                    for n in names]
            watches = [DirWatch(d) for d in dirs]
            try:
                cm = api.get("ConfigMap", "kube-system", "coredns")
                cm["data"]["Corefile"] = cm["data"]["Corefile"].replace("ttl 30", "ttl 7")
                api.update(cm)
                for d, w in zip(dirs, watches):
                    while "ttl 7" not in open(os.path.join(d, "Corefile")).read():
                        assert w.wait(10), f"{d}: Corefile not rewritten"
            finally:
                for w in watches:
                    w.close()
        # each replica restarts on its own inotify event: wait until both logged the reload and
        # synced again (their log files are appended; inotify wakes us), then every answer has ttl 7
        logs = os.path.join("/run/testbed", c.name, "logs")
        with DirWatch(logs, mask=IN_MODIFY) as w:
            while not all(_reloaded(os.path.join(logs, f"kube-system_{n}_coredns.log")) for n in names):
                assert w.wait(15), "coredns did not reload"
        assert {_ttl(c) for _ in range(6)} == {"7"}

        # a bad Corefile: running replicas keep the old config (reload refuses it); a new pod
        # exits 1 with CoreDNS's message and backs off
        with c.api() as api:
            cm = api.get("ConfigMap", "kube-system", "coredns")
            cm["data"]["Corefile"] = cm["data"]["Corefile"].replace("loadbalance", "nosuchplugin")
            api.update(cm)
            victim = _coredns(api)[0]["metadata"]["name"]
            api.delete("Pod", "kube-system", victim)

            def crashing(items):
                for p in items:
                    for s in (p.get("status") or {}).get("containerStatuses") or []:
                        if ((s.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                            return p
                return None
            bad = wait_for(api, "Pod", crashing, namespace="kube-system", timeout=30)
        log = open(os.path.join("/run/testbed", c.name, "logs",
                                f"kube-system_{bad['metadata']['name']}_coredns.log")).read()
        assert "nosuchplugin" in log and "[FATAL]" in log, log
        assert _ttl(c) == "7"  # the surviving replica kept its configuration and still answers
        pod_ns = c.netns_of("pod/client")
    finally:
        c.down()
    assert not os.path.exists(os.path.join(ETC_NETNS, pod_ns))
    assert not netns.exists(pod_ns)
