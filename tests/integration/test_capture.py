"""A capture keeps every frame the kernel queued to it, however late it is stopped."""

from __future__ import annotations

import socket
import threading

import pytest

from testbed import exec, netns
from testbed.capture import Capture

from .netutil import uniq

pytestmark = pytest.mark.root


@pytest.fixture
def lo_netns():
    name = f"tb.{uniq('itcap')}.node.n1"
    t = threading.Thread(target=lambda: (netns.create_here(name), netns.enter_root()))
    t.start()
    t.join()
    try:
        exec.run(["ip", "link", "set", "lo", "up"], netns=name)
        yield name
    finally:
        netns.delete(name)


def test_stop_right_after_sending_keeps_every_queued_frame(lo_netns):
    # A busy thread competes for the GIL, so the capture thread is often preempted between
    # its last read and the stop: the frames queued in that window used to be lost.
    stop_hog = threading.Event()

    def hog():
        while not stop_hog.is_set():
            sum(range(1000))

    hog_thread = threading.Thread(target=hog, daemon=True)
    hog_thread.start()
    lost = []
    try:
        for i in range(150):
            cap = Capture(lo_netns, "lo", bpf="udp port 9999").start()
            s = netns.run_in(lo_netns, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.sendto(b"first", ("127.0.0.1", 9999))
                assert cap.wait_for(lambda fr: len(fr) >= 1, timeout=5)
                for k in range(2):
                    s.sendto(b"late%d" % k, ("127.0.0.1", 9999))
            finally:
                s.close()
            frames = cap.stop()
            if len(frames) != 6:  # lo shows each datagram twice: sent and received
                lost.append((i, len(frames)))
    finally:
        stop_hog.set()
        hog_thread.join()
    assert not lost, f"rounds that lost frames (round, frames kept of 6): {lost[:10]}"
