"""Can this kernel run kube-proxy's IPVS mode? Checked before a cluster is built.

IPVS mode needs the IPVS netfilter module (``ip_vs``) and dummy interfaces (``kube-ipvs0``).
Either is fine if built in or loaded, or if it is a loadable module of the running kernel and
module loading is enabled. Nothing is created or changed by the check: it reads ``/proc``,
``/sys`` and ``/lib/modules``, and asks generic netlink whether it knows the ``IPVS`` family.
"""

from __future__ import annotations

import os

LANE_HINT = ("run the IPVS tests through scripts/kernel-lane (a VM with a stock kernel), "
             "or use a kernel with ip_vs and dummy")


def _loadable(module: str, release: str, root: str = "/") -> bool:
    if _read(os.path.join(root, "proc/sys/kernel/modules_disabled")) == "1":
        return False
    if not os.path.exists(os.path.join(root, "proc/modules")):
        return False        # a kernel without module support
    base = os.path.join(root, "lib/modules", release)
    for name in ("modules.dep", "modules.builtin"):
        text = _read(os.path.join(base, name)) or ""
        for line in text.splitlines():
            path = line.split(":", 1)[0]
            stem = os.path.basename(path).split(".ko")[0]
            if stem.replace("-", "_") == module:
                return True
    return False


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def has_ipvs(root: str = "/", genl_lookup=None) -> bool:
    if os.path.exists(os.path.join(root, "proc/net/ip_vs")) or os.path.isdir(os.path.join(root, "sys/module/ip_vs")):
        return True
    if genl_lookup is None:
        from testbed.proxy.ipvs.kernel import genl_family_id
        genl_lookup = genl_family_id
    try:
        return genl_lookup("IPVS") is not None
    except OSError:
        return False


def has_dummy(root: str = "/") -> bool:
    return os.path.isdir(os.path.join(root, "sys/module/dummy"))


def ipvs_problem(root: str = "/", release: str | None = None, genl_lookup=None) -> str | None:
    """None if IPVS mode can run here, else a one-line reason with what to do."""
    release = release or os.uname().release
    missing = []
    if not has_ipvs(root, genl_lookup) and not _loadable("ip_vs", release, root):
        missing.append("ip_vs (IPVS)")
    if not has_dummy(root) and not _loadable("dummy", release, root):
        missing.append("dummy interfaces")
    if not missing:
        return None
    return (f"proxy mode ipvs needs {' and '.join(missing)}, which kernel {release} does not have "
            f"and cannot load; {LANE_HINT}")
