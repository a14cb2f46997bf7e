"""Pure planning for the kubelet: a pod's network plan, its containers' environment and log
paths, and which program a container runs. Nothing here touches the kernel."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from .. import naming, state
from ..plan import Plan, PodPlan

ANN_READY = "testbed.io/ready"
ANN_KILL = "testbed.io/kill"
ANN_BACKOFF = "testbed.io/restart-backoff-seconds"

PROCESS = "process"
DEFAULT_WORKLOAD = "echo"
# Image repository (without tag or digest) -> the testbed's built-in program for it, whose
# launcher is registered under the same name in ``workloads.launchers``. Any image not listed
# that has neither ``command`` nor ``args`` runs the default echo workload (the testbed/echo
# images among them), so the echo image needs no entry of its own.
BUILTIN_IMAGES: dict[str, str] = {}


@dataclass(frozen=True)
class Program:
    """What runs for a container: ``kind`` names the launcher (``process`` or a built-in
    workload); ``argv`` is the command line of a process, the arguments of a built-in."""

    kind: str
    argv: tuple[str, ...] = ()


def image_repository(image: str | None) -> str:
    """``registry.k8s.io/coredns/coredns:v1.11.1`` -> ``registry.k8s.io/coredns/coredns``."""
    name = (image or "").split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


def program_for(spec: dict) -> Program:
    """The one decision of which program a container runs, as a runtime resolves an image's
    entrypoint: ``command`` replaces the image's program; otherwise a built-in image runs its
    workload with ``args``; otherwise ``args`` alone are the command line."""
    command = tuple(str(a) for a in spec.get("command") or [])
    args = tuple(str(a) for a in spec.get("args") or [])
    if command:
        return Program(PROCESS, command + args)
    builtin = BUILTIN_IMAGES.get(image_repository(spec.get("image")))
    if builtin is not None:
        return Program(builtin, args)
    if args:
        return Program(PROCESS, args)
    return Program(DEFAULT_WORKLOAD)


def pod_ports(pod: dict) -> list[tuple[int, str]]:
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                ports.append((int(p["containerPort"]), p.get("protocol") or "TCP"))
    return ports or [(8080, "TCP")]


def image_version(image: str | None) -> str:
    """The workload variant of an image: its tag (``testbed/echo:v2`` -> ``v2``), ``v1`` without one."""
    tail = (image or "").rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else "v1"


def pod_version(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return image_version(containers[0].get("image"))


def pod_plan(plan: Plan, pod: dict, ip: str | None = None) -> PodPlan:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    node = plan.node(spec["nodeName"])
    ip = ip or (pod.get("status") or {}).get("podIP")
    ns, name = meta.get("namespace", "default"), meta["name"]
    return PodPlan(ns, name, node.name, naming.pod_netns(plan.cluster, ns, name), ip, naming.pod_mac(ip),
                   naming.host_veth(plan.cluster, ns, name), naming.host_veth_mac(ip), node.cni_ip,
                   ipaddress.IPv4Network(node.pod_cidr).prefixlen, node.mtu)


def log_path(cluster: str, namespace: str, pod: str, container: str) -> str:
    return os.path.join(state.directory(cluster), "logs", f"{namespace}_{pod}_{container}.log")


def container_env(pod: dict, ctr: dict, ip: str | None, node_ip: str | None) -> dict[str, str]:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOSTNAME": meta.get("name", ""), "HOME": "/root"}
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "default"),
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": ip or "",
              "status.hostIP": node_ip or ""}
    for e in ctr.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        if "value" in e:
            env[name] = str(e.get("value") or "")
        elif ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") in fields:
            env[name] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env



# -- the sandbox: pure renderings of what a container sees ------------------------------------

CLUSTER_DOMAIN = "cluster.local"
# Linux capability numbers (include/uapi/linux/capability.h), by the names Kubernetes uses
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
                "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
                "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
                "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
                "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
# containerd's and CRI-O's default set for a container without securityContext.capabilities
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
HOSTS_HEADER = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def _cap_number(name: str, where: str) -> int:
    n = str(name).upper().removeprefix("CAP_")
    if n not in CAPABILITIES:
        raise ValueError(f"{where}: unknown capability {name!r}; allowed: ALL or {', '.join(CAPABILITIES)}")
    return CAPABILITIES.index(n)


def security_context(pod: dict, ctr: dict) -> dict:
    """The container's securityContext over the pod's (runAsUser/runAsGroup are inherited)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = dict(ctr.get("securityContext") or {})
    for k in ("runAsUser", "runAsGroup"):
        if sc.get(k) is None and pod_sc.get(k) is not None:
            sc[k] = pod_sc[k]
    if pod_sc.get("supplementalGroups") and "supplementalGroups" not in sc:
        sc["supplementalGroups"] = pod_sc["supplementalGroups"]
    return sc


def capabilities(sc: dict, last_cap: int = len(CAPABILITIES) - 1) -> list[int]:
    """The capability set of a container: every one when privileged, otherwise the runtime's
    default set with ``capabilities.add`` then ``capabilities.drop`` applied (``ALL`` allowed)."""
    every = set(range(last_cap + 1))
    if sc.get("privileged"):
        return sorted(every)
    caps = {CAPABILITIES.index(c) for c in DEFAULT_CAPABILITIES}
    spec = sc.get("capabilities") or {}
    for name in spec.get("add") or []:
        caps = every if str(name).upper() == "ALL" else caps | {_cap_number(name, "securityContext.capabilities.add")}
    for name in spec.get("drop") or []:
        caps = set() if str(name).upper() == "ALL" else caps - {_cap_number(name, "securityContext.capabilities.drop")}
    return sorted(caps & every)


def pod_hostname(pod: dict) -> str:
    """``spec.hostname`` or the pod's name, cut to a DNS label as the kubelet does."""
    spec = pod.get("spec") or {}
    return (spec.get("hostname") or pod["metadata"]["name"])[:63].rstrip("-.")


def etc_hosts(pod: dict, ip: str | None) -> str:
    """The kubelet's managed /etc/hosts: localhost lines, the pod's own name (with its FQDN when
    it has a subdomain) and the pod's hostAliases."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    out = HOSTS_HEADER
    if ip:
        host = pod_hostname(pod)
        sub = spec.get("subdomain")
        names = [f"{host}.{sub}.{meta.get('namespace', 'default')}.svc.{CLUSTER_DOMAIN}", host] if sub else [host]
        out += f"{ip}\t{chr(9).join(names)}\n"
    aliases = [a for a in spec.get("hostAliases") or [] if a.get("ip") and a.get("hostnames")]
    if aliases:
        out += "\n# Entries added by HostAliases.\n"
        out += "".join(f"{a['ip']}\t{chr(9).join(a['hostnames'])}\n" for a in aliases)
    return out


def cluster_dns_ip(service_network: str) -> str:
    """The cluster DNS Service's address: the service network's 10th (10.96.0.10)."""
    return str(ipaddress.ip_network(service_network)[10])


def _parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    ns, search, opts = [], [], []
    for line in text.splitlines():
        f = line.split("#", 1)[0].split()
        if not f:
            continue
        if f[0] == "nameserver" and len(f) > 1:
            ns.append(f[1])
        elif f[0] in ("search", "domain"):
            search = f[1:]
        elif f[0] == "options":
            opts.extend(f[1:])
    return ns, search, opts


def resolv_conf(pod: dict, service_network: str, node_resolv: str) -> str:
    """/etc/resolv.conf by ``dnsPolicy`` (ClusterFirst when unset), with ``dnsConfig`` merged in:
    ClusterFirst (and ClusterFirstWithHostNet) use the cluster DNS, Default the node's file,
    None only ``dnsConfig``. A hostNetwork pod with ClusterFirst gets the node's, as upstream."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        ns = meta.get("namespace", "default")
        servers = [cluster_dns_ip(service_network)]
        search = [f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]
        opts = ["ndots:5"]
    elif policy == "Default":
        servers, search, opts = _parse_resolv(node_resolv)
    else:
        servers, search, opts = [], [], []
    cfg = spec.get("dnsConfig") or {}
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    search += [s for s in cfg.get("searches") or [] if s not in search]
    merged = {o.split(":", 1)[0]: o for o in opts}
    for o in cfg.get("options") or []:
        merged[o["name"]] = f"{o['name']}:{o['value']}" if o.get("value") not in (None, "") else o["name"]
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {s}" for s in servers[:3]]  # glibc reads three
    lines += [f"options {' '.join(merged.values())}"] if merged else []
    return "\n".join(lines) + "\n"


def sandbox_spec(pod: dict, ctr: dict, *, cgroup: str, files: dict[str, str], hide: list[str],
                 last_cap: int = len(CAPABILITIES) - 1) -> dict:
    """What ``testbed.sandbox`` makes of a container: cgroup, hostname, the pod's own files
    bind-mounted over the host's (``files``: target -> source), directories hidden, and the
    credentials (capability set, user, group, umask 022 as container runtimes use)."""
    sc = security_context(pod, ctr)
    return {"cgroup": cgroup, "hostname": pod_hostname(pod), "files": dict(files), "hide": list(hide),
            "capabilities": capabilities(sc, last_cap), "uid": sc.get("runAsUser"), "gid": sc.get("runAsGroup"),
            "groups": [int(g) for g in sc.get("supplementalGroups") or []], "umask": 0o022,
            "cwd": ctr.get("workingDir") or None}
