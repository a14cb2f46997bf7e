"""``kubectl get``/``describe`` for Ingresses as kubectl prints them."""

from __future__ import annotations

import datetime as _dt

from testbed.kubectl import describe, printers

from .helpers import load

NOW = _dt.datetime(2026, 1, 1, 0, 10, tzinfo=_dt.timezone.utc)


def routes() -> dict:
    ing = next(o for o in load("ingress-host-path") if o["kind"] == "Ingress")
    ing["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    ing["status"] = {"loadBalancer": {"ingress": [{"ip": "10.244.0.3"}]}}
    return ing


def test_get_ingress_columns():
    tls = dict(routes(), spec=dict(routes()["spec"], tls=[{"hosts": ["foo.example.com"], "secretName": "x"}]))
    text = printers.format_table("ing", [routes(), tls], now=NOW)
    assert text.splitlines() == [
        "NAME     CLASS   HOSTS                           ADDRESS      PORTS     AGE",
        "routes   nginx   foo.example.com,*.example.com   10.244.0.3   80        10m",
        "routes   nginx   foo.example.com,*.example.com   10.244.0.3   80, 443   10m",
    ]


def test_hosts_column_shows_three_and_counts_the_rest():
    ing = {"metadata": {"name": "x"}, "spec": {"rules": [{"host": f"h{i}.example.com"} for i in range(5)]}}
    assert printers.ingress_hosts(ing) == "h0.example.com,h1.example.com,h2.example.com + 2 more..."
    assert printers.ingress_hosts({"spec": {"rules": [{}]}}) == "*"


def test_describe_ingress():
    objs = load("ingress-host-path")
    services = [o for o in objs if o["kind"] == "Service"]
    slices = [o for o in objs if o["kind"] == "EndpointSlice"]
    text = describe.describe_ingress(routes(), services, slices, [], now=NOW)
    lines = text.splitlines()
    assert lines[:6] == [
        "Name:             routes",
        "Labels:           <none>",
        "Namespace:        default",
        "Address:          10.244.0.3",
        "Ingress Class:    nginx",
        "Default backend:  fallback:80 (10.244.1.5:8080)",
    ]
    assert "  foo.example.com  " in text
    assert any(l.split() == ["/api", "api:80", "(10.244.1.2:8080)"] for l in lines)
    assert any(l.split() == ["/api/v2", "apiv2:http", "(10.244.1.3:8080)"] for l in lines)
    assert lines[-1].split() == ["Events:", "<none>"]
