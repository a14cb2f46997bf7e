"""The doctor's judgements, pure: objects and observations in, ``Finding``s out.

Each function answers one question of the seeds' checklist for one Service (or node) and says
what to do about a problem; doctor.py gathers the inputs from the API and the kernel.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from testbed.k8s.selectors import matches_set


@dataclass
class Finding:
    level: str      # ok | warn | fail
    check: str
    subject: str    # svc/NS/NAME, pod/NS/NAME or node/NAME
    evidence: str
    advice: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _svc(svc: dict) -> str:
    m = svc["metadata"]
    return f"svc/{m.get('namespace', 'default')}/{m['name']}"


def service_shape(svc: dict) -> Finding:
    spec = svc.get("spec") or {}
    ports = ", ".join(f"{p.get('name') or '-'} {p.get('port')}->{p.get('targetPort', p.get('port'))}/"
                      f"{p.get('protocol', 'TCP')}" + (f" nodePort {p['nodePort']}" if p.get("nodePort") else "")
                      for p in spec.get("ports") or [])
    typ = spec.get("type", "ClusterIP")
    if typ != "ExternalName" and not spec.get("ports"):
        return Finding("fail", "service", _svc(svc), f"type {typ} without ports", "add spec.ports")
    return Finding("ok", "service", _svc(svc), f"type {typ}, clusterIP {spec.get('clusterIP')}, ports {ports or '-'}")


def _label_text(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def selected_pods(svc: dict, pods: list[dict]) -> list[dict]:
    sel = (svc.get("spec") or {}).get("selector")
    ns = svc["metadata"].get("namespace", "default")
    if not sel:
        return []
    return [p for p in pods if p["metadata"].get("namespace", "default") == ns
            and matches_set(sel, p["metadata"].get("labels") or {})]


def selector(svc: dict, pods: list[dict]) -> Finding:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return Finding("warn", "selector", _svc(svc), "no selector: endpoints are managed by hand",
                       "create EndpointSlices for it, or add spec.selector")
    chosen = selected_pods(svc, pods)
    if chosen:
        return Finding("ok", "selector", _svc(svc), f"selector {_label_text(sel)} matches "
                       f"{', '.join(p['metadata']['name'] for p in chosen)}")
    ns = svc["metadata"].get("namespace", "default")
    same_ns = [p for p in pods if p["metadata"].get("namespace", "default") == ns]

    def score(p):
        labels = p["metadata"].get("labels") or {}
        return (sum(labels.get(k) == v for k, v in sel.items()), sum(k in labels for k in sel))
    closest = max(same_ns, key=score, default=None)
    hint = (f"; closest: pod {closest['metadata']['name']} with labels {_label_text(closest['metadata'].get('labels'))}"
            if closest else f"; no pods in namespace {ns}")
    return Finding("fail", "selector", _svc(svc), f"selector {_label_text(sel)} matches no pod{hint}",
                   "make spec.selector equal the pods' labels (kubectl get pods --show-labels)")


def _ready(p: dict) -> tuple[bool, str]:
    conds = {c.get("type"): c for c in (p.get("status") or {}).get("conditions") or []}
    r = conds.get("Ready") or {}
    return r.get("status") == "True", r.get("message") or r.get("reason") or (p.get("status") or {}).get("phase", "")


def pods_ready(role: str, chosen: list[dict], events: list[dict]) -> list[Finding]:
    """``role``: what the pods are, for the evidence (e.g. "backend of svc/default/web")."""
    out = []
    for p in chosen:
        name = p["metadata"]["name"]
        ok, why = _ready(p)
        subject = f"pod/{p['metadata'].get('namespace', 'default')}/{name}"
        if ok:
            out.append(Finding("ok", "pod-ready", subject, f"Ready ({role})" if role else "Ready"))
            continue
        probe = [e for e in events if (e.get("involvedObject") or {}).get("name") == name
                 and e.get("reason") in ("Unhealthy", "BackOff", "Failed")]
        last = probe[-1].get("message") if probe else ""
        out.append(Finding("fail", "pod-ready", subject, f"not Ready: {why}" + (f"; last probe: {last}" if last else ""),
                           "a pod that is not Ready is left out of the endpoints: fix its readinessProbe "
                           "or what it checks (kubectl describe pod)"))
    return out


def target_ports(svc: dict, chosen: list[dict], answers: dict[tuple[str, int], str]) -> list[Finding]:
    """``answers``: (pod name, port) -> "open" | "refused" | "timeout" from a connect to the pod."""
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        tp = sp.get("targetPort", sp.get("port"))
        proto = sp.get("protocol", "TCP")
        for p in chosen:
            name = p["metadata"]["name"]
            declared = [cp for c in (p.get("spec") or {}).get("containers") or [] for cp in c.get("ports") or []
                        if cp.get("protocol", "TCP") == proto]
            hit = next((cp for cp in declared if tp in (cp.get("containerPort"), cp.get("name"))), None)
            subject = f"{_svc(svc)} port {sp.get('name') or sp.get('port')}"
            if hit is None:
                have = ", ".join(f"{cp.get('name') or '-'}:{cp.get('containerPort')}" for cp in declared) or "none"
                out.append(Finding("fail", "target-port", subject,
                                   f"targetPort {tp}/{proto} is not a containerPort of pod {name} (declared: {have})",
                                   "set the Service's targetPort to the port the container listens on"))
                continue
            num = int(hit["containerPort"])
            state = answers.get((name, num))
            if proto == "TCP" and state and state != "open":
                out.append(Finding("fail", "target-port", subject,
                                   f"pod {name} declares {num}/{proto} but a connection to it was {state}",
                                   "the container does not listen there: check its command and port"))
            else:
                out.append(Finding("ok", "target-port", subject, f"targetPort {tp} -> pod {name} {num}/{proto}"
                                   + (" answers" if state == "open" else "")))
    return out


def endpoint_slices(svc: dict, chosen: list[dict], slices: list[dict]) -> Finding:
    want = {(p.get("status") or {}).get("podIP") for p in chosen if _ready(p)[0]} - {None}
    have = {a for sl in slices for ep in sl.get("endpoints") or []
            if (ep.get("conditions") or {}).get("ready") is not False for a in ep.get("addresses") or []}
    if not (svc.get("spec") or {}).get("selector"):
        return Finding("ok" if have else "warn", "endpointslices", _svc(svc), f"ready endpoints: {sorted(have) or 'none'}")
    if want == have:
        level = "ok" if have else "fail"
        return Finding(level, "endpointslices", _svc(svc), f"ready endpoints: {', '.join(sorted(have)) or 'none'}",
                       "" if have else "no ready backends: kube-proxy rejects connections to this Service")
    return Finding("fail", "endpointslices", _svc(svc),
                   f"EndpointSlices list {sorted(have) or 'none'}, ready selected pods are {sorted(want) or 'none'}",
                   "the endpointslice controller is behind or stuck: check the control plane's log")


def proxy(node: str, metrics: dict | None, proc_state: str | None, newest: dict[str, int],
          healthz: tuple[str, int | None, dict | None, str]) -> Finding:
    """``proc_state``: the proxy process's state letter from /proc (None: no such process);
    ``healthz``: (url, HTTP status or None, JSON body, error) of a GET of its ``/healthz``."""
    subject = f"node/{node}"
    url, status, body, err = healthz
    got = f"GET {url}: " + (f"{status} {json.dumps(body, separators=(',', ':'))}" if status is not None else err)
    if not metrics:
        return Finding("fail", "kube-proxy", subject, f"no metrics file: kube-proxy never started; {got}",
                       "check the control plane's log")
    pid = metrics.get("pid")
    if proc_state is None or metrics.get("stopped"):
        return Finding("fail", "kube-proxy", subject, f"kube-proxy (pid {pid}) is not running; {got}",
                       "the daemon restarts it; if it keeps dying, read its log in the state directory")
    if proc_state == "T":
        return Finding("fail", "kube-proxy", subject, f"kube-proxy (pid {pid}) is stopped (SIGSTOP); {got}",
                       f"kill -CONT {pid}")
    if status is None:
        return Finding("fail", "kube-proxy", subject, f"kube-proxy (pid {pid}) runs but its healthz does not "
                       f"answer: {got}", "read its log: it serves /healthz on --healthz-bind-address")
    if status != 200:
        return Finding("fail", "kube-proxy", subject, f"kube-proxy (pid {pid}) is unhealthy: a change has waited "
                       f"longer than 2 x its sync period (last sync: {(metrics.get('last_sync') or {}).get('error')}); "
                       f"{got}", "read its log")
    applied = metrics.get("applied_resource_versions") or {}
    behind = {k: (int(applied.get(k, 0)), rv) for k, rv in newest.items() if int(applied.get(k, 0)) < rv}
    if behind:
        what = ", ".join(f"{k} {a} < {rv}" for k, (a, rv) in behind.items())
        return Finding("warn", "kube-proxy", subject, f"kube-proxy (pid {pid}) has not synced the newest change ({what})",
                       "wait a sync period; if it stays behind, the proxy is stuck")
    return Finding("ok", "kube-proxy", subject, f"kube-proxy (pid {pid}, {metrics.get('mode')}) running, synced; "
                   f"GET {url}: {status}")


def rules(node: str, differences: list, summary: str, missing: list[str], checked: list[str],
          mismatched: list[str] = ()) -> Finding:
    """``missing``: Services (of ``checked``) with a clusterIP that no rule of the node mentions
    (IPVS mode: whose ClusterIP virtual server is absent); ``mismatched``: IPVS virtual servers
    whose real servers are not the endpoints the EndpointSlices give (``virtual_servers``)."""
    subject = f"node/{node}"
    if differences:
        return Finding("fail", "rules", subject, f"{len(differences)} differences from what kube-proxy wrote: "
                       f"{'; '.join(str(d) for d in differences[:3])}",
                       "something else changed the rules; kube-proxy's next full sync restores them")
    if missing:
        return Finding("fail", "rules", subject, f"no rule for {', '.join(missing)} on this node",
                       "kube-proxy has not programmed it: check its log and metrics")
    if mismatched:
        return Finding("fail", "rules", subject, f"{'; '.join(mismatched[:3])}",
                       f"kube-proxy has not applied the EndpointSlices: check its log and metrics "
                       f"(testbed rules {subject} shows its IPVS table)")
    which = f" (rules for {', '.join(checked)} present)" if checked else ""
    return Finding("ok", "rules", subject, (summary or "rules match what kube-proxy wrote") + which)


def virtual_servers(svc: str, want: dict, have: dict) -> tuple[list[str], list[str]]:
    """IPVS mode, one Service on one node: (what is missing, what differs). ``want``: its
    ClusterIP virtual servers and their real servers as the node's proxy derives them from the
    EndpointSlices; ``have``: the node's IPVS table (both {virtual server: real servers}).
    Real servers are compared by address and port (kube-proxy gives them all weight 1)."""
    missing, differ = [], []
    for key in sorted(want):
        if key not in have:
            missing.append(f"{svc} (virtual server {key})")
            continue
        w = {(r.address, r.port) for r in want[key]}
        h = {(r.address, r.port) for r in have[key]}
        if w != h:
            differ.append(f"{svc} virtual server {key} has real servers {_hostports(h)}; "
                          f"its EndpointSlices give {_hostports(w)}")
    return missing, differ


def _hostports(eps: set[tuple[str, int]]) -> str:
    return ", ".join(f"{a}:{p}" for a, p in sorted(eps)) or "none"


def hairpin(pod: str, veth: str, mode: str, value: str) -> Finding:
    subject = f"pod/{pod}"
    if mode == "promiscuous-bridge":
        ok = "PROMISC" in value
        return Finding("ok" if ok else "fail", "hairpin", subject, f"cni0 {'is' if ok else 'is not'} promiscuous",
                       "" if ok else "ip link set cni0 promisc on")
    if value.strip() == "1":
        return Finding("ok", "hairpin", subject, f"{veth} hairpin_mode=1")
    return Finding("warn", "hairpin", subject, f"{veth} hairpin_mode={value.strip() or '?'} (hairpinMode {mode}): "
                   "the pod cannot reach itself through its Service",
                   "set spec.hairpinMode hairpin-veth (or promiscuous-bridge), as kubelet's --hairpin-mode")


def dns(svc: str, fqdn: str, cluster_ip: str, answer: str | None) -> Finding:
    if answer is None:
        return Finding("fail", "dns", svc, f"{fqdn} did not resolve", "check the kube-dns pods and their log")
    if cluster_ip and cluster_ip != "None" and cluster_ip not in answer.split():
        return Finding("fail", "dns", svc, f"{fqdn} -> {answer or 'nothing'}, clusterIP is {cluster_ip}",
                       "the DNS server has a stale record: check its watch of Services")
    return Finding("ok", "dns", svc, f"{fqdn} -> {answer}")


def stale_udp(node: str, svc: str, stale: list[str]) -> Finding:
    if stale:
        return Finding("warn", "conntrack", f"node/{node}", f"{len(stale)} UDP conntrack entries of {svc} point at "
                       f"removed endpoints: {', '.join(stale[:3])}",
                       "kube-proxy deletes them after a sync; conntrack -D -p udp --reply-src IP clears them by hand")
    return Finding("ok", "conntrack", f"node/{node}", f"no stale UDP conntrack entries for {svc}")


def arp(neighbours: int, thresh: dict[str, int]) -> Finding:
    t2, t3 = thresh.get("gc_thresh2", 0), thresh.get("gc_thresh3", 0)
    ev = f"{neighbours} neighbour entries in the cluster's namespaces; gc_thresh2 {t2}, gc_thresh3 {t3}"
    if t3 and neighbours >= t3:
        return Finding("fail", "arp", "host", ev, "raise gc_thresh1..3 (testbed up --raise-neigh-limits)")
    if t2 and neighbours >= t2:
        return Finding("warn", "arp", "host", ev, "near the limit: new neighbours will be garbage-collected")
    return Finding("ok", "arp", "host", ev)
