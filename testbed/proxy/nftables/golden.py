"""Golden-case rendering for nftables mode: harness inputs -> the table after each sync.

Upstream's nftables tests compare the whole table as knftables' fake ``Dump()`` prints it
after a sync (not the transaction), and check a partial sync's size through its operation
count. ``render_file`` prints that dump for an ``*.inputs.yaml``; ``render_steps`` replays an
``nftables-*.steps.txt`` file and returns, per step, the dump and the operation count.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from testbed.proxy.harness import HarnessInputs, ObjectStore, load_inputs, parse_operations, read_text
from testbed.proxy.model import IPV4
from testbed.proxy.nftables.render import LOCAL_DETECTOR_MODES, NftablesConfig
from testbed.proxy.nftables.sync import NftablesSyncer
from testbed.proxy.nftables.table import sort_nft
from testbed.proxy.tracker import ProxyState


def config_from_harness(doc: dict, where: str = "harness") -> NftablesConfig:
    """``NftablesConfig`` from a ``KubeProxyTestHarness`` document with ``mode: nftables``."""
    det = doc.get("localDetector") or {}
    mode = det.get("mode") or ""
    if mode in ("", "None"):
        mode, value = "", ""
    elif mode in LOCAL_DETECTOR_MODES:
        key = mode[0].lower() + mode[1:]
        value = det.get(key) or det.get("value") or ""
    else:
        raise ValueError(f"{where}: localDetector.mode {mode!r}: allowed values are "
                         + ", ".join(LOCAL_DETECTOR_MODES))
    addresses: list[str] = []
    for addrs in (doc.get("nodeInterfaces") or {}).values():
        addresses.extend(a.split("/")[0] for a in addrs)
    node_ip = doc.get("nodeIP") or ""
    if not addresses and node_ip:
        addresses = [node_ip]
    cidrs = doc.get("serviceCIDRs") or ()
    if isinstance(cidrs, str):
        cidrs = [c for c in cidrs.split(",") if c]
    table = doc.get("nftablesTable") or {}
    if table and (table.get("name", "kube-proxy") != "kube-proxy"):
        raise ValueError(f"{where}: nftablesTable.name {table.get('name')!r}: only kube-proxy")
    return NftablesConfig(
        node_name=doc.get("nodeName", ""),
        node_ip=node_ip,
        ip_family=doc.get("ipFamily", IPV4),
        detect_local_mode=mode,
        detect_local_value=value,
        masquerade_all=bool(doc.get("masqueradeAll", False)),
        masquerade_bit=int(doc.get("masqueradeBit", 14)),
        mark_format=doc.get("markFormat", "short"),
        nodeport_addresses=tuple(doc.get("nodePortAddresses") or ()),
        node_addresses=tuple(addresses),
        service_cidrs=tuple(cidrs),
    )


def load(path: str | Path) -> tuple[HarnessInputs, NftablesConfig]:
    inputs = load_inputs(path)
    if inputs.harness.get("mode") != "nftables":
        raise ValueError(f"{path}: harness mode {inputs.harness.get('mode')!r}: expected nftables")
    return inputs, config_from_harness(inputs.harness, str(path))


def render_file(path: str | Path, *, sorted: bool = False) -> str:  # noqa: A002
    """The table after the first (full) sync of an inputs file, in Dump() line syntax."""
    inputs, cfg = load(path)
    state = ProxyState(cfg.node_name, cfg.ip_family)
    state.apply(inputs.objects)
    syncer = NftablesSyncer(cfg)
    syncer.plan(state, now=0.0)
    syncer.committed()
    text = syncer.dump()
    return "\n".join(sort_nft(text)) + "\n" if sorted else text


@dataclass
class StepResult:
    number: int
    title: str
    dump: str
    full: bool                      # whether the step's last sync was a full one
    operations: int                 # of the step's last sync (what upstream asserts)
    transactions: list[str]         # every sync of the step, in order
    expected: str | None


_STEP = re.compile(r"^###\s*step\s+(\d+)\s*:\s*(.*)$")
_SLICE = re.compile(r"EndpointSlice (?P<ns>[^/\s]+)/(?P<name>[^\s:]+)")


def _set_endpoints(store: ObjectStore, ns: str, name: str, ips: list[str]) -> list:
    es = copy.deepcopy(store.get("EndpointSlice", ns, name))
    es["endpoints"] = [{"addresses": [ip]} for ip in ips]
    return store.put(es)


def _actions(title: str) -> list[tuple[str, object]]:
    """A step title as ("ops", operations) / ("age", None) / ("sync", None) actions.

    Besides the harness's change language this knows the nftables sequence's extra phrases:
    ``ageStaleChains()``, ``endpoints emptied``, ``back to {IPs}``, ``empty NS/SLICE again``,
    ``restore {IPs}`` and an explicit ``sync`` between two changes of one step.
    """
    out: list[tuple[str, object]] = []
    last_slice: tuple[str, str] | None = None
    body = re.sub(r"^two syncs, only the second is checked:\s*", "", title)
    for part in (p.strip() for p in re.split(r";|\(a\)|\(b\)", body)):
        # Trailing prose in parentheses; a Service's own "(ClusterIP ...)" details stay.
        part = re.sub(r"\s*\((?!ClusterIP)[^()]*\)\s*$", "", part).strip().rstrip(".")
        m = _SLICE.search(part)
        if m:
            last_slice = (m["ns"], m["name"])
        if not part or part.startswith(("no object change", "the stale", "svc3", "expected")):
            continue
        if part.startswith("ageStaleChains"):
            out.append(("age", None))
            continue
        explicit_sync = part.endswith(", sync")
        part = part.removesuffix(", sync")
        ips = re.search(r"\{([^}]*)\}", part)
        if "endpoints emptied" in part or re.match(r"empty \S+ again", part):
            if re.match(r"empty (\S+)/(\S+) again", part):
                mm = re.match(r"empty (\S+)/(\S+) again", part)
                last_slice = (mm[1], mm[2])
            ns, name = last_slice
            out.append(("ops", [lambda st, ns=ns, name=name: _set_endpoints(st, ns, name, [])]))
        elif (" back to " in part or part.startswith("restore ")) and ips:
            ns, name = last_slice
            addr = [a.strip() for a in ips[1].split(",") if a.strip()]
            out.append(("ops", [lambda st, ns=ns, name=name, a=addr: _set_endpoints(st, ns, name, a)]))
        elif part.startswith("sync again") or part.startswith("then sync"):
            pass
        else:
            ops, _, _ = parse_operations(part)
            out.append(("ops", ops))
        if explicit_sync:
            out.append(("sync", None))
    return out


def render_steps(path: str | Path) -> list[StepResult]:
    """Replay a steps file; step 1 is its base inputs' full sync."""
    path = Path(path)
    text = read_text(path)
    m = re.search(r"Step 1 is (\S+?)\.\{inputs\.yaml", text)
    if not m:
        raise ValueError(f"{path}: header does not name the first step's inputs ('Step 1 is ...')")
    base = path.parent / f"{m[1]}.inputs.yaml"
    inputs, cfg = load(base)
    expected_base = path.parent / f"{m[1]}.expected.nft"
    steps: list[tuple[int, str, list[str]]] = []
    for line in text.splitlines():
        hm = _STEP.match(line)
        if hm:
            steps.append((int(hm[1]), hm[2].strip(), []))
        elif steps:
            steps[-1][2].append(line)

    state = ProxyState(cfg.node_name, cfg.ip_family)
    store = ObjectStore(inputs.objects)
    state.apply(inputs.objects)
    syncer = NftablesSyncer(cfg)
    now = 0.0

    def sync() -> tuple[bool, int, str]:
        plan = syncer.plan(state, now=now)
        syncer.committed()
        return plan.full, plan.transaction.operations, plan.text

    full, ops, tx = sync()
    out = [StepResult(1, f"initial sync of {base.name}", syncer.dump(), full, ops, [tx],
                      expected_base.read_text() if expected_base.exists() else None)]
    for number, title, body in steps:
        txs: list[str] = []
        for kind, arg in _actions(title):
            if kind == "age":
                # Upstream's ageStaleChains(): every stale chain becomes 2 s older.
                syncer.kernel.stale = {c: t - 2.0 for c, t in syncer.kernel.stale.items()}
            elif kind == "sync":
                txs.append(sync()[2])
            else:
                for op in arg:
                    for action, obj in op(store):
                        _apply_event(state, action, obj)
        full, ops, tx = sync()
        out.append(StepResult(number, title, syncer.dump(), full, ops, [*txs, tx],
                              "\n".join(body).strip("\n") + "\n"))
    return out


def steps_text(path: str | Path, *, sorted: bool = True) -> str:  # noqa: A002
    """What ``testbed render --proxy-mode nftables --steps`` prints: per step, a header with
    the sync kind and its operation count, then the table after it in upstream's test order
    (with ``sorted=False`` as the syncer dumped it)."""
    out = []
    for step in render_steps(path):
        kind = "full sync" if step.full else "partial sync"
        out.append(f"### step {step.number} ({kind}, {step.operations} operations): {step.title}\n")
        out.append("\n".join(sort_nft(step.dump)) + "\n" if sorted else step.dump)
    return "".join(out)


def expected_operations(step: StepResult) -> int | None:
    """The ``NumOperations() == N`` an upstream step asserts, from its comment, if any."""
    m = re.search(r"NumOperations\(\) == (\d+)", step.expected or "")
    return int(m[1]) if m else None


def _apply_event(state: ProxyState, action: str, obj: dict) -> None:
    kind = obj.get("kind")
    if kind == "Service":
        (state.update_service if action == "update" else state.delete_service)(obj)
    elif kind == "EndpointSlice":
        (state.update_endpoint_slice if action == "update" else state.delete_endpoint_slice)(obj)

