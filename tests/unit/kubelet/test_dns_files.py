"""A pod's resolv.conf, hosts and hostname (kubelet's rules), configMap volumes, the coredns
launcher's -conf handling and the /etc/netns files."""

from __future__ import annotations

import os

import pytest

from testbed.kubelet import etcfiles, plan as kplan, volumes
from testbed.kubelet.workloads import corefile_arg


def pod(**spec):
    return {"metadata": {"name": "web-0", "namespace": "prod"}, "spec": spec}


@pytest.mark.parametrize("spec, expected", [
    ({}, "search prod.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"),
    ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True},
     "search prod.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"),
    ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, "nameserver 172.20.10.1\n"),
    ({"dnsPolicy": "Default"}, "nameserver 172.20.10.1\n"),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["a.b"],
                                         "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}},
     "search a.b\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"),
    ({"dnsConfig": {"nameservers": ["10.96.0.10", "9.9.9.9"], "searches": ["x.y"], "options": [{"name": "ndots", "value": "1"}]}},
     "search prod.svc.cluster.local svc.cluster.local cluster.local x.y\nnameserver 10.96.0.10\nnameserver 9.9.9.9\n"
     "options ndots:1\n"),
])
def test_resolv_conf_by_dns_policy(spec, expected):
    assert kplan.resolv_conf(pod(**spec), "10.96.0.10", "172.20.10.1") == expected


def test_hostname_and_hosts_with_subdomain_and_aliases():
    p = pod(hostname="db-0", subdomain="db", hostAliases=[{"ip": "10.1.1.1", "hostnames": ["foo", "bar"]}])
    assert kplan.pod_hostname(p) == ("db-0", "db-0.db.prod.svc.cluster.local")
    hosts = kplan.hosts_file(p, "10.244.0.5")
    assert "10.244.0.5\tdb-0.db.prod.svc.cluster.local\tdb-0\n" in hosts
    assert hosts.endswith("# Entries added by HostAliases.\n10.1.1.1\tfoo\tbar\n")
    assert "10.244.0.5\tweb-0\n" in kplan.hosts_file(pod(), "10.244.0.5")


def test_coredns_image_any_tag_runs_the_builtin():
    for image in ("registry.k8s.io/coredns/coredns:v1.11.3", "registry.k8s.io/coredns/coredns",
                  "registry.k8s.io/coredns/coredns@sha256:abc"):
        assert kplan.program_for({"image": image, "args": ["-conf", "/etc/coredns/Corefile"]}) == \
            kplan.Program(kplan.COREDNS, ("-conf", "/etc/coredns/Corefile"))


def test_corefile_arg():
    assert corefile_arg(["-conf", "/etc/coredns/Corefile"]) == "/etc/coredns/Corefile"
    assert corefile_arg(["-conf=/x/C"]) == "/x/C"
    assert corefile_arg([]) == "Corefile"


def test_config_map_volume_files_and_mounts():
    vol = {"name": "config-volume", "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}
    cm = {"data": {"Corefile": ".:53 {}\n", "other": "x"}}
    assert volumes.volume_files(vol, cm) == {"Corefile": ".:53 {}\n"}
    assert volumes.volume_files({"name": "v", "configMap": {"name": "c"}}, cm) == cm["data"]
    assert volumes.volume_files(vol, None) == {}
    p = {"metadata": {"name": "coredns-1", "namespace": "kube-system"}, "spec": {"volumes": [vol]}}
    m = volumes.mounts("c1", p, {"volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns/"}]})
    assert list(m) == ["/etc/coredns"] and m["/etc/coredns"].endswith("/c1/pods/kube-system_coredns-1/volumes/config-volume")
    assert volumes.host_path("/etc/coredns/Corefile", m) == os.path.join(m["/etc/coredns"], "Corefile")
    assert volumes.host_path("/etc/corednsx/Corefile", m) is None


class FakeStore:
    def __init__(self, cm, events=()):
        self.cm = cm
        self.events = list(events)

    def get(self, kind, ns, name):
        assert (kind, ns, name) == ("ConfigMap", "kube-system", "coredns")
        return self.cm

    def list(self, kind):
        return [], "1"

    def watch(self, kind, ns, rv):
        return iter(self.events)


def test_config_map_volumes_write_files(tmp_path, monkeypatch):
    monkeypatch.setattr(volumes, "volume_dir", lambda c, ns, p, v: str(tmp_path / v))
    vols = volumes.ConfigMapVolumes(FakeStore({"data": {"Corefile": "A"}}), "c1")
    p = {"metadata": {"name": "p", "namespace": "kube-system"},
         "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "coredns"}}]}}
    vols.materialize(p)
    assert (tmp_path / "cfg" / "Corefile").read_text() == "A"
    vols._sync_pod(p, {"metadata": {"namespace": "kube-system", "name": "coredns"}, "data": {"Corefile": "B"}})
    assert (tmp_path / "cfg" / "Corefile").read_text() == "B"
    vols._sync_pod(p, {"metadata": {"namespace": "kube-system", "name": "other"}, "data": {"Corefile": "C"}})
    assert (tmp_path / "cfg" / "Corefile").read_text() == "B"


def test_etc_files_in_the_pod_directory_and_resolv_conf_for_ip_netns_exec(tmp_path):
    from testbed.plan import build_plan
    from testbed.scenario import parse

    plan = build_plan(parse({"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "c1"}, "spec": {}}))
    web = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "node1"}}
    pp = kplan.pod_plan(plan, web, "10.244.0.9")
    links, shared, d = tmp_path / "etc-netns", tmp_path / "etc", tmp_path / "pods" / "default_web" / "etc"
    out = etcfiles.write(etcfiles.files(plan, web, pp.ip), str(d), pp.netns, str(shared), root=str(links))
    assert out == {f"/etc/{n}": str(d / n) for n in ("resolv.conf", "hosts", "hostname")}
    assert sorted(os.listdir(d)) == ["hostname", "hosts", "resolv.conf"]
    assert {oct(os.stat(d / n).st_mode & 0o777) for n in os.listdir(d)} == {oct(0o644)}
    assert "10.244.0.9" in (d / "hosts").read_text()
    # what ip netns exec reads: the pod's resolv.conf, through a link of the cluster's
    link = links / pp.netns
    assert os.path.islink(link) and os.listdir(link) == ["resolv.conf"]
    assert (link / "resolv.conf").read_text() == (d / "resolv.conf").read_text()
    assert "nameserver 10.96.0.10" in (link / "resolv.conf").read_text()
    # a second pod with the same resolv.conf: a new name of the same link (no inode of its own)
    api = {"metadata": {"name": "api", "namespace": "default"}, "spec": {"nodeName": "node1"}}
    ap = kplan.pod_plan(plan, api, "10.244.0.10")
    etcfiles.write(etcfiles.files(plan, api, ap.ip), str(tmp_path / "pods" / "default_api" / "etc"), ap.netns,
                   str(shared), root=str(links))
    assert os.lstat(links / ap.netns).st_ino == os.lstat(link).st_ino and os.lstat(link).st_nlink == 2
    # another namespace's search path: another link
    other = {"metadata": {"name": "x", "namespace": "kube-system"}, "spec": {"nodeName": "node1"}}
    op = kplan.pod_plan(plan, other, "10.244.0.11")
    etcfiles.write(etcfiles.files(plan, other, op.ip), str(tmp_path / "pods" / "kube-system_x" / "etc"), op.netns,
                   str(shared), root=str(links))
    assert os.lstat(links / op.netns).st_ino != os.lstat(link).st_ino
    assert "search kube-system.svc.cluster.local" in (links / op.netns / "resolv.conf").read_text()
    # written again (the directory exists: replaced atomically, no temporary file left)
    etcfiles.write(etcfiles.files(plan, web, "10.244.0.12"), str(d), pp.netns, str(shared), root=str(links))
    assert sorted(os.listdir(d)) == ["hostname", "hosts", "resolv.conf"]
    assert "10.244.0.12" in (d / "hosts").read_text()
    # the name it linked from removed (its pod gone): a new link, which the next pod shares
    etcfiles.remove(pp.netns, root=str(links))
    etcfiles.write(etcfiles.files(plan, web, pp.ip), str(d), pp.netns, str(shared), root=str(links))
    assert (links / pp.netns / "resolv.conf").exists() and os.lstat(links / ap.netns).st_nlink == 1
    etcfiles.write(etcfiles.files(plan, web, pp.ip), str(tmp_path / "pods" / "default_w2" / "etc"),
                   "tb.c1.pod.default.w2", str(shared), root=str(links))
    assert os.lstat(links / "tb.c1.pod.default.w2").st_ino == os.lstat(links / pp.netns).st_ino
    # a directory of files an older testbed left is replaced by the link
    old = links / "tb.c1.pod.default.old"
    old.mkdir()
    (old / "hosts").write_text("x")
    etcfiles.write({"resolv.conf": "nameserver 10.96.0.10\n"}, str(tmp_path / "pods" / "default_old" / "etc"),
                   old.name, str(shared), root=str(links))
    assert os.path.islink(old) and (old / "resolv.conf").read_text() == "nameserver 10.96.0.10\n"
    (links / "tb.other.pod.default.web").mkdir()
    assert etcfiles.remove_cluster("c1", root=str(links)) == 5
    assert os.listdir(links) == ["tb.other.pod.default.web"]
    assert (d / "hosts").exists()  # the files go with the pod's directory (the kubelet's, or down's)


def test_config_map_watch_rewrites_live_pods_and_drops_gone_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(volumes, "volume_dir", lambda c, ns, p, v: str(tmp_path / p / v))
    monkeypatch.setattr(volumes, "pod_dir", lambda c, ns, p: str(tmp_path / p))
    changed = {"type": "MODIFIED", "object": {"metadata": {"namespace": "kube-system", "name": "coredns"},
                                               "data": {"Corefile": "B"}}}
    store = FakeStore({"data": {"Corefile": "A"}})
    vols = volumes.ConfigMapVolumes(store, "c1")
    spec = {"volumes": [{"name": "cfg", "configMap": {"name": "coredns"}}]}
    vols._thread = object()  # the watch is driven by hand below
    vols.materialize({"metadata": {"name": "live", "namespace": "kube-system"}, "spec": spec})
    vols.materialize({"metadata": {"name": "gone", "namespace": "kube-system"}, "spec": spec}, lambda: False)
    assert (tmp_path / "gone" / "cfg" / "Corefile").read_text() == "A"
    store.events = [changed]
    vols._follow()
    assert (tmp_path / "live" / "cfg" / "Corefile").read_text() == "B"
    assert not (tmp_path / "gone").exists()
