"""kube-proxy's userspace mode: the proxy process in the data path (see ``proxier``), and the
iptables rules that steer Service traffic to it (see ``rules``)."""

from ...lazyexports import exports

# every kube-proxy imports this package to clean up after the mode; the proxier is loaded only
# by the proxies that run it
__getattr__, __all__ = exports(__name__, {
    "Notice": "support", "PortMap": "proxier", "RoundRobin": "roundrobin", "RuleContext": "rules",
    "UserspaceProxier": "proxier", "render": "rules"})
