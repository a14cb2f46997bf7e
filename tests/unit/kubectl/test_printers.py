import json

import pytest
import yaml

from testbed.kubectl import format_table, human_duration, no_resources, to_json, to_yaml

from .fixtures import NOW, event, pod, service, slice_


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (4 * 3600 + 5 * 60, "4h5m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (3 * 86400 + 4 * 3600, "3d4h"),
    (8 * 86400, "8d"), (400 * 86400, "400d"), (2 * 365 * 86400, "2y"), (2 * 365 * 86400 + 5 * 86400, "2y5d"),
    (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_pods_table():
    crash = pod("crashy", created="2024-04-29T12:00:00Z",
                containerStatuses=[{"name": "nginx", "ready": False, "restartCount": 5,
                                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}])
    pending = pod("pending", created="2024-05-01T11:59:55Z")
    pending["status"] = {"phase": "Pending"}
    pending["spec"].pop("nodeName")
    dying = pod("dying")
    dying["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:30Z"
    expected = (
        "NAME      READY   STATUS             RESTARTS     AGE\n"
        "web-1     1/1     Running            0            3m2s\n"
        "crashy    0/1     CrashLoopBackOff   5 (2m ago)   2d\n"
        "pending   0/1     Pending            0            5s\n"
        "dying     1/1     Terminating        0            3m2s\n"
    )
    assert format_table("pods", [pod(), crash, pending, dying], now=NOW) == expected


def test_pods_wide_all_namespaces():
    p2 = pod("api-0", ns="prod")
    p2["status"]["nominatedNodeName"] = "node-b"
    p2["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"}]
    assert format_table("po", [pod(), p2], wide=True, all_namespaces=True, now=NOW) == (
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE    IP           NODE     NOMINATED NODE   READINESS GATES\n"
        "default     web-1   1/1     Running   0          3m2s   10.244.1.2   node-a   <none>           <none>\n"
        "prod        api-0   1/1     Running   0          3m2s   10.244.1.2   node-a   node-b           0/1\n"
    )


def test_pod_init_and_completed_statuses():
    init = pod("init")
    init["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    init["status"] = {"phase": "Pending", "initContainerStatuses": [
        {"name": "setup", "ready": False, "restartCount": 0, "state": {"running": {}}}],
        "containerStatuses": [{"name": "nginx", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": "PodInitializing"}}}]}
    done = pod("job")
    done["status"] = {"phase": "Succeeded", "containerStatuses": [
        {"name": "nginx", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    assert format_table("pod", [init, done], now=NOW) == (
        "NAME   READY   STATUS      RESTARTS   AGE\n"
        "init   0/1     Init:0/1    0          3m2s\n"
        "job    0/1     Completed   0          3m2s\n"
    )


def test_services_table_and_wide():
    np = service("np", "NodePort", ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                                          {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}])
    lb_pending = service("lb", "LoadBalancer", ports=[{"port": 443, "protocol": "TCP", "nodePort": 31443}])
    lb = service("lb2", "LoadBalancer", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30081}])
    lb["status"]["loadBalancer"] = {"ingress": [{"ip": "172.18.255.1"}, {"ip": "172.18.255.2"}]}
    headless = service("db", clusterIP="None", clusterIPs=["None"])
    ext = service("ext", "ExternalName", externalName="example.com", selector=None, clusterIP="", clusterIPs=[])
    objs = [service(), np, lb_pending, lb, headless, ext]
    assert format_table("svc", objs, now=NOW) == (
        "NAME   TYPE           CLUSTER-IP    EXTERNAL-IP        PORT(S)                     AGE\n"
        "web    ClusterIP      10.96.12.34   <none>             80/TCP                      2d2h\n"
        "np     NodePort       10.96.12.34   <none>             80:30080/TCP,53:30053/UDP   2d2h\n"
        "lb     LoadBalancer   10.96.12.34   <pending>          443:31443/TCP               2d2h\n"
        "lb2    LoadBalancer   10.96.12.34   172.18.255.1,...   80:30081/TCP                2d2h\n"
        "db     ClusterIP      None          <none>             80/TCP                      2d2h\n"
        "ext    ExternalName   <none>        example.com        80/TCP                      2d2h\n"
    )
    assert format_table("services", [lb, ext], wide=True, now=NOW) == (
        "NAME   TYPE           CLUSTER-IP    EXTERNAL-IP                 PORT(S)        AGE    SELECTOR\n"
        "lb2    LoadBalancer   10.96.12.34   172.18.255.1,172.18.255.2   80:30081/TCP   2d2h   app=lb2\n"
        "ext    ExternalName   <none>        example.com                 80/TCP         2d2h   <none>\n"
    )


def test_endpoints_table():
    ep = {"apiVersion": "v1", "kind": "Endpoints",
          "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"},
          "subsets": [{"addresses": [{"ip": f"10.244.1.{i}"} for i in range(2, 8)],
                       "notReadyAddresses": [{"ip": "10.244.9.9"}],
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}
    empty = {"apiVersion": "v1", "kind": "Endpoints",
             "metadata": {"name": "idle", "namespace": "default", "creationTimestamp": "2024-05-01T11:59:00Z"}}
    assert format_table("ep", [ep, empty], now=NOW) == (
        "NAME   ENDPOINTS                                                     AGE\n"
        "web    10.244.1.2:8080,10.244.1.3:8080,10.244.1.4:8080 + 3 more...   60m\n"
        "idle   <none>                                                        60s\n"
    )


def test_endpointslices_table():
    placeholder = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                   "metadata": {"name": "idle-abcde", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"}}
    assert format_table("endpointslice", [slice_(n=5), placeholder], now=NOW) == (
        "NAME         ADDRESSTYPE   PORTS     ENDPOINTS                                      AGE\n"
        "web-x2b4c    IPv4          8080      10.244.1.2,10.244.1.3,10.244.1.4 + 2 more...   5s\n"
        "idle-abcde   IPv4          <unset>   <unset>                                        60m\n"
    )


def _deployment():
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T07:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                                 "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                          {"name": "sidecar", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}


def test_deployments_and_replicasets():
    assert format_table("deploy", [_deployment()], wide=True, now=NOW) == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS      IMAGES               SELECTOR\n"
        "web    2/3     3            2           5h    nginx,sidecar   nginx:1.27,busybox   app=web,tier in (be,fe)\n"
    )
    rs = dict(_deployment(), kind="ReplicaSet")
    rs["metadata"] = dict(rs["metadata"], name="web-7d4b9c")
    assert format_table("rs", [rs], now=NOW) == (
        "NAME         DESIRED   CURRENT   READY   AGE\n"
        "web-7d4b9c   3         3         2       5h\n"
    )


def test_nodes_table_wide():
    def node(name, ready, labels, unsched=False):
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels, "creationTimestamp": "2024-04-21T12:00:00Z"},
                "spec": {"unschedulable": unsched},
                "status": {"conditions": [{"type": "Ready", "status": ready}],
                           "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                           "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                        "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.13"}}}
    nodes = [node("cp", "True", {"node-role.kubernetes.io/control-plane": ""}),
             node("worker", "False", {}, unsched=True)]
    assert format_table("no", nodes, all_namespaces=True, now=NOW) == (
        "NAME     STATUS                        ROLES           AGE   VERSION\n"
        "cp       Ready                         control-plane   10d   v1.30.0\n"
        "worker   NotReady,SchedulingDisabled   <none>          10d   v1.30.0\n"
    )
    assert format_table("nodes", nodes[:1], wide=True, now=NOW) == (
        "NAME   STATUS   ROLES           AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         "
        "KERNEL-VERSION   CONTAINER-RUNTIME\n"
        "cp     Ready    control-plane   10d   v1.30.0   172.18.0.2    <none>        Debian GNU/Linux 12 (bookworm)   "
        "6.1.0            containerd://1.7.13\n"
    )


def test_events_and_namespaces():
    evs = [event("Scheduled", "Successfully assigned default/web-1 to node-a", "2024-05-01T11:59:58Z",
                 component="default-scheduler", kind="Pod", name="web-1"),
           event("SyncLoadBalancerFailed", "Error syncing load balancer: no available IPs",
                 "2024-05-01T11:50:00Z", "2024-05-01T11:58:00Z", count=4, type_="Warning")]
    assert format_table("ev", evs, now=NOW) == (
        "LAST SEEN   TYPE      REASON                   OBJECT        MESSAGE\n"
        "2s          Normal    Scheduled                pod/web-1     Successfully assigned default/web-1 to node-a\n"
        "2m          Warning   SyncLoadBalancerFailed   service/web   Error syncing load balancer: no available IPs\n"
    )
    assert format_table("events", evs[1:], wide=True, all_namespaces=True, now=NOW) == (
        "NAMESPACE   LAST SEEN   TYPE      REASON                   OBJECT        SUBOBJECT   SOURCE               "
        "MESSAGE                                         FIRST SEEN   COUNT   NAME\n"
        "default     2m          Warning   SyncLoadBalancerFailed   service/web               service-controller   "
        "Error syncing load balancer: no available IPs   10m          4       web.syncloadbalancerfailed\n"
    )
    nss = [{"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": n, "creationTimestamp": "2024-04-01T12:00:00Z"}, "status": {"phase": "Active"}}
           for n in ("default", "kube-system")]
    assert format_table("ns", nss, all_namespaces=True, now=NOW) == (
        "NAME          STATUS   AGE\n"
        "default       Active   30d\n"
        "kube-system   Active   30d\n"
    )


def test_empty_list_and_messages():
    assert format_table("pods", [], now=NOW) == ""
    assert no_resources("default", "pods") == "No resources found in default namespace."
    assert no_resources(None) == "No resources found"
    assert no_resources("default", "nodes") == "No resources found"


def test_json_single_and_list():
    p = pod()
    assert json.loads(to_json(p)) == p
    assert to_json(p).startswith('{\n    "apiVersion": "v1",\n    "kind": "Pod",\n')
    doc = json.loads(to_json([p, pod("web-2")]))
    assert doc == {"apiVersion": "v1", "items": [p, pod("web-2")], "kind": "List", "metadata": {"resourceVersion": ""}}
    assert list(json.loads(to_json([p]))) == ["apiVersion", "items", "kind", "metadata"]


def test_managed_fields_are_hidden_as_kubectl_hides_them():
    p = pod()
    p["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
    assert "managedFields" not in to_json(p) and "managedFields" not in to_yaml([p])
    assert json.loads(to_json(p)) == {**p, "metadata": {k: v for k, v in p["metadata"].items() if k != "managedFields"}}


def test_yaml_output():
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-04-29T10:00:00Z"},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "8080x", "protocol": "TCP"}],
                    "selector": {"app": "web", "version": "1.0"}}}
    assert to_yaml(svc) == (
        "apiVersion: v1\n"
        "kind: Service\n"
        "metadata:\n"
        '  creationTimestamp: "2024-04-29T10:00:00Z"\n'
        "  name: web\n"
        "  namespace: default\n"
        "spec:\n"
        "  ports:\n"
        "  - name: http\n"
        "    port: 80\n"
        "    protocol: TCP\n"
        "    targetPort: 8080x\n"
        "  selector:\n"
        "    app: web\n"
        '    version: "1.0"\n'
    )
    doc = yaml.safe_load(to_yaml([svc]))
    assert doc["kind"] == "List" and doc["items"] == [svc] and doc["metadata"] == {"resourceVersion": ""}


def test_kind_added_when_missing():
    doc = json.loads(to_json([{"metadata": {"name": "x"}}], "svc"))
    assert doc["items"][0]["kind"] == "Service" and doc["items"][0]["apiVersion"] == "v1"
