"""``kubectl describe`` for Services and Pods, ported from kubectl's ``describe.go``
(``describeService``, ``describePod``, ``DescribeEvents`` and helpers), aligned with
Go's tabwriter as kubectl does (minwidth 0, padding 2; the Events table is flushed and
aligned on its own)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Mapping, Sequence

from .printers import NONE, _join_host_port, _lb_status_string, _now, format_labels, human_duration, parse_time
from .tabwriter import tabwrite

MAX_ANNOTATION_LEN = 140
SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
L1, L2, L3 = "  ", "    ", "      "


from .printers import _meta, _spec, _status  # noqa: E402  (shared accessors)


def _since(ts: Any, now: _dt.datetime) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _rfc1123z(ts: Any) -> str:
    t = parse_time(ts)
    return t.strftime("%a, %d %b %Y %H:%M:%S %z") if t else ""


class _W:
    """kubectl's PrefixWriter into sections that are aligned separately (Flush)."""

    def __init__(self) -> None:
        self.sections: list[list[str]] = [[]]

    def write(self, text: str) -> None:
        self.sections[-1].append(text)

    def flush(self) -> None:
        self.sections.append([])

    def render(self) -> str:
        return "".join(tabwrite("".join(s), 0, 2) for s in self.sections if s)


def _labels(w: _W, title: str, labels: Mapping | None) -> None:
    w.write(f"{title}:\t")
    keys = sorted(labels or {})
    if not keys:
        w.write("<none>\n")
        return
    for i, k in enumerate(keys):
        if i:
            w.write("\t")
        w.write(f"{k}={labels[k]}\n")


def _annotations(w: _W, title: str, annotations: Mapping | None) -> None:
    w.write(f"{title}:\t")
    keys = sorted(k for k in (annotations or {}) if k not in SKIP_ANNOTATIONS)
    if not keys:
        w.write("<none>\n")
        return
    for i, k in enumerate(keys):
        if i:
            w.write("\t")
        value = str(annotations[k]).removesuffix("\n")
        if len(value) + len(k) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.write(f"{k}:\n")
            for line in value.split("\n"):
                if len(line) > MAX_ANNOTATION_LEN - 2:
                    line = line[:MAX_ANNOTATION_LEN - 2] + "..."
                w.write(f"\t  {line}\n")
        else:
            w.write(f"{k}: {value}\n")


def describe_events(w: _W, events: Sequence[Mapping] | None, now: _dt.datetime) -> None:
    if events is None:
        return
    if not events:
        w.write("Events:\t<none>\n")
        return
    w.flush()
    ordered = sorted(events, key=lambda e: parse_time(e.get("lastTimestamp") or e.get("eventTime")
                                                      or e.get("firstTimestamp")) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc))
    w.write("Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(f"{L1}----\t------\t----\t----\t-------\n")
    for e in ordered:
        first = _since(e.get("eventTime"), now) if e.get("eventTime") else _since(e.get("firstTimestamp"), now)
        series = e.get("series")
        count = e.get("count") or 0
        if series:
            interval = f"{_since(series.get('lastObservedTime'), now)} (x{series.get('count')} over {first})"
        elif count > 1:
            interval = f"{_since(e.get('lastTimestamp'), now)} (x{count} over {first})"
        else:
            interval = first
        source = (e.get("source") or {}).get("component") or e.get("reportingController") or e.get("reportingComponent") or ""
        w.write(f"{L1}{e.get('type', '')}\t{e.get('reason', '')}\t{interval}\t{source}\t{(e.get('message') or '').strip()}\n")


def events_for(obj: Mapping, events: Iterable[Mapping]) -> list[dict]:
    """The events whose involvedObject is *obj* (by uid when both have one, else kind/ns/name)."""
    m = _meta(obj)
    out = []
    for e in events:
        io = e.get("involvedObject") or {}
        if io.get("uid") and m.get("uid"):
            if io["uid"] == m["uid"]:
                out.append(e)
        elif io.get("kind") == obj.get("kind") and io.get("name") == m.get("name") \
                and (io.get("namespace") or "") == (m.get("namespace") or ""):
            out.append(e)
    return out


# --- Service ---------------------------------------------------------------------------


def _format_slices(slices: Sequence[Mapping], port_name: str, max_: int = 3) -> str:
    """``formatEndpointSlices`` for one service port (ready endpoints only)."""
    if not slices:
        return NONE
    out: list[str] = []
    more = False
    count = 0
    for sl in slices:
        eps = [e for e in sl.get("endpoints") or [] if (e.get("conditions") or {}).get("ready") is not False
               and e.get("addresses")]
        if not sl.get("ports"):
            for e in eps:
                if len(out) == max_:
                    more = True
                if not more:
                    out.append(e["addresses"][0])
                count += 1
            continue
        for p in sl["ports"]:
            if (p.get("name") or "") != port_name:
                continue
            for e in eps:
                if len(out) == max_:
                    more = True
                if not more:
                    out.append(_join_host_port(e["addresses"][0], p.get("port")))
                count += 1
    ret = ",".join(out)
    if more:
        return f"{ret} + {count - max_} more..."
    return ret


def _endpoints_text(endpoints_or_slices: Any, port_name: str) -> str:
    from .printers import format_endpoints

    if endpoints_or_slices is None:
        return NONE
    if isinstance(endpoints_or_slices, Mapping):
        if endpoints_or_slices.get("kind") == "EndpointSlice":
            return _format_slices([endpoints_or_slices], port_name)
        return format_endpoints(endpoints_or_slices, {port_name})
    return _format_slices(list(endpoints_or_slices), port_name)


def describe_service(svc: Mapping, endpoints_or_slices: Any = None, events: Sequence[Mapping] | None = (),
                     *, now: _dt.datetime | None = None) -> str:
    """``kubectl describe service``. *endpoints_or_slices* is the Service's v1 Endpoints
    object, or a list of its EndpointSlices (what current kubectl uses), or None.
    *events* are the Service's events (None omits the Events section, like
    ``--show-events=false``)."""
    now = _now(now)
    m, spec, st = _meta(svc), _spec(svc), _status(svc)
    w = _W()
    w.write(f"Name:\t{m.get('name', '')}\n")
    w.write(f"Namespace:\t{m.get('namespace', '')}\n")
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w.write(f"Selector:\t{format_labels(spec.get('selector'))}\n")
    w.write(f"Type:\t{spec.get('type', '')}\n")
    if spec.get("ipFamilyPolicy") is not None:
        w.write(f"IP Family Policy:\t{spec['ipFamilyPolicy']}\n")
    fams = spec.get("ipFamilies") or []
    w.write(f"IP Families:\t{','.join(fams) if fams else NONE}\n")
    w.write(f"IP:\t{spec.get('clusterIP', '')}\n")
    cips = spec.get("clusterIPs") or []
    w.write(f"IPs:\t{','.join(cips) if cips else NONE}\n")
    if spec.get("externalIPs"):
        w.write(f"External IPs:\t{','.join(spec['externalIPs'])}\n")
    if spec.get("loadBalancerIP"):
        w.write(f"Desired LoadBalancer IP:\t{spec['loadBalancerIP']}\n")
    if spec.get("externalName"):
        w.write(f"External Name:\t{spec['externalName']}\n")
    ingress = (st.get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        parts = []
        for i in ingress:
            s = i.get("ip") or i.get("hostname") or ""
            if i.get("ipMode"):
                s += f" ({i['ipMode']})"
            parts.append(s)
        w.write(f"LoadBalancer Ingress:\t{', '.join(parts)}\n")
    for p in spec.get("ports") or []:
        name = p.get("name") or "<unset>"
        proto = p.get("protocol") or "TCP"
        w.write(f"Port:\t{name}\t{p.get('port')}/{proto}\n")
        tp = p.get("targetPort", p.get("port"))
        w.write(f"TargetPort:\t{tp}/{proto}\n")
        if p.get("nodePort"):
            w.write(f"NodePort:\t{name}\t{p['nodePort']}/{proto}\n")
        w.write(f"Endpoints:\t{_endpoints_text(endpoints_or_slices, p.get('name') or '')}\n")
    w.write(f"Session Affinity:\t{spec.get('sessionAffinity', '')}\n")
    if spec.get("externalTrafficPolicy"):
        w.write(f"External Traffic Policy:\t{spec['externalTrafficPolicy']}\n")
    if spec.get("internalTrafficPolicy") is not None:
        w.write(f"Internal Traffic Policy:\t{spec['internalTrafficPolicy']}\n")
    if spec.get("healthCheckNodePort"):
        w.write(f"HealthCheck NodePort:\t{spec['healthCheckNodePort']}\n")
    if spec.get("loadBalancerSourceRanges"):
        w.write(f"LoadBalancer Source Ranges:\t{','.join(spec['loadBalancerSourceRanges'])}\n")
    describe_events(w, None if events is None else list(events), now)
    return w.render()


# --- Ingress ---------------------------------------------------------------------------


def _ingress_backend(ns: str, backend: Mapping, services: Sequence[Mapping], slices: Sequence[Mapping]) -> str:
    """``describeBackendV1``: ``svc:port (ready endpoints)``."""
    svc_ref = backend.get("service")
    if not svc_ref:
        res = backend.get("resource") or {}
        return f"APIGroup: {res.get('apiGroup', '')}, Kind: {res.get('kind', '')}, Name: {res.get('name', '')}"
    port = svc_ref.get("port") or {}
    shown = f"{svc_ref.get('name', '')}:{port.get('number') or port.get('name') or ''}"
    svc = next((s for s in services if _meta(s).get("name") == svc_ref.get("name")), None)
    if svc is None:
        return f'{shown} (<error: services "{svc_ref.get("name", "")}" not found>)'
    sp_name = ""
    for sp in _spec(svc).get("ports") or []:
        if (port.get("number") and port["number"] == sp.get("port")) or (port.get("name") and port["name"] == sp.get("name")):
            sp_name = sp.get("name") or ""
    own = [sl for sl in slices if (_meta(sl).get("labels") or {}).get("kubernetes.io/service-name") == svc_ref.get("name")]
    return f"{shown} ({_format_slices(own, sp_name)})"


def describe_ingress(ing: Mapping, services: Sequence[Mapping] = (), slices: Sequence[Mapping] = (),
                     events: Sequence[Mapping] | None = (), *, now: _dt.datetime | None = None) -> str:
    """``kubectl describe ingress`` (*services*/*slices*: those of the Ingress's namespace)."""
    now = _now(now)
    m, spec = _meta(ing), _spec(ing)
    ns = m.get("namespace", "")
    w = _W()
    w.write(f"Name:\t{m.get('name', '')}\n")
    _labels(w, "Labels", m.get("labels"))
    w.write(f"Namespace:\t{ns}\n")
    w.write(f"Address:\t{_lb_status_string(ing, True)}\n")
    w.write(f"Ingress Class:\t{spec.get('ingressClassName') or NONE}\n")
    default = "<default>"
    if spec.get("defaultBackend"):
        default = _ingress_backend(ns, spec["defaultBackend"], services, slices)
    w.write(f"Default backend:\t{default}\n")
    if spec.get("tls"):
        w.write("TLS:\n")
        for t in spec["tls"]:
            hosts = ",".join(t.get("hosts") or [])
            w.write(f"  {t['secretName']} terminates {hosts}\n" if t.get("secretName") else f"  SNI routes {hosts}\n")
    w.write("Rules:\n  Host\tPath\tBackends\n")
    w.write("  ----\t----\t--------\n")
    count = 0
    for rule in spec.get("rules") or []:
        if not rule.get("http"):
            continue
        count += 1
        w.write(f"  {rule.get('host') or '*'}\t\n")
        for p in rule["http"].get("paths") or []:
            w.write(f"    \t{p.get('path', '')} \t{_ingress_backend(ns, p.get('backend') or {}, services, slices)}\n")
    if count == 0:
        w.write(f"  *\t*\t{default}\n")
    _annotations(w, "Annotations", m.get("annotations"))
    describe_events(w, None if events is None else list(events), now)
    return w.render()


# --- Pod -------------------------------------------------------------------------------


def _go_slice(items: Sequence[Any]) -> str:
    return "[" + " ".join(str(i) for i in items) + "]"


def _probe(probe: Mapping) -> str:
    attrs = (f"delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s "
             f"period={probe.get('periodSeconds', 10)}s #success={probe.get('successThreshold', 1)} "
             f"#failure={probe.get('failureThreshold', 3)}")
    if probe.get("exec") is not None:
        return f"exec {_go_slice(probe['exec'].get('command') or [])} {attrs}"
    if probe.get("httpGet") is not None:
        h = probe["httpGet"]
        scheme = (h.get("scheme") or "HTTP").lower()
        url = f"{scheme}://{h.get('host', '')}:{h.get('port', '')}{h.get('path', '')}"
        return f"http-get {url} {attrs}"
    if probe.get("tcpSocket") is not None:
        t = probe["tcpSocket"]
        return f"tcp-socket {t.get('host', '')}:{t.get('port', '')} {attrs}"
    if probe.get("grpc") is not None:
        return f"grpc <pod>:{probe['grpc'].get('port')} {probe['grpc'].get('service', '')} {attrs}"
    return f"unknown {attrs}"


def _field_value(pod: Mapping, path: str) -> str:
    m, spec, st = _meta(pod), _spec(pod), _status(pod)
    return {
        "metadata.name": m.get("name", ""), "metadata.namespace": m.get("namespace", ""),
        "metadata.uid": m.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": st.get("podIP", ""),
        "status.hostIP": st.get("hostIP", ""),
    }.get(path, "")


def _describe_state(w: _W, name: str, state: Mapping) -> None:
    if state.get("running") is not None:
        w.write(f"{L2}{name}:\tRunning\n")
        w.write(f"{L3}Started:\t{_rfc1123z(state['running'].get('startedAt'))}\n")
    elif state.get("waiting") is not None:
        w.write(f"{L2}{name}:\tWaiting\n")
        if state["waiting"].get("reason"):
            w.write(f"{L3}Reason:\t{state['waiting']['reason']}\n")
    elif state.get("terminated") is not None:
        t = state["terminated"]
        w.write(f"{L2}{name}:\tTerminated\n")
        if t.get("reason"):
            w.write(f"{L3}Reason:\t{t['reason']}\n")
        if t.get("message"):
            w.write(f"{L3}Message:\t{t['message']}\n")
        w.write(f"{L3}Exit Code:\t{t.get('exitCode', 0)}\n")
        if t.get("signal"):
            w.write(f"{L3}Signal:\t{t['signal']}\n")
        w.write(f"{L3}Started:\t{_rfc1123z(t.get('startedAt'))}\n")
        w.write(f"{L3}Finished:\t{_rfc1123z(t.get('finishedAt'))}\n")
    else:
        w.write(f"{L2}{name}:\tWaiting\n")


def _describe_containers(w: _W, label: str, pod: Mapping, containers: Sequence[Mapping],
                         statuses: Sequence[Mapping]) -> None:
    by_name = {s.get("name"): s for s in statuses or []}
    if not containers:
        w.write(f"{label}: <none>\n")
        return
    w.write(f"{label}:\n")
    for c in containers:
        s = by_name.get(c.get("name"))
        w.write(f"{L1}{c.get('name', '')}:\n")
        if s is not None:
            w.write(f"{L2}Container ID:\t{s.get('containerID', '')}\n")
        w.write(f"{L2}Image:\t{c.get('image', '')}\n")
        if s is not None:
            w.write(f"{L2}Image ID:\t{s.get('imageID', '')}\n")
        ports = c.get("ports") or []
        port_s = ", ".join(f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in ports)
        host_s = ", ".join(f"{p.get('hostPort') or 0}/{p.get('protocol') or 'TCP'}" for p in ports)
        w.write(f"{L2}Ports:\t{port_s}\n" if "," in port_s else f"{L2}Port:\t{port_s or NONE}\n")
        w.write(f"{L2}Host Ports:\t{host_s}\n" if "," in host_s else f"{L2}Host Port:\t{host_s or NONE}\n")
        if c.get("restartPolicy"):
            w.write(f"{L2}Restart Policy:\t{c['restartPolicy']}\n")
        if c.get("command"):
            w.write(f"{L2}Command:\n")
            for x in c["command"]:
                for line in str(x).split("\n"):
                    w.write(f"{L3}{line}\n")
        if c.get("args"):
            w.write(f"{L2}Args:\n")
            for x in c["args"]:
                for line in str(x).split("\n"):
                    w.write(f"{L3}{line}\n")
        if s is not None:
            _describe_state(w, "State", s.get("state") or {})
            last = s.get("lastState") or {}
            if last.get("terminated") is not None:
                _describe_state(w, "Last State", last)
            w.write(f"{L2}Ready:\t{'True' if s.get('ready') else 'False'}\n")
            w.write(f"{L2}Restart Count:\t{s.get('restartCount', 0)}\n")
        res = c.get("resources") or {}
        for title in ("limits", "requests"):
            vals = res.get(title) or {}
            if vals:
                w.write(f"{L2}{title.capitalize()}:\n")
                for k in sorted(vals):
                    w.write(f"{L3}{k}:\t{vals[k]}\n")
        for kind in ("liveness", "readiness", "startup"):
            pr = c.get(f"{kind}Probe")
            if pr:
                w.write(f"{L2}{kind.capitalize()}:\t{_probe(pr)}\n")
        env = c.get("env") or []
        w.write(f"{L2}Environment:{'' if env else chr(9) + NONE}\n")
        for e in env:
            vf = e.get("valueFrom")
            if vf is None:
                for i, line in enumerate(str(e.get("value", "")).split("\n")):
                    w.write(f"{L3}{e.get('name')}:\t{line}\n" if i == 0 else f"{L3}\t{line}\n")
            elif vf.get("fieldRef"):
                fr = vf["fieldRef"]
                w.write(f"{L3}{e.get('name')}:\t{_field_value(pod, fr.get('fieldPath', ''))} "
                        f"({fr.get('apiVersion', 'v1')}:{fr.get('fieldPath', '')})\n")
            elif vf.get("configMapKeyRef"):
                r = vf["configMapKeyRef"]
                w.write(f"{L3}{e.get('name')}:\t<set to the key '{r.get('key')}' of config map '{r.get('name')}'>"
                        f"\tOptional: {str(bool(r.get('optional'))).lower()}\n")
            elif vf.get("secretKeyRef"):
                r = vf["secretKeyRef"]
                w.write(f"{L3}{e.get('name')}:\t<set to the key '{r.get('key')}' in secret '{r.get('name')}'>"
                        f"\tOptional: {str(bool(r.get('optional'))).lower()}\n")
            else:
                w.write(f"{L3}{e.get('name')}:\t\n")
        mounts = sorted(c.get("volumeMounts") or [], key=lambda v: v.get("mountPath", ""))
        w.write(f"{L2}Mounts:{'' if mounts else chr(9) + NONE}\n")
        for v in mounts:
            flags = ["ro" if v.get("readOnly") else "rw"]
            if v.get("subPath"):
                flags.append(f"path=\"{v['subPath']}\"")
            w.write(f"{L3}{v.get('mountPath')} from {v.get('name')} ({','.join(flags)})\n")


def _describe_volumes(w: _W, volumes: Sequence[Mapping]) -> None:
    if not volumes:
        w.write("Volumes:\t<none>\n")
        return
    w.write("Volumes:\n")
    for v in volumes:
        w.write(f"{L1}{v.get('name')}:\n")
        if v.get("hostPath") is not None:
            hp = v["hostPath"]
            w.write(f"{L2}Type:\tHostPath (bare host directory volume)\n")
            w.write(f"{L2}Path:\t{hp.get('path', '')}\n")
            w.write(f"{L2}HostPathType:\t{hp.get('type', '')}\n")
        elif v.get("emptyDir") is not None:
            ed = v["emptyDir"]
            w.write(f"{L2}Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n")
            w.write(f"{L2}Medium:\t{ed.get('medium', '')}\n")
            w.write(f"{L2}SizeLimit:\t{ed.get('sizeLimit') or '<unset>'}\n")
        elif v.get("configMap") is not None:
            cm = v["configMap"]
            w.write(f"{L2}Type:\tConfigMap (a volume populated by a ConfigMap)\n")
            w.write(f"{L2}Name:\t{cm.get('name', '')}\n")
            w.write(f"{L2}Optional:\t{str(bool(cm.get('optional'))).lower()}\n")
        elif v.get("secret") is not None:
            sec = v["secret"]
            w.write(f"{L2}Type:\tSecret (a volume populated by a Secret)\n")
            w.write(f"{L2}SecretName:\t{sec.get('secretName', '')}\n")
            w.write(f"{L2}Optional:\t{str(bool(sec.get('optional'))).lower()}\n")
        else:
            w.write(f"{L2}<unknown>\n")


def _tolerations(w: _W, tolerations: Sequence[Mapping]) -> None:
    w.write("Tolerations:\t")
    if not tolerations:
        w.write("<none>\n")
        return
    for i, t in enumerate(sorted(tolerations, key=lambda t: t.get("key") or "")):
        if i:
            w.write("\t")
        s = t.get("key") or ""
        if t.get("value"):
            s += f"={t['value']}"
        if t.get("effect"):
            s += f":{t['effect']}"
        if t.get("operator") == "Exists" and not t.get("value"):
            s += " op=Exists" if (t.get("key") or t.get("effect")) else "op=Exists"
        if t.get("tolerationSeconds") is not None:
            s += f" for {t['tolerationSeconds']}s"
        w.write(s + "\n")


def _qos(pod: Mapping) -> str:
    if _status(pod).get("qosClass"):
        return _status(pod)["qosClass"]
    cs = _spec(pod).get("containers") or []
    res = [c.get("resources") or {} for c in cs]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    if all((r.get("limits") or {}).get("cpu") and (r.get("limits") or {}).get("memory")
           and (r.get("requests") or r.get("limits")) == r.get("limits") for r in res):
        return "Guaranteed"
    return "Burstable"


def describe_pod(pod: Mapping, events: Sequence[Mapping] | None = (), *, now: _dt.datetime | None = None) -> str:
    """``kubectl describe pod`` (*events*: the pod's events; None omits the section)."""
    now = _now(now)
    m, spec, st = _meta(pod), _spec(pod), _status(pod)
    w = _W()
    w.write(f"Name:\t{m.get('name', '')}\n")
    w.write(f"Namespace:\t{m.get('namespace', '')}\n")
    if spec.get("priority") is not None:
        w.write(f"Priority:\t{spec['priority']}\n")
    if spec.get("priorityClassName"):
        w.write(f"Priority Class Name:\t{spec['priorityClassName']}\n")
    if spec.get("runtimeClassName"):
        w.write(f"Runtime Class Name:\t{spec['runtimeClassName']}\n")
    if spec.get("serviceAccountName"):
        w.write(f"Service Account:\t{spec['serviceAccountName']}\n")
    if spec.get("nodeName"):
        w.write(f"Node:\t{spec['nodeName']}/{st.get('hostIP', '')}\n")
    else:
        w.write("Node:\t<none>\n")
    if st.get("startTime"):
        w.write(f"Start Time:\t{_rfc1123z(st['startTime'])}\n")
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    if m.get("deletionTimestamp") and st.get("phase") not in ("Failed", "Succeeded"):
        t = parse_time(m["deletionTimestamp"])
        left = human_duration((t - now).total_seconds()) if t else "<unknown>"
        w.write(f"Status:\tTerminating (lasts {left})\n")
        w.write(f"Termination Grace Period:\t{m.get('deletionGracePeriodSeconds', 0)}s\n")
    else:
        w.write(f"Status:\t{st.get('phase', '')}\n")
    if st.get("reason"):
        w.write(f"Reason:\t{st['reason']}\n")
    if st.get("message"):
        w.write(f"Message:\t{st['message']}\n")
    w.write(f"IP:\t{st.get('podIP', '')}\n")
    ips = st.get("podIPs") or []
    if not ips:
        w.write("IPs:\t<none>\n")
    else:
        w.write("IPs:\n")
        for i in ips:
            w.write(f"{L1}IP:\t{i.get('ip', '')}\n")
    for ref in m.get("ownerReferences") or []:
        if ref.get("controller"):
            w.write(f"Controlled By:\t{ref.get('kind')}/{ref.get('name')}\n")
            break
    if st.get("nominatedNodeName"):
        w.write(f"NominatedNodeName:\t{st['nominatedNodeName']}\n")
    if spec.get("initContainers"):
        _describe_containers(w, "Init Containers", pod, spec["initContainers"], st.get("initContainerStatuses") or [])
    _describe_containers(w, "Containers", pod, spec.get("containers") or [], st.get("containerStatuses") or [])
    if spec.get("readinessGates"):
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        w.write("Readiness Gates:\n  Type\tStatus\n")
        for g in spec["readinessGates"]:
            w.write(f"{L1}{g.get('conditionType')} \t{conds.get(g.get('conditionType'), '<none>')} \n")
    if st.get("conditions"):
        w.write("Conditions:\n  Type\tStatus\n")
        for c in st["conditions"]:
            w.write(f"{L1}{c.get('type')} \t{c.get('status')} \n")
    _describe_volumes(w, spec.get("volumes") or [])
    w.write(f"QoS Class:\t{_qos(pod)}\n")
    _labels(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, spec.get("tolerations") or [])
    describe_events(w, None if events is None else list(events), now)
    return w.render()
