"""Small socket helpers for integration tests: servers and clients inside namespaces."""

from __future__ import annotations

import re
import socket
import subprocess
import threading

from testbed import netns

import os

# cluster names of this test process: concurrent runs of the suite on one host must not collide
SUFFIX = str(os.getpid() % 1000)


def uniq(name: str) -> str:
    return f"{name}{SUFFIX}"


class TcpEcho:
    """A TCP server in a namespace that answers each connection with the peer address it saw."""

    def __init__(self, ns: str, port: int = 9999):
        self.sock = netns.run_in(ns, self._listen, port)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        return s

    def _serve(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(f"{addr[0]}:{addr[1]}".encode())

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def tcp_peer(ns: str, ip: str, port: int = 9999, timeout: float = 3.0) -> str:
    """Connect from namespace ``ns``; return what the server saw as our address."""
    def go() -> str:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            return s.recv(200).decode()
    return netns.run_in(ns, go)


def root_snapshot() -> dict[str, str]:
    """The root namespace's network state, for before/after comparison."""
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    def strip(text: str) -> str:
        lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
        return "\n".join(re.sub(r"\[\d+:\d+\]", "", ln) for ln in lines)

    return {
        "links": run("ip", "-d", "-o", "link", "show"),
        "addrs": run("ip", "-o", "addr", "show"),
        "routes": run("ip", "route", "show", "table", "all"),
        "rules": run("ip", "rule", "show"),
        "neigh-proxy": run("ip", "neigh", "show", "proxy"),
        "iptables": strip(run("iptables-save")),
        "iptables-legacy": strip(run("iptables-legacy-save")),
        "nft": run("nft", "list", "ruleset"),
        "sysctl": run("sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet",
                      "net.ipv4.conf.default.route_localnet", "net.netfilter.nf_conntrack_tcp_timeout_established",
                      "net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.netfilter.nf_conntrack_tcp_be_liberal",
                      "net.bridge.bridge-nf-call-iptables", "net.ipv4.neigh.default.gc_thresh3"),
    }
