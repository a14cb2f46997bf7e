"""Cluster DNS: a CoreDNS-equivalent server for the testbed.

* ``corefile``: parses the Corefile into typed plugin settings (CoreDNS's error wording);
* ``records``: the Kubernetes DNS specification (schema 1.1.0) answered from Services,
  EndpointSlices, Namespaces (and Pods for ``pods verified``) held in a ``ClusterIndex``;
* ``wire``: the response encoder of the miss path; ``responder``: a server block's plugin
  chain with its answer caches (the hot path replays finished responses);
* ``server``: the process (UDP/TCP, forward, health, ready, metrics, reload, loop);
* ``upstream``: the resolver of the underlay namespace, authoritative for ``ext.testbed.``
  (the scenario's external clients) and REFUSED for every other name, so no query leaves
  the testbed;
* ``lab``: a throwaway namespace with an API and a replica, for tests and the benchmark.

``python -m testbed.dns --corefile PATH --api SOCKET`` runs a replica.
"""
