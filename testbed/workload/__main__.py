"""``python -m testbed.workload --control PATH``: a process serving the default pod workload.

Pods are added and removed over the JSON-lines control socket (see ``control.py``).  SIGTERM
or SIGINT closes every pod socket, removes the control socket and exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .control import ControlServer
from .server import WorkloadServer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.workload", description=__doc__.splitlines()[0])
    ap.add_argument("--control", required=True, help="path of the unix control socket to create")
    ap.add_argument("--idle-timeout", type=float, default=300.0,
                    help="close keep-alive connections idle this long (seconds, 0 = never)")
    args = ap.parse_args(argv)

    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = WorkloadServer(idle_timeout=args.idle_timeout or None).start()
    try:
        control = ControlServer(server, args.control).start()
    except BaseException:
        server.stop()
        raise
    try:
        while not done.wait(3600):
            pass
    finally:
        control.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
