"""The kubelet: makes bound Pods real on their node and runs their containers.

Modules: ``plan`` (pure: pod names/addresses, environment, which program a container runs),
``status`` (containers and pods as the API reports them), ``prober`` (probes, hooks, back-off),
``workloads`` (how each kind of program is started and stopped), ``runtime`` (the event loop
that runs containers) and ``controller`` (the Pod controller that batches namespaces).

One :class:`Kubelet` controller per node runs in the node's kubelet process
(``python -m testbed.kubelet``, outside the control plane, see ``__main__``) with that node's
runtime and workload server.  It watches Pods; a burst of new pods becomes one
``topology.add_pods`` call (one netlink batch per pod namespace and one per node) with
addresses from the node's host-local range (``.2`` upward).

Containers are run by :class:`PodRuntime`: one thread with one event loop for every pod of
the node (timers for probes, restart back-off and grace periods in heaps, process exits
watched through pidfds), plus a small pool of workers that enter namespaces to run probes and
hooks.  What a container runs is decided once, by ``plan.program_for`` (``command:`` first,
then a built-in image's workload, then ``args:``), and started by that program's launcher
(``workloads.py``):

* a **process** when it has ``command:``/``args:``: forked by a thread that has entered the
  pod's namespace (a child inherits the calling thread's namespace), with the container's
  ``env``; stdout/stderr go to ``<state>/logs/<namespace>_<pod>_<container>.log``;
* the **default workload** otherwise, served by the shared ``WorkloadServer`` on the
  container's ports (8080 when the pod declares none); "killing" it removes its sockets;
* the **cluster DNS server** for ``registry.k8s.io/coredns/coredns`` (any tag): a sandboxed
  process running ``python -m testbed.dns`` with the Corefile from its configMap volume
  (``volumes.py``: keys written to a per-pod directory, rewritten on ConfigMap changes), and
  likewise ``python -m testbed.ingress`` for the ingress-nginx controller image; of the hidden
  state directory their sandbox shows only the API socket (bind-mounted at its own path) and
  their own files.

Every pod gets its ``resolv.conf`` (by ``dnsPolicy``), ``hosts`` and ``hostname`` in its
directory, which its sandboxes bind-mount over ``/etc``; ``ip netns exec`` finds the pod's
``resolv.conf`` through ``/etc/netns/<netns>`` (``etcfiles.py``).

Lifecycle as upstream: init containers one by one to completion, then the containers with
their ``postStart`` hooks; readiness/liveness probes (``prober.py``); restarts by
``restartPolicy`` with back-off (10 s doubling to 300 s; ``backoff_base``, or per pod the
annotation ``testbed.io/restart-backoff-seconds``); phases Pending/Running/Succeeded/Failed
and conditions PodScheduled/PodReadyToStartContainers/Initialized/ContainersReady/Ready.

Deletion is graceful: the API server marks a deleted Pod with ``deletionTimestamp`` (grace =
``terminationGracePeriodSeconds``); the endpoint controller then reports it
serving-terminating; the kubelet runs ``preStop``, sends SIGTERM, SIGKILLs what is left when
the grace period ends, removes the pod's namespace and deletes the Pod with grace 0.  The
default workload shuts down gracefully on SIGTERM: it keeps serving until every node's
kube-proxy has applied the EndpointSlices that show the pod terminating (the proxies' metrics
files name the resourceVersions they applied), then closes its sockets; so a rolling update
loses no request even without a ``preStop`` sleep.

Controls for tests and demonstrations (annotations, so they go through the API):

* ``testbed.io/ready: "false"`` makes the default workload's ``/readyz`` answer 503 (a
  readiness probe on it then fails); a container without a readiness probe is reported
  unready directly. Removing the annotation (or ``"true"``) restores it.
* ``testbed.io/kill: "<nonce>[/<container>]"``: each new value kills the container(s) as
  SIGKILL would (exit code 137); ``restartPolicy`` decides what happens next.
"""
