"""The proxier's control path where it opens no socket: refusals and bad parameters."""

import asyncio

import pytest

from testbed.proxy.model import service_port_map
from testbed.proxy.userspace import UserspaceProxier

SCTP = service_port_map({"metadata": {"namespace": "ns", "name": "s"},
                         "spec": {"clusterIP": "10.96.0.5", "type": "NodePort",
                                  "ports": [{"name": "p", "port": 80, "protocol": "SCTP",
                                             "nodePort": 30000}]}})


def test_sctp_is_refused_without_a_listener():
    async def go():
        p = UserspaceProxier("10.0.0.2")
        pm = p.update(SCTP, {})
        text = p.rules_text()
        await p.close()
        return pm, text
    pm, text = asyncio.run(go())
    assert pm.ports == {}
    [n] = pm.notices
    assert n.refused and "SCTP is not supported" in n.message
    assert "ns/s:p" not in text


@pytest.mark.parametrize("kwargs,match", [
    ({"listen_ip": "127.0.0.1"}, "listen_ip: cannot proxy on localhost"),
    ({"udp_idle_timeout": 0}, "udp_idle_timeout: must be > 0"),
])
def test_bad_parameters_are_one_line_errors(kwargs, match):
    async def go():
        UserspaceProxier("10.0.0.2", **kwargs)
    with pytest.raises(ValueError, match=match):
        asyncio.run(go())


def test_closed_proxier_refuses_updates():
    async def go():
        p = UserspaceProxier("10.0.0.2")
        await p.close()
        p.update({}, {})
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(go())
