import copy

import pytest

from testbed.k8s import ManifestError, load_file, load_string, source_of

MULTI = """
apiVersion: v1
kind: Namespace
metadata: {name: lab}
---
---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, creationTimestamp: 2024-01-01T00:00:00Z}
  spec: {ports: [{port: 80}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSliceList
items:
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1}
  addressType: IPv4
"""


def test_multi_document_lists_and_sources(tmp_path):
    f = tmp_path / "app.yaml"
    f.write_text(MULTI)
    objs = load_file(f)
    assert [o["kind"] for o in objs] == ["Namespace", "Service", "Deployment", "EndpointSlice"]
    assert str(source_of(objs[0])) == f"{f}#0"
    assert str(source_of(objs[2])) == f"{f}#3.items[1]"
    assert source_of(objs[3]).index == 4 and source_of(objs[3]).item == 0
    # timestamps stay strings, like the JSON the API server sees
    assert objs[1]["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    # still plain dicts, source survives copies
    assert isinstance(objs[1], dict) and source_of(copy.deepcopy(objs[1])) == source_of(objs[1])


def test_unknown_kind_lists_supported_ones():
    with pytest.raises(ManifestError) as e:
        load_string("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x}\n", "cm.yaml")
    msg = str(e.value)
    assert msg.startswith('cm.yaml#0: no matches for kind "PersistentVolumeClaim" in version "v1"')
    assert "apps/v1 Deployment" in msg and "discovery.k8s.io/v1 EndpointSlice" in msg


def test_wrong_api_version_hint():
    with pytest.raises(ManifestError, match=r"did you mean apiVersion: apps/v1\?"):
        load_string("apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n", "d.yaml")


def test_missing_kind_and_bad_yaml():
    with pytest.raises(ManifestError, match=r"x.yaml#1: error validating data: \[kind not set\]"):
        load_string("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\n", "x.yaml")
    with pytest.raises(ManifestError, match="error converting YAML to JSON"):
        load_string("a: [1, 2\n", "bad.yaml")


def test_numeric_label_values_are_rejected_with_source():
    with pytest.raises(ManifestError, match=r"l.yaml#0: json: cannot unmarshal number .*metadata.labels"):
        load_string("apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {version: 1.0}}\n", "l.yaml")
