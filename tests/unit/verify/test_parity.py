"""The parity declaration: a declared difference must occur exactly as declared; anything else
(a pass where a difference is declared, another failure, an error) fails. And the README table
built from JUnit files."""

import pytest

from testbed.errors import TestbedError
from testbed.verify import parity, parity_table
from testbed.verify.report import Result, Row

SRC_EXPECTED = "client = 10.244.0.2"
SRC_NODE = "backend saw 10.244.0.0:48411; veth shows src 10.244.0.0"
VXLAN_EXPECTED = ("outer 172.20.10.2 > 172.20.10.3 udp/8472 vni 1 DF clear, len inner+50; "
                  "inner 10.244.0.2 > 10.244.1.2:5353 ttl 63")
VXLAN_NODE = ("outer 172.20.10.2 > 172.20.10.3 udp 38843>8472 vni 1 flags 0x8 DF clear len 98/48; "
              "inner 10.244.0.0:48411 > 10.244.1.2:5353 ttl 64 [wrong: inner, ttl]")


def result(*rows, check="c", error=None):
    return Result(check, rows=[Row(*r) for r in rows], error=error)


def test_iptables_has_no_declared_difference():
    r = result(("reach", "answered", "answered by web-1", True), ("source", SRC_EXPECTED, SRC_NODE, False))
    verdict, why = parity.judge("iptables", "clusterip", r)
    assert verdict == parity.FAIL and "source: expected client" in why
    assert parity.judge("iptables", "clusterip", result(("reach", "answered", "x", True))) == (parity.PASS, "")


def test_userspace_source_and_hop_are_expected_differences():
    r = result(("reach", "answered", "answered by web-2", True), ("source", SRC_EXPECTED, SRC_NODE, False),
               ("vxlan", VXLAN_EXPECTED, VXLAN_NODE, False))
    verdict, why = parity.judge("userspace", "udp-replace", r)
    assert verdict == parity.EXPECTED
    assert "[userspace-source]" in why and "[userspace-hop]" in why


def test_a_declared_difference_that_does_not_occur_fails():
    r = result(("source", SRC_EXPECTED, "backend saw 10.244.0.2:1234; veth shows src 10.244.0.2", True))
    verdict, why = parity.judge("userspace", "clusterip", r)
    assert verdict == parity.FAIL and "userspace-source did not occur" in why


def test_a_difference_observed_otherwise_fails():
    r = result(("source", SRC_EXPECTED, "backend saw 172.20.10.100:99; veth shows src 172.20.10.100", False))
    verdict, why = parity.judge("userspace", "clusterip", r)
    assert verdict == parity.FAIL and "declared by userspace-source" in why


def test_differences_do_not_cover_other_expectations_or_scenarios():
    # masquerade is what iptables mode does too: not covered, must pass
    r = result(("source", "masquerade (a node address)", "backend saw 10.244.0.0:1", True))
    assert parity.judge("userspace", "nodeport-cluster", r) == (parity.PASS, "")
    # the no-endpoints reset is declared for that scenario only
    reset = ("reach", "refused (clusterIP 10.0.0.1:80)", "error in 0.01s ([Errno 104] Connection reset by peer)", False)
    assert parity.judge("userspace", "no-endpoints", result(reset, check="tcp-refused"))[0] == parity.EXPECTED
    assert parity.judge("userspace", "clusterip", result(reset, check="tcp-refused"))[0] == parity.FAIL


def test_an_error_is_never_an_expected_difference():
    r = result(("source", SRC_EXPECTED, SRC_NODE, False), error="capture failed")
    assert parity.judge("userspace", "clusterip", r) == (parity.FAIL, "error: capture failed")


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.integration.test_scenarios" name="test_scenario[iptables-clusterip]">
  <properties><property name="check:a" value="pass"/></properties></testcase>
<testcase classname="tests.integration.test_scenarios" name="test_scenario[userspace-clusterip]">
  <properties><property name="check:a" value="expected-difference: [userspace-hop] no forward; [userspace-source] from the node"/>
  <property name="check:b" value="pass"/></properties></testcase>
<testcase classname="tests.integration.test_scenarios" name="test_scenario[userspace-no-endpoints]">
  <properties><property name="check:a" value="fail: reach: expected refused"/></properties>
  <failure message="AssertionError: a: reach">x</failure></testcase>
<testcase classname="tests.integration.test_other" name="test_scenario[iptables-no-endpoints]"/>
</testsuite></testsuites>
"""


def test_table_from_junit(tmp_path):
    p = tmp_path / "junit.xml"
    p.write_text(JUNIT)
    cells = parity_table.read_cells([str(p)])
    assert set(cells) == {("iptables", "clusterip"), ("userspace", "clusterip"), ("userspace", "no-endpoints")}
    table = parity_table.render(cells, ["iptables", "userspace"], ["clusterip", "no-endpoints"])
    assert table.splitlines()[:4] == [
        "| feature (scenario) | iptables | userspace |",
        "|---|---|---|",
        "| clusterip | pass | pass, differs [1], [2] |",
        "| no-endpoints | not run | **FAIL** (a) |",
    ]
    assert "[1] `userspace-hop`: no forward  " in table and "[2] `userspace-source`: from the node  " in table
    assert table.rstrip().endswith("not run: none of the JUnit files read has this test.")


def test_an_expected_failure_shows_as_a_failure_not_a_skip(tmp_path):
    p = tmp_path / "junit.xml"
    p.write_text("""<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.integration.test_scenarios" name="test_scenario[ipvs-readiness]">
  <properties><property name="check:unready" value="fail: silent: 2 frames"/><property name="check:b" value="pass"/>
  </properties><skipped type="pytest.xfail" message="IPVS mode: 2 frames reach the unready pod"/></testcase>
<testcase classname="tests.integration.test_scenarios" name="test_scenario[ipvs-ports]">
  <skipped type="pytest.xfail" message="IPVS mode: refused before any check"/></testcase>
<testcase classname="tests.integration.test_scenarios" name="test_scenario[ipvs-clusterip]">
  <skipped type="pytest.skip" message="no kernel"/></testcase>
</testsuite></testsuites>""")
    cells = parity_table.read_cells([str(p)])
    table = parity_table.render(cells, ["ipvs"], ["clusterip", "ports", "readiness"])
    assert table.splitlines()[2:5] == ["| clusterip | skipped |",
                                       "| ports | **FAIL** (IPVS mode: refused before any check) |",
                                       "| readiness | **FAIL** (unready) |"]


def test_readme_section_is_replaced_between_markers():
    text = f"# T\n{parity_table.BEGIN}\nold\n{parity_table.END}\nafter\n"
    assert parity_table.replace_section(text, "new\n") == f"# T\n{parity_table.BEGIN}\nnew\n{parity_table.END}\nafter\n"
    with pytest.raises(TestbedError, match="no <!-- parity-matrix:begin -->"):
        parity_table.replace_section("# T\n", "x")


def test_unreadable_junit_is_a_one_line_error(tmp_path):
    p = tmp_path / "j.xml"
    p.write_text("<testsuite")
    with pytest.raises(TestbedError, match="not a readable JUnit XML file"):
        parity_table.read_cells([str(p)])


def test_the_most_specific_difference_wins():
    udp = ("reach", "refused (clusterIP 10.0.0.1:53)", "dropped in 1.00s (timed out)", False)
    verdict, why = parity.judge("userspace", "no-endpoints", result(udp, check="udp-refused"))
    assert verdict == parity.EXPECTED and "[userspace-udp-no-endpoints]" in why
    assert parity.judge("userspace", "no-endpoints", result(udp, check="tcp-refused"))[0] == parity.FAIL


def test_accept_then_close_is_a_reset_or_an_empty_answer():
    for observed in ("error in 0.01s ([Errno 104] Connection reset by peer)", "error in 0.00s (not HTTP: b'')"):
        row = ("reach", "refused (nodePort 172.20.10.3:30271)", observed, False)
        assert parity.judge("userspace", "no-endpoints", result(row, check="nodeport-refused"))[0] == parity.EXPECTED
    row = ("reach", "refused (clusterIP 10.0.0.1:80)", "error in 0.00s (not HTTP: b'HTTP/1.0')", False)
    assert parity.judge("userspace", "no-endpoints", result(row, check="tcp-refused"))[0] == parity.FAIL


HAIRPIN_EXPECTED = "request arrives on veth8e102b31, nothing comes back on it"


def test_ipvs_hairpin_without_the_flag_fails_on_the_answer():
    # the request comes back (routed by the node), the connection still fails
    rows = (("reach", "dropped (clusterIP 10.107.11.123:80)", "dropped in 1.03s (timed out)", True),
            ("drop", "the request is seen arriving, no answer is seen", "request seen on: client; answers seen: 0", True),
            ("hairpin", HAIRPIN_EXPECTED, "in: 2 frames; back: 2 frames", False))
    verdict, why = parity.judge("ipvs", "hairpin-none", result(*rows, check="hairpin-fails"))
    assert verdict == parity.EXPECTED and "[ipvs-hairpin-reply]" in why
    # an answered connection is not what is declared for hairpin-none
    answered = ("reach", "dropped (clusterIP 10.107.11.123:80)", "answered by web-1 in 0.48s", False)
    assert parity.judge("ipvs", "hairpin-none", result(answered, *rows[1:], check="hairpin-fails"))[0] == parity.FAIL


def test_ipvs_hairpin_on_a_promiscuous_bridge_is_answered():
    rows = (("reach", "dropped (clusterIP 10.105.143.40:80)", "answered by web-1 in 0.48s", False),
            ("drop", "the request is seen arriving, no answer is seen", "request seen on: client; answers seen: 5", False),
            ("hairpin", HAIRPIN_EXPECTED, "in: 5 frames; back: 5 frames", False))
    verdict, why = parity.judge("ipvs", "hairpin-promiscuous", result(*rows, check="hairpin-fails"))
    assert verdict == parity.EXPECTED and why.startswith("[ipvs-hairpin-promiscuous]")
    # the same rows in iptables mode are failures
    assert parity.judge("iptables", "hairpin-promiscuous", result(*rows, check="hairpin-fails"))[0] == parity.FAIL


def test_ipvs_external_ip_that_is_another_nodes_address_is_dropped():
    row = ("reach", "answered (externalIP 172.20.10.3:8000)", "dropped in 2.04s (timed out)", False)
    verdict, why = parity.judge("ipvs", "externalips", result(row, check="from-outside"))
    assert verdict == parity.EXPECTED and "[ipvs-external-ip-node-address]" in why
    # only that check: from a pod the externalIP must still be answered
    assert parity.judge("ipvs", "externalips", result(row, check="from-pod"))[0] == parity.FAIL
