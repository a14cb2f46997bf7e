"""kube-proxy re-implementation: shared service/endpoint model and per-mode renderers.

- ``model``: Service/EndpointSlice dicts -> ``ServicePortInfo`` / ``EndpointInfo``, upstream's
  endpoint categorisation and a change tracker (``ProxyState``) for partial syncs.
- ``iptables``: an upstream-identical ``iptables-restore`` renderer (pure, no root).
- ``harness``: golden-file inputs (``*.inputs.yaml``, ``*.steps.txt``) -> restore text.
"""
