"""``kubectl get`` output: tables with kubectl's columns, ``-o json`` and ``-o yaml``.

Ported from ``k8s.io/kubernetes/pkg/printers/internalversion/printers.go`` (column
definitions and cell functions), ``apimachinery/pkg/util/duration.HumanDuration`` (ages)
and ``cli-runtime``'s tabwriter settings (3 spaces between columns). All functions are
pure: pass ``now`` for reproducible ages.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from .resources import resolve
from .table import format_rows

NONE = "<none>"


# --- time ------------------------------------------------------------------------------


def parse_time(value: Any) -> _dt.datetime | None:
    """An RFC 3339 timestamp (``2024-05-01T12:00:00Z``, with fraction/offset) or None."""
    if not value:
        return None
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    s = str(value).strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        t = _dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration``: ``5s``, ``119s``, ``3m2s``, ``15m``, ``4h5m``, ``20h``,
    ``3d4h``, ``30d``, ``2y5d``, ``9y``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _now(now: _dt.datetime | None) -> _dt.datetime:
    if now is None:
        return _dt.datetime.now(_dt.timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=_dt.timezone.utc)


def age(timestamp: Any, now: _dt.datetime | None = None) -> str:
    """``translateTimestampSince``: ``<unknown>`` without a timestamp."""
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((_now(now) - t).total_seconds())


# --- helpers ---------------------------------------------------------------------------


def _meta(o: Mapping) -> Mapping:
    return o.get("metadata") or {}


def _spec(o: Mapping) -> Mapping:
    return o.get("spec") or {}


def _status(o: Mapping) -> Mapping:
    return o.get("status") or {}


def format_labels(labels: Mapping | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v,...`` or ``<none>``."""
    if not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(sel: Mapping | None) -> str:
    """``metav1.FormatLabelSelector``."""
    if sel is None:
        return NONE
    reqs = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        if op == "In":
            reqs.append((k, f"{k} in ({','.join(vals)})"))
        elif op == "NotIn":
            reqs.append((k, f"{k} notin ({','.join(vals)})"))
        elif op == "Exists":
            reqs.append((k, k))
        elif op == "DoesNotExist":
            reqs.append((k, f"!{k}"))
    reqs.sort(key=lambda r: r[0])
    return ",".join(r for _, r in reqs) or NONE


def _join_host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _list_with_more(items: list[str], more: bool, count: int, max_: int, empty: str = "<unset>") -> str:
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - max_} more..."
    return ret or empty


# --- cells -----------------------------------------------------------------------------


def pod_cells(pod: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    spec, st = _spec(pod), _status(pod)
    restarts = 0
    total = len(spec.get("containers") or [])
    ready_n = 0
    last_restart: _dt.datetime | None = None
    reason = st.get("reason") or st.get("phase") or ""
    for c in st.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = spec.get("initContainers") or []
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    initializing = False
    init_restarts = 0
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if lt and parse_time(lt) and (last_restart is None or parse_time(lt) > last_restart):
            last_restart = parse_time(lt)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if cs.get("name") in sidecars:
            init_restarts += int(cs.get("restartCount") or 0)
            if cs.get("started") and state.get("running") is not None:
                continue
        if term is not None and term.get("exitCode") == 0:
            continue
        if term is not None:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
        elif wait is not None and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in st.get("conditions") or [])
    if not initializing or initialized:
        restarts = init_restarts
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if lt and parse_time(lt) and (last_restart is None or parse_time(lt) > last_restart):
                last_restart = parse_time(lt)
            state = cs.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready_n += 1
        if reason == "Completed" and has_running:
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            reason = "Running" if ready else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        if st.get("reason") == "NodeLost":
            reason = "Unknown"
        elif st.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_s = str(restarts)
    if restarts and last_restart is not None:
        restarts_s = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    cells = [_meta(pod).get("name", ""), f"{ready_n}/{total}", reason, restarts_s,
             age(_meta(pod).get("creationTimestamp"), now)]
    if wide:
        gates = spec.get("readinessGates") or []
        gates_s = NONE
        if gates:
            conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
            ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
            gates_s = f"{ok}/{len(gates)}"
        cells += [st.get("podIP") or NONE, spec.get("nodeName") or NONE,
                  st.get("nominatedNodeName") or NONE, gates_s]
    return cells


def _lb_status_string(svc: Mapping, wide: bool) -> str:
    ingress = ((_status(svc).get("loadBalancer") or {}).get("ingress")) or []
    parts = []
    for i in ingress:
        if i.get("ip"):
            parts.append(i["ip"])
        elif i.get("hostname"):
            parts.append(i["hostname"])
    r = ",".join(parts)
    if not wide and len(r) > 16:
        r = r[:13] + "..."
    return r


def service_external_ip(svc: Mapping, wide: bool) -> str:
    spec = _spec(svc)
    t = spec.get("type") or "ClusterIP"
    ext = spec.get("externalIPs") or []
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else NONE
    if t == "LoadBalancer":
        lb = _lb_status_string(svc, wide)
        if ext:
            return ",".join(([lb] if lb else []) + list(ext))
        return lb or "<pending>"
    if t == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def service_ports(svc: Mapping) -> str:
    out = []
    for p in _spec(svc).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            out.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port')}/{proto}")
    return ",".join(out) or NONE


def service_cells(svc: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    spec = _spec(svc)
    cells = [_meta(svc).get("name", ""), spec.get("type") or "ClusterIP", spec.get("clusterIP") or NONE,
             service_external_ip(svc, wide), service_ports(svc), age(_meta(svc).get("creationTimestamp"), now)]
    if wide:
        cells.append(format_labels(spec.get("selector")))
    return cells


def format_endpoints(ep: Mapping, ports: set[str] | None = None, max_: int = 3) -> str:
    """``formatEndpoints``: ``10.244.1.2:8080,... + N more...`` (ready addresses only)."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return NONE
    out: list[str] = []
    more = False
    count = 0
    for ss in subsets:
        addrs = ss.get("addresses") or []
        if not ss.get("ports"):
            count += len(addrs)
            for a in addrs:
                if len(out) == max_:
                    more = True
                    break
                out.append(a.get("ip", ""))
            continue
        for p in ss["ports"]:
            if ports is None or (p.get("name") or "") in ports:
                count += len(addrs)
                for a in addrs:
                    if len(out) == max_:
                        more = True
                        break
                    out.append(_join_host_port(a.get("ip", ""), p.get("port")))
    ret = ",".join(out)
    if more:
        return f"{ret} + {count - max_} more..."
    return ret


def endpoints_cells(ep: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    return [_meta(ep).get("name", ""), format_endpoints(ep), age(_meta(ep).get("creationTimestamp"), now)]


def endpointslice_cells(sl: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    ports, more, count = [], False, 0
    for p in sl.get("ports") or []:
        if len(ports) < 3:
            if p.get("port") is not None:
                ports.append(str(p["port"]))
            elif p.get("name") is not None:
                ports.append(p["name"])
            else:
                ports.append("*")
        elif len(ports) == 3:
            more = True
        count += 1
    eps, emore, ecount = [], False, 0
    for e in sl.get("endpoints") or []:
        for a in e.get("addresses") or []:
            if len(eps) < 3:
                eps.append(a)
            elif len(eps) == 3:
                emore = True
            ecount += 1
    return [_meta(sl).get("name", ""), sl.get("addressType", ""), _list_with_more(ports, more, count, 3),
            _list_with_more(eps, emore, ecount, 3), age(_meta(sl).get("creationTimestamp"), now)]


def _containers_images(template_spec: Mapping) -> tuple[str, str]:
    cs = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def deployment_cells(d: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    spec, st = _spec(d), _status(d)
    desired = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    cells = [_meta(d).get("name", ""), f"{st.get('readyReplicas') or 0}/{desired}",
             str(st.get("updatedReplicas") or 0), str(st.get("availableReplicas") or 0),
             age(_meta(d).get("creationTimestamp"), now)]
    if wide:
        names, images = _containers_images(_spec(spec.get("template") or {}))
        cells += [names, images, format_label_selector(spec.get("selector"))]
    return cells


def replicaset_cells(rs: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    spec, st = _spec(rs), _status(rs)
    desired = spec.get("replicas") if spec.get("replicas") is not None else 1
    cells = [_meta(rs).get("name", ""), str(desired), str(st.get("replicas") or 0),
             str(st.get("readyReplicas") or 0), age(_meta(rs).get("creationTimestamp"), now)]
    if wide:
        names, images = _containers_images(_spec(spec.get("template") or {}))
        cells += [names, images, format_label_selector(spec.get("selector"))]
    return cells


def node_roles(node: Mapping) -> str:
    roles = set()
    for k, v in (_meta(node).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or NONE


def node_cells(node: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    st = _status(node)
    status = []
    for c in st.get("conditions") or []:
        if c.get("type") == "Ready":
            status = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if _spec(node).get("unschedulable"):
        status.append("SchedulingDisabled")
    info = st.get("nodeInfo") or {}
    cells = [_meta(node).get("name", ""), ",".join(status), node_roles(node),
             age(_meta(node).get("creationTimestamp"), now), info.get("kubeletVersion", "")]
    if wide:
        def addr(t: str) -> str:
            for a in st.get("addresses") or []:
                if a.get("type") == t:
                    return a.get("address", "")
            return NONE
        cells += [addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
                  info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]
    return cells


def event_source(ev: Mapping) -> str:
    src = ev.get("source") or {}
    comp, host = src.get("component") or "", src.get("host") or ""
    if not comp:
        comp, host = ev.get("reportingComponent") or ev.get("reportingController") or "", ev.get("reportingInstance") or ""
    return f"{comp}, {host}" if host else comp


def event_cells(ev: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    first = age(ev.get("firstTimestamp") or ev.get("eventTime"), now)
    last = age(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1
    series = ev.get("series")
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = series.get("count") or count
    io = ev.get("involvedObject") or {}
    target = f"{(io.get('kind') or '').lower()}/{io['name']}" if io.get("name") else (io.get("kind") or "").lower()
    msg = (ev.get("message") or "").strip()
    if wide:
        return [last, ev.get("type", ""), ev.get("reason", ""), target, io.get("fieldPath", ""),
                event_source(ev), msg, first, str(count), _meta(ev).get("name", "")]
    return [last, ev.get("type", ""), ev.get("reason", ""), target, msg]


def namespace_cells(ns: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    return [_meta(ns).get("name", ""), _status(ns).get("phase") or "Active", age(_meta(ns).get("creationTimestamp"), now)]


def ingress_hosts(ing: Mapping, max_: int = 3) -> str:
    """``formatHosts``: up to three hosts, ``*`` when no rule names one."""
    rules = _spec(ing).get("rules") or []
    hosts, more = [], False
    for r in rules:
        if len(hosts) == max_:
            more = True
        if not more and r.get("host"):
            hosts.append(r["host"])
    if not hosts:
        return "*"
    return ",".join(hosts) + (f" + {len(rules) - max_} more..." if more else "")


def ingress_cells(ing: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    spec = _spec(ing)
    return [_meta(ing).get("name", ""), spec.get("ingressClassName") or NONE, ingress_hosts(ing),
            _lb_status_string(ing, wide), "80, 443" if spec.get("tls") else "80",
            age(_meta(ing).get("creationTimestamp"), now)]


def ingress_class_cells(ic: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    params = _spec(ic).get("parameters")
    shown = NONE
    if params:
        group = params.get("apiGroup") or ""
        shown = f"{params.get('kind', '')}.{group}/{params.get('name', '')}" if group else \
            f"{params.get('kind', '')}/{params.get('name', '')}"
    return [_meta(ic).get("name", ""), _spec(ic).get("controller", ""), shown,
            age(_meta(ic).get("creationTimestamp"), now)]


def secret_cells(sec: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    return [_meta(sec).get("name", ""), sec.get("type", ""), str(len(sec.get("data") or {})),
            age(_meta(sec).get("creationTimestamp"), now)]


def config_map_cells(cm: Mapping, now: _dt.datetime, wide: bool) -> list[str]:
    return [_meta(cm).get("name", ""), str(len(cm.get("data") or {}) + len(cm.get("binaryData") or {})),
            age(_meta(cm).get("creationTimestamp"), now)]


# kind -> (columns, wide-only columns appended, cell function)
COLUMNS: dict[str, tuple[list[str], list[str], Callable[[Mapping, _dt.datetime, bool], list[str]]]] = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"], pod_cells),
    "Service": (["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], service_cells),
    "Endpoints": (["NAME", "ENDPOINTS", "AGE"], [], endpoints_cells),
    "EndpointSlice": (["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], [], endpointslice_cells),
    "Deployment": (["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"], deployment_cells),
    "ReplicaSet": (["NAME", "DESIRED", "CURRENT", "READY", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"], replicaset_cells),
    "Node": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], node_cells),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], [], event_cells),
    "Namespace": (["NAME", "STATUS", "AGE"], [], namespace_cells),
    "Ingress": (["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], [], ingress_cells),
    "IngressClass": (["NAME", "CONTROLLER", "PARAMETERS", "AGE"], [], ingress_class_cells),
    "Secret": (["NAME", "TYPE", "DATA", "AGE"], [], secret_cells),
    "ConfigMap": (["NAME", "DATA", "AGE"], [], config_map_cells),
}
_EVENT_WIDE = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"]
CLUSTER_SCOPED = {"Node", "Namespace", "IngressClass"}


def rows(kind: str, objects: Iterable[Mapping], *, wide: bool = False, all_namespaces: bool = False,
         now: _dt.datetime | None = None) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the table for *kind* (a kind or any name ``resolve`` accepts)."""
    kind = resolve(kind).kind
    cols, wide_cols, cells = COLUMNS[kind]
    header = list(cols) + (list(wide_cols) if wide else [])
    if kind == "Event" and wide:
        header = list(_EVENT_WIDE)
    t = _now(now)
    out = []
    ns_col = all_namespaces and kind not in CLUSTER_SCOPED
    for o in objects:
        r = cells(o, t, wide)
        if ns_col:
            r = [_meta(o).get("namespace", "")] + r
        out.append(r)
    if ns_col:
        header = ["NAMESPACE"] + header
    return header, out


def no_resources(namespace: str | None = None, kind: str | None = None) -> str:
    """kubectl's message for an empty list (it goes to stderr)."""
    if namespace and (kind is None or resolve(kind).kind not in CLUSTER_SCOPED):
        return f"No resources found in {namespace} namespace."
    return "No resources found"


def format_table(kind: str, objects: Iterable[Mapping], wide: bool = False, all_namespaces: bool = False,
                 now: _dt.datetime | None = None, *, no_headers: bool = False) -> str:
    """The text ``kubectl get KIND [-o wide] [-A]`` prints for *objects* (in the given order).
    An empty list gives "" (see :func:`no_resources` for kubectl's stderr message)."""
    header, body = rows(kind, objects, wide=wide, all_namespaces=all_namespaces, now=now)
    if not body:
        return ""
    return format_rows(header, body, no_headers=no_headers)


# --- -o json / -o yaml -----------------------------------------------------------------


def as_list(items: Sequence[Mapping]) -> dict:
    return {"apiVersion": "v1", "items": list(items), "kind": "List", "metadata": {"resourceVersion": ""}}


def _document(objects: Mapping | Sequence[Mapping], kind: str | None) -> Any:
    if isinstance(objects, Mapping):
        return _with_type(objects, kind)
    return as_list([_with_type(o, kind) for o in objects])


def _with_type(obj: Mapping, kind: str | None) -> Mapping:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:  # hidden, as kubectl does by default
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    if kind is None or (obj.get("kind") and obj.get("apiVersion")):
        return obj
    info = resolve(kind)
    out = {"apiVersion": obj.get("apiVersion") or info.api_version, "kind": obj.get("kind") or info.kind}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def to_json(objects: Mapping | Sequence[Mapping], kind: str | None = None) -> str:
    """``-o json``: a single object (a dict: ``kubectl get KIND NAME``) as itself; a sequence
    (``kubectl get KIND``) as a ``List``, as kubectl does even for one item. 4-space indent."""
    return json.dumps(_document(objects, kind), indent=4, ensure_ascii=False) + "\n"


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if dumper.resolve(yaml.ScalarNode, data, (True, False)) != "tag:yaml.org,2002:str":
        # a string that would read back as another type ("80", "true", a timestamp):
        # double-quoted, as kubectl (go-yaml) writes it
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(objects: Mapping | Sequence[Mapping], kind: str | None = None) -> str:
    """``-o yaml`` (keys sorted like kubectl's YAML, block style, no line wrapping)."""
    return yaml.dump(_document(objects, kind), Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30)
