"""Pure parsers for what a trace reads from the kernel besides the trace itself: conntrack
entries (the NAT applied and its reverse), ``ip route get`` and a VXLAN device's forwarding."""

from __future__ import annotations

import re


def parse_conntrack(text: str) -> list[dict]:
    """``conntrack -L`` lines -> [{proto, state, original: {...}, reply: {...}, mark, flags}]."""
    out = []
    for line in text.splitlines():
        toks = line.split()
        if len(toks) < 3 or "=" not in line:
            continue
        entry: dict = {"proto": toks[0], "state": "", "original": {}, "reply": {}, "flags": [], "text": line.strip()}
        side = "original"
        for t in toks[3:]:
            if t.startswith("[") and t.endswith("]"):
                entry["flags"].append(t.strip("[]"))
            elif "=" in t:
                k, v = t.split("=", 1)
                if k in ("mark", "use", "zone", "id"):
                    entry[k] = v
                    continue
                if k in entry[side] and side == "original":
                    side = "reply"
                entry[side][k] = v
            elif not entry["state"] and t.isupper():
                entry["state"] = t
        out.append(entry)
    return out


def find_conntrack(entries: list[dict], src: str, sport: str, dst: str, dport: str) -> dict | None:
    """The entry whose original direction is this packet (as it entered the namespace)."""
    for e in entries:
        o = e["original"]
        if (o.get("src"), o.get("sport"), o.get("dst"), o.get("dport")) == (src, sport, dst, dport):
            return e
    return None


def nat_of(entry: dict) -> dict:
    """What the entry says was rewritten: dnat (new destination) and snat (new source)."""
    o, r = entry["original"], entry["reply"]
    nat = {}
    if (r.get("src"), r.get("sport")) != (o.get("dst"), o.get("dport")):
        nat["dnat"] = f"{o.get('dst')}:{o.get('dport')} -> {r.get('src')}:{r.get('sport')}"
    if (r.get("dst"), r.get("dport")) != (o.get("src"), o.get("sport")):
        nat["snat"] = f"{o.get('src')}:{o.get('sport')} -> {r.get('dst')}:{r.get('dport')}"
    return nat


def conntrack_text(entry: dict) -> str:
    o, r = entry["original"], entry["reply"]
    return (f"{entry['proto']} {entry['state'] or '-'} orig {o.get('src')}:{o.get('sport')} -> "
            f"{o.get('dst')}:{o.get('dport')} reply {r.get('src')}:{r.get('sport')} -> "
            f"{r.get('dst')}:{r.get('dport')} mark={entry.get('mark', '0')}")


def parse_route(text: str) -> dict:
    """``ip route get`` -> {dst, via, dev, src} (fields absent when the route has none)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    toks = line.split()
    out = {"dst": toks[0] if toks else "", "text": line}
    for key in ("via", "dev", "src"):
        if key in toks and toks.index(key) + 1 < len(toks):
            out[key] = toks[toks.index(key) + 1]
    if toks and toks[0] in ("local", "broadcast") and len(toks) > 1:
        out["dst"], out["type"] = toks[1], toks[0]
    return out


def parse_vni(link_text: str) -> str | None:
    m = re.search(r"\bvxlan id (\d+)", link_text)
    return m.group(1) if m else None


def parse_neigh_mac(text: str) -> str | None:
    m = re.search(r"lladdr ([0-9a-f:]{17})", text)
    return m.group(1) if m else None


def parse_fdb_dst(text: str, mac: str) -> str | None:
    for line in text.splitlines():
        toks = line.split()
        if toks and toks[0] == mac and "dst" in toks:
            return toks[toks.index("dst") + 1]
    return None


def _hexaddr(ip: str, port: int | str) -> tuple[str, str]:
    return "".join(f"{int(o):02X}" for o in ip.split(".")), f"{int(port):04X}"


def _addr(h: str, p: str) -> str:
    """``0A600001``, ``0050`` (the kernel's hex) -> ``10.96.0.1:80``."""
    return ".".join(str(int(h[i:i + 2], 16)) for i in range(0, 8, 2)) + f":{int(p, 16)}"


def parse_ipvs_conn(text: str, client_ip: str, client_port: int | str) -> list[str]:
    """``/proc/net/ip_vs_conn`` lines of one client socket, readable:
    ``TCP 10.244.0.2:40000 -> 10.96.0.10:80 -> 10.244.1.2:8080 ESTABLISHED 899s``."""
    want_ip, want_port = _hexaddr(client_ip, client_port)
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 9 or (f[1], f[2]) != (want_ip, want_port):
            continue
        out.append(f"{f[0]} {_addr(f[1], f[2])} -> {_addr(f[3], f[4])} -> {_addr(f[5], f[6])} {f[7]} {f[8]}s")
    return out


def parse_ipvs_services(text: str) -> dict[str, list[str]]:
    """``/proc/net/ip_vs`` -> {``TCP 10.96.0.10:80``: [its real servers, ``10.244.1.2:8080``...]}
    (address-based virtual servers; firewall-mark ones, which kube-proxy does not create, are
    left out)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        if f[0] == "->":   # a real server of the virtual server above (or the column header)
            if current is not None:
                current.append(_addr(*f[1].split(":")))
        elif f[0] in ("TCP", "UDP", "SCTP"):
            current = out.setdefault(f"{f[0]} {_addr(*f[1].split(':'))}", [])
        else:              # the headers, a firewall-mark virtual server
            current = None
    return out
