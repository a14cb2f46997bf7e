"""Per-netns sysctls the proxy sets (upstream ``setIntSysCtl``), read and written under /proc/sys."""

from __future__ import annotations

import logging

log = logging.getLogger("testbed.proxy")

SYSCTLS = (  # (key, value): per-netns, writable, every mode; see datapath.md section 4.3
    ("net.netfilter.nf_conntrack_tcp_timeout_established", 86400),
    ("net.netfilter.nf_conntrack_tcp_timeout_close_wait", 3600),
)


def read_sysctl(key: str) -> str | None:
    try:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def write_sysctl(key: str, value: int) -> bool:
    """Write if different (upstream ``setIntSysCtl``); False if it failed (logged)."""
    cur = read_sysctl(key)
    if cur == str(value):
        return True
    try:
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))
        log.info("sysctl %s: %s -> %s", key, cur, value)
        return True
    except OSError as exc:
        log.warning("cannot set sysctl %s=%s: %s", key, value, exc)
        return False
