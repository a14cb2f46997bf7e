"""kube-proxy IPVS mode: desired state (pure), netlink kernel access, the syncer, a preflight
check, its registry entry."""
