import pytest

from testbed.proxy.iptables.render import IptablesConfig, IptablesRenderer, LocalDetector
from testbed.proxy.tracker import ProxyState

NODE = "test-node"


def svc(name, ns="ns1", *, cip="172.30.0.41", ports=(("p80", 80, "TCP", 0),), **spec):
    """A Service dict; ``ports`` are (name, port, protocol, nodePort)."""
    spec = {"type": "ClusterIP", "clusterIP": cip,
            "ports": [{"name": n, "port": p, "protocol": pr, "nodePort": np}
                      for n, p, pr, np in ports], **spec}
    status = spec.pop("status", None)
    out = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": ns, "name": name}, "spec": spec}
    if status:
        out["status"] = status
    return out


def ep(ip, node=None, **conditions):
    e = {"addresses": [ip]}
    if node:
        e["nodeName"] = node
    if conditions:
        e["conditions"] = conditions
    return e


def eps(service, ns="ns1", *endpoints, ports=(("p80", 80, "TCP"),), name=None, family="IPv4"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": name or f"{service}-1",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": family, "endpoints": list(endpoints),
            "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}


def config(**kw):
    base = dict(node_name=NODE, node_ips=("192.168.0.2",),
                local_detector=LocalDetector("ClusterCIDR", "10.0.0.0/8"), mark_format="short",
                nfacct_ct_state_invalid=True, nfacct_localhost_nodeports=True)
    base.update(kw)
    return IptablesConfig(**base)


class Rig:
    """A renderer + state pair for hand-written cases."""

    def __init__(self, **cfg):
        self.config = config(**cfg)
        self.state = ProxyState(NODE, self.config.ip_family)
        self.renderer = IptablesRenderer(self.config)
        self.now = 0.0

    def sync(self, *objects, delete=(), **kw):
        self.state.apply(objects)
        for obj in delete:
            if obj["kind"] == "Service":
                self.state.delete_service(obj)
            else:
                self.state.delete_endpoint_slice(obj)
        self.now += 1.0
        return self.renderer.sync(self.state, now=self.now, **kw)

    def lines(self, *objects, **kw):
        return self.sync(*objects, **kw).text.splitlines()


@pytest.fixture
def rig():
    return Rig()
