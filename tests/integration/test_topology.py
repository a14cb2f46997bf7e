"""Foundation: nodes and pods in namespaces, flannel VXLAN, host-gw, teardown (needs root)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from testbed import naming, netns, state, topology
from testbed.capture import Capture
from testbed.cluster import Cluster
from testbed.kubelet.plan import pod_plan
from testbed.scenario import parse

from .netutil import TcpEcho, root_snapshot, tcp_peer, uniq

ITVX = uniq("itvx")
ITHGW = uniq("ithgw")
ITTD = uniq("ittd")
ITKILL = uniq("itkill")
ITKCP = uniq("itkcp")
ITATOM = uniq("itatom")
ITATOM2 = uniq("itatom2")

pytestmark = pytest.mark.root


def scenario(name: str, nodes: int = 3, pods_per_node: int = 4, **spec) -> dict:
    pods = []
    for n in range(nodes):
        for k in range(pods_per_node):
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"p{n + 1}-{k + 1}"},
                         "spec": {"nodeName": f"node{n + 1}", "containers": [{"name": "c", "image": "x"}]}})
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
            # no add-ons: these tests count and address exactly the pods they declare
            "spec": {"nodes": nodes, "externals": 1, "addons": [], **spec}, "manifests": pods}


@pytest.fixture(scope="module")
def vx():
    c = Cluster.up(parse(scenario(ITVX)))
    yield c
    c.down()


def test_layout_matches_flannel(vx):
    s = vx.status()
    assert [n["podCIDR"] for n in s["nodes"]] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert [n["ip"] for n in s["nodes"]] == ["172.20.10.2", "172.20.10.3", "172.20.10.4"]
    assert [p["ip"] for p in s["pods"] if p["node"] == "node2"] == [f"10.244.1.{i}" for i in range(2, 6)]
    assert s["externals"] == [{"name": "client", "netns": f"tb.{ITVX}.ext.client", "ip": "172.20.10.100"}]
    link = vx.exec("node/node1", ["ip", "-d", "link", "show", "flannel.1"]).stdout
    assert "vxlan id 1 local 172.20.10.2 dev eth0" in link and "dstport 8472" in link and "nolearning" in link
    assert "mtu 1450" in link
    routes = vx.exec("node/node1", ["ip", "route"]).stdout
    assert "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in routes
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in routes
    assert "default via 172.20.10.1 dev eth0" in routes
    fdb = vx.exec("node/node1", ["bridge", "fdb", "show", "dev", "flannel.1"]).stdout
    assert f"{naming.vtep_mac('10.244.1.0')} dst 172.20.10.3 self permanent" in fdb
    neigh = vx.exec("node/node1", ["ip", "neigh", "show", "dev", "flannel.1"]).stdout
    assert f"10.244.2.0 lladdr {naming.vtep_mac('10.244.2.0')} PERMANENT" in neigh
    addr = vx.exec("node/node1", ["ip", "-o", "addr", "show", "flannel.1"]).stdout
    assert "10.244.0.0/32" in addr
    pod = vx.exec("pod/p1-1", ["ip", "route"]).stdout
    assert "default via 10.244.0.1 dev eth0" in pod and "10.244.0.0/16 via 10.244.0.1 dev eth0" in pod
    brl = vx.exec("node/node1", ["bridge", "-d", "link", "show", "dev", vx.pod("p1-1").host_veth]).stdout
    assert "hairpin on" in brl and "master cni0" in brl
    sysctl = vx.run_in("node/node1", lambda: [netns.read_sysctl(k) for k in
                       ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.all.route_localnet")])
    assert sysctl == ["1", "1", "1"]


def _ipv6_quiet_window(pod_netns: str) -> float:
    """Seconds within which a link that keeps IPv6 on would have sent its first frames after
    carrier: DAD's random delay and probes, the router solicitation after it, MLD's report."""
    def read() -> float:
        c = "net.ipv6.conf.eth0."
        return (int(netns.read_sysctl(c + "router_solicitation_delay"))
                + int(netns.read_sysctl(c + "dad_transmits")) * int(netns.read_sysctl("net.ipv6.neigh.eth0.retrans_time_ms")) / 1000
                + int(netns.read_sysctl(c + "mldv2_unsolicited_report_interval")) / 1000)
    return netns.run_in(pod_netns, read) + 0.5


def test_a_pod_sends_no_ipv6_frame_and_has_no_ipv6_address(vx):
    """Pods keep IPv6 quiet through netlink (no link-local address), not /proc/sys writes: a pod
    built while its node-side veth is watched sends nothing of IPv6 from carrier on, while a
    frame it is made to send is seen there (the capture can see what it must not)."""
    plan = vx.plan
    p = pod_plan(plan, {"metadata": {"name": "ipv6-quiet"}, "spec": {"nodeName": "node1"}}, "10.244.0.200")
    node = plan.node("node1")
    is_ipv6 = lambda d: d[12:14] == b"\x86\xdd"
    with netns.Runner(1) as runner:
        node_fd = netns.open_fd(node.netns)
        try:
            runner.run_new(p.netns, topology._build_pod, p, plan.pod_network, node_fd)
        finally:
            os.close(node_fd)
        try:
            with Capture(node.netns, p.host_veth, match=is_ipv6) as cap:
                runner.run_in(node.netns, topology._attach_pods, plan, [p])  # carrier from here on
                assert not cap.wait_for(lambda fr: len(fr) > 0, timeout=_ipv6_quiet_window(p.netns)), \
                    [Ether(f.data).summary() for f in cap.frames]

                def send_one() -> None:
                    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
                        s.bind(("eth0", 0))
                        # to all-nodes, IPv6 header with "no next header"
                        s.send(bytes.fromhex("333300000001" + p.mac.replace(":", "") + "86dd"
                                             + "60000000" + "0000" + "3b" + "01") + bytes(32))
                runner.run_in(p.netns, send_one)
                assert cap.wait_for(lambda fr: len(fr) == 1)
            addrs = subprocess.run(["ip", "-n", p.netns, "-6", "-o", "addr"], capture_output=True, text=True,
                                   check=True).stdout
            assert addrs == ""  # not even the loopback's ::1
            assert "UP" in subprocess.run(["ip", "-n", p.netns, "link", "show", "eth0"], capture_output=True,
                                          text=True, check=True).stdout
        finally:
            topology.remove_pods(plan, [p], runner)


def test_pod_to_pod_same_node(vx):
    srv = TcpEcho(vx.pod("p1-2").netns)
    try:
        assert tcp_peer(vx.pod("p1-1").netns, vx.pod("p1-2").ip).startswith(vx.pod("p1-1").ip + ":")
    finally:
        srv.close()


def test_pod_to_pod_across_nodes_is_vxlan(vx, tmp_path):
    a, b = vx.pod("p1-1"), vx.pod("p2-1")
    srv = TcpEcho(b.netns)
    is_vxlan = lambda d: len(d) > 42 and d[12:14] == b"\x08\x00" and d[23] == 17 and d[36:38] == b"\x21\x18"
    try:
        with Capture(vx.plan.underlay.netns, "node1", match=is_vxlan) as cap:
            assert tcp_peer(a.netns, b.ip).startswith(a.ip + ":")
            assert cap.wait_for(lambda fr: len(fr) >= 2)
        cap.write_pcap(str(tmp_path / "vxlan.pcap"))
    finally:
        srv.close()
    pkts = [Ether(f.data) for f in cap.frames]
    out = [p for p in pkts if p[IP].src == "172.20.10.2"]
    back = [p for p in pkts if p[IP].src == "172.20.10.3"]
    assert out and back
    for p, (osrc, odst, isrc, idst) in [(out[0], ("172.20.10.2", "172.20.10.3", a.ip, b.ip)),
                                         (back[0], ("172.20.10.3", "172.20.10.2", b.ip, a.ip))]:
        assert (p[IP].src, p[IP].dst, p[UDP].dport, p[VXLAN].vni) == (osrc, odst, 8472, 1)
        inner = p[VXLAN][IP]
        assert (inner.src, inner.dst) == (isrc, idst)
        assert inner.ttl == 63  # routed once by the sending node
        assert p[IP].len == inner.len + 50
    assert (tmp_path / "vxlan.pcap").read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"


def test_pod_to_node_and_external_to_node(vx):
    node2 = vx.plan.node("node2")
    srv = TcpEcho(node2.netns, 9000)
    try:
        # a pod reaching another node's address leaves via the overlay? no: via its node's default route
        seen = tcp_peer(vx.pod("p1-1").netns, node2.ip, 9000)
        assert seen.split(":")[0] == "172.20.10.2"  # flannel's masquerade: pod -> outside pod network
        seen = tcp_peer(vx.plan.externals[0].netns, node2.ip, 9000)
        assert seen.split(":")[0] == "172.20.10.100"
        seen = tcp_peer(vx.pod("p2-1").netns, vx.plan.node("node2").cni_ip, 9000)
        assert seen.split(":")[0] == vx.pod("p2-1").ip
    finally:
        srv.close()


def test_full_size_datagram_with_df_crosses_overlay_unfragmented(vx):
    a, b = vx.pod("p1-3"), vx.pod("p3-3")
    IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2

    def bind_udp() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 7777))
        s.settimeout(3)
        return s

    def send(size: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        try:
            s.sendto(b"x" * size, (b.ip, 7777))
        finally:
            s.close()

    rx = netns.run_in(b.netns, bind_udp)
    is_udp = lambda d: len(d) > 42 and d[12:14] == b"\x08\x00" and d[23] == 17
    try:
        with Capture(vx.plan.underlay.netns, "node1", match=is_udp) as cap:
            netns.run_in(a.netns, send, 1422)
            data, peer = rx.recvfrom(4096)
            assert len(data) == 1422 and peer[0] == a.ip
        outer = [Ether(f.data) for f in cap.frames if Ether(f.data)[IP].src == "172.20.10.2"]
        assert len(outer) == 1  # one frame: not fragmented
        p = outer[0]
        assert p[IP].len == 1500 and p[IP].frag == 0 and not p[IP].flags.MF
        assert p[VXLAN][IP].flags.DF and p[VXLAN][IP].len == 1450
        with pytest.raises(OSError) as e:  # one byte more does not fit the pod MTU with DF set
            netns.run_in(a.netns, send, 1423)
        assert e.value.errno == 90  # EMSGSIZE
    finally:
        rx.close()


def test_host_gw_backend():
    c = Cluster.up(parse(scenario(ITHGW, nodes=2, pods_per_node=2, backend="host-gw")))
    try:
        routes = c.exec("node/node1", ["ip", "route"]).stdout
        assert "10.244.1.0/24 via 172.20.10.3 dev eth0" in routes
        assert "flannel.1" not in c.exec("node/node1", ["ip", "link"]).stdout
        assert "mtu 1500" in c.exec("pod/p1-1", ["ip", "link", "show", "eth0"]).stdout
        a, b = c.pod("p1-1"), c.pod("p2-2")
        srv = TcpEcho(b.netns)
        is_tcp = lambda d: len(d) > 34 and d[12:14] == b"\x08\x00" and d[23] == 6
        try:
            with Capture(c.plan.underlay.netns, "node1", match=is_tcp) as cap:
                assert tcp_peer(a.netns, b.ip).startswith(a.ip + ":")
            ips = {(Ether(f.data)[IP].src, Ether(f.data)[IP].dst) for f in cap.frames}
            assert (a.ip, b.ip) in ips  # plain IP on the wire, no encapsulation
        finally:
            srv.close()
    finally:
        c.down()
    assert not netns.list_names(f"tb.{ITHGW}.")


def test_teardown_leaves_nothing_and_root_is_untouched():
    before = root_snapshot()
    c = Cluster.up(parse(scenario(ITTD, nodes=2, pods_per_node=3)))
    names = netns.list_names(f"tb.{ITTD}.")
    assert len(names) == 1 + 2 + 1 + 6
    inodes = {netns.inode(n) for n in names}
    during = root_snapshot()
    c.down()
    assert not netns.list_names(f"tb.{ITTD}.")
    assert not os.path.exists(state.directory(ITTD))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                assert os.stat(f"/proc/{pid}/ns/net").st_ino not in inodes
            except (FileNotFoundError, PermissionError):
                pass
    after = root_snapshot()
    assert during == before
    assert after == before
    assert c.down() == {"netns": 0, "processes": 0, "cgroups": 0, "state_dir": False}  # idempotent


def test_sigkill_during_up_then_down_cleans_up(tmp_path):
    import yaml

    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(scenario(ITKILL, nodes=2, pods_per_node=40)))
    env = {**os.environ, "TESTBED_FAILPOINT": "pods:25"}
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "up", str(path), "-q", "--no-control-plane"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == -9
    left = netns.list_names(f"tb.{ITKILL}.")
    assert len(left) >= 25  # the crash left namespaces behind...
    assert ITKILL in state.clusters()
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "down", ITKILL], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert not netns.list_names(f"tb.{ITKILL}.")  # ...and down removed them all
    assert ITKILL not in state.clusters()


def test_sigkill_after_control_plane_start_then_down_stops_it(tmp_path):
    import yaml

    path = tmp_path / "cp.yaml"
    path.write_text(yaml.safe_dump(scenario(ITKCP, nodes=2, pods_per_node=2)))
    env = {**os.environ, "TESTBED_FAILPOINT": "control-plane"}
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "up", str(path), "-q"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == -9
    pid = state.read_json(ITKCP, "state.json")["pids"]["control-plane"]
    os.kill(pid, 0)  # the control plane outlived the killed `up`
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "down", ITKCP], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert not _running(pid)
    assert not netns.list_names(f"tb.{ITKCP}.")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by whatever init this host has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_atomic_failure_leaves_nothing(monkeypatch):
    from testbed import topology

    def boom(*a, **k):
        raise RuntimeError("injected failure while adding pods")

    monkeypatch.setattr(topology, "add_pods", boom)
    with pytest.raises(RuntimeError):
        Cluster.up(parse(scenario(ITATOM, nodes=2, pods_per_node=1)), control_plane=False)
    assert not netns.list_names(f"tb.{ITATOM}.")
    assert ITATOM not in state.clusters()


def test_bad_manifest_is_refused_before_anything_is_built():
    from testbed.errors import TestbedError

    doc = scenario(ITATOM2, nodes=1, pods_per_node=1)
    doc["manifests"].append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                             "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}})
    with pytest.raises(TestbedError) as e:
        Cluster.up(parse(doc))
    assert 'Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the ' \
           'valid range. The range of valid ports is 30000-32767' in str(e.value)
    assert not netns.list_names(f"tb.{ITATOM2}.")
    assert ITATOM2 not in state.clusters()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _env_has(p, f"TESTBED_CLUSTER={ITATOM2}".encode())]


def test_manifest_refused_at_apply_names_the_scenario_and_place(monkeypatch):
    from testbed import cluster as cluster_mod
    from testbed.errors import ValidationError

    # the pre-check finds this one before anything is built; without it the API server refuses it
    # after the control plane started, which is the path under test
    monkeypatch.setattr(cluster_mod, "check_manifests", lambda scenario: None)
    doc = scenario(ITATOM2, nodes=1, pods_per_node=1)
    doc["manifests"].append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                             "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}})
    with pytest.raises(ValidationError) as e:
        Cluster.up(parse(doc, source="bad-nodeport.yaml"))
    assert e.value.exit_code == 2
    assert str(e.value).startswith("bad-nodeport.yaml: manifests[1]: Service 'web' was refused: ")
    assert "spec.ports[0].nodePort: Invalid value: 80" in str(e.value)
    assert not netns.list_names(f"tb.{ITATOM2}.")
    assert ITATOM2 not in state.clusters()


def _env_has(pid: str, item: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return item in f.read().split(b"\0") and _running(int(pid))
    except OSError:
        return False


def test_cli_status_json_and_exec(vx):
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "status", ITVX, "-o", "json"],
                         capture_output=True, text=True)
    import json

    s = json.loads(res.stdout)
    assert set(s["nodes"][0]) >= {"name", "netns", "ip", "podCIDR"}
    assert set(s["pods"][0]) >= {"namespace", "name", "node", "netns", "ip"}
    assert set(s["externals"][0]) >= {"name", "netns", "ip"}
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "exec", "-c", ITVX, "pod/default/p2-2", "--",
                          "sh", "-c", "ip -o -4 addr show eth0; exit 7"], capture_output=True, text=True)
    assert res.returncode == 7
    assert vx.pod("p2-2").ip in res.stdout
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "exec", "-c", ITVX, "pod/nope", "--", "true"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "no pod 'nope'" in res.stderr
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "up", "scenarios/quickstart.yaml", "--name", ITVX],
                         capture_output=True, text=True)
    assert res.returncode == 3 and "already exists" in res.stderr


def test_namespace_files_are_names_of_one_inode_and_behave_as_iproute2s():
    """Each /run/netns file this process makes is a new name of one unnamed inode (no inode
    allocated per namespace); to ``ip netns`` and to ``down`` they are ordinary namespace files."""
    name = uniq("itnsf")
    names = [f"tb.{name}.node.n{i}" for i in range(3)]
    with netns.Runner(1) as r:
        for n in names:
            r.run_new(n, lambda: None)
        with pytest.raises(FileExistsError):
            r.run_new(names[0], lambda: None)
    try:
        # under the mounts: three names, one inode, mode 0 as iproute2 creates them
        under = subprocess.run([sys.executable, "-c", (
            "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
            "assert libc.unshare(0x00020000) == 0; "  # a mount namespace of its own...
            "assert libc.mount(None, b'/', None, 0x4000 | 0x40000, None) == 0; "  # ...private (MS_REC|MS_PRIVATE)
            f"[libc.umount2(os.path.join('/run/netns', n).encode(), 2) for n in {names!r}]; "
            f"st = [os.stat(os.path.join('/run/netns', n)) for n in {names!r}]; "
            "print(len({s.st_ino for s in st}), min(s.st_nlink for s in st), oct(st[0].st_mode & 0o777))")],
            capture_output=True, text=True, check=True).stdout.split()
        # (other namespaces this process made and still has may be names of it too)
        assert under[0] == "1" and int(under[1]) >= 3 and under[2] == "0o0", under
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert all(n in listed for n in names)
        assert len({netns.inode(n) for n in names}) == 3  # each is its own namespace
        out = subprocess.run(["ip", "netns", "exec", names[1], "ip", "-br", "link"], capture_output=True,
                             text=True, check=True).stdout
        assert out.split()[0] == "lo"
    finally:
        for n in names:
            netns.delete(n)
    assert not netns.list_names(f"tb.{name}.")
