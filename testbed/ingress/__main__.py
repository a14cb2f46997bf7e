"""``python -m testbed.ingress --api SOCKET --pod NS/NAME --dir DIR``: the ingress-nginx
equivalent controller. It runs nginx as its child in the network namespace it was started in
(the pod's: the kubelet forks it there); SIGTERM/SIGINT stop nginx gracefully and exit 0."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .controller import Controller, Options


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.ingress", description=__doc__.splitlines()[0])
    ap.add_argument("--api", required=True, help="unix socket of the API server")
    ap.add_argument("--pod", required=True, help="NAMESPACE/NAME of the controller's pod")
    ap.add_argument("--dir", required=True, help="directory for nginx.conf, certificates, logs")
    ap.add_argument("--ingress-class", default="nginx")
    ap.add_argument("--controller-class", default="k8s.io/ingress-nginx")
    ap.add_argument("--publish-status-address", default="",
                    help="address for Ingress status.loadBalancer.ingress (default: the pod's IP)")
    args = ap.parse_args(argv)
    ns, sep, name = args.pod.partition("/")
    if not sep or not ns or not name:
        ap.error(f"--pod: {args.pod!r} is not NAMESPACE/NAME")
    if not os.path.exists(args.api):
        ap.error(f"--api: {args.api} does not exist (the API server's unix socket)")
    try:
        os.makedirs(args.dir, exist_ok=True)
    except OSError as e:
        ap.error(f"--dir: cannot create {args.dir}: {e.strerror}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctl = Controller(Options(args.api, ns, name, args.dir, args.ingress_class, args.controller_class,
                             args.publish_status_address))

    def on_signal(signum, frame):
        threading.Thread(target=ctl.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ctl.run()
    finally:
        ctl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
