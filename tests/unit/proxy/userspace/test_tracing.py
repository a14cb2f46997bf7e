"""The userspace proxy's trace events, end to end on loopback (no root): a client marked with a
trace's DSCP is reported (accept, connect) to a subscriber, and the proxy's upstream connection
carries the same DSCP; an unmarked client is neither reported nor marked."""

from __future__ import annotations

import asyncio
import json
import socket

from testbed.proxy.model import EndpointInfo, service_port_map
from testbed.proxy.userspace import UserspaceProxier
from testbed.proxy.userspace.tracing import accepted_dscp, parse_cmsg_buffer, tos_from_cmsgs

SVC = service_port_map({"metadata": {"namespace": "ns", "name": "web"},
                        "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}})
DSCP = 42


def test_cmsg_buffer_of_ip_pktoptions():
    # what Linux answered for a handshake with TOS 0xa8 (DSCP 42): one IP_TOS cmsg
    raw = bytes.fromhex("14000000000000000000000001000000a8000000")
    assert tos_from_cmsgs(parse_cmsg_buffer(raw)) == 0xa8
    assert parse_cmsg_buffer(b"") == []


def _client(tos: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    s.setblocking(False)
    return s


async def _session(tmp_path, tos_of_clients: list[int], no_endpoints: bool = False):
    loop = asyncio.get_running_loop()
    backend = socket.socket()
    backend.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    backend.bind(("127.0.0.1", 0))
    backend.listen(8)
    backend.setblocking(False)
    p = UserspaceProxier("10.0.0.2")
    [spn] = SVC
    eps = () if no_endpoints else (EndpointInfo("127.0.0.1", backend.getsockname()[1]),)
    pm = p.update(SVC, {spn: eps})
    path = str(tmp_path / "trace.sock")
    await p.hub.serve(path)
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(json.dumps({"dscp": DSCP}).encode() + b"\n")
    assert json.loads(await reader.readline()) == {"subscribed": DSCP}
    upstream_dscp = []
    for tos in tos_of_clients:
        c = _client(tos)
        await loop.sock_connect(c, ("127.0.0.1", pm.ports[spn]))
        if not no_endpoints:
            conn, _ = await loop.sock_accept(backend)
            upstream_dscp.append(accepted_dscp(conn))
            conn.close()
        else:
            assert await loop.sock_recv(c, 10) == b""   # accepted, then closed by the proxy
        c.close()
    events = []
    while True:   # the events are sent before the client sees its answer: all are there
        try:
            line = await asyncio.wait_for(reader.readline(), 0.2)
        except asyncio.TimeoutError:
            break
        events.append(json.loads(line))
    writer.close()
    await p.close()
    backend.close()
    return spn, events, upstream_dscp


def test_a_marked_connection_is_reported_and_its_mark_copied(tmp_path):
    spn, events, upstream = asyncio.run(_session(tmp_path, [0, DSCP << 2]))
    assert upstream == [0, DSCP], "only the traced client's upstream connection carries the DSCP"
    assert [e["event"] for e in events] == ["accept", "connect"], events
    accept, connect = events
    assert accept["service"] == str(spn) and accept["client"].startswith("127.0.0.1:")
    assert accept["original_dst"] is None or accept["original_dst"].startswith("127.0.0.1:")
    assert connect["endpoint"].startswith("127.0.0.1:") and connect["local"].startswith("127.0.0.1:")


def test_no_endpoint_is_reported_as_closed(tmp_path):
    _, events, _ = asyncio.run(_session(tmp_path, [DSCP << 2], no_endpoints=True))
    assert [e["event"] for e in events] == ["accept", "no-endpoints", "closed"], events


def test_bad_subscription_is_answered_with_an_error(tmp_path):
    async def go():
        p = UserspaceProxier("10.0.0.2")
        path = str(tmp_path / "t.sock")
        await p.hub.serve(path)
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"hello\n")
        line = await r.readline()
        w.close()
        await p.close()
        return json.loads(line), p.hub.active
    answer, active = asyncio.run(go())
    assert "error" in answer and not active
