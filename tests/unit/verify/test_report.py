"""Evidence, JUnit XML and the table (no root)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from testbed.capture import Frame, compile_bpf, write_pcap
from testbed.verify.report import Result, evidence_dir, table, write_junit


def results() -> list[Result]:
    a = Result("good", rows=[], seconds=0.5)
    a.add("reach", "answered", "answered by web-1", True)
    a.evidence.append("/x/good/client.pcap")
    b = Result("bad", seconds=1.25)
    b.add("reach", "answered", "answered", True)
    b.add("source", "client = 10.244.0.2", "backend saw 10.244.0.0", False)
    c = Result("broken", error="pod default/x is not running")
    return [a, b, c]


def test_junit(tmp_path):
    path = tmp_path / "sub" / "junit.xml"
    write_junit(str(path), "quickstart", results())
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["good"].find("failure") is None and "evidence: /x/good/client.pcap" in cases["good"].find("system-out").text
    f = cases["bad"].find("failure")
    assert f.get("message") == "source: expected client = 10.244.0.2; observed backend saw 10.244.0.0"
    assert cases["bad"].get("time") == "1.250"
    assert cases["broken"].find("error").get("message") == "pod default/x is not running"


def test_result_ok_and_text():
    a, b, c = results()
    assert a.ok and not b.ok and not c.ok
    assert not Result("empty").ok
    assert b.failure_text() == "source: expected client = 10.244.0.2; observed backend saw 10.244.0.0"


def test_table_renders():
    from rich.console import Console

    con = Console(record=True, width=200)
    con.print(table(results()))
    text = con.export_text()
    assert "good" in text and "FAIL" in text and "pass" in text and "not running" in text


def test_table_is_borderless_columns_like_kubectl():
    from rich.console import Console

    con = Console(record=True, width=200)
    con.print(table(results()))
    lines = [line.rstrip() for line in con.export_text().splitlines()]
    assert lines == [
        "CHECK   EXPECT  EXPECTED             OBSERVED                      RESULT",
        "good    reach   answered             answered by web-1             pass",
        "bad     reach   answered             answered                      pass",
        "        source  client = 10.244.0.2  backend saw 10.244.0.0        FAIL",
        "broken  -       -                    pod default/x is not running  FAIL",
    ]


def test_pcap_and_evidence_dir(tmp_path):
    d = evidence_dir(str(tmp_path), "c1")
    p = f"{d}/x.pcap"
    frame = bytes.fromhex("0a580af400020a580af400010800") + bytes(20)
    write_pcap(p, [Frame(1.5, frame, False)])
    from scapy.utils import rdpcap

    pk = rdpcap(p)
    assert len(pk) == 1 and bytes(pk[0]) == frame


def test_bpf_compiles():
    prog = compile_bpf("udp port 8472")
    assert prog and all(len(i) == 4 for i in prog)
    import pytest
    with pytest.raises(ValueError, match="bad capture filter"):
        compile_bpf("udp port nonsense-port-name")
