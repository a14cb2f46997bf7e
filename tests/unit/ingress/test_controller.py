"""The controller's sync decisions with the API and nginx replaced by recorders; the
configuration check is the real ``nginx -t``."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from testbed.ingress import certs
from testbed.ingress.controller import Controller, Options

from .helpers import NGINX, load


class FakeApi:
    def __init__(self):
        self.events: list[dict] = []
        self.statuses: list[dict] = []
        self.patches: list[tuple] = []

    def create(self, obj):
        assert obj["kind"] == "Event"
        self.events.append(obj)
        return obj

    def patch(self, kind, ns, name, patch):
        self.patches.append((kind, name.split(".")[0], patch["count"]))  # a repeated event: count bumped
        return patch

    def update_status(self, obj):
        self.statuses.append(obj)
        return obj

    def get(self, kind, ns, name):
        return {"status": {"podIP": "10.244.0.3"}}


class FakeNginx:
    def __init__(self):
        self.starts = self.reloads = 0
        self.tables: list[str] = []

    def configure(self, table, version):
        self.tables.append(table)

    @property
    def running(self):
        return self.starts > 0

    def start(self):
        self.starts += 1

    def reload(self):
        self.reloads += 1

    def stop(self):
        pass


@pytest.fixture
def ctl(tmp_path: Path):
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: run scripts/install")
    api = FakeApi()
    c = Controller(Options("unused.sock", "ingress-nginx", "ctl-0", str(tmp_path)), client=api)
    c.nginx = FakeNginx()
    c.watches["IngressClass"].cache[("", "nginx")] = {
        "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    for o in load("ingress-tls"):
        if o["kind"] == "Secret":
            o.setdefault("type", "Opaque")
        c.watches[o["kind"]].cache[(o["metadata"]["namespace"], o["metadata"]["name"])] = o
    return c


def test_first_sync_starts_then_only_changes_reload(ctl):
    assert ctl.sync() is True and ctl.nginx.starts == 1 and ctl.nginx.reloads == 0
    assert (Path(ctl.opts.directory) / "ssl/default-foo-tls.pem").exists()
    assert [s["status"] for s in ctl.client.statuses] == [{"loadBalancer": {"ingress": [{"ip": "10.244.0.3"}]}}] * 2
    assert ctl.sync() is False and ctl.nginx.reloads == 0   # nothing changed: no reload
    assert len(ctl.nginx.tables) == 1  # posted once, after the start


def test_endpoint_change_is_posted_not_reloaded(ctl):
    ctl.sync()
    sl = next(v for k, v in ctl.watches["EndpointSlice"].cache.items())
    sl["endpoints"][1]["conditions"]["ready"] = True
    assert ctl.sync() is False and ctl.nginx.reloads == 0
    assert "10.244.2.4:8080" in ctl.nginx.tables[-1]
    assert "10.244.2.4" not in (Path(ctl.opts.directory) / "nginx.conf").read_text()


def _ingress(ctl, name):
    return next(v for k, v in ctl.watches["Ingress"].cache.items() if k[1] == name)


def test_backend_switch_is_posted_not_reloaded(ctl):
    ctl.sync()
    before = ctl.nginx.tables[-1]
    path = _ingress(ctl, "plain")["spec"]["rules"][0]["http"]["paths"][0]
    path["backend"]["service"]["name"] = "other"
    assert ctl.sync() is False and ctl.nginx.reloads == 0
    assert ctl.nginx.tables[-1] != before and "\tdefault-other-" in ctl.nginx.tables[-1]


def test_new_path_reloads_with_old_and_new_routes_during_the_reload(ctl):
    ctl.sync()
    old = ctl.nginx.tables[-1]
    paths = _ingress(ctl, "plain")["spec"]["rules"][0]["http"]["paths"]
    paths.append(dict(paths[0], path="/added"))
    assert ctl.sync() is True and ctl.nginx.reloads == 1
    during, after = ctl.nginx.tables[-2:]
    assert during == old + after   # the old workers keep their routes until they exit
    assert len(after.splitlines()) == len(old.splitlines()) + 2  # "= /added" and "/added/"


def test_missing_secret_keeps_last_good_and_reports_once(ctl):
    ctl.sync()
    conf = (Path(ctl.opts.directory) / "nginx.conf").read_text()
    del ctl.watches["Secret"].cache[("default", "foo-tls")]
    ctl.sync()
    ctl.sync()
    assert (Path(ctl.opts.directory) / "nginx.conf").read_text() == conf
    reasons = sorted((e["involvedObject"]["name"], e["reason"], e["message"]) for e in ctl.client.events)
    assert reasons == [("plain", "SecretNotFound", 'secret "default/foo-tls" not found'),
                       ("secure", "SecretNotFound", 'secret "default/foo-tls" not found')]
    assert all(e["type"] == "Warning" for e in ctl.client.events)
    # fixed, then broken again: reported again (the recorder bumps the existing Event's count)
    ctl.watches["Secret"].cache[("default", "foo-tls")] = next(o for o in load("ingress-tls") if o["kind"] == "Secret")
    ctl.sync()
    del ctl.watches["Secret"].cache[("default", "foo-tls")]
    ctl.sync()
    assert sorted(ctl.client.patches) == [("Event", "plain", 2), ("Event", "secure", 2)]


def test_ingress_never_served_gets_no_status(ctl):
    del ctl.watches["Secret"].cache[("default", "foo-tls")]
    ctl.sync()
    assert ctl.client.statuses == []


def test_invalid_certificate_never_served(ctl):
    crt, _ = certs.self_signed("new.example.com")
    _, key = certs.self_signed("new.example.com")
    ctl.watches["Secret"].cache[("default", "foo-tls")]["data"] = {
        "tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()}
    ctl.sync()
    assert "ssl/default-foo-tls.pem" not in (Path(ctl.opts.directory) / "nginx.conf").read_text()
    assert {e["reason"] for e in ctl.client.events} == {"InvalidCertificate"}
    assert "tls.key does not match the certificate in tls.crt" in ctl.client.events[0]["message"]


def test_configuration_nginx_rejects_is_not_installed(ctl, monkeypatch):
    ctl.sync()
    good = (Path(ctl.opts.directory) / "nginx.conf").read_text()
    from testbed.ingress import render
    monkeypatch.setattr(render, "render", lambda cfg: "events {}\nhttp { bogus_directive on; }\n")
    assert ctl.sync() is False
    assert (Path(ctl.opts.directory) / "nginx.conf").read_text() == good and ctl.nginx.reloads == 0
    msgs = {e["message"] for e in ctl.client.events if e["reason"] == "RELOAD"}
    assert len(msgs) == 1 and 'unknown directive "bogus_directive"' in msgs.pop()


def test_ingress_of_another_class_is_ignored(ctl):
    for ing in [v for k, v in ctl.watches["Ingress"].cache.items()]:
        ing["spec"]["ingressClassName"] = "other"
    ctl.sync()
    assert "server_name foo.example.com" not in (Path(ctl.opts.directory) / "nginx.conf").read_text()
    assert ctl.client.statuses == []
