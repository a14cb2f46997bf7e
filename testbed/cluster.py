"""The library API: bring a scenario up, inspect it, run things in it, tear it down.

    from testbed import Cluster
    with Cluster.up("scenarios/quickstart.yaml", name="t1") as c:
        print(c.status()["pods"])
        c.exec("pod/web-1", ["ip", "addr"])

The CLI is a thin layer over this module; pytest suites use it directly (see pytest_plugin.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from collections.abc import Callable
from typing import Any

from . import addons, controlplane, exec, failpoints, hostsettings, naming, netns, state, teardown, topology
from .apiserver.etcd import cluster as etcd_cluster
from .dns import upstream
from .kubelet.plan import pod_plan
from .errors import NotRootError, Problem, TestbedError, ValidationError
from .plan import Plan, build_plan
from .scenario import Scenario, check_manifests, load

Progress = Callable[[str, int, int], None]


def require_root(what: str = "this command") -> None:
    if os.geteuid() != 0:
        raise NotRootError(what)


class Cluster:
    def __init__(self, name: str):
        self.name = name
        self._plan: Plan | None = None

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def up(cls, scenario: Scenario | str, *, name: str | None = None, progress: Progress | None = None,
           raise_neigh_limits: bool = False, warn: Callable[[str], None] | None = None,
           control_plane: bool = True, proxy_mode: str | None = None, timeout: float = 120.0,
           store: str | None = None, etcd_endpoints: str | None = None, etcd_tls=None,
           etcd_prefix: str | None = None) -> Cluster:
        """Build a scenario; atomic: on any error everything created is removed again.

        With ``control_plane=False`` only the topology is built (the scenario's Pods become
        static pod namespaces, nothing runs in them); otherwise the control plane starts, the
        scenario's manifests are applied through the API, and ``up`` returns when its pods run.
        The API store is *store* if given, else ``$TESTBED_STORE`` if set (how a whole test
        run moves to etcd), else the scenario's ``spec.store``; *etcd_endpoints* (with
        *etcd_tls*, a :class:`~testbed.apiserver.etcd.TLS`) names an existing etcd to use;
        *etcd_prefix* is where the cluster's keys go (default: see ``apiserver/etcd/cluster.py``).
        """
        require_root("testbed up")
        if isinstance(scenario, str):
            scenario = load(scenario, name=name)
        elif name:
            scenario.name = name
        if proxy_mode:
            from .scenario import PROXY_MODES

            if proxy_mode not in PROXY_MODES:
                raise ValidationError("--proxy-mode", [Problem("", f"unsupported value {proxy_mode!r}; "
                                                                   f"allowed: {', '.join(PROXY_MODES)}")])
            scenario.proxy_mode = proxy_mode
        store_config = etcd_cluster.requested(store or os.environ.get("TESTBED_STORE") or scenario.store,
                                              etcd_endpoints, etcd_tls, etcd_prefix, scenario.name)
        plan = build_plan(scenario, control_plane=control_plane)  # pure: validation before building
        if control_plane:
            # what the API would refuse is bad input (exit 2), found before anything is built
            check_manifests(scenario)
        _preflight(plan)   # kernel features the proxy mode needs, before anything is built
        state.claim(scenario.name)
        started = time.monotonic()
        try:
            state.in_memory(scenario.name)
            failpoints.hit("claimed")
            settings: dict[str, Any] = {}
            # with a control plane, pods come later: size for the nodes' capacity (110 pods each)
            pods = len(plan.pods) if not control_plane else max(len(plan.pods), 110 * len(plan.nodes))
            problem = hostsettings.neighbour_limit_problem(len(plan.pods), len(plan.nodes), len(plan.externals))
            if raise_neigh_limits and hostsettings.neighbour_limit_problem(pods, len(plan.nodes), len(plan.externals)):
                settings = hostsettings.raise_neighbour_limits(pods, len(plan.nodes), len(plan.externals))
            elif problem and warn:
                warn(problem)
            state.write_json(scenario.name, "state.json", {"host_settings": settings, "pids": {},
                                                           "source": os.path.abspath(scenario.source)})
            state.write_json(scenario.name, "plan.json", plan.to_dict())
            failpoints.hit("state-written")
            # nodes built side by side: their flannel rules are one iptables-restore each, forked
            # and waited on (0.19 -> 0.08 s for 10 nodes)
            topology.apply_plan(plan, progress or topology._noop, workers=4)
            failpoints.hit("topology")
            if control_plane:
                store_config = etcd_cluster.start_member(scenario.name, store_config)
                state.update_json(scenario.name, "state.json", store=store_config.to_dict())
                _start_upstream(plan)
                failpoints.hit("upstream")
                if progress:
                    progress("control plane", 0, 1)
                controlplane.start(scenario.name)
                failpoints.hit("control-plane")
                if progress:
                    progress("control plane", 1, 1)
                # add-on objects after the scenario's, so its pods keep the first addresses of
                # their nodes (the documented .2 upward); `up` waits only for the scenario's
                # own Pods, never for the add-ons' rollout (verify settles Deployments)
                _apply_manifests(scenario, addons.objects(scenario.addons, scenario), progress,
                                 timeout * controlplane.slowdown())
                failpoints.hit("manifests")
                if plan.proxy_mode != "none":
                    _wait_proxies(scenario.name, len(plan.nodes), progress, warn, min(timeout, 30.0))
            state.update_json(scenario.name, "state.json", up_seconds=round(time.monotonic() - started, 3))
            # the cluster is complete (its pods run, the kubelets own them): a crash now must
            # still leave ``down`` everything to find
            failpoints.hit("ready")
        except BaseException:
            teardown.down(scenario.name)
            raise
        c = cls(scenario.name)
        c._plan = plan
        return c

    def down(self) -> dict:
        require_root("testbed down")
        return teardown.down(self.name)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # --- inspection ------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = Plan.from_dict(state.read_json(self.name, "plan.json"))
        return self._plan

    def api(self):
        """An ApiClient for this cluster's API server (kubectl-like access from Python)."""
        return controlplane.client(self.name)

    def restart_control_plane(self) -> None:
        """Stop and start the control-plane process; the store and the pods survive."""
        require_root("testbed restart")
        controlplane.stop(self.name)
        controlplane.start(self.name)

    def pods(self) -> list:
        """Every pod with a network: static pods of the plan and Running pods from the API."""
        out = list(self.plan.pods)
        if self.plan.control_plane:
            with self.api() as api:
                items, _ = api.list("Pod")
            for obj in items:
                st = obj.get("status") or {}
                if st.get("podIP") and (obj.get("spec") or {}).get("nodeName"):
                    out.append(pod_plan(self.plan, obj))
        return out

    def status(self) -> dict:
        p = self.plan
        return {
            "name": self.name,
            "backend": p.backend,
            "hairpinMode": p.hairpin_mode,
            "proxyMode": p.proxy_mode,
            "podNetwork": p.pod_network,
            "serviceNetwork": p.service_network,
            "underlay": {"netns": p.underlay.netns, "gateway": p.underlay.gateway,
                         "network": str(ipaddress.ip_interface(f"{p.underlay.gateway}/{p.underlay.prefixlen}").network)},
            "nodes": [{"name": n.name, "netns": n.netns, "ip": n.ip, "podCIDR": n.pod_cidr,
                       "vtep": n.vtep_ip, "labels": n.labels} for n in p.nodes],
            "pods": [{"namespace": x.namespace, "name": x.name, "node": x.node, "netns": x.netns, "ip": x.ip}
                     for x in self.pods()],
            "externals": [{"name": e.name, "netns": e.netns, "ip": e.ip} for e in p.externals],
        }

    def netns_of(self, target: str) -> str:
        """``node/NAME``, ``pod/NAME``, ``pod/NAMESPACE/NAME``, ``external/NAME`` or ``underlay``."""
        kind, _, rest = target.partition("/")
        p = self.plan
        if kind == "underlay":
            return p.underlay.netns
        if kind in ("node", "nodes", "no") and rest:
            for n in p.nodes:
                if n.name == rest:
                    return n.netns
            raise TestbedError(f"no node {rest!r} in cluster {self.name}; nodes: {', '.join(n.name for n in p.nodes)}")
        if kind in ("external", "ext") and rest:
            for e in p.externals:
                if e.name == rest:
                    return e.netns
            raise TestbedError(f"no external client {rest!r} in cluster {self.name}; "
                               f"externals: {', '.join(e.name for e in p.externals) or 'none'}")
        if kind in ("pod", "pods", "po") and rest:
            ns, _, name = rest.rpartition("/")
            matches = [x for x in self.pods() if x.name == name and (not ns or x.namespace == ns)]
            if len(matches) == 1:
                return matches[0].netns
            if len(matches) > 1:
                raise TestbedError(f"pod name {name!r} exists in several namespaces; use pod/NAMESPACE/{name}")
            raise TestbedError(f"no pod {rest!r} in cluster {self.name}")
        raise TestbedError(f"bad target {target!r}: use node/NAME, pod/NAME, pod/NAMESPACE/NAME, external/NAME or underlay")

    def exec(self, target: str, argv: list[str], *, input: str | None = None, timeout: float | None = None,
             check: bool = False, env: dict[str, str] | None = None) -> exec.Result:
        """Run a command in the target's namespace (through ``ip netns exec``, so it also sees the
        namespace's own /sys); its output is captured in the result."""
        return exec.run(argv, netns=self.netns_of(target), sysfs=True, input=input, timeout=timeout,
                        check=check, env=env)

    def run_in(self, target: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run a Python callable in a thread inside the target's namespace (sockets made there stay there)."""
        return netns.run_in(self.netns_of(target), fn, *args, **kwargs)

    def pod(self, name: str, namespace: str | None = None):
        for x in self.pods():
            if x.name == name and (namespace is None or x.namespace == namespace):
                return x
        raise KeyError(name)


def run_scenario(path: str, *, name: str | None = None, keep: bool = False, artifacts: str | None = None,
                 names=None, log=lambda m: None) -> list:
    """Up, verify, down: the scenario's checks on a cluster of its own, which is always removed
    unless ``keep``. Returns the checks' results (``testbed.verify.Result``)."""
    from .verify import verify_cluster

    scenario = load(path, name=name)
    c = Cluster.up(scenario)
    try:
        return verify_cluster(c, scenario, names, artifacts, log)
    finally:
        if not keep:
            c.down()


def _preflight(plan: Plan) -> None:
    """Fail at once, in one line, when this kernel cannot run the plan's proxy mode, or there is
    no cgroup v2 hierarchy to hold the cluster's processes."""
    if plan.control_plane:
        from . import cgroups
        try:
            if not os.access(cgroups.root(), os.W_OK):
                raise TestbedError(f"the cgroup v2 hierarchy {cgroups.root()} is not writable; "
                                   "pods and the control plane need a cgroup of their own")
        except OSError as exc:
            raise TestbedError(f"{exc.strerror}: pods and the control plane need a cgroup v2 hierarchy") from None
    if plan.control_plane and plan.proxy_mode != "none":
        from .proxy import modes
        problem = modes.get(plan.proxy_mode).problem()
        if problem:
            raise TestbedError(problem)


def _start_upstream(plan: Plan) -> None:
    """The resolver outside the cluster domain (``ext.testbed.``), in the underlay namespace."""
    logs = os.path.join(state.directory(plan.cluster), "logs")
    os.makedirs(logs, mode=0o700, exist_ok=True)
    p = upstream.launch(plan, os.path.join(logs, "dns-upstream.log"))
    state.update_pids(plan.cluster, {"dns-upstream": p.pid})


def _apply_manifests(scenario: Scenario, extra: list[dict], progress: Progress | None, timeout: float) -> None:
    """Apply the scenario's objects, then ``extra`` (the add-ons'), in dependency order and wait for
    the scenario's pods to run. An
    object the API refuses is bad input: a ``ValidationError`` naming the scenario file and
    the object's place in it (``check_manifests`` finds most of these before ``up`` builds)."""
    from .apiserver.errors import AlreadyExists, ApiError

    order = {"Namespace": 0, "Service": 1, "EndpointSlice": 2, "Endpoints": 2}
    origins = scenario.manifest_origins or [f"manifests[{i}]" for i in range(len(scenario.manifests))]
    origins += [f"spec.addons ({o.get('kind')} {(o.get('metadata') or {}).get('name')})" for o in extra]
    # sorted() is stable: within a kind, the add-ons' objects stay after the scenario's, so its
    # pods keep the first addresses of their nodes (the documented .2 upward)
    objs = sorted(zip(scenario.manifests + extra, origins), key=lambda o: order.get(o[0].get("kind"), 3))
    pods = set()
    with controlplane.client(scenario.name) as api:
        # a new cluster has none of them: a create each (pipelined, in order) instead of apply's
        # read and write; one that exists after all is applied
        with contextlib.closing(api.create_pipelined([o for o, _ in objs])) as created:
            for i, ((obj, where), res) in enumerate(zip(objs, created)):
                meta = obj.get("metadata") or {}
                try:
                    if isinstance(res, AlreadyExists):
                        api.apply(obj)
                    elif isinstance(res, ApiError):
                        raise res
                except ApiError as exc:
                    if not 400 <= exc.code < 500:
                        raise TestbedError(f"manifest {obj.get('kind')} {meta.get('name')!r} could not be "
                                           f"applied: {exc}") from None
                    raise ValidationError(scenario.source, [Problem(where, f"{obj.get('kind')} "
                                                            f"{meta.get('name')!r} was refused: {exc}")]) from None
                if obj.get("kind") == "Pod":
                    pods.add((meta.get("namespace", "default"), meta["name"]))
                if progress:
                    progress("manifests", i + 1, len(objs))
        controlplane.wait_pods_running(api, pods, timeout)


def _wait_proxies(cluster: str, nodes: int, progress: Progress | None, warn, timeout: float) -> None:
    """Services answer when ``up`` returns: wait until every node's kube-proxy has programmed the
    Services and EndpointSlices as they stand now (a proxy still behind at the timeout is a
    warning, not a failed ``up``: ``testbed status`` and ``doctor`` show it)."""
    from .proxy import status as proxy_status

    want = []
    with controlplane.client(cluster) as api:
        for kind in ("Service", "EndpointSlice"):
            rvs = [int(o["metadata"]["resourceVersion"]) for o in api.list(kind)[0]]
            if rvs:
                want.append({"kind": kind, "metadata": {"resourceVersion": str(max(rvs))}})
    if progress:
        progress("proxies programmed", 0, nodes)
    try:
        proxy_status.wait_metrics(cluster, lambda ms: len(ms) >= nodes, timeout, "every node's kube-proxy")
        proxy_status.wait_programmed(cluster, want, timeout=timeout)
    except TimeoutError as e:
        if warn:
            warn(f"kube-proxy has not programmed every Service yet: {e}")
        return
    if progress:
        progress("proxies programmed", nodes, nodes)


def owned_netns(cluster: str) -> list[str]:
    return netns.list_names(naming.cluster_prefix(cluster))
