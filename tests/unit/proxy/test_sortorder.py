import pytest

from testbed.proxy.iptables.sortorder import parse_restore, rule_comment, sort_restore_text

RAW = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-B - [0:0]
:KUBE-SEP-OLD - [0:0]
:KUBE-EXT-A - [0:0]
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 1.1.1.2 --dport 80 -j KUBE-SVC-B
-A KUBE-SVC-B -m comment --comment "ns2/svc2:p80 -> 10.0.0.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-2
-A KUBE-SVC-B -m comment --comment "ns2/svc2:p80 -> 10.0.0.3:80" -j KUBE-SEP-3
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-A
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 1.1.1.1 --dport 80 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 2.2.2.2 --dport 80 -j KUBE-EXT-A
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3000 -j KUBE-EXT-A
-X KUBE-SEP-OLD
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
*filter
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
COMMIT
"""

SORTED = """*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-A - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-OLD - [0:0]
:KUBE-SVC-B - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3000 -j KUBE-EXT-A
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-A
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 1.1.1.1 --dport 80 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 2.2.2.2 --dport 80 -j KUBE-EXT-A
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 1.1.1.2 --dport 80 -j KUBE-SVC-B
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-SVC-B -m comment --comment "ns2/svc2:p80 -> 10.0.0.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-2
-A KUBE-SVC-B -m comment --comment "ns2/svc2:p80 -> 10.0.0.3:80" -j KUBE-SEP-3
-X KUBE-SEP-OLD
COMMIT
"""


def test_sort():
    assert sort_restore_text(RAW) == SORTED
    assert sort_restore_text(SORTED) == SORTED


def test_non_kube_chains_last():
    text = "*nat\n:ZZZ - [0:0]\n:AAA - [0:0]\n:KUBE-Z - [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
    assert sort_restore_text(text).splitlines()[1:5] == [
        ":KUBE-SERVICES - [0:0]", ":KUBE-Z - [0:0]", ":AAA - [0:0]", ":ZZZ - [0:0]"]


def test_rule_comment():
    assert rule_comment('-A X -m comment --comment "a b: c" -j Y') == "a b: c"
    assert rule_comment("-A X -m comment --comment ns1/svc1:p80 -s 1.2.3.4 -j Y") == "ns1/svc1:p80"
    assert rule_comment("-A X -j Y") is None


@pytest.mark.parametrize("bad,msg", [
    ("*nat\n-A FOO -j X\nCOMMIT\n", "undeclared"),
    ("*nat\n:FOO - [0:0]\n-A FOO -j X\n", "COMMIT"),
    ("*nat\n:FOO - [0:0]\n-A FOO -j X\n-X FOO\nCOMMIT\n", "after adding rules"),
    ("-A FOO\n", "table"),
])
def test_parse_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        parse_restore(bad)
