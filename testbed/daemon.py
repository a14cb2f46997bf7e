"""The cluster's control plane as one background process (started by ``testbed up``).

    python -m testbed.daemon --cluster NAME [--ready-fd FD]

It holds the API store (the embedded one persisted in the state directory, or the cluster's
etcd as ``state.json`` records it: either survives a restart of this process), serves it on ``<state>/api.sock`` (a path-based unix socket: reachable from every
node namespace), and runs the controllers (endpoint slices, scheduler, load balancer, and the
load balancer's routes in the underlay: ``lbnet``), and supervises two processes per node, each
restarted if it dies (``proxy.supervisor``) and adopted, not restarted, by the next daemon: the
node's kubelet (``python -m testbed.kubelet``: its pods and their default workload, in the
cgroup ``kubelet.<node>``) and its kube-proxy, started inside the node's namespace with the
scenario's ``spec.proxy`` timing.  SIGTERM stops it; the kubelets, the pods and the proxies'
rules stay in place (``testbed down`` removes them), so the data path never waits for the
control plane.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid

from . import cgroups, exec, heap, naming, netns, state
from .apiserver import tls
from .apiserver.https import serve_https
from .apiserver.discovery import GIT_VERSION
from .apiserver.server import serve
from .apiserver.etcd import cluster as etcd_cluster
from .apiserver.store import Store
from .controllers.events import EventRecorder
from .controllers.manager import ControllerManager
from .k8s.admission import Admission
from .kubelet import plan as kubelet_plan
from .kubelet.sandbox import pod_command
from .lbnet import LoadBalancerRoutes
from .plan import Plan
from .proxy.supervisor import ProxySupervisor

log = logging.getLogger("testbed.daemon")

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def api_socket(cluster: str) -> str:
    return os.path.join(state.directory(cluster), "api.sock")


def pki_directory(cluster: str) -> str:
    return os.path.join(state.directory(cluster), "pki")


def serve_api_https(cluster: str, store, plan: Plan):
    """HTTPS for kubectl on a loopback port picked at the first start and kept across
    restarts (a kubeconfig written at ``up`` stays valid); ``pods/exec`` runs its command as
    ``testbed exec pod/...`` does, ``pods/portforward`` connects from inside the pod's namespace."""
    def dial(pod: dict, port: int) -> socket.socket:
        meta = pod["metadata"]
        return netns.run_in(naming.pod_netns(cluster, meta.get("namespace") or "default", meta["name"]),
                            socket.create_connection, ("127.0.0.1", port), 10)

    paths = tls.ensure(pki_directory(cluster), cluster)
    port = state.read_json(cluster, "state.json", {}).get("apiServerPort", 0)
    handle = serve_https(store, paths, port,
                         log_path=lambda ns, pod, container: kubelet_plan.log_path(cluster, ns, pod, container),
                         pod_exec=lambda pod, container, argv: pod_command(plan, pod, container, argv),
                         pod_dial=dial)
    state.update_json(cluster, "state.json", apiServerPort=handle.port)
    return handle


def node_object(plan: Plan, n) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                                **n.labels},
                     "annotations": {"flannel.alpha.coreos.com/backend-type": plan.backend,
                                     "flannel.alpha.coreos.com/public-ip": n.ip,
                                     "flannel.alpha.coreos.com/backend-data":
                                         f'{{"VNI":1,"VtepMAC":"{n.vtep_mac}"}}' if plan.backend == "vxlan" else "null",
                                     "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                                     "testbed.io/netns": n.netns}},
        "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
            "capacity": {"pods": "110", "cpu": "2", "memory": "2Gi"},
            "allocatable": {"pods": "110", "cpu": "2", "memory": "2Gi"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "nodeInfo": {"kubeletVersion": GIT_VERSION, "kubeProxyVersion": GIT_VERSION,
                         "machineID": _node_id(plan, n, "machine").replace("-", ""), "systemUUID": _node_id(plan, n, "system"),
                         "bootID": _boot_id(),
                         "osImage": "testbed (network namespace)", "kernelVersion": os.uname().release,
                         "containerRuntimeVersion": "testbed://0.1", "operatingSystem": "linux",
                         "architecture": "amd64"},
        },
    }


def _node_id(plan: Plan, n, what: str) -> str:
    """Stable per cluster and node, as a machine's ids are stable across reboots."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"testbed:{plan.cluster}:{n.name}:{what}"))


def _boot_id() -> str:
    # the nodes share the host's kernel, so its boot is theirs
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def bootstrap(store: Store, admission: Admission, plan: Plan) -> None:
    """Objects every cluster has: namespaces, nodes, the ``kubernetes`` Service."""
    def ensure(obj: dict) -> None:
        m = obj["metadata"]
        try:
            store.get(obj["kind"], m.get("namespace"), m["name"])
        except Exception:  # noqa: BLE001  (not found)
            store.create(obj)

    for ns in NAMESPACES:
        ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for n in plan.nodes:
        ensure(node_object(plan, n))
    ensure(admission.kubernetes_service())


def start_proxy(plan: Plan, node, log_dir: str) -> exec.Popen:
    args = [sys.executable, "-m", "testbed.proxy", "--cluster", plan.cluster, "--node", node.name,
            "--api", api_socket(plan.cluster), "--mode", plan.proxy_mode, "--node-ip", node.ip,
            "--cluster-cidr", plan.pod_network, "--service-cidr", plan.service_network,
            "--min-sync-period", f"{plan.proxy_min_sync_period:g}",
            "--sync-period", f"{plan.proxy_sync_period:g}",
            "--metrics-file", os.path.join(log_dir, f"proxy-{node.name}.json"),
            "--state-dir", log_dir]
    # born in its own cgroup (never outside the cluster's): killing it takes its iptables-restore
    # children with it
    cg = cgroups.path(plan.cluster, cgroups.proxy_name(node.name))
    cgroups.create([cgroups.cluster_path(plan.cluster), cg])
    logf = open(os.path.join(log_dir, f"proxy-{node.name}.log"), "ab")
    try:
        return exec.popen(args, netns=node.netns, stdout=logf, stderr=exec.STDOUT, new_session=False,
                          env={**os.environ, "TESTBED_CLUSTER": plan.cluster}, cgroup=cg)
    finally:
        logf.close()


def _proxy_stopped_cleanly(log_dir: str, node: str, pid: int) -> bool:
    """An adopted proxy's exit status is unknown: its metrics file says whether it stopped on request."""
    try:
        with open(os.path.join(log_dir, f"proxy-{node}.json")) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return m.get("pid") == pid and bool(m.get("stopped"))


def start_kubelet(plan: Plan, node, log_dir: str) -> exec.Popen:
    """The node's kubelet (``python -m testbed.kubelet``), born in its own cgroup: neither in the
    control plane's (a restart of the daemon must not touch it) nor in a pod's."""
    cg = cgroups.path(plan.cluster, cgroups.kubelet_name(node.name))
    cgroups.create([cgroups.cluster_path(plan.cluster), cg])
    args = [sys.executable, "-m", "testbed.kubelet", "--cluster", plan.cluster, "--node", node.name,
            "--api", api_socket(plan.cluster)]
    logf = open(os.path.join(log_dir, f"kubelet-{node.name}.log"), "ab")
    try:
        return exec.popen(args, stdout=logf, stderr=exec.STDOUT, cgroup=cg,
                          env={**os.environ, "TESTBED_CLUSTER": plan.cluster})
    finally:
        logf.close()


def start_proxies(cluster: str, plan: Plan, d: str) -> ProxySupervisor:
    """One supervised kube-proxy per node (adopting those a previous daemon left running)."""
    return _supervise(cluster, plan, "proxy", lambda name: start_proxy(plan, plan.node(name), d),
                      clean_exit=lambda node, pid: _proxy_stopped_cleanly(d, node, pid))


def start_kubelets(cluster: str, plan: Plan, d: str) -> ProxySupervisor:
    """One supervised kubelet per node, adopting those a previous daemon left running (with their
    pods: a kubelet outlives the control plane)."""
    return _supervise(cluster, plan, "kubelet", lambda name: start_kubelet(plan, plan.node(name), d), what="kubelet")


def _recorder(cluster: str, what: str):
    """Keep ``state.json``'s ``pids`` current: ``<what>/<node>`` -> pid."""
    def record(node: str, pid: int | None) -> None:
        if pid is None:
            state.update_pids(cluster, drop=[f"{what}/{node}"])
        else:
            state.update_pids(cluster, {f"{what}/{node}": pid})
    return record


def _supervise(cluster: str, plan: Plan, kind: str, start, **options) -> ProxySupervisor:
    """Watch ``<kind>/<node>`` processes: adopt the living ones ``state.json`` names, start the others."""
    sup = ProxySupervisor(start, _recorder(cluster, kind), **options)
    info = state.read_json(cluster, "state.json", {})
    alive = {name: pid for name, pid in info.get("pids", {}).items()
             if name.startswith(f"{kind}/") and _alive(pid, f"testbed.{kind}".encode())}
    for n in plan.nodes:
        # a daemon killed before it saved a pid left the process in its cgroup all the same
        pid = alive.get(f"{kind}/{n.name}") or _in_cgroup(cgroups.path(cluster, f"{kind}.{n.name}"),
                                                          f"testbed.{kind}".encode())
        if pid is not None:
            sup.watch(n.name, pid=pid)
            alive[f"{kind}/{n.name}"] = pid
        else:
            p = start(n.name)
            sup.watch(n.name, proc=p)
            alive[f"{kind}/{n.name}"] = p.pid
    state.update_pids(cluster, alive)
    return sup.start()


def join_cgroup(cluster: str) -> None:
    """Put this process in the cluster's control-plane cgroup before it starts anything, so that
    ``down`` finds it and all it starts even if nobody saved its pid."""
    cg = cgroups.path(cluster, cgroups.CONTROL_PLANE)
    cgroups.create([cgroups.cluster_path(cluster), cg])
    cgroups.attach(cg)


def run(cluster: str, ready_fd: int | None = None) -> None:
    join_cgroup(cluster)
    d = state.directory(cluster)
    plan = Plan.from_dict(state.read_json(cluster, "plan.json"))
    admission = Admission({"service_network": plan.service_network, "nodeport_range": plan.node_port_range,
                           "pod_network": plan.pod_network})
    store = etcd_cluster.open_store(etcd_cluster.read(cluster), d, admission)
    sock = api_socket(cluster)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    server = serve(store, sock)
    https = serve_api_https(cluster, store, plan)
    bootstrap(store, admission, plan)
    stop = threading.Event()
    recorder = EventRecorder(store, "testbed")
    manager = ControllerManager(store, {"lb_pool": plan.lb_pool})
    manager.start()
    lb_routes = LoadBalancerRoutes(store, plan, manager.stop_event, recorder=recorder)
    lb_routes.start()
    heap.tune_gc()
    kubelets = start_kubelets(cluster, plan, d)
    supervisor = start_proxies(cluster, plan, d) if plan.proxy_mode not in ("none",) else None
    log.info("control plane of %s is up: api %s", cluster, sock)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    # stops watching only: the proxies keep running with their rules, the kubelets with their pods
    if supervisor is not None:
        supervisor.stop()
    kubelets.stop()
    manager.stop()
    lb_routes.join(5)
    https.close()
    server.close()
    store.close()


def _in_cgroup(cg: str, module: bytes) -> int | None:
    return next((pid for pid in cgroups.procs(cg) if _alive(pid, module)), None) if os.path.isdir(cg) else None


def _alive(pid: int, module: bytes) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return module in f.read().split(b"\0")
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--ready-fd", type=int)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # set for this process alone (``controlplane._child_env``): the proxies, kubelets and pods it
    # starts keep CPython's own allocator
    os.environ.pop("PYTHONMALLOC", None)
    run(args.cluster, args.ready_fd)


if __name__ == "__main__":
    main()
