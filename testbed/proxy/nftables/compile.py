"""Our ``nft -f`` lines -> nf_tables netlink messages (pure).

The renderer's text stays the model; this compiles exactly the forms it emits (table, chains,
sets and maps, the rule grammar of ``render``, elements, flushes and deletes) into the
messages ``nft`` itself would send, attribute for attribute as nft 1.0.6 encodes them
(``nft --debug=mnl``), so that ``nft list`` prints the same table either way. Anything else
raises ``Unsupported`` and the caller runs the text through nft instead.

Anonymous sets (``vmap { ... }``, ``{ a , b }``) get explicit names from the caller instead of
nft's ``__map%d``: the kernel then skips allocating a number, which ``sscanf``s the name of
every set of the table per anonymous set.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable

from testbed.netlink import _attr as attr
from testbed.proxy.nftables.names import TABLE

# nf_tables message types (linux/netfilter/nf_tables.h)
NEWTABLE, DELTABLE, NEWCHAIN, DELCHAIN, NEWRULE, DELRULE = 0, 2, 3, 5, 6, 8
NEWSET, DELSET, NEWSETELEM, DELSETELEM = 9, 11, 12, 14
F_CREATE, F_APPEND = 0x400, 0x800

# verdicts
_VERDICTS = {"accept": 1, "drop": 0, "return": -5}
_JUMP, _GOTO = -3, -4
# set flags, datatypes
_ANON, _CONST, _INTERVAL, _MAP, _TIMEOUT, _EVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
_VERDICT_TYPE = 0xFFFFFF00
_TYPES = {"ipv4_addr": (7, 4), "inet_proto": (12, 1), "inet_service": (13, 2)}
_HOOKS = {"prerouting": 0, "input": 1, "forward": 2, "output": 3, "postrouting": 4}
_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}
# registers: NFT_REG_1 (16 bytes) and the 32-bit ones from NFT_REG32_00 (8)
_REG1 = 1
# ip header fields: (offset, length)
_IP = {"saddr": (12, 4), "daddr": (16, 4)}
_NET, _TRANSPORT = 1, 2
_META_MARK, _META_IIFNAME, _META_L4PROTO = 3, 6, 16

# Set userdata, byte for byte as nft 1.0.6 writes it (key/data byte order, typeof, ...).
_UD_ADDR_SET = bytes.fromhex("000402000000")
_UD_VERDICT_MAP = bytes.fromhex("000400000000010400000000030800040d0000000100060400000000")
_UD_ANON_VMAP = bytes.fromhex("00040100000001040000000004080004010000000100060400000000")
_UD_ANON_ADDRS = {"saddr": bytes.fromhex("0004020000000204010000000314000407000000010c00040c00000001040b000000"),
                  "daddr": bytes.fromhex("0004020000000204010000000314000407000000010c00040c00000001040c000000")}


# The same attributes and expressions recur across thousands of rules (registers, verdicts to
# mark-for-masquerade, payload loads): building each once is most of a full sync's encoding.
_cached = functools.lru_cache(maxsize=1 << 16)


class Unsupported(ValueError):
    """A line outside the grammar this module compiles."""


def nest(kind: int, *children: bytes) -> bytes:
    return attr(kind | 0x8000, b"".join(children))


@_cached
def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!I", value & 0xFFFFFFFF))


@_cached
def text(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def _udata_comment(comment: str) -> bytes:
    raw = comment.encode() + b"\0"
    if len(raw) > 255:      # one length byte; nft has its own (shorter) limit and message
        raise Unsupported(f"comment of {len(raw)} bytes")
    return bytes((0, len(raw))) + raw


# ------------------------------------------------------------------------- expressions
def _expr(name: str, *attrs: bytes) -> bytes:
    return nest(1, text(1, name), nest(2, *attrs))


@_cached
def _payload(dreg: int, base: int, offset: int, length: int) -> bytes:
    return _expr("payload", u32(1, dreg), u32(2, base), u32(3, offset), u32(4, length))


@_cached
def _meta(key: int, dreg: int) -> bytes:
    return _expr("meta", u32(2, key), u32(1, dreg))


@_cached
def _cmp(op: int, data: bytes, sreg: int = _REG1) -> bytes:
    return _expr("cmp", u32(1, sreg), u32(2, op), nest(3, attr(1, data)))


@_cached
def _bitwise(mask: bytes, xor: bytes, with_op: bool) -> bytes:
    op = (u32(6, 0),) if with_op else ()
    return _expr("bitwise", u32(1, _REG1), u32(2, _REG1), *op, u32(3, len(mask)),
                 nest(4, attr(1, mask)), nest(5, attr(1, xor)))


@_cached
def _lookup(name: str, set_id: int | None = None, dreg: int | None = None, invert: bool = False) -> bytes:
    out = [u32(2, _REG1)]
    if dreg is not None:
        out.append(u32(3, dreg))
    out.append(text(1, name))
    if set_id is not None:
        out.append(u32(4, set_id))
    if invert:
        out.append(u32(5, 1))
    return _expr("lookup", *out)


@_cached
def _verdict(word: str, chain: str | None) -> bytes:
    """NFTA_IMMEDIATE_DATA / NFTA_SET_ELEM_DATA (both 2) holding NFTA_DATA_VERDICT."""
    code = {"jump": _JUMP, "goto": _GOTO}.get(word, _VERDICTS.get(word))
    if code is None:
        raise Unsupported(f"verdict {word!r}")
    inner = [u32(1, code)] + ([text(2, chain)] if chain is not None else [])
    return nest(2, nest(2, *inner))


@_cached
def _immediate_verdict(word: str, chain: str | None) -> bytes:
    return _expr("immediate", u32(1, 0), _verdict(word, chain))


# --------------------------------------------------------------------------- values
def _ip(value: str) -> bytes:
    """An IPv4 address, packed (``inet_pton``: strict, and much faster than ``ipaddress``)."""
    try:
        return socket.inet_pton(socket.AF_INET, value)
    except OSError:
        raise Unsupported(f"address {value!r}") from None


def _key_part(tok: str) -> bytes:
    """One field of an element key, padded to 4 bytes as in a concatenation."""
    if tok in _PROTOS:
        return bytes((_PROTOS[tok], 0, 0, 0))
    if tok.isdigit():
        return struct.pack("!H", int(tok)) + b"\0\0"
    return _ip(tok)


def _ranges(items: list[str]) -> list[tuple[int, int]]:
    """Sorted, merged (overlapping or adjacent) address ranges, as nft's auto-merge does."""
    spans = []
    for it in items:
        try:
            net = ipaddress.IPv4Network(it, strict=False)
        except ValueError:
            raise Unsupported(f"address {it!r}") from None
        spans.append((int(net.network_address), int(net.broadcast_address)))
    spans.sort()
    out: list[list[int]] = []
    for s, e in spans:
        if out and s <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


@_cached
def _prefix_exprs(offset: int, op: int, value: str) -> bytes:
    """``ip saddr|daddr [!=] a.b.c.d/n``: a byte-aligned prefix loads and compares only its
    bytes; any other length is masked first (as nft linearizes it)."""
    net = ipaddress.IPv4Network(value, strict=False)
    plen, addr = net.prefixlen, net.network_address.packed
    if plen % 8 == 0 and plen:
        return _payload(_REG1, _NET, offset, plen // 8) + _cmp(op, addr[:plen // 8])
    return (_payload(_REG1, _NET, offset, 4) + _bitwise(net.netmask.packed, bytes(4), False)
            + _cmp(op, addr))


def _interval_elements(ranges: list[tuple[int, int]]) -> list[bytes]:
    elems: list[bytes] = []
    if ranges[0][0] != 0:
        elems.append(nest(1, u32(3, 1), nest(1, attr(1, bytes(4)))))
    for s, e in ranges:
        elems.append(nest(1, nest(1, attr(1, struct.pack("!I", s)))))
        if e != 0xFFFFFFFF:
            elems.append(nest(1, u32(3, 1), nest(1, attr(1, struct.pack("!I", e + 1)))))
    return elems


# ----------------------------------------------------------------------------- output
@dataclass
class Compiled:
    """Messages (type, flags, body without nfgenmsg) and the input line each came from."""

    messages: list[tuple[int, int, bytes]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def add(self, mtype: int, flags: int, body: bytes, line: int) -> None:
        self.messages.append((mtype, flags, body))
        self.lines.append(line)


_MAX_ELEMS_BYTES = 60000
_COMMENT = re.compile(r' comment "([^"]*)"')


class Compiler:
    """Compiles one transaction; ``anon_name(kind)`` names each anonymous set ("map"/"set"),
    unique within the table."""

    def __init__(self, anon_name: Callable[[str], str]):
        self.anon_name = anon_name
        self.next_id = 1
        self.out = Compiled()
        self._table = text(1, TABLE)

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    # --- lines ------------------------------------------------------------------------
    def compile(self, transaction: str) -> Compiled:
        lines = transaction.split("\n")
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            if not line or line.startswith("#"):
                i += 1
                continue
            if line.startswith("add element ") or line.startswith("delete element "):
                i = self._elements(lines, i)
                continue
            self._line(line, i + 1)
            i += 1
        return self.out

    def _head(self, line: str) -> tuple[str, str, list[str]]:
        words = line.split(" ")
        if len(words) < 4 or words[2] != "ip" or words[3] != TABLE:
            raise Unsupported(line)
        return words[0], words[1], words[4:]

    def _line(self, line: str, no: int) -> None:
        verb, kind, rest = self._head(line)
        t = self._table
        if kind == "table":
            if verb == "delete" and not rest:
                self.out.add(DELTABLE, 0, t, no)
                return
            m = re.fullmatch(r'\{ comment "([^"]*)" ; \}', " ".join(rest))
            if verb != "add" or not (m or not rest):
                raise Unsupported(line)
            body = t + u32(2, 0) + (attr(6, _udata_comment(m.group(1))) if m else b"")
            self.out.add(NEWTABLE, F_CREATE, body, no)
            return
        if not rest:
            raise Unsupported(line)
        name, spec = rest[0], " ".join(rest[1:])
        if kind == "chain":
            if verb == "delete" and not spec:
                self.out.add(DELCHAIN, 0, t + text(3, name), no)
            elif verb == "flush" and not spec:
                self.out.add(DELRULE, 0, t + text(2, name), no)
            elif verb == "add":
                self.out.add(NEWCHAIN, F_CREATE, t + text(3, name) + self._chain_spec(spec, line), no)
            else:
                raise Unsupported(line)
        elif kind in ("set", "map"):
            if verb == "delete" and not spec:
                self.out.add(DELSET, 0, t + text(2, name), no)
            elif verb == "flush" and not spec:
                self.out.add(DELSETELEM, 0, t + text(2, name), no)
            elif verb == "add":
                self.out.add(NEWSET, F_CREATE, t + text(2, name) + self._set_spec(kind, spec, line), no)
            else:
                raise Unsupported(line)
        elif kind == "rule" and verb == "add":
            self._rule(name, spec, line, no)
        else:
            raise Unsupported(line)

    def _chain_spec(self, spec: str, line: str) -> bytes:
        if not spec:
            return b""
        m = re.fullmatch(r'\{ comment "([^"]*)" ; \}', spec)
        if m:
            return attr(12, _udata_comment(m.group(1)))
        m = re.fullmatch(r"\{ type (filter|nat) hook (\w+) priority (-?\d+) ; \}", spec)
        if not m or m.group(2) not in _HOOKS:
            raise Unsupported(line)
        hook = nest(4, u32(1, _HOOKS[m.group(2)]), u32(2, int(m.group(3))))
        return text(7, m.group(1)) + hook

    def _set_spec(self, kind: str, spec: str, line: str) -> bytes:
        m = re.fullmatch(r"\{ type ([\w .]+?)(?: : (verdict))? ;(?: flags dynamic,timeout ; timeout (\d+)s ;)?"
                         r'(?: comment "([^"]*)" ;)? \}', spec)
        if not m or (kind == "map") != bool(m.group(2)):
            raise Unsupported(line)
        fields = m.group(1).split(" . ")
        if any(f not in _TYPES for f in fields):
            raise Unsupported(line)
        ktype, klen = 0, 0
        for f in fields:
            tid, size = _TYPES[f]
            ktype = (ktype << 6) | tid
            klen += (size + 3) & ~3 if len(fields) > 1 else size
        flags = _MAP if kind == "map" else 0
        if m.group(3):
            flags |= _TIMEOUT | _EVAL
        body = u32(3, flags) + u32(4, ktype) + u32(5, klen)
        if kind == "map":
            body += u32(6, _VERDICT_TYPE) + u32(7, 0)
        body += u32(10, self._new_id())
        if m.group(3):
            body += attr(11, struct.pack("!Q", int(m.group(3)) * 1000))
        if kind == "map":
            if len(fields) == 1:
                raise Unsupported(line)
            udata = _UD_VERDICT_MAP
        elif fields == ["ipv4_addr"]:
            udata = _UD_ADDR_SET
        else:
            raise Unsupported(line)
        if m.group(4) is not None:
            udata += bytes((7,)) + _udata_comment(m.group(4))[1:]
        return body + attr(13, udata)

    # --- elements -----------------------------------------------------------------------
    def _elements(self, lines: list[str], i: int) -> int:
        """A run of element lines: consecutive ones of the same verb become one message per
        set (adds, or deletes, of distinct keys commute), in the order each set first
        appears."""
        verb = lines[i].split(" ", 1)[0]
        groups: dict[str, list[bytes]] = {}
        first: dict[str, int] = {}
        n = len(lines)
        while i < n and lines[i].startswith(f"{verb} element "):
            line = lines[i]
            _, _, rest = self._head(line)
            if len(rest) < 4 or rest[1] != "{" or rest[-1] != "}":
                raise Unsupported(line)
            name = rest[0]
            groups.setdefault(name, []).append(self._element(verb, " ".join(rest[2:-1]), line))
            first.setdefault(name, i + 1)
            i += 1
        mtype, flags = (NEWSETELEM, F_CREATE) if verb == "add" else (DELSETELEM, 0)
        for name, elems in groups.items():
            # an attribute's length is 16 bits: one message per ~60 KiB of elements
            start, size = 0, 0
            for k, e in enumerate(elems + [b""]):
                if k == len(elems) or size + len(e) > _MAX_ELEMS_BYTES:
                    body = self._table + text(2, name) + nest(3, *elems[start:k])
                    self.out.add(mtype, flags, body, first[name])
                    start, size = k, 0
                size += len(e)
        return i

    def _element(self, verb: str, body: str, line: str) -> bytes:
        comment = _COMMENT.search(body)
        if comment:
            body = body[:comment.start()] + body[comment.end():]
        key, _, value = body.partition(" : ")
        if verb == "delete" and (value or comment):
            raise Unsupported(line)
        parts = key.split(" . ")
        raw = b"".join(_key_part(p) for p in parts) if len(parts) > 1 else _ip(key)
        out = nest(1, attr(1, raw))
        if value:
            words = value.split(" ")
            if len(words) > 2:
                raise Unsupported(line)
            out += _verdict(words[0], words[1] if len(words) == 2 else None)
        if comment:
            out += attr(6, _udata_comment(comment.group(1)))
        return nest(1, out)

    # --- rules --------------------------------------------------------------------------
    def _rule(self, chain: str, rule: str, line: str, no: int) -> None:
        udata = b""
        m = re.search(r' comment "([^"]*)"$', rule)
        if m:
            udata = attr(7, _udata_comment(m.group(1)))
            rule = rule[:m.start()]
        exprs = _RuleCompiler(self, rule.split(" "), line, no).run()
        body = self._table + text(2, chain) + nest(4, *exprs) + udata
        self.out.add(NEWRULE, F_CREATE | F_APPEND, body, no)

    def anon_set(self, kind: str, body: Callable[[int], bytes], elems: list[bytes], no: int) -> tuple[str, int]:
        name, set_id = self.anon_name(kind), self._new_id()
        self.out.add(NEWSET, F_CREATE, self._table + text(2, name) + body(set_id), no)
        self.out.add(NEWSETELEM, F_CREATE, self._table + text(2, name) + u32(4, set_id) + nest(3, *elems), no)
        return name, set_id


class _RuleCompiler:
    """One rule's statements, left to right, as nft linearizes them."""

    def __init__(self, owner: Compiler, words: list[str], line: str, no: int):
        self.owner, self.w, self.line, self.no = owner, words, line, no
        self.pos = 0
        self.out: list[bytes] = []

    def fail(self) -> Unsupported:
        return Unsupported(self.line)

    def peek(self, k: int = 0) -> str:
        return self.w[self.pos + k] if self.pos + k < len(self.w) else ""

    def take(self, *expected: str) -> str:
        word = self.peek()
        if not word or (expected and word not in expected):
            raise self.fail()
        self.pos += 1
        return word

    def run(self) -> list[bytes]:
        while self.pos < len(self.w):
            word = self.peek()
            handler = getattr(self, "_st_" + word.replace("-", "_"), None)
            if handler is None:
                raise self.fail()
            handler()
        return self.out

    # verdicts
    def _st_jump(self) -> None:
        self.take()
        self.out.append(_immediate_verdict("jump", self.take()))

    def _st_goto(self) -> None:
        self.take()
        self.out.append(_immediate_verdict("goto", self.take()))

    def _st_return(self) -> None:
        self.out.append(_immediate_verdict(self.take(), None))

    _st_drop = _st_accept = _st_return

    def _st_reject(self) -> None:
        self.take()
        self.out.append(_expr("reject", u32(1, 0), attr(2, b"\x03")))

    def _st_masquerade(self) -> None:
        self.take()
        self.take("fully-random")
        self.out.append(_expr("masq", u32(1, 0x10)))

    def _st_ct(self) -> None:
        self.take()
        self.take("state")
        self.take("new")
        self.out += [_expr("ct", u32(2, 0), u32(1, _REG1)),
                     _bitwise(struct.pack("=I", 8), bytes(4), False), _cmp(1, bytes(4))]

    def _st_mark(self) -> None:
        self.take()
        if self.peek() == "set":           # mark set mark or|xor V
            self.take()
            self.take("mark")
            op = self.take("or", "xor")
            value = self._int(self.take())
            mask = ~value & 0xFFFFFFFF if op == "or" else 0xFFFFFFFF
            self.out += [_meta(_META_MARK, _REG1),
                         _bitwise(struct.pack("=I", mask), struct.pack("=I", value), True),
                         _expr("meta", u32(2, _META_MARK), u32(3, _REG1))]
        else:                              # mark and V == 0
            self.take("and")
            value = self._int(self.take())
            self.take("==")
            self.take("0")
            self.out += [_meta(_META_MARK, _REG1),
                         _bitwise(struct.pack("=I", value), bytes(4), True), _cmp(0, bytes(4))]

    def _int(self, word: str) -> int:
        try:
            return int(word, 0)
        except ValueError:
            raise self.fail() from None

    def _st_fib(self) -> None:
        self.take()
        which = self.take("saddr", "daddr")
        self.take("type")
        self.take("local")
        self.out += [_expr("fib", u32(3, 1 if which == "saddr" else 2), u32(2, 3), u32(1, _REG1)),
                     _cmp(0, struct.pack("=I", 2))]

    def _st_iifname(self) -> None:
        self.take()
        op = 0
        if self.peek() == "!=":
            self.take()
            op = 1
        name = self.take().strip('"')
        if name.endswith("*"):
            data = name[:-1].encode()
        else:
            data = name.encode().ljust(16, b"\0")
        if not data or len(data) > 16:
            raise self.fail()
        self.out += [_meta(_META_IIFNAME, _REG1), _cmp(op, data)]

    def _st_numgen(self) -> None:
        self.take()
        self.take("random")
        self.take("mod")
        mod = self._int(self.take())
        self.take("vmap")
        self.take("{")
        elems = []
        while True:
            idx = self._int(self.take())
            self.take(":")
            verb = self.take("goto", "jump")
            chain = self.take()
            elems.append(nest(1, nest(1, attr(1, struct.pack("=I", idx))),
                              _verdict(verb, chain)))
            if self.take(",", "}") == "}":
                break

        def body(set_id: int) -> bytes:
            return (u32(3, _ANON | _CONST | _MAP) + u32(4, 4) + u32(5, 4) + u32(6, _VERDICT_TYPE)
                    + u32(7, 0) + u32(10, set_id) + nest(9, u32(1, len(elems))) + attr(13, _UD_ANON_VMAP))
        name, set_id = self.owner.anon_set("map", body, elems, self.no)
        self.out += [_expr("numgen", u32(1, _REG1), u32(2, mod), u32(3, 1), u32(4, 0)),
                     _lookup(name, set_id, dreg=0)]

    def _st_update(self) -> None:
        self.take()
        target = self.take()
        if not target.startswith("@"):
            raise self.fail()
        self.take("{")
        self.take("ip")
        field_ = self.take("saddr", "daddr")
        self.take("}")
        self.out += [_payload(_REG1, _NET, *_IP[field_]),
                     _expr("dynset", u32(4, _REG1), u32(3, 1), text(1, target[1:]))]

    def _st_meta(self) -> None:
        self.take()
        self.take("l4proto")
        if self.peek() == ".":               # meta l4proto . th dport vmap @map
            self.out.append(_meta(_META_L4PROTO, _REG1))
            self._concat_tail(9)
            return
        proto = self.take()
        if proto not in _PROTOS:
            raise self.fail()
        self.out += [_meta(_META_L4PROTO, _REG1), _cmp(0, bytes((_PROTOS[proto],)))]
        if self.peek() == "dnat":
            self._dnat()

    def _concat_tail(self, reg: int) -> None:
        """``. meta l4proto`` (optional) ``. th dport vmap @map`` after a first field in reg 1."""
        self.take(".")
        if self.peek() == "meta":
            self.take()
            self.take("l4proto")
            self.out.append(_meta(_META_L4PROTO, reg))
            reg += 1
            self.take(".")
        self.take("th")
        self.take("dport")
        self.out.append(_payload(reg, _TRANSPORT, 2, 2))
        self.take("vmap")
        target = self.take()
        if not target.startswith("@"):
            raise self.fail()
        self.out.append(_lookup(target[1:], dreg=0))

    def _dnat(self) -> None:
        self.take("dnat")
        self.take("to")
        addr, _, port = self.take().partition(":")
        if not port.isdigit():
            raise self.fail()
        self.out += [_expr("immediate", u32(1, 1), nest(2, attr(1, _ip(addr)))),
                     _expr("immediate", u32(1, 2), nest(2, attr(1, struct.pack("!H", int(port))))),
                     _expr("nat", u32(1, 1), u32(2, 2), u32(3, 1), u32(5, 2), u32(7, 2))]

    def _st_ip(self) -> None:
        self.take()
        field_ = self.take("saddr", "daddr")
        offset, length = _IP[field_]
        if self.peek() == ".":
            self.out.append(_payload(_REG1, _NET, offset, length))
            self._concat_tail(9)
            return
        if self.peek().startswith("@"):
            self.out += [_payload(_REG1, _NET, offset, length), _lookup(self.take()[1:])]
            return
        op = 0
        if self.peek() == "!=":
            self.take()
            op = 1
        if self.peek() == "{":
            self.take()
            items = []
            while True:
                items.append(self.take())
                if self.take(",", "}") == "}":
                    break
            if len(items) > 1:
                self._anon_addrs(field_, items, bool(op))
                return
            value = items[0]
        else:
            value = self.take()
        self._prefix_match(offset, op, value)

    def _prefix_match(self, offset: int, op: int, value: str) -> None:
        if "/" not in value:
            self.out += [_payload(_REG1, _NET, offset, 4), _cmp(op, _ip(value))]
            return
        try:
            self.out.append(_prefix_exprs(offset, op, value))
        except ValueError:
            raise self.fail() from None

    def _anon_addrs(self, field_: str, items: list[str], invert: bool) -> None:
        elems = _interval_elements(_ranges(items))

        def body(set_id: int) -> bytes:
            return (u32(3, _ANON | _CONST | _INTERVAL) + u32(4, 7) + u32(5, 4) + u32(10, set_id)
                    + nest(9, u32(1, len(elems))) + attr(13, _UD_ANON_ADDRS[field_]))
        name, set_id = self.owner.anon_set("set", body, elems, self.no)
        self.out += [_payload(_REG1, _NET, *_IP[field_]), _lookup(name, set_id, invert=invert)]


def compile_transaction(transaction: str, anon_name: Callable[[str], str]) -> Compiled:
    """All messages of one transaction (without the batch begin/end), or ``Unsupported``."""
    return Compiler(anon_name).compile(transaction)
