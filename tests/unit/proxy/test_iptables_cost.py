"""Cost-based choice between a partial (``--noflush``) and a whole-table restore: the estimate
from the state's changes, and the syncer doing an expensive partial sync as a full one; a
restore killed at its deadline makes the loop resync in full at once."""

import pytest

from testbed.proxy.iptables import cost
from testbed.proxy.iptables.syncer import IptablesSyncer
from testbed.proxy.loop import ProxyLoop
from testbed.proxy.syncer import ProxyConfig
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, ep, eps, svc
from .test_iptables_loop import FakeIptables


def _ips(n, base=0):
    return [ep(f"10.{1 + (base + i) // 65536}.{(base + i) // 256 % 256}.{(base + i) % 256}") for i in range(n)]


def _state(services, endpoints):
    st = ProxyState(NODE)
    for i in range(services):
        st.update_service(svc(f"s{i}", cip=f"172.30.{i // 256}.{i % 256}"))
        st.update_endpoint_slice(eps(f"s{i}", "ns1", *_ips(endpoints, i * endpoints)))
    return st


def test_partial_chains_counts_new_and_gone_endpoints_only():
    st = _state(3, 10)
    st.checkout()
    st.update_endpoint_slice(eps("s1", "ns1", *(_ips(10, 10)[:9] + _ips(2, 10_000))))   # 1 gone, 2 new
    ch = st.checkout()
    assert cost.partial_chains(st, ch) == 1 + 3             # its port chain, 3 endpoint chains
    assert cost.partial_chains(st, ch, skip_unchanged=False) == 1 + 12   # every chain before or after


def test_partial_chains_of_deleted_service():
    st = _state(2, 5)
    st.checkout()
    st.delete_service(svc("s0", cip="172.30.0.0"))
    st.delete_endpoint_slice(eps("s0", "ns1"))
    ch = st.checkout()
    assert cost.partial_chains(st, ch) == 1 + 5


def test_small_change_stays_partial_burst_goes_full():
    small = cost.restore_cost(chains=50, lines=400_000)
    assert not small.full_is_cheaper
    burst = cost.restore_cost(chains=100_000, lines=400_000)
    assert burst.full_is_cheaper and burst.partial_seconds > 10 * burst.full_seconds
    edge = cost.break_even_chains(400_000)
    assert 15_000 < edge < 30_000
    assert not cost.restore_cost(edge - 10, 400_000).full_is_cheaper
    assert cost.restore_cost(edge + 10, 400_000).full_is_cheaper


def test_split_partial_sync_pays_the_quadratic_term_per_restore():
    # 30k new endpoint chains into a 400k-line table: one --noflush restore is dearer than the
    # whole table, 10 restores of 2,000 are not; rewriting every endpoint chain still is
    assert cost.restore_cost(30_000, 400_000).full_is_cheaper
    split = cost.restore_cost(30_000, 400_000, batch=2_000)
    assert not split.full_is_cheaper and split.partial_seconds < 6
    assert cost.noflush_seconds(2_000, 2_000) == cost.noflush_seconds(2_000)
    assert cost.noflush_seconds(4_000, 2_000) == 2 * cost.noflush_seconds(2_000) + cost.RESTORE_FIXED_SECONDS
    assert cost.restore_cost(200_000, 400_000, batch=2_000).full_is_cheaper


def test_swept_stale_chains_count_in_the_estimate():
    st = _state(2, 5)
    st.checkout()
    st.update_endpoint_slice(eps("s1", "ns1", *_ips(5, 5)))
    ch = st.checkout()
    assert cost.estimate(st, ch, stale=40_000).chains == cost.estimate(st, ch).chains + 40_000


def _loop(**kw):
    ipt = FakeIptables()
    cfg = ProxyConfig(cluster="c", node_name=NODE, node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8",
                      min_sync_period=0, skip_unchanged_chains=True, **kw)
    r = ProxyLoop(cfg, IptablesSyncer(cfg, iptables=ipt, random_fully=True, be_liberal=False))
    return r, ipt


def _add(r, kind, obj):
    r.enqueue(kind, {"type": "ADDED", "object": obj})


@pytest.mark.parametrize("cost_based", [True, False])
def test_expensive_partial_sync_is_written_whole(cost_based, monkeypatch):
    r, ipt = _loop(cost_based_full_sync=cost_based)
    _add(r, "Service", svc("s0"))
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(5)))
    assert r.sync().ok and ipt.saves == 1
    monkeypatch.setattr(cost, "NOFLUSH_SECONDS_PER_CHAIN2", 1.0)   # any partial is dear now
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(6)))
    rec = r.sync()
    assert rec.ok and not rec.full                      # the loop asked for a partial sync
    assert ipt.saves == 1   # written whole or not, the kernel is not read again
    if cost_based:
        assert r.counters["partial_syncs_written_whole_total"] == 1
        assert ":KUBE-SERVICES - [0:0]" in ipt.restores[-1]   # the whole table
        # the jump rules the first sync inserted are known to be there: not inserted twice
        assert "\n-I " in ipt.restores[0] and "\n-I " not in ipt.restores[-1]
    else:
        assert r.counters["partial_syncs_written_whole_total"] == 0


def test_forced_or_failed_full_sync_reads_the_kernel_again(monkeypatch):
    r, ipt = _loop(cost_based_full_sync=True)
    _add(r, "Service", svc("s0"))
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(5)))
    assert r.sync().ok and ipt.saves == 1
    r.request_sync(full=True)                  # e.g. the canary is gone
    assert r.sync().full and ipt.saves == 2
    monkeypatch.setattr(cost, "NOFLUSH_SECONDS_PER_CHAIN2", 1.0)
    ipt.fail_next = "iptables-restore: line 3 failed\n"
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(6)))
    assert not r.sync().ok and ipt.saves == 2   # promoted: the kept copy, then it failed
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(7)))
    assert r.sync().ok and ipt.saves == 3       # after a failure the kernel is read again


class _Stream:
    """A restore that ran into its deadline."""
    timed_out = True

    def __init__(self):
        self.text = ""

    def write(self, piece):
        self.text += piece

    def close(self):
        return -9, "iptables-restore exceeded its deadline of 1 s and was killed (nothing committed)\n"


def test_deadline_kill_resyncs_in_full_at_once():
    r, ipt = _loop(restore_deadline=1.0, sync_period=30.0)
    _add(r, "Service", svc("s0"))
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(2)))
    assert r.sync().ok
    opened = []
    ipt.open_restore = lambda noflush, deadline: opened.append((noflush, deadline)) or _Stream()
    _add(r, "EndpointSlice", eps("s0", "ns1", *_ips(3)))
    rec = r.sync()
    assert not rec.ok and not rec.full and opened == [(True, 1.0)]
    assert "exceeded its deadline" in rec.error
    assert r.counters["restore_deadline_kills_total"] == 1
    assert r.syncer.needs_full_sync
    now = r.clock()
    assert r.sched.next_run(now) <= now + r.cfg.min_sync_period   # not sync_period later
    del ipt.open_restore
    rec = r.sync()
    assert rec.ok and rec.full
