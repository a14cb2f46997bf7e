"""Reading a small conntrack table as text before using the netlink library (pure parts)."""

from testbed.proxy.apply import ConntrackFilter, select_entries
from testbed.proxy.conntrack import proc_rows

TABLE = """\
ipv4     2 udp      17 27 src=10.244.1.2 dst=10.96.0.10 sport=40000 dport=53 [UNREPLIED] src=10.244.2.5 dst=10.244.1.2 sport=53 dport=40000 mark=0 zone=0 use=2
ipv4     2 tcp      6 86399 ESTABLISHED src=10.244.1.2 dst=10.96.0.1 sport=50000 dport=443 src=172.20.10.1 dst=10.244.1.2 sport=6443 dport=50000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 unknown  2 597 src=10.244.2.1 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=10.244.2.1 mark=0 zone=0 use=2
ipv6     10 udp      17 29 src=fd00:0000:0000:0000:0000:0000:0000:0002 dst=fd00:0000:0000:0000:0000:0000:0000:000a sport=1 dport=53 [UNREPLIED] src=fd00:0000:0000:0000:0000:0000:0000:0003 dst=fd00:0000:0000:0000:0000:0000:0000:0002 sport=53 dport=1 mark=0 zone=0 use=2
"""


def test_rows_carry_the_original_destination_and_the_reply_source():
    rows = proc_rows(TABLE)
    assert rows == [(17, "10.96.0.10", 53, "10.244.2.5", None),
                    (6, "10.96.0.1", 443, "172.20.10.1", None),
                    (2, "224.0.0.22", None, "224.0.0.22", None),
                    (17, "fd00::a", 53, "fd00::3", None)]


def test_a_filter_matches_the_text_as_it_matches_the_netlink_dump():
    rows = proc_rows(TABLE)
    assert select_entries([ConntrackFilter(orig_dst="10.96.0.10", orig_dport=53)], rows)
    assert select_entries([ConntrackFilter(orig_dst="fd00::a", reply_src="fd00::3")], rows)
    # TCP entries never match a UDP filter; a stale target elsewhere matches nothing
    assert not select_entries([ConntrackFilter(orig_dst="10.96.0.1", orig_dport=443)], rows)
    assert not select_entries([ConntrackFilter(orig_dst="10.96.0.10", reply_src="10.244.9.9")], rows)


def test_an_empty_or_odd_table_gives_no_rows():
    assert proc_rows("") == []
    assert proc_rows("garbage\nipv4 2 udp x 1 src=1.2.3.4\n") == []
