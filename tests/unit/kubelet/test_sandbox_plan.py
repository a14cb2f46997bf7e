"""The pure part of a pod's sandbox: capabilities, hostname, /etc/hosts, resolv.conf, the spec."""

import pytest

from testbed.kubelet.plan import (CAPABILITIES, DEFAULT_CAPABILITIES, capabilities, hosts_file, pod_hostname,
                                  resolv_conf, sandbox_spec, security_context)

DNS = "10.96.0.10"          # the cluster DNS Service
NODE_NS = "172.20.10.1"     # what a node resolves with: the underlay's resolver


def pod(name="web-0", ns="shop", **spec):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"containers": [{"name": "c"}], **spec}}


def idx(*names):
    return sorted(CAPABILITIES.index(n) for n in names)


def test_default_capabilities_are_the_runtimes_set():
    assert capabilities({}) == idx(*DEFAULT_CAPABILITIES)
    assert len(DEFAULT_CAPABILITIES) == 14


def test_privileged_is_every_capability_of_the_kernel():
    assert capabilities({"privileged": True}, last_cap=40) == list(range(41))
    assert capabilities({"privileged": True}, last_cap=37) == list(range(38))


def test_add_then_drop_with_all():
    sc = {"capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["KILL"]}}
    assert capabilities(sc) == sorted(set(idx(*DEFAULT_CAPABILITIES, "NET_ADMIN", "SYS_TIME")) - set(idx("KILL")))
    # as containerd: ALL first, then the named ones, so upstream's CoreDNS keeps NET_BIND_SERVICE
    assert capabilities({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}) == idx("NET_BIND_SERVICE")
    assert capabilities({"capabilities": {"drop": ["ALL"]}}) == []
    assert capabilities({"capabilities": {"add": ["ALL"], "drop": ["CHOWN"]}}, last_cap=40) == \
        [c for c in range(41) if c != CAPABILITIES.index("CHOWN")]
    assert capabilities({"capabilities": {"add": ["ALL"]}}, last_cap=40) == list(range(41))


def test_binds_are_in_the_spec_only_when_given():
    p = pod()
    spec = sandbox_spec(p, p["spec"]["containers"][0], cgroup="/cg", files={}, hide=["/run/testbed"])
    assert "binds" not in spec
    spec = sandbox_spec(p, p["spec"]["containers"][0], cgroup="/cg", files={}, hide=["/run/testbed"],
                        binds=[("/run/testbed/c/api.sock", "/run/testbed/c/api.sock")])
    assert spec["binds"] == [["/run/testbed/c/api.sock", "/run/testbed/c/api.sock"]]


def test_unknown_capability_is_one_clear_line():
    with pytest.raises(ValueError, match=r"securityContext.capabilities.add: unknown capability 'NET_ADMINN'; "
                                         r"allowed: ALL or CHOWN, DAC_OVERRIDE"):
        capabilities({"capabilities": {"add": ["NET_ADMINN"]}})


def test_container_security_context_overrides_the_pods():
    p = pod(securityContext={"runAsUser": 1000, "runAsGroup": 2000, "supplementalGroups": [3000]})
    assert security_context(p, {"securityContext": {"runAsUser": 0}}) == {
        "runAsUser": 0, "runAsGroup": 2000, "supplementalGroups": [3000]}


def test_hostname_is_spec_hostname_or_the_pod_name():
    assert pod_hostname(pod())[0] == "web-0"
    assert pod_hostname(pod(hostname="db"))[0] == "db"
    assert pod_hostname(pod(name="x" * 70))[0] == "x" * 63


def test_etc_hosts_golden():
    p = pod(hostname="db-0", subdomain="db", hostAliases=[{"ip": "192.0.2.7", "hostnames": ["foo", "bar"]}])
    assert hosts_file(p, "10.244.1.5") == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "192.0.2.7\tfoo\tbar\n")
    assert hosts_file(pod(), "10.244.1.6").endswith("fe00::2\tip6-allrouters\n10.244.1.6\tweb-0\n")


def test_resolv_conf_cluster_first_golden():
    assert resolv_conf(pod(), DNS, NODE_NS) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n")
    assert resolv_conf(pod(dnsPolicy="ClusterFirstWithHostNet", hostNetwork=True), DNS, NODE_NS) \
        .startswith("search shop.svc.cluster.local")


def test_resolv_conf_default_is_the_nodes_and_host_network_cluster_first_falls_back():
    want = "nameserver 172.20.10.1\n"
    assert resolv_conf(pod(dnsPolicy="Default"), DNS, NODE_NS) == want
    assert resolv_conf(pod(hostNetwork=True), DNS, NODE_NS) == want


def test_resolv_conf_none_and_dns_config_merge():
    cfg = {"nameservers": ["192.0.2.1"], "searches": ["a.example"],
           "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    assert resolv_conf(pod(dnsPolicy="None", dnsConfig=cfg), DNS, NODE_NS) == (
        "search a.example\nnameserver 192.0.2.1\noptions ndots:2 edns0\n")
    assert resolv_conf(pod(dnsConfig=cfg), DNS, NODE_NS) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local a.example\n"
        "nameserver 10.96.0.10\nnameserver 192.0.2.1\noptions ndots:2 edns0\n")


def test_sandbox_spec():
    p = pod(hostname="h", securityContext={"runAsUser": 1000})
    spec = sandbox_spec(p, {"name": "c", "workingDir": "/tmp", "securityContext": {"capabilities": {"drop": ["ALL"]}}},
                        cgroup="/cg/pod/c", files={"/etc/hosts": "/s/hosts"}, hide=["/run/testbed"])
    assert spec == {"cgroup": "/cg/pod/c", "hostname": "h", "files": {"/etc/hosts": "/s/hosts"},
                    "hide": ["/run/testbed"], "capabilities": [], "uid": 1000, "gid": None, "groups": [],
                    "umask": 0o022, "cwd": "/tmp"}
