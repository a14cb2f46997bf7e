"""kube-proxy's userspace mode: the proxy process in the data path (see ``proxier``), and the
iptables rules that steer Service traffic to it (see ``rules``)."""

from testbed.proxy.userspace.proxier import PortMap, UserspaceProxier
from testbed.proxy.userspace.roundrobin import RoundRobin
from testbed.proxy.userspace.rules import RuleContext, render
from testbed.proxy.userspace.support import Notice

__all__ = ["Notice", "PortMap", "RoundRobin", "RuleContext", "UserspaceProxier", "render"]
