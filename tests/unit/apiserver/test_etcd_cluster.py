"""A cluster's store choice (``state.json``), the etcd client's endpoints and credentials,
etcdctl's command line; the failover and the daemon's store on a real etcd member."""

import os
import socket

import pytest

from testbed.apiserver import etcd
from testbed.apiserver.etcd import cluster as etcd_cluster
from testbed.apiserver.etcd.client import EtcdClient
from testbed.apiserver.memory import MemoryStore
from testbed.k8s.admission import Admission
from testbed.scenario import parse


def test_requested_store_defaults_and_external_endpoints_imply_etcd():
    assert etcd_cluster.requested("embedded", None, None).kind == "embedded"
    assert etcd_cluster.requested("etcd", None, etcd.TLS()) == etcd_cluster.StoreConfig("etcd")
    c = etcd_cluster.requested("embedded", "http://10.0.0.1:2379,http://10.0.0.2:2379", None)
    assert (c.kind, c.endpoints, c.managed) == ("etcd", "http://10.0.0.1:2379,http://10.0.0.2:2379", False)


def test_requested_tls_files_are_recorded(tmp_path):
    for n in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / n).write_text("x")
    tls = etcd.TLS(str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    c = etcd_cluster.requested("etcd", "https://10.0.0.1:2379", tls)
    assert etcd_cluster.StoreConfig.from_dict(c.to_dict()).client_tls == tls


def test_prefix_is_the_clusters_own_on_a_shared_etcd_and_registry_in_its_own_member():
    assert etcd_cluster.requested("etcd", None, None, cluster="c1").prefix == "/registry"
    shared = etcd_cluster.requested("embedded", "http://10.0.0.1:2379", None, cluster="c1")
    assert shared.prefix == "/testbed/c1/registry"
    given = etcd_cluster.requested("etcd", "http://10.0.0.1:2379", None, "/k8s/blue/", cluster="c1")
    assert given.prefix == "/k8s/blue"
    assert etcd_cluster.StoreConfig.from_dict(given.to_dict()) == given
    # a record written before prefixes were recorded: upstream's
    assert etcd_cluster.StoreConfig.from_dict({"kind": "etcd", "endpoints": "http://h:1"}).prefix == "/registry"


def test_etcdctl_keys_under_registry_name_the_clusters_prefix():
    from testbed.apiserver.etcd.keys import relocate

    assert relocate("/registry/pods/default/x", "/testbed/c1/registry") == "/testbed/c1/registry/pods/default/x"
    assert relocate("/registry", "/k") == "/k"
    assert relocate("/registryx", "/k") == "/registryx"
    assert relocate("--prefix", "/k") == "--prefix"
    assert relocate("/registry/pods/", "/registry") == "/registry/pods/"


@pytest.mark.parametrize("args, message", [
    (("bogus", None, None), "--store: unsupported value 'bogus'; allowed: embedded, etcd"),
    (("etcd", "10.0.0.1:2379", None), "--etcd-endpoints: '10.0.0.1:2379' is not a client URL"),
    (("etcd", "https://h:1", etcd.TLS(cacert="/nonexistent/ca")), "--etcd-cacert: no such file '/nonexistent/ca'"),
    (("etcd", None, etcd.TLS(key="/k")), "--etcd-cacert/--etcd-cert/--etcd-key need --etcd-endpoints"),
    (("etcd", "http://h:1", None, "registry"), "--etcd-prefix: 'registry' is not a key prefix"),
    (("etcd", "http://h:1", None, "/"), "--etcd-prefix: '/' is not a key prefix"),
    (("etcd", "http://h:1", None, "/a b"), "--etcd-prefix: '/a b' is not a key prefix"),
    (("embedded", None, None, "/k"), "--etcd-prefix needs --store etcd or --etcd-endpoints"),
])
def test_bad_store_options_are_one_line_exit_2(args, message):
    with pytest.raises(etcd_cluster.StoreOptionError) as e:
        etcd_cluster.requested(*args)
    assert str(e.value).startswith(message) and e.value.exit_code == 2


def test_data_dir_is_under_the_state_dir_only_on_tmpfs(monkeypatch):
    monkeypatch.setattr(etcd_cluster, "_tmpfs", lambda path: True)
    assert etcd_cluster.data_dir("c1").endswith("/c1/etcd")
    monkeypatch.setattr(etcd_cluster, "_tmpfs", lambda path: False)
    assert etcd_cluster.data_dir("c1") == "/dev/shm/testbed-etcd/c1"


def test_tmpfs_is_read_from_the_mount_table():
    assert etcd_cluster._tmpfs("/dev/shm") is os.path.isdir("/dev/shm")
    assert etcd_cluster._tmpfs("/proc/self") is False


def test_scenario_store_field():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "t"}, "spec": {}}
    assert parse(doc).store == "embedded"
    assert parse(dict(doc, spec={"store": "etcd"})).store == "etcd"


def test_etcdctl_argv_carries_endpoints_credentials_and_api_3(monkeypatch):
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "http://elsewhere:1")
    monkeypatch.setenv("ETCDCTL_CACERT", "/other")
    argv, env = etcd.etcdctl_argv("https://a:1,https://b:2", ["get", "/registry/x"],
                                  etcd.TLS("/ca", "/c", "/k"))
    assert argv == ["etcdctl", "--endpoints", "https://a:1,https://b:2", "--cacert=/ca", "--cert=/c",
                    "--key=/k", "get", "/registry/x"]
    assert env["ETCDCTL_API"] == "3" and "ETCDCTL_ENDPOINTS" not in env and "ETCDCTL_CACERT" not in env


@pytest.mark.parametrize("endpoint", ["127.0.0.1:2379", "unix:///x", "http://h", "http://a:1,ftp://b:2"])
def test_client_refuses_what_is_not_a_client_url(endpoint):
    with pytest.raises(ValueError, match="expected http://HOST:PORT or https://HOST:PORT"):
        EtcdClient(endpoint)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_member_is_skipped_for_the_next_endpoint(etcd_endpoint):
    c = EtcdClient(f"http://127.0.0.1:{_closed_port()},{etcd_endpoint}")
    try:
        assert "header" in c.range("/nothing-here/", prefix=True)
    finally:
        c.close()


def test_open_store_is_the_recorded_one(etcd_endpoint, tmp_path):
    s = etcd_cluster.open_store(etcd_cluster.StoreConfig("etcd", etcd_endpoint), str(tmp_path), Admission({}))
    try:
        assert isinstance(s, etcd.EtcdStore) and s.endpoint == etcd_endpoint
        assert not s._client.serializable  # given by its endpoints: maybe several members
    finally:
        s.close()
    s = etcd_cluster.open_store(etcd_cluster.StoreConfig("etcd", etcd_endpoint, managed=True), str(tmp_path),
                                Admission({}))
    try:
        assert s._client.serializable  # the testbed's own member: one member, reads need no ReadIndex
    finally:
        s.close()
    s = etcd_cluster.open_store(etcd_cluster.StoreConfig(), str(tmp_path), Admission({}))
    try:
        assert isinstance(s, MemoryStore) and (tmp_path / "store").exists()
    finally:
        s.close()


def test_down_on_a_shared_etcd_deletes_its_prefix_only(etcd_endpoint, etcd_prefix, monkeypatch, tmp_path):
    from testbed import naming, state

    monkeypatch.setattr(naming, "STATE_ROOT", str(tmp_path))
    client = EtcdClient(etcd_endpoint)
    try:
        for cluster in ("a", "b"):
            config = etcd_cluster.requested("etcd", etcd_endpoint, None, f"{etcd_prefix}/{cluster}", cluster)
            state.claim(cluster)
            state.write_json(cluster, "state.json", {"store": config.to_dict()})
            store = etcd_cluster.open_store(config, str(tmp_path), Admission({}))
            try:
                store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns-" + cluster}})
            finally:
                store.close()
        # a neighbour whose prefix starts like a's: not a's
        client.txn([], [{"request_put": {"key": etcd.client.b64(f"{etcd_prefix}/ab/x"), "value": ""}}])
        etcd_cluster.remove("a")
        keys = sorted(etcd.client.unb64(kv["key"]).decode()
                      for kv in client.range(etcd_prefix + "/", prefix=True).get("kvs") or ())
        assert keys == [f"{etcd_prefix}/ab/x", f"{etcd_prefix}/b/namespaces/ns-b"]
    finally:
        client.close()
