"""``doctor(cluster, target=None) -> [Finding]``: the seeds' checklist over a running cluster.

For a Service: it exists and has ports; its selector matches pods (else the closest labels);
they are Ready (else the probe's message); the targetPort is a declared containerPort and
something answers there; the EndpointSlices agree. For every node: kube-proxy runs, is healthy
and synced the newest change, its rules match what it wrote (and mention the Service; IPVS
mode: the Service's ClusterIP virtual servers exist, with the real servers its EndpointSlices
give), the backends' veths hairpin, UDP conntrack holds no entry to a removed endpoint. Then
cluster DNS (if a kube-dns Service exists) and the host's ARP table limits. Judgements are in
checks.py.
"""

from __future__ import annotations

import errno
import socket

from testbed import exec as ex
from testbed import hostsettings, netns as _netns
from testbed.errors import TestbedError
from testbed.proxy import healthz, status

from . import checks, evidence
from .checks import Finding

CONNECT_TIMEOUT = 1.0
HEALTHZ_TIMEOUT = 1.0


def _connect(ip: str, port: int) -> str:
    s = socket.socket()
    s.settimeout(CONNECT_TIMEOUT)
    try:
        s.connect((ip, port))
        return "open"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return "refused" if exc.errno == errno.ECONNREFUSED else str(exc)
    finally:
        s.close()


def _proc_state(pid) -> str | None:
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, TypeError, IndexError):
        return None


def _healthz(node) -> tuple[str, int | None, dict | None, str]:
    """GET the node's kube-proxy ``/healthz`` from inside the node's netns, as ``curl`` there."""
    url = f"http://{node.ip}:{healthz.HEALTHZ_PORT}/healthz"
    return (url, *_netns.run_in(node.netns, healthz.get, node.ip, healthz.HEALTHZ_PORT, "/healthz",
                                HEALTHZ_TIMEOUT))


# A proxy is allowed its minimum sync period (1 s by default) behind the newest change before
# doctor calls it behind: a change written a moment ago is not a finding.
SYNC_GRACE = 3.0


def _settled_metrics(cluster: str, nodes: list[str], newest: dict[str, int]) -> dict:
    """The proxies' metrics once each running one has applied ``newest`` (woken by inotify), or
    as they stand after ``SYNC_GRACE``."""
    def caught_up(ms: dict):
        for n in nodes:
            m = ms.get(n)
            if not m or m.get("stopped"):
                continue  # nothing to wait for: the finding says why
            applied = m.get("applied_resource_versions") or {}
            if any(int(applied.get(k, 0)) < rv for k, rv in newest.items()):
                return None
        return ms
    try:
        return status.wait_metrics(cluster, caught_up, timeout=SYNC_GRACE, what="kube-proxy catching up")
    except TimeoutError:
        return status.proxy_metrics(cluster)


def _newest(items: list[dict]) -> int:
    return max((int(o["metadata"].get("resourceVersion", 0)) for o in items), default=0)


def doctor(cluster, target: str | None = None) -> list[Finding]:
    kind, _, name = (target or "").partition("/")
    if target and (kind not in ("svc", "service", "pod", "node") or not name):
        raise TestbedError(f"doctor target {target!r}: use svc/NAME, svc/NAMESPACE/NAME, pod/NAME or node/NAME")
    with cluster.api() as api:
        services, _ = api.list("Service")
        pods, _ = api.list("Pod")
        slices, _ = api.list("EndpointSlice")
        events, _ = api.list("Event")
    plan = cluster.plan
    nodes = [n.name for n in plan.nodes]
    if kind == "node" and name not in nodes:
        raise TestbedError(f"doctor node/{name}: no such node; nodes: {', '.join(nodes)}")
    chosen_svcs, findings = _select(kind, name, services, pods, events)
    if chosen_svcs is None:
        return findings
    plans = {(p.namespace, p.name): p for p in cluster.pods()}
    node_ns = {n.name: n.netns for n in plan.nodes}
    for svc in chosen_svcs:
        findings += _service(cluster, svc, pods, slices, events, plans, node_ns)
    check_nodes = [name] if kind == "node" else nodes
    newest = {"Service": _newest(services), "EndpointSlice": _newest(slices)}
    metrics = _settled_metrics(cluster.name, check_nodes, newest) if plan.proxy_mode != "none" else {}
    for n in check_nodes:
        if plan.proxy_mode == "none":
            break
        m = metrics.get(n)
        findings.append(checks.proxy(n, m, _proc_state(m.get("pid")) if m else None, newest,
                                     _healthz(plan.node(n))))
        diffs, summary = status.check_report(cluster.name, f"node/{n}")
        dump = status.dump_rules(cluster.name, f"node/{n}")
        with_ip = [s for s in chosen_svcs if (s.get("spec") or {}).get("clusterIP") not in (None, "None", "")]
        labels = [f"{s['metadata'].get('namespace', 'default')}/{s['metadata']['name']}" for s in with_ip]
        mismatched: list[str] = []
        if plan.proxy_mode == "ipvs":
            missing, mismatched = _ipvs_servers(plan.node(n), with_ip, slices, dump)
        else:
            # the other modes name a Service's rules after NAMESPACE/NAME (iptables comments,
            # nftables chains)
            missing = [f"svc/{label}" for label in labels if label not in dump and label.replace("/", "_") not in dump]
        findings.append(checks.rules(n, diffs, summary, missing, [f"svc/{label}" for label in labels], mismatched))
    findings += _dns(cluster, chosen_svcs, services, plans)
    if kind != "pod":
        findings.append(_arp(cluster))
    return findings


def _ns_name(name: str) -> tuple[str, str]:
    ns, _, n = name.rpartition("/")
    return ns or "default", n


def _select(kind: str, name: str, services, pods, events) -> tuple[list | None, list[Finding]]:
    """The Services to check for the target, and findings of its own (None: nothing to check)."""
    if kind in ("svc", "service"):
        ns, n = _ns_name(name)
        svcs = [s for s in services if s["metadata"]["name"] == n and s["metadata"].get("namespace", "default") == ns]
        if not svcs:
            return None, [Finding("fail", "service", f"svc/{ns}/{n}", "no such Service", f"kubectl get services -n {ns}")]
        return svcs, []
    if kind == "pod":
        ns, n = _ns_name(name)
        pod = next((p for p in pods if p["metadata"]["name"] == n and p["metadata"].get("namespace", "default") == ns), None)
        if pod is None:
            return None, [Finding("fail", "pod", f"pod/{ns}/{n}", "no such Pod", f"kubectl get pods -n {ns}")]
        svcs = [s for s in services if pod in checks.selected_pods(s, pods)]
        # a pod no Service selects is still checked; otherwise its Services' checks cover it
        return svcs, [] if svcs else checks.pods_ready("selected by no Service", [pod], events)
    if kind == "node":
        return [], []
    return [s for s in services if s["metadata"]["name"] != "kubernetes"], []


def _service(cluster, svc, pods, slices, events, plans, node_ns) -> list[Finding]:
    out = [checks.service_shape(svc)]
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return out
    ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
    out.append(checks.selector(svc, pods))
    chosen = checks.selected_pods(svc, pods)
    out += checks.pods_ready(f"backend of svc/{ns}/{name}", chosen, events)
    answers = {}
    for p in chosen:
        pp = plans.get((ns, p["metadata"]["name"]))
        if pp is None:
            continue
        for c in (p.get("spec") or {}).get("containers") or []:
            for cp in c.get("ports") or []:
                if cp.get("protocol", "TCP") == "TCP":
                    answers[(pp.name, int(cp["containerPort"]))] = _netns.run_in(
                        node_ns[pp.node], _connect, pp.ip, int(cp["containerPort"]))
    out += checks.target_ports(svc, chosen, answers)
    mine = _slices_of(svc, slices)
    out.append(checks.endpoint_slices(svc, chosen, mine))
    mode = cluster.plan.hairpin_mode
    for p in chosen:
        pp = plans.get((ns, p["metadata"]["name"]))
        if pp is None:
            continue
        if mode == "promiscuous-bridge":
            value = ex.run(["ip", "link", "show", "cni0"], netns=node_ns[pp.node], check=False).stdout
        else:
            value = ex.run(["cat", f"/sys/class/net/{pp.host_veth}/brport/hairpin_mode"], netns=node_ns[pp.node],
                           sysfs=True, check=False).stdout
        out.append(checks.hairpin(f"{ns}/{pp.name}", pp.host_veth, mode, value))
    # kube-proxy keeps sending to serving endpoints (terminating ones too, when nothing else is
    # ready), so only an entry to an endpoint that no longer serves is stale
    live = {a for s in mine for ep in s.get("endpoints") or []
            if (ep.get("conditions") or {}).get("serving", (ep.get("conditions") or {}).get("ready")) is not False
            for a in ep.get("addresses") or []}
    cip = spec.get("clusterIP")
    if cip and cip != "None" and any(p.get("protocol") == "UDP" for p in spec.get("ports") or []):
        for node, nns in node_ns.items():
            text = ex.run(["conntrack", "-L", "-p", "udp", "-d", cip], netns=nns, check=False).stdout
            # userspace mode REDIRECTs to the proxy on the node itself: its own address is no endpoint
            own = _local_addresses(nns) if cluster.plan.proxy_mode == "userspace" else set()
            stale = [e["reply"].get("src") for e in evidence.parse_conntrack(text)
                     if e["reply"].get("src") not in live | own and e["reply"].get("src") != cip]
            out.append(checks.stale_udp(node, f"svc/{ns}/{name}", stale))
    return out


def _slices_of(svc: dict, slices: list[dict]) -> list[dict]:
    ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
    return [s for s in slices if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name
            and s["metadata"].get("namespace", "default") == ns]


def _ipvs_servers(node, services: list[dict], slices: list[dict], dump: str) -> tuple[list[str], list[str]]:
    """IPVS mode's rules match ipsets and never name a Service: a Service is present on a node
    when its ClusterIP virtual servers are in the node's IPVS table, and right when their real
    servers are the endpoints its EndpointSlices give (as that node's proxy selects them)."""
    from testbed.proxy.ipvs import desired, mode

    have = mode.parse_table(dump)
    cfg = desired.IpvsConfig(node_name=node.name, node_ip=node.ip)
    missing, mismatched = [], []
    for svc in services:
        m = svc["metadata"]
        want = desired.cluster_ip_destinations(cfg, svc, _slices_of(svc, slices))
        gone, differ = checks.virtual_servers(f"svc/{m.get('namespace', 'default')}/{m['name']}", want, have)
        missing += gone
        mismatched += differ
    return missing, mismatched


def _local_addresses(netns: str) -> set[str]:
    text = ex.run(["ip", "-4", "-o", "addr", "show"], netns=netns, check=False).stdout
    return {line.split()[3].split("/")[0] for line in text.splitlines() if len(line.split()) > 3}


def _dns(cluster, chosen_svcs, services, plans) -> list[Finding]:
    kube_dns = next((s for s in services if s["metadata"]["name"] == "kube-dns"
                     and s["metadata"].get("namespace") == "kube-system"), None)
    if kube_dns is None or not chosen_svcs or not plans:
        return []
    server = (kube_dns.get("spec") or {}).get("clusterIP")
    # ask from an ordinary pod: a DNS pod asking itself through its Service tests hairpin too
    client = next((p for p in plans.values() if p.namespace != "kube-system"), next(iter(plans.values())))
    out = []
    for svc in chosen_svcs:
        m = svc["metadata"]
        fqdn = f"{m['name']}.{m.get('namespace', 'default')}.svc.cluster.local"
        res = ex.run(["dig", "+short", "+time=1", "+tries=2", f"@{server}", fqdn, "A"], netns=client.netns, check=False)
        answer = res.stdout.strip() if res.ok and res.stdout.strip() else None
        if answer is None and (svc.get("spec") or {}).get("clusterIP") == "None":
            continue
        out.append(checks.dns(f"svc/{m.get('namespace', 'default')}/{m['name']}", fqdn,
                              (svc.get("spec") or {}).get("clusterIP"), answer))
    return out


def _arp(cluster) -> Finding:
    count = 0
    for n in cluster.plan.nodes:
        text = ex.run(["ip", "-4", "neigh", "show"], netns=n.netns, check=False).stdout
        count += sum(1 for line in text.splitlines() if line.strip())
    thresh = {k.rsplit(".", 1)[1]: hostsettings.read(k) for k in hostsettings.GC_KEYS}
    return checks.arp(count, thresh)


def table(findings: list[Finding]) -> str:
    rows = [("LEVEL", "CHECK", "SUBJECT", "EVIDENCE", "ADVICE")]
    rows += [(f.level.upper(), f.check, f.subject, f.evidence, f.advice) for f in findings]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join([*(v.ljust(w) for v, w in zip(r[:4], widths)), r[4]]).rstrip() for r in rows)


def failed(findings: list[Finding]) -> bool:
    return any(f.level == "fail" for f in findings)
