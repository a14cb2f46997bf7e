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
ECHOSERVER = "echoserver"
INGRESS_NGINX = "ingress-nginx"
# Image repository (without tag or digest) -> the testbed's built-in program for it, whose
# launcher is registered under the same name in ``workloads.launchers``. Any image not listed
# that has neither ``command`` nor ``args`` runs the default echo workload (the testbed/echo
# images among them), so the echo image needs no entry of its own.
COREDNS = "coredns"
CLUSTER_DOMAIN = "cluster.local"
# kubelet's limits (pkg/kubelet/network/dns): glibc reads at most 3 nameservers and 32 search paths
MAX_NAMESERVERS = 3
MAX_SEARCH = 32
BUILTIN_IMAGES: dict[str, str] = {
    "registry.k8s.io/coredns/coredns": COREDNS,
    # ingress tutorials' backend: the default workload answering every path with the request
    "registry.k8s.io/echoserver": ECHOSERVER,
    # the testbed's ingress-nginx equivalent (real nginx in the pod's namespace)
    "registry.k8s.io/ingress-nginx/controller": INGRESS_NGINX,
}
# Kinds stopped as a process is: SIGTERM, then SIGKILL once the grace period is over (the ingress
# controller then stops nginx gracefully, so in-flight requests finish).
PROCESS_KINDS = frozenset({PROCESS, INGRESS_NGINX})


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


def previous_log(path: str) -> str:
    """Where a container's log is kept when the container restarts: the previous instance's
    output, what ``kubectl logs --previous`` shows (the kubelet keeps one, as upstream's
    does after the pod's last restart)."""
    return path[:-len(".log")] + ".previous.log" if path.endswith(".log") else path + ".previous"


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



def cluster_dns(plan: Plan) -> str:
    """The kubelet's ``clusterDNS``: kube-dns at the service network's 10th address (kubeadm's)."""
    return str(ipaddress.IPv4Network(plan.service_network)[10])


def host_nameserver(plan: Plan) -> str:
    """What a node's own /etc/resolv.conf names: the underlay's resolver (on its gateway)."""
    return plan.underlay.gateway


def resolv_conf(pod: dict, cluster_dns_ip: str, host_ns: str, domain: str = CLUSTER_DOMAIN) -> str:
    """A pod's /etc/resolv.conf by ``dnsPolicy``, as the kubelet writes it
    (``pkg/kubelet/network/dns/dns.go``: ClusterFirst, ClusterFirstWithHostNet, Default, None
    plus ``dnsConfig`` merged: nameservers and searches appended, options overriding by name)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_net = bool(spec.get("hostNetwork"))
    ns = meta.get("namespace", "default")
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_net):
        servers = [cluster_dns_ip]
        search = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
        options = {"ndots": "5"}
    elif policy == "None":
        servers, search, options = [], [], {}
    else:  # Default, and ClusterFirst on the host network: the node's resolver
        servers, search, options = [host_ns], [], {}
    cfg = spec.get("dnsConfig") or {}
    servers += [str(s) for s in cfg.get("nameservers") or []]
    search += [str(s) for s in cfg.get("searches") or []]
    for opt in cfg.get("options") or []:
        if opt.get("name"):
            options[str(opt["name"])] = None if opt.get("value") is None else str(opt["value"])
    lines = [f"nameserver {s}" for s in dict.fromkeys(servers)][:MAX_NAMESERVERS]
    if search:
        lines.insert(0, "search " + " ".join(list(dict.fromkeys(search))[:MAX_SEARCH]))
    if options:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


def pod_hostname(pod: dict, domain: str = CLUSTER_DOMAIN) -> tuple[str, str]:
    """(hostname, FQDN): ``spec.hostname`` or the pod name; with ``spec.subdomain`` the FQDN is
    ``<hostname>.<subdomain>.<ns>.svc.<domain>`` (the headless Service's per-pod name)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    host = (spec.get("hostname") or meta.get("name", ""))[:63].rstrip("-.")  # a DNS label, as the kubelet cuts it
    sub = spec.get("subdomain")
    fqdn = f"{host}.{sub}.{meta.get('namespace', 'default')}.svc.{domain}" if sub else host
    return host, fqdn


def hosts_file(pod: dict, ip: str | None, domain: str = CLUSTER_DOMAIN) -> str:
    """A pod's /etc/hosts as the kubelet manages it: localhost, the pod's IP with its names,
    then ``hostAliases``."""
    host, fqdn = pod_hostname(pod, domain)
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix",
             "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    if ip:
        lines.append(f"{ip}\t{fqdn}\t{host}" if fqdn != host else f"{ip}\t{host}")
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for a in aliases:
            lines.append(f"{a.get('ip')}\t" + "\t".join(a.get("hostnames") or []))
    return "\n".join(lines) + "\n"


# -- the sandbox: pure renderings of what a container sees ------------------------------------

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
    default set, as containerd applies ``capabilities``: ``add: [ALL]`` gives every one,
    ``drop: [ALL]`` then none, then the named ones are added and the named ones dropped (so
    upstream's ``drop: [ALL], add: [NET_BIND_SERVICE]`` keeps just that one)."""
    every = set(range(last_cap + 1))
    if sc.get("privileged"):
        return sorted(every)
    caps = {CAPABILITIES.index(c) for c in DEFAULT_CAPABILITIES}
    spec = sc.get("capabilities") or {}
    add, drop = list(spec.get("add") or []), list(spec.get("drop") or [])
    if any(str(n).upper() == "ALL" for n in add):
        caps = set(every)
    if any(str(n).upper() == "ALL" for n in drop):
        caps = set()
    for name in add:
        if str(name).upper() != "ALL":
            caps |= {_cap_number(name, "securityContext.capabilities.add")}
    for name in drop:
        if str(name).upper() != "ALL":
            caps -= {_cap_number(name, "securityContext.capabilities.drop")}
    return sorted(caps & every)


def sandbox_spec(pod: dict, ctr: dict, *, cgroup: str, files: dict[str, str], hide: list[str],
                 last_cap: int = len(CAPABILITIES) - 1, binds: list[tuple[str, str]] = ()) -> dict:
    """What ``testbed.sandbox`` makes of a container: cgroup, hostname, the pod's own files
    bind-mounted over the host's (``files``: target -> source), directories hidden, paths inside
    them shown again (``binds``: (source, target), only when given), and the credentials
    (capability set, user, group, umask 022 as container runtimes use)."""
    sc = security_context(pod, ctr)
    return {"cgroup": cgroup, "hostname": pod_hostname(pod)[0], "files": dict(files), "hide": list(hide),
            **({"binds": [list(b) for b in binds]} if binds else {}),
            "capabilities": capabilities(sc, last_cap), "uid": sc.get("runAsUser"), "gid": sc.get("runAsGroup"),
            "groups": [int(g) for g in sc.get("supplementalGroups") or []], "umask": 0o022,
            "cwd": ctr.get("workingDir") or None}
