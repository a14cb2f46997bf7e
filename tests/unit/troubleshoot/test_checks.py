"""The doctor's judgements on objects as the API returns them (no cluster)."""

from testbed.troubleshoot import checks


def _pod(name, labels, ready=True, ports=((8080, "TCP", None),), ip="10.244.1.2", message=None):
    cond = {"type": "Ready", "status": "True" if ready else "False"}
    if message:
        cond["message"] = message
    return {"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": p, "protocol": proto, **({"name": n} if n else {})} for p, proto, n in ports]}]},
            "status": {"podIP": ip, "conditions": [cond]}}


def _svc(selector, target=8080, typ="ClusterIP"):
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": typ, "clusterIP": "10.96.0.9", "selector": selector,
                     "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]}}


def test_selector_typo_names_the_closest_labels():
    pods = [_pod("web-1", {"app": "web", "tier": "fe"}), _pod("db", {"app": "db"})]
    f = checks.selector(_svc({"app": "wbe", "tier": "fe"}), pods)
    assert f.level == "fail" and "matches no pod" in f.evidence
    assert "closest: pod web-1 with labels app=web,tier=fe" in f.evidence
    assert checks.selector(_svc({"app": "web"}), pods).level == "ok"


def test_wrong_target_port():
    svc = _svc({"app": "web"}, target=9090)
    [f] = checks.target_ports(svc, [_pod("web-1", {"app": "web"})], {})
    assert f.level == "fail" and "targetPort 9090/TCP is not a containerPort of pod web-1" in f.evidence


def test_named_target_port_and_nothing_listening():
    pod = _pod("web-1", {"app": "web"}, ports=((8080, "TCP", "http"),))
    [ok] = checks.target_ports(_svc({"app": "web"}, target="http"), [pod], {("web-1", 8080): "open"})
    assert ok.level == "ok" and ok.evidence.endswith("answers")
    [bad] = checks.target_ports(_svc({"app": "web"}), [pod], {("web-1", 8080): "refused"})
    assert bad.level == "fail" and "was refused" in bad.evidence


def test_not_ready_pod_shows_the_probe_message():
    pod = _pod("web-1", {"app": "web"}, ready=False, message="containers with unready status: [c]")
    events = [{"involvedObject": {"name": "web-1"}, "reason": "Unhealthy",
               "message": "Readiness probe failed: HTTP probe failed with statuscode: 503"}]
    [f] = checks.pods_ready("backend of svc/default/web", [pod], events)
    assert f.level == "fail" and "unready status" in f.evidence and "statuscode: 503" in f.evidence


def test_endpoint_slices_agree_or_not():
    pod = _pod("web-1", {"app": "web"})
    sl = {"endpoints": [{"addresses": ["10.244.1.2"], "conditions": {"ready": True}}]}
    assert checks.endpoint_slices(_svc({"app": "web"}), [pod], [sl]).level == "ok"
    assert checks.endpoint_slices(_svc({"app": "web"}), [pod], []).level == "fail"
    assert checks.endpoint_slices(_svc({"app": "x"}), [], []).advice.startswith("no ready backends")


URL = "http://172.20.10.2:10256/healthz"
OK = (URL, 200, {"lastUpdated": "t", "currentTime": "t", "nodeEligible": True}, "")
SILENT = (URL, None, None, "no answer within 1s")


def test_proxy_states():
    m = {"pid": 7, "mode": "iptables", "applied_resource_versions": {"Service": "5"}}
    ok = checks.proxy("node1", m, "S", {"Service": 5}, OK)
    assert ok.level == "ok" and ok.evidence.endswith(f"GET {URL}: 200")
    stopped = checks.proxy("node1", m, "T", {"Service": 5}, SILENT)
    assert stopped.level == "fail" and "is stopped (SIGSTOP); GET " in stopped.evidence
    assert stopped.evidence.endswith("no answer within 1s") and stopped.advice == "kill -CONT 7"
    assert checks.proxy("node1", m, None, {"Service": 5}, (URL, None, None, "connection refused")).level == "fail"
    assert checks.proxy("node1", m, "S", {"Service": 9}, OK).level == "warn"
    assert checks.proxy("node1", None, None, {}, SILENT).level == "fail"


def test_proxy_health_comes_from_its_healthz():
    m = {"pid": 7, "mode": "nftables", "healthy": True, "applied_resource_versions": {}}
    sick = checks.proxy("node1", m, "S", {}, (URL, 503, {"lastUpdated": "a", "currentTime": "b",
                                                           "nodeEligible": True}, ""))
    assert sick.level == "fail" and "unhealthy" in sick.evidence and '503 {"lastUpdated":"a"' in sick.evidence
    mute = checks.proxy("node1", m, "S", {}, SILENT)
    assert mute.level == "fail" and "healthz does not answer" in mute.evidence


# a node's IPVS table as ``testbed rules node/N`` prints it (after its iptables-save)
IPVS_DUMP = """*nat
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
COMMIT
IP Virtual Server (read over netlink)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight
TCP  10.96.0.9:80 rr
  -> 10.244.1.2:8080              Masq    1
TCP  10.96.0.12:80 rr
UDP  10.96.0.10:53 rr persistent 10800
  -> 10.244.2.7:5353              Masq    1

Name: KUBE-CLUSTER-IP
Number of entries: 1
Members:
10.96.0.9,tcp:80
"""


def test_ipvs_virtual_servers_against_the_endpoint_slices():
    from testbed.proxy.ipvs import desired as D
    from testbed.proxy.ipvs.mode import parse_table

    have = parse_table(IPVS_DUMP)
    vs = D.VSKey("10.96.0.9", "TCP", 80)
    assert have == {vs: {D.RealServer("10.244.1.2", 8080)}, D.VSKey("10.96.0.12", "TCP", 80): set(),
                    D.VSKey("10.96.0.10", "UDP", 53): {D.RealServer("10.244.2.7", 5353)}}
    cfg = D.IpvsConfig(node_name="node1", node_ip="172.20.10.2")
    sl = {"metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
          "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
          "endpoints": [{"addresses": ["10.244.1.2"], "nodeName": "node2", "conditions": {"ready": True}}]}
    want = D.cluster_ip_destinations(cfg, _svc({"app": "web"}), [sl])
    assert checks.virtual_servers("svc/default/web", want, have) == ([], [])
    # a second ready endpoint the proxy has not added
    sl2 = {**sl, "endpoints": sl["endpoints"] + [{"addresses": ["10.244.2.3"], "conditions": {"ready": True}}]}
    missing, differ = checks.virtual_servers("svc/default/web", D.cluster_ip_destinations(cfg, _svc({"app": "web"}), [sl2]),
                                             have)
    assert not missing and differ == ["svc/default/web virtual server 10.96.0.9:80/TCP has real servers 10.244.1.2:8080; "
                                      "its EndpointSlices give 10.244.1.2:8080, 10.244.2.3:8080"]
    f = checks.rules("node1", [], "the 11 KUBE-* chains kube-proxy wrote", missing, ["svc/default/web"], differ)
    assert f.level == "fail" and f.evidence == differ[0] and "testbed rules node/node1" in f.advice
    # the virtual server itself is gone
    missing, differ = checks.virtual_servers("svc/default/web", want, {})
    assert missing == ["svc/default/web (virtual server 10.96.0.9:80/TCP)"] and not differ
    f = checks.rules("node1", [], "", missing, ["svc/default/web"])
    assert f.level == "fail" and "no rule for svc/default/web (virtual server 10.96.0.9:80/TCP)" in f.evidence


def test_rules_hairpin_dns_conntrack_arp():
    assert checks.rules("node1", ["chain X differs"], "", [], []).level == "fail"
    assert checks.rules("node1", [], "ok", ["svc/default/web"], ["svc/default/web"]).level == "fail"
    assert checks.hairpin("default/web-1", "veth1", "hairpin-veth", "0\n").level == "warn"
    assert checks.hairpin("default/web-1", "veth1", "hairpin-veth", "1\n").level == "ok"
    assert checks.hairpin("default/web-1", "veth1", "promiscuous-bridge", "<BROADCAST,PROMISC,UP>").level == "ok"
    assert checks.dns("svc/default/web", "web.default.svc.cluster.local", "10.96.0.9", "10.96.0.9").level == "ok"
    assert checks.dns("svc/default/web", "web.default.svc.cluster.local", "10.96.0.9", None).level == "fail"
    assert checks.stale_udp("node1", "svc/default/dns", ["10.244.1.9"]).level == "warn"
    assert checks.arp(10, {"gc_thresh2": 512, "gc_thresh3": 1024}).level == "ok"
    assert checks.arp(1024, {"gc_thresh2": 512, "gc_thresh3": 1024}).level == "fail"
