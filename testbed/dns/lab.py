"""A throwaway DNS lab for tests and benchmarks: an API, one netns, the server and its upstream.

``DnsLab(cluster, corefile_text)`` creates ``tb.<cluster>.dns`` (loopback only), serves a
fresh in-memory API on a unix socket, starts the underlay-style upstream on
``127.0.0.2:1053`` and one DNS replica (``python -m testbed.dns``) inside the namespace, and
waits for the replica's "synced" log line (its readiness), not for a timer.  ``close()``
stops the processes it started and deletes the namespace.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading

from testbed import exec as ex
from testbed import netlink, netns
from testbed.apiserver.client import ApiClient
from testbed.apiserver.server import serve
from testbed.apiserver.memory import MemoryStore
from testbed.errors import TestbedError

# Not :53 there: the replica binds the wildcard address on :53, as CoreDNS does for `.:53`.
UPSTREAM = ("127.0.0.2", 1053)
COREFILE = """\
.:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . 127.0.0.2:1053
    cache 30
    loop
    reload
    loadbalance
}
"""


def _lo_up() -> None:
    b = netlink.Batch()
    b.link_set("dns lab: lo up", index=1, up=True)
    b.apply()


class DnsLab:
    def __init__(self, cluster: str, corefile: str = COREFILE, externals: dict[str, str] | None = None,
                 objects: list[dict] = (), wait_ready: bool = True):
        self.cluster = cluster
        self.netns = f"tb.{cluster}.dns"
        self.dir = tempfile.mkdtemp(prefix="tbdns-")
        self.corefile = os.path.join(self.dir, "Corefile")
        with open(self.corefile, "w") as f:
            f.write(corefile)
        self.store = MemoryStore()
        self.handle = serve(self.store, os.path.join(self.dir, "api.sock"))
        self.api = ApiClient(self.handle.socket_path)
        self.procs: list[ex.Popen] = []
        self.log: list[str] = []
        self._logged = threading.Condition()
        self._finished: set[int] = set()  # pids whose output is fully read
        try:
            for obj in objects:
                self.api.create(obj)
            with netns.Runner() as r:
                r.run_new(self.netns, _lo_up)
            records = [f"--record={n}={ip}" for n, ip in (externals or {}).items()]
            self.upstream = self._spawn(["-m", "testbed.dns.upstream", f"--listen={UPSTREAM[0]}:{UPSTREAM[1]}",
                                         f"--cluster={cluster}", *records])
            # the server forwards to it from its first query: it must be listening by then
            with self._logged:
                if not self._logged.wait_for(lambda: any("listening on" in line for line in self.log)
                                             or self.upstream.pid in self._finished, 30):
                    raise TestbedError("the DNS lab's upstream did not start listening within 30s")
            self.server = self._spawn(["-m", "testbed.dns", "--corefile", self.corefile, "--api",
                                       self.handle.socket_path])
            if wait_ready:
                self.wait_log("plugin/ready: synced")
        except BaseException:
            self.close()
            raise

    def _spawn(self, args: list[str]) -> ex.Popen:
        env = dict(os.environ, TESTBED_CLUSTER=self.cluster)
        p = ex.popen([sys.executable, *args], netns=self.netns, sysfs=True, env=env,
                     stdout=ex.PIPE, stderr=ex.STDOUT, text=True)
        self.procs.append(p)
        # drain the pipe so a process never blocks on it; lines wake wait_log()
        threading.Thread(target=self._drain, args=(p,), daemon=True).start()
        return p

    def _drain(self, p: ex.Popen) -> None:
        for line in p.stdout:
            with self._logged:
                self.log.append(line.rstrip())
                self._logged.notify_all()
        p.wait()
        with self._logged:
            self._finished.add(p.pid)
            self._logged.notify_all()

    def wait_log(self, marker: str, start: int = 0, timeout: float = 30.0) -> int:
        """Wait until the server logs a line containing ``marker`` (at index >= start); its index."""
        def found():
            return next((i for i in range(start, len(self.log)) if marker in self.log[i]), None)
        with self._logged:
            if not self._logged.wait_for(lambda: found() is not None or self.server.pid in self._finished, timeout):
                raise TestbedError(f"DNS server did not log {marker!r} within {timeout}s")
            i = found()
        if i is None:
            raise TestbedError(f"DNS server exited ({self.server.wait()}) before logging {marker!r}: "
                               + " | ".join(self.log[-5:]))
        return i

    def run_in(self, fn, *args, **kwargs):
        return netns.run_in(self.netns, fn, *args, **kwargs)

    def exec(self, argv: list[str], **kw) -> ex.Result:
        return ex.run(argv, netns=self.netns, sysfs=True, check=False, **kw)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            ex.stop(p, 5)
        self.api.close()
        self.handle.close()
        self.store.close()
        netns.delete(self.netns)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DnsLab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
