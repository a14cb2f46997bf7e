"""The testbed's upstream resolver: the scenario's external clients by name, nothing else.

It runs in the underlay namespace and is what cluster DNS forwards to, so a name outside
the cluster domain never produces a packet outside the testbed.  It is authoritative for
``ext.testbed.`` (``<external>.ext.testbed.`` A, and PTR for those addresses) and answers
REFUSED for every other name, as a resolver that is not recursive for the asker does.

    python -m testbed.dns.upstream --listen 10.100.0.1:53 --cluster NAME --record client=10.100.0.100
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import struct
import sys

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.reversename

from testbed import exec
from testbed.errors import TestbedError

ZONE = "ext.testbed."
TTL = 60
log = logging.getLogger("testbed.dns.upstream")


class UpstreamZone:
    """Pure: the zone's data and the answer to one query on the wire."""

    def __init__(self, hosts: dict[str, str], zone: str = ZONE):
        self.zone = zone.lower()
        self.a: dict[str, str] = {}
        self.ptr: dict[str, str] = {}
        for name, ip in hosts.items():
            try:
                addr = ipaddress.IPv4Address(ip)
            except ValueError:
                raise TestbedError(f"upstream record {name}: {ip!r} is not an IPv4 address") from None
            fq = f"{name.lower().rstrip('.')}.{self.zone}"
            self.a[fq] = str(addr)
            self.ptr[dns.reversename.from_address(str(addr)).to_text().lower()] = fq

    def answer(self, data: bytes) -> bytes | None:
        try:
            q = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - unparsable input gets no answer
            return None
        r = dns.message.make_response(q)
        r.flags &= ~dns.flags.RA
        if len(q.question) != 1:
            r.set_rcode(dns.rcode.FORMERR)
            return r.to_wire()
        qn = q.question[0]
        name, rdtype = qn.name.to_text().lower(), qn.rdtype
        if name in self.ptr:
            r.flags |= dns.flags.AA
            if rdtype == dns.rdatatype.PTR:
                r.answer.append(dns.rrset.from_text(qn.name, TTL, "IN", "PTR", self.ptr[name]))
            return r.to_wire()
        if name != self.zone and not name.endswith("." + self.zone):
            r.set_rcode(dns.rcode.REFUSED)
            return r.to_wire()
        r.flags |= dns.flags.AA
        soa = dns.rrset.from_text(self.zone, TTL, "IN", "SOA", f"ns.{self.zone} hostmaster.{self.zone} 1 7200 1800 86400 {TTL}")
        if name in self.a:
            if rdtype == dns.rdatatype.A:
                r.answer.append(dns.rrset.from_text(qn.name, TTL, "IN", "A", self.a[name]))
            else:
                r.authority.append(soa)
        elif name == self.zone:
            (r.answer if rdtype == dns.rdatatype.SOA else r.authority).append(soa)
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(soa)
        return r.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, zone: UpstreamZone):
        self.zone = zone

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        out = self.zone.answer(data)
        if out is not None:
            self.transport.sendto(out, addr)


async def _tcp(zone: UpstreamZone, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            out = zone.answer(await reader.readexactly(n))
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, zone: UpstreamZone, stop: asyncio.Event) -> None:
    """Serve ``zone`` on host:port (UDP and TCP) until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(zone), local_addr=(host, port))
    server = await asyncio.start_server(lambda r, w: _tcp(zone, r, w), host, port)
    log.info("listening on %s:%d (udp, tcp)", host, port)  # who starts it waits for this line
    try:
        await stop.wait()
    finally:
        transport.close()
        server.close()


def argv(plan) -> list[str]:
    """The command line of a cluster's upstream: on the underlay gateway's port 53 (the
    address pods with ``dnsPolicy: Default`` and CoreDNS's ``forward .`` are given), one
    record per external client."""
    return [sys.executable, "-m", "testbed.dns.upstream", f"--listen={plan.underlay.gateway}:53",
            f"--cluster={plan.cluster}", *(f"--record={e.name}={e.ip}" for e in plan.externals)]


def launch(plan, log_path: str):
    """Start the upstream inside the underlay namespace and the cluster's cgroup (with
    ``TESTBED_CLUSTER`` set), so ``down`` stops it; returns the Popen."""
    from .. import cgroups, state

    env = {**os.environ, "TESTBED_CLUSTER": plan.cluster}
    cg = cgroups.path(plan.cluster, "dns-upstream")
    cgroups.create([cgroups.cluster_path(plan.cluster), cg])
    with state.open_private(log_path, "ab") as logf:
        return exec.popen(argv(plan), netns=plan.underlay.netns, stdout=logf, stderr=exec.STDOUT, env=env,
                          cgroup=cg)


def _record(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--record {text!r}: want NAME=IPv4")
    return name, ip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.dns.upstream", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT inside the underlay namespace")
    ap.add_argument("--cluster", required=True, help="the cluster this resolver belongs to")
    ap.add_argument("--record", action="append", type=_record, default=[], help="NAME=IPv4 (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        print(f"--listen {args.listen!r}: want HOST:PORT", file=sys.stderr)
        return 2
    try:
        zone = UpstreamZone(dict(args.record))
    except TestbedError as e:
        print(e, file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(host, int(port), zone, stop)

    try:
        asyncio.run(run())
    except OSError as e:
        print(f"listen {args.listen}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
