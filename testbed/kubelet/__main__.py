"""``python -m testbed.kubelet``: the kubelet and container runtime of one testbed node.

    python -m testbed.kubelet --cluster C --node node1 --api /run/testbed/C/api.sock

It runs the node's pods (``Kubelet`` for the node, ``PodRuntime``, probes) and serves their
default workload (``WorkloadServer``) from its own process, outside the control plane: the
control-plane daemon starts one per node in the cgroup ``kubelet.<node>`` and supervises it as
it does kube-proxy, so killing or restarting the daemon leaves the kubelets, their pods and
the pods' traffic alone. It reaches the API only through the cluster's unix socket, as a
list/watch client that re-watches from the last resourceVersion when the API comes back
(relisting on 410 Gone) and writes again the pod statuses it could not write meanwhile.
SIGTERM/SIGINT stop it; the pods' processes and namespaces stay (``testbed down`` removes them).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from .. import heap, netns, state
from ..apiserver.client import ApiClient
from ..controllers.events import EventRecorder
from ..plan import Plan
from ..workload.server import WorkloadServer
from .controller import Kubelet


def run(cluster: str, node: str, api: str) -> None:
    plan = Plan.from_dict(state.read_json(cluster, "plan.json"))
    if node not in {n.name for n in plan.nodes}:
        raise SystemExit(f"python -m testbed.kubelet: no node {node!r} in cluster {cluster}; "
                         f"nodes: {', '.join(n.name for n in plan.nodes)}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = ApiClient(api)
    # queued, written by the recorder's thread: a pod's start does not wait on the API
    recorder = EventRecorder(client, "kubelet", host=node, asynchronous=True)
    workloads = WorkloadServer().start()
    runner = netns.Runner(1)
    kubelet = Kubelet(client, plan, workloads, runner, stop, recorder=recorder, node=node)
    heap.tune_gc()
    kubelet.start()
    logging.getLogger("testbed.kubelet").info("kubelet of %s/%s (pid %d) is running", cluster, node, os.getpid())
    stop.wait()
    kubelet.stop()
    recorder.flush(2.0)
    workloads.stop()
    runner.close()
    client.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m testbed.kubelet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--api", required=True, help="the API server's unix socket")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(args.cluster, args.node, args.api)


if __name__ == "__main__":
    main()
