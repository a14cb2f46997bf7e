from testbed.kubectl import describe_pod, describe_service, events_for

from .fixtures import NOW, event, pod, service, slice_


def _lb_service():
    s = service("web", "LoadBalancer", externalTrafficPolicy="Cluster",
                ports=[{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}])
    s["status"]["loadBalancer"] = {"ingress": [{"ip": "172.18.255.1"}]}
    s["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                    "example.com/owner": "team-a"}
    return s


def test_describe_service_with_slices_and_events():
    evs = [event("EnsuredLoadBalancer", "Ensured load balancer", "2024-05-01T11:59:30Z"),
           event("EnsuringLoadBalancer", "Ensuring load balancer", "2024-05-01T11:58:00Z", "2024-05-01T11:59:00Z", count=3)]
    out = describe_service(_lb_service(), [slice_(n=5)], evs, now=NOW)
    assert out == (
        "Name:                     web\n"
        "Namespace:                default\n"
        "Labels:                   app=web\n"
        "Annotations:              example.com/owner: team-a\n"
        "Selector:                 app=web\n"
        "Type:                     LoadBalancer\n"
        "IP Family Policy:         SingleStack\n"
        "IP Families:              IPv4\n"
        "IP:                       10.96.12.34\n"
        "IPs:                      10.96.12.34\n"
        "LoadBalancer Ingress:     172.18.255.1\n"
        "Port:                     http  80/TCP\n"
        "TargetPort:               http/TCP\n"
        "NodePort:                 http  30080/TCP\n"
        "Endpoints:                10.244.1.2:8080,10.244.1.3:8080,10.244.1.4:8080 + 2 more...\n"
        "Session Affinity:         None\n"
        "External Traffic Policy:  Cluster\n"
        "Internal Traffic Policy:  Cluster\n"
        "Events:\n"
        "  Type    Reason                Age               From                Message\n"
        "  ----    ------                ----              ----                -------\n"
        "  Normal  EnsuringLoadBalancer  60s (x3 over 2m)  service-controller  Ensuring load balancer\n"
        "  Normal  EnsuredLoadBalancer   30s               service-controller  Ensured load balancer\n"
    )


def test_describe_service_with_endpoints_object_and_no_events():
    svc = service("web", ports=[{"port": 80, "targetPort": 8080, "protocol": "TCP"}])
    svc["metadata"]["labels"] = {"app": "web", "tier": "fe"}
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
          "subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}],
                       "notReadyAddresses": [{"ip": "10.244.3.3"}],
                       "ports": [{"port": 8080, "protocol": "TCP"}]}]}
    assert describe_service(svc, ep, [], now=NOW) == (
        "Name:                     web\n"
        "Namespace:                default\n"
        "Labels:                   app=web\n"
        "                          tier=fe\n"
        "Annotations:              <none>\n"
        "Selector:                 app=web\n"
        "Type:                     ClusterIP\n"
        "IP Family Policy:         SingleStack\n"
        "IP Families:              IPv4\n"
        "IP:                       10.96.12.34\n"
        "IPs:                      10.96.12.34\n"
        "Port:                     <unset>  80/TCP\n"
        "TargetPort:               8080/TCP\n"
        "Endpoints:                10.244.1.2:8080,10.244.2.2:8080\n"
        "Session Affinity:         None\n"
        "Internal Traffic Policy:  Cluster\n"
        "Events:                   <none>\n"
    )


def test_describe_service_endpoints_edge_cases():
    svc = service("web")
    not_ready = slice_(n=2, ready=False)
    assert "Endpoints:                \n" in describe_service(svc, [not_ready], [], now=NOW)
    assert "Endpoints:                <none>\n" in describe_service(svc, [], [], now=NOW)
    assert "Endpoints:                <none>\n" in describe_service(svc, None, [], now=NOW)
    assert "Events" not in describe_service(svc, None, None, now=NOW)


def test_describe_pod():
    p = pod()
    p["metadata"]["labels"]["pod-template-hash"] = "7d4b9c"
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-7d4b9c", "controller": True}]
    p["spec"].update({"serviceAccountName": "default", "priority": 0, "tolerations": [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]})
    p["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "prod"},
                                         {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}]
    p["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5}
    p["status"].update({"startTime": "2024-05-01T11:56:58Z", "qosClass": "BestEffort"})
    cs = p["status"]["containerStatuses"][0]
    cs.update({"containerID": "containerd://123", "imageID": "docker.io/library/nginx@sha256:abc"})
    evs = [event("Scheduled", "Successfully assigned default/web-1 to node-a", "2024-05-01T11:56:58Z",
                 component="default-scheduler", kind="Pod", name="web-1", uid="uid-web-1"),
           event("Other", "not about this pod", "2024-05-01T11:56:58Z", kind="Pod", name="web-2", uid="uid-web-2")]
    assert describe_pod(p, events_for(p, evs), now=NOW) == (
        "Name:             web-1\n"
        "Namespace:        default\n"
        "Priority:         0\n"
        "Service Account:  default\n"
        "Node:             node-a/172.18.0.2\n"
        "Start Time:       Wed, 01 May 2024 11:56:58 +0000\n"
        "Labels:           app=web\n"
        "                  pod-template-hash=7d4b9c\n"
        "Annotations:      <none>\n"
        "Status:           Running\n"
        "IP:               10.244.1.2\n"
        "IPs:\n"
        "  IP:           10.244.1.2\n"
        "Controlled By:  ReplicaSet/web-7d4b9c\n"
        "Containers:\n"
        "  nginx:\n"
        "    Container ID:   containerd://123\n"
        "    Image:          nginx:1.27\n"
        "    Image ID:       docker.io/library/nginx@sha256:abc\n"
        "    Port:           8080/TCP\n"
        "    Host Port:      0/TCP\n"
        "    State:          Running\n"
        "      Started:      Wed, 01 May 2024 11:57:00 +0000\n"
        "    Ready:          True\n"
        "    Restart Count:  0\n"
        "    Readiness:      http-get http://:8080/healthz delay=0s timeout=1s period=5s #success=1 #failure=3\n"
        "    Environment:\n"
        "      MODE:    prod\n"
        "      POD_IP:  10.244.1.2 (v1:status.podIP)\n"
        "    Mounts:    <none>\n"
        "Conditions:\n"
        "  Type           Status\n"
        "  PodScheduled   True \n"
        "  Ready          True \n"
        "Volumes:         <none>\n"
        "QoS Class:       BestEffort\n"
        "Node-Selectors:  <none>\n"
        "Tolerations:     node.kubernetes.io/not-ready:NoExecute op=Exists for 300s\n"
        "                 node.kubernetes.io/unreachable:NoExecute op=Exists for 300s\n"
        "Events:\n"
        "  Type    Reason     Age   From               Message\n"
        "  ----    ------     ----  ----               -------\n"
        "  Normal  Scheduled  3m2s  default-scheduler  Successfully assigned default/web-1 to node-a\n"
    )


def test_describe_pending_pod():
    p = pod("pending")
    p["spec"].pop("nodeName")
    p["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    out = describe_pod(p, None, now=NOW)
    assert out.startswith("Name:         pending\nNamespace:    default\nNode:         <none>\n")
    assert "IP:           \nIPs:          <none>\nContainers:\n" in out
    assert "    Image:        nginx:1.27\n" in out
    assert "    State:" not in out  # no container status yet
    assert "  PodScheduled   False \n" in out
    assert out.endswith("Tolerations:     <none>\n")
