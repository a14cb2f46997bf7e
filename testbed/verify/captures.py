"""The capture points of one check and the evidence they leave: pcaps and each involved
node's ruleset, written next to the check's result."""

from __future__ import annotations

import os
import socket

from .. import exec, netns
from ..capture import Capture, Frame, write_pcap
from .resolve import Source


class Captures:
    """Captures by name for one check run (``self.caps`` running, ``self._done`` stopped)."""

    def factory(self, src: Source):
        return lambda kind: netns.run_in(src.netns, socket.socket, socket.AF_INET, kind)

    def start(self, name: str, ns: str, iface: str, bpf: str) -> Capture:
        cap = Capture(ns, iface, bpf=bpf).start()
        self.caps[name] = cap
        return cap

    def save_rules(self) -> None:
        for n in sorted(self.nodes_involved):
            node = self.v.nodes[n]
            p = exec.run(["iptables-save"], netns=node.netns, check=False)
            path = os.path.join(self.ev, f"iptables-{n}.txt")
            with open(path, "w") as f:
                f.write(p.stdout or p.stderr)
            self.r.evidence.append(path)

    def caps_frames(self, name: str) -> list[Frame]:
        return self._done.get(name, [])

    def stop_all(self) -> None:
        """Stop every capture, keep its frames for analysis and write its pcap."""
        for name, cap in self.caps.items():
            cap.stop()
            self._done[name] = cap.frames
            path = os.path.join(self.ev, f"{name}.pcap")
            write_pcap(path, cap.frames)
            self.r.evidence.append(path)
        self.caps = {}
