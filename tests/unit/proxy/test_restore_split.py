"""A large partial sync split into several ``--noflush`` restores (``apply.split_restore``):
together they leave what the one input would, every state in between refers only to chains
that exist, and no restore writes many more chains than asked (no root)."""

from __future__ import annotations

import re

from testbed.proxy.iptables import apply
from testbed.proxy.iptables.render import IptablesRenderer
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, config, ep, eps, svc

_JUMP = re.compile(r" -[jg] (KUBE-\S+)")


def _ips(n, base):
    return [ep(f"10.{1 + (base + i) // 65536}.{(base + i) // 256 % 256}.{(base + i) % 256}") for i in range(n)]


def _dangling(model: apply.RuleModel) -> list[str]:
    """Jumps to chains the table does not hold (the kernel would have refused them)."""
    chains = model.chains("nat")
    fixed = {"KUBE-MARK-MASQ", "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING"}
    return [r for rules in chains.values() for r in rules for t in _JUMP.findall(r)
            if t not in chains and t not in fixed]


def _partial(services=12, endpoints=30):
    st = ProxyState(NODE)
    for i in range(services):
        st.update_service(svc(f"s{i}", cip=f"172.30.0.{i + 1}"))
        st.update_endpoint_slice(eps(f"s{i}", "ns1", *_ips(endpoints, 1000 * i)))
    r = IptablesRenderer(config())
    first = r.sync(st, changes=st.checkout(), full=True, now=0.0)
    for i in range(services // 2):    # new endpoints for half the Services, the rest deleted
        st.update_endpoint_slice(eps(f"s{i}", "ns1", *_ips(endpoints, 1000 * i + 500)))
    for i in range(services // 2, services):
        st.delete_service(svc(f"s{i}", cip=f"172.30.0.{i + 1}"))
        st.delete_endpoint_slice(eps(f"s{i}", "ns1"))
    return first, r.sync(st, changes=st.checkout(), full=False, now=1.0)


def test_split_leaves_what_the_single_input_leaves_consistent_in_between():
    first, part = _partial()
    pieces = apply.split_restore(part.text, part.written_groups, 50)
    assert len(pieces) > 4
    whole = apply.replay_restore([first.text, part.text])
    model = apply.replay_restore([first.text])
    for piece in pieces:
        apply.replay_restore([piece], model)
        assert _dangling(model) == []
        declared = sum(1 for line in piece.splitlines() if line.startswith(":"))
        assert declared <= 50 + 31    # whole Services: one may run past the limit
    assert model.tables == whole.tables
    # the Services' chains first, KUBE-SERVICES after them, the deletions last
    tops = [i for i, p in enumerate(pieces) if "\n:KUBE-SERVICES " in p]
    drops = [i for i, p in enumerate(pieces) if "\n-X " in p]
    assert len(tops) == 1 and drops and min(drops) > tops[0] and all("\n-X " not in p for p in pieces[:tops[0]])


def test_small_partial_sync_is_one_restore():
    _, part = _partial(services=2, endpoints=3)
    assert apply.split_restore(part.text, part.written_groups, 50) == [part.text]


def test_pieces_cut_from_the_spans_alone_are_the_same():
    """The syncer hands over the spans kept after dropping unchanged chains, not a joined text."""
    _, part = _partial()
    sp = apply.spans(part.text)
    assert list(apply.iter_split_restore(None, part.written_groups, 50, sp)) == \
        apply.split_restore(part.text, part.written_groups, 50)
    _, small = _partial(services=2, endpoints=3)
    assert list(apply.iter_split_restore(None, small.written_groups, 50, apply.spans(small.text))) == [small.text]


def test_few_stale_chains_go_with_the_last_jump_to_them():
    first, part = _partial(services=4, endpoints=10)   # 2 x 10 replaced endpoints, 2 x 11 deleted chains
    pieces = apply.split_restore(part.text, part.written_groups, 50)
    assert len(pieces) > 1 and all("\n-X " not in p for p in pieces[:-1])
    assert "\n:KUBE-SERVICES " in pieces[-1] and pieces[-1].count("\n-X ") == 2 * 10 + 2 * 11
