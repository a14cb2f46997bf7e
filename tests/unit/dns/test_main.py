"""The server's command line: a bad Corefile is one CoreDNS-style line and exit status 1."""

from __future__ import annotations

import subprocess
import sys


def test_bad_corefile_exits_nonzero_with_coredns_message(tmp_path):
    path = tmp_path / "Corefile"
    path.write_text(".:53 {\n    errors\n    foo\n}\n")
    p = subprocess.run([sys.executable, "-m", "testbed.dns", "--corefile", str(path), "--api", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip() == f"[FATAL] {path}:3 - Error during parsing: Unknown directive 'foo'"


def test_missing_corefile(tmp_path):
    p = subprocess.run([sys.executable, "-m", "testbed.dns", "--corefile", str(tmp_path / "nope"), "--api", "x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.strip() == f"[FATAL] {tmp_path / 'nope'}: No such file or directory"


def test_upstream_rejects_a_bad_record():
    p = subprocess.run([sys.executable, "-m", "testbed.dns.upstream", "--listen", "127.0.0.1:1053", "--cluster", "c",
                        "--record", "client=not-an-ip"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip() == "upstream record client: 'not-an-ip' is not an IPv4 address"
