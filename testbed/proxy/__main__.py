"""``python -m testbed.proxy``: kube-proxy for one testbed node, in any mode of ``testbed.proxy.modes``.

Start it *inside the node's network namespace* (it inherits the netns of the thread that
forks it); every iptables/conntrack/health-check action happens in that namespace::

    python -m testbed.proxy --cluster C --node node1 --api /run/testbed/C/api.sock \\
        --mode iptables --node-ip 172.20.10.2 --cluster-cidr 10.244.0.0/16 \\
        [--metrics-file /run/testbed/C/proxy-node1.json] [--min-sync-period 1] [--sync-period 30]
        [--state-dir /run/testbed/C]

It refuses to run anywhere but in the testbed's node netns ``tb.C.node.NODE`` (which must
exist), so it can never program the host's own iptables. SIGTERM/SIGINT stop it without touching the rules.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from testbed import heap, naming
from testbed.proxy import modes
from testbed.proxy.loop import ProxyLoop
from testbed.proxy.syncer import ProxyConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--cluster", required=True)
    p.add_argument("--node", required=True, help="this node's name (endpoints on it are local)")
    p.add_argument("--api", required=True, help="API server unix socket")
    p.add_argument("--mode", default="iptables", metavar="MODE",
                   help="proxy mode: " + "; ".join(f"{m.name} ({m.summary})" for m in modes.MODES.values()))
    p.add_argument("--ipvs-scheduler", default="rr", help="IPVS scheduler (mode ipvs; upstream default rr)")
    p.add_argument("--node-ip", required=True, help="the node's address (health checks, LB firewall)")
    p.add_argument("--cluster-cidr", default=None, help="pod network (detect-local-mode ClusterCIDR)")
    p.add_argument("--service-cidr", action="append", default=[],
                   help="the cluster's Service network (nftables mode drops traffic to unallocated ClusterIPs)")
    p.add_argument("--metrics-file", default=None, help="JSON metrics, replaced atomically after each sync")
    p.add_argument("--state-dir", default=None,
                   help="directory for proxy-NODE.rules, the restore inputs since the last full sync "
                        "(what `testbed rules --check` compares with the kernel)")
    p.add_argument("--min-sync-period", type=float, default=1.0,
                   help="seconds between syncs after a burst of 2 (upstream default 1s)")
    p.add_argument("--sync-period", type=float, default=30.0,
                   help="retry interval after a failed sync, canary check interval (upstream default 30s)")
    p.add_argument("--full-sync-period", type=float, default=3600.0,
                   help="a full resync at least this often (upstream FullSyncPeriod, 1h)")
    p.add_argument("--masquerade-all", action="store_true")
    p.add_argument("--no-localhost-nodeports", action="store_true",
                   help="do not accept NodePort traffic to 127.0.0.1 (no route_localnet)")
    p.add_argument("--noflush-full-sync", action="store_true",
                   help="restore full syncs with --noflush like upstream (slow with iptables-nft at scale)")
    p.add_argument("--rewrite-all-chains", action="store_true",
                   help="partial syncs rewrite every top-level chain like upstream, even if unchanged")
    p.add_argument("--no-cost-based-full-sync", action="store_true",
                   help="iptables: always restore a partial sync with --noflush, however many chains it writes")
    p.add_argument("--restore-deadline", type=float, default=60.0, metavar="SECONDS",
                   help="iptables: kill a partial sync's restore running longer and resync in full (0: no deadline)")
    p.add_argument("--healthz-bind-address", default="0.0.0.0:10256", metavar="IP:PORT",
                   help="where /healthz and /livez are served in the node's netns ('' turns them off; "
                        "upstream default 0.0.0.0:10256)")
    p.add_argument("--restore-batch-chains", type=int, default=2000, metavar="N",
                   help="iptables: split a partial sync writing more chains into restores of about N (0: never)")
    p.add_argument("--allow-any-netns", action="store_true", help="skip the network namespace check")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _netns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_netns(cluster: str, node: str) -> str | None:
    """A reason not to run here, or None. Fails closed: the process must be in the node's
    netns ``/run/netns/tb.CLUSTER.node.NODE``, which must exist."""
    mine = _netns_id("/proc/self/ns/net")
    name = naming.node_netns(cluster, node)
    expected = _netns_id(os.path.join("/run/netns", name))
    if mine is None:
        return "cannot identify this process's network namespace"
    if expected is None:
        return f"/run/netns/{name} does not exist (start the proxy inside a running cluster's node netns)"
    if mine != expected:
        return f"this process is not in {name}"
    return None


def ran_before(metrics_file: str | None) -> bool:
    """Whether a kube-proxy ran on this node before (its metrics file exists); without a
    metrics file to tell, assume it did."""
    return not metrics_file or os.path.exists(metrics_file)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"%(asctime)s kube-proxy[{args.node}] %(levelname)s %(message)s")
    log = logging.getLogger("testbed.proxy")
    if args.mode not in modes.MODES:
        log.error("--mode %s is not implemented by this process (%s)", args.mode, ", ".join(modes.NAMES))
        return 2
    if not args.allow_any_netns:
        why = check_netns(args.cluster, args.node)
        if why:
            log.error("refusing to start: %s", why)
            return 2

    from testbed.apiserver.client import ApiClient
    from testbed.proxy.conntrack import ConntrackCleaner
    from testbed.proxy.healthcheck import ServiceHealthServer
    from testbed.proxy.healthz import ProxyHealthServer, parse_bind_address

    try:
        healthz_address = parse_bind_address(args.healthz_bind_address)
    except ValueError as exc:
        log.error("%s", exc)
        return 2

    cfg = ProxyConfig(cluster=args.cluster, node_name=args.node, node_ip=args.node_ip,
                      cluster_cidr=args.cluster_cidr, service_cidrs=tuple(args.service_cidr),
                      metrics_file=args.metrics_file,
                      min_sync_period=args.min_sync_period, sync_period=args.sync_period,
                      full_sync_period=args.full_sync_period, masquerade_all=args.masquerade_all,
                      localhost_nodeports=not args.no_localhost_nodeports,
                      replace_full_sync=not args.noflush_full_sync, skip_unchanged_chains=not args.rewrite_all_chains,
                      cost_based_full_sync=not args.no_cost_based_full_sync,
                      restore_deadline=args.restore_deadline or None,
                      restore_batch_chains=max(args.restore_batch_chains, 0),
                      ipvs_scheduler=args.ipvs_scheduler,
                      rules_file=os.path.join(args.state_dir, f"proxy-{args.node}.rules") if args.state_dir else None,
                      trace_socket=os.path.join(args.state_dir, f"proxy-{args.node}.trace.sock")
                      if args.state_dir else None)
    client = ApiClient(args.api)
    events_client = ApiClient(args.api, timeout=5.0)
    loop: ProxyLoop | None = None
    health = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    health = ServiceHealthServer(args.node_ip, healthy=lambda: loop is None or loop.healthy())
    # the conntrack socket is opened at the first UDP cleanup: its library costs ~0.1 CPU-s to
    # import, paid by every proxy of a cluster as it comes up, and most never clean an entry
    cleaner = ConntrackCleaner()
    # A node whose kube-proxy never ran here (no metrics file: the node was just built) holds no
    # other mode's rules; looking costs a proxy ~50 ms of CPU (the other modes' code, nft and
    # iptables-save), paid by every node while a cluster comes up.
    try:
        cleaned = modes.cleanup_conflicting(args.mode) if ran_before(args.metrics_file) else []
    except Exception as exc:  # noqa: BLE001 - the first full sync still installs this mode's rules
        log.warning("removing the rules of other proxy modes failed: %s", exc)
    else:
        if cleaned:
            log.info("removed the rules of proxy modes %s", ", ".join(cleaned))
    syncer = modes.get(args.mode).make_syncer(cfg)
    loop = ProxyLoop(cfg, syncer, cleaner=cleaner, health=health, post_event=events_client.create)
    loop.setup_host()
    healthz = None
    if healthz_address is not None:
        healthz = ProxyHealthServer(healthz_address, healthy=loop.healthy, last_updated=lambda: loop.last_updated)
        healthz.start()
    log.info("starting: %s mode, node %s (%s), cluster CIDR %s, min sync %.3gs, sync period %.3gs, "
             "full sync period %.3gs, api %s", args.mode, args.node, args.node_ip, args.cluster_cidr,
             cfg.min_sync_period, cfg.sync_period, cfg.full_sync_period, args.api)
    heap.tune_gc()
    loop.start(client)
    while not stop.wait(1.0):
        pass
    log.info("stopping (rules are left in place)")
    loop.stop()
    if healthz is not None:
        healthz.close()
    client.close()
    events_client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
