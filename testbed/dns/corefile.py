"""Corefile parsing (pure): the Caddyfile syntax CoreDNS reads, into typed plugin settings.

Errors read like CoreDNS's own, because that is what a user sees in a crashing pod's log:
``<file>:<line> - Error during parsing: Unknown directive 'foo'`` for a syntax problem and
``plugin/<name>: <file>:<line> - Error during parsing: ...`` for a plugin's bad arguments.
Plugins CoreDNS has but this server does not implement are refused by name, never ignored.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from testbed.errors import TestbedError

# CoreDNS's plugin.cfg: every directive a stock build knows.
KNOWN_PLUGINS = frozenset(
    "root metadata geoip cancel tls timeouts multisocket reload nsid bufsize bind debug trace ready "
    "health pprof prometheus errors log dnstap local dns64 acl any chaos loadbalance tsig cache "
    "rewrite header dnssec autopath minimal template transfer hosts route53 azure clouddns k8s_external "
    "kubernetes file auto secondary etcd loop forward grpc erratic whoami on sign view nomad".split()
)
IMPLEMENTED = frozenset(
    "errors health ready kubernetes prometheus forward cache loop reload loadbalance".split()
)

DEFAULT_HEALTH = ":8080"
DEFAULT_READY = ":8181"
DEFAULT_PROMETHEUS = "localhost:9153"


class CorefileError(TestbedError):
    """A Corefile CoreDNS would refuse; ``str()`` is CoreDNS's kind of message."""


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    line: int
    block: tuple["Directive", ...] = ()


@dataclass(frozen=True)
class Kubernetes:
    zones: tuple[str, ...]
    ttl: int = 5
    pods: str = "disabled"
    fallthrough: tuple[str, ...] | None = None  # None: off; (): every zone
    namespaces: frozenset[str] = frozenset()
    endpoint_pod_names: bool = False

    def falls_through(self, name: str) -> bool:
        if self.fallthrough is None:
            return False
        return not self.fallthrough or any(in_zone(name, z) for z in self.fallthrough)


@dataclass(frozen=True)
class Forward:
    zone: str
    upstreams: tuple[tuple[str, int], ...]
    policy: str = "random"
    max_concurrent: int | None = None


@dataclass
class ServerBlock:
    zones: tuple[str, ...]
    port: int
    kubernetes: Kubernetes | None = None
    forward: Forward | None = None
    cache_ttl: int | None = None
    loadbalance: bool = False
    errors: bool = False
    loop: bool = False
    reload: bool = False
    health: str | None = None
    lameduck: float = 0.0
    ready: str | None = None
    prometheus: str | None = None
    plugins: list[str] = field(default_factory=list)


def fqdn(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def in_zone(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


# --- tokens and directives -------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        lex = shlex.shlex(raw, posix=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        lex.wordchars += "{}"
        try:
            words = list(lex)
        except ValueError as e:
            raise CorefileError(f"Corefile:{lineno} - Error during parsing: {e}") from None
        for w in words:
            # '{' and '}' glued to a word are separate tokens, as in Caddy.
            if len(w) > 1 and w.endswith("{"):
                out += [(w[:-1], lineno), ("{", lineno)]
            elif len(w) > 1 and w.startswith("}"):
                out += [("}", lineno), (w[1:], lineno)]
            else:
                out.append((w, lineno))
        out.append(("\n", lineno))
    return out


class _Parser:
    def __init__(self, text: str, filename: str):
        self.toks = _tokens(text)
        self.i = 0
        self.file = filename

    def err(self, line: int, msg: str) -> CorefileError:
        return CorefileError(f"{self.file}:{line} - Error during parsing: {msg}")

    def peek(self) -> tuple[str, int] | None:
        while self.i < len(self.toks) and self.toks[self.i][0] == "\n":
            self.i += 1
        return self.toks[self.i] if self.i < len(self.toks) else None

    def server_blocks(self) -> list[tuple[list[str], int, list[Directive]]]:
        blocks = []
        while (t := self.peek()) is not None:
            keys, line = [], t[1]
            while self.i < len(self.toks) and self.toks[self.i][0] not in ("{", "\n"):
                keys += [k for k in self.toks[self.i][0].split(",") if k]
                self.i += 1
            if self.i >= len(self.toks) or self.toks[self.i][0] != "{":
                raise self.err(line, f"Unexpected token '{keys[-1] if keys else ''}', expecting '{{'")
            self.i += 1
            blocks.append((keys, line, self.directives(line, top=True)))
        return blocks

    def directives(self, open_line: int, top: bool) -> list[Directive]:
        out = []
        while True:
            t = self.peek()
            if t is None:
                raise self.err(open_line, "Unexpected EOF")
            if t[0] == "}":
                self.i += 1
                return out
            name, line = t
            self.i += 1
            if top and name.lower() not in KNOWN_PLUGINS:
                raise self.err(line, f"Unknown directive '{name}'")
            args = []
            block: list[Directive] = []
            while self.i < len(self.toks) and self.toks[self.i][0] != "\n":
                tok = self.toks[self.i][0]
                self.i += 1
                if tok == "{":
                    block = self.directives(line, top=False)
                    break
                if tok == "}":
                    self.i -= 1
                    break
                args.append(tok)
            out.append(Directive(name.lower(), tuple(args), line, tuple(block)))


# --- plugin settings ---------------------------------------------------------------


def _port_of(key: str, line: int, p: _Parser) -> tuple[str, int]:
    key = key.removeprefix("dns://")
    zone, _, port = key.partition(":")
    if not port:
        return fqdn(zone or "."), 53
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise p.err(line, f"invalid port '{port}' in server block key '{key}'")
    return fqdn(zone or "."), int(port)


def _plugin_err(p: _Parser, d: Directive, msg: str) -> CorefileError:
    return CorefileError(f"plugin/{d.name}: {p.file}:{d.line} - Error during parsing: {msg}")


def _duration(p: _Parser, d: Directive, sub: Directive, text: str) -> float:
    """A Go duration as CoreDNS's plugins take them: 500ms, 5s, 1m, 1m30s."""
    total, num = 0.0, ""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            num += text[i]
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else text[i]
        if not num or unit not in units:
            raise _sub_err(p, d, sub, f"time: invalid duration \"{text}\"")
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    if num or not text:
        raise _sub_err(p, d, sub, f"time: missing unit in duration \"{text}\"")
    return total


def _sub_err(p: _Parser, d: Directive, sub: Directive, msg: str) -> CorefileError:
    return CorefileError(f"plugin/{d.name}: {p.file}:{sub.line} - Error during parsing: {msg}")


def _addr(p: _Parser, d: Directive, default: str) -> str:
    if len(d.args) > 1:
        raise _plugin_err(p, d, f"Wrong argument count or unexpected line ending after '{d.args[0]}'")
    addr = d.args[0] if d.args else default
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise _plugin_err(p, d, f"invalid address '{addr}', want [host]:port")
    return addr


def _kubernetes(p: _Parser, d: Directive, block_zones: tuple[str, ...]) -> Kubernetes:
    zones = tuple(fqdn(z) for z in d.args) or block_zones
    opts: dict = {}
    for sub in d.block:
        a = sub.args
        if sub.name == "pods":
            if len(a) != 1 or a[0] not in ("disabled", "insecure", "verified"):
                raise _sub_err(p, d, sub, f"wrong value for pods: {' '.join(a)},  must be one of: disabled, verified, insecure")
            opts["pods"] = a[0]
        elif sub.name == "fallthrough":
            opts["fallthrough"] = tuple(fqdn(z) for z in a)
        elif sub.name == "ttl":
            if len(a) != 1 or not a[0].isdigit() or not 0 <= int(a[0]) <= 3600:
                raise _sub_err(p, d, sub, f"ttl must be in range [0, 3600]: {' '.join(a)}")
            opts["ttl"] = int(a[0])
        elif sub.name == "namespaces":
            opts["namespaces"] = frozenset(a)
        elif sub.name == "endpoint_pod_names":
            opts["endpoint_pod_names"] = True
        elif sub.name in ("endpoint", "kubeconfig", "tls", "labels", "namespace_labels", "noendpoints",
                          "ignore", "multicluster", "startup_timeout", "apiserver_qps", "apiserver_burst",
                          "apiserver_max_inflight"):
            raise _sub_err(p, d, sub, f"'{sub.name}' is not supported by the testbed's DNS server "
                                      "(it reads the testbed API given with --api)")
        else:
            raise _sub_err(p, d, sub, f"unknown property '{sub.name}'")
    return Kubernetes(zones=zones, **opts)


def _forward(p: _Parser, d: Directive, resolv_conf: str | None) -> Forward:
    if len(d.args) < 2:
        raise _plugin_err(p, d, "Wrong argument count or unexpected line ending after "
                                f"'{d.args[-1] if d.args else 'forward'}'")
    opts: dict = {}
    for sub in d.block:
        if sub.name == "policy":
            if len(sub.args) != 1 or sub.args[0] not in ("random", "round_robin", "sequential"):
                raise _sub_err(p, d, sub, f"unknown policy '{' '.join(sub.args)}'")
            opts["policy"] = sub.args[0]
        elif sub.name == "max_concurrent":
            if len(sub.args) != 1 or not sub.args[0].isdigit() or int(sub.args[0]) < 1:
                raise _sub_err(p, d, sub, "max_concurrent can't be negative or zero")
            opts["max_concurrent"] = int(sub.args[0])
        elif sub.name not in ("expire", "health_check", "max_fails"):
            # (those three tune pooled connections and upstream health checks; this forwarder
            # opens a socket per query and tries the next upstream on a timeout instead)
            raise _sub_err(p, d, sub, f"unknown property '{sub.name}'")
    ups: list[tuple[str, int]] = []
    for to in d.args[1:]:
        if to.startswith("/"):
            ups += _resolv_conf_servers(resolv_conf if to == "/etc/resolv.conf" and resolv_conf else to, p, d)
            continue
        to = to.removeprefix("dns://")
        host, port = to, 53
        if to.count(":") == 1:
            host, _, ps = to.partition(":")
            if not ps.isdigit():
                raise _plugin_err(p, d, f"not an IP address or file: \"{to}\"")
            port = int(ps)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise _plugin_err(p, d, f"not an IP address or file: \"{to}\"") from None
        ups.append((host, port))
    if not ups:
        raise _plugin_err(p, d, "no nameservers found")
    return Forward(zone=fqdn(d.args[0]), upstreams=tuple(ups), **opts)


def _resolv_conf_servers(path: str, p: _Parser, d: Directive) -> list[tuple[str, int]]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise _plugin_err(p, d, f"{path}: {e.strerror}") from None
    return [(parts[1], 53) for line in text.splitlines()
            if len(parts := line.split()) >= 2 and parts[0] == "nameserver"]


def parse(text: str, filename: str = "Corefile", *, resolv_conf: str | None = None) -> list[ServerBlock]:
    """Parse a Corefile into server blocks; raise CorefileError with CoreDNS's wording."""
    p = _Parser(text, filename)
    out = []
    for keys, line, directives in p.server_blocks():
        if not keys:
            raise p.err(line, "server block without a zone")
        addrs = [_port_of(k, line, p) for k in keys]
        ports = {port for _, port in addrs}
        if len(ports) != 1:
            raise p.err(line, "a server block's keys must share one port")
        sb = ServerBlock(zones=tuple(z for z, _ in addrs), port=ports.pop())
        for z in sb.zones:
            if any(z in other.zones and other.port == sb.port for other in out):
                raise CorefileError(f"cannot serve dns://{z}:{sb.port} - it is already defined")
        for d in directives:
            if d.name not in IMPLEMENTED:
                raise _plugin_err(p, d, "not supported by the testbed's DNS server; supported: "
                                        + ", ".join(sorted(IMPLEMENTED)))
            if d.name in sb.plugins:
                raise _plugin_err(p, d, f"this plugin can only be used once per Server Block")
            sb.plugins.append(d.name)
            if d.name == "kubernetes":
                sb.kubernetes = _kubernetes(p, d, sb.zones)
            elif d.name == "forward":
                sb.forward = _forward(p, d, resolv_conf)
            elif d.name == "cache":
                if len(d.args) > 1 or (d.args and not d.args[0].isdigit()):
                    raise _plugin_err(p, d, f"cache TTL must be a number of seconds: {' '.join(d.args)}")
                sb.cache_ttl = int(d.args[0]) if d.args else 3600
                for sub in d.block:
                    # The cluster zone's answers never enter this cache (they are invalidated by
                    # watch events instead), so `disable ... cluster.local` already holds.
                    if sub.name != "disable" or not sub.args or sub.args[0] not in ("success", "denial"):
                        raise _sub_err(p, d, sub, f"unknown property '{sub.name}'")
            elif d.name == "health":
                sb.health = _addr(p, d, DEFAULT_HEALTH)
                for sub in d.block:
                    if sub.name != "lameduck" or len(sub.args) != 1:
                        raise _sub_err(p, d, sub, f"unknown property '{sub.name}'")
                    sb.lameduck = _duration(p, d, sub, sub.args[0])
            elif d.name == "ready":
                sb.ready = _addr(p, d, DEFAULT_READY)
            elif d.name == "prometheus":
                sb.prometheus = _addr(p, d, DEFAULT_PROMETHEUS)
            else:
                if d.args and d.name not in ("reload", "errors", "loadbalance"):
                    raise _plugin_err(p, d, f"Wrong argument count or unexpected line ending after '{d.name}'")
                setattr(sb, d.name, True)
        out.append(sb)
    if not out:
        raise CorefileError(f"{filename}:1 - Error during parsing: no server blocks")
    return out


def load(path: str, *, resolv_conf: str | None = None) -> list[ServerBlock]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise CorefileError(f"{path}: {e.strerror}") from None
    return parse(text, path, resolv_conf=resolv_conf)


KUBEADM_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""
