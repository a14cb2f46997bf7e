"""``python -m testbed.dns --corefile PATH --api SOCKET``: one CoreDNS-equivalent replica.

A bad Corefile prints CoreDNS's kind of message and exits 1, so a pod running this crashes
and backs off exactly as a real CoreDNS pod would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from . import corefile
from .server import DnsServer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.dns", description=__doc__.splitlines()[0])
    ap.add_argument("--corefile", "-conf", default="Corefile", help="the Corefile (CoreDNS's -conf)")
    ap.add_argument("--api", required=True, help="the testbed API server's unix socket")
    ap.add_argument("--resolv-conf", default=None,
                    help="file read for 'forward . /etc/resolv.conf' (default: /etc/resolv.conf)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s", stream=sys.stdout)
    try:
        blocks = corefile.load(args.corefile, resolv_conf=args.resolv_conf)
    except corefile.CorefileError as e:
        print(f"[FATAL] {e}", file=sys.stderr, flush=True)
        return 1
    server = DnsServer(blocks, args.api, os.path.abspath(args.corefile))

    async def run() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: server.shutdown() if server.stopping else task.cancel())
        return await server.run()

    try:
        return asyncio.run(run())
    except OSError as e:
        print(f"[FATAL] listen: {e.strerror}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
