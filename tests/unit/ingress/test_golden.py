"""nginx.conf goldens per feature; each golden is also accepted by the real ``nginx -t``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testbed.ingress import nginx, render

from .helpers import GOLDEN, NGINX, UPDATE, rendered

CASES = sorted(p.name[: -len(".objects.yaml")] for p in GOLDEN.glob("ingress-*.objects.yaml"))


def test_every_feature_has_a_case():
    assert {"ingress-host-path", "ingress-tls", "ingress-auth", "ingress-rewrite"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    text, _ = rendered(case)
    expected = GOLDEN / f"{case}.expected.conf"
    if UPDATE:
        expected.write_text(text)
    assert text == expected.read_text()


@pytest.mark.parametrize("case", CASES)
def test_golden_dynamic_table(case):
    """The routes and endpoints posted to nginx's balancer, next to the text they go with."""
    _, cfg = rendered(case)
    table = render.dynamic(cfg)
    expected = GOLDEN / f"{case}.expected.table"
    if UPDATE:
        expected.write_text(table)
    assert table == expected.read_text()
    keys = {line.split("\t")[1] for line in table.splitlines() if line.startswith("route\t")}
    text, _ = rendered(case)
    assert keys == set(re.findall(r"set \$ingress_location (\w+);", text))


@pytest.mark.parametrize("case", CASES)
def test_nginx_accepts_golden(case, tmp_path: Path):
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: run scripts/install (it installs Debian's nginx)")
    text, cfg = rendered(case)
    conf = nginx.write_tree(tmp_path, "nginx.conf", text, cfg.files)
    nginx.check(tmp_path, conf)


def test_nginx_check_reports_nginx_message(tmp_path: Path):
    conf = nginx.write_tree(tmp_path, "nginx.conf", "events {}\nhttp { bogus_directive on; }\n", {})
    with pytest.raises(nginx.NginxError, match='unknown directive "bogus_directive"'):
        nginx.check(tmp_path, conf)
