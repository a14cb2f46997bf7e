"""kube-proxy re-implementation: one mode-neutral loop, one syncer per mode.

- ``model``: Service/EndpointSlice dicts -> ``ServicePortInfo`` / ``EndpointInfo``, upstream's
  endpoint categorisation and a change tracker (``ProxyState``) for partial syncs.
- ``loop``: ``ProxyLoop``, the process's watch/sync loop; ``syncer``: the ``Syncer`` interface
  each mode implements; ``modes``: the registry of modes by name.
- ``iptables``, ``ipvs``: one package per mode (pure desired state, kernel access, syncer).
- ``status``: a running cluster's proxies from outside (metrics, waiting, rules checks).
- ``harness``: golden-file inputs (``*.inputs.yaml``, ``*.steps.txt``) -> restore text.
"""
